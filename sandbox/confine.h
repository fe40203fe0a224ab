/* SPDX-License-Identifier: MIT
 * confine.h — what a jailed VMM may see, built for one start on a worker:
 * the files config.json names, opened and checked by forkfs, the jail spec
 * that binds them into the VMM's root, and config.json's paths rewritten to
 * the names the VMM sees there (forkfs(8), SECURITY).
 */
#pragma once

#include <json-c/json.h>
#include <limits.h>
#include <stdbool.h>
#include <sys/types.h>

#include "common/error.h"
#include "sandbox/jail.h"

#define CONFINE_API_SOCKET "/run/api.sock"	/* the VMM's API socket, in its root */
#define CONFINE_SNAPSHOTS "/snapshots"		/* where the VMM writes snapshots */

/* Where config.json's files may be (forkfs(8), SECURITY): a read-only file
 * everyone may read, anywhere; any other file only beneath the store or one
 * of allow. */
struct confine_policy {
	const char *store;
	char **allow;
	size_t n_allow;
};

struct confine {
	struct confine_policy policy;
	struct jail_spec spec;
	int fds[JAIL_MAX_FILES + 1];	/* jail_nfds(&spec) of them, ours */
};

/* A jail rooted at root (host path), for uid/gid, in cgroup (name), with the
 * snapshots directory out_dir (host path on the store's file system: made
 * here, owned by uid). root NULL: no jail; the files are checked all the
 * same, and config.json's paths are left as they are. */
int confine_init(struct confine *c, const struct confine_policy *policy, const char *root,
		 const char *out_dir, uid_t uid, gid_t gid, const char *cgroup, struct error *err);
/* Boot: bind the kernel, initrd, drives, logger and metrics files of the
 * config (root), whose paths are rewritten in place; size the cgroup. */
int confine_boot(struct confine *c, json_object *root, struct error *err);
/* Restore: bind the vmstate (as "vmstate") and the memory image (as
 * "memory", for a VMM that maps the file itself); in_store: no symlink
 * followed. *ret_mem (ret_mem not NULL): the checked memory image, opened
 * for reading. */
int confine_restore(struct confine *c, const char *snapshot_path, const char *mem_path,
		    bool in_store, int *ret_mem, struct error *err);
/* In a jail, the VMM inherits memfd as /proc/self/fd/JAIL_INHERIT_FD. */
int confine_inherit(struct confine *c, int memfd, struct error *err);
void confine_done(struct confine *c);
