/* SPDX-License-Identifier: MIT
 * start.h — starting a sandbox: boot, restore or attach, as its config.json
 * says (config.h). See start.c for the steps.
 */
#pragma once

#include <limits.h>
#include <stdbool.h>

#include "sandbox/sandbox.h"

struct config;

/* Where a restore's images are. branch: a reference on the source branch
 * (its image, composed from its layers, completed first if it still
 * copies), NULL for files named in config.json. tmpl: a
 * reference on the source branch's template (template.h), NULL for files
 * named in config.json. */
struct restore_source {
	char snapshot_path[PATH_MAX];
	char mem_path[PATH_MAX];
	bool in_store;		/* a branch's files: no symlink is followed */
	struct branch *branch;
	struct template *tmpl;
};

/* Resolve {"restore":{"branch":"S/T"}} into src (the tree knows branches).
 * 0, or -errno with the reason logged into sb's log. */
typedef int (*start_resolve_fn)(void *ctx, struct sandbox *sb, const struct config *cfg,
				struct restore_source *src);

/* Start sb from its committed config.json. Called with the busy guard held
 * ("start"); see sandbox.h for the return and done conventions. Refused:
 * -EINVAL (already started, no or invalid config.json), -EBUSY (the previous
 * VMM is still exiting). done's r: 0, or -errno with "start failed: REASON"
 * in the log and the sandbox failed. */
int sandbox_start(struct sandbox *sb, start_resolve_fn resolve, void *resolve_ctx,
		  sb_done_fn done, void *ctx);
