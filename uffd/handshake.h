/* SPDX-License-Identifier: MIT
 * handshake.h — receiving a VMM's userfaultfd over a Unix socket: the forkd
 * fork's PUT /uffd/wp and Firecracker's restore-side Uffd backend both send one
 * message holding a compact JSON array of regions and exactly one SCM_RIGHTS fd.
 * No FUSE, no HTTP: the caller makes the API call between listen and receive.
 * Nothing here logs: each function returns 0 or -errno and, on failure, puts
 * the reason in err (common/error.h; may be NULL) for the caller to report.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define UFFD_MAX_REGIONS 16
#define UFFD_HANDSHAKE_MAX_BYTES 4096

struct error;

struct uffd_region {
	uint64_t base;		/* base_host_virt_addr: the VMM's address */
	uint64_t size;		/* bytes, page aligned */
	uint64_t offset;	/* offset in the memory image: cumulative sizes */
	uint64_t page_size;	/* bytes ("page_size", else "page_size_kib", which holds bytes too) */
};

struct uffd_handshake {
	int uffd;		/* owned by the caller after a successful receive */
	pid_t pid;		/* the sender, from SO_PEERCRED */
	int pidfd;		/* the sender (SO_PEERPIDFD), owned by the caller, or -1 */
	size_t n_regions;
	struct uffd_region regions[UFFD_MAX_REGIONS];
};

/* Create a listening AF_UNIX socket at path (mode 0600; an old file is removed). */
int uffd_listen(const char *path, int *ret_fd, struct error *err);
/* Accept one connection within timeout_ms, recvmsg, validate. expect_total is
 * the guest memory size (0 = do not check). Rejects truncation, fd counts other
 * than one, any region table that is not page aligned, cumulative and
 * complete, and an fd that is not a userfaultfd (-EBADF). Closes any received
 * fd on failure. The caller checks ret->pid against the VMM it launched. */
int uffd_receive(int listen_fd, uint64_t expect_total, int timeout_ms, struct uffd_handshake *ret,
		 struct error *err);
/* Parse and validate the JSON region array (fuzzed entry point). */
int uffd_parse_regions(const char *json, size_t len, uint64_t expect_total,
		       struct uffd_region *ret, size_t max, size_t *ret_n, struct error *err);
