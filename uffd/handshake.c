/* SPDX-License-Identifier: MIT
 * handshake.c — the receiving end of a VMM's userfaultfd hand-off
 * (docs/firecracker-protocol.md §2, §3). The VMM connects to our listening
 * socket, sends one sendmsg() holding a compact JSON array of regions plus one
 * SCM_RIGHTS fd, and (for PUT /uffd/wp) closes its end before answering 204,
 * so everything may already be queued on the pending connection when we accept.
 *
 * Everything received is untrusted: the message must fit the 4096-byte buffer,
 * carry exactly one fd, which must be a userfaultfd, and describe a dense,
 * page-aligned, cumulative region table; anything else is rejected and every
 * received fd is closed. Nothing here logs: the reason of a rejection goes to
 * the caller's struct error.
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include "common/error.h"
#include "common/fdpass.h"
#include "common/json.h"
#include "common/macro.h"
#include "common/util.h"
#include "uffd/handshake.h"

#ifndef SO_PEERPIDFD
#define SO_PEERPIDFD 77	/* <asm-generic/socket.h>, Linux 6.5 */
#endif

#define MAX_FDS 4

int uffd_listen(const char *path, int *ret_fd, struct error *err)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	_cleanup_close_ int fd = -1;
	mode_t old_umask;
	int r;

	if (strlen(path) >= sizeof(sa.sun_path))
		return error_set(err, -ENAMETOOLONG, "socket path too long: %s", path);
	strcpy(sa.sun_path, path);

	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return error_set_errno(err, -errno, "socket()");
	if (unlink(path) < 0 && errno != ENOENT)
		return error_set_errno(err, -errno, "cannot remove old socket %s", path);
	/* Bind under a umask so that the socket never exists with a wider mode. */
	old_umask = umask(0177);
	r = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
	r = r < 0 ? -errno : 0;
	umask(old_umask);
	if (r < 0)
		return error_set_errno(err, r, "bind(%s)", path);
	if (chmod(path, 0600) < 0)
		return error_set_errno(err, -errno, "chmod(%s)", path);
	if (listen(fd, 4) < 0)
		return error_set_errno(err, -errno, "listen(%s)", path);
	*ret_fd = TAKE_FD(fd);
	return 0;
}

static int wait_readable(int fd, uint64_t deadline_us)
{
	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		uint64_t now = now_usec();
		int r;

		if (now >= deadline_us)
			return -ETIMEDOUT;
		r = poll(&p, 1, (int)DIV_ROUND_UP(deadline_us - now, USEC_PER_MSEC));
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r > 0)
			return 0;
	}
}

/* A JSON number that must be a non-negative integer. */
static int get_u64(struct json_object *obj, const char *key, bool required, uint64_t *ret,
		   struct error *err)
{
	struct json_object *v;

	if (!json_object_object_get_ex(obj, key, &v)) {
		if (required)
			return error_set(err, -EINVAL, "region lacks \"%s\"", key);
		return -ENOENT;
	}
	if (!json_object_is_type(v, json_type_int) || json_object_get_int64(v) < 0)
		return error_set(err, -EINVAL, "\"%s\" is not a non-negative integer", key);
	errno = 0;
	*ret = json_object_get_uint64(v);
	if (errno != 0)
		return error_set(err, -EINVAL, "\"%s\" out of range", key);
	return 0;
}

static int parse_region(struct json_object *obj, uint64_t expect_offset, struct uffd_region *ret,
			struct error *err)
{
	uint64_t ps = 0, ps_kib = 0;
	int r, r_ps, r_kib;

	if (!json_object_is_type(obj, json_type_object))
		return error_set(err, -EINVAL, "region is not an object");
	r = get_u64(obj, "base_host_virt_addr", true, &ret->base, err);
	if (r < 0)
		return r;
	r = get_u64(obj, "size", true, &ret->size, err);
	if (r < 0)
		return r;
	r = get_u64(obj, "offset", true, &ret->offset, err);
	if (r < 0)
		return r;
	/* Both keys hold bytes (Firecracker sends 4096 in each); prefer page_size. */
	r_ps = get_u64(obj, "page_size", false, &ps, err);
	if (r_ps < 0 && r_ps != -ENOENT)
		return r_ps;
	r_kib = get_u64(obj, "page_size_kib", false, &ps_kib, err);
	if (r_kib < 0 && r_kib != -ENOENT)
		return r_kib;
	if (r_ps == -ENOENT && r_kib == -ENOENT)
		return error_set(err, -EINVAL, "region has no page size");
	ret->page_size = r_ps == 0 ? ps : ps_kib;
	if (ret->page_size != PAGE_4K)
		return error_set(err, -EOPNOTSUPP, "page size %" PRIu64 " unsupported",
				 ret->page_size);
	if (ret->size == 0 || ret->size % PAGE_4K || ret->base % PAGE_4K)
		return error_set(err, -EINVAL, "region not page aligned or empty");
	if (ret->base + ret->size < ret->base)
		return error_set(err, -EINVAL, "region wraps around");
	if (ret->offset != expect_offset)
		return error_set(err, -EINVAL,
				 "region offset %" PRIu64 " is not the running total %" PRIu64,
				 ret->offset, expect_offset);
	return 0;
}

int uffd_parse_regions(const char *json, size_t len, uint64_t expect_total,
		       struct uffd_region *ret, size_t max, size_t *ret_n, struct error *err)
{
	struct uffd_region regions[UFFD_MAX_REGIONS];
	_cleanup_json_ struct json_object *root = NULL;
	struct json_tokener *tok;
	uint64_t total = 0;
	size_t n, i, j;
	bool complete;
	int r;

	if (len == 0 || len > UFFD_HANDSHAKE_MAX_BYTES || len > INT32_MAX)
		return error_set(err, -EINVAL, "message of %zu bytes", len);
	if (memchr(json, '\0', len))
		return error_set(err, -EINVAL, "NUL byte in message");
	tok = json_tokener_new_ex(8);
	if (!tok)
		return error_set(err, -ENOMEM, "out of memory");
	root = json_tokener_parse_ex(tok, json, (int)len);
	complete = json_tokener_get_error(tok) == json_tokener_success &&
		   json_tokener_get_parse_end(tok) == len;
	json_tokener_free(tok);
	if (!root || !complete)
		return error_set(err, -EINVAL, "message is not one complete JSON value");

	if (!json_object_is_type(root, json_type_array))
		return error_set(err, -EINVAL, "message is not a JSON array");
	n = json_object_array_length(root);
	if (n == 0 || n > max || n > UFFD_MAX_REGIONS)
		return error_set(err, -EINVAL, "%zu regions (1..%zu allowed)", n,
				 MIN(max, (size_t)UFFD_MAX_REGIONS));
	for (i = 0; i < n; i++) {
		r = parse_region(json_object_array_get_idx(root, i), total, &regions[i], err);
		if (r < 0)
			return r;
		if (total + regions[i].size < total)
			return error_set(err, -EINVAL, "total size overflows");
		total += regions[i].size;
		for (j = 0; j < i; j++)
			if (regions[i].base < regions[j].base + regions[j].size &&
			    regions[j].base < regions[i].base + regions[i].size)
				return error_set(err, -EINVAL, "regions %zu and %zu overlap", j, i);
	}
	if (expect_total && total != expect_total)
		return error_set(err, -EINVAL,
				 "regions hold %" PRIu64 " bytes, guest memory is %" PRIu64, total,
				 expect_total);
	memcpy(ret, regions, n * sizeof(*regions));
	*ret_n = n;
	return 0;
}

static void close_fds(const int *fds, size_t n)
{
	for (size_t i = 0; i < n; i++)
		safe_close(fds[i]);
}

/* recvmsg one message and the fds that came with it (up to MAX_FDS). */
static int recv_one(int conn, char *buf, size_t size, size_t *ret_len, int *fds, size_t *ret_nfds,
		    struct error *err)
{
	ssize_t n = fdpass_recv(conn, buf, size, fds, ret_nfds, MAX_FDS, MSG_DONTWAIT);

	if (n == -EMSGSIZE)
		return error_set(err, -EMSGSIZE, "message or its fds truncated");
	if (n < 0)
		return error_set_errno(err, (int)n, "recvmsg");
	*ret_len = (size_t)n;
	/* A stream socket never sets MSG_TRUNC: a full buffer means "too long". */
	if ((size_t)n >= size)
		return error_set(err, -EMSGSIZE, "message longer than %zu bytes", size - 1);
	if (n == 0)
		return error_set(err, -ECONNRESET, "peer closed without sending");
	return 0;
}

/* Is fd a userfaultfd? Its /proc/self/fd link names the anonymous inode; a
 * file, pipe or socket reads otherwise (a file's link is an absolute path). */
static int check_uffd(int fd, struct error *err)
{
	char path[32], target[64];
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	n = readlink(path, target, sizeof(target) - 1);
	if (n < 0)
		return error_set_errno(err, -errno, "cannot inspect the received fd");
	target[n] = '\0';
	if (strcmp(target, "anon_inode:[userfaultfd]") == 0)
		return 0;
	/* The link may name a file the VMM chose: error_set() keeps its control
	 * characters out of the reason. */
	return error_set(err, -EBADF, "the received fd is not a userfaultfd (%s%s)", target,
			 (size_t)n == sizeof(target) - 1 ? "..." : "");
}

int uffd_receive(int listen_fd, uint64_t expect_total, int timeout_ms, struct uffd_handshake *ret,
		 struct error *err)
{
	uint64_t deadline = now_usec() + (uint64_t)MAX(timeout_ms, 0) * USEC_PER_MSEC;
	char buf[UFFD_HANDSHAKE_MAX_BYTES + 1];
	_cleanup_close_ int conn = -1, pidfd = -1;
	int fds[MAX_FDS];
	size_t len = 0, nfds = 0;
	struct ucred cred;
	socklen_t cl = sizeof(cred), pl = sizeof(pidfd);
	int r;

	ret->pidfd = -1;
	r = wait_readable(listen_fd, deadline);
	if (r < 0)
		return error_set_errno(err, r, "no connection from the VMM");
	conn = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
	if (conn < 0)
		return error_set_errno(err, -errno, "accept");
	if (getsockopt(conn, SOL_SOCKET, SO_PEERCRED, &cred, &cl) < 0)
		return error_set_errno(err, -errno, "SO_PEERCRED");
	/* The sender as a pidfd (Linux 6.5): names it for good, whatever
	 * happens to its pid. Older kernels: none (pidfd -1). */
	if (getsockopt(conn, SOL_SOCKET, SO_PEERPIDFD, &pidfd, &pl) < 0)
		pidfd = -1;
	r = wait_readable(conn, deadline);
	if (r < 0)
		return error_set_errno(err, r, "no message from the VMM");

	/* One byte more than allowed, so that an over-long message is detected. */
	r = recv_one(conn, buf, sizeof(buf), &len, fds, &nfds, err);
	if (r >= 0 && nfds != 1)
		r = error_set(err, -EBADMSG, "%zu fds received, expected 1", nfds);
	if (r >= 0)
		r = uffd_parse_regions(buf, len, expect_total, ret->regions, UFFD_MAX_REGIONS,
				       &ret->n_regions, err);
	if (r >= 0)
		r = check_uffd(fds[0], err);
	if (r < 0) {
		close_fds(fds, nfds);
		return r;
	}
	ret->uffd = fds[0];
	ret->pid = cred.pid;
	ret->pidfd = TAKE_FD(pidfd);
	return 0;
}
