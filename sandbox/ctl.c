/* SPDX-License-Identifier: MIT
 * ctl.c — the ctl commands (see ctl.h): parse, check, take the busy guard,
 * and hand over to the sandbox (sandbox.h) or its start (start.h). The one
 * place that knows both a sandbox and the tree, for a restore from a branch
 * of another sandbox.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sandbox/config.h"
#include "sandbox/ctl.h"
#include "sandbox/entry.h"
#include "sandbox/start.h"
#include "sandbox/template.h"

/* {"restore":{"branch":"S/T"}}: a ready (or still copying) branch here. */
static int resolve_branch(void *ctx, struct sandbox *sb, const struct config *cfg,
			  struct restore_source *src)
{
	struct tree *t = ctx;
	struct sandbox *from = tree_find_sandbox(t, cfg->branch_sandbox);
	struct sbranch *br = from ? entry_find(from, cfg->branch_tag, true) : NULL;
	struct branch_status st;

	if (!br) {
		sb_log(sb, "start: restore source branch %s/%s does not exist",
		       cfg->branch_sandbox, cfg->branch_tag);
		return -ENOENT;
	}
	if (!br->b) {
		sb_log(sb, "start: restore source branch %s/%s is unusable", from->name, br->tag);
		return -EINVAL;
	}
	branch_get_status(br->b, &st);
	if (st.state == BRANCH_FAILED) {
		sb_log(sb, "start: restore source branch %s/%s failed: %s", from->name, br->tag,
		       st.error);
		return -EINVAL;
	}
	if (st.state == BRANCH_COPYING) {
		sb_log(sb, "start: restore source branch %s/%s is still copying: copying the rest"
		       " of its image first", from->name, br->tag);
	}
	src->branch = branch_ref(br->b);
	src->tmpl = template_get(&br->tmpl);
	if (!src->tmpl)
		return -ENOMEM;
	snprintf(src->snapshot_path, sizeof(src->snapshot_path), "%s/vmstate", br->dir);
	snprintf(src->mem_path, sizeof(src->mem_path), "%s/memory.bin", br->dir);
	src->in_store = true;
	return 0;
}

/* stop's completion: the guard is ours to release. */
struct stop_call {
	struct sandbox *sb;
	sb_done_fn done;
	void *ctx;
};

static void stop_done(void *userdata, int r)
{
	struct stop_call *c = userdata;

	sandbox_end(c->sb);
	c->done(c->ctx, r);
	free(c);
}

static int cmd_stop(struct sandbox *sb, sb_done_fn done, void *ctx)
{
	struct stop_call *c;

	if (!sandbox_is_started(sb)) {
		sb_log(sb, "stop refused: the sandbox is %s", sb_state_to_string(sb->state));
		return -EINVAL;
	}
	c = malloc(sizeof(*c));
	if (!c)
		return -ENOMEM;
	*c = (struct stop_call){ sb, done, ctx };
	if (sandbox_stop(sb, stop_done, c) < 0) {
		free(c);
		sb_log(sb, "stop: no VMM to stop");
		return -EINVAL;
	}
	return 0;
}

int ctl_write(struct tree *t, struct sandbox *sb, const char *data, size_t size,
	      sb_done_fn done, void *ctx)
{
	static const char *const cmds[] = { "start", "pause", "resume", "stop" };
	const char *cmd = NULL;
	size_t n = size;
	int r;

	if (n > 0 && data[n - 1] == '\n')
		n--;
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		if (n == strlen(cmds[i]) && !memcmp(data, cmds[i], n))
			cmd = cmds[i];
	if (!cmd) {
		char shown[16];

		if (n == 0 || n >= sizeof(shown) || memchr(data, 0, n)) {
			sb_log(sb, "ctl: invalid command (expected start, pause, resume or stop)");
		} else {
			memcpy(shown, data, n);
			shown[n] = 0;
			sb_log(sb, "ctl: unknown command \"%s\" (expected start, pause, resume or stop)",
			       shown);
		}
		return -EINVAL;
	}
	if (t->env.shutting_down)
		return -ESHUTDOWN;
	if (!sb->linked)	/* written through an fd opened before rmdir */
		return -ENOENT;
	r = sandbox_begin(sb, cmd, "ctl %s", cmd);
	if (r < 0)
		return r;
	if (!strcmp(cmd, "start"))
		r = sandbox_start(sb, resolve_branch, t, done, ctx);
	else if (!strcmp(cmd, "stop"))
		r = cmd_stop(sb, done, ctx);
	else
		r = sandbox_pause(sb, !strcmp(cmd, "pause"), done, ctx);
	if (r < 0)
		sandbox_end(sb);
	return r;
}
