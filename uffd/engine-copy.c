/* SPDX-License-Identifier: MIT
 * engine-copy.c — the copy engine's sessions at work (engine-types.h;
 * the rules are at the top of engine.c): waiting for and failing a session,
 * write-protecting and releasing guest pages (never one an active session
 * still needs), copying pages from the source into a session's image, the
 * bulk thread, and a session's end.
 */
#define LOG_PREFIX "uffd: "
#include <sys/uio.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <string.h>
#include "common/error.h"
#include "common/log.h"
#include "common/macro.h"
#include "common/util.h"
#include "uffd/engine-types.h"

/* ---- addresses, sources, destination ---- */

const struct uffd_region *eng_region_of_offset(const struct engine *e, uint64_t off)
{
	for (size_t i = 0; i < e->n_regions; i++)
		if (off >= e->regions[i].offset && off - e->regions[i].offset < e->regions[i].size)
			return &e->regions[i];
	return NULL;
}

const struct uffd_region *eng_region_of_addr(const struct engine *e, uint64_t addr)
{
	for (size_t i = 0; i < e->n_regions; i++)
		if (addr >= e->regions[i].base && addr - e->regions[i].base < e->regions[i].size)
			return &e->regions[i];
	return NULL;
}

int eng_read_process(int mem_fd, uint64_t addr, void *buf, size_t len)
{
	ssize_t n = pread_full(mem_fd, buf, len, (off_t)addr);

	if (n < 0)
		return (int)n;
	if (n == 0 && len > 0)
		return -ESRCH;	/* its memory is gone: the process has exited */
	return (size_t)n == len ? 0 : -EFAULT;
}

/* Copy image bytes [off, off+len) (within one region) from the source to s's image. */
static int copy_bytes(struct engine_session *s, uint64_t off, uint64_t len, void *buf,
		      size_t buflen)
{
	struct engine *e = s->e;
	const struct uffd_region *reg = eng_region_of_offset(e, off);
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
			r = eng_read_process(e->src.fd, reg->base + (off - reg->offset), buf, n);
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

void eng_session_free(struct engine_session *s)
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
		eng_session_free(s);
	return NULL;
}

int eng_session_ended(struct engine_session *s)
{
	int r = atomic_load(&s->error);

	if (r < 0)
		return r;
	return atomic_load(&s->cancel_req) ? -ECANCELED : 0;
}

uint64_t eng_session_needs(struct engine_session *s, size_t first, unsigned n)
{
	return eng_session_ended(s) ? 0 : pagestate_not_copied(&s->ps, first, n);
}

static void broadcast(struct engine *e)
{
	pthread_mutex_lock(&e->lock);
	pthread_cond_broadcast(&e->cond);
	pthread_mutex_unlock(&e->lock);
}

/* Under e->lock: the first failure is the session's; its reason goes to done_cb. */
void eng_session_fail_locked(struct engine_session *s, int r, const char *what)
{
	int expected = 0;

	if (atomic_compare_exchange_strong(&s->error, &expected, r))
		error_set_errno(&s->why, r, "%s", what);
	pthread_cond_broadcast(&s->e->cond);
	eng_slots_kick();	/* it may be waiting for a slot */
}

static void session_fail(struct engine_session *s, int r, const char *what)
{
	pthread_mutex_lock(&s->e->lock);
	eng_session_fail_locked(s, r, what);
	pthread_mutex_unlock(&s->e->lock);
}

/* Enter s while it is active; returns false (and *ret_state) when it is not. */
bool eng_session_enter(struct engine_session *s, int *ret_state)
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

void eng_session_leave(struct engine_session *s)
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
int eng_wp_image(struct engine *e, uint64_t off, uint64_t len, bool on)
{
	int ret = 0;

	while (len > 0) {
		const struct uffd_region *reg = eng_region_of_offset(e, off);
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

int eng_unprotect(struct engine *e, uint64_t off, uint64_t len)
{
	return eng_wp_image(e, off, len, false);
}

int eng_protect_all(struct engine *e) { return eng_wp_image(e, 0, e->total, true); }

/* Under e->lock: pages of word w that some active session still has to copy. */
static uint64_t needed_locked(struct engine *e, size_t w)
{
	uint64_t m = 0;

	for (size_t i = 0; i < e->n_active; i++)
		m |= eng_session_needs(e->active[i], w * PAGESTATE_WORD_PAGES,
				       pagestate_segment(w * PAGESTATE_WORD_PAGES, e->npages));
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
		eng_unprotect(e, first * PAGE_4K, (end - first) * PAGE_4K);
		return;
	}
	pthread_mutex_lock(&e->lock);
	if (e->n_active == 0) {
		eng_unprotect(e, first * PAGE_4K, (end - first) * PAGE_4K);
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

			eng_unprotect(e, (p + s) * PAGE_4K, run * PAGE_4K);
			free_ &= run == 64 ? 0 : ~(((1ULL << run) - 1) << s);
		}
		p += seg;
	}
	pthread_mutex_unlock(&e->lock);
}

/* Pages were (or are about to be) released without being recorded: the next
 * session copies all. Always before such a release, so that no arm between
 * the two trusts rearm. */
void eng_track_lost(struct engine *e)
{
	pthread_mutex_lock(&e->lock);
	atomic_store(&e->dirty_valid, false);
	e->prearmed = false;
	pthread_mutex_unlock(&e->lock);
}

/* Release every page no active session needs, without recording it. */
void eng_release_all_unneeded(struct engine *e)
{
	eng_track_lost(e);
	release_unneeded(e, NULL, 0, e->npages);
}

/* ---- copying ---- */

/* Claim the pending pages of [first, first+n) (within one bitmap word and one
 * region: see eng_region_segment()) and copy them.
 * Returns the number of pages this call copied, or the session's failure. */
int eng_copy_segment(struct engine_session *s, size_t first, unsigned n, void *buf,
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
int eng_wait_copied(struct engine_session *s, size_t first, size_t n)
{
	size_t end = first + n;
	int r = 0;

	for (size_t p = first; p < end && r == 0; p += pagestate_segment(p, end)) {
		unsigned seg = pagestate_segment(p, end);

		if (!pagestate_not_copied(&s->ps, p, seg))
			continue;
		pthread_mutex_lock(&s->e->lock);
		atomic_fetch_add(&s->nwaiters, 1);
		while (pagestate_not_copied(&s->ps, p, seg) && (r = eng_session_ended(s)) == 0)
			pthread_cond_wait(&s->e->cond, &s->e->lock);
		atomic_fetch_sub(&s->nwaiters, 1);
		pthread_mutex_unlock(&s->e->lock);
	}
	return r;
}

/* Pages from p (< end <= npages) up to whichever comes first: the end of
 * p's bitmap word, of p's region, or end. Region boundaries need not be
 * word aligned: a segment never crosses one, so eng_copy_segment's runs do not. */
unsigned eng_region_segment(const struct engine *e, size_t p, size_t end)
{
	const struct uffd_region *reg = eng_region_of_offset(e, p * PAGE_4K);
	unsigned n = pagestate_segment(p, end);

	if (reg)
		n = (unsigned)MIN((uint64_t)n, (reg->offset + reg->size) / PAGE_4K - p);
	return n;
}

/* Copy what is pending in [first, first+n) and wait for the rest. */
int eng_copy_range(struct engine_session *s, size_t first, size_t n, void *buf,
		      size_t buflen, _Atomic uint64_t *counter)
{
	size_t end = first + n;
	unsigned seg;

	for (size_t p = first; p < end; p += seg) {
		int r = eng_session_ended(s);

		seg = eng_region_segment(s->e, p, end);
		if (r == 0)
			r = eng_copy_segment(s, p, seg, buf, buflen);
		if (r < 0)
			return r;
		if (counter)
			atomic_fetch_add(counter, (uint64_t)r);
	}
	return eng_wait_copied(s, first, n);
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
engine_done_fn eng_session_end(struct engine_session *s, int r, const char *what,
				  struct error *why)
{
	struct engine *e = s->e;
	engine_done_fn cb;
	bool keep, listed;

	pthread_mutex_lock(&e->lock);
	if (r < 0 && r != -ECANCELED)
		eng_session_fail_locked(s, r, what ? what : "copying guest memory");
	listed = unlist(e, s);
	atomic_store(&s->faults_seen, atomic_load(&e->fault_count));
	keep = r == 0 && atomic_load(&e->dirty_valid);
	pthread_mutex_unlock(&e->lock);
	/* Tracking goes on only after a success, with the pages still
	 * protected (faults meanwhile are recorded). */
	if (!keep)
		eng_release_all_unneeded(e);
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
	while ((now = now_usec()) < due && !eng_session_ended(s)) {
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
		uint64_t unsynced = off;	/* writeback not started from here */

		while (off < end) {
			uint64_t len = MIN(chunk, end - off), faults, copied;
			int r = eng_copy_range(s, off / PAGE_4K, len / PAGE_4K, buf, CHUNK_MAX,
					   &s->pages_bulk);

			if (r < 0)
				return r;
			copied = (atomic_load(&s->pages_bulk) - bulk) * PAGE_4K;
			bulk += copied / PAGE_4K;
			/* Start writing back what was copied, so that the final
			 * fsync finds little left to do (a hole costs nothing
			 * here); WRITEBACK_BATCH at a time, whatever the chunk:
			 * a guest that keeps faulting keeps chunks at CHUNK_MIN,
			 * and one sync_file_range per 64 KiB copied 4 x slower
			 * under load (BENCHMARKS.md). */
			if (off + len - unsynced >= WRITEBACK_BATCH || off + len == end) {
				(void)sync_file_range(s->dest_fd, (off_t)unsynced,
						      (off_t)(off + len - unsynced),
						      SYNC_FILE_RANGE_WRITE);
				unsynced = off + len;
			}
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

void *eng_bulk_main(void *userdata)
{
	struct engine_session *s = userdata;
	struct engine *e = s->e;
	struct error why = ERROR_INIT;
	const char *what = NULL;
	engine_done_fn cb;
	void *buf = NULL, *cb_data;
	int r = 0;

	/* Started by a raised service thread, it drops that raise (util.h)
	 * while it waits for a slot (engine-slots.c), which sets the copy's
	 * own. Never niced as background work: on a machine whose cores the
	 * guest's vCPUs keep busy that made a 4 GiB copy 3.5 times slower (23 s
	 * against 6.7 s, BENCHMARKS.md), and the guest's writes wait on the
	 * copy meanwhile only for the pages they touch, which the fault thread
	 * copies first. */
	thread_nice_bulk(0);
	r = eng_slot_take(s);
	if (r == 0) {
		buf = malloc(CHUNK_MAX);
		if (!buf)
			r = -ENOMEM, what = "allocating the copy buffer";
		if (r == 0)
			r = bulk_copy(s, buf);
		free(buf);
		/* The slot is for copying: the next copy may run while this
		 * one's writeback ends. */
		eng_slot_give();
		thread_nice_bulk(0);
		if (r == 0 && fsync(s->dest_fd) < 0)
			r = -errno, what = "fsync of the image";
		if (r == 0)
			r = eng_session_ended(s);	/* a failure that raced with the last page */
	}
	cb = eng_session_end(s, r, what, &why);
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
