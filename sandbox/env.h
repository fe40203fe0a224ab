/* SPDX-License-Identifier: MIT
 * env.h — what every sandbox of one forkfs shares: the libuv loop, the
 * options that shape a VMM's start and a branch, and the count of work in
 * flight that shutdown waits for.
 *
 * Threading (the rules of all of sandbox/): one libuv loop thread owns every
 * object of sandbox/ — the tree, sandboxes, branch entries — and runs every
 * function not marked otherwise. Work that blocks (talking to a VMM, copying
 * memory, removing a store directory) runs on libuv's pool; the loop copies
 * into the job, before queueing it, everything the worker reads (names, store
 * paths, the log fd, references on core objects), and the worker touches
 * nothing else. Results are applied in the after-work callback, on the loop.
 * The one exception is documented in entry.c (the end of a copy is reported
 * from an engine thread, under its own lock). Debug builds check the rule
 * with assert_on_loop().
 */
#pragma once

#include <assert.h>
#include <stdbool.h>
#include <stdint.h>
#include <pthread.h>
#include <sys/types.h>
#include <uv.h>

#include "branch/branch.h"

#define VMM_ARGS_MAX 16

/* Reads of memory.bin during a copy may come in any number: they run on the
 * pool through lanes, one lane per sandbox, so that they never hold all of
 * its workers. At most LANE_RUN_MAX of one lane run at once, and at most
 * pool size - LANE_POOL_SPARE of all lanes: the rest of the pool stays free
 * for ctl, mkdir, rmdir and start of every sandbox. Waiting lanes take
 * turns (round robin). */
#define LANE_RUN_MAX 4
#define LANE_POOL_SPARE 4

struct lane_job;
struct sbenv;
struct env_lane {
	unsigned running;
	struct lane_job *head, *tail;	/* waiting, in order */
	struct env_lane *next_waiting;	/* in the env's ring of lanes that may start one */
	bool in_ring;
};

/* Embed in a job that goes through a lane; w.data is the caller's. */
struct lane_job {
	uv_work_t work;
	uv_work_cb run;
	uv_after_work_cb done;
	struct env_lane *lane;
	struct sbenv *env;
	struct lane_job *next;
};

struct sbenv {
	uv_loop_t *loop;
	pthread_t loop_thread;	/* the thread that runs the loop (assert_on_loop) */

	/* Options, fixed once the tree is set up. */
	char *sandboxes_dir;	/* STORE/sandboxes */
	char *vmm_path;		/* the VMM forkfs launches */
	char *run_dir;		/* private directory for API sockets */
	enum branch_mode_req mode;
	uint64_t copy_rate;	/* bytes/s cap of background copies; 0 = none */
	uint64_t log_max;	/* bytes of a sandbox log before it turns to log.1; 0 = no cap */
	bool vmm_output_to_stderr;	/* also log VMM output lines (foreground) */
	bool no_incremental;	/* every live branch stores the whole image */
	bool jail;		/* jail the VMMs forkfs launches (jail.h) */
	uint32_t jail_id_first, jail_id_count;	/* a sandbox's uid: first + seq % count */
	char **allow_path;	/* where config.json's files may be (confine.h) */
	size_t n_allow_path;
	char **vmm_args;	/* more arguments for the VMM (-o vmm_args) */
	size_t n_vmm_args;	/* at most VMM_ARGS_MAX */

	/* Work items and child processes in flight: shutdown ends once none is. */
	unsigned jobs;
	unsigned lane_running, lane_max;	/* lane jobs on the pool; the cap (0: set at first use) */
	struct env_lane *waiting_head, *waiting_tail;	/* lanes with jobs waiting */
	bool shutting_down;
	void (*idle)(void *ctx);	/* called when the last job ends while shutting down */
	void *idle_ctx;

	/* Tests only: called on the worker of a start, with the VMM's pid, just
	 * before the VMM handle is made (a VMM that dies right there must not
	 * harm forkfs). Copied into the start job on the loop. */
	void (*test_before_vmm_new)(void *ctx, pid_t pid);
	void *test_ctx;
};

#ifdef NDEBUG
#define assert_on_loop(env) ((void)(env))
#else
#define assert_on_loop(env) assert(pthread_equal(pthread_self(), (env)->loop_thread))
#endif

void env_job_begin(struct sbenv *env);
void env_job_end(struct sbenv *env);
/* Run work on libuv's pool, counted as a job (done must call env_job_end()).
 * Should it not be queued (never in practice), it runs here and now. */
void env_queue_job(struct sbenv *env, uv_work_t *w, uv_work_cb run, uv_after_work_cb done);
/* The same through lane (a job of j->work; run and done as for
 * env_queue_job, done gets &j->work): it runs now or waits its turn. The
 * lane must outlive its jobs (the caller's jobs hold what holds it). */
void env_queue_lane_job(struct sbenv *env, struct env_lane *lane, struct lane_job *j,
			uv_work_cb run, uv_after_work_cb done);
