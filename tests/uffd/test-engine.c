/* SPDX-License-Identifier: MIT
 * test-engine.c — the write-protect copy engine against real userfaultfd.
 *
 * Each scenario builds a guest (tests/uffd/guest.h) whose writer threads keep
 * stamping pages, "pauses" it at a barrier, records the expected image (the
 * shadow) while paused, arms the engine, resumes and copies. The finished
 * image must equal the shadow byte for byte, and no page may stay protected.
 * One scenario arms before the pause (forkd's order) and must find mismatches:
 * that proves the comparison can fail. Region boundaries need not fall on a
 * 64-page bitmap word: reads and copies across them must work.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "common/error.h"
#include "common/log.h"
#include "common/util.h"
#include "tests/tap.h"
#include "tests/uffd/guest.h"
#include "uffd/engine.h"
#include "uffd/uffd.h"


static char tmpdir[] = "/tmp/uffd-engine.XXXXXX";
static char store[64];
static bool store_mounted;

/* Until the guest's writes (demanded: readers) have copied a page first, or
 * timeout_ms. */
static bool wait_copied_first(struct engine_session *e, bool demanded, unsigned timeout_ms)
{
	struct engine_progress p;

	for (unsigned ms = 0; ms < timeout_ms; ms++) {
		engine_get_progress(e, &p);
		if ((demanded ? p.pages_demanded : p.pages_faulted) > 0)
			return true;
		usleep(1000);
	}
	return false;
}

struct scenario {
	const char *name;
	bool anon;
	size_t n_regions;
	uint64_t size;		/* per region */
	bool broken_order;	/* arm before the writers stop */
	unsigned readers;
	bool cancel;
	bool full_store;
	bool no_prearm;		/* engine_arm() protects everything inside the pause */
	uint64_t rate_mib;	/* engine_set_rate(), MiB/s */
};

struct reader {
	pthread_t t;
	struct engine_session *e;
	int fd;
	const uint8_t *shadow;
	uint64_t total;
	atomic_bool *stop;
	long demands, bad, errors;
	unsigned seed;
};

static void *reader_main(void *arg)
{
	struct reader *rd = arg;
	uint8_t *buf = malloc(256 * 1024);

	while (buf && !atomic_load(rd->stop)) {
		uint64_t off = (uint64_t)rand_r(&rd->seed) * 7919 % rd->total;
		uint64_t len = 1 + (uint64_t)rand_r(&rd->seed) % (256 * 1024);
		int r;

		len = MIN(len, rd->total - off);
		r = engine_demand(rd->e, off, len);
		if (r < 0) {
			if (!rd->errors++)
				tap_diag("engine_demand(%" PRIu64 ", %" PRIu64 "): %s", off, len,
					 strerror(-r));
			continue;
		}
		rd->demands++;
		if (pread_full(rd->fd, buf, len, (off_t)off) != (ssize_t)len ||
		    memcmp(buf, rd->shadow + off, len))
			rd->bad++;
	}
	free(buf);
	return NULL;
}

static int open_dest(const char *dir, const char *name)
{
	char path[128];

	snprintf(path, sizeof(path), "%s/%s.bin", dir, name);
	return open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
}

static void run(const struct scenario *sc)
{
	struct guest_done done = GUEST_DONE_INIT;
	struct reader readers[4] = {};
	atomic_bool readers_stop = false;
	struct engine_progress pr;
	struct engine *e = NULL;
	struct engine_session *s = NULL;
	struct memsrc src;
	struct guest g;
	const char *why = "";
	uint8_t *shadow = NULL;
	uint64_t t_start, t_cancel = 0, t_done;
	long wp, bad;
	int dest = -1, r;

	tap_diag("scenario %s", sc->name);
	r = guest_new(&g, sc->anon, sc->n_regions, sc->size, &why);
	if (r < 0) {
		tap_ok(false, "%s: guest set-up: %s: %s", sc->name, why, strerror(-r));
		goto out;
	}
	shadow = malloc(g.total);
	TAP_CHECK(guest_start_writers(&g, 2) == 0);
	TAP_CHECK(guest_wait_writes(&g, 20000, 5000));

	r = memsrc_open_for_pid(getpid(), g.regions, g.n_regions, &src, NULL);
	tap_ok(r == 0 && src.kind == (sc->anon ? MEMSRC_PROCESS : MEMSRC_FD),
	       "%s: memory source is %s", sc->name, sc->anon ? "/proc/PID/mem" : "the memfd");
	if (r < 0)
		goto out;
	r = engine_new(TAKE_FD(g.uffd), g.regions, g.n_regions, &src, &e, NULL);
	if (!tap_ok(r == 0, "%s: engine_new: %s", sc->name, strerror(-r)))
		goto out;
	dest = open_dest(sc->full_store ? store : tmpdir, sc->name);
	TAP_CHECK(dest >= 0);
	engine_set_prearm(e, !sc->no_prearm);
	TAP_CHECK(engine_prepare(e, NULL) == 0);
	if (!sc->no_prearm && !sc->broken_order) {
		/* Pre-armed: writes now fault and are recorded for re-arming. */
		TAP_CHECK(guest_wait_writes(&g, 5000, 5000));
		wp = guest_count_wp(&g);
		tap_ok(wp < (long)(g.total / PAGE_4K), "%s: pre-armed; %ld pages released since",
		       sc->name, (long)(g.total / PAGE_4K) - wp);
	}

	if (sc->broken_order) {
		TAP_CHECK(engine_arm(e, dest, false, &s, NULL) == 0);
		TAP_CHECK(guest_wait_writes(&g, 2000, 5000));
		guest_pause(&g);
		guest_snapshot(&g, shadow);
	} else {
		guest_pause(&g);
		guest_snapshot(&g, shadow);
		r = engine_arm(e, dest, false, &s, NULL);
		TAP_CHECK(r == 0);
		wp = guest_count_wp(&g);
		tap_ok(wp == (long)(g.total / PAGE_4K), "%s: all %" PRIu64 " pages protected after arm"
		       " (never-touched ones too): %ld", sc->name, (uint64_t)(g.total / PAGE_4K), wp);
	}
	guest_open_virgin(&g);
	guest_resume(&g);

	/* Let faults, then demands, run while ARMED, before the bulk copy
	 * starts. Writes come first, with no reader yet: every page is still
	 * protected, so they must fault (readers could otherwise copy a small
	 * guest's every page before any write reaches it, and writes left to
	 * run long do the same to the readers). */
	TAP_CHECK(wait_copied_first(s, false, 5000));
	for (unsigned i = 0; i < sc->readers; i++) {
		readers[i] = (struct reader){ .e = s, .fd = dest, .shadow = shadow,
					      .total = g.total, .stop = &readers_stop,
					      .seed = i + 1 };
		pthread_create(&readers[i].t, NULL, reader_main, &readers[i]);
	}
	if (sc->readers)
		TAP_CHECK(wait_copied_first(s, true, 5000));
	engine_set_rate(e, sc->rate_mib << 20);
	/* A capped copy runs with the guest paused: its writes would copy
	 * (uncapped) what the cap is to be measured on. */
	if (sc->rate_mib && !sc->cancel)
		guest_pause(&g);
	t_start = now_usec();
	TAP_CHECK(engine_start_copy(s, guest_on_done, &done, NULL) == 0);
	if (sc->cancel && sc->rate_mib) {
		/* Cancel reaches a bulk copy waiting for its next chunk's turn. */
		usleep(200000);
		t_cancel = now_usec();
	}
	if (sc->cancel) {
		engine_get_progress(s, &pr);
		TAP_CHECK(engine_cancel(s) == 0);
		/* Throttled, the guest's faults may well have copied it all. */
		tap_ok(sc->rate_mib || pr.bytes_copied < pr.bytes_total, "%s: cancelled mid-copy (%" PRIu64 "/%"
		       PRIu64 " bytes)", sc->name, pr.bytes_copied, pr.bytes_total);
	}
	tap_ok(guest_wait_done(&done, 60), "%s: done callback ran", sc->name);
	t_done = now_usec();
	if (sc->rate_mib && !sc->cancel)
		guest_resume(&g);
	if (sc->rate_mib && sc->cancel) {
		tap_ok(t_done - t_cancel < USEC_PER_SEC, "%s: a throttled copy ends %" PRIu64
		       " ms after cancel", sc->name, (t_done - t_cancel) / 1000);
	} else if (sc->rate_mib) {
		/* What the bulk copied takes bulk/rate, less its last chunk (the
		 * guest's faults copy the rest at once). */
		uint64_t bulk, floor_us;

		engine_get_progress(s, &pr);
		bulk = pr.bytes_bulk;
		floor_us = (bulk > (4 << 20) ? bulk - (4 << 20) : 0) * USEC_PER_SEC /
			   (sc->rate_mib << 20);
		tap_ok(bulk > g.total / 2 && t_done - t_start >= floor_us,
		       "%s: capped at %" PRIu64 " MiB/s: the bulk copied %" PRIu64 " of %" PRIu64
		       " MiB in %" PRIu64 " ms (at least %" PRIu64 ")", sc->name, sc->rate_mib,
		       bulk >> 20, g.total >> 20, (t_done - t_start) / 1000, floor_us / 1000);
	}
	atomic_store(&readers_stop, true);
	for (unsigned i = 0; i < sc->readers; i++)
		pthread_join(readers[i].t, NULL);

	engine_get_progress(s, &pr);
	tap_diag("%s: state %s, copied %" PRIu64 "/%" PRIu64 ", faulted %" PRIu64
		 ", demanded %" PRIu64 ", faults %" PRIu64 ", error %d", sc->name,
		 engine_state_to_string(pr.state), pr.bytes_copied, pr.bytes_total,
		 pr.pages_faulted, pr.pages_demanded, pr.fault_count, pr.error);
	TAP_CHECK(done.calls == 1);
	wp = guest_count_wp(&g);
	tap_ok(wp == 0, "%s: no page left protected: %ld", sc->name, wp);
	tap_ok(guest_wait_writes(&g, 10000, 5000), "%s: writers keep running", sc->name);

	if (sc->cancel) {
		tap_ok(done.result == -ECANCELED && pr.state == ENGINE_CANCELLED,
		       "%s: cancelled (%d)", sc->name, done.result);
	} else if (sc->full_store) {
		tap_ok(done.result == -ENOSPC && pr.state == ENGINE_FAILED && pr.error == -ENOSPC &&
		       done.why.code == -ENOSPC && strstr(error_msg(&done.why), "No space left"),
		       "%s: failed with ENOSPC (%d, %s): %s", sc->name, done.result,
		       engine_state_to_string(pr.state), error_msg(&done.why));
		TAP_CHECK(engine_demand(s, 0, PAGE_4K) == -ENOSPC);
	} else {
		tap_ok(done.result == 0 && pr.state == ENGINE_DONE &&
		       pr.bytes_copied == pr.bytes_total && !error_is_set(&done.why),
		       "%s: copy complete", sc->name);
		bad = image_mismatches(dest, shadow, g.total);
		if (sc->broken_order)
			tap_ok(bad > 0, "%s: arming before the pause is detected: %ld pages differ",
			       sc->name, bad);
		else
			tap_ok(bad == 0, "%s: image equals the paused memory: %ld pages differ",
			       sc->name, bad);
		if (!sc->broken_order)
			tap_ok(pr.pages_faulted > 0, "%s: guest writes were copied first (%" PRIu64
			       " pages)", sc->name, pr.pages_faulted);
	}
	for (unsigned i = 0; i < sc->readers; i++) {
		tap_ok(readers[i].bad == 0 && readers[i].errors == 0 && readers[i].demands > 0,
		       "%s: reader %u: %ld demands, %ld wrong, %ld errors", sc->name, i,
		       readers[i].demands, readers[i].bad, readers[i].errors);
	}
	if (sc->readers)
		tap_ok(pr.pages_demanded > 0, "%s: readers copied %" PRIu64 " pages first",
		       sc->name, pr.pages_demanded);
out:
	guest_stop_writers(&g);
	e = engine_free(e);
	engine_session_unref(s);
	guest_free(&g);
	safe_close(dest);
	free(shadow);
}

/* What the kernel does with WP on never-populated pages, the reason for engine_prepare(). */
static void kernel_semantics(bool anon)
{
	struct guest g;
	const char *why = "";
	long wp;

	if (guest_new(&g, anon, 1, 64 * PAGE_4K, &why) < 0) {
		tap_ok(false, "kernel semantics: %s", why);
		guest_free(&g);
		return;
	}
	TAP_CHECK(uffd_wp_range(g.uffd, g.regions[0].base, g.regions[0].size, true, false) == 0);
	wp = guest_count_wp(&g);
	if (anon)
		tap_ok(wp == 0, "kernel: WP skips never-populated anonymous pages (%ld of 64)", wp);
	else
		tap_ok(wp == 64, "kernel: WP marks never-populated memfd pages (%ld of 64)", wp);
	for (uint64_t o = 0; o < g.regions[0].size; o += PAGE_4K)
		(void)*(volatile uint8_t *)(uintptr_t)(g.regions[0].base + o);
	TAP_CHECK(uffd_wp_range(g.uffd, g.regions[0].base, g.regions[0].size, true, false) == 0);
	wp = guest_count_wp(&g);
	tap_ok(wp == 64, "kernel: WP protects %s pages once read (%ld of 64)",
	       anon ? "anonymous" : "memfd", wp);
	guest_free(&g);
}

static void refuses_non_wp_uffd(void)
{
	uint64_t len = 16 * PAGE_4K;
	uint8_t *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct uffd_region reg = { .base = (uintptr_t)p, .size = len, .page_size = PAGE_4K };
	struct memsrc src = { .kind = MEMSRC_PROCESS, .fd = -1, .pid = getpid() };
	struct error why = ERROR_INIT;
	struct engine *e = NULL;
	int uffd = -1, r;

	TAP_CHECK(uffd_open(&uffd) == 0 && uffd_api(uffd, 0, NULL) == 0 &&
		  uffd_register(uffd, reg.base, len, UFFDIO_REGISTER_MODE_MISSING) == 0);
	r = engine_new(uffd, &reg, 1, &src, &e, &why);
	tap_ok(r == -EOPNOTSUPP && !e && why.code == r &&
	       strstr(error_msg(&why), "does not support write-protect on region 0"),
	       "engine_new refuses a uffd without write-protect: %s", error_msg(&why));
	munmap(p, len);
}

static void arm_needs_prepare_for_anon(void)
{
	struct memsrc src = { .kind = MEMSRC_PROCESS, .fd = -1, .pid = getpid() };
	struct engine *e = NULL;
	struct engine_session *s = NULL;
	const char *why = "";
	struct guest g;
	int fd;

	if (guest_new(&g, true, 1, 64 * PAGE_4K, &why) < 0) {
		tap_ok(false, "set-up: %s", why);
		guest_free(&g);
		return;
	}
	TAP_CHECK(engine_new(TAKE_FD(g.uffd), g.regions, 1, &src, &e, NULL) == 0);
	fd = open_dest(tmpdir, "noprep");
	TAP_CHECK(e && engine_arm(e, fd, false, &s, NULL) == -EINVAL && !s);
	TAP_CHECK(e && engine_prepare(e, NULL) == 0 && engine_arm(e, fd, false, &s, NULL) == 0);
	TAP_CHECK(e && guest_count_wp(&g) == 64);
	TAP_CHECK(s && engine_demand(s, 0, 64 * PAGE_4K) == 0);
	TAP_CHECK(s && engine_cancel(s) == 0 && guest_count_wp(&g) == 0);
	engine_session_unref(s);
	engine_free(e);
	guest_free(&g);
	safe_close(fd);
}

/* Two regions of 10 pages: the boundary (page 10) is inside a bitmap word. A
 * demand for pages 8-11 spans it; then the whole image is copied. */
static void unaligned_regions(bool anon)
{
	const char *kind = anon ? "anon" : "memfd";
	struct guest_done done = GUEST_DONE_INIT;
	static uint8_t shadow[20 * 4096], buf[4 * 4096];
	struct engine *e = NULL;
	struct engine_session *s = NULL;
	struct memsrc src;
	const char *why = "";
	struct guest g;
	char name[32];
	long bad;
	int dest = -1, r;

	r = guest_new(&g, anon, 2, 10 * PAGE_4K, &why);
	if (r < 0) {
		tap_ok(false, "%s unaligned regions: set-up: %s: %s", kind, why, strerror(-r));
		goto out;
	}
	guest_open_virgin(&g);
	for (uint64_t p = 0; p < 20; p++)
		memset(guest_addr(&g, p * PAGE_4K), (int)(p + 1), PAGE_4K);
	TAP_CHECK(memsrc_open_for_pid(getpid(), g.regions, g.n_regions, &src, NULL) == 0);
	r = engine_new(TAKE_FD(g.uffd), g.regions, g.n_regions, &src, &e, NULL);
	TAP_CHECK(r == 0);
	if (r < 0)
		goto out;
	snprintf(name, sizeof(name), "unaligned-%s", kind);
	dest = open_dest(tmpdir, name);
	TAP_CHECK(dest >= 0 && engine_prepare(e, NULL) == 0 &&
		  engine_arm(e, dest, false, &s, NULL) == 0);
	guest_snapshot(&g, shadow);
	/* Guest writes after arm: copied first by the fault thread. */
	memset(guest_addr(&g, 2 * PAGE_4K), 0xee, 16);
	memset(guest_addr(&g, 17 * PAGE_4K), 0xee, 16);

	r = engine_demand(s, 8 * PAGE_4K, 4 * PAGE_4K);
	tap_ok(r == 0, "%s unaligned regions: demand of pages 8-11 across the boundary: %s", kind,
	       strerror(-r));
	TAP_CHECK(pread_full(dest, buf, sizeof(buf), 8 * PAGE_4K) == (ssize_t)sizeof(buf));
	tap_ok(r == 0 && memcmp(buf, shadow + 8 * PAGE_4K, sizeof(buf)) == 0,
	       "%s unaligned regions: pages 8-11 hold the armed content", kind);
	memset(guest_addr(&g, 9 * PAGE_4K), 0xee, 16);
	memset(guest_addr(&g, 10 * PAGE_4K), 0xee, 16);

	TAP_CHECK(engine_start_copy(s, guest_on_done, &done, NULL) == 0);
	TAP_CHECK(guest_wait_done(&done, 30));
	tap_ok(done.result == 0, "%s unaligned regions: copy complete (%d)", kind, done.result);
	bad = image_mismatches(dest, shadow, g.total);
	tap_ok(bad == 0, "%s unaligned regions: image equals the armed memory: %ld pages differ",
	       kind, bad);
	TAP_CHECK(guest_count_wp(&g) == 0);
out:
	e = engine_free(e);
	engine_session_unref(s);
	guest_free(&g);
	safe_close(dest);
}

struct page_writer {
	volatile uint8_t *page;
	atomic_bool done;
};

static void *write_page(void *arg)
{
	struct page_writer *w = arg;

	*w->page = 1;
	atomic_store(&w->done, true);
	return NULL;
}

/* The fault thread hits a fatal error: poll() fails once RLIMIT_NOFILE is
 * below its two fds. The guest must not stay blocked: the session fails with
 * EIO, every page is released, and the engine refuses any further session. */
static void fault_thread_dies(void)
{
	struct guest_done done = GUEST_DONE_INIT;
	struct error err = ERROR_INIT;
	struct memsrc src;
	struct engine *e = NULL;
	struct engine_session *s = NULL, *s2 = NULL;
	struct engine_progress pr = {};
	struct rlimit old, low;
	const char *why = "";
	struct guest g;
	pthread_t t;
	struct page_writer w = {};
	bool started = false;
	uint64_t deadline;
	long wp;
	int dest = -1, fd = -1, r;

	r = guest_new(&g, false, 1, 64 * PAGE_4K, &why);
	if (r < 0) {
		tap_ok(false, "fault thread dies: set-up: %s: %s", why, strerror(-r));
		goto out;
	}
	TAP_CHECK(memsrc_open_for_pid(getpid(), g.regions, g.n_regions, &src, NULL) == 0);
	r = engine_new(TAKE_FD(g.uffd), g.regions, g.n_regions, &src, &e, NULL);
	TAP_CHECK(r == 0);
	if (r < 0)
		goto out;
	dest = open_dest(tmpdir, "fault-dies");
	TAP_CHECK(dest >= 0 && engine_prepare(e, NULL) == 0 &&
		  engine_arm(e, dest, false, &s, NULL) == 0);
	TAP_CHECK(guest_count_wp(&g) == 64);

	TAP_CHECK(getrlimit(RLIMIT_NOFILE, &old) == 0);
	low = old;
	low.rlim_cur = 1;
	TAP_CHECK(setrlimit(RLIMIT_NOFILE, &low) == 0);
	/* This write wakes the fault thread, which serves it; its next poll() fails. */
	*(volatile uint8_t *)guest_addr(&g, 0) = 1;
	deadline = now_usec() + 3 * USEC_PER_SEC;
	while ((r = engine_demand(s, 2 * PAGE_4K, PAGE_4K)) == 0 && now_usec() < deadline)
		usleep(1000);
	TAP_CHECK(setrlimit(RLIMIT_NOFILE, &old) == 0);
	tap_ok(r == -EIO, "fault thread dies: the session fails with EIO (%d)", r);
	/* Released by the fault thread itself: no copy thread runs yet. */
	deadline = now_usec() + 3 * USEC_PER_SEC;
	while ((wp = guest_count_wp(&g)) != 0 && now_usec() < deadline)
		usleep(1000);
	tap_ok(wp == 0, "fault thread dies: every page released (%ld protected)", wp);

	/* A guest write to a page that was protected completes. */
	w.page = guest_addr(&g, PAGE_4K);
	started = pthread_create(&t, NULL, write_page, &w) == 0;
	TAP_CHECK(started);
	deadline = now_usec() + 3 * USEC_PER_SEC;
	while (!atomic_load(&w.done) && now_usec() < deadline)
		usleep(1000);
	tap_ok(atomic_load(&w.done), "fault thread dies: the guest is not left blocked");

	TAP_CHECK(engine_start_copy(s, guest_on_done, &done, NULL) == 0);
	TAP_CHECK(guest_wait_done(&done, 10));
	engine_get_progress(s, &pr);
	tap_ok(done.result == -EIO && pr.state == ENGINE_FAILED && pr.error == -EIO &&
	       strstr(error_msg(&done.why), "the fault thread stopped"),
	       "fault thread dies: the copy ends failed with EIO (%d, %s): %s", done.result,
	       engine_state_to_string(pr.state), error_msg(&done.why));

	fd = open_dest(tmpdir, "fault-dies-2");
	r = engine_prepare(e, &err);
	tap_ok(r == -EIO && strstr(error_msg(&err), "the fault thread has stopped"),
	       "fault thread dies: engine_prepare refuses (%d): %s", r, error_msg(&err));
	error_clear(&err);
	r = engine_arm(e, fd, false, &s2, &err);
	tap_ok(r == -EIO && !s2 && strstr(error_msg(&err), "the fault thread has stopped"),
	       "fault thread dies: engine_arm refuses (%d): %s", r, error_msg(&err));
	e = engine_free(e);	/* closing the uffd releases a still blocked writer */
	if (started)
		pthread_join(t, NULL);
out:
	engine_free(e);
	engine_session_unref(s);
	guest_free(&g);
	safe_close(dest);
	safe_close(fd);
}

static void cleanup(void)
{
	if (store_mounted)
		umount2(store, MNT_DETACH);
}

/* One session of incremental(): pause, arm, resume, copy to the end. Returns
 * the done callback's result; *pr gets the progress, layer the layer map. */
static int track_round(struct engine *e, struct guest *g, int dest, uint8_t *shadow,
		       bool incremental, bool cancel, struct engine_progress *pr,
		       uint64_t *layer, size_t nwords)
{
	struct guest_done done = GUEST_DONE_INIT;
	struct engine_session *s = NULL;

	TAP_CHECK(guest_wait_writes(g, 20000, 5000));
	TAP_CHECK(engine_prepare(e, NULL) == 0);
	guest_pause(g);
	guest_snapshot(g, shadow);
	TAP_CHECK(engine_arm(e, dest, incremental, &s, NULL) == 0);
	engine_layer_map(s, layer, nwords);
	guest_resume(g);
	TAP_CHECK(engine_start_copy(s, guest_on_done, &done, NULL) == 0);
	if (cancel)
		TAP_CHECK(engine_cancel(s) == 0);
	TAP_CHECK(guest_wait_done(&done, 60));
	engine_get_progress(s, pr);
	engine_session_unref(s);
	return done.result;
}

/* Incremental branches (engine_set_tracking): a chain of sessions where each
 * after the first copies only the pages written since the last pause; the
 * image composed from the layers (newest first) equals the paused memory.
 * Tracking ends (the next session copies all) after a cancel and after
 * engine_track_forget(); anonymous memory refuses it. */
static void incremental(bool anon)
{
	const char *kind = anon ? "anon" : "memfd", *why = "";
	uint64_t total = 64 * MIB, *layer = NULL;
	size_t npages = total / PAGE_4K, nwords = (npages + 63) / 64;
	uint8_t *composed = NULL, *shadow = NULL, *page = NULL;
	struct engine_progress pr;
	struct engine *e = NULL;
	struct memsrc src;
	struct guest g;
	int r;

	r = guest_new(&g, anon, 1, total, &why);
	if (!tap_ok(r == 0, "%s tracking: guest set-up: %s", kind, why))
		goto out;
	composed = calloc(1, total);
	shadow = malloc(total);
	layer = calloc(nwords, sizeof(*layer));
	page = malloc(PAGE_4K);
	TAP_CHECK(composed && shadow && layer && page && guest_start_writers(&g, 2) == 0);
	TAP_CHECK(memsrc_open_for_pid(getpid(), g.regions, 1, &src, NULL) == 0);
	tap_ok(src.anon == anon, "%s tracking: the source says %s", kind,
	       src.anon ? "anonymous" : "file-backed");
	if (engine_new(TAKE_FD(g.uffd), g.regions, 1, &src, &e, NULL) < 0)
		goto out;
	r = engine_set_tracking(e, true);
	if (anon) {
		tap_ok(r == -EOPNOTSUPP, "anon: tracking refused (%s)", strerror(-r));
		goto out;
	}
	TAP_CHECK(r == 0);
	for (int round = 0; round < 6; round++) {
		/* round 3 is cancelled; 4 follows it; 5 follows a forget */
		bool want_incr = round != 0 && round != 4 && round != 5, cancel = round == 3;
		char name[32];
		long wp, bad = 0;
		int dest;

		if (round == 5)
			engine_track_forget(e);
		snprintf(name, sizeof(name), "track-%d", round);
		dest = open_dest(tmpdir, name);
		r = track_round(e, &g, dest, shadow, true, cancel, &pr, layer, nwords);
		if (cancel) {
			tap_ok(r == -ECANCELED && !engine_is_tracking(e),
			       "%s round %d: cancelled; tracking dropped", kind, round);
			safe_close(dest);
			continue;
		}
		tap_ok(r == 0 && pr.incremental == want_incr &&
		       (want_incr ? pr.bytes_layer < total : pr.bytes_layer == total) &&
		       pr.bytes_copied == pr.bytes_layer,
		       "%s round %d: %s session, %" PRIu64 " of %" PRIu64 " KiB copied", kind, round,
		       pr.incremental ? "incremental" : "full", pr.bytes_copied >> 10, total >> 10);
		/* Compose: this layer's pages over the previous image. */
		for (size_t p = 0; p < npages; p++) {
			if (!(layer[p / 64] >> (p % 64) & 1))
				continue;
			if (pread_full(dest, page, PAGE_4K, (off_t)(p * PAGE_4K)) != PAGE_4K)
				bad++;
			memcpy(composed + p * PAGE_4K, page, PAGE_4K);
		}
		for (size_t p = 0; p < npages; p++)
			bad += memcmp(composed + p * PAGE_4K, shadow + p * PAGE_4K, PAGE_4K) != 0;
		tap_ok(bad == 0, "%s round %d: the composed image equals the paused memory "
		       "(%ld pages differ)", kind, round, bad);
		wp = guest_count_wp(&g);
		tap_ok(engine_is_tracking(e) && wp > 0,
		       "%s round %d: tracking on, %ld pages still protected", kind, round, wp);
		safe_close(dest);
	}
	TAP_CHECK(engine_set_tracking(e, false) == 0 && !engine_is_tracking(e));
out:
	guest_stop_writers(&g);
	e = engine_free(e);
	tap_ok(guest_count_wp(&g) == 0 || anon, "%s tracking: engine_free releases every page",
	       kind);
	guest_free(&g);
	free(composed);
	free(shadow);
	free(layer);
	free(page);
}

/* Compose image: layer's pages (read from dest) over composed. Returns the
 * number of pages that could not be read. */
static long compose(uint8_t *composed, int dest, const uint64_t *layer, size_t npages)
{
	long bad = 0;

	for (size_t p = 0; p < npages; p++)
		if (layer[p / 64] >> (p % 64) & 1)
			bad += pread_full(dest, composed + p * PAGE_4K, PAGE_4K,
					  (off_t)(p * PAGE_4K)) != PAGE_4K;
	return bad;
}

static long pages_differ(const uint8_t *a, const uint8_t *b, size_t npages)
{
	long bad = 0;

	for (size_t p = 0; p < npages; p++)
		bad += memcmp(a + p * PAGE_4K, b + p * PAGE_4K, PAGE_4K) != 0;
	return bad;
}

#define OVERLAP_SESSIONS 4

/* Overlapping sessions: a full session copies slowly (rate cap) while three
 * incremental ones arm, one after another, with the guest writing
 * throughout; a full session is refused meanwhile; the last incremental one
 * is cancelled while the first still copies (what it releases must not be
 * pages the first still needs). Every image that completed equals the memory
 * at its own pause: the first alone, each incremental one composed over its
 * predecessors. */
static void overlapping(void)
{
	struct guest_done done[OVERLAP_SESSIONS];
	struct engine_session *s[OVERLAP_SESSIONS] = {}, *refused = NULL;
	uint64_t total = 64 * MIB, *layer[OVERLAP_SESSIONS] = {};
	size_t npages = total / PAGE_4K, nwords = (npages + 63) / 64;
	uint8_t *shadow[OVERLAP_SESSIONS] = {}, *composed = NULL;
	struct engine_progress pr[OVERLAP_SESSIONS];
	int dest[OVERLAP_SESSIONS] = { -1, -1, -1, -1 }, r;
	struct engine *e = NULL;
	const char *why = "";
	struct memsrc src;
	struct guest g;
	long bad, wp;

	r = guest_new(&g, false, 1, total, &why);
	if (!tap_ok(r == 0, "overlap: guest set-up: %s", why))
		goto out;
	composed = calloc(1, total);
	TAP_CHECK(composed && guest_start_writers(&g, 2) == 0);
	TAP_CHECK(memsrc_open_for_pid(getpid(), g.regions, 1, &src, NULL) == 0);
	if (engine_new(TAKE_FD(g.uffd), g.regions, 1, &src, &e, NULL) < 0)
		goto out;
	TAP_CHECK(engine_set_tracking(e, true) == 0);
	/* The writers' faults copy what they touch, ahead of the cap, and fast:
	 * what holds the first copy back is the quarter they never touch (the
	 * virgin pages), 16 MiB at 1 MiB/s. The others arm within it, then the
	 * cap is lifted. */
	engine_set_rate(e, 1 * MIB);
	for (int i = 0; i < OVERLAP_SESSIONS; i++) {
		char name[32];

		done[i] = (struct guest_done)GUEST_DONE_INIT;
		shadow[i] = malloc(total);
		layer[i] = calloc(nwords, sizeof(uint64_t));
		snprintf(name, sizeof(name), "overlap-%d", i);
		dest[i] = open_dest(tmpdir, name);
		TAP_CHECK(shadow[i] && layer[i] && dest[i] >= 0);
		/* A few writes: most of the first image is still to copy. */
		TAP_CHECK(guest_wait_writes(&g, 300, 5000));
		r = engine_prepare(e, NULL);
		tap_ok(r == 0, "overlap %d: engine_prepare while %d copies run (%s)", i, i,
		       strerror(-r));
		guest_pause(&g);
		guest_snapshot(&g, shadow[i]);
		if (i == 1) {
			r = engine_arm(e, dest[i], false, &refused, NULL);
			tap_ok(r == -EBUSY && !refused,
			       "overlap: a full session is refused while one copies (%s)",
			       strerror(-r));
		}
		r = engine_arm(e, dest[i], true, &s[i], NULL);
		guest_resume(&g);
		if (!tap_ok(r == 0, "overlap %d: armed (%s)", i, strerror(-r)))
			goto out;
		engine_layer_map(s[i], layer[i], nwords);
		TAP_CHECK(engine_start_copy(s[i], guest_on_done, &done[i], NULL) == 0);
		engine_get_progress(s[i], &pr[i]);
		tap_ok(pr[i].incremental == (i > 0),
		       "overlap %d: %s session, %" PRIu64 " KiB to copy", i,
		       pr[i].incremental ? "incremental" : "full", pr[i].bytes_layer >> 10);
	}
	engine_get_progress(s[0], &pr[0]);
	tap_ok(pr[0].state == ENGINE_COPYING && pr[0].bytes_copied < total,
	       "overlap: the first session still copies while the last arms (%" PRIu64
	       " of %" PRIu64 " KiB)", pr[0].bytes_copied >> 10, total >> 10);
	TAP_CHECK(engine_cancel(s[OVERLAP_SESSIONS - 1]) == 0);
	tap_ok(guest_wait_done(&done[OVERLAP_SESSIONS - 1], 10) &&
	       done[OVERLAP_SESSIONS - 1].result == -ECANCELED && !engine_is_tracking(e),
	       "overlap: the last session cancelled (%d); tracking dropped",
	       done[OVERLAP_SESSIONS - 1].result);
	/* The first copy goes on, faults served meanwhile, then at full speed. */
	TAP_CHECK(guest_wait_writes(&g, 20000, 5000));
	engine_set_rate(e, 0);
	for (int i = 0; i < OVERLAP_SESSIONS - 1; i++) {
		TAP_CHECK(guest_wait_done(&done[i], 60));
		engine_get_progress(s[i], &pr[i]);
		bad = compose(composed, dest[i], layer[i], npages);
		bad += pages_differ(composed, shadow[i], npages);
		tap_ok(done[i].result == 0 && pr[i].bytes_copied == pr[i].bytes_layer && bad == 0,
		       "overlap %d: %s image equals the memory at its pause (%d; %" PRIu64
		       " pages faulted; %ld pages differ)", i, i ? "composed" : "full",
		       done[i].result, pr[i].pages_faulted, bad);
	}
	tap_ok(pr[0].pages_faulted > 0, "overlap: guest writes were copied first for the first "
	       "session while the others ran (%" PRIu64 " pages)", pr[0].pages_faulted);
	wp = guest_count_wp(&g);
	tap_ok(wp == 0, "overlap: every page released once all ended (%ld protected)", wp);
	tap_ok(guest_wait_writes(&g, 10000, 5000), "overlap: the guest keeps running");
out:
	guest_stop_writers(&g);
	e = engine_free(e);
	for (int i = 0; i < OVERLAP_SESSIONS; i++) {
		engine_session_unref(s[i]);
		safe_close(dest[i]);
		free(shadow[i]);
		free(layer[i]);
	}
	guest_free(&g);
	free(composed);
}

int main(void)
{
	static const struct scenario scenarios[] = {
		{ "memfd", .n_regions = 1, .size = 64 * MIB },
		{ "anon", .anon = true, .n_regions = 1, .size = 64 * MIB },
		{ "memfd-2regions", .n_regions = 2, .size = 32 * MIB },
		{ "memfd-no-prearm", .n_regions = 1, .size = 64 * MIB, .no_prearm = true },
		{ "anon-no-prearm", .anon = true, .n_regions = 1, .size = 64 * MIB,
		  .no_prearm = true },
		{ "anon-2regions", .anon = true, .n_regions = 2, .size = 32 * MIB },
		/* 1034-page regions: the boundary falls inside a bitmap word. */
		{ "memfd-unaligned", .n_regions = 2, .size = 4 * MIB + 10 * PAGE_4K, .readers = 2 },
		{ "anon-unaligned", .anon = true, .n_regions = 2, .size = 4 * MIB + 10 * PAGE_4K,
		  .readers = 2 },
		{ "memfd-readers", .n_regions = 2, .size = 64 * MIB, .readers = 2 },
		{ "anon-readers", .anon = true, .n_regions = 1, .size = 64 * MIB, .readers = 2 },
		{ "memfd-cancel", .n_regions = 1, .size = 256 * MIB, .cancel = true },
		{ "anon-cancel", .anon = true, .n_regions = 1, .size = 256 * MIB, .cancel = true },
		{ "memfd-rate", .n_regions = 1, .size = 32 * MIB, .rate_mib = 32 },
		{ "anon-rate-cancel", .anon = true, .n_regions = 1, .size = 64 * MIB,
		  .rate_mib = 16, .cancel = true },
		{ "memfd-broken-order", .n_regions = 1, .size = 64 * MIB, .broken_order = true },
		{ "anon-broken-order", .anon = true, .n_regions = 1, .size = 64 * MIB,
		  .broken_order = true },
	};
	static const struct scenario full = { "memfd-full-store", .n_regions = 1,
					      .size = 64 * MIB, .full_store = true };

	if (!guest_wp_available())
		tap_skip_all("userfaultfd with write-protect is not available");
	if (!guest_tmpdir(tmpdir))
		tap_skip_all("cannot create a temporary directory");
	atexit(cleanup);	/* runs first: the store is inside tmpdir */
	log_set_max_level(LOG_LEVEL_WARN);

	kernel_semantics(true);
	kernel_semantics(false);
	refuses_non_wp_uffd();
	arm_needs_prepare_for_anon();
	unaligned_regions(false);
	unaligned_regions(true);
	fault_thread_dies();
	incremental(false);
	incremental(true);
	overlapping();
	for (size_t i = 0; i < ARRAY_SIZE(scenarios); i++)
		run(&scenarios[i]);

	snprintf(store, sizeof(store), "%s/store", tmpdir);
	if (geteuid() != 0 || mkdir(store, 0700) < 0 ||
	    mount("tmpfs", store, "tmpfs", 0, "size=16m") < 0)
		tap_diag("SKIP full-store scenario: needs root to mount a small tmpfs");
	else {
		store_mounted = true;
		run(&full);
	}
	return tap_done();
}
