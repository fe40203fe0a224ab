/* SPDX-License-Identifier: MIT
 * engine.c — the write-protect copy engine (engine.h): its API (preparing,
 * arming, starting, cancelling sessions; the engine's life), and the design
 * of all its files: engine-copy.c (sessions at work, the bulk thread) and
 * engine-fault.c (the fault thread) share engine-types.h.
 *
 * Threads. The fault thread lives as long as the engine: it polls the uffd and
 * an eventfd (shutdown) and serves every write-protect fault at once. Each
 * session has a bulk thread from engine_start_copy() to the session's end,
 * which walks the session's image in adaptive chunks (64 KiB doubling to
 * 4 MiB while no fault needs a page copied, back to 64 KiB after one: CRIU's
 * update_xfer_len; faults that only record a write do not count). A fault
 * copies the pending pages of its aligned 16-page window. Readers of
 * memory.bin call engine_demand() on their own threads.
 *
 * Sessions. One session per image (struct engine_session, refcounted: the
 * caller's reference from engine_arm(), the engine's while it is active, the
 * bulk thread's). States (s->state, written under e->lock):
 *
 *   engine_prepare (e->prepared) --arm--> ARMED --start_copy--> COPYING
 *   COPYING --(bulk thread)--> DONE | FAILED | CANCELLED
 *   ARMED --disarm--> IDLE          ARMED --cancel--> CANCELLED
 *
 * A session is "active" in ARMED and COPYING, and then listed in e->active
 * (arm order). Page states of an active session (pagestate.h): PENDING ->
 * CLAIMED -> COPIED. Exactly one of the fault path, the bulk path and the
 * demand path wins a page's claim (an atomic fetch_or) and copies it; the
 * others wait for COPIED (e->cond). The rules that keep each image
 * point-in-time:
 *   - a page is un-protected only once no active session still has it
 *     pending (releasable(); sessions that ended no longer count): un-protecting
 *     wakes the guest;
 *   - so every page some session has not copied is still write-protected, and
 *     the source still holds its content as of that session's pause; reading
 *     the source never faults;
 *   - a session is listed (ARMED) before its first UFFDIO_WRITEPROTECT, under
 *     the lock that every release holds, so a fault arriving while arming is
 *     copied, not merely released.
 *
 * Overlapping sessions. A new session may arm while older ones still copy
 * only if it is incremental (tracking, below): its layer is the set of pages
 * released since the previous pause, and a page still pending for an older
 * session was never released, so the layers are disjoint and each page is
 * copied by the one session that needs it. A fault copies for every active
 * session that has the page pending, oldest first, then releases it. A full
 * session never overlaps (engine_arm refuses: -EBUSY); up to
 * ENGINE_MAX_SESSIONS run at once.
 *
 * Pre-arming (the default; engine_set_prearm): engine_prepare() write-protects
 * every region before the pause, so that the pause does not grow with memory
 * size. While pre-armed a fault copies nothing: the page is recorded in
 * e->rearm and released. engine_prepare() then re-protects the recorded
 * pages in a couple of rounds (taking them out of the set under the lock),
 * and engine_arm() lists the session and protects again only the pages
 * recorded since. The record-and-release and the switch both happen under
 * e->lock, so a fault is handled entirely before the switch (recorded, then
 * re-armed) or entirely after it (copied, then released).
 *
 * Tracking (engine_set_tracking; incremental branches). While tracking
 * (dirty_valid) a page is released only by a write fault, which first records
 * it in e->dirty (written since the last pause) and e->rearm (to protect
 * again), under e->lock (release_page); the bulk copy does not release what
 * it copied. So every page not in rearm is protected, and engine_arm() needs
 * to re-protect only rearm, even while another session copies. Page states
 * outside sessions, then: PROTECTED (unchanged since the last pause) or
 * RELEASED (in dirty and rearm). engine_arm(incremental) swaps dirty out under
 * the lock as the session's layer: exactly the RELEASED pages are PENDING,
 * the others start COPIED (they are in the parent image). Anything that
 * releases pages without recording them (a failed, cancelled or disarmed
 * session, a dead fault thread) first clears dirty_valid (track_lost), and so
 * does engine_track_forget(): the next session then copies every page. When
 * in doubt, copy everything.
 *
 * Failure or cancel ends a session: s->error / s->cancel_req are set, its
 * waiters give up, faults no longer copy for it, and whoever finishes it
 * (bulk thread, or engine_cancel/disarm before start_copy) takes it off the
 * active list, then releases every page no other active session needs,
 * before publishing the final state. The guest is never left blocked. Nor is
 * it when the fault thread itself hits a fatal error: it fails every session
 * (EIO), un-protects everything and marks the engine broken first, so
 * engine_prepare()/engine_arm() refuse from then on; an arm racing with that
 * finds the mark after protecting and undoes itself.
 *
 * Locking. e->lock protects the active list, each session's state, users,
 * dest_fd and done_cb, and the engine's flags; e->cond signals "users
 * dropped", "pages COPIED", "session ended" and "bulk thread gone". The page
 * bitmaps and progress counters are atomics, used without the lock. A path
 * that uses a session's resources (dest_fd, bitmaps) first enters it (users++
 * under the lock, only while active). The lock is never held while copying or
 * while calling done_cb; it is held while releasing pages (an ioctl), so
 * that a release and an arm never interleave.
 */
#define LOG_PREFIX "uffd: "
#include <sched.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <string.h>
#include "common/error.h"
#include "common/log.h"
#include "common/macro.h"
#include "common/util.h"
#include "uffd/engine-types.h"

static const char *const state_names[] = {
	[ENGINE_IDLE] = "idle",		  [ENGINE_ARMED] = "armed",
	[ENGINE_COPYING] = "copying",
	[ENGINE_DONE] = "done",		  [ENGINE_FAILED] = "failed",
	[ENGINE_CANCELLED] = "cancelled",
};

const char *engine_state_to_string(enum engine_state s)
{
	if ((unsigned)s >= ARRAY_SIZE(state_names))
		return NULL;
	return state_names[s];
}


engine_thread_hook_fn eng_thread_hook;

void engine_set_thread_hook(engine_thread_hook_fn fn)
{
	eng_thread_hook = fn;
}

static int start_thread(pthread_t *t, void *(*fn)(void *), void *arg, const char *name,
			bool detached)
{
	pthread_attr_t attr;
	sigset_t all, old;
	int r;

	pthread_attr_init(&attr);
	if (detached)
		pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	/* Engine threads take no signals. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	r = -pthread_create(t, &attr, fn, arg);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	pthread_attr_destroy(&attr);
	if (r == 0)
		pthread_setname_np(*t, name);
	return r;
}

/* ---- the API ---- */

static int check_broken(struct engine *e, struct error *err)
{
	if (!atomic_load(&e->broken))
		return 0;
	return error_set(err, -EIO,
			 "the fault thread has stopped; this VMM cannot be branched any more");
}

/* Is every page protected but those in rearm? Pre-armed, or tracking. Under lock. */
static bool protected_but_rearm(struct engine *e)
{
	return e->prearmed || atomic_load(&e->dirty_valid);
}

/* Leave the pre-armed phase without arming: release what no session needs. */
static void drop_prearm(struct engine *e)
{
	bool was;

	pthread_mutex_lock(&e->lock);
	was = protected_but_rearm(e);
	pthread_mutex_unlock(&e->lock);
	if (was)
		eng_release_all_unneeded(e);
	else
		eng_track_lost(e);
}

int engine_set_fault_rt(struct engine *e, bool on)
{
	struct sched_param sp = { .sched_priority = on ? 1 : 0 };
	int r;

	if (!e->fault_thread_started)
		return -ESRCH;
	r = pthread_setschedparam(e->fault_thread, on ? SCHED_FIFO : SCHED_OTHER, &sp);
	return -r;
}

void engine_set_fault_spin(struct engine *e, unsigned usec)
{
	atomic_store(&e->fault_spin_usec, usec);
}

void engine_set_rate(struct engine *e, uint64_t bytes_per_sec)
{
	atomic_store(&e->rate, bytes_per_sec);
}

int engine_set_tracking(struct engine *e, bool on)
{
	if (on && e->src.anon)
		return -EOPNOTSUPP;
	pthread_mutex_lock(&e->lock);
	e->track = on;
	pthread_mutex_unlock(&e->lock);
	if (!on)
		engine_track_forget(e);
	return 0;
}

void engine_track_forget(struct engine *e)
{
	pthread_mutex_lock(&e->lock);
	atomic_store(&e->dirty_valid, false);
	pthread_mutex_unlock(&e->lock);
}

bool engine_is_tracking(struct engine *e) { return atomic_load(&e->dirty_valid); }

bool engine_can_overlap(struct engine *e)
{
	bool ok;

	pthread_mutex_lock(&e->lock);
	ok = e->n_active == 0 ||
	     (atomic_load(&e->dirty_valid) && e->n_active < ENGINE_MAX_SESSIONS);
	pthread_mutex_unlock(&e->lock);
	return ok;
}

void engine_layer_map(struct engine_session *s, uint64_t *out, size_t nwords)
{
	for (size_t w = 0; w < nwords && w < s->ps.nwords; w++)
		out[w] = atomic_load(&s->layer[w]);
}

void engine_set_prearm(struct engine *e, bool on)
{
	pthread_mutex_lock(&e->lock);
	e->prearm = on;
	pthread_mutex_unlock(&e->lock);
}

/* Protect again every page of bits (released while pre-armed or tracking).
 * With take (e->rearm before the pause) the recorded pages are taken out of
 * the set; engine_arm() passes the snapshot it took at the switch. */
static int rearm_recorded(struct engine *e, _Atomic uint64_t *bits, bool take)
{
	for (size_t w = 0; w < e->nwords; w++) {
		uint64_t m = atomic_load(&bits[w]);

		if (m && take) {
			/* The fault thread records and releases a page under the
			 * lock, so taking the word under it never splits a record
			 * from its release. */
			pthread_mutex_lock(&e->lock);
			m = atomic_exchange(&bits[w], 0);
			pthread_mutex_unlock(&e->lock);
		}
		while (m) {
			unsigned s = (unsigned)__builtin_ctzll(m), run;
			uint64_t x = m >> s, off = ((uint64_t)w * 64 + s) * PAGE_4K;
			int r;

			run = x == ~0ULL ? 64 : (unsigned)__builtin_ctzll(~x);
			r = eng_wp_image(e, off, run * PAGE_4K, true);
			if (r < 0)
				return r;
			m &= run == 64 ? 0 : ~(((1ULL << run) - 1) << s);
		}
	}
	return 0;
}

/* Under e->lock: may a new session arm now (one incremental, if incremental)? */
static int may_arm(struct engine *e, bool incremental, struct error *err)
{
	if (e->n_active == 0)
		return 0;
	if (!incremental || !atomic_load(&e->dirty_valid))
		return error_set(err, -EBUSY, "a copy is in progress");
	if (e->n_active == ENGINE_MAX_SESSIONS)
		return error_set(err, -EBUSY, "%d copies are in progress", ENGINE_MAX_SESSIONS);
	return 0;
}

static int populate_anon(struct engine *e, struct error *err)
{
	void *buf = malloc(CHUNK_MAX);
	int r = 0;

	if (!buf)
		return error_set(err, -ENOMEM, "out of memory");
	for (size_t i = 0; i < e->n_regions && r == 0; i++)
		for (uint64_t o = 0; o < e->regions[i].size && r == 0; o += CHUNK_MAX)
			r = eng_read_process(e->src.fd, e->regions[i].base + o, buf,
					 MIN(CHUNK_MAX, e->regions[i].size - o));
	free(buf);
	return r < 0 ? error_set_errno(err, r, "cannot populate guest memory") : 0;
}

/* A session's memory, touched: allocated inside the pause, its first writes
 * would cost a page fault per 4 KiB of bitmap (milliseconds for a large
 * guest under nested virtualization). */
static struct engine_session *session_alloc(struct engine *e)
{
	struct engine_session *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	s->e = e;
	s->total = e->total;
	atomic_init(&s->refs, 1);
	atomic_init(&s->state, ENGINE_IDLE);
	s->dest_fd = -1;
	if (pagestate_init(&s->ps, e->npages) < 0 ||
	    !(s->layer = calloc(e->nwords, sizeof(uint64_t)))) {
		eng_session_free(s);
		return NULL;
	}
	pagestate_reset(&s->ps);
	memset((void *)s->layer, 0, e->nwords * sizeof(uint64_t));
	return s;
}

/* Under e->lock: prepare the next session's memory, if not done yet. */
static int prealloc_session(struct engine *e, struct error *err)
{
	if (!e->next && !(e->next = session_alloc(e)))
		return error_set(err, -ENOMEM, "out of memory");
	return 0;
}

static int session_new(struct engine *e, int dest_fd, struct engine_session **ret,
		       struct error *err)
{
	struct engine_session *s;

	pthread_mutex_lock(&e->lock);
	s = TAKE_PTR(e->next);
	pthread_mutex_unlock(&e->lock);
	if (!s && !(s = session_alloc(e)))
		return error_set(err, -ENOMEM, "out of memory");
	s->dest_fd = fcntl(dest_fd, F_DUPFD_CLOEXEC, 3);
	if (s->dest_fd < 0 || ftruncate(s->dest_fd, (off_t)e->total) < 0) {
		int r = -errno;

		eng_session_free(s);
		return error_set_errno(err, r, "cannot set up the image file");
	}
	*ret = s;
	return 0;
}

int engine_prepare(struct engine *e, struct error *err)
{
	bool prearm, already;
	int r;

	r = check_broken(e, err);
	if (r < 0)
		return r;
	pthread_mutex_lock(&e->lock);
	r = may_arm(e, true, err);
	pthread_mutex_unlock(&e->lock);
	if (r < 0)
		return r;
	/* Anonymous memory: write-protect skips PTEs that were never populated, so
	 * a first write after arming would escape. Reading every page maps the
	 * zero page there (memfd/shmem gets PTE markers and needs nothing). */
	if (e->src.kind == MEMSRC_PROCESS) {
		r = populate_anon(e, err);
		if (r < 0)
			return r;
	}
	pthread_mutex_lock(&e->lock);
	r = may_arm(e, true, err);
	if (r < 0) {
		pthread_mutex_unlock(&e->lock);
		return r;
	}
	r = prealloc_session(e, err);
	if (r < 0) {
		pthread_mutex_unlock(&e->lock);
		return r;
	}
	e->prepared = true;
	already = protected_but_rearm(e);
	prearm = e->prearm && !already;
	if (prearm) {
		for (size_t w = 0; w < e->nwords; w++)
			atomic_store(&e->rearm[w], 0);
		/* Before the first ioctl: a fault while pre-arming is recorded. */
		e->prearmed = true;
	}
	pthread_mutex_unlock(&e->lock);
	if (prearm || already) {
		/* Protecting everything takes a while on a large guest, and every
		 * page written meanwhile must be protected again inside the pause.
		 * Re-protect those now, twice (like pre-copy rounds), so the pause
		 * only re-arms what the guest wrote during the last short round.
		 * Tracking, everything is protected already but what was written
		 * since the last pause: the rounds alone. */
		r = prearm ? eng_protect_all(e) : 0;
		for (int round = 0; r == 0 && round < PREARM_ROUNDS; round++)
			r = rearm_recorded(e, e->rearm, true);
		if (r < 0)
			error_set_errno(err, r, "cannot write-protect guest memory");
		else
			r = check_broken(e, err);	/* it died meanwhile */
		if (r < 0) {
			engine_disarm(e, NULL);
			return r;
		}
	}
	return 0;
}

/* Under e->lock, inside the pause: a word of e->dirty or e->rearm, taken
 * and cleared. The arm makes one pass over a word per 64 pages (16 384 at
 * 4 GiB), so only plain loads and stores: the lock orders them against the
 * fault thread, which records under it. A locked exchange or seq_cst store
 * per word made forkfs's part of the pause grow with memory size (arm p50
 * at 4 GiB 491-513 us, now 112-129 us). */
static uint64_t take_word(_Atomic uint64_t *word)
{
	uint64_t m = atomic_load_explicit(word, memory_order_relaxed);

	if (m)
		atomic_store_explicit(word, 0, memory_order_relaxed);
	return m;
}

/* Under e->lock, at the switch: s's layer. Incremental: the pages written
 * since the last pause, taken out of dirty; else all. */
static void take_layer(struct engine *e, struct engine_session *s, bool incremental)
{
	uint64_t n = 0;

	s->incremental = incremental && atomic_load(&e->dirty_valid);
	for (size_t w = 0; w < e->nwords; w++) {
		uint64_t m = take_word(&e->dirty[w]);

		if (!s->incremental)
			m = w + 1 < e->nwords || e->npages % 64 == 0
				    ? ~0ULL
				    : (1ULL << (e->npages % 64)) - 1;
		atomic_store_explicit(&s->layer[w], m, memory_order_relaxed);
		n += (uint64_t)__builtin_popcountll(m);
	}
	s->layer_pages = n;
	pagestate_reset_to(&s->ps, s->layer);
	/* Tracking starts (again) at this pause. */
	atomic_store(&e->dirty_valid, e->track);
}

int engine_arm(struct engine *e, int dest_fd, bool incremental, struct engine_session **ret,
	       struct error *err)
{
	struct engine_session *s = NULL;
	bool rearm_only;
	int r;

	*ret = NULL;
	r = check_broken(e, err);
	if (r < 0)
		return r;
	r = session_new(e, dest_fd, &s, err);
	if (r < 0)
		return r;
	pthread_mutex_lock(&e->lock);
	r = may_arm(e, incremental, err);
	if (r == 0 && e->src.kind == MEMSRC_PROCESS && !e->prepared)
		r = error_set(err, -EINVAL, "engine_prepare() must run first");
	if (r < 0) {
		pthread_mutex_unlock(&e->lock);
		eng_session_free(s);
		return r;
	}
	rearm_only = protected_but_rearm(e);
	take_layer(e, s, incremental);
	atomic_store(&e->vmm_gone, false);
	s->faults_before = atomic_exchange(&e->fault_count, 0);
	e->prepared = false;
	/* Listed (ARMED) before the first ioctl: a fault that hits while arming
	 * is copied. From here on no fault on its pages is merely recorded. */
	atomic_store(&s->state, ENGINE_ARMED);
	e->active[e->n_active++] = engine_session_ref(s);
	e->prearmed = false;
	for (size_t w = 0; rearm_only && w < e->nwords; w++)
		atomic_store_explicit(&e->rearm_snap[w], take_word(&e->rearm[w]),
				      memory_order_relaxed);
	pthread_mutex_unlock(&e->lock);

	r = rearm_only ? rearm_recorded(e, e->rearm_snap, false) : eng_protect_all(e);
	if (r < 0)
		error_set_errno(err, r, "cannot write-protect guest memory");
	else
		/* The fault thread died meanwhile: it may have released everything
		 * before we protected, so nobody would serve the faults. */
		r = check_broken(e, err);
	if (r < 0) {
		engine_disarm(e, s);
		engine_session_unref(s);
		return r;
	}
	*ret = s;
	return 0;
}

/* End a session that has no bulk thread (ARMED). */
static int end_armed(struct engine_session *s, enum engine_state final)
{
	struct engine *e = s->e;
	struct error why = ERROR_INIT;

	pthread_mutex_lock(&e->lock);
	if (atomic_load(&s->state) != ENGINE_ARMED || atomic_load(&s->cancel_req)) {
		pthread_mutex_unlock(&e->lock);
		return -EINVAL;	/* not armed, or being ended by another caller */
	}
	atomic_store(&s->cancel_req, true);
	pthread_cond_broadcast(&e->cond);
	pthread_mutex_unlock(&e->lock);
	/* Ended as cancelled: tracking is lost before its pages are released. */
	eng_session_end(s, -ECANCELED, NULL, &why);
	if (final != ENGINE_CANCELLED) {
		pthread_mutex_lock(&e->lock);
		atomic_store(&s->state, final);
		pthread_mutex_unlock(&e->lock);
	}
	return 0;
}

int engine_disarm(struct engine *e, struct engine_session *s)
{
	bool prepared;

	if (s)
		return end_armed(s, ENGINE_IDLE);
	pthread_mutex_lock(&e->lock);
	prepared = e->prepared;
	e->prepared = false;
	pthread_mutex_unlock(&e->lock);
	if (prepared)
		drop_prearm(e);
	return 0;
}

int engine_start_copy(struct engine_session *s, engine_done_fn done_cb, void *userdata,
		      struct error *err)
{
	struct engine *e = s->e;
	int r;

	pthread_mutex_lock(&e->lock);
	if (atomic_load(&s->state) != ENGINE_ARMED) {
		pthread_mutex_unlock(&e->lock);
		return error_set(err, -EINVAL, "not armed");
	}
	s->done_cb = done_cb;
	s->userdata = userdata;
	atomic_store(&s->state, ENGINE_COPYING);
	engine_session_ref(s);		/* the thread's */
	r = start_thread(&s->bulk_thread, eng_bulk_main, s, "forkfs-copy", true);
	if (r < 0) {
		atomic_store(&s->state, ENGINE_ARMED);
		s->done_cb = NULL;
		pthread_mutex_unlock(&e->lock);
		engine_session_unref(s);
		return error_set_errno(err, r, "cannot start the copy thread");
	}
	s->bulk_started = true;
	e->bulk_running++;
	pthread_mutex_unlock(&e->lock);
	return 0;
}

int engine_demand(struct engine_session *s, uint64_t off, uint64_t len)
{
	uint64_t end, total = s->e->total;
	void *buf = NULL;
	int state, r;

	if (off > total || len > total - off)
		return -EINVAL;
	if (len == 0)
		return 0;
	end = ALIGN_UP(off + len, PAGE_4K);
	off = ALIGN_DOWN(off, PAGE_4K);
	if (!eng_session_enter(s, &state)) {
		if (state == ENGINE_DONE)
			return 0;
		if (state == ENGINE_FAILED)
			return atomic_load(&s->error);
		return state == ENGINE_CANCELLED ? -ECANCELED : -EINVAL;
	}
	buf = malloc(DEMAND_BUF);
	if (!buf)
		r = -ENOMEM;
	else
		r = eng_copy_range(s, off / PAGE_4K, (end - off) / PAGE_4K, buf, DEMAND_BUF,
			       &s->pages_demanded);
	free(buf);
	eng_session_leave(s);
	return r;
}

/* Returns with e->lock held when a copy runs (its cancel is requested). */
static int cancel_request(struct engine_session *s, bool *copying)
{
	struct engine *e = s->e;
	int st;

	pthread_mutex_lock(&e->lock);
	st = atomic_load(&s->state);
	*copying = st == ENGINE_COPYING;
	if (!*copying) {
		pthread_mutex_unlock(&e->lock);
		if (st == ENGINE_ARMED)
			(void)end_armed(s, ENGINE_CANCELLED);
		return 0;
	}
	atomic_store(&s->cancel_req, true);
	pthread_cond_broadcast(&e->cond);
	eng_slots_kick();	/* it may be waiting for a slot */
	return 0;
}

int engine_cancel_request(struct engine_session *s)
{
	bool copying;
	int r = cancel_request(s, &copying);

	if (copying)
		pthread_mutex_unlock(&s->e->lock);
	return r;
}

int engine_cancel(struct engine_session *s)
{
	bool copying;
	int r = cancel_request(s, &copying);

	if (!copying)
		return r;
	/* From done_cb (on the bulk thread) the session is already over. */
	if (!pthread_equal(s->bulk_thread, pthread_self()))
		while (atomic_load(&s->state) == ENGINE_COPYING)
			pthread_cond_wait(&s->e->cond, &s->e->lock);
	pthread_mutex_unlock(&s->e->lock);
	return 0;
}

void engine_get_progress(struct engine_session *s, struct engine_progress *ret)
{
	*ret = (struct engine_progress){
		.state = atomic_load(&s->state),
		.bytes_total = s->total,
		.bytes_copied = atomic_load(&s->bytes_copied),
		.pages_faulted = atomic_load(&s->pages_faulted),
		.pages_demanded = atomic_load(&s->pages_demanded),
		.bytes_bulk = atomic_load(&s->pages_bulk) * PAGE_4K,
		.fault_count = atomic_load(&s->faults_seen),
		.bytes_layer = s->layer_pages * PAGE_4K,
		.incremental = s->incremental,
		.queued = atomic_load(&s->queued),
		.faults_before = s->faults_before,
		.error = atomic_load(&s->error),
	};
	if (ret->state != ENGINE_FAILED)
		ret->error = 0;
}

/* Is the uffd registered for write-protect over every region? Releasing a
 * range is harmless and fails (ENOENT/EINVAL) where WP is not registered. */
static int check_wp(struct engine *e, struct error *err)
{
	for (size_t i = 0; i < e->n_regions; i++) {
		int r = uffd_wp_range(e->uffd, e->regions[i].base, e->regions[i].size, false,
				      false);
		if (r == -ESRCH)
			return error_set_errno(err, r, "the VMM exited");
		if (r < 0)
			return error_set(err, -EOPNOTSUPP,
					 "the VMM's userfaultfd does not support write-protect on "
					 "region %zu (UFFDIO_WRITEPROTECT: %s)",
					 i, strerror(-r));
	}
	return 0;
}

static int check_source(struct engine *e, struct error *err)
{
	struct stat st;

	if (e->src.fd < 0 || e->src.fd_offset < 0 || e->src.fd_offset % (off_t)PAGE_4K)
		return error_set(err, -EINVAL, "bad memory source");
	if (fstat(e->src.fd, &st) < 0)
		return error_set_errno(err, -errno, "fstat of the memory source");
	if ((uint64_t)st.st_size < (uint64_t)e->src.fd_offset + e->total)
		return error_set(err, -EINVAL,
				 "memory source holds %" PRIu64 " bytes, need %" PRIu64,
				 (uint64_t)st.st_size, (uint64_t)e->src.fd_offset + e->total);
	return 0;
}

int engine_new(int uffd, const struct uffd_region *regions, size_t n, struct memsrc *src,
	       struct engine **ret, struct error *err)
{
	pthread_condattr_t cattr;
	struct engine *e;
	uint64_t total = 0;
	int r;

	e = calloc(1, sizeof(*e));
	if (!e) {
		safe_close(uffd);
		src->fd = safe_close(src->fd);
		return error_set(err, -ENOMEM, "out of memory");
	}
	e->uffd = uffd;
	e->src = *src;
	src->fd = -1;
	e->wake_fd = -1;
	pthread_mutex_init(&e->lock, NULL);
	pthread_condattr_init(&cattr);
	pthread_condattr_setclock(&cattr, CLOCK_MONOTONIC);
	pthread_cond_init(&e->cond, &cattr);
	pthread_condattr_destroy(&cattr);

	if (n == 0 || n > UFFD_MAX_REGIONS) {
		r = error_set(err, -EINVAL, "%zu regions", n);
		goto fail;
	}
	for (size_t i = 0; i < n; i++) {
		if (regions[i].offset != total || regions[i].size % PAGE_4K || !regions[i].size) {
			r = error_set(err, -EINVAL, "bad region table");
			goto fail;
		}
		total += regions[i].size;
	}
	memcpy(e->regions, regions, n * sizeof(*regions));
	e->n_regions = n;
	e->total = total;
	e->npages = total / PAGE_4K;
	e->nwords = (e->npages + PAGESTATE_WORD_PAGES - 1) / PAGESTATE_WORD_PAGES;

	r = check_wp(e, err);
	if (r < 0)
		goto fail;
	if (e->src.kind == MEMSRC_FD) {
		r = check_source(e, err);
		if (r < 0)
			goto fail;
	} else if (e->src.fd < 0) {
		r = memsrc_open_mem(&e->src, err);
		if (r < 0)
			goto fail;
	}
	e->rearm = calloc(e->nwords, sizeof(uint64_t));
	e->rearm_snap = calloc(e->nwords, sizeof(uint64_t));
	e->dirty = calloc(e->nwords, sizeof(uint64_t));
	if (!e->rearm || !e->rearm_snap || !e->dirty) {
		r = error_set(err, -ENOMEM, "out of memory");
		goto fail;
	}
	e->prearm = true;
	e->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (e->wake_fd < 0) {
		r = error_set_errno(err, -errno, "eventfd");
		goto fail;
	}
	r = start_thread(&e->fault_thread, eng_fault_main, e, "forkfs-fault", false);
	if (r < 0) {
		error_set_errno(err, r, "cannot start the fault thread");
		goto fail;
	}
	e->fault_thread_started = true;
	*ret = e;
	return 0;
fail:
	engine_free(e);
	return r;
}

struct engine *engine_free(struct engine *e)
{
	if (!e)
		return NULL;
	/* Cancel every session, oldest first, and wait for each (not for the
	 * calling bulk thread's own, which has ended already). */
	for (;;) {
		struct engine_session *s;

		pthread_mutex_lock(&e->lock);
		s = e->n_active ? engine_session_ref(e->active[0]) : NULL;
		pthread_mutex_unlock(&e->lock);
		if (!s)
			break;
		engine_cancel(s);
		engine_session_unref(s);
	}
	engine_disarm(e, NULL);
	pthread_mutex_lock(&e->lock);
	while (e->bulk_running > 0)
		pthread_cond_wait(&e->cond, &e->lock);
	pthread_mutex_unlock(&e->lock);
	if (e->fault_thread_started) {
		uint64_t one = 1;

		atomic_store(&e->stop, true);
		(void)!write(e->wake_fd, &one, sizeof(one));
		pthread_join(e->fault_thread, NULL);
	}
	/* Closing the uffd releases every page still protected. */
	safe_close(e->uffd);
	safe_close(e->src.fd);
	safe_close(e->wake_fd);
	if (e->next)
		eng_session_free(e->next);
	free((void *)e->rearm);
	free((void *)e->rearm_snap);
	free((void *)e->dirty);
	pthread_cond_destroy(&e->cond);
	pthread_mutex_destroy(&e->lock);
	free(e);
	return NULL;
}
