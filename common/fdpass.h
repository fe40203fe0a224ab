/* SPDX-License-Identifier: MIT
 * fdpass.h — one message with file descriptors over a Unix socket
 * (SCM_RIGHTS): the uffd hand-off (uffd/handshake.c, contrib/minivm/wp.c)
 * and forkfs's spawner. Both functions retry EINTR, return -errno and never
 * log.
 */
#pragma once

#include <stddef.h>
#include <sys/types.h>

/* The most fds one message may carry, either way. */
#define FDPASS_MAX_FDS 16

/* sendmsg(MSG_NOSIGNAL) of len bytes with nfds fds (0..FDPASS_MAX_FDS) in one
 * SCM_RIGHTS message. Returns the bytes sent or -errno (-EINVAL for too many
 * fds). */
ssize_t fdpass_send(int sock, const void *data, size_t len, const int *fds, size_t nfds);

/* recvmsg of one message into data (up to len bytes) and of the fds that came
 * with it, O_CLOEXEC (MSG_CMSG_CLOEXEC). flags adds recvmsg flags, e.g.
 * MSG_DONTWAIT. The fds received go to fds[0..*nfds); the other slots up to
 * max_fds (at most FDPASS_MAX_FDS) are set to -1. Returns the bytes received
 * (0 at EOF) or -errno. A message or fd list that did not fit (MSG_TRUNC,
 * MSG_CTRUNC, or more than max_fds fds) is -EMSGSIZE: every fd it carried is
 * closed and *nfds is 0, as on every other error. */
ssize_t fdpass_recv(int sock, void *data, size_t len, int *fds, size_t *nfds, size_t max_fds,
		    int flags);
