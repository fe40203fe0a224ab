/* SPDX-License-Identifier: MIT
 * engine-types.h — what the copy engine's files share: engine.c (the API:
 * preparing, arming, starting, cancelling sessions; the design, the page
 * states and the locking rules are at its top), engine-copy.c (sessions'
 * waiting and ending, protecting and releasing pages, copying, the bulk
 * thread) and engine-fault.c (the fault thread). Only for uffd/engine*.c.
 */
#pragma once

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <linux/userfaultfd.h>
#include "common/error.h"
#include "uffd/engine.h"
#include "uffd/pagestate.h"
#include "uffd/uffd.h"

#define CHUNK_MIN (64ULL << 10)
#define CHUNK_MAX (4ULL << 20)
#define WRITEBACK_BATCH (4ULL << 20)	/* the bulk copy starts writeback this much at a time */
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
	atomic_bool queued;		/* its bulk copy waits for a slot */
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
	_Atomic uint32_t fault_spin_usec;	/* engine_set_fault_spin(); 0 (off) until set */
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

static inline bool state_active(int s) { return s == ENGINE_ARMED || s == ENGINE_COPYING; }

/* engine-copy.c (each is described where it is defined) */
const struct uffd_region *eng_region_of_offset(const struct engine *e, uint64_t off);
const struct uffd_region *eng_region_of_addr(const struct engine *e, uint64_t addr);
int eng_read_process(int mem_fd, uint64_t addr, void *buf, size_t len);
extern engine_thread_hook_fn eng_thread_hook;	/* engine.c */
void eng_session_free(struct engine_session *s);
int eng_session_ended(struct engine_session *s);
/* The pages of [first, first+n) (one bitmap word) that s still has to copy:
 * none once it has ended (failed or cancelled). */
uint64_t eng_session_needs(struct engine_session *s, size_t first, unsigned n);
void eng_session_fail_locked(struct engine_session *s, int r, const char *what);
bool eng_session_enter(struct engine_session *s, int *ret_state);
void eng_session_leave(struct engine_session *s);
int eng_wp_image(struct engine *e, uint64_t off, uint64_t len, bool on);
int eng_unprotect(struct engine *e, uint64_t off, uint64_t len);
int eng_protect_all(struct engine *e);
void eng_track_lost(struct engine *e);
void eng_release_all_unneeded(struct engine *e);
int eng_copy_segment(struct engine_session *s, size_t first, unsigned n, void *buf,
		     size_t buflen);
int eng_wait_copied(struct engine_session *s, size_t first, size_t n);
unsigned eng_region_segment(const struct engine *e, size_t p, size_t end);
int eng_copy_range(struct engine_session *s, size_t first, size_t n, void *buf, size_t buflen,
		   _Atomic uint64_t *counter);
engine_done_fn eng_session_end(struct engine_session *s, int r, const char *what,
			       struct error *why);
void *eng_bulk_main(void *userdata);

/* engine-slots.c: the process-wide limit on bulk copies at once. Take
 * waits (FIFO) until s may copy, raised as set: 0, or -errno once s has
 * ended (cancelled, failed). Kick: a session ended; its wait, if any, ends. */
int eng_slot_take(struct engine_session *s);
void eng_slot_give(void);
void eng_slots_kick(void);

/* engine-fault.c */
void *eng_fault_main(void *userdata);
