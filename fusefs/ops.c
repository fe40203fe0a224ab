/* SPDX-License-Identifier: MIT
 * ops.c — the FUSE low-level operations table, and the operations on names
 * and attributes: lookup, forget, getattr, setattr, readdir, mkdir, rmdir,
 * statfs, and the refusals. Each decodes a request, calls the sandbox
 * lifecycle (sandbox/: the tree, a sandbox, a branch entry) and replies — at
 * once, or from the completion callback the lifecycle calls when the command
 * has finished. Open files are files.c. Also the errno policy: which errors a
 * user sees as themselves. Runs on the loop thread only.
 *
 * Write access to the read-only files fails with EACCES (their mode says so,
 * root included); config.json cannot be opened for writing (EBUSY) while the
 * sandbox is started; anything else that is not supported is EPERM.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

#define LOG_PREFIX ""
#include "common/log.h"
#include "common/util.h"
#include "fusefs/ops.h"
#include "sandbox/entry.h"

static const double ENTRY_TIMEOUT = 1.0;

/* readdir's inode number of a file the kernel has not looked up (libfuse's
 * high-level API uses the same value without use_ino). */
#define UNKNOWN_INO 0xffffffffULL

_Static_assert(FUSE_ROOT_ID == NODE_ROOT_INO, "the root's inode number");

int forkfs_errno(int r)
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

const char *state_line(struct sandbox *sb, char *buf, size_t size)
{
	if (sb->state == SB_RUNNING && sb->vmm && vmm_resume_pending(sb->vmm))
		snprintf(buf, size, "paused (resume pending)\n");
	else
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

void fill_attr(struct forkfs *fs, struct node *n, struct stat *st)
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
	case NODE_SB_MEMORY:
		st->st_mode = S_IFREG | 0444;
		st->st_size = 0;	/* generated on read, like /proc */
		break;
	case NODE_SB_LOG: {
		struct stat s;

		st->st_mode = S_IFREG | 0444;
		if (fstat(sb->log_fd, &s) == 0)
			st->st_size = s.st_size;
		break;
	}
	case NODE_BR_WAIT:
		st->st_mode = S_IFREG | bmode;
		st->st_size = 0;	/* its text comes when the copy ends */
		break;
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
	{ "log", NODE_SB_LOG }, { "memory", NODE_SB_MEMORY }, { "branches", NODE_SB_BRANCHES },
}, br_files[] = {
	{ "status", NODE_BR_STATUS }, { "wait", NODE_BR_WAIT }, { "vmstate", NODE_BR_VMSTATE },
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

/* A mkdir whose inode cannot be made (out of memory) is undone, then
 * answered ENOMEM: nothing half-made stays behind. */
static void reply_enomem(void *ctx, int r)
{
	fuse_reply_err(ctx, ENOMEM);
}

static void mkdir_branch_done(void *ctx, int r, struct sbranch *br)
{
	fuse_req_t req = ctx;
	struct forkfs *fs = req_fs(req);
	struct node *n;

	if (r < 0) {
		fuse_reply_err(req, forkfs_errno(r));
		return;
	}
	n = node_get(&fs->inodes, NODE_BR_DIR, br->sb, br);
	if (n)
		reply_entry(fs, req, n);
	else if (entry_rmdir(br->sb, br->tag, reply_enomem, req) < 0)
		fuse_reply_err(req, ENOMEM);
}

static void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	struct forkfs *fs = req_fs(req);
	struct node *p = req_node(req, parent);
	struct sandbox *sb;
	struct node *n;
	int r;

	if (fs->tree.env.shutting_down) {
		fuse_reply_err(req, ESHUTDOWN);
		return;
	}
	if (p->type == NODE_ROOT) {
		r = tree_mkdir_sandbox(&fs->tree, name, &sb);
		if (r < 0) {
			fuse_reply_err(req, -r);
			return;
		}
		n = node_get(&fs->inodes, NODE_SB_DIR, sb, NULL);
		if (n)
			reply_entry(fs, req, n);
		else if (tree_rmdir_sandbox(&fs->tree, name, reply_enomem, req) < 0)
			fuse_reply_err(req, ENOMEM);
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
	conn_want(conn, FUSE_CAP_ATOMIC_O_TRUNC);
	conn_want(conn, FUSE_CAP_SPLICE_WRITE);
	/* No write-back cache: config.json and ctl writes must reach us as
	 * written (and the kernel refuses passthrough with it). */
	conn_unwant(conn, FUSE_CAP_WRITEBACK_CACHE);
	files_init(userdata, conn);
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
	.open = files_open,
	.read = files_read,
	.write = files_write,
	.flush = files_flush,
	.release = files_release,
	.statfs = op_statfs,
};
