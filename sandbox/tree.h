/* SPDX-License-Identifier: MIT
 * tree.h — the sandboxes of one store: rebuilding them from the store at
 * start, mkdir and rmdir of a sandbox, finding one by name, and the orderly
 * shutdown of all. The root of sandbox/, the FUSE-free sandbox lifecycle:
 *
 *   tree.h     the set of sandboxes          ctl.h     the ctl commands
 *   sandbox.h  one sandbox, its states       start.h   boot, restore, attach
 *   entry.h    its branch entries            store.h   the store on disk
 *   config.h   config.json                   env.h     loop, options, jobs
 *   supervisor.h, spawner.h                  VMM processes
 *
 * Loop thread only (env.h has the threading rules).
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "sandbox/env.h"
#include "sandbox/sandbox.h"

struct tree_options {
	const char *store;	/* an absolute path; created if missing */
	const char *vmm_path;
	const char *run_dir;	/* exists, private */
	enum branch_mode_req mode;
	uint64_t copy_rate;	/* bytes/s; 0 = no cap */
	uint64_t log_max;	/* bytes; 0 = no cap */
	bool vmm_output_to_stderr;
	bool no_incremental;	/* -o incremental=off */
	bool jail;		/* jail the VMMs (jail.h) */
	uint32_t jail_id_first, jail_id_count;
	char **allow_path;	/* -o allow_path: real paths; the caller's, kept */
	size_t n_allow_path;
	char **vmm_args;	/* -o vmm_args: the caller's, kept */
	size_t n_vmm_args;	/* at most VMM_ARGS_MAX */
};

struct tree {
	struct sbenv env;
	char *store;
	struct sandbox *sandboxes;
	unsigned next_seq;
};

/* Set up an empty tree on loop (the calling thread is the loop's). */
int tree_init(struct tree *t, uv_loop_t *loop, const struct tree_options *o);
/* Rebuild the sandboxes and their branch entries from the store (all
 * stopped). 0, or -errno (logged) if the store cannot be used. */
int tree_load_store(struct tree *t);
/* Free everything once the loop has ended (no job left, no front-end
 * reference left on any object). */
void tree_free(struct tree *t);

struct sandbox *tree_find_sandbox(struct tree *t, const char *name);
/* mkdir NAME: EINVAL (bad name), EEXIST, or the store's error. */
int tree_mkdir_sandbox(struct tree *t, const char *name, struct sandbox **ret);
/* rmdir NAME: a started sandbox is stopped first. Refused at once: ENOENT,
 * ENOTEMPTY (it has branches), EBUSY; else done(ctx, r). */
int tree_rmdir_sandbox(struct tree *t, const char *name, sb_done_fn done, void *ctx);

/* Unmount or signal: cancel every copy and stop every sandbox (launched VMMs
 * get SIGTERM, attached ones are let go of). idle(ctx) runs once no job is
 * left (perhaps at once). New commands get ESHUTDOWN from then on. */
void tree_shutdown(struct tree *t, void (*idle)(void *ctx), void *ctx);
