/* SPDX-License-Identifier: MIT
 * tree.c — the name space: sandboxes and their branch entries, their store
 * directories, mkdir/rmdir of both, and rebuilding the tree from the store.
 *
 * Store layout (documented in forkfs(8)):
 *   STORE/sandboxes/NAME/config.json      the committed config.json
 *   STORE/sandboxes/NAME/log              the sandbox's log
 *   STORE/sandboxes/NAME/branches/TAG/    vmstate, memory.bin, branch.state
 *                                         (written by the core library)
 * Names are checked with name_is_valid() before they are joined to a path,
 * so nothing a user types reaches outside the store.
 *
 * Branch mkdir runs branch_take() on a worker thread and replies from the
 * after-work callback. The tag is reserved (SBR_TAKING, invisible) from the
 * moment mkdir arrives, so a concurrent mkdir of the same tag gets EEXIST.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define LOG_PREFIX ""
#include "common/log.h"
#include "common/util.h"
#include "fusefs/forkfs.h"

static const char *const sb_state_names[_SB_STATE_MAX] = {
	[SB_CREATED] = "created", [SB_RUNNING] = "running", [SB_PAUSED] = "paused",
	[SB_STOPPED] = "stopped", [SB_FAILED] = "failed",
};

const char *sb_state_to_string(enum sb_state s)
{
	return s < _SB_STATE_MAX ? sb_state_names[s] : "?";
}

/* One timestamped line into a sandbox log fd, and stderr. Any thread. */
static void log_line(int fd, const char *sb_name, const char *msg)
{
	char line[1200], stamp[TIMESTAMP_MAX];
	int n;

	format_timestamp(stamp);
	n = snprintf(line, sizeof(line), "%s forkfs: %s\n", stamp, msg);
	if (n > (int)sizeof(line))
		n = sizeof(line);
	if (fd >= 0 && write(fd, line, (size_t)n) < 0) {
		/* The store is full or gone: stderr below still has it. */
	}
	log_info("%s: %s", sb_name, msg);
}

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

void sb_log(struct sandbox *sb, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	log_line(sb->log_fd, sb->name, msg);
}

/* ---- the end of a background copy, in the sandbox log ----
 *
 * A live copy ends on an engine thread (core's notify callback), possibly
 * after the branch entry is gone, so the callback touches no tree object.
 * Each copying branch gets a "watch" in a registry under watch_lock, found by
 * a unique id (the callback's userdata) or by its entry (the loop side): it
 * holds its own dup of the log fd, the names and a branch reference. Whoever
 * takes the watch out of the registry (the callback at the end of the copy,
 * take_done if the copy ended before the callback was set, or the entry being
 * freed) is the only one using it, so the line is written exactly once and
 * never after the entry is gone.
 */
struct watch {
	uint64_t id;
	const void *owner;	/* the struct sbranch, compared only */
	struct branch *b;	/* a reference */
	int log_fd;
	char sb_name[FORKFS_NAME_MAX + 1];
	char tag[FORKFS_NAME_MAX + 1];
	struct watch *next;
};

static pthread_mutex_t watch_lock = PTHREAD_MUTEX_INITIALIZER;
static struct watch *watches;		/* protected by watch_lock */
static uint64_t watch_next_id = 1;	/* protected by watch_lock */

static struct watch *watch_take(uint64_t id, const void *owner)
{
	struct watch *w = NULL;

	pthread_mutex_lock(&watch_lock);
	for (struct watch **p = &watches; *p; p = &(*p)->next)
		if ((id && (*p)->id == id) || (owner && (*p)->owner == owner)) {
			w = *p;
			*p = w->next;
			break;
		}
	pthread_mutex_unlock(&watch_lock);
	return w;
}

static void watch_put_back(struct watch *w)
{
	pthread_mutex_lock(&watch_lock);
	w->next = watches;
	watches = w;
	pthread_mutex_unlock(&watch_lock);
}

static void watch_free(struct watch *w)
{
	if (!w)
		return;
	branch_unref(w->b);
	safe_close(w->log_fd);
	free(w);
}

/* Log the end of the copy; false while it still runs. */
static bool watch_report(struct watch *w)
{
	struct branch_status st;
	char msg[BRANCH_ERR_MAX + 160];

	branch_get_status(w->b, &st);
	if (st.state == BRANCH_COPYING)
		return false;
	if (st.state == BRANCH_READY)
		snprintf(msg, sizeof(msg),
			 "branch %s ready: %llu bytes in %llu ms, %llu pages copied first for the guest",
			 w->tag, (unsigned long long)st.bytes_total,
			 (unsigned long long)st.elapsed_ms, (unsigned long long)st.pages_faulted);
	else
		snprintf(msg, sizeof(msg), "branch %s failed: %s", w->tag, st.error);
	log_line(w->log_fd, w->sb_name, msg);
	return true;
}

/* Take the watch (if it is still there) and report; put it back while copying. */
static void watch_check(uint64_t id, const void *owner)
{
	struct watch *w = watch_take(id, owner);

	if (!w)
		return;
	if (watch_report(w))
		watch_free(w);
	else
		watch_put_back(w);
}

/* core's notify: on an engine thread, when the branch's state changed. */
static void watch_notify(void *userdata)
{
	watch_check((uint64_t)(uintptr_t)userdata, NULL);
}

/* On the loop, for a branch just taken and still copying. */
static void watch_start(struct sandbox *sb, struct sbranch *br)
{
	struct watch *w = calloc(1, sizeof(*w));

	if (!w)
		return;	/* only a log line is lost */
	w->owner = br;
	w->b = branch_ref(br->b);
	w->log_fd = sb->log_fd >= 0 ? fcntl(sb->log_fd, F_DUPFD_CLOEXEC, 3) : -1;
	snprintf(w->sb_name, sizeof(w->sb_name), "%s", sb->name);
	snprintf(w->tag, sizeof(w->tag), "%s", br->tag);
	pthread_mutex_lock(&watch_lock);
	w->id = watch_next_id++;
	w->next = watches;
	watches = w;
	pthread_mutex_unlock(&watch_lock);
	branch_set_notify(br->b, watch_notify, (void *)(uintptr_t)w->id);
	/* The copy may have ended before the callback was set. */
	watch_check(w->id, NULL);
}

struct sandbox *sandbox_ref(struct sandbox *sb)
{
	if (sb)
		sb->refs++;
	return sb;
}

struct sandbox *sandbox_unref(struct sandbox *sb)
{
	if (!sb || --sb->refs > 0)
		return NULL;
	vmm_unref(sb->vmm);
	safe_close(sb->log_fd);
	free(sb->config);
	free(sb->dir);
	free(sb->run_dir);
	free(sb);
	return NULL;
}

struct sbranch *sbranch_ref(struct sbranch *br)
{
	if (br)
		br->refs++;
	return br;
}

struct sbranch *sbranch_unref(struct sbranch *br)
{
	if (!br || --br->refs > 0)
		return NULL;
	watch_free(watch_take(0, br));
	branch_unref(br->b);
	sandbox_unref(br->sb);
	free(br->dir);
	free(br);
	return NULL;
}

struct sandbox *tree_find_sandbox(struct forkfs *fs, const char *name)
{
	for (struct sandbox *sb = fs->sandboxes; sb; sb = sb->next)
		if (strcmp(sb->name, name) == 0)
			return sb;
	return NULL;
}

struct sbranch *tree_find_branch(struct sandbox *sb, const char *tag, bool visible_only)
{
	for (struct sbranch *br = sb->branches; br; br = br->next)
		if (strcmp(br->tag, tag) == 0)
			return !visible_only || br->phase == SBR_VISIBLE ? br : NULL;
	return NULL;
}

static char *path_join(const char *a, const char *b)
{
	char *p;

	return asprintf(&p, "%s/%s", a, b) < 0 ? NULL : p;
}

/* Create the sandbox object (not yet in the list). */
static int sandbox_new(struct forkfs *fs, const char *name, enum sb_state state,
		       struct sandbox **ret)
{
	static const enum node_type types[_SBN_MAX] = {
		NODE_SB_DIR, NODE_SB_CONFIG, NODE_SB_CTL, NODE_SB_STATE, NODE_SB_LOG,
		NODE_SB_BRANCHES,
	};
	struct sandbox *sb = calloc(1, sizeof(*sb));
	_cleanup_free_ char *log_path = NULL;

	if (!sb)
		return -ENOMEM;
	sb->refs = 1;
	sb->fs = fs;
	sb->log_fd = -1;
	sb->state = state;
	sb->seq = ++fs->next_seq;
	snprintf(sb->name, sizeof(sb->name), "%s", name);
	clock_gettime(CLOCK_REALTIME, &sb->ctime);
	sb->dir = path_join(fs->sandboxes_dir, name);
	log_path = sb->dir ? path_join(sb->dir, "log") : NULL;
	if (!log_path) {
		sandbox_unref(sb);
		return -ENOMEM;
	}
	sb->log_fd = open(log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
	if (sb->log_fd < 0) {
		int r = log_error_errno(errno, "cannot open %s", log_path);
		sandbox_unref(sb);
		return r;
	}
	for (int i = 0; i < _SBN_MAX; i++) {
		sb->nodes[i] = node_new(fs, types[i], sb, NULL);
		if (!sb->nodes[i]) {
			for (int j = 0; j < i; j++)
				node_unlink(sb->nodes[j]);
			sandbox_unref(sb);
			return -ENOMEM;
		}
	}
	sb->linked = true;
	*ret = sb;
	return 0;
}

static int sbranch_new(struct sandbox *sb, const char *tag, enum sbr_phase phase,
		       struct sbranch **ret)
{
	struct sbranch *br = calloc(1, sizeof(*br));
	_cleanup_free_ char *bdir = path_join(sb->dir, "branches");

	if (!br || !bdir) {
		free(br);
		return -ENOMEM;
	}
	br->refs = 1;
	br->sb = sandbox_ref(sb);
	br->phase = phase;
	snprintf(br->tag, sizeof(br->tag), "%s", tag);
	clock_gettime(CLOCK_REALTIME, &br->ctime);
	br->dir = path_join(bdir, tag);
	if (!br->dir) {
		sbranch_unref(br);
		return -ENOMEM;
	}
	/* Nodes are made when the entry becomes visible (sbranch_publish). */
	*ret = br;
	return 0;
}

/* Make the entry visible: create its nodes. */
static int sbranch_publish(struct forkfs *fs, struct sbranch *br)
{
	static const enum node_type types[_BRN_MAX] = {
		NODE_BR_DIR, NODE_BR_STATUS, NODE_BR_VMSTATE, NODE_BR_MEMORY,
	};

	for (int i = 0; i < _BRN_MAX; i++) {
		br->nodes[i] = node_new(fs, types[i], br->sb, br);
		if (!br->nodes[i]) {
			for (int j = 0; j < i; j++) {
				node_unlink(br->nodes[j]);
				br->nodes[j] = NULL;
			}
			return -ENOMEM;
		}
	}
	br->phase = SBR_VISIBLE;
	return 0;
}

static void sbranch_list_remove(struct sandbox *sb, struct sbranch *br)
{
	for (struct sbranch **p = &sb->branches; *p; p = &(*p)->next)
		if (*p == br) {
			*p = br->next;
			br->next = NULL;
			return;
		}
}

static void sbranch_unlink_nodes(struct sbranch *br)
{
	for (int i = 0; i < _BRN_MAX; i++) {
		node_unlink(br->nodes[i]);
		br->nodes[i] = NULL;
	}
}

/* A directory entry is a directory: d_type, or fstatat() on filesystems that
 * leave it DT_UNKNOWN (the store may be on any filesystem). */
static bool entry_is_dir(DIR *d, const struct dirent *de)
{
	struct stat st;

	if (de->d_type != DT_UNKNOWN)
		return de->d_type == DT_DIR;
	return fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode);
}

/* Remove a directory tree of the store made by us: files and sub-directories. */
static int rm_rf(const char *path)
{
	DIR *d = opendir(path);
	struct dirent *de;
	int r = 0;

	if (!d)
		return errno == ENOENT ? 0 : -errno;
	while ((de = readdir(d))) {
		_cleanup_free_ char *p = NULL;

		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		p = path_join(path, de->d_name);
		if (!p) {
			r = -ENOMEM;
			continue;
		}
		if (entry_is_dir(d, de))
			r = rm_rf(p) ?: r;
		else if (unlink(p) < 0)
			r = -errno;
	}
	closedir(d);
	if (rmdir(path) < 0 && errno != ENOENT)
		r = -errno;
	return r;
}

int sandbox_set_config(struct sandbox *sb, const char *text, size_t len)
{
	_cleanup_free_ char *path = path_join(sb->dir, "config.json");
	char *copy;
	int r;

	if (!path || !(copy = malloc(len + 1)))
		return -ENOMEM;
	memcpy(copy, text, len);
	copy[len] = 0;
	r = write_file_atomic(path, text, len, 0600);
	if (r < 0) {
		free(copy);
		return r;
	}
	free(sb->config);
	sb->config = copy;
	sb->config_len = len;
	return 0;
}

/* ---- loading the store ---- */

static void load_branches(struct forkfs *fs, struct sandbox *sb)
{
	_cleanup_free_ char *bdir = path_join(sb->dir, "branches");
	struct dirent *de;
	DIR *d;

	if (!bdir)
		return;
	if (mkdir(bdir, 0700) < 0 && errno != EEXIST)
		log_warning_errno(errno, "cannot create %s", bdir);
	d = opendir(bdir);
	if (!d)
		return;
	while ((de = readdir(d))) {
		struct sbranch *br;
		int r;

		if (de->d_name[0] == '.' || !entry_is_dir(d, de))
			continue;
		if (!name_is_valid(de->d_name)) {
			sb_log(sb, "store: ignoring branch directory with an invalid name");
			continue;
		}
		if (sbranch_new(sb, de->d_name, SBR_TAKING, &br) < 0)
			continue;
		r = branch_load(br->dir, &br->b);
		if (r < 0) {
			snprintf(br->load_error, sizeof(br->load_error), "cannot load from store: %s",
				 strerror(-r));
			sb_log(sb, "branch %s: %s", br->tag, br->load_error);
			br->b = NULL;
		}
		if (sbranch_publish(fs, br) < 0) {
			sbranch_unref(br);
			continue;
		}
		br->next = sb->branches;
		sb->branches = br;
	}
	closedir(d);
}

int tree_load_store(struct forkfs *fs)
{
	struct dirent *de;
	DIR *d;

	if (mkdir(fs->store, 0700) < 0 && errno != EEXIST)
		return log_error_errno(errno, "cannot create store %s", fs->store);
	if (mkdir(fs->sandboxes_dir, 0700) < 0 && errno != EEXIST)
		return log_error_errno(errno, "cannot create %s", fs->sandboxes_dir);
	d = opendir(fs->sandboxes_dir);
	if (!d)
		return log_error_errno(errno, "cannot open %s", fs->sandboxes_dir);
	while ((de = readdir(d))) {
		_cleanup_free_ char *cfg_path = NULL;
		struct sandbox *sb;
		char *text = NULL;
		size_t len = 0;

		if (de->d_name[0] == '.' || !entry_is_dir(d, de))
			continue;
		if (!name_is_valid(de->d_name)) {
			log_warning("store: ignoring %s/%s: invalid name", fs->sandboxes_dir, de->d_name);
			continue;
		}
		if (sandbox_new(fs, de->d_name, SB_STOPPED, &sb) < 0)
			continue;
		cfg_path = path_join(sb->dir, "config.json");
		if (cfg_path && read_file(cfg_path, FORKFS_CONFIG_MAX, &text, &len) == 0) {
			sb->config = text;
			sb->config_len = len;
		}
		load_branches(fs, sb);
		sb_log(sb, "loaded from the store by forkfs pid %d: state stopped", (int)getpid());
		sb->next = fs->sandboxes;
		fs->sandboxes = sb;
	}
	closedir(d);
	return 0;
}

/* ---- sandboxes ---- */

int tree_mkdir_sandbox(struct forkfs *fs, const char *name, struct sandbox **ret)
{
	_cleanup_free_ char *dir = NULL, *bdir = NULL;
	struct sandbox *sb;
	int r;

	if (!name_is_valid(name))
		return -EINVAL;
	if (tree_find_sandbox(fs, name))
		return -EEXIST;
	dir = path_join(fs->sandboxes_dir, name);
	bdir = dir ? path_join(dir, "branches") : NULL;
	if (!bdir)
		return -ENOMEM;
	if (mkdir(dir, 0700) < 0)
		return log_error_errno(errno, "mkdir %s", dir);
	if (mkdir(bdir, 0700) < 0) {
		r = log_error_errno(errno, "mkdir %s", bdir);
		rm_rf(dir);
		return r;
	}
	r = sandbox_new(fs, name, SB_CREATED, &sb);
	if (r < 0) {
		rm_rf(dir);
		return r;
	}
	sb->next = fs->sandboxes;
	fs->sandboxes = sb;
	sb_log(sb, "sandbox created");
	*ret = sb;
	return 0;
}

static void sandbox_remove(struct forkfs *fs, struct sandbox *sb)
{
	int r;

	for (struct sandbox **p = &fs->sandboxes; *p; p = &(*p)->next)
		if (*p == sb) {
			*p = sb->next;
			break;
		}
	sb->linked = false;
	r = rm_rf(sb->dir);
	if (r < 0)
		log_warning_errno(r, "%s: cannot remove %s", sb->name, sb->dir);
	log_info("%s: sandbox removed", sb->name);
	for (int i = 0; i < _SBN_MAX; i++) {
		struct node *n = sb->nodes[i];

		sb->nodes[i] = NULL;
		node_unlink(n);
	}
	sandbox_unref(sb);	/* the list's reference: sb may be gone from here */
}

static void rmdir_after_stop(struct sandbox *sb, void *userdata)
{
	fuse_req_t req = userdata;

	sb->busy = NULL;
	if (sb->branches) {	/* cannot happen: mkdir is refused while busy */
		fuse_reply_err(req, ENOTEMPTY);
		return;
	}
	sandbox_remove(sb->fs, sb);
	fuse_reply_err(req, 0);
}

int tree_rmdir_sandbox(struct forkfs *fs, fuse_req_t req, const char *name)
{
	struct sandbox *sb = name_is_valid(name) ? tree_find_sandbox(fs, name) : NULL;

	if (!sb)
		return -ENOENT;
	if (sb->branches) {
		sb_log(sb, "rmdir refused: the sandbox still has branches");
		return -ENOTEMPTY;
	}
	if (sb->busy) {
		sb_log(sb, "rmdir refused: %s in progress", sb->busy);
		return -EBUSY;
	}
	if (sb->state == SB_RUNNING || sb->state == SB_PAUSED) {
		sb->busy = "rmdir";
		sb_log(sb, "rmdir: stopping the sandbox first");
		if (sandbox_stop(sb, rmdir_after_stop, req) == 0)
			return 0;
		sb->busy = NULL;
	}
	sandbox_remove(fs, sb);
	fuse_reply_err(req, 0);
	return 0;
}

/* ---- branches ---- */

struct take_job {
	uv_work_t work;
	struct sbranch *br;
	struct vmm *vmm;
	enum branch_mode_req mode;
	fuse_req_t req;
	struct branch *b;
	int r;
	char err[BRANCH_ERR_MAX];
};

static void take_run(uv_work_t *w)
{
	struct take_job *j = w->data;

	j->err[0] = 0;
	j->r = branch_take(j->vmm, j->br->dir, j->mode, &j->b, j->err, sizeof(j->err));
}

static void take_done(uv_work_t *w, int status)
{
	struct take_job *j = w->data;
	struct sbranch *br = j->br;
	struct sandbox *sb = br->sb;
	struct forkfs *fs = sb->fs;
	int r = j->r;

	sb->busy = NULL;
	if (r >= 0) {
		br->b = j->b;
		r = sbranch_publish(fs, br);
	}
	if (r < 0) {
		sb_log(sb, "mkdir branches/%s failed: %s (%s)", br->tag, j->err[0] ? j->err : "error",
		       strerror(-r));
		sbranch_list_remove(sb, br);
		if (rmdir(br->dir) < 0 && errno != ENOENT)
			rm_rf(br->dir);
		fuse_reply_err(j->req, forkfs_errno(r));
		sbranch_unref(br);	/* the list's reference */
	} else {
		struct fuse_entry_param e = { 0 };
		struct branch_status st;

		branch_get_status(br->b, &st);
		sb_log(sb, "branch %s taken: mode %s, pause %llu us", br->tag,
		       branch_mode_to_string(st.mode), (unsigned long long)st.pause_us);
		if (st.state == BRANCH_COPYING)
			watch_start(sb, br);
		/* Shutdown began while this branch was being taken, and its cancel
		 * pass skipped it: cancel it now, as every other copy was. */
		if (st.state == BRANCH_COPYING && fs->shutting_down) {
			sb_log(sb, "shutdown: cancelling the copy of branch %s", br->tag);
			branch_cancel(br->b);
		}
		e.ino = node_ino(fs, br->nodes[BRN_DIR]);
		e.generation = br->nodes[BRN_DIR]->generation;
		fill_attr(fs, br->nodes[BRN_DIR], &e.attr);
		e.attr_timeout = 1.0;
		e.entry_timeout = 1.0;
		if (fuse_reply_entry(j->req, &e) == 0)
			br->nodes[BRN_DIR]->nlookup++;
	}
	vmm_unref(j->vmm);
	sbranch_unref(br);	/* the job's reference */
	free(j);
	forkfs_job_end(fs);
}

int tree_mkdir_branch(struct sandbox *sb, fuse_req_t req, const char *tag)
{
	struct forkfs *fs = sb->fs;
	struct sbranch *br;
	struct take_job *j;
	int r;

	if (!name_is_valid(tag)) {
		sb_log(sb, "mkdir branches: invalid tag name");
		return -EINVAL;
	}
	br = tree_find_branch(sb, tag, false);
	if (br) {
		sb_log(sb, "mkdir branches/%s: %s", tag,
		       br->phase == SBR_DELETING ? "being removed" : "exists");
		return br->phase == SBR_DELETING ? -EBUSY : -EEXIST;
	}
	if (fs->shutting_down)
		return -ESHUTDOWN;
	if ((sb->state != SB_RUNNING && sb->state != SB_PAUSED) || !sb->vmm) {
		sb_log(sb, "mkdir branches/%s refused: the sandbox is %s, not running", tag,
		       sb_state_to_string(sb->state));
		return -EINVAL;
	}
	if (sb->busy) {
		sb_log(sb, "mkdir branches/%s refused: %s in progress", tag, sb->busy);
		return -EBUSY;
	}
	r = sbranch_new(sb, tag, SBR_TAKING, &br);
	if (r < 0)
		return r;
	if (mkdir(br->dir, 0700) < 0) {
		r = -errno;
		sb_log(sb, "mkdir branches/%s: cannot create %s: %s", tag, br->dir, strerror(errno));
		sbranch_unref(br);
		return r == -EEXIST ? -EEXIST : r;
	}
	j = calloc(1, sizeof(*j));
	if (!j) {
		rmdir(br->dir);
		sbranch_unref(br);
		return -ENOMEM;
	}
	j->work.data = j;
	j->br = sbranch_ref(br);
	j->vmm = vmm_ref(sb->vmm);
	j->mode = fs->mode;
	j->req = req;
	br->next = sb->branches;	/* the list takes the creation reference */
	sb->branches = br;
	sb->busy = "branch";
	forkfs_queue_job(fs, &j->work, take_run, take_done);
	return 0;
}

struct drop_job {
	uv_work_t work;
	struct sbranch *br;
	fuse_req_t req;
	int r;
};

static void drop_run(uv_work_t *w)
{
	struct drop_job *j = w->data;
	struct branch_status st;

	if (j->br->b) {
		branch_get_status(j->br->b, &st);
		if (st.state == BRANCH_COPYING)
			branch_cancel(j->br->b);
	}
	j->r = rm_rf(j->br->dir);
}

static void drop_done(uv_work_t *w, int status)
{
	struct drop_job *j = w->data;
	struct sbranch *br = j->br;
	struct sandbox *sb = br->sb;
	struct forkfs *fs = sb->fs;

	if (j->r < 0)
		sb_log(sb, "rmdir branches/%s: removing %s: %s", br->tag, br->dir, strerror(-j->r));
	else
		sb_log(sb, "branch %s removed", br->tag);
	sbranch_list_remove(sb, br);
	sbranch_unref(br);	/* the list's reference */
	fuse_reply_err(j->req, j->r < 0 ? EIO : 0);
	sbranch_unref(br);	/* the job's */
	free(j);
	forkfs_job_end(fs);
}

int tree_rmdir_branch(struct sandbox *sb, fuse_req_t req, const char *tag)
{
	struct forkfs *fs = sb->fs;
	struct sbranch *br = name_is_valid(tag) ? tree_find_branch(sb, tag, true) : NULL;
	struct drop_job *j;

	if (!br)
		return -ENOENT;
	j = calloc(1, sizeof(*j));
	if (!j)
		return -ENOMEM;
	if (br->b) {
		struct branch_status st;

		branch_get_status(br->b, &st);
		if (st.state == BRANCH_COPYING)
			sb_log(sb, "rmdir branches/%s: cancelling the copy", tag);
	}
	br->phase = SBR_DELETING;
	sbranch_unlink_nodes(br);
	j->work.data = j;
	j->br = sbranch_ref(br);
	j->req = req;
	forkfs_queue_job(fs, &j->work, drop_run, drop_done);
	return 0;
}

/* Unmount or signal: cancel copies and stop every sandbox. The loop ends once
 * the last child and work item are gone. */
void tree_shutdown(struct forkfs *fs)
{
	for (struct sandbox *sb = fs->sandboxes; sb; sb = sb->next) {
		for (struct sbranch *br = sb->branches; br; br = br->next) {
			struct branch_status st;

			if (!br->b || br->phase != SBR_VISIBLE)
				continue;
			branch_get_status(br->b, &st);
			if (st.state == BRANCH_COPYING) {
				sb_log(sb, "shutdown: cancelling the copy of branch %s", br->tag);
				branch_cancel(br->b);
			}
		}
		if (sb->state == SB_RUNNING || sb->state == SB_PAUSED) {
			sb_log(sb, "shutdown: %s the VMM", sb->attached ? "detaching from" : "stopping");
			sandbox_stop(sb, NULL, NULL);
		}
	}
}
