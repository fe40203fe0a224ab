/* SPDX-License-Identifier: MIT
 * daemon.c — the libuv loop that owns forkfs: the FUSE session (a uv_poll_t
 * on its non-blocking /dev/fuse fd), signals, and the orderly shutdown.
 *
 * Shutdown (SIGTERM, SIGINT, SIGHUP, or the kernel ending the session on
 * unmount) stops reading /dev/fuse, cancels running copies and stops every
 * sandbox (tree_shutdown: launched VMMs get SIGTERM, attached ones are
 * detached). Work items and child processes are counted as "jobs"
 * (sandbox/env.h); when the last one is gone the signal handles are closed
 * and uv_run() returns, because nothing is left active on the loop. main()
 * then unmounts and frees the tree.
 */
#define FUSE_USE_VERSION 34
#include <errno.h>
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#define LOG_PREFIX ""
#include "common/log.h"
#include "fusefs/forkfs.h"
#include "sandbox/supervisor.h"

/* Requests handled per readable event before the loop looks at other work. */
#define FUSE_BATCH 64

static const int shutdown_signals[] = { SIGTERM, SIGINT, SIGHUP };

static struct fuse_buf fbuf;	/* one request at a time, on the loop */

/* The last step of the shutdown: nothing is left to wait for, so close the
 * handles that would keep the loop alive (signals, the spawner socket). */
static void close_signals(void *ctx)
{
	struct forkfs *fs = ctx;

	supervisor_unwatch();
	for (size_t i = 0; i < ARRAY_SIZE(shutdown_signals); i++)
		if (!uv_is_closing((uv_handle_t *)&fs->signals[i]))
			uv_close((uv_handle_t *)&fs->signals[i], NULL);
}

void forkfs_shutdown(struct forkfs *fs, const char *why)
{
	if (fs->tree.env.shutting_down)
		return;
	log_info("shutting down: %s", why);
	wait_shutdown(fs);
	if (fs->fuse_poll_active) {
		uv_poll_stop(&fs->fuse_poll);
		uv_close((uv_handle_t *)&fs->fuse_poll, NULL);
		fs->fuse_poll_active = false;
	}
	tree_shutdown(&fs->tree, close_signals, fs);
}

static void on_fuse_readable(uv_poll_t *h, int status, int events)
{
	struct forkfs *fs = h->data;

	if (status < 0) {
		/* After an unmount the device reports an error condition. */
		log_debug("poll on /dev/fuse: %s", uv_strerror(status));
		forkfs_shutdown(fs, "the FUSE connection ended");
		return;
	}
	for (int i = 0; i < FUSE_BATCH && !fs->tree.env.shutting_down; i++) {
		int r = fuse_session_receive_buf(fs->se, &fbuf);

		if (r == -EAGAIN || r == -EINTR)
			return;
		if (fuse_session_exited(fs->se)) {
			forkfs_shutdown(fs, "file system unmounted");
			return;
		}
		if (r < 0) {
			log_error_errno(r, "reading /dev/fuse");
			forkfs_shutdown(fs, "FUSE device error");
			return;
		}
		if (r == 0)	/* an interrupted request: nothing to do */
			continue;
		fuse_session_process_buf(fs->se, &fbuf);
		if (fuse_session_exited(fs->se)) {
			forkfs_shutdown(fs, "FUSE session ended");
			return;
		}
	}
}

static void on_signal(uv_signal_t *h, int signo)
{
	struct forkfs *fs = h->data;

	forkfs_shutdown(fs, strsignal(signo));
}

int forkfs_run(struct forkfs *fs)
{
	int fd = fuse_session_fd(fs->se);
	int r, flags;

	flags = fcntl(fd, F_GETFL);
	if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)
		return log_error_errno(errno, "cannot make /dev/fuse non-blocking");
	r = uv_poll_init(&fs->loop, &fs->fuse_poll, fd);
	if (r < 0)
		return log_error_errno(r, "uv_poll_init");
	fs->fuse_poll.data = fs;
	fs->fuse_poll_active = true;
	uv_poll_start(&fs->fuse_poll, UV_READABLE, on_fuse_readable);
	wait_init(fs);
	for (size_t i = 0; i < ARRAY_SIZE(shutdown_signals); i++) {
		uv_signal_init(&fs->loop, &fs->signals[i]);
		fs->signals[i].data = fs;
		uv_signal_start(&fs->signals[i], on_signal, shutdown_signals[i]);
	}
	uv_run(&fs->loop, UV_RUN_DEFAULT);
	free(fbuf.mem);
	fbuf.mem = NULL;
	return 0;
}
