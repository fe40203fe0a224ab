/* SPDX-License-Identifier: MIT
 * sandbox.h — one sandbox: its object, its states and the transitions
 * between them, its log, and the commands that act on a started VMM (stop,
 * pause, resume). Starting is start.h; branch entries are entry.h; the set of
 * sandboxes is tree.h. No FUSE: completions are callbacks.
 *
 *   created --start--> running <--pause/resume--> paused
 *      ^                  |  \---------------------/  |
 *      |                  +-- stop, or the VMM exits -+--> stopped | failed
 *   (mkdir)       start fails -> failed;  stopped/failed --start--> running
 *
 * While a command runs, sb->busy names it ("start", "branch", ...) and every
 * other command is refused with EBUSY (sandbox_begin()). A command the state
 * does not allow gets EINVAL. Both leave a line in the sandbox's log.
 *
 * Asynchronous functions return < 0 when refused at once (done is then
 * never called), or 0: done(ctx, r) runs exactly once on the loop, perhaps
 * before the function returns. A command called with the busy guard held
 * releases it before done runs, or leaves it to the caller when refused.
 */
#pragma once

struct jail_spec;

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "common/error.h"
#include "common/macro.h"
#include "common/util.h"
#include "sandbox/env.h"

enum sb_state { SB_CREATED, SB_RUNNING, SB_PAUSED, SB_STOPPED, SB_FAILED, _SB_STATE_MAX };

typedef void (*sb_done_fn)(void *ctx, int r);

struct node;
struct sbranch;
struct template;
struct vmm_proc;

#define SANDBOX_NODES 7

struct sandbox {
	unsigned refs;
	struct sbenv *env;
	char name[NAME_LEN_MAX + 1];
	char *dir;		/* store directory */
	unsigned seq;		/* names its run directory */
	bool linked;		/* in the tree (false once removed) */
	enum sb_state state;
	char *config;		/* committed config.json (validated), NUL-terminated */
	size_t config_len;
	int log_fd;		/* O_APPEND, in the store */
	uint64_t log_size;	/* written since opened: rotated to log.1 past env->log_max */
	double vmm_tokens;	/* VMM output rate limit (sandbox.c) */
	uint64_t vmm_tokens_at;
	uint64_t vmm_lines_dropped;
	uint64_t vmm_dropped_reported_at;
	struct sbranch *branches;	/* entries, each holding a reference on us */
	struct timespec ctime;

	struct vmm *vmm;	/* core handle while a VMM is up */
	struct vmm_proc *proc;	/* the VMM forkfs launched, or NULL */
	struct template *tmpl;	/* the template its VMM maps (a restore from a branch), or NULL */
	bool attached;		/* attach form: not ours to stop */
	char *run_dir;		/* private short dir for sockets while started */
	const char *busy;	/* command in flight or NULL (sandbox_begin) */
	struct env_lane read_lane;	/* reads of its branches' memory.bin (env.h) */
	sb_done_fn stop_done;	/* a stop waiting for the VMM's exit */
	void *stop_ctx;

	/* The FUSE layer's inodes of this sandbox's files (fusefs/inode.c);
	 * opaque here, never touched by sandbox/. */
	struct node *nodes[SANDBOX_NODES];
	struct sandbox *next;
};

/* A new sandbox object for the store directory dir (which exists), in state;
 * opens its log. */
int sandbox_new(struct sbenv *env, const char *name, const char *dir, enum sb_state state,
		unsigned seq, struct sandbox **ret);
struct sandbox *sandbox_ref(struct sandbox *sb);
struct sandbox *sandbox_unref(struct sandbox *sb);

const char *sb_state_to_string(enum sb_state s);
/* A VMM is up (running or paused). */
bool sandbox_is_started(const struct sandbox *sb);
/* The busy guard: -EBUSY (logged as "WHAT refused: X in progress") if a
 * command is in flight, else mark op as in flight. what is printf-style. */
int sandbox_begin(struct sandbox *sb, const char *op, const char *what, ...) _printf_(3, 4);
void sandbox_end(struct sandbox *sb);

/* A timestamped line into the sandbox's log (and stderr). Loop thread only
 * (the log's size cap is kept there); another thread opens the log itself
 * and writes with sandbox_log_fd(), as entry.c's copy watch does. */
void sb_log(struct sandbox *sb, const char *fmt, ...) _printf_(2, 3);
/* One line "STAMP WHO: MSG" onto a log fd (one write); any thread. msg is
 * cleaned of control characters. Returns the bytes written. */
size_t sandbox_log_fd(int fd, const char *who, const char *msg, size_t n);

/* Commit a validated config.json: the store first, then the object. */
int sandbox_set_config(struct sandbox *sb, const char *text, size_t len);

/* Start's transitions (start.c): the private run directory for the VMM's
 * sockets, the VMM handle once it answers, or the failure. */
int sandbox_make_run_dir(struct sandbox *sb);
void sandbox_started(struct sandbox *sb, struct vmm *vmm, bool attached, bool paused);
void sandbox_start_failed(struct sandbox *sb, const char *reason);
/* Keep a reference on the template the VMM maps until the VMM exits. */
void sandbox_set_template(struct sandbox *sb, struct template *t);
/* Launch the VMM on api_socket (the host's path), its output into the log,
 * its exit handled; in jail (NULL: none) with jail_fds (jail.h). */
int sandbox_launch(struct sandbox *sb, const char *api_socket, const struct jail_spec *jail,
		   const int *jail_fds, struct error *err);

/* Stop a started sandbox: a launched VMM gets SIGTERM (SIGKILL later) and
 * done runs at its exit; an attached one is let go of (it keeps running) and
 * done runs once its uffd is closed. -EINVAL if there is nothing to stop.
 * done may be NULL. Does not check or set busy (the caller does). */
int sandbox_stop(struct sandbox *sb, sb_done_fn done, void *ctx);
/* pause (true) or resume (false) the VM. Called with the busy guard held
 * (sandbox_begin); released before done runs. */
int sandbox_pause(struct sandbox *sb, bool pause, sb_done_fn done, void *ctx);
