/* SPDX-License-Identifier: MIT
 * template.h — a branch's memory template: one shared-memory copy of the
 * branch's memory.bin that every sandbox started from the branch maps
 * privately (mem_backend File, shared:false: MAP_PRIVATE, copy-on-write), so
 * a child starts without copying the image and holds only the pages it
 * writes. No FUSE.
 *
 * Lifetime. The branch entry points at its template while one exists (a weak
 * pointer, cleared when the template is freed); a start from the branch takes
 * a reference (template_get) and its sandbox keeps it while its VMM runs. The
 * last reference dropped frees the template (its memfd is closed; the kernel
 * frees the memory once no VMM maps it). So a template lives exactly while a
 * sandbox started from its branch is starting or running, and the next start
 * after that loads the image again.
 *
 * Threads. References and the entry's pointer are loop-only. template_fill()
 * runs on a worker: the first caller reads the image into the memfd, later
 * callers wait for it under the template's lock and share its result.
 */
#pragma once

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

struct error;

struct template {
	unsigned refs;			/* loop only */
	struct template **owner;	/* the entry's pointer, cleared on free; loop only */
	pthread_mutex_t lock;		/* held while filling */
	bool filled;			/* protected by lock */
	int fill_r;			/* protected by lock: 0 or the failure */
	char fill_error[256];		/* protected by lock */
	int fd;				/* the memfd, valid once filled with fill_r == 0 */
	uint64_t size;
	/* Loop only, for start.c: one start fills the template on a worker
	 * (loading); the others wait on the loop, not on the lock in a worker,
	 * so a fan-out of N starts holds one pool thread, not N. */
	bool loading, loaded;
	void *waiting;			/* start.c's list of starts waiting for the fill */
};

/* The template *slot points at, or a new (empty) one stored there; a new
 * reference either way. NULL on ENOMEM. */
struct template *template_get(struct template **slot);
struct template *template_ref(struct template *t);
struct template *template_unref(struct template *t);
/* The slot's owner goes away: the template lives on with its users. */
void template_disown(struct template **slot);

/* Worker: make sure t holds the image of branch b (composed from its layers:
 * branch_export). The memfd is sealed once filled (no write, grow or
 * shrink): every child sees the branch exactly. 0, or the failure with its
 * reason in err (the same for every caller of a template that failed). */
struct branch;
int template_fill(struct template *t, struct branch *b, struct error *err);

/* What a VMM process costs, from /proc/PID/smaps, in bytes: total = its
 * resident memory; shared = the part that is pages of a template it maps
 * privately and has not written (still shared with the branch and its other
 * children); private = the rest, pages only this process holds (what it wrote
 * into the template's mapping, memory of its own, the VMM's heap and code).
 * Writes "total: N\nprivate: N\nshared: N\n"; zeros for pid <= 0 or a
 * process gone. Returns the length. */
size_t template_memory_text(pid_t pid, char *buf, size_t size);

/* A new memfd holding the memory image src (a regular file, checked by the
 * caller; path names it in err). 0 or -errno with the reason in err. */
int image_to_memfd(int src, const char *path, int *ret_fd, struct error *err);
