/* SPDX-License-Identifier: MIT
 * fdpass.c — common/fdpass.c over a socketpair: messages with 0, 1 and 2
 * fds, close-on-exec, EOF, and every way a message can fail to fit (data,
 * fd list, more fds than asked for), none of which may leak an fd.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include "common/fdpass.h"
#include "common/macro.h"
#include "tests/fds.h"
#include "tests/tap.h"

static bool same_file(int a, int b)
{
	struct stat sa, sb;

	return fstat(a, &sa) == 0 && fstat(b, &sb) == 0 && sa.st_dev == sb.st_dev &&
	       sa.st_ino == sb.st_ino;
}

int main(void)
{
	int sv[2], p[2], fds[4], fds2[2], before;
	char buf[16];
	size_t nfds = 99;
	ssize_t n;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0 || pipe2(p, O_CLOEXEC) < 0)
		tap_skip_all("no socketpair or pipe");
	before = count_open_fds();

	/* Data only. */
	TAP_CHECK(fdpass_send(sv[0], "abc", 3, NULL, 0) == 3);
	n = fdpass_recv(sv[1], buf, sizeof(buf), fds, &nfds, 2, 0);
	tap_ok(n == 3 && nfds == 0 && fds[0] == -1 && fds[1] == -1 && !memcmp(buf, "abc", 3),
	       "no fds: %zd bytes, %zu fds, unused slots -1", n, nfds);

	/* Two fds, received close-on-exec. */
	TAP_CHECK(fdpass_send(sv[0], "x", 1, p, 2) == 1);
	n = fdpass_recv(sv[1], buf, sizeof(buf), fds, &nfds, 4, MSG_DONTWAIT);
	tap_ok(n == 1 && nfds == 2 && same_file(fds[0], p[0]) && same_file(fds[1], p[1]) &&
	       fds[2] == -1 && fds[3] == -1, "two fds received (%zd, %zu)", n, nfds);
	tap_ok(nfds == 2 && (fcntl(fds[0], F_GETFD) & FD_CLOEXEC) &&
	       (fcntl(fds[1], F_GETFD) & FD_CLOEXEC), "received fds are close-on-exec");
	for (size_t i = 0; i < nfds; i++)
		safe_close(fds[i]);

	/* More fds than asked for: -EMSGSIZE, every one closed, even those
	 * that fit in the control buffer's padding (two fit in one's space). */
	TAP_CHECK(fdpass_send(sv[0], "x", 1, p, 2) == 1);
	n = fdpass_recv(sv[1], buf, sizeof(buf), fds2, &nfds, 1, 0);
	tap_ok(n == -EMSGSIZE && nfds == 0 && fds2[0] == -1, "two fds for one slot: %zd", n);
	{
		int many[8] = { p[0], p[0], p[0], p[0], p[0], p[0], p[0], p[0] };

		TAP_CHECK(fdpass_send(sv[0], "x", 1, many, 8) == 1);
		n = fdpass_recv(sv[1], buf, sizeof(buf), fds, &nfds, 4, 0);
		tap_ok(n == -EMSGSIZE && nfds == 0, "eight fds for four slots (MSG_CTRUNC): %zd", n);
	}

	/* Data longer than the buffer of a datagram socket: MSG_TRUNC. */
	{
		int dg[2];

		TAP_CHECK(socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, dg) == 0);
		TAP_CHECK(fdpass_send(dg[0], "0123456789", 10, p, 1) == 10);
		n = fdpass_recv(dg[1], buf, 4, fds, &nfds, 1, 0);
		tap_ok(n == -EMSGSIZE && nfds == 0, "datagram cut short (MSG_TRUNC): %zd", n);
		safe_close(dg[0]);
		safe_close(dg[1]);
	}

	TAP_CHECK(fdpass_send(sv[0], "x", 1, p, FDPASS_MAX_FDS + 1) == -EINVAL);
	TAP_CHECK(fdpass_recv(sv[1], buf, sizeof(buf), fds, &nfds, FDPASS_MAX_FDS + 1, 0) ==
		  -EINVAL);
	TAP_CHECK(fdpass_recv(sv[1], buf, sizeof(buf), fds, &nfds, 1, MSG_DONTWAIT) == -EAGAIN);
	tap_ok(count_open_fds() == before, "no fd leaked (%d before, %d after)", before,
	       count_open_fds());

	/* EOF. */
	safe_close(sv[0]);
	n = fdpass_recv(sv[1], buf, sizeof(buf), fds, &nfds, 1, 0);
	tap_ok(n == 0 && nfds == 0, "EOF: %zd", n);
	TAP_CHECK(fdpass_send(sv[1], "x", 1, NULL, 0) == -EPIPE);

	safe_close(sv[1]);
	safe_close(p[0]);
	safe_close(p[1]);
	return tap_done();
}
