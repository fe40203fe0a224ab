/* SPDX-License-Identifier: MIT
 * ops.h — what the two halves of the FUSE operations share: ops.c (name
 * space, attributes, directories, the operations table) and files.c (open
 * files: config.json, ctl, state, log, status, vmstate, memory.bin).
 * Included by those two only.
 */
#pragma once

#define FUSE_USE_VERSION 34
#include <fuse_lowlevel.h>
#include <stdbool.h>
#include <stdint.h>

#include "fusefs/forkfs.h"

#define STATUS_MAX 4096

/* An open file. */
struct fh {
	struct sandbox *sb;	/* references */
	struct sbranch *br;
	char *buf;		/* config.json being written; status text */
	size_t len;
	bool dirty;		/* written or truncated since the last flush */
	bool written;		/* write(2) seen: flush judges the content */
	int fd;			/* log, vmstate */
	enum { FH_IO_OTHER, FH_IO_CACHED, FH_IO_PASSTHROUGH } io;	/* vmstate, memory.bin */
	struct forkfs *fs;	/* on fs->open_files until released */
	struct fh *prev, *next;
};

/* files.c: the text of a generated file kept per open file, made when a read
 * starts at 0 so later reads continue it: "memory" of h->sb (NODE_SB_MEMORY),
 * or "status" of h->br (NODE_BR_STATUS, also what "wait" answers). 0 or
 * -ENOMEM. reply_slice: answer a read of [off, off + size) of text. */
int fh_generate(struct fh *h, enum node_type type);
void reply_slice(fuse_req_t req, const char *text, size_t len, size_t size, off_t off);

/* wait.c: a read of branches/TAG/wait (wait_init/wait_shutdown: forkfs.h). */
void wait_read(struct forkfs *fs, fuse_req_t req, struct fh *h, size_t size, off_t off);

/* Ask for a capability the kernel offers (true), in init: with libfuse's
 * 64-bit flags where it has them (3.17), else the old 32-bit fields. */
static inline bool conn_want(struct fuse_conn_info *conn, uint64_t cap)
{
#if HAVE_DECL_FUSE_SET_FEATURE_FLAG
	return fuse_set_feature_flag(conn, cap);
#else
	if (!(conn->capable & cap))
		return false;
	conn->want |= (uint32_t)cap;
	return true;
#endif
}

static inline void conn_unwant(struct fuse_conn_info *conn, uint64_t cap)
{
#if HAVE_DECL_FUSE_SET_FEATURE_FLAG
	fuse_unset_feature_flag(conn, cap);
#else
	conn->want &= ~(uint32_t)cap;
#endif
}

static inline struct forkfs *req_fs(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

static inline struct fh *fh_get(struct fuse_file_info *fi)
{
	return (struct fh *)(uintptr_t)fi->fh;
}

static inline struct node *req_node(fuse_req_t req, fuse_ino_t ino)
{
	return node_from_ino(&req_fs(req)->inodes, ino);
}

/* ops.c */
/* The errno a failed operation answers with (positive): the ones forkfs(8)
 * documents pass, anything else (a VMM's refusal, a dropped connection) is EIO. */
int forkfs_errno(int r);
/* The "state" file: the state's name and a newline. */
const char *state_line(struct sandbox *sb, char *buf, size_t size);

/* files.c */
/* In init: ask for FUSE passthrough where it can be used, and log once
 * whether it is (and why not). */
void files_init(struct forkfs *fs, struct fuse_conn_info *conn);
void files_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void files_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		struct fuse_file_info *fi);
void files_write(fuse_req_t req, fuse_ino_t ino, const char *data, size_t size, off_t off,
		 struct fuse_file_info *fi);
void files_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void files_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
