/* SPDX-License-Identifier: MIT
 * forkfs.h — the FUSE layer: the mounted filesystem object (struct forkfs)
 * that main.c sets up, daemon.c runs, and ops.c and files.c answer requests
 * for (inodes: inode.h). It translates between the kernel's requests and the
 * FUSE-free sandbox lifecycle of sandbox/ (tree.h); only main.c, daemon.c,
 * ops.c and files.c include <fuse_lowlevel.h>.
 *
 * Threading: everything here runs on the one libuv loop thread (the rules of
 * sandbox/env.h). A read of memory.bin during a copy runs on a worker, with
 * its own references.
 */
#pragma once

#include <stdbool.h>
#include <sys/types.h>
#include <uv.h>

#include "fusefs/inode.h"
#include "sandbox/tree.h"

struct fuse_session;
struct waiter;
struct fh;

struct forkfs {
	uv_loop_t loop;
	struct fuse_session *se;
	uv_poll_t fuse_poll;
	bool fuse_poll_active;
	uv_signal_t signals[3];

	struct tree tree;	/* the sandboxes */
	struct inodes inodes;
	mode_t branch_file_mode;	/* -o branch_mode: the mode of branch files */
	bool passthrough_off;	/* -o passthrough=off */
	bool passthrough;	/* FUSE passthrough in use (files.c; set at init) */
	uid_t uid;
	gid_t gid;

	struct fh *open_files;	/* files.c: freed at teardown if never released */
	struct waiter *waiters;	/* reads of branches/TAG/wait (wait.c) */
	uv_timer_t wait_timer;
	bool wait_timer_on;
};

/* wait.c: the waiters of branches/TAG/wait; shutdown answers every one
 * (ESHUTDOWN) and closes the timer. */
void wait_init(struct forkfs *fs);
void wait_shutdown(struct forkfs *fs);

/* files.c: free the open files the kernel never released (forkfs shut down
 * with files open: SIGTERM, a lazy unmount). After the loop has ended. */
void files_free_all(struct forkfs *fs);

/* daemon.c */
int forkfs_run(struct forkfs *fs);
void forkfs_shutdown(struct forkfs *fs, const char *why);

/* ops.c */
extern const struct fuse_lowlevel_ops forkfs_ops;
