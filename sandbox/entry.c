/* SPDX-License-Identifier: MIT
 * entry.c — branch entries (see entry.h): their objects, mkdir and rmdir
 * jobs, loading them from the store, and the line in the sandbox's log when
 * a background copy ends.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define LOG_PREFIX ""
#include "common/error.h"
#include "common/log.h"
#include "common/nolinks.h"
#include "branch/layer.h"
#include "sandbox/entry.h"
#include "sandbox/store.h"
#include "sandbox/template.h"

/* ---- the end of a background copy, in the sandbox log ----
 *
 * The one place in sandbox/ that runs off the loop without a job: a live
 * copy ends on an engine thread (core's notify callback), possibly after the
 * entry is gone, so the callback touches no tree object. Each copying branch
 * gets a "watch" in a registry under watch_lock, found by a unique id (the
 * callback's userdata) or by its entry (the loop side): it holds the log's
 * path (opened when the line is written, so a rotated log is no matter),
 * the names and a branch reference. Whoever takes the watch
 * out of the registry (the callback at the end of the copy, watch_start if
 * the copy ended before the callback was set, or the entry being freed) is
 * the only one using it, so the line is written exactly once and never after
 * the entry is gone.
 */
struct watch {
	uint64_t id;
	const void *owner;	/* the struct sbranch, compared only */
	struct branch *b;	/* a reference */
	char *log_path;		/* the sandbox's log, opened when the line is written */
	char sb_name[NAME_LEN_MAX + 1];
	char tag[NAME_LEN_MAX + 1];
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
	free(w->log_path);
	free(w);
}

/* Log the end of the copy; false while it still runs. Any thread. */
static bool watch_report(struct watch *w)
{
	struct branch_status st;
	int fd;
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
	fd = w->log_path ? open_nolinks(w->log_path, O_WRONLY | O_APPEND, 0) : -1;
	sandbox_log_fd(fd, "forkfs", msg, strlen(msg));
	safe_close(fd);
	log_info("%s: %s", w->sb_name, msg);
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
	w->log_path = store_path(sb->dir, STORE_LOG);	/* NULL: only the line is lost */
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

/* ---- the object ---- */

struct sbranch *entry_ref(struct sbranch *br)
{
	if (br)
		br->refs++;
	return br;
}

struct sbranch *entry_unref(struct sbranch *br)
{
	if (!br || --br->refs > 0)
		return NULL;
	watch_free(watch_take(0, br));
	template_disown(&br->tmpl);
	branch_unref(br->b);
	sandbox_unref(br->sb);
	free(br->dir);
	free(br);
	return NULL;
}

static int entry_new(struct sandbox *sb, const char *tag, struct sbranch **ret)
{
	struct sbranch *br = calloc(1, sizeof(*br));
	_cleanup_free_ char *bdir = store_path(sb->dir, STORE_BRANCHES);

	if (!br || !bdir || !(br->dir = store_path(bdir, tag))) {
		free(br);
		return -ENOMEM;
	}
	br->refs = 1;
	br->sb = sandbox_ref(sb);
	br->phase = ENTRY_TAKING;
	snprintf(br->tag, sizeof(br->tag), "%s", tag);
	clock_gettime(CLOCK_REALTIME, &br->ctime);
	*ret = br;
	return 0;
}

/* The list takes the creation reference. */
static void entry_link(struct sandbox *sb, struct sbranch *br)
{
	br->next = sb->branches;
	sb->branches = br;
}

/* Out of the list; drops the list's reference (br may be gone after). */
static void entry_unlink(struct sandbox *sb, struct sbranch *br)
{
	for (struct sbranch **p = &sb->branches; *p; p = &(*p)->next)
		if (*p == br) {
			*p = br->next;
			br->next = NULL;
			entry_unref(br);
			return;
		}
}

struct sbranch *entry_find(struct sandbox *sb, const char *tag, bool visible_only)
{
	for (struct sbranch *br = sb->branches; br; br = br->next)
		if (strcmp(br->tag, tag) == 0)
			return !visible_only || br->phase == ENTRY_VISIBLE ? br : NULL;
	return NULL;
}

size_t entry_status_text(struct sbranch *br, char *buf, size_t size)
{
	struct branch_status st;
	int n;

	if (!br->b) {
		n = snprintf(buf, size, "failed\nerror: %s\n", br->load_error);
		return n < 0 ? 0 : MIN((size_t)n, size - 1);
	}
	branch_get_status(br->b, &st);
	return branch_status_format(&st, buf, size);
}

bool entry_is_settled(struct sbranch *br)
{
	struct branch_status st;

	if (!br->b)
		return true;
	branch_get_status(br->b, &st);
	return st.state != BRANCH_COPYING;
}

static bool entry_is_copying(struct sbranch *br)
{
	return br->b && !entry_is_settled(br);
}

/* ---- loading the store ---- */

static int load_one(const char *tag, void *ctx)
{
	struct sandbox *sb = ctx;
	struct sbranch *br;
	int r;

	r = entry_new(sb, tag, &br);
	if (r < 0)
		return r;
	r = branch_load(br->dir, &br->b);
	if (r < 0) {
		snprintf(br->load_error, sizeof(br->load_error), "cannot load from store: %s",
			 strerror(-r));
		sb_log(sb, "branch %s: %s", br->tag, br->load_error);
		br->b = NULL;
	}
	br->phase = ENTRY_VISIBLE;
	entry_link(sb, br);
	return 0;
}

void entry_load_all(struct sandbox *sb)
{
	_cleanup_free_ char *bdir = store_path(sb->dir, STORE_BRANCHES);
	unsigned skipped = 0;
	int r;

	if (!bdir)
		return;
	r = mkdir_nolinks(bdir, 0700);
	if (r < 0 && r != -EEXIST)
		log_warning_errno(-r, "cannot create %s", bdir);
	store_for_each_dir(bdir, load_one, sb, &skipped);
	for (unsigned i = 0; i < skipped; i++)
		sb_log(sb, "store: ignoring branch directory with an invalid name");
	/* Finish what an interrupted fold or removal left (layer.h). */
	layer_compact_request(bdir);
}

/* ---- mkdir ---- */

struct take_job {
	uv_work_t work;
	struct sbranch *br;	/* the loop's; the worker uses the copies below */
	entry_done_fn done;
	void *ctx;
	struct vmm *vmm;
	char *dir;
	enum branch_mode_req mode;
	struct branch *b;
	int r;
	struct error err;
};

static void take_run(uv_work_t *w)
{
	struct take_job *j = w->data;

	j->r = branch_take(j->vmm, j->dir, j->mode, &j->b, &j->err);
}

static void take_done(uv_work_t *w, int status)
{
	struct take_job *j = w->data;
	struct sbranch *br = j->br;
	struct sandbox *sb = br->sb;
	struct sbenv *env = sb->env;
	struct branch_status st;
	int r = j->r;

	sandbox_end(sb);
	if (r < 0) {
		sb_log(sb, "mkdir branches/%s failed: %s (%s)", br->tag,
		       error_is_set(&j->err) ? error_msg(&j->err) : "error", strerror(-r));
		store_rm_rf(br->dir);
		entry_unlink(sb, br);
		j->done(j->ctx, r, NULL);
	} else {
		br->b = TAKE_PTR(j->b);
		br->phase = ENTRY_VISIBLE;
		branch_get_status(br->b, &st);
		sb_log(sb, "branch %s taken: mode %s, pause %llu us", br->tag,
		       branch_mode_to_string(st.mode), (unsigned long long)st.pause_us);
		if (st.state == BRANCH_COPYING)
			watch_start(sb, br);
		/* Shutdown began while this branch was being taken, and its cancel
		 * pass skipped it: cancel it now, as every other copy was. */
		if (st.state == BRANCH_COPYING && env->shutting_down) {
			sb_log(sb, "shutdown: cancelling the copy of branch %s", br->tag);
			branch_cancel(br->b);
		}
		j->done(j->ctx, 0, br);
	}
	branch_unref(j->b);
	vmm_unref(j->vmm);
	free(j->dir);
	entry_unref(br);	/* the job's reference */
	free(j);
	env_job_end(env);
}

int entry_mkdir(struct sandbox *sb, const char *tag, entry_done_fn done, void *ctx)
{
	struct sbenv *env = sb->env;
	struct sbranch *br = NULL;
	struct take_job *j = NULL;
	int r;

	assert_on_loop(env);
	if (!name_is_valid(tag)) {
		sb_log(sb, "mkdir branches: invalid tag name");
		return -EINVAL;
	}
	br = entry_find(sb, tag, false);
	if (br) {
		sb_log(sb, "mkdir branches/%s: %s", tag,
		       br->phase == ENTRY_DELETING ? "being removed" : "exists");
		return br->phase == ENTRY_DELETING ? -EBUSY : -EEXIST;
	}
	if (env->shutting_down)
		return -ESHUTDOWN;
	if (!sandbox_is_started(sb) || !sb->vmm) {
		sb_log(sb, "mkdir branches/%s refused: the sandbox is %s, not running", tag,
		       sb_state_to_string(sb->state));
		return -EINVAL;
	}
	r = sandbox_begin(sb, "branch", "mkdir branches/%s", tag);
	if (r < 0)
		return r;
	r = entry_new(sb, tag, &br);
	if (r < 0)
		goto fail;
	j = calloc(1, sizeof(*j));
	if (!j || !(j->dir = strdup(br->dir))) {
		r = -ENOMEM;
		goto fail;
	}
	r = mkdir_nolinks(br->dir, 0700);
	if (r < 0) {
		sb_log(sb, "mkdir branches/%s: cannot create %s: %s", tag, br->dir, strerror(-r));
		goto fail;
	}
	j->work.data = j;
	j->br = entry_ref(br);
	j->done = done;
	j->ctx = ctx;
	j->vmm = vmm_ref(sb->vmm);
	j->mode = env->mode;
	entry_link(sb, br);
	env_queue_job(env, &j->work, take_run, take_done);
	return 0;
fail:
	if (j)
		free(j->dir);
	free(j);
	entry_unref(br);
	sandbox_end(sb);
	return r;
}

/* ---- rmdir ---- */

struct drop_job {
	uv_work_t work;
	struct sbranch *br;	/* the loop's */
	sb_done_fn done;
	void *ctx;
	struct branch *b;	/* a reference, or NULL */
	struct vmm *vmm;	/* the sandbox's running VMM, a reference, or NULL */
	char *dir;
	bool hidden;		/* kept as a layer other branches need */
	int r;
};

static void drop_run(uv_work_t *w)
{
	struct drop_job *j = w->data;
	char *tag = strrchr(j->dir, '/');
	struct branch_status st;

	/* No later branch may name it as its parent; then it goes, or stays as
	 * a hidden layer for the branches incremental to it. A copy that such
	 * branches (still copying) rely on is completed first, not cancelled. */
	if (j->vmm)
		vmm_forget_branch(j->vmm, j->b);
	if (j->b) {
		branch_get_status(j->b, &st);
		if (st.state == BRANCH_COPYING && branch_has_dependents(j->b))
			(void)branch_complete(j->b);
		else if (st.state == BRANCH_COPYING)
			branch_cancel(j->b);
	}
	if (!tag) {
		j->r = -EINVAL;
		return;
	}
	*tag++ = 0;
	j->r = layer_remove(j->dir, tag, &j->hidden);
	layer_compact_request(j->dir);
}

static void drop_done(uv_work_t *w, int status)
{
	struct drop_job *j = w->data;
	struct sbranch *br = j->br;
	struct sandbox *sb = br->sb;
	struct sbenv *env = sb->env;

	if (j->r < 0)
		sb_log(sb, "rmdir branches/%s: removing %s: %s", br->tag, br->dir, strerror(-j->r));
	else
		sb_log(sb, "branch %s removed%s", br->tag,
		       j->hidden ? " (its pages stay, hidden, while branches incremental to it need them)"
				 : "");
	entry_unlink(sb, br);
	j->done(j->ctx, j->r < 0 ? -EIO : 0);
	branch_unref(j->b);
	vmm_unref(j->vmm);
	free(j->dir);
	entry_unref(br);	/* the job's */
	free(j);
	env_job_end(env);
}

int entry_rmdir(struct sandbox *sb, const char *tag, sb_done_fn done, void *ctx)
{
	struct sbranch *br = name_is_valid(tag) ? entry_find(sb, tag, true) : NULL;
	struct drop_job *j;

	assert_on_loop(sb->env);
	if (!br)
		return -ENOENT;
	/* Like a ZFS snapshot with clones: the children's memory is the branch's
	 * template; it goes when they do. */
	if (br->tmpl) {
		sb_log(sb, "rmdir branches/%s refused: %u sandbox(es) started from it still run "
		       "(stop them first)", tag, br->tmpl->refs);
		return -EBUSY;
	}
	j = calloc(1, sizeof(*j));
	if (!j || !(j->dir = strdup(br->dir))) {
		free(j);
		return -ENOMEM;
	}
	if (entry_is_copying(br))
		sb_log(sb, "rmdir branches/%s: %s", tag,
		       branch_has_dependents(br->b)
			       ? "completing the copy first (branches incremental to it need it)"
			       : "cancelling the copy");
	br->phase = ENTRY_DELETING;
	j->work.data = j;
	j->br = entry_ref(br);
	j->b = branch_ref(br->b);
	j->vmm = vmm_ref(sb->vmm);
	j->done = done;
	j->ctx = ctx;
	env_queue_job(sb->env, &j->work, drop_run, drop_done);
	return 0;
}

void entry_cancel_copies(struct sandbox *sb, const char *why)
{
	for (struct sbranch *br = sb->branches; br; br = br->next) {
		if (br->phase != ENTRY_VISIBLE || !entry_is_copying(br))
			continue;
		sb_log(sb, "%s: cancelling the copy of branch %s", why, br->tag);
		branch_cancel(br->b);
	}
}
