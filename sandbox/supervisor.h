/* SPDX-License-Identifier: MIT
 * supervisor.h — VMM processes forkfs launches (supervisor.c), and the
 * daemon's one spawner process (spawner.h) they are launched through.
 * Loop thread only.
 */
#pragma once

#include <stdbool.h>
#include <sys/types.h>
#include <uv.h>

#include "common/error.h"

struct vmm_proc;
struct jail_spec;

/* Who a launched process reports to. Every callback runs on the loop. */
struct vmm_proc_owner {
	/* A line of the VMM's output (who "vmm", without its newline), or a line
	 * about the process (who "forkfs": exit status, signals, SIGKILL). */
	void (*log)(void *ctx, const char *who, const char *msg, size_t n);
	/* The process has exited, once. stopped: vmm_proc_terminate() asked for
	 * it; clean: stopped, or exit status 0. */
	void (*exited)(void *ctx, struct vmm_proc *p, bool clean, bool stopped);
	/* The last handle is closed (the output is read to its end): the owner
	 * may let go of ctx. Called once, also after a failed launch (then a
	 * turn of the loop later). The struct vmm_proc is freed right after. */
	void (*release)(void *ctx);
	void *ctx;
};

/* Launch argv (argv[0] the VMM) through the spawner, output into the owner's
 * log; jail (NULL: none) with its fds (jail.h) confines it. 0, or -ENOENT / -EIO with the reason in err (then only the owner's
 * release is called). */
int vmm_proc_spawn(uv_loop_t *loop, const struct jail_spec *jail, const int *jail_fds,
		   char *const argv[], const struct vmm_proc_owner *owner, struct vmm_proc **ret,
		   struct error *err);
/* Not yet exited (false for NULL). */
bool vmm_proc_alive(struct vmm_proc *p);
pid_t vmm_proc_pid(struct vmm_proc *p);
/* SIGTERM, then SIGKILL after a timeout; marks the exit as clean. */
void vmm_proc_terminate(struct vmm_proc *p);

/* The daemon's spawner (spawner.c), for main(). */
int supervisor_fork_spawner(void);		/* single-threaded, before the filter */
int supervisor_watch(uv_loop_t *loop);		/* after uv_loop_init */
void supervisor_unwatch(void);			/* at shutdown, when no job is left */
void supervisor_end_spawner(void);		/* after the loop: close and reap it */
/* Have the spawner run "fusermount3 -u -z MOUNTPOINT" and wait for it: the
 * unmount path of a user (not root) under the filter. 0 or -errno. */
int supervisor_unmount(const char *mountpoint);
