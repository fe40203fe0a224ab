/* SPDX-License-Identifier: MIT
 * engine.c — the write-protect copy engine (engine.h).
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
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include "common/error.h"
#include "common/log.h"
#include "common/macro.h"
#include "common/util.h"
#include "uffd/engine.h"
#include "uffd/pagestate.h"
#include "uffd/uffd.h"

#define CHUNK_MIN (64ULL << 10)
#define CHUNK_MAX (4ULL << 20)
#define DEMAND_BUF (PAGESTATE_WORD_PAGES * PAGE_4K)
#define FAULT_BATCH 64
/* A fault copies the pending pages of the aligned window of this many pages
 * around it (within its region): guests write in clusters, and the next
 * writes nearby then find their pages copied (tracking: they fault only to
 * be recorded). One pwrite of up to 64 KiB instead of one per page. */
#define FAULT_AROUND_PAGES 16
#define PREARM_ROUNDS 2

struct engine_session {
	struct engine *e;
	atomic_int refs;
	_Atomic int state;		/* enum engine_state; written under e->lock */
	unsigned users;			/* e->lock */
	struct pagestate ps;
	_Atomic uint64_t *layer;	/* the pages this session's image holds */
	uint64_t layer_pages;
	bool incremental;
	int dest_fd;			/* e->lock; stable while a user is in */
	atomic_int error;
	struct error why;		/* e->lock: the reason of error */
	atomic_bool cancel_req;
	atomic_uint nwaiters;
	_Atomic uint64_t bytes_copied, pages_faulted, pages_demanded;
	_Atomic uint64_t pages_bulk;	/* copied by the bulk thread */
	uint64_t faults_before;		/* e->fault_count when this session was armed */
	uint64_t total;			/* e->total, for progress without the engine */
	_Atomic uint64_t faults_seen;	/* e->fault_count when it ended (or now) */
	pthread_t bulk_thread;		/* e->lock, once bulk_started */
	bool bulk_started;		/* e->lock */
	engine_done_fn done_cb;		/* e->lock */
	void *userdata;			/* e->lock */
};

struct engine {
	int uffd;
	struct uffd_region regions[UFFD_MAX_REGIONS];
	size_t n_regions;
	uint64_t total;
	size_t npages, nwords;
	struct memsrc src;

	pthread_t fault_thread;
	bool fault_thread_started;
	int wake_fd;			/* eventfd: tells the fault thread to stop */
	atomic_bool stop;
	atomic_bool broken;		/* the fault thread died: no session may start */

	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct engine_session *active[ENGINE_MAX_SESSIONS];	/* lock; arm order, a ref each */
	_Atomic size_t n_active;	/* written under lock */
	struct engine_session *next;	/* lock: allocated by engine_prepare() for
					 * the next arm, off the pause */
	unsigned bulk_running;		/* lock: bulk threads not yet past their engine use */
	bool prepared;			/* lock: engine_prepare() ran, engine_arm() not yet */
	bool prearm;			/* lock: pre-arm in engine_prepare() */
	bool prearmed;			/* lock: WP is on, faults only recorded */
	_Atomic uint64_t rate;		/* bulk copy cap in bytes/s, 0 = none */
	_Atomic uint64_t *rearm;	/* pages released while prearmed or tracking */
	_Atomic uint64_t *rearm_snap;	/* arm's snapshot of rearm, taken at the switch */
	bool track;			/* lock: engine_set_tracking() */
	atomic_bool dirty_valid;	/* written under lock: dirty holds every page
					 * written since the last pause */
	_Atomic uint64_t *dirty;	/* pages released since the last pause */
	atomic_bool vmm_gone;
	_Atomic uint64_t fault_count;

	uint8_t fault_buf[FAULT_AROUND_PAGES * PAGE_4K];	/* fault thread only */
};

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

static bool state_active(int s) { return s == ENGINE_ARMED || s == ENGINE_COPYING; }

/* ---- addresses, sources, destination ---- */

static const struct uffd_region *region_of_offset(const struct engine *e, uint64_t off)
{
	for (size_t i = 0; i < e->n_regions; i++)
		if (off >= e->regions[i].offset && off - e->regions[i].offset < e->regions[i].size)
			return &e->regions[i];
	return NULL;
}

static const struct uffd_region *region_of_addr(const struct engine *e, uint64_t addr)
{
	for (size_t i = 0; i < e->n_regions; i++)
		if (addr >= e->regions[i].base && addr - e->regions[i].base < e->regions[i].size)
			return &e->regions[i];
	return NULL;
}

static int read_process(pid_t pid, uint64_t addr, void *buf, size_t len)
{
	struct iovec local = { .iov_base = buf, .iov_len = len };
	struct iovec remote = { .iov_base = (void *)(uintptr_t)addr, .iov_len = len };
	ssize_t n = process_vm_readv(pid, &local, 1, &remote, 1, 0);

	if (n < 0)
		return negative_errno();
	return (size_t)n == len ? 0 : -EFAULT;
}

/* Copy image bytes [off, off+len) (within one region) from the source to s's image. */
static int copy_bytes(struct engine_session *s, uint64_t off, uint64_t len, void *buf,
		      size_t buflen)
{
	struct engine *e = s->e;
	const struct uffd_region *reg = region_of_offset(e, off);
	int r;

	if (!reg || len > reg->offset + reg->size - off)
		return -EINVAL;
	while (len > 0) {
		size_t n = MIN(len, buflen);

		/* A memfd is read with pread: through a mapping of our own, every
		 * page would cost a page fault (2.7x slower measured here). */
		if (e->src.kind == MEMSRC_FD) {
			ssize_t got = pread_full(e->src.fd, buf, n, e->src.fd_offset + (off_t)off);

			r = got < 0 ? (int)got : (size_t)got == n ? 0 : -EIO;
		} else {
			r = read_process(e->src.pid, reg->base + (off - reg->offset), buf, n);
		}
		if (r < 0)
			return r;
		r = pwrite_full(s->dest_fd, buf, n, (off_t)off);
		if (r < 0)
			return r;
		off += n;
		len -= n;
	}
	return 0;
}

/* ---- sessions: references, waiting, failing ---- */

static void session_free(struct engine_session *s)
{
	safe_close(s->dest_fd);
	pagestate_fini(&s->ps);
	free((void *)s->layer);
	free(s);
}

struct engine_session *engine_session_ref(struct engine_session *s)
{
	if (s)
		atomic_fetch_add(&s->refs, 1);
	return s;
}

struct engine_session *engine_session_unref(struct engine_session *s)
{
	if (s && atomic_fetch_sub(&s->refs, 1) == 1)
		session_free(s);
	return NULL;
}

static int session_ended(struct engine_session *s)
{
	int r = atomic_load(&s->error);

	if (r < 0)
		return r;
	return atomic_load(&s->cancel_req) ? -ECANCELED : 0;
}

static void broadcast(struct engine *e)
{
	pthread_mutex_lock(&e->lock);
	pthread_cond_broadcast(&e->cond);
	pthread_mutex_unlock(&e->lock);
}

/* Under e->lock: the first failure is the session's; its reason goes to done_cb. */
static void session_fail_locked(struct engine_session *s, int r, const char *what)
{
	int expected = 0;

	if (atomic_compare_exchange_strong(&s->error, &expected, r))
		error_set_errno(&s->why, r, "%s", what);
	pthread_cond_broadcast(&s->e->cond);
}

static void session_fail(struct engine_session *s, int r, const char *what)
{
	pthread_mutex_lock(&s->e->lock);
	session_fail_locked(s, r, what);
	pthread_mutex_unlock(&s->e->lock);
}

/* Enter s while it is active; returns false (and *ret_state) when it is not. */
static bool session_enter(struct engine_session *s, int *ret_state)
{
	bool active;

	pthread_mutex_lock(&s->e->lock);
	*ret_state = atomic_load(&s->state);
	active = state_active(*ret_state);
	if (active)
		s->users++;
	pthread_mutex_unlock(&s->e->lock);
	return active;
}

static void session_leave(struct engine_session *s)
{
	pthread_mutex_lock(&s->e->lock);
	if (--s->users == 0)
		pthread_cond_broadcast(&s->e->cond);
	pthread_mutex_unlock(&s->e->lock);
}

/* Under e->lock: take s off the active list (dropping the list's reference
 * is left to the caller, outside the lock). */
static bool unlist(struct engine *e, struct engine_session *s)
{
	for (size_t i = 0; i < e->n_active; i++)
		if (e->active[i] == s) {
			memmove(&e->active[i], &e->active[i + 1],
				(e->n_active - i - 1) * sizeof(e->active[0]));
			e->n_active--;
			return true;
		}
	return false;
}

/* ---- protecting and releasing ---- */

/* Write-protect (on) or release (off, waking its waiters) image bytes
 * [off, off+len), split per region. A VMM that has exited makes the ioctl
 * fail with ESRCH/ENOENT: there is nothing left to wake, so a release
 * remembers that instead of failing; a protect fails (its caller reports it;
 * a failed release is only logged: nobody waits for it). */
static int wp_image(struct engine *e, uint64_t off, uint64_t len, bool on)
{
	int ret = 0;

	while (len > 0) {
		const struct uffd_region *reg = region_of_offset(e, off);
		uint64_t n;
		int r;

		if (!reg)
			return -EINVAL;
		n = MIN(len, reg->offset + reg->size - off);
		r = uffd_wp_range(e->uffd, reg->base + (off - reg->offset), n, on, false);
		if (on && r < 0)
			return r;
		if ((r == -ESRCH || r == -ENOENT) && !atomic_exchange(&e->vmm_gone, true))
			log_info("the VMM's memory is gone; un-protecting is moot");
		else if (r < 0 && r != -ESRCH && r != -ENOENT)
			ret = log_warning_errno(r, "cannot un-protect guest memory");
		off += n;
		len -= n;
	}
	return ret;
}

static int unprotect(struct engine *e, uint64_t off, uint64_t len)
{
	return wp_image(e, off, len, false);
}

static int protect_all(struct engine *e) { return wp_image(e, 0, e->total, true); }

/* Under e->lock: pages of word w that some active session still has to copy. */
static uint64_t needed_locked(struct engine *e, size_t w)
{
	uint64_t m = 0;

	for (size_t i = 0; i < e->n_active; i++)
		if (!session_ended(e->active[i]))
			m |= pagestate_not_copied(&e->active[i]->ps, w * PAGESTATE_WORD_PAGES,
						  pagestate_segment(w * PAGESTATE_WORD_PAGES,
								    e->npages));
	return m;
}

/* Release the pages of [first, end) that no active session needs. Under
 * e->lock, so that it happens wholly before or after an arm's switch; except
 * for the bulk copy of the only active session (self) while not tracking,
 * which is what a full copy does every chunk. That needs no lock at all: with
 * self listed, only an incremental session could arm, and none can while
 * dirty_valid is false (only an arm sets it), so once dirty_valid reads false
 * and n_active 1, no other session is or becomes active. (The bulk thread is
 * niced: holding the lock, it could be preempted and hold up the fault
 * thread for milliseconds.) */
static void release_unneeded(struct engine *e, struct engine_session *self, size_t first,
			     size_t end)
{
	if (self && !atomic_load(&e->dirty_valid) && atomic_load(&e->n_active) == 1) {
		unprotect(e, first * PAGE_4K, (end - first) * PAGE_4K);
		return;
	}
	pthread_mutex_lock(&e->lock);
	if (e->n_active == 0) {
		unprotect(e, first * PAGE_4K, (end - first) * PAGE_4K);
		pthread_mutex_unlock(&e->lock);
		return;
	}
	for (size_t p = first; p < end;) {
		unsigned seg = pagestate_segment(p, end), sh = p % PAGESTATE_WORD_PAGES;
		uint64_t free_ = ~(needed_locked(e, p / PAGESTATE_WORD_PAGES) >> sh);

		if (seg < 64)
			free_ &= (1ULL << seg) - 1;
		while (free_) {
			unsigned s = (unsigned)__builtin_ctzll(free_);
			uint64_t x = free_ >> s;
			unsigned run = x == ~0ULL ? 64 : (unsigned)__builtin_ctzll(~x);

			unprotect(e, (p + s) * PAGE_4K, run * PAGE_4K);
			free_ &= run == 64 ? 0 : ~(((1ULL << run) - 1) << s);
		}
		p += seg;
	}
	pthread_mutex_unlock(&e->lock);
}

/* Pages were (or are about to be) released without being recorded: the next
 * session copies all. Always before such a release, so that no arm between
 * the two trusts rearm. */
static void track_lost(struct engine *e)
{
	pthread_mutex_lock(&e->lock);
	atomic_store(&e->dirty_valid, false);
	e->prearmed = false;
	pthread_mutex_unlock(&e->lock);
}

/* Release every page no active session needs, without recording it. */
static void release_all_unneeded(struct engine *e)
{
	track_lost(e);
	release_unneeded(e, NULL, 0, e->npages);
}

/* ---- copying ---- */

/* Claim the pending pages of [first, first+n) (within one bitmap word and one
 * region: see region_segment()) and copy them.
 * Returns the number of pages this call copied, or the session's failure. */
static int copy_segment(struct engine_session *s, size_t first, unsigned n, void *buf,
			size_t buflen)
{
	uint64_t mask = pagestate_claim(&s->ps, first, n);
	int copied = 0;

	while (mask) {
		unsigned sh = (unsigned)__builtin_ctzll(mask);
		uint64_t m = mask >> sh;
		unsigned run = m == ~0ULL ? 64 : (unsigned)__builtin_ctzll(~m);
		uint64_t bits = (run == 64 ? ~0ULL : (1ULL << run) - 1) << sh;
		int r = copy_bytes(s, (first + sh) * PAGE_4K, run * PAGE_4K, buf, buflen);

		if (r < 0) {
			session_fail(s, r, "copying guest memory");
			return r;
		}
		pagestate_mark_copied(&s->ps, first, bits);
		atomic_fetch_add(&s->bytes_copied, run * PAGE_4K);
		if (atomic_load(&s->nwaiters))
			broadcast(s->e);
		mask &= ~bits;
		copied += (int)run;
	}
	return copied;
}

/* Wait until every page of [first, first+n) is COPIED, or the session ends. */
static int wait_copied(struct engine_session *s, size_t first, size_t n)
{
	size_t end = first + n;
	int r = 0;

	for (size_t p = first; p < end && r == 0; p += pagestate_segment(p, end)) {
		unsigned seg = pagestate_segment(p, end);

		if (!pagestate_not_copied(&s->ps, p, seg))
			continue;
		pthread_mutex_lock(&s->e->lock);
		atomic_fetch_add(&s->nwaiters, 1);
		while (pagestate_not_copied(&s->ps, p, seg) && (r = session_ended(s)) == 0)
			pthread_cond_wait(&s->e->cond, &s->e->lock);
		atomic_fetch_sub(&s->nwaiters, 1);
		pthread_mutex_unlock(&s->e->lock);
	}
	return r;
}

/* Pages from p (< end <= npages) up to whichever comes first: the end of
 * p's bitmap word, of p's region, or end. Region boundaries need not be
 * word aligned: a segment never crosses one, so copy_segment's runs do not. */
static unsigned region_segment(const struct engine *e, size_t p, size_t end)
{
	const struct uffd_region *reg = region_of_offset(e, p * PAGE_4K);
	unsigned n = pagestate_segment(p, end);

	if (reg)
		n = (unsigned)MIN((uint64_t)n, (reg->offset + reg->size) / PAGE_4K - p);
	return n;
}

/* Copy what is pending in [first, first+n) and wait for the rest. */
static int copy_range(struct engine_session *s, size_t first, size_t n, void *buf,
		      size_t buflen, _Atomic uint64_t *counter)
{
	size_t end = first + n;
	unsigned seg;

	for (size_t p = first; p < end; p += seg) {
		int r = session_ended(s);

		seg = region_segment(s->e, p, end);
		if (r == 0)
			r = copy_segment(s, p, seg, buf, buflen);
		if (r < 0)
			return r;
		if (counter)
			atomic_fetch_add(counter, (uint64_t)r);
	}
	return wait_copied(s, first, n);
}

/* ---- the fault thread ---- */

static void set_bit(_Atomic uint64_t *bits, size_t page)
{
	atomic_fetch_or(&bits[page / 64], 1ULL << (page % 64));
}

static bool test_bit(_Atomic uint64_t *bits, size_t page)
{
	return atomic_load(&bits[page / 64]) >> (page % 64) & 1;
}

/* May the page be released now? Not while an active session still has to
 * copy it. Under e->lock. */
static bool releasable(struct engine *e, size_t page)
{
	for (size_t i = 0; i < e->n_active; i++)
		if (!session_ended(e->active[i]) &&
		    pagestate_not_copied(&e->active[i]->ps, page, 1))
			return false;
	return true;
}

/* Release the page at image offset off, which the guest is about to write,
 * unless an active session still has to copy it (returns false then). Under
 * the lock, so that engine_arm's switch happens either before this (then the
 * page is copied first) or after both the record and the release:
 * pre-armed, the page is recorded for re-arming; tracking, also as written
 * since the pause. */
static bool release_page(struct engine *e, uint64_t off)
{
	const struct uffd_region *reg = region_of_offset(e, off);
	size_t page = off / PAGE_4K, end = page + 1, stop;
	bool tracking;

	pthread_mutex_lock(&e->lock);
	if (!releasable(e, page)) {
		pthread_mutex_unlock(&e->lock);
		return false;
	}
	tracking = atomic_load(&e->dirty_valid);
	/* Tracking, a page written right after its lower neighbour: the guest
	 * writes a run. Release the rest of the aligned window with it (what
	 * no session needs), so a run faults once per window, not per page.
	 * Recording a page that is then not written is safe: the next branch
	 * copies it again, unchanged. */
	if (tracking && reg && page > reg->offset / PAGE_4K && test_bit(e->dirty, page - 1)) {
		stop = MIN(ALIGN_DOWN(page, FAULT_AROUND_PAGES) + FAULT_AROUND_PAGES,
			   (reg->offset + reg->size) / PAGE_4K);
		while (end < stop && releasable(e, end))
			end++;
	}
	for (size_t p = page; p < end; p++) {
		if (e->prearmed || tracking)
			set_bit(e->rearm, p);
		if (tracking)
			set_bit(e->dirty, p);
	}
	unprotect(e, off, (end - page) * PAGE_4K);
	pthread_mutex_unlock(&e->lock);
	return true;
}

/* Enter the oldest active session that still has page pending, or NULL. */
static struct engine_session *session_needing(struct engine *e, size_t page)
{
	struct engine_session *s = NULL;

	pthread_mutex_lock(&e->lock);
	for (size_t i = 0; i < e->n_active && !s; i++)
		if (!session_ended(e->active[i]) &&
		    pagestate_not_copied(&e->active[i]->ps, page, 1)) {
			s = e->active[i];
			s->users++;
		}
	pthread_mutex_unlock(&e->lock);
	return s;
}

static void handle_fault(struct engine *e, const struct uffd_msg *msg)
{
	uint64_t addr = ALIGN_DOWN((uint64_t)msg->arg.pagefault.address, PAGE_4K);
	const struct uffd_region *reg = region_of_addr(e, addr);
	uint64_t off;

	if (!reg || !(msg->arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WP)) {
		/* Not ours to resolve (we register write-protect only): just wake. */
		log_warning("unexpected fault at 0x%" PRIx64 " (flags 0x%llx)", addr,
			    (unsigned long long)msg->arg.pagefault.flags);
		uffd_wake(e->uffd, addr, PAGE_4K);
		return;
	}
	off = reg->offset + (addr - reg->base);
	atomic_fetch_add(&e->fault_count, 1);
	/* Copy first for each session that needs the page; then record and
	 * release it. A session armed in between makes release_page() refuse:
	 * copy for it too. */
	while (!release_page(e, off)) {
		size_t page = off / PAGE_4K, first, end;
		struct engine_session *s = session_needing(e, page);
		bool pending;
		int r;

		if (!s)
			continue;
		first = MAX(ALIGN_DOWN(page, FAULT_AROUND_PAGES), reg->offset / PAGE_4K);
		end = MIN(first + FAULT_AROUND_PAGES, (reg->offset + reg->size) / PAGE_4K);
		pending = pagestate_not_copied(&s->ps, page, 1);
		r = copy_segment(s, first, region_segment(e, first, end), e->fault_buf,
				 sizeof(e->fault_buf));
		if (r > 0 && pending && !pagestate_not_copied(&s->ps, page, 1))
			atomic_fetch_add(&s->pages_faulted, 1);
		if (r >= 0)
			wait_copied(s, page, 1);
		session_leave(s);
	}
}

/* Nobody serves write-protect faults any more: fail every session, mark the
 * engine broken (before un-protecting: see engine_arm), release every page. */
static void fault_thread_failed(struct engine *e, int r, const char *what)
{
	log_error_errno(r, "fault thread: %s; guest writes can no longer be served, "
			"un-protecting guest memory; this sandbox cannot branch any more", what);
	atomic_store(&e->broken, true);
	track_lost(e);
	pthread_mutex_lock(&e->lock);
	for (size_t i = 0; i < e->n_active; i++)
		session_fail_locked(e->active[i], -EIO, "the fault thread stopped");
	pthread_mutex_unlock(&e->lock);
	unprotect(e, 0, e->total);
}

static void *fault_main(void *userdata)
{
	struct engine *e = userdata;
	struct uffd_msg msgs[FAULT_BATCH];

	while (!atomic_load(&e->stop)) {
		struct pollfd p[2] = { { .fd = e->uffd, .events = POLLIN },
				       { .fd = e->wake_fd, .events = POLLIN } };
		int n;

		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			fault_thread_failed(e, -errno, "poll");
			break;
		}
		if (p[1].revents) {
			uint64_t v;
			(void)!read(e->wake_fd, &v, sizeof(v));
		}
		if (!(p[0].revents & POLLIN)) {
			if (p[0].revents & (POLLERR | POLLHUP | POLLNVAL)) {
				fault_thread_failed(e, -EIO, "the userfaultfd reports an error");
				break;
			}
			continue;
		}
		n = uffd_read_msgs(e->uffd, msgs, ARRAY_SIZE(msgs));
		if (n < 0) {
			fault_thread_failed(e, n, "reading the userfaultfd");
			break;
		}
		for (int i = 0; i < n; i++)
			if (msgs[i].event == UFFD_EVENT_PAGEFAULT)
				handle_fault(e, &msgs[i]);
	}
	return NULL;
}

/* ---- ending a session ---- */

/* The session is over: once no user is inside, drop its copy of the image
 * fd. Done here, off the pause window: closing the last reference to an image
 * that was already deleted frees its blocks, which takes tens of ms. */
static void release_dest(struct engine_session *s)
{
	struct engine *e = s->e;
	int fd;

	pthread_mutex_lock(&e->lock);
	while (s->users > 0)
		pthread_cond_wait(&e->cond, &e->lock);
	fd = s->dest_fd;
	s->dest_fd = -1;
	pthread_mutex_unlock(&e->lock);
	safe_close(fd);
}

/* End s: off the active list, its pages released unless tracking goes on
 * (a success with every write since its pause recorded), final state
 * published, image fd closed. Returns done_cb (taken) and fills why. what:
 * the reason of a failure r that was not a session_fail(). */
static engine_done_fn session_end(struct engine_session *s, int r, const char *what,
				  struct error *why)
{
	struct engine *e = s->e;
	engine_done_fn cb;
	bool keep, listed;

	pthread_mutex_lock(&e->lock);
	if (r < 0 && r != -ECANCELED)
		session_fail_locked(s, r, what ? what : "copying guest memory");
	listed = unlist(e, s);
	atomic_store(&s->faults_seen, atomic_load(&e->fault_count));
	keep = r == 0 && atomic_load(&e->dirty_valid);
	pthread_mutex_unlock(&e->lock);
	/* Tracking goes on only after a success, with the pages still
	 * protected (faults meanwhile are recorded). */
	if (!keep)
		release_all_unneeded(e);
	pthread_mutex_lock(&e->lock);
	if (r == 0)
		atomic_store(&s->state, ENGINE_DONE);
	else if (r == -ECANCELED)
		atomic_store(&s->state, ENGINE_CANCELLED);
	else {
		atomic_store(&s->state, ENGINE_FAILED);
		*why = s->why;
	}
	cb = TAKE_PTR(s->done_cb);
	pthread_cond_broadcast(&e->cond);
	pthread_mutex_unlock(&e->lock);
	release_dest(s);
	if (listed)
		engine_session_unref(s);	/* the list's; the caller holds one */
	return cb;
}

struct throttle {
	uint64_t rate;		/* bytes/s the pace below was set for */
	uint64_t start_usec;	/* when pacing at that rate began */
	uint64_t copied;	/* bytes copied since */
};

/* The rate cap (engine_set_rate): after copying len more bytes, wait until
 * they are due, or the session is cancelled or fails. A new rate starts a new
 * pace. Only what the bulk copies counts (an incremental session walks the
 * whole image but copies little); faults and demands never wait. */
static void bulk_throttle(struct engine_session *s, struct throttle *t, uint64_t len)
{
	struct engine *e = s->e;
	uint64_t rate = atomic_load(&e->rate), due, now;
	struct timespec ts;

	if (rate != t->rate)
		*t = (struct throttle){ .rate = rate, .start_usec = now_usec() };
	else
		t->copied += len;
	if (!rate)
		return;
	due = t->start_usec + (uint64_t)((double)t->copied * USEC_PER_SEC / (double)rate);
	pthread_mutex_lock(&e->lock);
	while ((now = now_usec()) < due && !session_ended(s)) {
		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_sec += (time_t)((due - now) / USEC_PER_SEC);
		ts.tv_nsec += (long)((due - now) % USEC_PER_SEC) * 1000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&e->cond, &e->lock, &ts);
	}
	pthread_mutex_unlock(&e->lock);
}

static int bulk_copy(struct engine_session *s, void *buf)
{
	struct engine *e = s->e;
	uint64_t chunk = CHUNK_MIN, last_faults = atomic_load(&s->pages_faulted), bulk = 0;
	struct throttle t = { .rate = atomic_load(&e->rate), .start_usec = now_usec() };

	for (size_t i = 0; i < e->n_regions; i++) {
		uint64_t off = e->regions[i].offset, end = off + e->regions[i].size;

		while (off < end) {
			uint64_t len = MIN(chunk, end - off), faults, copied;
			int r = copy_range(s, off / PAGE_4K, len / PAGE_4K, buf, CHUNK_MAX,
					   &s->pages_bulk);

			if (r < 0)
				return r;
			copied = (atomic_load(&s->pages_bulk) - bulk) * PAGE_4K;
			bulk += copied / PAGE_4K;
			/* Start writing the chunk back now, so that the final fsync
			 * finds little left to do (a hole costs nothing here). */
			(void)sync_file_range(s->dest_fd, (off_t)off, (off_t)len,
					      SYNC_FILE_RANGE_WRITE);
			/* Tracking: copied pages stay protected until written. */
			if (!atomic_load(&e->dirty_valid))
				release_unneeded(e, s, off / PAGE_4K, (off + len) / PAGE_4K);
			off += len;
			if (copied && (off < end || i + 1 < e->n_regions))	/* not after the last */
				bulk_throttle(s, &t, copied);
			/* Shrink when the guest needed pages copied first, not
			 * for faults that only record a write (tracking). */
			faults = atomic_load(&s->pages_faulted);
			chunk = faults != last_faults ? CHUNK_MIN : MIN(chunk * 2, CHUNK_MAX);
			last_faults = faults;
		}
	}
	return 0;
}

static void *bulk_main(void *userdata)
{
	struct engine_session *s = userdata;
	struct engine *e = s->e;
	struct error why = ERROR_INIT;
	const char *what = NULL;
	engine_done_fn cb;
	void *buf = NULL, *cb_data;
	int r = 0;

	/* A full copy is background work: it yields the CPU to the fault
	 * thread and the guest. An incremental one is short (the pages written
	 * since the last pause) and runs at normal priority: on a busy machine
	 * niceness made it several times slower than a plain pwrite. */
	(void)setpriority(PRIO_PROCESS, (id_t)gettid(), s->incremental ? 0 : 10);
	buf = malloc(CHUNK_MAX);
	if (!buf)
		r = -ENOMEM, what = "allocating the copy buffer";
	if (r == 0)
		r = bulk_copy(s, buf);
	if (r == 0 && fsync(s->dest_fd) < 0)
		r = -errno, what = "fsync of the image";
	if (r == 0)
		r = session_ended(s);	/* a failure that raced with the last page */
	free(buf);
	cb = session_end(s, r, what, &why);
	cb_data = s->userdata;
	/* Past its last use of the engine: engine_free() may go on (also from
	 * the callback below: it may drop the last reference to the engine's
	 * owner and free the engine from this very thread). */
	pthread_mutex_lock(&e->lock);
	e->bulk_running--;
	pthread_cond_broadcast(&e->cond);
	pthread_mutex_unlock(&e->lock);
	if (cb)
		cb(cb_data, r, &why);
	engine_session_unref(s);	/* the thread's */
	return NULL;
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
		release_all_unneeded(e);
	else
		track_lost(e);
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
			r = wp_image(e, off, run * PAGE_4K, true);
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
			r = read_process(e->src.pid, e->regions[i].base + o, buf,
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
		session_free(s);
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

		session_free(s);
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
		r = prearm ? protect_all(e) : 0;
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

/* Under e->lock, at the switch: s's layer. Incremental: the pages written
 * since the last pause, taken out of dirty; else all. */
static void take_layer(struct engine *e, struct engine_session *s, bool incremental)
{
	uint64_t n = 0;

	s->incremental = incremental && atomic_load(&e->dirty_valid);
	for (size_t w = 0; w < e->nwords; w++) {
		uint64_t m = atomic_exchange(&e->dirty[w], 0);

		if (!s->incremental)
			m = w + 1 < e->nwords || e->npages % 64 == 0
				    ? ~0ULL
				    : (1ULL << (e->npages % 64)) - 1;
		atomic_store(&s->layer[w], m);
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
		session_free(s);
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
		atomic_store(&e->rearm_snap[w], atomic_exchange(&e->rearm[w], 0));
	pthread_mutex_unlock(&e->lock);

	r = rearm_only ? rearm_recorded(e, e->rearm_snap, false) : protect_all(e);
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
	/* Its pages are released without being recorded: even a "success" of
	 * an armed session that never copied cannot keep tracking. */
	track_lost(e);
	session_end(s, -ECANCELED, NULL, &why);
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
	r = start_thread(&s->bulk_thread, bulk_main, s, "forkfs-copy", true);
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
	if (!session_enter(s, &state)) {
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
		r = copy_range(s, off / PAGE_4K, (end - off) / PAGE_4K, buf, DEMAND_BUF,
			       &s->pages_demanded);
	free(buf);
	session_leave(s);
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
	r = start_thread(&e->fault_thread, fault_main, e, "forkfs-fault", false);
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
		session_free(e->next);
	free((void *)e->rearm);
	free((void *)e->rearm_snap);
	free((void *)e->dirty);
	pthread_cond_destroy(&e->cond);
	pthread_mutex_destroy(&e->lock);
	free(e);
	return NULL;
}
