/* SPDX-License-Identifier: MIT
 * ctl.h — a sandbox's "ctl" file: the commands start, pause, resume, stop.
 */
#pragma once

#include <stddef.h>

#include "sandbox/tree.h"

/* Run the command written to sb's ctl (data: "start\n", ...). Refused at
 * once (< 0, with a log line): EINVAL (unknown command, or one the state
 * does not allow), EBUSY, ESHUTDOWN, ENOENT (the sandbox was removed).
 * Else done(ctx, r) runs on the loop once the command has finished, so that
 * "echo start > ctl; cat state" shows "running". */
int ctl_write(struct tree *t, struct sandbox *sb, const char *data, size_t size,
	      sb_done_fn done, void *ctx);
