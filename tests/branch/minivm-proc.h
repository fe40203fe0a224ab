/* SPDX-License-Identifier: MIT
 * minivm-proc.h — test helper: run forkfs-minivm processes ($MINIVM) with their
 * output captured in a file, boot the bundled guest ($GUEST_IMG) through the
 * fc client, wait for guest console lines.
 */
#pragma once

#include <limits.h>
#include <stdbool.h>
#include <sys/types.h>

struct minivm_proc {
	pid_t pid;
	char sock[108];
	char out[PATH_MAX];
};

/* Start "$MINIVM --api-sock DIR/NAME.sock [extra...]" (extra is NULL-terminated,
 * may be NULL) with stdout+stderr in DIR/NAME.out; waits for the socket. */
int minivm_spawn(const char *dir, const char *name, const char *const *extra,
		 struct minivm_proc *ret);
/* machine-config, boot-source ($GUEST_IMG), InstanceStart. */
int minivm_boot(struct minivm_proc *p, unsigned vcpus, unsigned mem_mib);
/* Number of lines of the output file containing needle. */
int minivm_count_lines(const struct minivm_proc *p, const char *needle);
/* Wait until at least count lines contain needle; 0 or -ETIMEDOUT. */
int minivm_wait_lines(const struct minivm_proc *p, const char *needle, int count, int timeout_ms);
void minivm_kill(struct minivm_proc *p);
/* Print the output file as TAP diagnostics (on failure). */
void minivm_dump(const struct minivm_proc *p);
