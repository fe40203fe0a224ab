/* SPDX-License-Identifier: MIT
 * lanes.c — env.h's lanes: reads of memory.bin, however many, never hold
 * the whole pool. Four sandboxes' lanes each get 40 jobs that block; at most
 * LANE_RUN_MAX of a lane and pool - LANE_POOL_SPARE of all lanes run at once,
 * a plain job (a ctl, a mkdir) still runs at once, and lanes take turns.
 * No FUSE, no VMM: the pool is libuv's, the jobs are plain functions.
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

#include "common/util.h"
#include "sandbox/env.h"
#include "tests/tap.h"

#define POOL 16
#define LANES 4
#define PER_LANE 40

struct job {
	struct lane_job lane;
	int which;
};

static uv_loop_t loop;
static struct sbenv env;
static struct env_lane lanes[LANES];
static atomic_int running[LANES], peak[LANES], total, total_peak;
static atomic_bool release;
static int finished[LANES], order[LANES * PER_LANE], n_order;
static bool plain_ran;

static void bump_peak(atomic_int *peak_, int v)
{
	int p = atomic_load(peak_);

	while (v > p && !atomic_compare_exchange_weak(peak_, &p, v))
		;
}

static void job_run(uv_work_t *w)
{
	struct job *j = w->data;

	bump_peak(&peak[j->which], atomic_fetch_add(&running[j->which], 1) + 1);
	bump_peak(&total_peak, atomic_fetch_add(&total, 1) + 1);
	while (!atomic_load(&release))
		usleep(1000);
	usleep(200);
	atomic_fetch_sub(&running[j->which], 1);
	atomic_fetch_sub(&total, 1);
}

static void job_done(uv_work_t *w, int status)
{
	struct job *j = w->data;

	(void)status;
	finished[j->which]++;
	order[n_order++] = j->which;
	free(j);
	env_job_end(&env);
}

static void plain_run(uv_work_t *w) { (void)w; }

static void plain_done(uv_work_t *w, int status)
{
	(void)w;
	(void)status;
	plain_ran = true;
	env_job_end(&env);
}

static bool run_until(bool (*cond)(void), unsigned ms)
{
	uint64_t end = now_usec() + ms * USEC_PER_MSEC;

	while (!cond() && now_usec() < end)
		uv_run(&loop, UV_RUN_NOWAIT), usleep(500);
	return cond();
}

static bool plain_done_yet(void) { return plain_ran; }
static bool all_done(void) { return n_order == LANES * PER_LANE; }
static bool pool_filled(void) { return atomic_load(&total) == POOL - LANE_POOL_SPARE; }

int main(void)
{
	uv_work_t plain = { 0 };
	int max_run = 0;

	setenv("UV_THREADPOOL_SIZE", "16", 1);
	uv_loop_init(&loop);
	env.loop = &loop;
	env.loop_thread = pthread_self();
	for (int l = 0; l < LANES; l++)
		for (int i = 0; i < PER_LANE; i++) {
			struct job *j = calloc(1, sizeof(*j));

			j->which = l;
			j->lane.work.data = j;
			env_queue_lane_job(&env, &lanes[l], &j->lane, job_run, job_done);
		}
	tap_ok(run_until(pool_filled, 5000), "lane jobs running: %d (cap %d of a pool of %d)",
	       atomic_load(&total), POOL - LANE_POOL_SPARE, POOL);
	/* A plain job (a ctl, a mkdir) while every lane is full and waiting. */
	env_queue_job(&env, &plain, plain_run, plain_done);
	tap_ok(run_until(plain_done_yet, 2000), "a plain job ran while %d lane jobs waited",
	       LANES * PER_LANE - atomic_load(&total));
	atomic_store(&release, true);
	run_until(all_done, 60000);
	tap_ok(all_done(), "every lane job ended (%d)", n_order);
	for (int l = 0; l < LANES; l++) {
		tap_ok(finished[l] == PER_LANE && atomic_load(&peak[l]) <= LANE_RUN_MAX,
		       "lane %d: %d jobs, at most %d at once (cap %d)", l, finished[l],
		       atomic_load(&peak[l]), LANE_RUN_MAX);
	}
	tap_ok(atomic_load(&total_peak) == POOL - LANE_POOL_SPARE,
	       "all lanes: at most %d at once", atomic_load(&total_peak));
	/* Turns: no lane finished all its jobs before another had finished
	 * half of its (FIFO in one queue would run lane 0's 40 first). */
	for (int i = 0; i < n_order; i++) {
		int run = 0;

		for (int k = i; k < n_order && order[k] == order[i]; k++)
			run++;
		if (run > max_run)
			max_run = run;
	}
	tap_ok(max_run <= LANE_RUN_MAX * 2, "lanes took turns (longest run of one lane: %d)",
	       max_run);
	tap_ok(env.jobs == 0 && env.lane_running == 0 && !env.waiting_head, "nothing left counted");
	uv_run(&loop, UV_RUN_NOWAIT);
	TAP_CHECK(uv_loop_close(&loop) == 0);
	return tap_done();
}
