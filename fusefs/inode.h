/* SPDX-License-Identifier: MIT
 * inode.h — the FUSE layer's inodes: inode number <-> struct node, lookup
 * counts, forget. Loop thread only. See inode.c for the scheme.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

struct sandbox;
struct sbranch;

#define NODE_ROOT_INO 1	/* FUSE_ROOT_ID */

enum node_type {
	NODE_ROOT,
	/* a sandbox's files, in the order of struct sandbox's nodes[] */
	NODE_SB_DIR,
	NODE_SB_CONFIG,
	NODE_SB_CTL,
	NODE_SB_STATE,
	NODE_SB_LOG,
	NODE_SB_MEMORY,
	NODE_SB_BRANCHES,
	/* a branch entry's files, in the order of struct sbranch's nodes[] */
	NODE_BR_DIR,
	NODE_BR_STATUS,
	NODE_BR_WAIT,
	NODE_BR_VMSTATE,
	NODE_BR_MEMORY,
	_NODE_TYPE_MAX,
};

struct node {
	enum node_type type;
	uint64_t nlookup;	/* kernel references (lookup/mkdir minus forget) */
	uint64_t generation;
	struct sandbox *sb;	/* owning sandbox (a reference), NULL for the root */
	struct sbranch *br;	/* owning branch entry (a reference) or NULL */
	/* files.c: the open files of a branch's vmstate or memory.bin. The
	 * kernel has an inode's opens all in one mode at a time: through its
	 * page cache, or passed through to one backing file. */
	uint32_t opens_cached;
	uint32_t opens_passthrough;
	int backing_id;		/* while opens_passthrough > 0, else 0 */
	struct node *next, **pprev;	/* every node but the root */
};

struct inodes {
	struct node root;
	struct node *nodes;
	uint64_t next_generation;
	uint64_t key;		/* inode number = node address ^ key */
};

void inodes_init(struct inodes *in);
/* The node of an object's file, made on first use (NULL: out of memory).
 * A node made for a reply that then fails is dropped with node_drop_unused(). */
struct node *node_get(struct inodes *in, enum node_type type, struct sandbox *sb,
		      struct sbranch *br);
/* The node of an existing object's file, or NULL if none was made yet. */
struct node *node_peek(enum node_type type, struct sandbox *sb, struct sbranch *br);
void node_drop_unused(struct node *n);
struct node *node_from_ino(struct inodes *in, uint64_t ino);
uint64_t node_ino(struct inodes *in, struct node *n);
bool node_is_dir(const struct node *n);
/* Still reachable by name: its sandbox (and branch entry) are in the tree. */
bool node_is_linked(const struct node *n);
void node_forget(struct inodes *in, struct node *n, uint64_t nlookup);
/* The mount is gone and its lookups with it: free every node. */
void node_forget_all(struct inodes *in);
