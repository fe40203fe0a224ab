/* SPDX-License-Identifier: MIT
 * branch.c — taking live and full branches of a running VMM (see branch.h).
 *
 * Live branch, in this order (protocol doc §5, "recommended order"):
 *
 *   once per vmm   PUT /uffd/wp → receive the WP uffd → engine_new()
 *   before pause   engine_prepare() (populate anonymous memory)
 *   pause window   PATCH /vm Paused → engine_arm() → PUT /snapshot/create
 *                  VmstateOnly → PATCH /vm Resumed
 *   after          engine_start_copy(); the engine calls branch_copy_done()
 *
 * Incremental (the default where guest memory is file-backed): the engine
 * tracks writes after a live branch (engine_set_tracking); vmm->tip is the
 * last live branch whose copy succeeded while tracking. The next live branch
 * asks engine_arm() for an incremental session, and if the engine grants it
 * (it holds every write since the tip's pause), stores only those pages and
 * names the tip as its parent in its pages.map (branch/layer.h). Every read
 * goes through the branch's layer view, which composes the dense image.
 *
 * Full branch: PATCH /vm Paused → PUT /snapshot/create Full into the store →
 * PATCH /vm Resumed. pause_us is measured from sending the pause request to
 * receiving the resume answer.
 *
 * The pause guard: every exit from the pause window goes through
 * leave_pause(), which disarms the engine if it was armed and resumes the VM
 * if it was running before, so a failed branch never leaves the VM paused.
 *
 * Overlap: while earlier branches still copy, a live branch that can be
 * incremental to the tip pauses at once (engine sessions overlap: engine.h);
 * otherwise branch_take() completes the running copies first. A child keeps
 * a reference on its parent while it copies: reads demand the parent's pages
 * through the parent's copy, and the child's end waits for the parent's
 * (wait_parent) before it persists "ready", so a ready branch never rests on
 * a half-copied layer; if the parent fails, so does the child.
 *
 * Locking: vmm->lock protects vmm->engine, vmm->active, vmm->readers,
 * vmm->tip, branch->in_engine and vmm->caps; branch->lock protects the
 * branch's state, its session and parent references and final figures.
 * vmm->lock may be held while taking branch->lock, never the reverse.
 * Readers and cancellers of a copying branch use its session through
 * engine_enter()/engine_leave(), which count them in vmm->readers (a
 * detached VMM's engine is freed only once they left); status readers only
 * load the session's atomic counters. A copy's end (branch_copy_done(), on
 * its session's thread) first takes the branch off vmm->active (freeing its
 * slot, and a detached VMM's engine once idle), then waits for the parent,
 * persists the final state, publishes it, and last clears
 * branch->copy_running, which branch_cancel() and late readers wait for.
 */
#define LOG_PREFIX "branch: "
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include "common/error.h"
#include "common/log.h"
#include "common/macro.h"
#include "common/util.h"
#include "common/nolinks.h"
#include "branch/branch.h"
#include "fc/fc.h"
#include "branch/layer.h"
#include "branch/snapfile.h"
#include "uffd/engine.h"
#include "uffd/handshake.h"

#define HANDSHAKE_TIMEOUT_MS 10000
#define VMSTATE_TIMEOUT_MS 10000
/* A full snapshot may take 60 s + 20 ms per MiB (50 MiB/s), but never more
 * than this, whatever memory size the VMM reports: the VM is paused. */
#define FULL_SNAPSHOT_TIMEOUT_MAX_MS (30U * 60 * 1000)
#define STATE_FILE "branch.state"
#define MAX_MEM_MIB (16ULL << 20)	/* 16 TiB: anything larger is a confused VMM */

struct vmm {
	atomic_int refs;
	char *api_socket;
	char *run_dir;
	char *jail_root;	/* a jailed VMM's root (host path), or NULL; set before use */
	char *jail_out, *jail_out_vmm;	/* its snapshots directory: host path, VMM's path */
	int jail_out_fd;	/* a directory fd jail_out names (/proc/self/fd/N), or -1 */
	uid_t jail_uid;
	pid_t pid;
	int memfd;
	struct fc_client *fc;

	pthread_mutex_t lock;
	pthread_cond_t readers_gone;
	/* caps, the engine's creation and handshakes are used only inside
	 * branch_take(), which sets taking under lock first: one taker at a time. */
	bool caps_known;	/* guarded by taking */
	struct fc_caps caps;	/* guarded by taking */
	struct engine *engine;	/* protected by lock */
	/* Branches whose session is in the engine (arm order), protected by
	 * lock; the copy's reference keeps each alive. */
	struct branch *active[ENGINE_MAX_SESSIONS];
	unsigned n_active;
	unsigned readers;	/* readers inside engine_demand, protected by lock */
	unsigned handshakes;	/* guarded by taking */
	atomic_bool dead;
	_Atomic uint64_t copy_rate;	/* bytes/s cap of background copies, 0 = none */
	atomic_bool incremental;	/* vmm_set_incremental() */
	struct branch *tip;		/* protected by lock: the parent of the next
					 * incremental branch, a reference */
	pthread_cond_t taken;		/* taking went false */
	bool detached;		/* protected by lock: release the engine when idle */
	atomic_bool resume_pending;	/* a resume failed: resume_retry() keeps trying */
	bool taking;		/* protected by lock: a branch_take() runs */
};

struct branch {
	atomic_int refs;
	char *dir;
	struct vmm *vmm;	/* held while copying */
	int mem_fd;		/* memory.bin in the store, O_RDWR (a live branch's own layer) */
	uint64_t id;		/* its layer id (0: no pages.map, cannot be a parent) */
	struct layer_view *view;	/* protected by lock: the composed image */
	uint64_t view_gen;		/* protected by lock: layer_generation() it was built at */

	pthread_mutex_t lock;
	pthread_cond_t ended;		/* copy_running went false */
	struct branch_status st;	/* protected by lock; live counters come from the engine */
	struct engine_session *sess;	/* protected by lock: the running copy's, a reference */
	bool in_engine;			/* protected by vmm->lock: sess is active in the
					 * engine (readers may enter it) */
	struct branch *parent;		/* protected by lock: the branch this one is
					 * incremental to, while this one copies */
	atomic_uint dependents;		/* copying branches incremental to this one */
	atomic_bool cancelled;		/* branch_cancel() was called */
	bool own_done;			/* protected by lock: sess has ended, with own_r */
	int own_r;
	bool copy_running;		/* protected by lock: from the copy's start to the end
					 * of branch_copy_done() */
	uint64_t start_usec;

	void (*notify)(void *userdata);
	void *notify_userdata;
};

/* ---- vmm ---------------------------------------------------------------- */

int vmm_new(const char *api_socket, pid_t pid, int memfd, const char *run_dir, struct vmm **ret)
{
	struct vmm *v = calloc(1, sizeof(*v));
	int r;

	if (!v)
		return -ENOMEM;
	atomic_init(&v->refs, 1);
	atomic_init(&v->incremental, true);
	v->pid = pid;
	v->memfd = -1;
	pthread_mutex_init(&v->lock, NULL);
	pthread_cond_init(&v->readers_gone, NULL);
	pthread_cond_init(&v->taken, NULL);
	v->api_socket = strdup(api_socket);
	v->jail_out_fd = -1;
	v->run_dir = strdup(run_dir);
	if (!v->api_socket || !v->run_dir) {
		r = -ENOMEM;
		goto fail;
	}
	if (memfd >= 0) {
		v->memfd = fcntl(memfd, F_DUPFD_CLOEXEC, 3);
		if (v->memfd < 0) {
			r = -errno;
			goto fail;
		}
	}
	r = fc_client_new(api_socket, &v->fc);
	if (r < 0)
		goto fail;
	*ret = v;
	return 0;
fail:
	vmm_unref(v);
	return r;
}

struct vmm *vmm_ref(struct vmm *v)
{
	if (v)
		atomic_fetch_add(&v->refs, 1);
	return v;
}

struct vmm *vmm_unref(struct vmm *v)
{
	if (!v || atomic_fetch_sub(&v->refs, 1) != 1)
		return NULL;
	engine_free(v->engine);
	branch_unref(v->tip);
	fc_client_free(v->fc);
	safe_close(v->memfd);
	pthread_cond_destroy(&v->readers_gone);
	pthread_cond_destroy(&v->taken);
	pthread_mutex_destroy(&v->lock);
	free(v->api_socket);
	free(v->run_dir);
	free(v->jail_root);
	free(v->jail_out);
	free(v->jail_out_vmm);
	safe_close(v->jail_out_fd);
	free(v);
	return NULL;
}

void vmm_set_copy_rate(struct vmm *v, uint64_t bytes_per_sec)
{
	atomic_store(&v->copy_rate, bytes_per_sec);
}

void vmm_set_dead(struct vmm *v) { atomic_store(&v->dead, true); }

void vmm_set_incremental(struct vmm *v, bool on) { atomic_store(&v->incremental, on); }

int vmm_set_jail(struct vmm *v, const char *root, const char *out_dir, const char *out_vmm,
		 uid_t uid, int out_dirfd)
{
	v->jail_out_fd = out_dirfd;
	v->jail_root = strdup(root);
	v->jail_out = strdup(out_dir);
	v->jail_out_vmm = strdup(out_vmm);
	v->jail_uid = uid;
	return v->jail_root && v->jail_out && v->jail_out_vmm ? 0 : -ENOMEM;
}

void vmm_forget_branch(struct vmm *v, struct branch *b)
{
	struct branch *old = NULL;

	pthread_mutex_lock(&v->lock);
	while (v->taking)
		pthread_cond_wait(&v->taken, &v->lock);
	if (b && v->tip == b) {
		old = TAKE_PTR(v->tip);
		if (v->engine)
			engine_track_forget(v->engine);
	}
	pthread_mutex_unlock(&v->lock);
	branch_unref(old);
}

/* Under v->lock: may a branch be taken while v's earlier ones still copy?
 * Only incremental to the last one (the tip), while the engine tracks. */
static bool vmm_can_overlap(struct vmm *v)
{
	return v->engine && v->tip && atomic_load(&v->incremental) &&
	       engine_can_overlap(v->engine);
}

/* Free v's former engine, which no copy uses any more, on the calling thread
 * (the copy's own thread may: see join_bulk()). Closing its uffd ends the
 * VMM's registration, so the VM can be branched again once this returns. */
static void engine_release(struct vmm *v, struct engine *e)
{
	if (!e)
		return;
	/* A reader or status reader that entered while the copy ran may still
	 * be inside the engine: it leaves quickly now that the session is over. */
	pthread_mutex_lock(&v->lock);
	while (v->readers > 0)
		pthread_cond_wait(&v->readers_gone, &v->lock);
	pthread_mutex_unlock(&v->lock);
	engine_free(e);
}

/* Under v->lock: a detached vmm's engine, once no copy or take uses it
 * (readers and cancellers only use it while a session is active), for
 * engine_release(). */
static struct engine *vmm_take_idle_engine(struct vmm *v)
{
	if (v->detached && v->n_active == 0 && !v->taking)
		return TAKE_PTR(v->engine);
	return NULL;
}

void vmm_detach(struct vmm *v)
{
	struct engine *e = NULL;

	pthread_mutex_lock(&v->lock);
	v->detached = true;
	e = vmm_take_idle_engine(v);
	pthread_mutex_unlock(&v->lock);
	engine_release(v, e);
}

struct fc_client *vmm_client(struct vmm *v) { return v->fc; }

/* ---- branch objects and the persisted state ------------------------------- */

static struct branch *branch_alloc(const char *dir)
{
	struct branch *b = calloc(1, sizeof(*b));

	if (!b)
		return NULL;
	b->dir = strdup(dir);
	if (!b->dir) {
		free(b);
		return NULL;
	}
	atomic_init(&b->refs, 1);
	b->mem_fd = -1;
	pthread_mutex_init(&b->lock, NULL);
	pthread_cond_init(&b->ended, NULL);
	return b;
}

struct branch *branch_ref(struct branch *b)
{
	if (b)
		atomic_fetch_add(&b->refs, 1);
	return b;
}

struct branch *branch_unref(struct branch *b)
{
	if (!b || atomic_fetch_sub(&b->refs, 1) != 1)
		return NULL;
	vmm_unref(b->vmm);
	safe_close(b->mem_fd);
	layer_view_unref(b->view);
	pthread_mutex_destroy(&b->lock);
	pthread_cond_destroy(&b->ended);
	free(b->dir);
	free(b);
	return NULL;
}

void branch_set_notify(struct branch *b, void (*fn)(void *userdata), void *userdata)
{
	pthread_mutex_lock(&b->lock);
	b->notify = fn;
	b->notify_userdata = userdata;
	pthread_mutex_unlock(&b->lock);
}

static void branch_notify(struct branch *b)
{
	void (*fn)(void *);
	void *ud;

	pthread_mutex_lock(&b->lock);
	fn = b->notify;
	ud = b->notify_userdata;
	pthread_mutex_unlock(&b->lock);
	if (fn)
		fn(ud);
}

static int path_in(char *buf, size_t size, const char *dir, const char *name)
{
	if (snprintf(buf, size, "%s/%s", dir, name) >= (int)size)
		return -ENAMETOOLONG;
	return 0;
}

/* The path a jailed VMM sees for a host path under its root. */
static const char *jail_path(const char *root, const char *host_path)
{
	return host_path + strlen(root);
}

static const struct snap_jail *vmm_snap_jail(const struct vmm *v, struct snap_jail *j)
{
	*j = (struct snap_jail){ .host_dir = v->jail_out, .vmm_dir = v->jail_out_vmm,
				 .uid = v->jail_uid };
	return j;
}

/* Persist the status text as branch.state: the same "status" format, so a
 * restart reads back what users saw. */
/* durable: fsynced (every final state). The "copying" written when a branch
 * starts need not be: a crash before its end makes the branch "interrupted"
 * whether the file survived or not (branch_load). */
static int branch_save_state(struct branch *b, const struct branch_status *st, bool durable)
{
	char path[PATH_MAX], text[1024];
	size_t n;
	int r;

	r = path_in(path, sizeof(path), b->dir, STATE_FILE);
	if (r < 0)
		return r;
	n = branch_status_format(st, text, sizeof(text));
	return durable ? write_file_atomic(path, text, n, 0600)
		       : write_file_replace(path, text, n, 0600);
}

/* ---- status ---------------------------------------------------------------- */

static const char *const state_names[] = {
	[BRANCH_COPYING] = "copying",
	[BRANCH_READY] = "ready",
	[BRANCH_FAILED] = "failed",
};

const char *branch_state_to_string(enum branch_state s)
{
	return (unsigned)s < ARRAY_SIZE(state_names) ? state_names[s] : "unknown";
}

static const char *const mode_names[] = {
	[BRANCH_LIVE] = "live",
	[BRANCH_FULL] = "full",
	[BRANCH_LIVE_INCREMENTAL] = "live-incremental",
};

const char *branch_mode_to_string(enum branch_mode m)
{
	return (unsigned)m < ARRAY_SIZE(mode_names) ? mode_names[m] : "unknown";
}

size_t branch_status_format(const struct branch_status *st, char *buf, size_t size)
{
	/* An incremental branch copies only what it stores. */
	uint64_t to_copy = st->mode == BRANCH_LIVE_INCREMENTAL ? st->bytes_stored : st->bytes_total;
	uint64_t pct = to_copy ? st->bytes_copied * 100 / to_copy : 0;
	int n;

	if (st->state == BRANCH_READY || to_copy == 0)
		pct = 100;
	n = snprintf(buf, size,
		     "%s\nmode: %s\nprogress: %" PRIu64 "\nbytes_total: %" PRIu64
		     "\nbytes_copied: %" PRIu64 "\npages_faulted: %" PRIu64 "\npause_us: %" PRIu64
		     "\nelapsed_ms: %" PRIu64 "\nparent: %s\nbytes_stored: %" PRIu64
		     "\narm_us: %" PRIu64 "\ntracked_faults: %" PRIu64 "\n",
		     branch_state_to_string(st->state), branch_mode_to_string(st->mode), pct,
		     st->bytes_total, st->bytes_copied, st->pages_faulted, st->pause_us,
		     st->elapsed_ms, st->parent[0] ? st->parent : "none", st->bytes_stored,
		     st->arm_us, st->tracked_faults);
	if (n >= 0 && (size_t)n < size && st->state == BRANCH_COPYING)
		n += snprintf(buf + n, size - (size_t)n, "queued: %s\n", st->queued ? "yes" : "no");
	if (n >= 0 && (size_t)n < size && st->state == BRANCH_FAILED)
		n += snprintf(buf + n, size - (size_t)n, "error: %s\n", st->error);
	if (n < 0)
		return 0;
	return (size_t)n < size ? (size_t)n : size ? size - 1 : 0;
}

uint64_t branch_memory_size(struct branch *b)
{
	uint64_t n;

	pthread_mutex_lock(&b->lock);
	n = b->st.bytes_total;
	pthread_mutex_unlock(&b->lock);
	return n;
}

static int parse_state_line(struct branch_status *st, const char *line)
{
	static const struct {
		const char *key;
		size_t off;
	} keys[] = {
		{ "bytes_total: ", offsetof(struct branch_status, bytes_total) },
		{ "bytes_copied: ", offsetof(struct branch_status, bytes_copied) },
		{ "pages_faulted: ", offsetof(struct branch_status, pages_faulted) },
		{ "pause_us: ", offsetof(struct branch_status, pause_us) },
		{ "elapsed_ms: ", offsetof(struct branch_status, elapsed_ms) },
		{ "bytes_stored: ", offsetof(struct branch_status, bytes_stored) },
		{ "arm_us: ", offsetof(struct branch_status, arm_us) },
		{ "tracked_faults: ", offsetof(struct branch_status, tracked_faults) },
	};
	size_t i;

	if (strcmp(line, "mode: full") == 0)
		st->mode = BRANCH_FULL;
	else if (strcmp(line, "mode: live-incremental") == 0)
		st->mode = BRANCH_LIVE_INCREMENTAL;
	else if (strncmp(line, "parent: ", 8) == 0 && strcmp(line + 8, "none"))
		snprintf(st->parent, sizeof(st->parent), "%s", line + 8);
	else if (strncmp(line, "error: ", 7) == 0)
		snprintf(st->error, sizeof(st->error), "%s", line + 7);
	for (i = 0; i < ARRAY_SIZE(keys); i++) {
		size_t kl = strlen(keys[i].key);
		if (strncmp(line, keys[i].key, kl) == 0)
			return parse_u64(line + kl, (uint64_t *)((char *)st + keys[i].off));
	}
	return 0;
}

int branch_load(const char *dir, struct branch **ret)
{
	_cleanup_free_ char *text = NULL;
	char path[PATH_MAX], *line, *save = NULL;
	struct layer_header h;
	struct branch *b;
	int r;

	r = path_in(path, sizeof(path), dir, STATE_FILE);
	if (r < 0)
		return r;
	r = read_file_nolinks(path, 4096, &text, NULL);
	if (r < 0)
		return r;
	b = branch_alloc(dir);
	if (!b)
		return -ENOMEM;
	line = strtok_r(text, "\n", &save);
	if (line && strcmp(line, "ready") == 0)
		b->st.state = BRANCH_READY;
	else
		b->st.state = BRANCH_FAILED;
	for (line = strtok_r(NULL, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
		(void)parse_state_line(&b->st, line);
	if (b->st.state == BRANCH_FAILED && !b->st.error[0])
		snprintf(b->st.error, sizeof(b->st.error), "interrupted");
	if (layer_map_read(dir, &h, NULL) == 0)
		b->id = h.id;
	if (b->st.state == BRANCH_READY) {
		struct error e = ERROR_INIT;

		b->view_gen = layer_generation();
		r = layer_view_open(dir, b->st.bytes_total, &b->view, &e);
		if (r < 0) {
			b->st.state = BRANCH_FAILED;
			snprintf(b->st.error, sizeof(b->st.error), "memory.bin unreadable: %s",
				 error_msg(&e));
		} else if (b->st.mode == BRANCH_LIVE_INCREMENTAL) {
			b->st.bytes_stored = layer_view_own_pages(b->view) * PAGE_4K;
		}
	}
	if (b->st.state == BRANCH_FAILED && strcmp(b->st.error, "interrupted") == 0)
		(void)branch_save_state(b, &b->st, true);
	*ret = b;
	return 0;
}

/* ---- reading memory.bin ---------------------------------------------------- */

/* The vmm a copying branch holds, or NULL once its copy has ended. */
static struct vmm *branch_copy_vmm(struct branch *b)
{
	struct vmm *v;

	pthread_mutex_lock(&b->lock);
	v = vmm_ref(b->vmm);
	pthread_mutex_unlock(&b->lock);
	return v;
}

DEFINE_TRIVIAL_CLEANUP_FUNC(struct vmm *, vmm_unref);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct branch *, branch_unref);

/* Use the session of b's running copy without vmm->lock (the engine's done
 * callback takes it): counted as a reader, its engine is not released until
 * engine_leave(). NULL when b's session is no longer active. */
static struct engine_session *engine_enter(struct vmm *v, struct branch *b)
{
	struct engine_session *s = NULL;

	pthread_mutex_lock(&v->lock);
	if (b->in_engine && v->engine) {
		pthread_mutex_lock(&b->lock);
		s = engine_session_ref(b->sess);
		pthread_mutex_unlock(&b->lock);
		v->readers++;
	}
	pthread_mutex_unlock(&v->lock);
	return s;
}

static void engine_leave(struct vmm *v, struct engine_session *s)
{
	engine_session_unref(s);
	pthread_mutex_lock(&v->lock);
	if (--v->readers == 0)
		pthread_cond_broadcast(&v->readers_gone);
	pthread_mutex_unlock(&v->lock);
}

void branch_get_status(struct branch *b, struct branch_status *ret)
{
	struct engine_progress p;

	pthread_mutex_lock(&b->lock);
	*ret = b->st;
	if (ret->state == BRANCH_COPYING)
		ret->elapsed_ms = (now_usec() - b->start_usec) / USEC_PER_MSEC;
	if (ret->state == BRANCH_COPYING && b->sess) {
		/* Only atomic loads of the session (which needs no engine). */
		engine_get_progress(b->sess, &p);
		if (p.state == ENGINE_COPYING || p.state == ENGINE_ARMED || p.state == ENGINE_DONE) {
			ret->bytes_copied = p.bytes_copied;
			ret->pages_faulted = p.pages_faulted;
			ret->queued = p.queued;
		}
	}
	pthread_mutex_unlock(&b->lock);
}

/* Until the running copy (if any) has ended, branch_copy_done() included. */
static void branch_wait_copy(struct branch *b)
{
	pthread_mutex_lock(&b->lock);
	while (b->copy_running)
		pthread_cond_wait(&b->ended, &b->lock);
	pthread_mutex_unlock(&b->lock);
}

/* Until [off, off+len) of memory.bin holds the point-in-time bytes: copied
 * first through the running copy's session, in chunks of at most step bytes,
 * and through the parent's while that still copies (the pages this branch
 * does not hold come from it). 0, or -EIO when the branch failed (or fails
 * meanwhile). */
static int branch_demand(struct branch *b, uint64_t off, uint64_t len, uint64_t step)
{
	_cleanup_(vmm_unrefp) struct vmm *v = branch_copy_vmm(b);
	_cleanup_(branch_unrefp) struct branch *parent = NULL;
	struct engine_session *s;
	enum branch_state state;
	bool own_done;
	int r = 0;

	pthread_mutex_lock(&b->lock);
	state = b->st.state;
	own_done = b->own_done;
	r = b->own_r;
	parent = branch_ref(b->parent);
	pthread_mutex_unlock(&b->lock);
	if (state != BRANCH_COPYING)
		return state == BRANCH_FAILED ? -EIO : 0;
	if (v && (s = engine_enter(v, b))) {
		for (uint64_t o = off, end = off + len; o < end && r == 0; o += step)
			r = engine_demand(s, o, MIN(step, end - o));
		engine_leave(v, s);
	} else if (!own_done) {
		/* The copy is ending: a failed one truncates the image before it
		 * says so. Read only once its outcome is known. */
		branch_wait_copy(b);
		pthread_mutex_lock(&b->lock);
		state = b->st.state;
		pthread_mutex_unlock(&b->lock);
		return state == BRANCH_FAILED ? -EIO : 0;
	}
	if (r == 0 && parent)
		r = branch_demand(parent, off, len, step);
	return r < 0 ? -EIO : 0;
}

/* The branch's view, a reference (NULL for a failed branch). A ready one
 * whose store changed since is re-resolved first (outside the lock: it reads
 * files); the old view stays valid for whoever still holds it. */
static struct layer_view *branch_get_view(struct branch *b)
{
	struct layer_view *v, *nv = NULL;
	uint64_t gen = layer_generation();
	bool stale;

	pthread_mutex_lock(&b->lock);
	v = layer_view_ref(b->view);
	stale = v && b->st.state == BRANCH_READY && b->view_gen != gen;
	pthread_mutex_unlock(&b->lock);
	if (!stale || layer_view_open(b->dir, b->st.bytes_total, &nv, NULL) < 0)
		return v;
	pthread_mutex_lock(&b->lock);
	if (b->view_gen < gen) {	/* not refreshed meanwhile by another reader */
		struct layer_view *t = b->view;

		b->view = nv;
		nv = t;
		b->view_gen = gen;
		if (b->st.mode == BRANCH_LIVE_INCREMENTAL)
			b->st.bytes_stored = layer_view_own_pages(b->view) * PAGE_4K;
	}
	layer_view_unref(v);
	v = layer_view_ref(b->view);
	pthread_mutex_unlock(&b->lock);
	layer_view_unref(nv);
	return v;
}

ssize_t branch_read_memory(struct branch *b, void *buf, size_t len, off_t off)
{
	uint64_t total = branch_memory_size(b);
	struct layer_view *v;
	ssize_t n;
	int r;

	if (off < 0 || (uint64_t)off >= total)
		off = 0, len = 0;	/* EOF, or EIO for a failed branch */
	len = MIN(len, total - (uint64_t)off);
	r = branch_demand(b, (uint64_t)off, len, len);
	if (r < 0 || len == 0)
		return r;
	v = branch_get_view(b);
	if (!v)
		return -EIO;
	n = layer_view_pread(v, buf, len, off);
	layer_view_unref(v);
	return n;
}

int branch_complete_image(struct branch *b)
{
	return branch_demand(b, 0, branch_memory_size(b), 64 * MIB);
}

bool branch_has_dependents(struct branch *b)
{
	return b && atomic_load(&b->dependents) > 0;
}

int branch_complete(struct branch *b)
{
	enum branch_state state;

	(void)branch_complete_image(b);
	branch_wait_copy(b);
	pthread_mutex_lock(&b->lock);
	state = b->st.state;
	pthread_mutex_unlock(&b->lock);
	return state == BRANCH_READY ? 0 : -EIO;
}

struct layer_view *branch_ready_view(struct branch *b)
{
	struct layer_view *v = NULL;

	pthread_mutex_lock(&b->lock);
	/* A stale view is still correct, but pins removed layers: the worker
	 * path (branch_read_memory) re-resolves it. */
	if (b->st.state == BRANCH_READY && b->view_gen == layer_generation())
		v = layer_view_ref(b->view);
	pthread_mutex_unlock(&b->lock);
	return v;
}

int branch_ready_single_fd(struct branch *b)
{
	struct layer_view *v;
	bool ready;
	int fd;

	pthread_mutex_lock(&b->lock);
	ready = b->st.state == BRANCH_READY && b->view;
	pthread_mutex_unlock(&b->lock);
	if (!ready)
		return -EAGAIN;
	/* Re-resolved if the store changed: a flattened image is one file now.
	 * (A stale view of one file is still the image: a full layer never
	 * changes, and its fd outlives a rename or an unlink.) */
	v = branch_get_view(b);
	if (!v)
		return -EAGAIN;
	fd = layer_view_single_fd(v);
	fd = fd < 0 ? -ENOTUNIQ : fcntl(fd, F_DUPFD_CLOEXEC, 3);
	if (fd == -1)
		fd = -errno;
	layer_view_unref(v);
	return fd;
}

int branch_export(struct branch *b, int out_fd, struct error *err)
{
	struct layer_view *v;
	int r;

	r = branch_complete_image(b);
	if (r < 0)
		return error_set_errno(err, r, "the branch failed while it copied");
	v = branch_get_view(b);
	if (!v)
		return error_set(err, -EIO, "the branch has no image");
	r = layer_view_export(v, out_fd, err);
	layer_view_unref(v);
	return r;
}

/* ---- durability ---------------------------------------------------------------- */

/* fsync dir/name: a branch is persisted "ready" only once its files are durable. */
static int fsync_file(const char *dir, const char *name, struct error *err)
{
	char path[PATH_MAX];
	int r;

	if (path_in(path, sizeof(path), dir, name) < 0)
		return error_set(err, -ENAMETOOLONG, "branch path too long");
	r = fsync_path(path);
	return r < 0 ? error_set_errno(err, r, "fsync of %s", path) : 0;
}

/* Start writing dir/name back (best effort: fsync_file() later makes it durable). */
static void start_writeback(const char *dir, const char *name)
{
	_cleanup_close_ int fd = -1;
	char path[PATH_MAX];

	if (path_in(path, sizeof(path), dir, name) == 0 &&
	    (fd = open_nolinks(path, O_RDONLY, 0)) >= 0)
		(void)sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE);
}

/* A live branch's files, durable before "ready" is persisted: memory.bin
 * (fsynced by the engine), vmstate, pages.map and their names. */
static int live_files_durable(struct branch *b, struct error *err)
{
	int r = fsync_file(b->dir, "vmstate", err);

	if (r == 0)
		r = fsync_file(b->dir, LAYER_MAP_FILE, err);
	if (r == 0 && (r = fsync_path(b->dir)) < 0)
		error_set_errno(err, r, "fsync of %s", b->dir);
	return r;
}

/* ---- the copy finishing ----------------------------------------------------- */

/* The copy's final status, persisted before it is published: once anyone can
 * see "ready" or "failed", nothing creates files in the branch directory any
 * more, so an rmdir that follows at once empties it for good. */
static void branch_conclude(struct branch *b, int result, const char *why,
			    struct branch_status *st)
{
	pthread_mutex_lock(&b->lock);
	*st = b->st;
	pthread_mutex_unlock(&b->lock);
	st->elapsed_ms = (now_usec() - b->start_usec) / USEC_PER_MSEC;
	if (result == 0) {
		st->state = BRANCH_READY;
		st->bytes_copied = st->bytes_stored;
	} else {
		st->state = BRANCH_FAILED;
		if (why)
			snprintf(st->error, sizeof(st->error), "%s", why);
		else
			snprintf(st->error, sizeof(st->error), "copy failed: %s", strerror(-result));
	}
	/* A failed image is never read again (reads fail with EIO): give its
	 * blocks back first. On a full store (ENOSPC) that is what lets the
	 * failure, and the sandbox log line about it, be written at all. */
	if (result < 0 && b->mem_fd >= 0 && ftruncate(b->mem_fd, 0) < 0)
		log_warning("%s: cannot free memory.bin: %m", b->dir);
	if (branch_save_state(b, st, true) < 0)
		log_warning("%s: could not persist branch state", b->dir);
}

/* Ask the compactor to look at b's sandbox's layers (a new chain link). */
static void compact_store_of(struct branch *b)
{
	char dir[PATH_MAX];
	char *slash;

	snprintf(dir, sizeof(dir), "%s", b->dir);
	slash = strrchr(dir, '/');
	if (slash) {
		*slash = 0;
		layer_compact_request(dir);
	}
}

/* Under v->lock: b's session left the engine. */
static void vmm_unlist(struct vmm *v, struct branch *b)
{
	for (unsigned i = 0; i < v->n_active; i++)
		if (v->active[i] == b) {
			memmove(&v->active[i], &v->active[i + 1],
				(v->n_active - i - 1) * sizeof(v->active[0]));
			v->n_active--;
			break;
		}
	b->in_engine = false;
}

/* b's own pages are copied: its parent's must be too before b is ready (a
 * child is never ready before its parent, so a crash never leaves a ready
 * branch on a half-copied layer). 0, -ECANCELED (branch_cancel() meanwhile)
 * or -EIO if the parent failed. */
static int wait_parent(struct branch *b, struct branch *parent)
{
	enum branch_state state;

	pthread_mutex_lock(&parent->lock);
	while (parent->copy_running && !atomic_load(&b->cancelled))
		pthread_cond_wait(&parent->ended, &parent->lock);
	state = parent->st.state;
	pthread_mutex_unlock(&parent->lock);
	if (atomic_load(&b->cancelled))
		return -ECANCELED;
	return state == BRANCH_FAILED ? -EIO : 0;
}

/* The reason a copy that ended with result gives in status. */
static const char *copy_failure(int result)
{
	switch (result) {
	case -ECANCELED:
		return "cancelled";
	case -ESRCH:
		return "the VMM exited during the copy and its guest memory is no longer reachable";
	case -ENOSPC:
		return "store full (ENOSPC) while writing memory.bin";
	default:
		return NULL;
	}
}

static void branch_copy_done(void *userdata, int result, const struct error *why_failed)
{
	struct branch *b = userdata;
	struct vmm *v = b->vmm;
	struct engine *detached_engine = NULL;
	struct branch *old_tip = NULL, *parent;
	struct engine_session *sess;
	struct engine_progress p;
	struct branch_status st;
	struct error err = ERROR_INIT;
	char why_buf[BRANCH_ERR_MAX];
	const char *why;

	pthread_mutex_lock(&b->lock);
	engine_get_progress(b->sess, &p);
	b->st.pages_faulted = p.pages_faulted;
	b->st.bytes_copied = p.bytes_copied;
	b->own_done = true;
	b->own_r = result == -ECANCELED ? -EIO : result;
	parent = b->parent;
	pthread_mutex_unlock(&b->lock);
	/* The session is over: free its slot in the engine (and a detached
	 * VMM's uffd) before waiting for the parent. */
	pthread_mutex_lock(&v->lock);
	vmm_unlist(v, b);
	detached_engine = vmm_take_idle_engine(v);
	pthread_mutex_unlock(&v->lock);
	engine_release(v, detached_engine);
	/* A copy that succeeded was fsynced by the engine before it reported. */
	if (result < 0 && result != -ECANCELED)
		log_error("%s: live copy failed: %s", b->dir, error_msg(why_failed));
	why = NULL;
	if (result == 0 && (result = live_files_durable(b, &err)) < 0) {
		snprintf(why_buf, sizeof(why_buf), "%s", error_msg(&err));
		why = why_buf;
	} else if (result == 0 && parent && (result = wait_parent(b, parent)) == -EIO) {
		snprintf(why_buf, sizeof(why_buf), "the branch it is incremental to (%s) failed",
			 strrchr(parent->dir, '/') + 1);
		why = why_buf;
	}
	if (why)
		log_error("%s: %s", b->dir, why);
	else
		why = copy_failure(result);
	if (result == -ECANCELED)
		log_info("%s: live copy cancelled", b->dir);
	/* Persist the final state, and only then publish: whoever sees
	 * "ready" can rely on it after a crash. */
	branch_conclude(b, result, why, &st);
	/* A failed tip can be no branch's parent: the next one is full. */
	pthread_mutex_lock(&v->lock);
	if (result < 0 && v->tip == b) {
		old_tip = TAKE_PTR(v->tip);
		if (v->engine)
			engine_track_forget(v->engine);
	}
	pthread_mutex_unlock(&v->lock);
	branch_unref(old_tip);
	pthread_mutex_lock(&b->lock);
	b->st = st;	/* status readers use b->st's counters from here */
	sess = TAKE_PTR(b->sess);
	parent = TAKE_PTR(b->parent);
	pthread_mutex_unlock(&b->lock);
	engine_session_unref(sess);
	if (parent)
		atomic_fetch_sub(&parent->dependents, 1);
	branch_unref(parent);
	branch_notify(b);
	if (result == 0)
		compact_store_of(b);
	/* The copy's hold on the VMM ends with it: a stopped VMM's memory,
	 * uffd and fault thread must not outlive it for as long as its
	 * branches exist. This may free the engine from its own copy thread. */
	pthread_mutex_lock(&b->lock);
	v = TAKE_PTR(b->vmm);
	b->copy_running = false;
	pthread_cond_broadcast(&b->ended);
	pthread_mutex_unlock(&b->lock);
	vmm_unref(v);
	branch_unref(b);	/* the reference the copy held */
}

int branch_cancel(struct branch *b)
{
	_cleanup_(vmm_unrefp) struct vmm *v = branch_copy_vmm(b);
	_cleanup_(branch_unrefp) struct branch *parent = NULL;
	struct engine_session *s;
	int r = 0;

	/* Only request it as a reader: the copy's end may wait for readers
	 * (to free a detached VMM's engine), so waiting for it here would
	 * deadlock. Then wait for the end, with nothing held (a copy whose own
	 * pages are done waits for its parent: cancel that, or wait). */
	atomic_store(&b->cancelled, true);
	if (v && (s = engine_enter(v, b))) {
		r = engine_cancel_request(s);
		engine_leave(v, s);
	}
	pthread_mutex_lock(&b->lock);
	parent = branch_ref(b->parent);
	pthread_mutex_unlock(&b->lock);
	if (parent) {	/* wake wait_parent() */
		pthread_mutex_lock(&parent->lock);
		pthread_cond_broadcast(&parent->ended);
		pthread_mutex_unlock(&parent->lock);
	}
	branch_wait_copy(b);
	return r;
}

/* ---- taking a branch --------------------------------------------------------- */

/* Every function below returns 0 or -errno and, on failure, leaves the
 * reason in err (the first failure's: a reason already set is kept). The VMM's
 * own words for an API error come through fc_error(). */

static int vmm_ensure_caps(struct vmm *v, struct error *err)
{
	struct fc_caps caps;
	int r;

	if (v->caps_known)
		return 0;
	r = fc_probe_caps(v->fc, &caps);
	if (r < 0)
		return fc_error(v->fc, r, err, "probing the VMM's API");
	v->caps = caps;
	v->caps_known = true;
	return 0;
}

/* Acquire the VMM's write-protect uffd once and build the engine around it. */
static int vmm_ensure_engine(struct vmm *v, uint64_t total, struct error *err)
{
	struct uffd_handshake hs = { .uffd = -1 };
	_cleanup_close_ int lfd = -1;
	struct memsrc src = { .fd = -1 };
	struct engine *e;
	char sock[PATH_MAX];
	pid_t pid;
	int r;

	if (v->engine)
		return 0;
	/* A jailed VMM connects inside its root: the socket is made in its
	 * (root-owned) top directory and given to its uid. */
	if (snprintf(sock, sizeof(sock), "%s/wp-%d-%u.sock", v->jail_root ?: v->run_dir,
		     (int)getpid(), v->handshakes++) >= 108)
		return error_set(err, -ENAMETOOLONG, "handshake socket path too long: %s", sock);
	r = uffd_listen(sock, &lfd, err);
	if (r < 0)
		return error_prefix(err, r, "listening for the write-protect uffd");
	if (v->jail_root && lchown(sock, v->jail_uid, v->jail_uid) < 0) {
		r = error_set_errno(err, -errno, "giving %s to the VMM's uid", sock);
		unlink(sock);
		return r;
	}
	r = fc_uffd_wp(v->fc, v->jail_root ? jail_path(v->jail_root, sock) : sock);
	if (r < 0) {
		unlink(sock);
		return fc_error(v->fc, r, err, "PUT /uffd/wp");
	}
	r = uffd_receive(lfd, total, HANDSHAKE_TIMEOUT_MS, &hs, err);
	unlink(sock);
	if (r < 0)
		return error_prefix(err, r, "receiving the write-protect uffd");
	/* The fd must come from the VMM itself, not from whoever else could
	 * reach the socket: its memory is what gets protected and copied. */
	if (v->pid > 0 && hs.pid != v->pid) {
		safe_close(hs.uffd);
		safe_close(hs.pidfd);
		return error_set(err, -EPERM,
				 "the write-protect uffd came from pid %d, not from the VMM (pid %d)",
				 (int)hs.pid, (int)v->pid);
	}
	pid = hs.pid;
	v->pid = hs.pid;
	if (v->memfd >= 0) {
		src.kind = MEMSRC_FD;
		src.fd = fcntl(v->memfd, F_DUPFD_CLOEXEC, 3);
		src.pid = pid;
		if (src.fd < 0)
			r = -errno;
	} else {
		r = memsrc_open_for_pid(pid, hs.regions, hs.n_regions, &src, err);
		/* The fd was opened by pid: if the sender is still alive now, pid
		 * was still the sender's then, so the fd is its memory. */
		if (r >= 0 && pidfd_exited(hs.pidfd)) {
			safe_close(src.fd);
			r = error_set(err, -ESRCH, "the VMM exited");
		}
	}
	safe_close(hs.pidfd);
	if (r < 0) {
		safe_close(hs.uffd);
		return error_prefix(err, r, "opening guest memory of pid %d", (int)pid);
	}
	r = engine_new(hs.uffd, hs.regions, hs.n_regions, &src, &e, err);
	if (r < 0)
		return error_prefix(err, r, "setting up the copy engine");
	pthread_mutex_lock(&v->lock);
	v->engine = e;
	pthread_mutex_unlock(&v->lock);
	return 0;
}

struct pause_window {
	struct vmm *v;
	struct engine_session *sess;	/* once armed, a reference */
	bool was_running;
	bool paused;
	bool armed;
	uint64_t t0;
	uint64_t t_paused, t_armed, t_saved;	/* step ends, for the log line */
	uint64_t t_prepare, t_durable;
};

#define RESUME_RETRY_FIRST_MS 100
#define RESUME_RETRY_MAX_MS 5000

/* A thread that resumes the VM, as long as its VMM lives, after a resume
 * failed in a pause window: the VM must not stay paused because its VMM was
 * slow to answer (real Firecracker serves its API on one thread: a snapshot
 * call that timed out on our side still runs there, ahead of the resume).
 * It uses a connection of its own; branches are refused meanwhile. */
static void *resume_retry_main(void *arg)
{
	struct vmm *v = arg;
	struct fc_client *c = NULL;
	unsigned delay_ms = RESUME_RETRY_FIRST_MS;

	for (unsigned n = 1; !atomic_load(&v->dead); n++) {
		struct fc_instance_info info;
		int r;

		usleep(delay_ms * 1000);
		r = c ? 0 : fc_client_new(v->api_socket, &c);
		if (r >= 0)
			r = fc_get_instance_info(c, &info);
		if (r >= 0 && info.state == FC_STATE_RUNNING) {
			log_info("%s: the VM runs again (try %u)", v->api_socket, n);
			break;
		}
		if (r >= 0)
			r = fc_resume(c);
		if (r >= 0) {
			log_info("%s: resume try %u succeeded: the VM runs again", v->api_socket, n);
			break;
		}
		log_warning("%s: resume pending: try %u failed: %s", v->api_socket, n,
			    c ? fc_client_last_error(c) : strerror(-r));
		delay_ms = MIN(delay_ms * 2, RESUME_RETRY_MAX_MS);
	}
	fc_client_free(c);
	atomic_store(&v->resume_pending, false);
	vmm_unref(v);
	return NULL;
}

static void resume_retry(struct vmm *v)
{
	pthread_attr_t a;
	pthread_t t;

	if (atomic_exchange(&v->resume_pending, true))
		return;
	vmm_ref(v);
	pthread_attr_init(&a);
	pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
	if (pthread_create(&t, &a, resume_retry_main, v) != 0) {
		log_error("%s: cannot start the resume retries: the VM stays paused",
			  v->api_socket);
		atomic_store(&v->resume_pending, false);
		vmm_unref(v);
	}
	pthread_attr_destroy(&a);
}

bool vmm_resume_pending(struct vmm *v)
{
	return atomic_load(&v->resume_pending);
}

/* The guard: leave the pause window whatever happened inside it. A resume
 * that fails twice goes on in the background (resume_retry). */
static int leave_pause(struct pause_window *w, struct error *err, int r)
{
	int q;

	if (w->armed && r < 0) {
		engine_disarm(w->v->engine, w->sess);
		w->sess = engine_session_unref(w->sess);
		w->armed = false;
	}
	if (w->paused && w->was_running) {
		q = fc_resume(w->v->fc);
		if (q < 0)	/* One retry: a resume must not be lost to a hiccup. */
			q = fc_resume(w->v->fc);
		if (q < 0 && r == 0) {
			r = fc_error(w->v->fc, q, err, "resuming the VM");
		} else if (q < 0) {
			log_error("resuming the VM after a failed branch failed too: %s",
				  fc_client_last_error(w->v->fc));
		}
		if (q < 0) {
			error_prefix(err, r, "the VM could not be resumed (forkfs keeps trying in "
				     "the background)");
			resume_retry(w->v);
		}
	}
	w->paused = false;
	return r;
}

static int enter_pause(struct pause_window *w, struct error *err)
{
	int r;

	w->t0 = now_usec();
	if (!w->was_running)
		return 0;
	r = fc_pause(w->v->fc);
	w->t_paused = now_usec();
	/* A pause that timed out may still have happened: resume to be sure. */
	w->paused = true;
	if (r < 0)
		return leave_pause(w, err, fc_error(w->v->fc, r, err, "pausing the VM"));
	return 0;
}

static int take_full(struct branch *b, struct pause_window *w, struct error *err)
{
	struct snap_file vmstate = { .fd = -1 }, mem = { .fd = -1 };
	struct snap_jail jail;
	unsigned timeout = (unsigned)MIN(60000 + b->st.bytes_total / MIB * 20,
					 (uint64_t)FULL_SNAPSHOT_TIMEOUT_MAX_MS);
	int r;

	r = snap_file_begin(vmm_snap_jail(w->v, &jail), b->dir, "vmstate", &vmstate, err);
	if (r >= 0)
		r = snap_file_begin(&jail, b->dir, "memory.bin", &mem, err);
	if (r >= 0)
		r = enter_pause(w, err);
	if (r < 0)
		goto out;
	r = fc_snapshot_create(w->v->fc, FC_SNAPSHOT_FULL, vmstate.vmm, mem.vmm, timeout);
	if (r < 0)
		r = fc_error(w->v->fc, r, err, "PUT /snapshot/create Full");
	r = leave_pause(w, err, r);
	b->st.pause_us = now_usec() - w->t0;
	if (r >= 0)
		r = snap_file_finish(&vmstate, err);
	if (r >= 0)
		r = snap_file_finish(&mem, err);
out:
	snap_file_end(&vmstate);
	snap_file_end(&mem);
	if (r < 0)
		return r;
	b->mem_fd = open_nolinks(mem.final, O_RDONLY, 0);
	if (b->mem_fd < 0)
		return error_set_errno(err, b->mem_fd, "opening %s", mem.final);
	/* "ready" is persisted next: the image must be on disk before it. */
	if (fsync(b->mem_fd) < 0)
		return error_set_errno(err, -errno, "fsync of %s", mem.final);
	b->st.state = BRANCH_READY;
	b->st.bytes_copied = b->st.bytes_stored = b->st.bytes_total;
	b->st.elapsed_ms = (now_usec() - b->start_usec) / USEC_PER_MSEC;
	b->view_gen = layer_generation();
	return layer_view_open(b->dir, b->st.bytes_total, &b->view, err);
}

/* After a live branch's pause: record its layer (pages.map) and open its
 * view. An incremental session holds only the pages written since parent's
 * pause: parent becomes its parent; any other is a full layer. */
static int write_layer(struct branch *b, struct engine_session *s, struct branch *parent,
		       struct error *err)
{
	_cleanup_free_ uint64_t *bits = NULL;
	struct layer_header h = { .npages = b->st.bytes_total / PAGE_4K };
	size_t nwords = (size_t)(h.npages + 63) / 64;
	struct engine_progress p;
	int r;

	engine_get_progress(s, &p);
	b->st.tracked_faults = p.faults_before;
	h.own_pages = p.bytes_layer / PAGE_4K;
	if (p.incremental) {
		const char *tag = parent ? strrchr(parent->dir, '/') : NULL;

		if (!parent || !parent->id || !tag)
			return error_set(err, -EIO, "an incremental copy without a parent");
		bits = calloc(nwords, sizeof(*bits));
		if (!bits)
			return error_set(err, -ENOMEM, "out of memory");
		engine_layer_map(s, bits, nwords);
		h.parent_id = parent->id;
		snprintf(h.parent_tag, sizeof(h.parent_tag), "%s", tag + 1);
		snprintf(b->st.parent, sizeof(b->st.parent), "%s", tag + 1);
		b->st.mode = BRANCH_LIVE_INCREMENTAL;
	}
	h.id = b->id = layer_new_id(parent ? parent->id : 0);
	b->st.bytes_stored = p.bytes_layer;
	r = layer_map_write(b->dir, &h, bits, false);	/* durable at the end */
	if (r < 0)
		return error_set_errno(err, r, "writing %s/" LAYER_MAP_FILE, b->dir);
	b->view_gen = layer_generation();
	return layer_view_open(b->dir, b->st.bytes_total, &b->view, err);
}

/* After the pause of a live branch: the copy takes over b (a reference) and
 * the vmm, and reports through branch_copy_done(). An incremental branch
 * keeps its parent until then; the parent of the next one is b if writes are
 * tracked from b's pause on. */
static int start_live_copy(struct branch *b, struct pause_window *w, struct branch *parent,
			   struct error *err)
{
	struct vmm *v = w->v;
	struct engine_session *s = w->sess;
	struct branch *old_tip = NULL;
	int r;

	pthread_mutex_lock(&v->lock);
	v->active[v->n_active++] = branch_ref(b);
	b->in_engine = true;
	pthread_mutex_unlock(&v->lock);
	pthread_mutex_lock(&b->lock);
	b->vmm = vmm_ref(v);
	b->sess = engine_session_ref(s);
	if (b->st.mode == BRANCH_LIVE_INCREMENTAL) {
		b->parent = branch_ref(parent);
		atomic_fetch_add(&parent->dependents, 1);
	}
	b->copy_running = true;
	pthread_mutex_unlock(&b->lock);
	engine_set_rate(v->engine, atomic_load(&v->copy_rate));
	r = engine_start_copy(s, branch_copy_done, b, err);
	if (r < 0) {
		pthread_mutex_lock(&v->lock);
		vmm_unlist(v, b);
		pthread_mutex_unlock(&v->lock);
		pthread_mutex_lock(&b->lock);
		vmm_unref(TAKE_PTR(b->vmm));
		engine_session_unref(TAKE_PTR(b->sess));
		if (b->parent)
			atomic_fetch_sub(&b->parent->dependents, 1);
		branch_unref(TAKE_PTR(b->parent));
		b->copy_running = false;
		pthread_cond_broadcast(&b->ended);
		pthread_mutex_unlock(&b->lock);
		branch_unref(b);
		return error_prefix(err, r, "starting the copy");
	}
	pthread_mutex_lock(&v->lock);
	old_tip = TAKE_PTR(v->tip);
	if (b->id && engine_is_tracking(v->engine))
		v->tip = branch_ref(b);
	pthread_mutex_unlock(&v->lock);
	branch_unref(old_tip);
	return 0;
}

static int take_live(struct branch *b, struct pause_window *w, struct error *err)
{
	_cleanup_(branch_unrefp) struct branch *parent = NULL;
	struct vmm *v = w->v;
	_cleanup_(snap_file_end) struct snap_file vmstate = { .fd = -1 };
	struct snap_jail jail;
	char mem[PATH_MAX];
	int r;

	if (path_in(mem, sizeof(mem), b->dir, "memory.bin") < 0)
		return error_set(err, -ENAMETOOLONG, "branch path too long");
	r = vmm_ensure_engine(v, b->st.bytes_total, err);
	if (r < 0)
		return r;
	r = snap_file_begin(vmm_snap_jail(v, &jail), b->dir, "vmstate", &vmstate, err);
	if (r < 0)
		return r;
	/* Tracking where it is sound (refused on anonymous memory). */
	(void)engine_set_tracking(v->engine, atomic_load(&v->incremental));
	pthread_mutex_lock(&v->lock);
	parent = atomic_load(&v->incremental) ? branch_ref(v->tip) : NULL;
	pthread_mutex_unlock(&v->lock);
	b->mem_fd = open_nolinks(mem, O_RDWR | O_CREAT | O_EXCL, 0600);
	if (b->mem_fd < 0)
		return error_set_errno(err, b->mem_fd, "creating %s", mem);
	/* prepare may pre-arm write-protection: from here an error disarms. */
	w->armed = true;
	w->t_prepare = now_usec();
	r = engine_prepare(v->engine, err);
	if (r < 0)
		return leave_pause(w, err, error_prefix(err, r, "preparing guest memory"));

	r = enter_pause(w, err);
	if (r < 0)
		return r;
	r = engine_arm(v->engine, b->mem_fd, parent != NULL, &w->sess, err);
	if (r < 0)
		return leave_pause(w, err, error_prefix(err, r, "arming write-protection"));
	w->t_armed = now_usec();
	r = fc_snapshot_create(v->fc, FC_SNAPSHOT_VMSTATE_ONLY, vmstate.vmm, NULL,
			       VMSTATE_TIMEOUT_MS);
	if (r < 0)
		return leave_pause(w, err,
				   fc_error(v->fc, r, err, "PUT /snapshot/create VmstateOnly"));
	w->t_saved = now_usec();
	r = leave_pause(w, err, 0);
	b->st.pause_us = now_usec() - w->t0;
	b->st.arm_us = w->t_armed - (w->was_running ? w->t_paused : w->t0);
	log_debug("%s: pause window: pause %" PRIu64 " us, arm %" PRIu64 " us, vmstate %" PRIu64
		  " us, resume %" PRIu64 " us",
		  b->dir, w->t_paused - w->t0, w->t_armed - w->t_paused, w->t_saved - w->t_armed,
		  w->t0 + b->st.pause_us - w->t_saved);
	/* vmstate and pages.map are made durable at the copy's end, before
	 * "ready" (live_files_durable); their writeback starts now, so the
	 * pause-to-copy path waits for no disk. */
	if (r == 0)
		r = snap_file_finish(&vmstate, err);
	if (r == 0)
		start_writeback(b->dir, "vmstate");
	if (r == 0)
		r = write_layer(b, w->sess, parent, err);
	w->t_durable = now_usec();
	if (r == 0)
		r = start_live_copy(b, w, parent, err);
	log_debug("%s: taking: until prepare %" PRIu64 " us, prepare %" PRIu64 " us, pause window %"
		  PRIu64 " us, vmstate and layer durable %" PRIu64 " us, copy started %" PRIu64 " us",
		  b->dir, w->t_prepare - b->start_usec, w->t0 - w->t_prepare, b->st.pause_us,
		  w->t_durable - w->t0 - b->st.pause_us, now_usec() - w->t_durable);
	if (r < 0)
		engine_disarm(v->engine, w->sess);
	w->sess = engine_session_unref(w->sess);
	return r;
}


static void remove_branch_files(const char *dir)
{
	static const char *const names[] = { "vmstate", "memory.bin", LAYER_MAP_FILE, STATE_FILE };
	char path[PATH_MAX];
	size_t i;

	for (i = 0; i < ARRAY_SIZE(names); i++)
		if (path_in(path, sizeof(path), dir, names[i]) == 0)
			(void)unlink_nolinks(path);
}

static int resolve_mode(struct vmm *v, enum branch_mode_req req, enum branch_mode *ret,
			struct error *err)
{
	bool live_ok;
	int r;

	if (req == BRANCH_MODE_FULL) {
		*ret = BRANCH_FULL;
		return 0;
	}
	r = vmm_ensure_caps(v, err);
	if (r < 0)
		return r;
	live_ok = v->caps.uffd_wp && v->caps.vmstate_only;
	if (req == BRANCH_MODE_LIVE && !live_ok)
		return error_set(err, -EOPNOTSUPP,
				 "live mode forced but the VMM lacks %s (stock Firecracker?)",
				 !v->caps.uffd_wp ? "PUT /uffd/wp" : "VmstateOnly snapshots");
	*ret = live_ok ? BRANCH_LIVE : BRANCH_FULL;
	return 0;
}

int (branch_take)(struct vmm *v, const char *dir, enum branch_mode_req mode, struct branch **ret,
		  struct error *err)
{
	struct pause_window w = { .v = v };
	struct engine *detached_engine = NULL;
	struct fc_instance_info info;
	struct fc_machine_config mc;
	struct branch *b;
	int r;

	if (atomic_load(&v->dead))
		return error_set(err, -ESRCH, "the VMM is not running");
	if (atomic_load(&v->resume_pending))
		return error_set(err, -EBUSY, "the VM is paused: resuming it after a failed "
				 "branch is still pending");
	b = branch_alloc(dir);
	if (!b)
		return error_set(err, -ENOMEM, "out of memory");

	/* Reserve the vmm, then work without its lock: the FUSE loop takes it
	 * (cancel, detach) and must never wait for a slow or hung VMM. While
	 * earlier branches still copy, this one may start at once if it can be
	 * incremental to the last (engine_can_overlap); otherwise complete them
	 * first (their remaining pages copied from this thread too, ahead of
	 * any rate cap), then pause for this one. */
	for (;;) {
		struct branch *prev;

		pthread_mutex_lock(&v->lock);
		if (v->taking) {
			r = error_set(err, -EBUSY, "another branch of this VM is being taken");
			pthread_mutex_unlock(&v->lock);
			branch_unref(b);
			return r;
		}
		if (v->n_active == 0 || (mode != BRANCH_MODE_FULL && vmm_can_overlap(v)))
			break;
		prev = branch_ref(v->active[0]);
		pthread_mutex_unlock(&v->lock);
		log_info("%s: %s still copies: completing it first", dir, prev->dir);
		(void)branch_complete(prev);
		branch_unref(prev);
	}
	b->start_usec = now_usec();
	v->taking = true;
	pthread_mutex_unlock(&v->lock);

	r = fc_get_instance_info(v->fc, &info);
	if (r < 0) {
		r = fc_error(v->fc, r, err, "GET /");
		goto out_unlock;
	}
	if (info.state != FC_STATE_RUNNING && info.state != FC_STATE_PAUSED) {
		r = error_set(err, -EINVAL, "the VM is not started (state \"%s\")",
			      fc_vm_state_to_string(info.state));
		goto out_unlock;
	}
	w.was_running = info.state == FC_STATE_RUNNING;
	r = fc_get_machine_config(v->fc, &mc);
	if (r < 0) {
		r = fc_error(v->fc, r, err, "GET /machine-config");
		goto out_unlock;
	}
	if (mc.mem_size_mib == 0 || mc.mem_size_mib > MAX_MEM_MIB) {
		r = error_set(err, -EPROTO,
			      "the VMM reports an implausible memory size (%" PRIu64 " MiB)",
			      mc.mem_size_mib);
		goto out_unlock;
	}
	b->st.bytes_total = mc.mem_size_mib * MIB;
	r = resolve_mode(v, mode, &b->st.mode, err);
	if (r < 0)
		goto out_unlock;
	b->st.state = BRANCH_COPYING;
	r = branch_save_state(b, &b->st, false);
	if (r < 0) {
		r = error_set_errno(err, r, "writing %s/%s", dir, STATE_FILE);
		goto out_unlock;
	}
	/* A live branch is the copy's from its start (it persists the end);
	 * a full one is ready here. */
	if (b->st.mode == BRANCH_LIVE) {
		r = take_live(b, &w, err);
	} else {
		r = take_full(b, &w, err);
		if (r == 0)
			r = fsync_file(dir, "vmstate", err);
		if (r == 0 && (r = branch_save_state(b, &b->st, true)) < 0)
			error_set_errno(err, r, "writing %s/%s", dir, STATE_FILE);
	}
out_unlock:
	pthread_mutex_lock(&v->lock);
	v->taking = false;
	pthread_cond_broadcast(&v->taken);
	detached_engine = vmm_take_idle_engine(v);
	pthread_mutex_unlock(&v->lock);
	engine_release(v, detached_engine);
	if (r < 0) {
		remove_branch_files(dir);
		branch_unref(b);
		return r;
	}
	log_info("%s: %s branch taken, pause %" PRIu64 " us", dir, branch_mode_to_string(b->st.mode),
		 b->st.pause_us);
	*ret = b;
	return 0;
}
