/* SPDX-License-Identifier: MIT
 * inode.c — the inode table: inode number <-> struct node, lookup counts,
 * forget. No FUSE calls: the numbers are plain uint64_t here.
 *
 * The inode scheme (libfuse passthrough_ll style):
 *
 *   - NODE_ROOT_INO (1) is the mount's root; it is embedded in struct inodes
 *     and is never freed.
 *   - Every other inode number is the address of a heap-allocated struct node
 *     (a _Static_assert checks that a pointer fits), XORed with a random key
 *     drawn at start, so that st_ino does not show heap addresses (which
 *     would help an exploit) to whoever may stat the mount. There is no table
 *     to search: the kernel only ever sends numbers we gave it and has not
 *     forgotten yet, so the pointer is valid whenever it arrives. The key's
 *     low three bits are 0 and its top bit 1: a node is at least 8-byte
 *     aligned and a user-space address has its top bit clear, so no number
 *     is 0 or NODE_ROOT_INO.
 *   - A node stands for one file of one object: a sandbox's directory,
 *     config.json, ctl, state, log and branches/, or a branch entry's
 *     directory, status, vmstate and memory.bin. It is made when the kernel
 *     first looks the file up, remembered in the object's nodes[] slot (so a
 *     name maps to one inode while the kernel knows it), and freed when the
 *     kernel forgets it (nlookup drops to 0), clearing the slot. A node holds
 *     a reference on its objects, so they outlive it; whether the file is
 *     still reachable is the objects' state (node_is_linked), not the node's.
 *   - Because a freed node's address may be reused for a new node, each node
 *     gets a fresh generation number from a counter that only grows, so the
 *     (ino, generation) pair of a forgotten file is never seen again.
 */
#include <stdlib.h>
#include <sys/random.h>

#include "fusefs/inode.h"
#include "sandbox/entry.h"
#include "sandbox/sandbox.h"

_Static_assert(sizeof(uint64_t) >= sizeof(uintptr_t), "an inode number must hold a pointer");
_Static_assert(NODE_SB_BRANCHES - NODE_SB_DIR + 1 == SANDBOX_NODES, "sandbox node slots");
_Static_assert(NODE_BR_MEMORY - NODE_BR_DIR + 1 == ENTRY_NODES, "entry node slots");

void inodes_init(struct inodes *in)
{
	uint64_t key = 0;

	if (getrandom(&key, sizeof(key), 0) != sizeof(key))
		key = (uint64_t)(uintptr_t)&key * 0x9E3779B97F4A7C15ULL;	/* never in practice */
	in->key = (key & ~0x7ULL) | (1ULL << 63);
	in->root.type = NODE_ROOT;
	in->nodes = NULL;
	in->next_generation = 0;
}

static struct node **slot_of(enum node_type type, struct sandbox *sb, struct sbranch *br)
{
	if (type >= NODE_BR_DIR && type <= NODE_BR_MEMORY)
		return &br->nodes[type - NODE_BR_DIR];
	if (type >= NODE_SB_DIR && type <= NODE_SB_BRANCHES)
		return &sb->nodes[type - NODE_SB_DIR];
	return NULL;
}

struct node *node_peek(enum node_type type, struct sandbox *sb, struct sbranch *br)
{
	struct node **slot = slot_of(type, sb, br);

	return slot ? *slot : NULL;
}

struct node *node_get(struct inodes *in, enum node_type type, struct sandbox *sb,
		      struct sbranch *br)
{
	struct node **slot = slot_of(type, sb, br);
	struct node *n;

	if (!slot)
		return &in->root;
	if (*slot)
		return *slot;
	n = calloc(1, sizeof(*n));
	if (!n)
		return NULL;
	n->type = type;
	n->generation = ++in->next_generation;
	n->sb = sandbox_ref(sb);
	n->br = entry_ref(br);
	n->next = in->nodes;
	if (n->next)
		n->next->pprev = &n->next;
	n->pprev = &in->nodes;
	in->nodes = n;
	*slot = n;
	return n;
}

struct node *node_from_ino(struct inodes *in, uint64_t ino)
{
	if (ino == NODE_ROOT_INO)
		return &in->root;
	return (struct node *)(uintptr_t)(ino ^ in->key);
}

uint64_t node_ino(struct inodes *in, struct node *n)
{
	if (n == &in->root)
		return NODE_ROOT_INO;
	return (uint64_t)(uintptr_t)n ^ in->key;
}

bool node_is_dir(const struct node *n)
{
	return n->type == NODE_ROOT || n->type == NODE_SB_DIR || n->type == NODE_SB_BRANCHES ||
	       n->type == NODE_BR_DIR;
}

bool node_is_linked(const struct node *n)
{
	if (n->type == NODE_ROOT)
		return true;
	if (n->br && n->br->phase != ENTRY_VISIBLE)
		return false;
	return n->sb->linked;
}

static void node_free(struct node *n)
{
	*n->pprev = n->next;
	if (n->next)
		n->next->pprev = n->pprev;
	*slot_of(n->type, n->sb, n->br) = NULL;
	/* Drop the owner references last: they may free the sandbox or entry. */
	entry_unref(n->br);
	sandbox_unref(n->sb);
	free(n);
}

void node_drop_unused(struct node *n)
{
	if (n && n->type != NODE_ROOT && n->nlookup == 0)
		node_free(n);
}

void node_forget(struct inodes *in, struct node *n, uint64_t nlookup)
{
	if (n == &in->root)
		return;
	n->nlookup = nlookup > n->nlookup ? 0 : n->nlookup - nlookup;
	if (n->nlookup == 0)
		node_free(n);
}

void node_forget_all(struct inodes *in)
{
	while (in->nodes)
		node_free(in->nodes);
}
