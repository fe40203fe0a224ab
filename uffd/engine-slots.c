/* SPDX-License-Identifier: MIT
 * engine-slots.c — the process-wide limit on bulk copies running at once
 * (engine_set_copy_slots), shared by every engine in the process.
 *
 * A burst of branches (one per sandbox, all at the same moment) would
 * otherwise start one bulk thread each, and on a machine whose cores the
 * guests keep busy they all crawl: 32 copies sharing 2 cores with 33 vCPUs
 * copied at 0.15 × the store's speed (BENCHMARKS.md, load). With a slot per
 * core, a few copy at a time at full speed, in the order their branches were
 * taken. A session waiting for a slot is still a copy in progress: the fault
 * thread copies the pages its guest writes, and readers' demands copy what
 * they read, at once. A copy holding a slot runs raised above the guests,
 * by the raise engine_set_copy_slots() was given (forkfs gives its service
 * threads' own: at -5, two copies got less of the CPU than sixteen at 0,
 * BENCHMARKS.md). Cancelling or failing a waiting session ends its wait at
 * once (eng_slots_kick).
 *
 * Lock order: an engine's lock before slots.lock (a session fails under its
 * engine's lock and kicks); a waiter holds slots.lock and reads only atomics.
 */
#define LOG_PREFIX "uffd: "
#include <pthread.h>
#include "common/util.h"
#include "uffd/engine-types.h"

struct slot_waiter {
	struct slot_waiter *next;
};

static struct {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	unsigned limit;			/* 0: none */
	int raise;			/* nice levels a slot holder runs above the base */
	unsigned running;
	struct slot_waiter *head;	/* FIFO: the order the copies asked */
} slots = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER };

void engine_set_copy_slots(unsigned n, int raise)
{
	pthread_mutex_lock(&slots.lock);
	slots.limit = n;
	slots.raise = raise > 0 ? raise : 0;
	pthread_cond_broadcast(&slots.cond);
	pthread_mutex_unlock(&slots.lock);
}

static bool may_run(const struct slot_waiter *w)
{
	return slots.head == w && (slots.limit == 0 || slots.running < slots.limit);
}

static void unlink_waiter(struct slot_waiter *w)
{
	struct slot_waiter **p = &slots.head;

	while (*p && *p != w)
		p = &(*p)->next;
	if (*p)
		*p = w->next;
}

int eng_slot_take(struct engine_session *s)
{
	struct slot_waiter w = { NULL }, **tail;
	int raise, r = 0;

	pthread_mutex_lock(&slots.lock);
	for (tail = &slots.head; *tail; tail = &(*tail)->next)
		;
	*tail = &w;
	if (!may_run(&w))
		atomic_store(&s->queued, true);
	while (!may_run(&w) && (r = eng_session_ended(s)) == 0)
		pthread_cond_wait(&slots.cond, &slots.lock);
	unlink_waiter(&w);
	if (r == 0)
		slots.running++;
	raise = slots.raise;
	atomic_store(&s->queued, false);
	pthread_cond_broadcast(&slots.cond);	/* the next may go too, or be first now */
	pthread_mutex_unlock(&slots.lock);
	if (r == 0)
		thread_nice_bulk(raise);
	return r;
}

void eng_slot_give(void)
{
	pthread_mutex_lock(&slots.lock);
	slots.running--;
	pthread_cond_broadcast(&slots.cond);
	pthread_mutex_unlock(&slots.lock);
}

void eng_slots_kick(void)
{
	pthread_mutex_lock(&slots.lock);
	pthread_cond_broadcast(&slots.cond);
	pthread_mutex_unlock(&slots.lock);
}
