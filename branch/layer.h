/* SPDX-License-Identifier: MIT
 * layer.h — the layered store behind incremental branches, free of FUSE.
 *
 * On disk, in each branch directory BRANCHES/TAG (and in the hidden
 * directories BRANCHES/.layer-ID that rmdir leaves while other branches need
 * a branch's pages):
 *   memory.bin  the branch's own pages at their image offsets: a sparse file
 *               (holes elsewhere) for an incremental branch, dense for a full
 *   pages.map   a header (struct layer_header: its id, its parent's id and
 *               tag, the page count) and, unless the layer is full, one bit
 *               per 4 KiB page saying which pages memory.bin holds. Replaced
 *               only atomically (rename), and only after the pages it claims
 *               are durable.
 * A directory without pages.map holds a full memory.bin (full-mode branches,
 * stores written before incremental branches).
 *
 * The dense image of a branch: each page from the nearest layer that holds
 * it, walking from the branch to its parent, the parent's parent, ... down to
 * a full layer. A parent is looked up as BRANCHES/TAG with the recorded id,
 * else as BRANCHES/.layer-ID. A struct layer_view resolves that once into an
 * index (one byte per page: which layer) and open fds, so a read never walks
 * the chain; a view stays correct while it is open, whatever the store does
 * meanwhile (removed layers live on through its fds).
 *
 * Keeping every image byte-identical (every store change takes one
 * process-wide lock for its decision and commit; data is copied outside it):
 *   - rmdir of a branch that others are incremental to renames it to
 *     .layer-ID (one rename); otherwise it is removed;
 *   - layer_compact() removes hidden layers nobody needs, folds a hidden layer
 *     into its only child, and rebases a branch whose chain is deeper than
 *     the limit onto the full layer at its bottom. A fold or rebase copies the
 *     pages the branch lacks from the layers it skips into its own
 *     memory.bin (where its map says it holds nothing, so its image does not
 *     change), fsyncs, then swaps its pages.map in one rename. A crash at any
 *     point leaves the old map or the new one, both complete.
 *   - on a store whose files can share extents (reflinks: XFS, btrfs; tried
 *     once per file system), every ready incremental branch is flattened
 *     instead: rebased onto nothing, its missing pages cloned from the
 *     layers below (copy_file_range shares their extents, no data moves).
 *     It is then a full layer, one file: FUSE passthrough can serve it and
 *     it needs no other layer, while the store holds its pages once.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define LAYER_MAP_FILE "pages.map"
#define LAYER_HIDDEN_PREFIX ".layer-"
#define LAYER_MAX_CHAIN 64	/* a longer chain is refused as damaged */

struct error;

struct layer_header {
	char magic[8];		/* "FKFSLAY1" */
	uint64_t id;		/* unique in the sandbox, never 0 */
	uint64_t parent_id;	/* 0: a full layer (no bitmap follows) */
	uint64_t npages;
	uint64_t own_pages;	/* pages memory.bin holds, less those whose
				 * extents it shares with other layers'
				 * (a flattened layer): what it stored */
	char parent_tag[256];	/* where the parent was when this was written */
};

/* A new layer id: larger than after (the parent's), unique in practice. */
uint64_t layer_new_id(uint64_t after);
/* Write dir's pages.map: bits (npages bits) for an incremental layer, NULL for
 * a full one. Atomic; durable unless !durable (then the caller fsyncs it,
 * and the directory, before anything relies on it). */
int layer_map_write(const char *dir, const struct layer_header *h, const uint64_t *bits,
		    bool durable);
/* Read dir's header (and, if ret_bits, the bitmap: NULL for a full layer).
 * -ENOENT when dir has no pages.map. */
int layer_map_read(const char *dir, struct layer_header *h, uint64_t **ret_bits);

struct layer_view;

/* The composed image of the branch in dir, size bytes. */
int layer_view_open(const char *dir, uint64_t size, struct layer_view **ret, struct error *err);
struct layer_view *layer_view_ref(struct layer_view *v);
struct layer_view *layer_view_unref(struct layer_view *v);
/* Layers the image is composed of (1: a full image in one file). */
unsigned layer_view_depth(const struct layer_view *v);
/* Pages the branch's own layer holds. */
uint64_t layer_view_own_pages(const struct layer_view *v);
/* The fd of the whole image when it is one file (depth 1), else -1. */
int layer_view_single_fd(const struct layer_view *v);
/* Read [off, off+len) of the image (within size). Bytes read or -errno. */
ssize_t layer_view_pread(const struct layer_view *v, void *buf, size_t len, off_t off);
/* Split [off, off+len) into runs that each come from one file: up to max of
 * them (fd, file offset = image offset, length). Returns the count. */
struct layer_seg {
	int fd;
	off_t off;
	size_t len;
};
size_t layer_view_segments(const struct layer_view *v, off_t off, size_t len,
			   struct layer_seg *segs, size_t max);
/* Write the whole dense image into out_fd (at the same offsets). */
int layer_view_export(const struct layer_view *v, int out_fd, struct error *err);

/* Changes whenever a layer_compact() or layer_remove() changed the store:
 * views opened before may hold fds of removed layers (still correct). */
uint64_t layer_generation(void);

/* rmdir of BRANCHES/tag: hidden as .layer-ID when another branch's map names
 * it as parent (children that are ready or copying, or hidden layers), else
 * removed. *ret_hidden says which. */
int layer_remove(const char *branches_dir, const char *tag, bool *ret_hidden);
/* Remove a whole directory tree of the store (a sandbox's) under the lock
 * that every layer change takes, so that no compaction pass renames or
 * removes a layer inside it meanwhile. */
int layer_remove_tree(const char *dir);
/* One maintenance pass over a sandbox's BRANCHES directory (see above).
 * max_depth: the longest chain a ready branch may keep. Returns the number
 * of changes, or -errno (err says why). */
int layer_compact(const char *branches_dir, unsigned max_depth, struct error *err);

/* The compactor: one background thread ("forkfs-compact") that runs
 * layer_compact(dir, LAYER_KEEP_DEPTH) for each requested directory in turn,
 * logging what it did. A pass interrupted by layer_compactor_stop() commits
 * nothing half-done (see above). Requests only queue until
 * layer_compactor_start(): a daemon calls it once it has forked (a thread
 * alive across fork() could leave a lock held in the child, and would not
 * exist there); from then on the thread starts on the first request. */
#define LAYER_KEEP_DEPTH 4
void layer_compact_request(const char *branches_dir);
void layer_compactor_start(void);
/* Stop the thread (at shutdown): an unfinished pass is abandoned. */
void layer_compactor_stop(void);
