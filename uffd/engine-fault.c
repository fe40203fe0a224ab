/* SPDX-License-Identifier: MIT
 * engine-fault.c — the copy engine's fault thread (engine-types.h; the
 * rules are at the top of engine.c): every write-protect fault is copied
 * first for each active session that still needs its page, then recorded
 * (pre-armed or tracking) and released.
 */
#define LOG_PREFIX "uffd: "
#include <poll.h>
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
		if (eng_session_needs(e->active[i], page, 1))
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
	const struct uffd_region *reg = eng_region_of_offset(e, off);
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
	eng_unprotect(e, off, (end - page) * PAGE_4K);
	pthread_mutex_unlock(&e->lock);
	return true;
}

/* Enter the oldest active session that still has page pending, or NULL. */
static struct engine_session *session_needing(struct engine *e, size_t page)
{
	struct engine_session *s = NULL;

	pthread_mutex_lock(&e->lock);
	for (size_t i = 0; i < e->n_active && !s; i++)
		if (eng_session_needs(e->active[i], page, 1)) {
			s = e->active[i];
			s->users++;
		}
	pthread_mutex_unlock(&e->lock);
	return s;
}

static void handle_fault(struct engine *e, const struct uffd_msg *msg)
{
	uint64_t addr = ALIGN_DOWN((uint64_t)msg->arg.pagefault.address, PAGE_4K);
	const struct uffd_region *reg = eng_region_of_addr(e, addr);
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
		r = eng_copy_segment(s, first, eng_region_segment(e, first, end), e->fault_buf,
				 sizeof(e->fault_buf));
		if (r > 0 && pending && !pagestate_not_copied(&s->ps, page, 1))
			atomic_fetch_add(&s->pages_faulted, 1);
		if (r >= 0)
			eng_wait_copied(s, page, 1);
		eng_session_leave(s);
	}
}

/* Nobody serves write-protect faults any more: fail every session, mark the
 * engine broken (before un-protecting: see engine_arm), release every page. */
static void fault_thread_failed(struct engine *e, int r, const char *what)
{
	log_error_errno(r, "fault thread: %s; guest writes can no longer be served, "
			"un-protecting guest memory; this sandbox cannot branch any more", what);
	atomic_store(&e->broken, true);
	eng_track_lost(e);
	pthread_mutex_lock(&e->lock);
	for (size_t i = 0; i < e->n_active; i++)
		eng_session_fail_locked(e->active[i], -EIO, "the fault thread stopped");
	pthread_mutex_unlock(&e->lock);
	eng_unprotect(e, 0, e->total);
}

/* Read what the uffd holds and serve it: the number of messages, or -errno. */
static int serve(struct engine *e, struct uffd_msg *msgs)
{
	int n = uffd_read_msgs(e->uffd, msgs, FAULT_BATCH);

	for (int i = 0; i < n; i++)
		if (msgs[i].event == UFFD_EVENT_PAGEFAULT)
			handle_fault(e, &msgs[i]);
	return n;
}

/* Guests write in bursts: while a copy session is active, look for the next
 * fault for up to fault_spin_usec after the last one (poll with no timeout,
 * so a blocking uffd never blocks here), then go back to sleeping in poll. */
static int spin(struct engine *e, struct uffd_msg *msgs)
{
	uint64_t spin = atomic_load(&e->fault_spin_usec), until = now_usec() + spin;

	while (spin && atomic_load(&e->n_active) && !atomic_load(&e->stop) &&
	       now_usec() < until) {
		struct pollfd p = { .fd = e->uffd, .events = POLLIN };
		int n = poll(&p, 1, 0);

		if (n < 0 && errno != EINTR)
			return -errno;
		if (n <= 0 || !(p.revents & POLLIN))
			continue;
		n = serve(e, msgs);
		if (n < 0)
			return n;
		until = now_usec() + spin;
	}
	return 0;
}

void *eng_fault_main(void *userdata)
{
	struct engine *e = userdata;
	struct uffd_msg msgs[FAULT_BATCH];

	if (eng_thread_hook)
		eng_thread_hook("fault");
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
		n = serve(e, msgs);
		if (n > 0)
			n = spin(e, msgs);
		if (n < 0) {
			fault_thread_failed(e, n, "reading the userfaultfd");
			break;
		}
	}
	return NULL;
}
