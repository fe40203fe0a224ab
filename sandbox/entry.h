/* SPDX-License-Identifier: MIT
 * entry.h — a sandbox's branch entries: the name space side of a core
 * struct branch (branch/branch.h). mkdir of branches/TAG takes a branch on a
 * worker; rmdir cancels its copy and removes its store directory. No FUSE.
 *
 * An entry's tag is reserved from the moment its mkdir arrives (ENTRY_TAKING,
 * invisible), so a concurrent mkdir of the same tag gets EEXIST; rmdir makes
 * it invisible at once (ENTRY_DELETING) and keeps the tag reserved until the
 * store directory is gone.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "common/util.h"
#include "sandbox/sandbox.h"

enum entry_phase {
	ENTRY_TAKING,	/* mkdir in flight: reserved, invisible */
	ENTRY_VISIBLE,
	ENTRY_DELETING,	/* rmdir in flight: invisible, still reserved */
};

#define ENTRY_NODES 5

struct sbranch {
	unsigned refs;
	struct sandbox *sb;	/* a reference */
	char tag[NAME_LEN_MAX + 1];
	char *dir;		/* store directory */
	enum entry_phase phase;
	struct branch *b;	/* NULL if the store copy could not be loaded */
	struct template *tmpl;	/* its memory template while children use it (weak) */
	char load_error[128];	/* why b is NULL */
	struct timespec ctime;
	/* The FUSE layer's inodes of this entry's files; opaque here. */
	struct node *nodes[ENTRY_NODES];
	struct sbranch *next;	/* sb->branches */
};

struct sbranch *entry_ref(struct sbranch *br);
struct sbranch *entry_unref(struct sbranch *br);

/* The entry named tag; with visible_only, only a visible one. */
struct sbranch *entry_find(struct sandbox *sb, const char *tag, bool visible_only);
/* Rebuild sb's entries from its store directory (forkfs starting). */
void entry_load_all(struct sandbox *sb);

/* The "status" file: copying|ready|failed and "key: value" lines. */
size_t entry_status_text(struct sbranch *br, char *buf, size_t size);
/* A ready or failed branch's content no longer changes. */
bool entry_is_settled(struct sbranch *br);

typedef void (*entry_done_fn)(void *ctx, int r, struct sbranch *br);
/* mkdir branches/TAG: take a branch of the running sandbox. Refused at once
 * (< 0, logged): EINVAL (bad tag, not running), EEXIST, EBUSY, ESHUTDOWN.
 * Else done(ctx, r, br) runs on the loop: br is the new visible entry when
 * r == 0 (valid during the call; take a reference to keep it). */
int entry_mkdir(struct sandbox *sb, const char *tag, entry_done_fn done, void *ctx);
/* rmdir branches/TAG: cancel a running copy, remove the store directory.
 * -ENOENT at once if there is no such visible entry; -EBUSY (logged) while
 * sandboxes started from it run (they map its template); else done(ctx, r). */
int entry_rmdir(struct sandbox *sb, const char *tag, sb_done_fn done, void *ctx);
/* Shutdown: cancel every running copy of sb's branches. */
void entry_cancel_copies(struct sandbox *sb, const char *why);
