/* SPDX-License-Identifier: MIT
 * guest.h — a stand-in "VM" for the uffd tests and benchmark: guest memory
 * (a memfd mapped MAP_SHARED, or private anonymous memory) in one or two
 * regions with a gap between them, a userfaultfd set up exactly as the VMM
 * does (UFFDIO_API with PAGEFAULT_FLAG_WP, each region registered WP), and
 * writer threads that stamp pages continuously until paused at a barrier.
 * Some pages ("virgin") are never touched before the first resume.
 */
#pragma once

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "common/error.h"
#include "uffd/handshake.h"

#define GUEST_MAX_WRITERS 4

struct guest {
	bool anon;
	int memfd;			/* -1 for anonymous memory */
	uint8_t *reserve;		/* whole VA reservation (regions + gaps) */
	size_t reserve_len;
	size_t n_regions;
	struct uffd_region regions[2];
	uint64_t total;
	int uffd;			/* handed to the engine (then -1 here) */

	/* image pages [virgin_first, virgin_first + virgin_n) stay untouched until
	 * guest_open_virgin() */
	size_t virgin_first, virgin_n;
	atomic_bool virgin_open;

	unsigned n_writers;
	pthread_t writers[GUEST_MAX_WRITERS];
	atomic_bool stop, pause_req;
	unsigned paused;		/* protected by lock */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	_Atomic uint64_t stamp;		/* global write counter */
	_Atomic uint64_t writes;

	/* benchmark: latency of writes that hit a write-protected page */
	bool measure;
	int pagemap_fd;
	pthread_mutex_t lat_lock;
	uint64_t *lat_ns;
	size_t lat_n, lat_cap;
};

/* size: bytes per region; n_regions 1 or 2. Returns 0 or -errno (and a skip
 * reason in *why when userfaultfd write-protect is unavailable). */
int guest_new(struct guest *g, bool anon, size_t n_regions, uint64_t size, const char **why);
void guest_free(struct guest *g);
uint8_t *guest_addr(struct guest *g, uint64_t image_off);
int guest_start_writers(struct guest *g, unsigned n);
void guest_stop_writers(struct guest *g);
void guest_pause(struct guest *g);
void guest_resume(struct guest *g);
void guest_open_virgin(struct guest *g);
/* Copy the image as it is now into shadow (virgin pages read as zero without
 * touching them). Writers must be paused. */
void guest_snapshot(struct guest *g, uint8_t *shadow);
/* Pages of the regions whose PTE is write-protected (pagemap bit 57). */
long guest_count_wp(struct guest *g);
/* Pages of file fd (size total) that differ from shadow; -errno on error. */
long image_mismatches(int fd, const uint8_t *shadow, uint64_t total);
/* Wait until the writers have done at least n more writes (false on timeout). */
bool guest_wait_writes(struct guest *g, uint64_t n, unsigned timeout_ms);

/* Test set-up: can this kernel write-protect through userfaultfd? */
bool guest_wp_available(void);
/* mkdtemp(tmpl), removed with its contents at exit; false if it cannot be made. */
bool guest_tmpdir(char *tmpl);

/* A copy session's end (engine_done_fn), for a test thread to wait on. */
struct guest_done {
	pthread_mutex_t m;
	pthread_cond_t c;
	int calls;
	int result;
	struct error why;
	uint64_t usec;			/* now_usec() of the call */
};
#define GUEST_DONE_INIT { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, ERROR_INIT, 0 }
/* The engine_done_fn: userdata is a struct guest_done. */
void guest_on_done(void *userdata, int result, const struct error *why);
/* Until the session has ended, or secs: false on timeout. */
bool guest_wait_done(struct guest_done *d, unsigned secs);
