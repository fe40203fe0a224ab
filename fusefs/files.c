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
 * FUSE passthrough (libfuse >= 3.16, CAP_SYS_ADMIN, not -o passthrough=off):
 * a READY branch's vmstate, and its memory.bin when the image is one file (a
 * full layer, not incremental layers), are opened with a backing id for that
 * store file, so the kernel reads it itself and reads never reach forkfs. A
 * branch still copying is never passed through: its reads must go through
 * the engine. The kernel holds all the opens of an inode in one mode: one
 * passed through while another uses the page cache fails with EIO, the
 * reverse too, and all passed-through ones share one backing file. So each
 * node counts its opens (struct node): the first open when none is left
 * picks the mode and the others follow it (a file opened during the copy
 * keeps the node on the page cache until it is closed), and the backing id
 * of the first passed-through open serves all of them until the last is
 * released. The kernel drops an open's mode before it sends RELEASE, so
 * these counts are never below its own. A backing id that cannot be made
 * turns passthrough off for the mount, with one log line.
 *
 * config.json is written into a buffer of the open file, checked as it grows
 * (a prefix that can no longer become valid fails the write) and committed by
 * flush (close) if it parses; ctl's write runs the command and is answered
 * when the command has finished.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define LOG_PREFIX ""
#include "common/error.h"
#include "common/log.h"
#include "common/nolinks.h"
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
	char path[PATH_MAX];

	if (snprintf(path, sizeof(path), "%s/%s", dir, name) >= (int)sizeof(path))
		return -ENAMETOOLONG;
	return open_nolinks(path, O_RDONLY, 0);
}

#ifdef HAVE_FUSE_PASSTHROUGH
/* Is CAP_SYS_ADMIN in our effective set? The kernel registers backing files
 * for it only. */
static bool has_sys_admin(void)
{
	unsigned long long eff = 0;
	bool found = false;
	char line[256];
	FILE *f = fopen("/proc/self/status", "re");

	if (!f)
		return false;
	while (!found && fgets(line, sizeof(line), f))
		found = sscanf(line, "CapEff: %llx", &eff) == 1;
	fclose(f);
	return found && (eff >> CAP_SYS_ADMIN) & 1;
}

/* The store file holding all of a node's bytes, for passthrough: a new fd,
 * or -errno when there is none (a branch still copying, a layered image).
 * vmstate's is the one this open already has (h->fd). */
static int backing_fd(struct node *n, const struct fh *h)
{
	struct branch_status st;

	if (!n->br->b)
		return -EIO;
	if (n->type == NODE_BR_MEMORY)
		return branch_ready_single_fd(n->br->b);
	branch_get_status(n->br->b, &st);
	if (st.state != BRANCH_READY)
		return -EAGAIN;
	return RET_NERRNO(fcntl(h->fd, F_DUPFD_CLOEXEC, 3));
}
#endif

void files_init(struct forkfs *fs, struct fuse_conn_info *conn)
{
#ifdef HAVE_FUSE_PASSTHROUGH
	const char *why = NULL;

	if (fs->passthrough_off)
		why = "-o passthrough=off";
	else if (!(conn->capable & FUSE_CAP_PASSTHROUGH))
		why = "the kernel does not offer it";
	else if (!has_sys_admin())
		why = "it needs CAP_SYS_ADMIN";
	else if (!conn_want(conn, FUSE_CAP_PASSTHROUGH))
		why = "libfuse refused it";
	fs->passthrough = !why;
	if (fs->passthrough)
		log_info("FUSE passthrough on: the kernel reads ready branches' files from the store");
	else
		log_info("FUSE passthrough off: %s", why);
#else
	fs->passthrough = false;
	log_info("FUSE passthrough off: forkfs was built with libfuse %d.%d, which lacks it",
		 FUSE_MAJOR_VERSION, FUSE_MINOR_VERSION);
#endif
}

/* Pass this open of a branch's vmstate or memory.bin through to its store
 * file if it can be (see the top of the file). 0 if it was, else -errno. */
static int open_passthrough(fuse_req_t req, struct node *n, struct fuse_file_info *fi,
			    const struct fh *h)
{
#ifdef HAVE_FUSE_PASSTHROUGH
	struct forkfs *fs = req_fs(req);
	int fd, id, e;

	if (n->backing_id > 0) {
		fi->backing_id = n->backing_id;
		return 0;
	}
	if (!fs->passthrough || n->opens_cached > 0)
		return -ENOTSUP;
	fd = backing_fd(n, h);
	if (fd < 0)
		return fd;
	id = fuse_passthrough_open(req, fd);
	e = errno;
	close(fd);
	if (id <= 0) {
		log_warning_errno(e, "FUSE passthrough off from now on: cannot pass branches/%s/%s through",
				  n->br->tag, n->type == NODE_BR_MEMORY ? "memory.bin" : "vmstate");
		fs->passthrough = false;
		return -e;
	}
	log_debug("passthrough: %s/branches/%s/%s, backing id %d", n->sb->name, n->br->tag,
		  n->type == NODE_BR_MEMORY ? "memory.bin" : "vmstate", id);
	n->backing_id = id;
	fi->backing_id = id;
	return 0;
#else
	return -ENOTSUP;
#endif
}

/* How an open of a branch's vmstate or memory.bin is read: passed through,
 * or through the page cache (memory.bin's is kept across opens: its bytes
 * never change once the branch exists, reads during the copy already return
 * the point-in-time image). Read-only, so a close has nothing to flush: no
 * FLUSH request for each close(2). */
static void open_io(fuse_req_t req, struct node *n, struct fuse_file_info *fi, struct fh *h)
{
	fi->noflush = 1;
	if (open_passthrough(req, n, fi, h) == 0) {
		n->opens_passthrough++;
		h->io = FH_IO_PASSTHROUGH;
		return;
	}
	fi->keep_cache = n->type == NODE_BR_MEMORY;
	n->opens_cached++;
	h->io = FH_IO_CACHED;
}

/* The end of an open counted by open_io(): the last passed-through one
 * closes the backing id. */
static void close_io(fuse_req_t req, struct node *n, struct fh *h)
{
	if (h->io == FH_IO_CACHED) {
		n->opens_cached--;
	} else if (h->io == FH_IO_PASSTHROUGH && --n->opens_passthrough == 0) {
#ifdef HAVE_FUSE_PASSTHROUGH
		fuse_passthrough_close(req, n->backing_id);
		log_debug("passthrough: %s/branches/%s: backing id %d closed", n->sb->name,
			  n->br->tag, n->backing_id);
#endif
		n->backing_id = 0;
	}
	h->io = FH_IO_OTHER;
}

static int open_node(fuse_req_t req, struct node *n, struct fuse_file_info *fi, struct fh *h)
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
		if (h->fd < 0)
			return -EIO;
		open_io(req, n, fi, h);
		return 0;
	case NODE_BR_MEMORY:
		if (!n->br->b)
			return -EIO;
		open_io(req, n, fi, h);
		return 0;
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
	r = open_node(req, n, fi, h);
	if (r < 0) {
		fh_free(h);
		fuse_reply_err(req, -r);
		return;
	}
	fi->fh = (uint64_t)(uintptr_t)h;
	if (fuse_reply_open(req, fi) != 0) {
		close_io(req, n, h);
		fh_free(h);
	}
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
	struct fh *h = fh_get(fi);

	close_io(req, req_node(req, ino), h);
	fh_free(h);
	fuse_reply_err(req, 0);
}

void files_free_all(struct forkfs *fs)
{
	while (fs->open_files)
		fh_free(fs->open_files);
}
