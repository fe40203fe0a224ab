/* SPDX-License-Identifier: MIT
 * branch.h — live and full branches of a running VMM, free of FUSE.
 *
 * struct vmm is forkfs's handle on one VMM process: its API client, its pid
 * (when known), the memfd forkfs gave it (restore) and, once the first live
 * branch needs it, the copy engine holding the VMM's write-protect uffd.
 *
 * struct branch is one branch: a store directory holding "vmstate",
 * "memory.bin" and "branch.state" (the persisted status), plus, while it
 * copies, a reference on the engine. branch_take() runs the whole pause
 * window on the calling thread (call it from a worker, never from the FUSE
 * loop): on success the VM runs again and, in live mode, the copy continues
 * in the background. Whatever fails between pause and resume, the VM is
 * resumed (if it was running) before the error is returned, and the branch
 * directory's files are removed.
 *
 * Thread safety: branch_get_status(), branch_read_memory(),
 * branch_complete_image() and branch_cancel() may be called from any thread
 * while the copy runs. Objects are refcounted.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <limits.h>
#include <sys/types.h>

enum branch_mode_req { BRANCH_MODE_AUTO, BRANCH_MODE_LIVE, BRANCH_MODE_FULL };
enum branch_mode { BRANCH_LIVE, BRANCH_FULL, BRANCH_LIVE_INCREMENTAL };
enum branch_state { BRANCH_COPYING, BRANCH_READY, BRANCH_FAILED };

/* The size of branch_status.error (and of fusefs's copy of a take's reason). */
#define BRANCH_ERR_MAX 256

struct error;
struct vmm;
struct branch;

/* api_socket: the VMM's API socket; pid: the VMM's pid or 0 if unknown (learned
 * from SO_PEERCRED at the uffd handshake); memfd: guest memory forkfs created
 * and handed to the VMM (restore), or -1. The vmm dups memfd. run_dir: a
 * private directory for handshake sockets (short path: sun_path is 108 bytes). */
int vmm_new(const char *api_socket, pid_t pid, int memfd, const char *run_dir, struct vmm **ret);
struct vmm *vmm_ref(struct vmm *v);
struct vmm *vmm_unref(struct vmm *v);
/* Cap the background copy of this VMM's live branches (bytes/s, 0: none; see
 * engine_set_rate()). Applies to branches taken from then on. */
void vmm_set_copy_rate(struct vmm *v, uint64_t bytes_per_sec);
/* Incremental branches (default on): after a live branch is ready, the VMM's
 * writes are tracked and its next live branch stores only the pages written
 * since, with that branch as its parent (branch/layer.h). Not where guest
 * memory is anonymous (engine_set_tracking). */
void vmm_set_incremental(struct vmm *v, bool on);
/* The VMM is jailed (sandbox/jail.h): root is its "/" as the host sees it
 * (sockets for it are made there), out_dir the store directory it sees as
 * out_vmm, where it writes snapshots (snapfile.h), uid its uid; out_dirfd
 * (-1: none), which v then owns, is the directory when out_dir names it as
 * /proc/self/fd/N. Before the first branch. */
int vmm_set_jail(struct vmm *v, const char *root, const char *out_dir, const char *out_vmm,
		 uid_t uid, int out_dirfd);
/* b is going away (rmdir): no later branch of v may be incremental to it.
 * Waits for a branch_take() in flight on v to end. */
void vmm_forget_branch(struct vmm *v, struct branch *b);
/* A resume after a failed branch failed and forkfs keeps trying in the
 * background: the VM is paused until it succeeds (state "paused (resume
 * pending)"); branches are refused with EBUSY meanwhile. */
bool vmm_resume_pending(struct vmm *v);
/* The VMM process is gone: fail nothing by itself, but stop using its socket. */
void vmm_set_dead(struct vmm *v);
/* The caller stops driving this VMM but leaves it running (attach: "stop",
 * unmount). The write-protect uffd is released as soon as no copy runs (now,
 * or when the running copy ends), so that the VMM's registration ends and it
 * can be branched again, by this forkfs or another, while branches taken
 * through v (which keep references on it) live on. */
void vmm_detach(struct vmm *v);
/* The fc client, for callers that drive the VMM (start, pause, resume). Callers
 * must not use it concurrently with branch_take() on the same vmm. */
struct fc_client *vmm_client(struct vmm *v);

struct branch_status {
	enum branch_state state;
	enum branch_mode mode;
	uint64_t bytes_total;
	uint64_t bytes_copied;
	uint64_t pages_faulted;
	uint64_t pause_us;
	uint64_t arm_us;		/* forkfs's own part of the pause: arming WP */
	uint64_t tracked_faults;	/* write faults since the previous branch's pause */
	uint64_t elapsed_ms;
	uint64_t bytes_stored;		/* what this branch added to the store */
	bool queued;			/* copying: the background copy waits its turn */
	char parent[NAME_MAX + 1];	/* incremental to this branch ("" if none) */
	char error[BRANCH_ERR_MAX];
};

/* Take a branch into dir (which must exist and be empty). err (may be NULL)
 * gets the reason on failure, for the caller to log (the sandbox log):
 * nothing here logs it. Returns 0, or -EBUSY (another branch of this VMM is
 * copying), -ENOTSUP (live forced but not supported), -ETIMEDOUT, -EIO,
 * -ENOSPC, ... */
int branch_take(struct vmm *v, const char *dir, enum branch_mode_req mode, struct branch **ret,
		struct error *err);

/* Re-open a branch found in the store (after a restart). A branch that was
 * copying when forkfs stopped becomes failed with "interrupted". */
int branch_load(const char *dir, struct branch **ret);
struct branch *branch_ref(struct branch *b);
struct branch *branch_unref(struct branch *b);

void branch_get_status(struct branch *b, struct branch_status *ret);
/* Render status as the "status" file: first line copying|ready|failed, then
 * "key: value" lines. Returns the length written (truncated to size). */
size_t branch_status_format(const struct branch_status *st, char *buf, size_t size);
const char *branch_state_to_string(enum branch_state s);
const char *branch_mode_to_string(enum branch_mode m);

/* Size of memory.bin: the guest memory. */
uint64_t branch_memory_size(struct branch *b);
/* Point-in-time read of memory.bin at any moment: ranges not yet copied are
 * copied first. Returns bytes read or -errno. */
ssize_t branch_read_memory(struct branch *b, void *buf, size_t len, off_t off);
/* Block until memory.bin holds the whole point-in-time image: at once when
 * ready; while copying, the rest is copied first (guest faults still come
 * first). 0, or -EIO if the branch failed or fails meanwhile. */
int branch_complete_image(struct branch *b);
/* Once READY, the composed image for zero-copy reads (layer_view_segments),
 * a reference; NULL before. Never touches the disk (safe on the FUSE loop). */
struct layer_view;
struct layer_view *branch_ready_view(struct branch *b);
/* Once READY, and when the image is one file (a full layer, branch/layer.h):
 * a new fd of that file (read-only, close-on-exec; the caller closes it), for
 * FUSE passthrough. -EAGAIN before READY (or failed), -ENOTUNIQ when the image
 * is composed of layers. After a change to the store (a compaction may have
 * flattened the image, layer.h) it re-resolves the view first: a few opens
 * and reads of small maps, once per change; otherwise no I/O. */
int branch_ready_single_fd(struct branch *b);
/* Write the whole point-in-time image into out_fd (completing a running copy
 * first). 0 or -errno, with the reason in err. */
int branch_export(struct branch *b, int out_fd, struct error *err);

/* Stop a running copy (guest unaffected); the branch becomes failed "cancelled". */
int branch_cancel(struct branch *b);
/* Do branches still copying rely on b's copy (incremental to it)? Then
 * cancelling b would fail them: complete it instead. */
bool branch_has_dependents(struct branch *b);
/* Complete b's copy (branch_complete_image) and wait for its outcome: 0 if
 * ready, -EIO if it failed. */
int branch_complete(struct branch *b);
/* Called (from an engine thread) whenever state changes; for FUSE invalidation. */
void branch_set_notify(struct branch *b, void (*fn)(void *userdata), void *userdata);
