/* SPDX-License-Identifier: MIT
 * env.c — the job count of a forkfs's sandboxes (see env.h).
 */
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
