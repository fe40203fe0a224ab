/* SPDX-License-Identifier: MIT
 * inode.c — the inode table: fuse_ino_t <-> struct node, lookup counts, forget.
 *
 * The inode scheme (libfuse passthrough_ll style):
 *
 *   - FUSE_ROOT_ID (1) is the mount's root; it is the node embedded in
 *     struct forkfs and is never freed.
 *   - Every other inode number is the address of a heap-allocated struct node
 *     (a _Static_assert checks that a pointer fits in fuse_ino_t). There is no
 *     table to search: the kernel only ever sends numbers we gave it and has
 *     not forgotten yet, so the pointer is valid whenever it arrives.
 *   - Each sandbox owns six nodes (its directory, config.json, ctl, state, log,
 *     branches/) and each branch entry four (its directory, status, vmstate,
 *     memory.bin), created together with the object and never re-created, so a
 *     name maps to the same inode for the object's whole life.
 *   - A node lives while it is linked in the tree (the owner's reference) or
 *     the kernel still holds lookups on it (nlookup > 0). rmdir unlinks it;
 *     forget drops nlookup; whichever comes last frees it. At exit the
 *     lookups end with the mount (node_forget_all).
 *   - Because a freed node's address may be reused for a new node, each node
 *     gets a fresh generation number from a counter that only grows, so the
 *     (ino, generation) pair of a removed object is never seen again.
 *
 * Only the loop thread touches nodes.
 */
#include <stdlib.h>

#include "fusefs/forkfs.h"

_Static_assert(sizeof(fuse_ino_t) >= sizeof(uintptr_t), "fuse_ino_t must hold a pointer");

static const char *const node_type_names[_NODE_TYPE_MAX] = {
	[NODE_ROOT] = "root",		[NODE_SB_DIR] = "sandbox",
	[NODE_SB_CONFIG] = "config.json", [NODE_SB_CTL] = "ctl",
	[NODE_SB_STATE] = "state",	[NODE_SB_LOG] = "log",
	[NODE_SB_BRANCHES] = "branches", [NODE_BR_DIR] = "branch",
	[NODE_BR_STATUS] = "status",	[NODE_BR_VMSTATE] = "vmstate",
	[NODE_BR_MEMORY] = "memory.bin",
};

const char *node_type_name(enum node_type t)
{
	return t < _NODE_TYPE_MAX ? node_type_names[t] : "?";
}

struct node *node_new(struct forkfs *fs, enum node_type type, struct sandbox *sb,
		      struct sbranch *br)
{
	struct node *n = calloc(1, sizeof(*n));

	if (!n)
		return NULL;
	n->type = type;
	n->generation = ++fs->next_generation;
	n->linked = true;
	n->sb = sb ? sandbox_ref(sb) : NULL;
	n->br = br ? sbranch_ref(br) : NULL;
	n->next = fs->nodes;
	if (n->next)
		n->next->pprev = &n->next;
	n->pprev = &fs->nodes;
	fs->nodes = n;
	return n;
}

struct node *node_from_ino(struct forkfs *fs, fuse_ino_t ino)
{
	if (ino == FUSE_ROOT_ID)
		return &fs->root;
	return (struct node *)(uintptr_t)ino;
}

fuse_ino_t node_ino(struct forkfs *fs, struct node *n)
{
	if (n == &fs->root)
		return FUSE_ROOT_ID;
	return (fuse_ino_t)(uintptr_t)n;
}

static void node_free(struct node *n)
{
	*n->pprev = n->next;
	if (n->next)
		n->next->pprev = n->pprev;
	/* Drop the owner references last: they may free the sandbox or entry. */
	sbranch_unref(n->br);
	sandbox_unref(n->sb);
	free(n);
}

/* The owner lets go of the node: it is no longer reachable by name. */
void node_unlink(struct node *n)
{
	if (!n || !n->linked)
		return;
	n->linked = false;
	if (n->nlookup == 0)
		node_free(n);
}

void node_forget(struct forkfs *fs, struct node *n, uint64_t nlookup)
{
	if (n == &fs->root)
		return;
	n->nlookup = nlookup > n->nlookup ? 0 : n->nlookup - nlookup;
	if (n->nlookup == 0 && !n->linked)
		node_free(n);
}

void node_forget_all(struct forkfs *fs)
{
	struct node *n;

	/* From the head each time: freeing one may free its owner, and so
	 * other nodes. */
	do {
		for (n = fs->nodes; n && n->linked; n = n->next)
			;
		if (n)
			node_free(n);
	} while (n);
}
