/* SPDX-License-Identifier: MIT
 * tree.c — the sandboxes of one store (see tree.h).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define LOG_PREFIX ""
#include "common/log.h"
#include "common/util.h"
#include "branch/layer.h"
#include "sandbox/config.h"
#include "sandbox/entry.h"
#include "sandbox/store.h"
#include "sandbox/tree.h"

int tree_init(struct tree *t, uv_loop_t *loop, const struct tree_options *o)
{
	memset(t, 0, sizeof(*t));
	t->env.loop = loop;
	t->env.loop_thread = pthread_self();
	t->env.mode = o->mode;
	t->env.copy_rate = o->copy_rate;
	t->env.log_max = o->log_max;
	t->env.no_incremental = o->no_incremental;
	t->env.jail = o->jail;
	t->env.jail_id_first = o->jail_id_first;
	t->env.jail_id_count = o->jail_id_count ?: 1;
	t->env.allow_path = o->allow_path;
	t->env.n_allow_path = o->n_allow_path;
	t->env.vmm_args = o->vmm_args;
	t->env.n_vmm_args = o->n_vmm_args;
	t->env.vmm_output_to_stderr = o->vmm_output_to_stderr;
	t->store = strdup(o->store);
	t->env.vmm_path = strdup(o->vmm_path);
	t->env.run_dir = strdup(o->run_dir);
	t->env.sandboxes_dir = t->store ? store_path(t->store, "sandboxes") : NULL;
	if (!t->store || !t->env.vmm_path || !t->env.run_dir || !t->env.sandboxes_dir) {
		tree_free(t);
		return -ENOMEM;
	}
	return 0;
}

struct sandbox *tree_find_sandbox(struct tree *t, const char *name)
{
	for (struct sandbox *sb = t->sandboxes; sb; sb = sb->next)
		if (strcmp(sb->name, name) == 0)
			return sb;
	return NULL;
}

/* A sandbox object for NAME's store directory, in state. */
static int new_sandbox(struct tree *t, const char *name, enum sb_state state,
		       struct sandbox **ret)
{
	_cleanup_free_ char *dir = store_path(t->env.sandboxes_dir, name);

	if (!dir)
		return -ENOMEM;
	return sandbox_new(&t->env, name, dir, state, ++t->next_seq, ret);
}

static void link_sandbox(struct tree *t, struct sandbox *sb)
{
	sb->next = t->sandboxes;
	t->sandboxes = sb;
}

/* ---- loading the store ---- */

static int load_one(const char *name, void *ctx)
{
	struct tree *t = ctx;
	struct sandbox *sb;
	int r;

	r = new_sandbox(t, name, SB_STOPPED, &sb);
	if (r < 0)
		return r;
	if (store_read_config(sb->dir, CONFIG_MAX_BYTES, &sb->config, &sb->config_len) < 0) {
		sb->config = NULL;
		sb->config_len = 0;
	}
	entry_load_all(sb);
	sb_log(sb, "loaded from the store by forkfs pid %d: state stopped", (int)getpid());
	link_sandbox(t, sb);
	return 0;
}

int tree_load_store(struct tree *t)
{
	unsigned skipped = 0;
	int r;

	r = store_init(t->store, t->env.sandboxes_dir);
	if (r == -EPERM)
		return log_error_errno(r, "the store %s (and its sandboxes/) must be directories owned"
				       " by root or uid %d that nobody else can write to", t->store,
				       (int)geteuid());
	if (r < 0)
		return log_error_errno(r, "cannot create the store %s", t->env.sandboxes_dir);
	r = store_for_each_dir(t->env.sandboxes_dir, load_one, t, &skipped);
	if (r < 0)
		return log_error_errno(r, "cannot open %s", t->env.sandboxes_dir);
	if (skipped)
		log_warning("store: ignoring %u director%s of %s with an invalid name", skipped,
			    skipped == 1 ? "y" : "ies", t->env.sandboxes_dir);
	return 0;
}

/* ---- mkdir, rmdir ---- */

int tree_mkdir_sandbox(struct tree *t, const char *name, struct sandbox **ret)
{
	_cleanup_free_ char *dir = NULL;
	struct sandbox *sb;
	int r;

	assert_on_loop(&t->env);
	if (!name_is_valid(name)) {
		log_warning("mkdir: invalid sandbox name");
		return -EINVAL;
	}
	if (tree_find_sandbox(t, name))
		return -EEXIST;
	dir = store_path(t->env.sandboxes_dir, name);
	if (!dir)
		return -ENOMEM;
	r = store_create_sandbox(dir);
	if (r < 0)
		return log_error_errno(r, "mkdir %s", dir);
	r = new_sandbox(t, name, SB_CREATED, &sb);
	if (r < 0) {
		store_rm_rf(dir);
		return r;
	}
	link_sandbox(t, sb);
	sb_log(sb, "sandbox created");
	*ret = sb;
	return 0;
}

static void remove_sandbox(struct tree *t, struct sandbox *sb)
{
	int r;

	for (struct sandbox **p = &t->sandboxes; *p; p = &(*p)->next)
		if (*p == sb) {
			*p = sb->next;
			break;
		}
	sb->linked = false;
	/* Its hidden layers too, with no compaction pass running inside it. */
	r = layer_remove_tree(sb->dir);
	if (r < 0)
		log_warning_errno(r, "%s: cannot remove %s", sb->name, sb->dir);
	log_info("%s: sandbox removed", sb->name);
	sandbox_unref(sb);	/* the list's reference: sb may be gone from here */
}

struct rmdir_call {
	struct tree *t;
	struct sandbox *sb;
	sb_done_fn done;
	void *ctx;
};

static void rmdir_after_stop(void *userdata, int r)
{
	struct rmdir_call *c = userdata;
	struct sandbox *sb = c->sb;

	sandbox_end(sb);
	if (sb->branches) {	/* cannot happen: mkdir is refused while busy */
		c->done(c->ctx, -ENOTEMPTY);
	} else {
		remove_sandbox(c->t, sb);
		c->done(c->ctx, 0);
	}
	free(c);
}

int tree_rmdir_sandbox(struct tree *t, const char *name, sb_done_fn done, void *ctx)
{
	struct sandbox *sb = name_is_valid(name) ? tree_find_sandbox(t, name) : NULL;
	struct rmdir_call *c;
	int r;

	assert_on_loop(&t->env);
	if (!sb)
		return -ENOENT;
	if (sb->branches) {
		sb_log(sb, "rmdir refused: the sandbox still has branches");
		return -ENOTEMPTY;
	}
	if (sb->busy)
		return sandbox_begin(sb, "rmdir", "rmdir");
	if (sandbox_is_started(sb)) {
		c = calloc(1, sizeof(*c));
		if (!c)
			return -ENOMEM;
		*c = (struct rmdir_call){ t, sb, done, ctx };
		sandbox_begin(sb, "rmdir", "rmdir");
		sb_log(sb, "rmdir: stopping the sandbox first");
		r = sandbox_stop(sb, rmdir_after_stop, c);
		if (r == 0)
			return 0;
		sandbox_end(sb);
		free(c);
	}
	remove_sandbox(t, sb);
	done(ctx, 0);
	return 0;
}

/* ---- shutdown, and the end ---- */

void tree_shutdown(struct tree *t, void (*idle)(void *ctx), void *ctx)
{
	assert_on_loop(&t->env);
	if (t->env.shutting_down)
		return;
	t->env.shutting_down = true;
	t->env.idle = idle;
	t->env.idle_ctx = ctx;
	for (struct sandbox *sb = t->sandboxes; sb; sb = sb->next) {
		entry_cancel_copies(sb, "shutdown");
		if (sandbox_is_started(sb)) {
			sb_log(sb, "shutdown: %s the VMM", sb->attached ? "detaching from" : "stopping");
			sandbox_stop(sb, NULL, NULL);
		}
	}
	if (t->env.jobs == 0)
		idle(ctx);
}

void tree_free(struct tree *t)
{
	struct sandbox *sb;

	while ((sb = t->sandboxes)) {
		t->sandboxes = sb->next;
		while (sb->branches) {
			struct sbranch *br = sb->branches;

			sb->branches = br->next;
			entry_unref(br);
		}
		sb->vmm = vmm_unref(sb->vmm);
		if (sb->run_dir)
			rmdir(sb->run_dir);
		sandbox_unref(sb);
	}
	free(t->store);
	free(t->env.sandboxes_dir);
	free(t->env.vmm_path);
	free(t->env.run_dir);
	t->store = t->env.sandboxes_dir = t->env.vmm_path = t->env.run_dir = NULL;
}
