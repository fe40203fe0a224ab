/* SPDX-License-Identifier: MIT
 * fdpass.c — see fdpass.h.
 */
#include <errno.h>
#include <stdbool.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include "common/fdpass.h"
#include "common/macro.h"

union fdpass_control {
	char buf[CMSG_SPACE(FDPASS_MAX_FDS * sizeof(int))];
	struct cmsghdr align;
};

ssize_t fdpass_send(int sock, const void *data, size_t len, const int *fds, size_t nfds)
{
	union fdpass_control u;
	struct iovec iov = { .iov_base = (void *)data, .iov_len = len };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
	ssize_t n;

	if (nfds > FDPASS_MAX_FDS)
		return -EINVAL;
	if (nfds > 0) {
		struct cmsghdr *c;

		memset(&u, 0, sizeof(u));
		msg.msg_control = u.buf;
		msg.msg_controllen = CMSG_SPACE(nfds * sizeof(int));
		c = CMSG_FIRSTHDR(&msg);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(nfds * sizeof(int));
		memcpy(CMSG_DATA(c), fds, nfds * sizeof(int));
	}
	do
		n = sendmsg(sock, &msg, MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	return n < 0 ? -errno : n;
}

ssize_t fdpass_recv(int sock, void *data, size_t len, int *fds, size_t *nfds, size_t max_fds,
		    int flags)
{
	union fdpass_control u;
	struct iovec iov = { .iov_base = data, .iov_len = len };
	struct msghdr msg = {
		.msg_iov = &iov,
		.msg_iovlen = 1,
		.msg_control = u.buf,
		.msg_controllen = CMSG_SPACE(max_fds * sizeof(int)),
	};
	bool too_many = false;
	size_t k = 0;
	ssize_t n;

	*nfds = 0;
	if (max_fds > FDPASS_MAX_FDS)
		return -EINVAL;
	for (size_t i = 0; i < max_fds; i++)
		fds[i] = -1;
	memset(&u, 0, sizeof(u));
	do
		n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC | flags);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	/* Every fd received is ours now: keep max_fds, close the others (the
	 * control buffer's padding may fit one more than was asked for). */
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		for (size_t i = 0; i < (c->cmsg_len - CMSG_LEN(0)) / sizeof(int); i++) {
			int fd;

			memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
			if (k < max_fds)
				fds[k++] = fd;
			else {
				safe_close(fd);
				too_many = true;
			}
		}
	}
	if (too_many || (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC))) {
		for (size_t i = 0; i < k; i++)
			fds[i] = safe_close(fds[i]);
		return -EMSGSIZE;
	}
	*nfds = k;
	return n;
}
