/* SPDX-License-Identifier: MIT
 * files.c — open files of the mount: open, read, write, flush, release.
 *
 * Generated files ("state", "status", "memory") are built when a read starts at offset
 * 0 and are opened with direct_io, so they are never stale (lxcfs style);
 * "log" and "config.json" are direct_io too ("wait" is wait.c). "vmstate" and "memory.bin" go
 * through the page cache: their content never changes once the branch
 * exists (memory.bin is the point-in-time image even while it is copied).
 * memory.bin reads are served from the store file with an fd buffer (splice)
 * once the branch is ready; before that, branch_read_memory() runs on a worker
 * because it may have to copy the range first.
 *
 * config.json is written into a buffer of the open file, checked as it grows
 * (a prefix that can no longer become valid fails the write) and committed by
 * flush (close) if it parses; ctl's write runs the command and is answered
 * when the command has finished.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define LOG_PREFIX ""
#include "common/error.h"
#include "common/log.h"
#include "common/util.h"
#include "branch/layer.h"
#include "fusefs/ops.h"
#include "sandbox/config.h"
#include "sandbox/ctl.h"
#include "sandbox/entry.h"
#include "sandbox/supervisor.h"
#include "sandbox/template.h"

static void fh_free(struct fh *h)
{
	if (!h)
		return;
	if (h->prev)
		h->prev->next = h->next;
	else if (h->fs && h->fs->open_files == h)
		h->fs->open_files = h->next;
	if (h->next)
		h->next->prev = h->prev;
	safe_close(h->fd);
	free(h->buf);
	entry_unref(h->br);
	sandbox_unref(h->sb);
	free(h);
}

static int open_store_file(const char *dir, const char *name)
{
	char path[4096];

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	return RET_NERRNO(open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
}

static int open_node(struct node *n, struct fuse_file_info *fi, struct fh *h)
{
	int acc = fi->flags & O_ACCMODE;
	struct sandbox *sb = n->sb;

	if (n->type == NODE_SB_CTL) {
		fi->direct_io = 1;
		return acc == O_WRONLY ? 0 : -EACCES;
	}
	if (n->type == NODE_SB_CONFIG) {
		fi->direct_io = 1;
		if (acc == O_RDONLY)
			return 0;
		if (sandbox_is_started(sb) || sb->busy) {
			sb_log(sb, "config.json is read-only while the sandbox is %s",
			       sb->busy ? sb->busy : sb_state_to_string(sb->state));
			return -EBUSY;
		}
		h->len = (fi->flags & O_TRUNC) ? 0 : sb->config_len;
		h->buf = malloc(MAX(h->len, 1));
		if (!h->buf)
			return -ENOMEM;
		memcpy(h->buf, sb->config ? sb->config : "", h->len);
		h->dirty = (fi->flags & O_TRUNC) != 0;
		return 0;
	}
	if (acc != O_RDONLY)
		return -EACCES;
	switch (n->type) {
	case NODE_SB_STATE:
	case NODE_SB_MEMORY:
	case NODE_BR_STATUS:
	case NODE_BR_WAIT:
		fi->direct_io = 1;
		return 0;
	case NODE_SB_LOG:
		fi->direct_io = 1;
		h->fd = open_store_file(sb->dir, "log");
		return h->fd < 0 ? h->fd : 0;
	case NODE_BR_VMSTATE:
		h->fd = open_store_file(n->br->dir, "vmstate");
		return h->fd < 0 ? -EIO : 0;
	case NODE_BR_MEMORY:
		/* Its bytes never change once the branch exists (reads during the
		 * copy already return the point-in-time image): keep the page cache. */
		fi->keep_cache = 1;
		return n->br->b ? 0 : -EIO;
	default:
		return -EISDIR;
	}
}

void files_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct forkfs *fs = req_fs(req);
	struct node *n = req_node(req, ino);
	struct fh *h;
	int r;

	if (node_is_dir(n)) {
		fuse_reply_err(req, EISDIR);
		return;
	}
	if (!node_is_linked(n)) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	h = calloc(1, sizeof(*h));
	if (!h) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	h->fd = -1;
	h->sb = sandbox_ref(n->sb);
	h->br = entry_ref(n->br);
	h->fs = fs;
	h->next = fs->open_files;
	if (h->next)
		h->next->prev = h;
	fs->open_files = h;
	r = open_node(n, fi, h);
	if (r < 0) {
		fh_free(h);
		fuse_reply_err(req, -r);
		return;
	}
	fi->fh = (uint64_t)(uintptr_t)h;
	if (fuse_reply_open(req, fi) != 0)
		fh_free(h);
}

void reply_slice(fuse_req_t req, const char *text, size_t len, size_t size, off_t off)
{
	if ((size_t)off >= len)
		fuse_reply_buf(req, NULL, 0);
	else
		fuse_reply_buf(req, text + off, MIN(size, len - (size_t)off));
}

static void reply_fd(fuse_req_t req, int fd, size_t size, off_t off)
{
	struct fuse_bufvec bv = FUSE_BUFVEC_INIT(size);

	bv.buf[0].flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK;
	bv.buf[0].fd = fd;
	bv.buf[0].pos = off;
	fuse_reply_data(req, &bv, FUSE_BUF_SPLICE_MOVE);
}

/* A ready branch's memory.bin: straight from the store's files, splicing
 * each run of pages from the layer that holds it (one run for a full image). */
static void reply_view(fuse_req_t req, struct layer_view *v, size_t size, off_t off)
{
	size_t max = size / PAGE_4K + 2, n;
	struct layer_seg *segs = calloc(max, sizeof(*segs));
	struct fuse_bufvec *bv = calloc(1, sizeof(*bv) + max * sizeof(bv->buf[0]));

	if (!segs || !bv) {
		fuse_reply_err(req, ENOMEM);
		goto out;
	}
	n = layer_view_segments(v, off, size, segs, max);
	bv->count = n;
	for (size_t i = 0; i < n; i++)
		bv->buf[i] = (struct fuse_buf){ .size = segs[i].len, .fd = segs[i].fd,
						.pos = segs[i].off,
						.flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK };
	fuse_reply_data(req, bv, FUSE_BUF_SPLICE_MOVE);
out:
	free(segs);
	free(bv);
}

/* A read of memory.bin during the copy: on a worker, which may copy the range
 * first, through its sandbox's lane (env.h: readers never hold the whole
 * pool). The job holds its own references; the worker touches only them. */
struct read_job {
	struct lane_job lane;
	fuse_req_t req;
	struct sbranch *br;	/* the loop's, for the log line */
	struct branch *b;	/* the worker's */
	struct sbenv *env;
	size_t size;
	off_t off;
	ssize_t r;
	char data[];
};

static void read_run(uv_work_t *w)
{
	struct read_job *j = w->data;

	j->r = branch_read_memory(j->b, j->data, j->size, j->off);
}

static void read_done(uv_work_t *w, int status)
{
	struct read_job *j = w->data;
	struct sbenv *env = j->env;

	if (j->r < 0) {
		sb_log(j->br->sb, "read of branches/%s/memory.bin at %lld: %s", j->br->tag,
		       (long long)j->off, strerror((int)-j->r));
		fuse_reply_err(j->req, (int)-j->r);
	} else {
		fuse_reply_buf(j->req, j->data, (size_t)j->r);
	}
	branch_unref(j->b);
	entry_unref(j->br);
	free(j);
	env_job_end(env);
}

static void read_memory(struct forkfs *fs, fuse_req_t req, struct sbranch *br, size_t size,
			off_t off)
{
	uint64_t total = branch_memory_size(br->b);
	struct layer_view *v;
	struct read_job *j;

	if (off < 0 || (uint64_t)off >= total) {
		fuse_reply_buf(req, NULL, 0);
		return;
	}
	size = (size_t)MIN((uint64_t)size, total - (uint64_t)off);
	v = branch_ready_view(br->b);
	if (v) {
		reply_view(req, v, size, off);
		layer_view_unref(v);
		return;
	}
	j = malloc(sizeof(*j) + size);
	if (!j) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	j->lane.work.data = j;
	j->req = req;
	j->br = entry_ref(br);
	j->b = branch_ref(br->b);
	j->env = &fs->tree.env;
	j->size = size;
	j->off = off;
	env_queue_lane_job(&fs->tree.env, &br->sb->read_lane, &j->lane, read_run, read_done);
}

int fh_generate(struct fh *h, enum node_type type)
{
	free(h->buf);
	h->len = 0;
	h->buf = malloc(STATUS_MAX);
	if (!h->buf)
		return -ENOMEM;
	if (type == NODE_SB_MEMORY)	/* a few ms for a large guest, on the loop */
		h->len = template_memory_text(h->sb->proc ? vmm_proc_pid(h->sb->proc) : 0, h->buf,
					      STATUS_MAX);
	else
		h->len = entry_status_text(h->br, h->buf, STATUS_MAX);
	return 0;
}

void files_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	struct forkfs *fs = req_fs(req);
	struct node *n = req_node(req, ino);
	struct fh *h = fh_get(fi);
	char tmp[64];

	switch (n->type) {
	case NODE_SB_CONFIG:
		if (h->buf)
			reply_slice(req, h->buf, h->len, size, off);
		else
			reply_slice(req, n->sb->config ? n->sb->config : "", n->sb->config_len, size,
				    off);
		return;
	case NODE_SB_STATE:
		state_line(n->sb, tmp, sizeof(tmp));
		reply_slice(req, tmp, strlen(tmp), size, off);
		return;
	case NODE_SB_MEMORY:
	case NODE_BR_STATUS:
		if ((off == 0 || !h->buf) && fh_generate(h, n->type) < 0) {
			fuse_reply_err(req, ENOMEM);
			return;
		}
		reply_slice(req, h->buf, h->len, size, off);
		return;
	case NODE_BR_WAIT:
		wait_read(fs, req, h, size, off);
		return;
	case NODE_SB_LOG:
	case NODE_BR_VMSTATE:
		reply_fd(req, h->fd, size, off);
		return;
	case NODE_BR_MEMORY:
		read_memory(fs, req, n->br, size, off);
		return;
	default:
		fuse_reply_err(req, EBADF);
	}
}

/* A ctl command's completion: the write is answered once it has finished. */
struct ctl_reply {
	fuse_req_t req;
	size_t size;
};

static void ctl_done(void *ctx, int r)
{
	struct ctl_reply *c = ctx;

	if (r < 0)
		fuse_reply_err(c->req, forkfs_errno(r));
	else
		fuse_reply_write(c->req, c->size);
	free(c);
}

static void write_ctl(struct forkfs *fs, fuse_req_t req, struct sandbox *sb, const char *data,
		      size_t size)
{
	struct ctl_reply *c = malloc(sizeof(*c));
	int r;

	if (!c) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	*c = (struct ctl_reply){ req, size };
	r = ctl_write(&fs->tree, sb, data, size, ctl_done, c);
	if (r < 0) {
		free(c);
		fuse_reply_err(req, -r);
	}
}

void files_write(fuse_req_t req, fuse_ino_t ino, const char *data, size_t size, off_t off,
		     struct fuse_file_info *fi)
{
	struct node *n = req_node(req, ino);
	struct fh *h = fh_get(fi);
	struct error err = ERROR_INIT;
	char *nb;
	int r;

	if (n->type == NODE_SB_CTL) {
		write_ctl(req_fs(req), req, n->sb, data, size);
		return;
	}
	if (n->type != NODE_SB_CONFIG || !h->buf) {
		fuse_reply_err(req, EBADF);
		return;
	}
	if (off < 0 || (uint64_t)off + size > CONFIG_MAX_BYTES) {
		sb_log(n->sb, "config.json: larger than %d bytes", CONFIG_MAX_BYTES);
		fuse_reply_err(req, EFBIG);
		return;
	}
	if ((size_t)off + size > h->len) {
		nb = realloc(h->buf, (size_t)off + size);
		if (!nb) {
			fuse_reply_err(req, ENOMEM);
			return;
		}
		h->buf = nb;
		if ((size_t)off > h->len)
			memset(h->buf + h->len, ' ', (size_t)off - h->len);
		h->len = (size_t)off + size;
	}
	memcpy(h->buf + off, data, size);
	h->dirty = true;
	h->written = true;
	r = config_check_prefix(h->buf, h->len, &err);
	if (r < 0) {
		sb_log(n->sb, "config.json rejected: %s", error_msg(&err));
		fuse_reply_err(req, -r);
		return;
	}
	fuse_reply_write(req, size);
}

void files_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct node *n = req_node(req, ino);
	struct fh *h = fh_get(fi);
	struct error err = ERROR_INIT;
	struct config *c = NULL;
	int r;

	/* A close before any write (the shell's dup2 dance after open) is not a
	 * verdict on the content yet. */
	if (n->type != NODE_SB_CONFIG || !h->buf || !h->dirty || !h->written) {
		fuse_reply_err(req, 0);
		return;
	}
	h->dirty = false;	/* judged once; a later write re-arms it */
	if (!n->sb->linked) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	if (sandbox_is_started(n->sb) || n->sb->busy) {
		sb_log(n->sb, "config.json not saved: %s", n->sb->busy ? "a command is in progress"
									: "the sandbox was started meanwhile");
		fuse_reply_err(req, EBUSY);
		return;
	}
	r = config_parse(h->buf, h->len, &c, &err);
	config_free(c);
	if (r < 0) {
		sb_log(n->sb, "config.json rejected: %s", error_msg(&err));
		fuse_reply_err(req, -r);
		return;
	}
	r = sandbox_set_config(n->sb, h->buf, h->len);
	if (r < 0) {
		sb_log(n->sb, "config.json: cannot save to the store: %s", strerror(-r));
		fuse_reply_err(req, EIO);
		return;
	}
	sb_log(n->sb, "config.json saved (%zu bytes)", h->len);
	fuse_reply_err(req, 0);
}

void files_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	fh_free(fh_get(fi));
	fuse_reply_err(req, 0);
}

void files_free_all(struct forkfs *fs)
{
	while (fs->open_files)
		fh_free(fs->open_files);
}
