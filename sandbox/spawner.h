/* SPDX-License-Identifier: MIT
 * spawner.h — the launcher process forkfs forks at start-up, before its
 * seccomp filter is loaded, so that the VMMs it starts do not inherit the
 * filter (children inherit seccomp filters; minivm installs its own).
 *
 * spawner.c holds both ends of the protocol; supervisor.c owns the one
 * spawner of the daemon and exposes its start-up and shutdown hooks
 * (supervisor.h).
 */
#pragma once

#include <stddef.h>
#include <sys/types.h>

struct jail_spec;

/* Called for each "pid exited with wait status" notice from the spawner. */
typedef void (*spawner_exit_fn)(pid_t pid, int wstatus, void *userdata);

/* Fork the spawner. Call it while the process has one thread and before the
 * filter is loaded. *ret_fd: the daemon's end of the socketpair (CLOEXEC,
 * SOCK_SEQPACKET). The spawner closes every other fd it inherited and exits
 * when the daemon's end is closed; the VMMs it launched keep running. */
int spawner_fork(int *ret_fd, pid_t *ret_pid);

/* Launch argv[0] (PATH searched, as execvp) in a new session with stdin on
 * /dev/null and stdout/stderr on fds[0]/fds[1], no other fd (but the jail's
 * inherited one), default signal dispositions and an empty signal mask. jail
 * (NULL: none) confines it (jail.h); its fds follow in fds. Waits (up to a
 * few seconds) for the answer; exit notices read meanwhile go to on_exit.
 * Returns 0 with the pid and a pidfd (CLOEXEC) for it, or -errno (the exec's
 * errno if it failed) with the failed step of the jail, if any, in what; on
 * success what may hold a warning (the jail went without a cgroup). */
int spawner_launch(int fd, const struct jail_spec *jail, char *const argv[], const int *fds,
		   spawner_exit_fn on_exit, void *userdata, pid_t *ret_pid, int *ret_pidfd,
		   char *what, size_t what_len);

/* Read the notices that are waiting (the fd may be non-blocking) and hand
 * them to on_exit. 0, or -ECONNRESET once the spawner is gone. */
int spawner_dispatch(int fd, spawner_exit_fn on_exit, void *userdata);
