/* SPDX-License-Identifier: MIT
 * ops.c — the FUSE low-level operations: decode a request, call the sandbox
 * lifecycle (sandbox/: the tree, a sandbox, a branch entry), reply — at once,
 * or from the completion callback the lifecycle calls when the command has
 * finished. Also the errno policy: which errors a user sees as themselves.
 * Runs on the loop thread only.
 *
 * Generated files ("state", "status") are built when a read starts at offset
 * 0 and are opened with direct_io, so they are never stale (lxcfs style);
 * "log" and "config.json" are direct_io too. "vmstate" and "memory.bin" go
 * through the page cache: their content never changes once the branch
 * exists (memory.bin is the point-in-time image even while it is copied).
 * memory.bin reads are served from the store file with an fd buffer (splice)
 * once the branch is ready; before that, branch_read_memory() runs on a worker
 * because it may have to copy the range first.
 *
 * Write access to the read-only files fails with EACCES (their mode says so,
 * root included); config.json cannot be opened for writing (EBUSY) while the
 * sandbox is started; anything else that is not supported is EPERM.
 */
#define FUSE_USE_VERSION 34
#include <errno.h>
#include <fuse_lowlevel.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#define LOG_PREFIX ""
#include "common/error.h"
#include "common/log.h"
#include "common/util.h"
#include "fusefs/forkfs.h"
#include "sandbox/config.h"
#include "sandbox/ctl.h"
#include "sandbox/entry.h"

#define STATUS_MAX 4096

static const double ENTRY_TIMEOUT = 1.0;

/* readdir's inode number of a file the kernel has not looked up (libfuse's
 * high-level API uses the same value without use_ino). */
#define UNKNOWN_INO 0xffffffffULL

_Static_assert(FUSE_ROOT_ID == NODE_ROOT_INO, "the root's inode number");

struct fh {
	struct sandbox *sb;	/* references */
	struct sbranch *br;
	char *buf;		/* config.json being written; status text */
	size_t len;
	bool dirty;		/* written or truncated since the last flush */
	bool written;		/* write(2) seen: flush judges the content */
	int fd;			/* log, vmstate */
};

static struct forkfs *req_fs(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

static struct fh *fh_get(struct fuse_file_info *fi)
{
	return (struct fh *)(uintptr_t)fi->fh;
}

static struct node *req_node(fuse_req_t req, fuse_ino_t ino)
{
	return node_from_ino(&req_fs(req)->inodes, ino);
}

/* The errno a failed operation answers with (positive): the ones forkfs(8)
 * documents pass, anything else (a VMM's refusal, a dropped connection) is EIO. */
static int forkfs_errno(int r)
{
	switch (-r) {
	case EINVAL: case EEXIST: case EBUSY: case ENOTEMPTY: case ENOENT: case EFBIG:
	case EACCES: case EPERM: case EIO: case ETIMEDOUT: case ENOTSUP: case ENOSPC:
	case ENOMEM: case ESHUTDOWN:
		return -r;
	default:
		return EIO;
	}
}

static const char *state_line(struct sandbox *sb, char *buf, size_t size)
{
	snprintf(buf, size, "%s\n", sb_state_to_string(sb->state));
	return buf;
}

static void br_file_attr(struct sbranch *br, const char *file, struct stat *st)
{
	char path[4096];
	struct stat s;

	snprintf(path, sizeof(path), "%s/%s", br->dir, file);
	if (stat(path, &s) == 0) {
		st->st_size = s.st_size;
		st->st_blocks = s.st_blocks;
	}
}

static void fill_attr(struct forkfs *fs, struct node *n, struct stat *st)
{
	mode_t bmode = fs->branch_file_mode & 0777;
	struct sandbox *sb = n->sb;
	struct sbranch *br = n->br;
	char tmp[STATUS_MAX];

	memset(st, 0, sizeof(*st));
	st->st_ino = node_ino(&fs->inodes, n);
	st->st_uid = fs->uid;
	st->st_gid = fs->gid;
	st->st_nlink = 1;
	st->st_blksize = 128 * 1024;
	if (br)
		st->st_atim = st->st_mtim = st->st_ctim = br->ctime;
	else if (sb)
		st->st_atim = st->st_mtim = st->st_ctim = sb->ctime;
	switch (n->type) {
	case NODE_ROOT:
	case NODE_SB_DIR:
	case NODE_SB_BRANCHES:
		st->st_mode = S_IFDIR | 0755;
		st->st_nlink = 2;
		break;
	case NODE_BR_DIR:
		/* Directories get x where the files get r. */
		st->st_mode = S_IFDIR | bmode | ((bmode & 0444) >> 2);
		st->st_nlink = 2;
		break;
	case NODE_SB_CONFIG:
		st->st_mode = S_IFREG | (sandbox_is_started(sb) ? 0444 : 0644);
		st->st_size = (off_t)sb->config_len;
		break;
	case NODE_SB_CTL:
		st->st_mode = S_IFREG | 0200;
		break;
	case NODE_SB_STATE:
		st->st_mode = S_IFREG | 0444;
		st->st_size = (off_t)strlen(state_line(sb, tmp, sizeof(tmp)));
		break;
	case NODE_SB_LOG: {
		struct stat s;

		st->st_mode = S_IFREG | 0444;
		if (fstat(sb->log_fd, &s) == 0)
			st->st_size = s.st_size;
		break;
	}
	case NODE_BR_STATUS:
		st->st_mode = S_IFREG | bmode;
		st->st_size = (off_t)entry_status_text(br, tmp, sizeof(tmp));
		break;
	case NODE_BR_VMSTATE:
		st->st_mode = S_IFREG | bmode;
		br_file_attr(br, "vmstate", st);
		break;
	case NODE_BR_MEMORY: {
		struct branch_status bs;

		st->st_mode = S_IFREG | bmode;
		if (!br->b)
			break;
		branch_get_status(br->b, &bs);
		if (bs.state == BRANCH_COPYING)
			st->st_blocks = (blkcnt_t)(bs.bytes_copied / 512);
		else
			br_file_attr(br, "memory.bin", st);
		st->st_size = (off_t)branch_memory_size(br->b);
		break;
	}
	default:
		break;
	}
}

/* Directories, and a branch's files once its copy has ended, do not change:
 * the kernel may cache their attributes (a read of memory.bin through the page
 * cache then costs no GETATTR). Everything else is never cached: status,
 * state and log change at any time, and memory.bin's st_blocks grows while it
 * copies. */
static double attr_timeout(struct node *n)
{
	if (node_is_dir(n))
		return ENTRY_TIMEOUT;
	if ((n->type == NODE_BR_MEMORY || n->type == NODE_BR_VMSTATE) && n->br->b &&
	    entry_is_settled(n->br))
		return ENTRY_TIMEOUT;
	return 0;
}

/* Answer a lookup (or mkdir) with n, which may have just been made. */
static void reply_entry(struct forkfs *fs, fuse_req_t req, struct node *n)
{
	struct fuse_entry_param e = { 0 };

	if (!n) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	e.ino = node_ino(&fs->inodes, n);
	e.generation = n->generation;
	fill_attr(fs, n, &e.attr);
	e.attr_timeout = attr_timeout(n);
	e.entry_timeout = ENTRY_TIMEOUT;
	if (fuse_reply_entry(req, &e) == 0)
		n->nlookup++;
	else
		node_drop_unused(n);
}

/* A completion that answers with an error or success (rmdir). */
static void reply_status(void *ctx, int r)
{
	fuse_reply_err(ctx, r < 0 ? forkfs_errno(r) : 0);
}

/* ---- name space ---- */

static const struct {
	const char *name;
	enum node_type type;
} sb_files[] = {
	{ "config.json", NODE_SB_CONFIG }, { "ctl", NODE_SB_CTL }, { "state", NODE_SB_STATE },
	{ "log", NODE_SB_LOG }, { "branches", NODE_SB_BRANCHES },
}, br_files[] = {
	{ "status", NODE_BR_STATUS }, { "vmstate", NODE_BR_VMSTATE },
	{ "memory.bin", NODE_BR_MEMORY },
};

/* What name in directory p is: *ret_type of *ret_sb / *ret_br. false: nothing. */
static bool find_child(struct forkfs *fs, struct node *p, const char *name,
		       enum node_type *ret_type, struct sandbox **ret_sb, struct sbranch **ret_br)
{
	struct sandbox *sb = p->sb;
	struct sbranch *br = NULL;

	if (!node_is_linked(p))
		return false;
	switch (p->type) {
	case NODE_ROOT:
		sb = name_is_valid(name) ? tree_find_sandbox(&fs->tree, name) : NULL;
		*ret_type = NODE_SB_DIR;
		break;
	case NODE_SB_DIR:
		for (size_t i = 0; i < ARRAY_SIZE(sb_files); i++)
			if (!strcmp(name, sb_files[i].name)) {
				*ret_type = sb_files[i].type;
				*ret_sb = sb;
				*ret_br = NULL;
				return true;
			}
		return false;
	case NODE_SB_BRANCHES:
		br = name_is_valid(name) ? entry_find(sb, name, true) : NULL;
		if (!br)
			return false;
		*ret_type = NODE_BR_DIR;
		break;
	case NODE_BR_DIR:
		br = p->br;
		for (size_t i = 0; i < ARRAY_SIZE(br_files); i++)
			if (!strcmp(name, br_files[i].name)) {
				*ret_type = br_files[i].type;
				*ret_sb = sb;
				*ret_br = br;
				return true;
			}
		return false;
	default:
		return false;
	}
	*ret_sb = sb;
	*ret_br = br;
	return sb != NULL;
}

static bool has_child(struct forkfs *fs, struct node *p, const char *name)
{
	enum node_type t;
	struct sandbox *sb;
	struct sbranch *br;

	return find_child(fs, p, name, &t, &sb, &br);
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct forkfs *fs = req_fs(req);
	struct node *p = req_node(req, parent);
	enum node_type type;
	struct sandbox *sb;
	struct sbranch *br;

	if (!node_is_dir(p)) {
		fuse_reply_err(req, ENOTDIR);
		return;
	}
	if (!find_child(fs, p, name, &type, &sb, &br)) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	reply_entry(fs, req, node_get(&fs->inodes, type, sb, br));
}

static void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	node_forget(&req_fs(req)->inodes, req_node(req, ino), nlookup);
	fuse_reply_none(req);
}

static void op_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
	struct forkfs *fs = req_fs(req);

	for (size_t i = 0; i < count; i++)
		node_forget(&fs->inodes, node_from_ino(&fs->inodes, forgets[i].ino),
			    forgets[i].nlookup);
	fuse_reply_none(req);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct forkfs *fs = req_fs(req);
	struct node *n = req_node(req, ino);
	struct stat st;

	fill_attr(fs, n, &st);
	fuse_reply_attr(req, &st, attr_timeout(n));
}

static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
		       struct fuse_file_info *fi)
{
	struct forkfs *fs = req_fs(req);
	struct node *n = req_node(req, ino);
	struct fh *h = fi ? fh_get(fi) : NULL;
	struct stat st;

	if (to_set & (FUSE_SET_ATTR_MODE | FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)) {
		fuse_reply_err(req, EPERM);
		return;
	}
	if (to_set & FUSE_SET_ATTR_SIZE) {
		if (n->type == NODE_SB_CTL) {
			/* O_TRUNC of a command file: nothing to truncate. */
		} else if (n->type != NODE_SB_CONFIG) {
			fuse_reply_err(req, EACCES);
			return;
		} else if (h && h->buf) {
			if ((size_t)attr->st_size > h->len) {
				fuse_reply_err(req, EINVAL);
				return;
			}
			h->len = (size_t)attr->st_size;
			h->dirty = true;
		} else if ((size_t)attr->st_size != n->sb->config_len) {
			fuse_reply_err(req, sandbox_is_started(n->sb) ? EBUSY : EINVAL);
			return;
		}
	}
	fill_attr(fs, n, &st);
	if (h && h->buf && n->type == NODE_SB_CONFIG)
		st.st_size = (off_t)h->len;
	fuse_reply_attr(req, &st, 0);
}

/* ---- directories ---- */

static void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	if (!node_is_dir(req_node(req, ino)))
		fuse_reply_err(req, ENOTDIR);
	else
		fuse_reply_open(req, fi);
}

struct dent {
	const char *name;
	bool dir;
	fuse_ino_t ino;
};

/* The inode number of a file for readdir: its node's if the kernel knows
 * it, else "unknown" (as libfuse's high-level API reports without use_ino);
 * readdir does not make nodes, it is not a lookup. */
static fuse_ino_t dent_ino(struct forkfs *fs, enum node_type t, struct sandbox *sb,
			   struct sbranch *br)
{
	struct node *n = node_peek(t, sb, br);

	return n ? node_ino(&fs->inodes, n) : UNKNOWN_INO;
}

static size_t list_dir(struct forkfs *fs, struct node *d, struct dent **ret)
{
	struct dent *v;
	size_t n = 2, k = 0;

	if (d->type == NODE_ROOT)
		for (struct sandbox *sb = fs->tree.sandboxes; sb; sb = sb->next)
			n++;
	else if (d->type == NODE_SB_BRANCHES)
		for (struct sbranch *br = d->sb->branches; br; br = br->next)
			n++;
	else
		n += ARRAY_SIZE(sb_files);
	v = calloc(n, sizeof(*v));
	if (!v)
		return 0;
	v[k++] = (struct dent){ ".", true, node_ino(&fs->inodes, d) };
	v[k++] = (struct dent){ "..", true,
				d->type == NODE_SB_BRANCHES ? dent_ino(fs, NODE_SB_DIR, d->sb, NULL)
				: d->type == NODE_BR_DIR ? dent_ino(fs, NODE_SB_BRANCHES, d->sb, NULL)
							 : FUSE_ROOT_ID };
	if (!node_is_linked(d)) {
		/* removed: only . and .. */
	} else if (d->type == NODE_ROOT) {
		for (struct sandbox *sb = fs->tree.sandboxes; sb; sb = sb->next)
			v[k++] = (struct dent){ sb->name, true, dent_ino(fs, NODE_SB_DIR, sb, NULL) };
	} else if (d->type == NODE_SB_DIR) {
		for (size_t i = 0; i < ARRAY_SIZE(sb_files); i++)
			v[k++] = (struct dent){ sb_files[i].name, sb_files[i].type == NODE_SB_BRANCHES,
						dent_ino(fs, sb_files[i].type, d->sb, NULL) };
	} else if (d->type == NODE_SB_BRANCHES) {
		for (struct sbranch *br = d->sb->branches; br; br = br->next)
			if (br->phase == ENTRY_VISIBLE)
				v[k++] = (struct dent){ br->tag, true,
							dent_ino(fs, NODE_BR_DIR, d->sb, br) };
	} else if (d->type == NODE_BR_DIR) {
		for (size_t i = 0; i < ARRAY_SIZE(br_files); i++)
			v[k++] = (struct dent){ br_files[i].name, false,
						dent_ino(fs, br_files[i].type, d->sb, d->br) };
	}
	*ret = v;
	return k;
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	struct forkfs *fs = req_fs(req);
	struct node *d = req_node(req, ino);
	_cleanup_free_ struct dent *v = NULL;
	_cleanup_free_ char *buf = malloc(size);
	size_t n = list_dir(fs, d, &v), used = 0;

	if (!buf || !v) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	for (size_t i = (size_t)off; i < n; i++) {
		struct stat st = { 0 };
		size_t need;

		st.st_ino = v[i].ino;
		st.st_mode = v[i].dir ? S_IFDIR : S_IFREG;
		need = fuse_add_direntry(req, buf + used, size - used, v[i].name, &st, (off_t)i + 1);
		if (need > size - used)
			break;
		used += need;
	}
	fuse_reply_buf(req, buf, used);
}

static void mkdir_branch_done(void *ctx, int r, struct sbranch *br)
{
	fuse_req_t req = ctx;
	struct forkfs *fs = req_fs(req);

	if (r < 0)
		fuse_reply_err(req, forkfs_errno(r));
	else
		reply_entry(fs, req, node_get(&fs->inodes, NODE_BR_DIR, br->sb, br));
}

static void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	struct forkfs *fs = req_fs(req);
	struct node *p = req_node(req, parent);
	struct sandbox *sb;
	int r;

	if (fs->tree.env.shutting_down) {
		fuse_reply_err(req, ESHUTDOWN);
		return;
	}
	if (p->type == NODE_ROOT) {
		r = tree_mkdir_sandbox(&fs->tree, name, &sb);
		if (r < 0)
			fuse_reply_err(req, -r);
		else
			reply_entry(fs, req, node_get(&fs->inodes, NODE_SB_DIR, sb, NULL));
		return;
	}
	if (p->type == NODE_SB_BRANCHES && node_is_linked(p)) {
		r = entry_mkdir(p->sb, name, mkdir_branch_done, req);
		if (r < 0)
			fuse_reply_err(req, -r);
		return;
	}
	fuse_reply_err(req, EPERM);
}

static void op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct forkfs *fs = req_fs(req);
	struct node *p = req_node(req, parent);
	int r;

	if (fs->tree.env.shutting_down)
		r = -ESHUTDOWN;
	else if (p->type == NODE_ROOT)
		r = tree_rmdir_sandbox(&fs->tree, name, reply_status, req);
	else if (p->type == NODE_SB_BRANCHES && node_is_linked(p))
		r = entry_rmdir(p->sb, name, reply_status, req);
	else
		r = has_child(fs, p, name) ? -EPERM : -ENOENT;
	if (r < 0)
		fuse_reply_err(req, -r);
}

static void op_deny_name(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	fuse_reply_err(req, EPERM);
}

/* Links are files created by the user too: EPERM, as forkfs(8) says, not
 * the ENOSYS an absent handler would give. */
static void op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
	fuse_reply_err(req, EPERM);
}

static void op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
	fuse_reply_err(req, EPERM);
}

static void op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev)
{
	fuse_reply_err(req, EPERM);
}

static void op_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		      struct fuse_file_info *fi)
{
	fuse_reply_err(req, has_child(req_fs(req), req_node(req, parent), name) ? EEXIST : EPERM);
}

static void op_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
		      const char *newname, unsigned int flags)
{
	fuse_reply_err(req, EPERM);
}

/* ---- files ---- */

static void fh_free(struct fh *h)
{
	if (!h)
		return;
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
	return RET_NERRNO(open(path, O_RDONLY | O_CLOEXEC));
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
	case NODE_BR_STATUS:
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

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
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

static void reply_slice(fuse_req_t req, const char *text, size_t len, size_t size, off_t off)
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

/* A read of memory.bin during the copy: on a worker, which may copy the range
 * first. The job holds its own references; the worker touches only them. */
struct read_job {
	uv_work_t work;
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
	struct read_job *j;
	int fd;

	if (off < 0 || (uint64_t)off >= total) {
		fuse_reply_buf(req, NULL, 0);
		return;
	}
	size = (size_t)MIN((uint64_t)size, total - (uint64_t)off);
	fd = branch_memory_fd(br->b);
	if (fd >= 0) {
		reply_fd(req, fd, size, off);
		return;
	}
	j = malloc(sizeof(*j) + size);
	if (!j) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	j->work.data = j;
	j->req = req;
	j->br = entry_ref(br);
	j->b = branch_ref(br->b);
	j->env = &fs->tree.env;
	j->size = size;
	j->off = off;
	env_queue_job(&fs->tree.env, &j->work, read_run, read_done);
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
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
	case NODE_BR_STATUS:
		if (off == 0 || !h->buf) {
			free(h->buf);
			h->buf = malloc(STATUS_MAX);
			if (!h->buf) {
				fuse_reply_err(req, ENOMEM);
				return;
			}
			h->len = entry_status_text(n->br, h->buf, STATUS_MAX);
		}
		reply_slice(req, h->buf, h->len, size, off);
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

static void op_write(fuse_req_t req, fuse_ino_t ino, const char *data, size_t size, off_t off,
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

static void op_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
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

static void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	fh_free(fh_get(fi));
	fuse_reply_err(req, 0);
}

static void op_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct statvfs sv;

	if (statvfs(req_fs(req)->tree.store, &sv) < 0)
		fuse_reply_err(req, errno);
	else
		fuse_reply_statfs(req, &sv);
}
static void op_init(void *userdata, struct fuse_conn_info *conn)
{
	if (conn->capable & FUSE_CAP_ATOMIC_O_TRUNC)
		conn->want |= FUSE_CAP_ATOMIC_O_TRUNC;
	if (conn->capable & FUSE_CAP_SPLICE_WRITE)
		conn->want |= FUSE_CAP_SPLICE_WRITE;
	/* No write-back cache: config.json and ctl writes must reach us as written. */
	conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
}

const struct fuse_lowlevel_ops forkfs_ops = {
	.init = op_init,
	.lookup = op_lookup,
	.forget = op_forget,
	.forget_multi = op_forget_multi,
	.getattr = op_getattr,
	.setattr = op_setattr,
	.opendir = op_opendir,
	.readdir = op_readdir,
	.mkdir = op_mkdir,
	.rmdir = op_rmdir,
	.unlink = op_deny_name,
	.mknod = op_mknod,
	.symlink = op_symlink,
	.link = op_link,
	.create = op_create,
	.rename = op_rename,
	.open = op_open,
	.read = op_read,
	.write = op_write,
	.flush = op_flush,
	.release = op_release,
	.statfs = op_statfs,
};
