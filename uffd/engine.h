/* SPDX-License-Identifier: MIT
 * engine.h — the write-protect copy engine: turns a VMM's WP-registered
 * userfaultfd plus a way to read its guest memory into a point-in-time image
 * of that memory, while the guest keeps running. No FUSE, no HTTP.
 *
 * One engine per struct vmm (branch.h), i.e. per VMM process: it owns the
 * uffd (kept across branches, since the VMM's registration lives exactly as
 * long as some copy of that fd) and a fault thread that is always ready to
 * serve write-protect faults. Each copy is a session (struct engine_session,
 * refcounted), one image:
 *
 *   engine_prepare(e)      before the pause (may take long: populates
 *                          never-touched anonymous pages; may pre-arm WP)
 *   engine_arm(e) -> s     inside the pause: every region write-protected
 *                          (or the pages written since the pre-arm re-armed)
 *   engine_disarm(e, s)    on error, inside or before the pause: undo arm
 *                          (s) or the pre-arm (s NULL)
 *   engine_start_copy(s)   after resume: bulk copy in the background; faults
 *                          copy their page first; readers use engine_demand()
 *   engine_cancel(s)       stop, un-protect what no other session needs,
 *                          guest unaffected
 *
 * Sessions overlap only when the newer one is incremental (tracking below):
 * up to ENGINE_MAX_SESSIONS copy at once, each page copied by the session
 * that needs it. Otherwise a session arms only once the previous one ended.
 *
 * Progress counters are exact and may be read from any thread.
 *
 * Errors: functions return 0 or -errno and, where a caller reports the
 * failure, fill a struct error (common/error.h; may be NULL) with its reason
 * instead of logging it. A copy's failure reaches done_cb with its reason.
 * Only what has no caller to report it is logged: the fault thread's death,
 * un-protect failures, unexpected faults.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include "uffd/handshake.h"

struct error;

/* How forkfs reads the guest memory the uffd protects. */
enum memsrc_kind {
	MEMSRC_FD,	/* a file (memfd/shmem) holding the memory image layout: region i at
			 * file offset regions[i].offset + fd_offset */
	MEMSRC_PROCESS,	/* /proc/PID/mem of the VMM, at regions[i].base */
};

struct memsrc {
	enum memsrc_kind kind;
	int fd;		/* owned by the engine once passed in. MEMSRC_FD: the
			 * memfd; MEMSRC_PROCESS: /proc/PID/mem (opened by
			 * engine_new() if -1) */
	off_t fd_offset;
	pid_t pid;	/* the VMM's, for MEMSRC_PROCESS's fd and liveness checks */
	bool anon;	/* some region is anonymous memory: write-protection does
			 * not survive a zap (MADV_DONTNEED) there, so writes
			 * cannot be tracked across branches (engine_set_tracking) */
};

/* Called by an engine thread as it starts, with its role: "fault" (the
 * fault thread; copy threads are not confined further, they run the done
 * callbacks, which write the store). The daemon confines it further
 * (fusefs/seccomp.c). Set once, before any engine exists. */
typedef void (*engine_thread_hook_fn)(const char *role);
void engine_set_thread_hook(engine_thread_hook_fn fn);

/* Pick a source for a VMM process: its memfd/shmem mapping through
 * /proc/PID/map_files/ when the regions are shared file mappings, else
 * /proc/PID/mem. Either fd names the process's memory for good: it reads
 * nothing once the process has exited, whoever gets its pid next. */
int memsrc_open_for_pid(pid_t pid, const struct uffd_region *regions, size_t n,
			struct memsrc *ret, struct error *err);
/* Open src->pid's /proc/PID/mem into src->fd (MEMSRC_PROCESS). */
int memsrc_open_mem(struct memsrc *src, struct error *err);

enum engine_state {
	ENGINE_IDLE,		/* disarmed */
	ENGINE_ARMED,
	ENGINE_COPYING,
	ENGINE_DONE,
	ENGINE_FAILED,
	ENGINE_CANCELLED,
};

struct engine_progress {
	enum engine_state state;
	uint64_t bytes_total;
	uint64_t bytes_copied;
	uint64_t pages_faulted;		/* copied because the guest was about to write them */
	uint64_t pages_demanded;	/* copied first because a reader asked */
	uint64_t bytes_bulk;		/* copied by the background walk (what
					 * engine_set_rate() caps) */
	uint64_t fault_count;		/* all WP faults seen since this session's
					 * arm, copied or not (set at its end) */
	uint64_t bytes_layer;		/* what this session copies: bytes_total, or
					 * the pages written since the last pause */
	bool incremental;		/* the session copies only those pages */
	bool queued;			/* its background walk waits for a slot
					 * (engine_set_copy_slots) */
	uint64_t faults_before;		/* write faults served between the last
					 * session's arm and this one's (with
					 * tracking: the guest's cost of it) */
	int error;			/* -errno when FAILED */
};

struct engine;
struct engine_session;

/* Sessions copying at once (an older full or incremental copy still running,
 * newer incremental ones armed meanwhile). */
#define ENGINE_MAX_SESSIONS 4

/* Takes ownership of uffd and src->fd (also on failure). Checks that the uffd
 * really supports write-protect (UFFDIO_WRITEPROTECT on the regions) and
 * starts the fault thread. */
int engine_new(int uffd, const struct uffd_region *regions, size_t n, struct memsrc *src,
	       struct engine **ret, struct error *err);
/* Cancels every session, un-protects everything, waits for the copy threads
 * to leave the engine, closes fds. NULL-safe; may be called from a done_cb. */
struct engine *engine_free(struct engine *e);

/* -EBUSY while a session copies, unless the next one can be incremental
 * (engine_can_overlap). */
int engine_prepare(struct engine *e, struct error *err);
/* dest_fd: the memory.bin being written (the engine dups it and sizes it).
 * incremental: copy only the pages written since the last session's pause,
 * if tracking (engine_set_tracking) holds them all; otherwise (and without
 * the flag) every page. engine_get_progress() says which it did, and
 * engine_layer_map() which pages the image holds. */
int engine_arm(struct engine *e, int dest_fd, bool incremental, struct engine_session **ret,
	       struct error *err);
struct engine_session *engine_session_ref(struct engine_session *s);
/* NULL-safe; returns NULL. A session's reference does not keep its engine:
 * free the engine only once no caller uses its sessions any more. */
struct engine_session *engine_session_unref(struct engine_session *s);
/* The pages s's image holds (bit p of word p/64), as words into out
 * (nwords = pages / 64, rounded up). */
void engine_layer_map(struct engine_session *s, uint64_t *out, size_t nwords);
int engine_disarm(struct engine *e, struct engine_session *s);

/* done_cb runs once on an engine thread with 0, -ECANCELED or the failure;
 * why holds the failure's reason ("copying guest memory: No space left on
 * device"), and is not set for 0 and -ECANCELED. */
typedef void (*engine_done_fn)(void *userdata, int result, const struct error *why);
int engine_start_copy(struct engine_session *s, engine_done_fn done_cb, void *userdata,
		      struct error *err);

/* Block until [off, off+len) of the image has been copied into dest (copying
 * those pages first). Returns 0, or the session's error. */
int engine_demand(struct engine_session *s, uint64_t off, uint64_t len);
int engine_cancel(struct engine_session *s);
/* engine_cancel() without the wait: the copy stops soon and done_cb reports
 * -ECANCELED. For callers that must not wait for done_cb (it may wait for
 * them). */
int engine_cancel_request(struct engine_session *s);
void engine_get_progress(struct engine_session *s, struct engine_progress *ret);

const char *engine_state_to_string(enum engine_state s);

/* Pre-arm in engine_prepare() (default on): WP goes on before the pause and
 * engine_arm() only re-protects the pages written since, so the pause does not
 * grow with guest memory. Off: engine_arm() protects every region. */
void engine_set_prearm(struct engine *e, bool on);

/* Tracking (off by default): after a session that succeeds, keep guest memory
 * write-protected; each page's first write after the pause is recorded and
 * released, so that the next engine_arm(incremental) copies only those.
 * Refused (-EOPNOTSUPP) for a source with anonymous memory (memsrc.anon).
 * Tracking is dropped (the next session copies everything) whenever a
 * session fails, is cancelled or disarmed, the fault thread dies, or
 * engine_track_forget() is called. */
int engine_set_tracking(struct engine *e, bool on);
/* The next session copies every page (its parent image is gone). */
void engine_track_forget(struct engine *e);
/* Does the engine hold every page written since the last pause? */
bool engine_is_tracking(struct engine *e);
/* May a session arm now: none is active, or the next one can be incremental
 * (tracking) and fewer than ENGINE_MAX_SESSIONS are. */
bool engine_can_overlap(struct engine *e);

/* Cap the background (bulk) copy at bytes_per_sec of pages it copies (0: no
 * cap, the default), so that a large image does not take the store's whole
 * bandwidth. Pages the guest writes and ranges readers demand are still
 * copied at once, and walking past pages with nothing to copy is free. Takes
 * effect from the next chunk, also during a copy (pacing restarts then). */
void engine_set_rate(struct engine *e, uint64_t bytes_per_sec);

/* For the whole process: at most n sessions' background (bulk) copies run
 * at once, across all engines (0: no limit, the default); the others wait
 * their turn in the order they started, while their faults and demands are
 * still copied at once. A copy holding a slot runs raise nice levels above
 * the nice the process had before its service threads were raised, at most
 * as high as them (util.h). A burst of branches on busy cores then copies a
 * few at a time at full speed instead of all at a crawl. */
void engine_set_copy_slots(unsigned n, int raise);

/* Run the fault thread under SCHED_FIFO (priority 1), so that a vCPU waiting
 * on a write-protect fault is served as soon as the thread wakes, ahead of
 * every ordinary thread, the bulk copy and the guest's own vCPUs included.
 * Its work per fault is bounded (copy one page, un-protect it). Needs
 * CAP_SYS_NICE: returns 0 or -EPERM. */
int engine_set_fault_rt(struct engine *e, bool on);

/* After serving a fault while a copy session is active, the fault thread
 * polls for the next one for up to usec (0: it sleeps at once), so that a
 * guest writing in bursts is served without a thread wake-up each time.
 * Never while no copy runs. */
void engine_set_fault_spin(struct engine *e, unsigned usec);
