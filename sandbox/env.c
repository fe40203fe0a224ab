/* SPDX-License-Identifier: MIT
 * env.c — the job count of a forkfs's sandboxes, and the lanes that keep
 * reads from taking the whole pool (see env.h).
 */
#include <stdlib.h>

#include "sandbox/env.h"

void env_job_begin(struct sbenv *env)
{
	assert_on_loop(env);
	env->jobs++;
}

void env_job_end(struct sbenv *env)
{
	assert_on_loop(env);
	if (--env->jobs == 0 && env->shutting_down && env->idle)
		env->idle(env->idle_ctx);
}

void env_queue_job(struct sbenv *env, uv_work_t *w, uv_work_cb run, uv_after_work_cb done)
{
	env_job_begin(env);
	if (uv_queue_work(env->loop, w, run, done) < 0) {
		run(w);
		done(w, UV_ECANCELED);
	}
}

/* libuv's pool size: UV_THREADPOOL_SIZE as libuv reads it (default 4). */
static unsigned pool_size(void)
{
	const char *v = getenv("UV_THREADPOOL_SIZE");
	long n = v ? strtol(v, NULL, 10) : 0;

	return n > 0 ? (unsigned)(n > 1024 ? 1024 : n) : 4;
}

/* Put lane at the back of the ring of lanes with work waiting (if it has
 * some and may run more). */
static void lane_enqueue(struct sbenv *env, struct env_lane *l)
{
	if (l->in_ring || !l->head || l->running >= LANE_RUN_MAX)
		return;
	l->next_waiting = NULL;
	if (env->waiting_tail)
		env->waiting_tail->next_waiting = l;
	else
		env->waiting_head = l;
	env->waiting_tail = l;
	l->in_ring = true;
}

static void lane_done(uv_work_t *w, int status);

/* Start waiting jobs while the pool cap allows, one per lane in turn. */
static void lane_dispatch(struct sbenv *env)
{
	while (env->waiting_head && env->lane_running < env->lane_max) {
		struct env_lane *l = env->waiting_head;
		struct lane_job *j = l->head;

		env->waiting_head = l->next_waiting;
		if (!env->waiting_head)
			env->waiting_tail = NULL;
		l->in_ring = false;
		l->head = j->next;
		if (!l->head)
			l->tail = NULL;
		l->running++;
		env->lane_running++;
		lane_enqueue(env, l);
		if (uv_queue_work(env->loop, &j->work, j->run, lane_done) < 0) {
			j->run(&j->work);
			lane_done(&j->work, UV_ECANCELED);
		}
	}
}

static void lane_done(uv_work_t *w, int status)
{
	struct lane_job *j = (struct lane_job *)w;
	struct env_lane *l = j->lane;
	struct sbenv *env = j->env;

	/* Before done: done may drop what holds the lane. */
	l->running--;
	env->lane_running--;
	lane_enqueue(env, l);
	lane_dispatch(env);
	j->done(w, status);
}

void env_queue_lane_job(struct sbenv *env, struct env_lane *lane, struct lane_job *j,
			uv_work_cb run, uv_after_work_cb done)
{
	assert_on_loop(env);
	if (!env->lane_max) {
		unsigned pool = pool_size();

		env->lane_max = pool > LANE_POOL_SPARE ? pool - LANE_POOL_SPARE : 1;
	}
	env_job_begin(env);
	j->run = run;
	j->done = done;
	j->lane = lane;
	j->env = env;
	j->next = NULL;
	if (lane->tail)
		lane->tail->next = j;
	else
		lane->head = j;
	lane->tail = j;
	lane_enqueue(env, lane);
	lane_dispatch(env);
}
