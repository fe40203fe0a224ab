/* SPDX-License-Identifier: MIT
 * bench-engine.c — benchmark of the copy engine alone (not a test): a guest
 * of 256 MiB and 1 GiB (tests/uffd/guest.h, memfd or anonymous) with two
 * writer threads; per round: prepare, pause, engine_arm (timed), resume, copy
 * to DIR (timed, with fsync), then plain pwrite+fsync of the same bytes into
 * the same DIR, with pre-arming on and off. Writers time each write that lands on a write-protected page
 * (pagemap bit 57 checked just before), which is the WP fault latency.
 *
 *   bench-engine [-d DIR] [-r ROUNDS] [-n NICE] [-a] [-R] [-t] [-S USEC[,USEC...]] [SIZE_MIB...]
 *   -n: the fault thread at the writers' nice plus NICE (default -10, as
 *       forkfs's -o nice raises its service threads; 0: all at one nice);
 *       the writers (the vCPUs) and the copy stay at the bench's own
 *   -a: anonymous memory; -R: also with a SCHED_FIFO fault thread, pre-armed
 *   -S: also with the fault thread spinning USEC after each fault
 *       (engine_set_fault_spin), pre-armed; one row per value
 *   -t: also with tracking (incremental sessions after the first; the
 *       write faults between sessions, which only record a write and
 *       release its page, are timed for 1 s after each copy, apart)
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "common/log.h"
#include "common/util.h"
#include "tests/bench/figures.h"
#include "tests/uffd/guest.h"
#include "uffd/engine.h"


static atomic_int done_calls;
static int done_result;

static void on_done(void *userdata, int result, const struct error *why)
{
	done_result = result;
	atomic_fetch_add(&done_calls, 1);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* The p-th per-mille (999: p99.9) of v[0..n). */
static uint64_t permille(uint64_t *v, size_t n, unsigned p)
{
	if (n == 0)
		return 0;
	qsort(v, n, sizeof(*v), cmp_u64);
	return v[MIN(n - 1, n * p / 1000)];
}

static uint64_t pct(uint64_t *v, size_t n, unsigned p) { return permille(v, n, p * 10); }

static int plain_pwrite(const char *dir, struct guest *g, uint64_t *ret_us)
{
	char path[512];
	uint64_t t0;
	int fd, r = 0;

	snprintf(path, sizeof(path), "%s/bench-pwrite.bin", dir);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	t0 = now_usec();
	for (size_t i = 0; i < g->n_regions && r == 0; i++)
		for (uint64_t o = 0; o < g->regions[i].size && r == 0; o += 4 * MIB)
			r = pwrite_full(fd, (void *)(uintptr_t)(g->regions[i].base + o),
					MIN(4 * MIB, g->regions[i].size - o),
					(off_t)(g->regions[i].offset + o));
	if (r == 0 && fsync(fd) < 0)
		r = -errno;
	*ret_us = now_usec() - t0;
	close(fd);
	unlink(path);
	return r;
}

/* Move the latencies recorded so far into *out (appending), or drop them. */
static void take_latencies(struct guest *g, uint64_t **out, size_t *n)
{
	pthread_mutex_lock(&g->lat_lock);
	if (out) {
		uint64_t *m = realloc(*out, (*n + g->lat_n + 1) * sizeof(**out));

		if (m) {
			memcpy(m + *n, g->lat_ns, g->lat_n * sizeof(*m));
			*out = m;
			*n += g->lat_n;
		}
	}
	g->lat_n = 0;
	pthread_mutex_unlock(&g->lat_lock);
}

static int fault_nice = -10;

static int bench_size(const char *dir, bool anon, bool prearm, bool rt, bool track,
		      unsigned spin, uint64_t size_mib, unsigned rounds)
{
	uint64_t arm_us[16], copy_us[16], pw_us[16], faulted = 0, *trk = NULL, trk_us = 0;
	size_t trk_n = 0;
	struct engine *e = NULL;
	struct engine_progress pr;
	struct memsrc src;
	struct guest g;
	const char *why = "";
	char path[512];
	int dest, r;

	r = guest_new(&g, anon, 1, size_mib * MIB, &why);
	if (r < 0) {
		fprintf(stderr, "guest: %s: %s\n", why, strerror(-r));
		return r;
	}
	g.measure = true;
	guest_open_virgin(&g);
	r = memsrc_open_for_pid(getpid(), g.regions, g.n_regions, &src, NULL);
	/* The fault thread starts in engine_new and keeps this thread's nice,
	 * as in forkfs; the writers start below, back at the bench's own. */
	if (r == 0 && fault_nice && (r = thread_nice_raise(-fault_nice)) < 0)
		fprintf(stderr, "nice %d: %s\n", fault_nice, strerror(-r));
	if (r == 0)
		r = engine_new(TAKE_FD(g.uffd), g.regions, g.n_regions, &src, &e, NULL);
	thread_nice_bulk(0);
	if (r < 0)
		goto out;
	engine_set_prearm(e, prearm);
	engine_set_fault_spin(e, spin);
	if (track && (r = engine_set_tracking(e, true)) < 0) {
		fprintf(stderr, "tracking: %s\n", strerror(-r));
		goto out;
	}
	if (rt && (r = engine_set_fault_rt(e, true)) < 0) {
		fprintf(stderr, "SCHED_FIFO fault thread: %s\n", strerror(-r));
		goto out;
	}
	/* Touch everything once, then start the writers. */
	for (uint64_t o = 0; o < g.total; o += 4096)
		*(volatile uint8_t *)(uintptr_t)(g.regions[0].base + o) = 1;
	guest_start_writers(&g, 2);
	snprintf(path, sizeof(path), "%s/bench-engine.bin", dir);
	dest = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (dest < 0) {
		r = -errno;
		goto out;
	}
	for (unsigned i = 0; i < rounds; i++) {
		struct engine_session *s = NULL;
		uint64_t t0;

		r = engine_prepare(e, NULL);
		if (r < 0)
			break;
		usleep(20000);	/* the guest runs between prepare and pause */
		guest_pause(&g);
		t0 = now_usec();
		r = engine_arm(e, dest, track, &s, NULL);
		arm_us[i] = now_usec() - t0;
		guest_resume(&g);
		if (r < 0)
			break;
		atomic_store(&done_calls, 0);
		t0 = now_usec();
		r = engine_start_copy(s, on_done, NULL, NULL);
		while (r == 0 && atomic_load(&done_calls) == 0)
			usleep(200);
		copy_us[i] = now_usec() - t0;
		engine_get_progress(s, &pr);
		engine_session_unref(s);
		faulted += pr.pages_faulted;
		if (r == 0)
			r = done_result;
		if (r == 0)
			r = plain_pwrite(dir, &g, &pw_us[i]);
		if (r < 0)
			break;
		if (track) {
			/* Only tracking faults from here to the next prepare. */
			take_latencies(&g, NULL, NULL);
			t0 = now_usec();
			usleep(1000000);
			take_latencies(&g, &trk, &trk_n);
			trk_us += now_usec() - t0;
		}
	}
	guest_stop_writers(&g);
	close(dest);
	unlink(path);
	if (r == 0) {
		double mb = (double)g.total / 1e6;
		uint64_t arm50 = pct(arm_us, rounds, 50), arm_max = pct(arm_us, rounds, 100);
		uint64_t c50 = pct(copy_us, rounds, 50), p50 = pct(pw_us, rounds, 50);
		uint64_t f50 = pct(g.lat_ns, g.lat_n, 50) / 1000;
		uint64_t f99 = pct(g.lat_ns, g.lat_n, 99) / 1000;
		uint64_t f999 = permille(g.lat_ns, g.lat_n, 999) / 1000;
		const char *kind = track ? "tracking" : prearm ? "prearm" : "no-prearm";
		char how[16], key[128];

		snprintf(how, sizeof(how), "%s", rt ? "fifo" : "");
		if (spin)
			snprintf(how, sizeof(how), "s%u", spin);
		printf("%-5s %-9s %-5s %5" PRIu64 " MiB | arm p50 %6" PRIu64 " us max %6" PRIu64
		       " | copy %7.0f MB/s | pwrite %7.0f MB/s | ratio %.2f | faults %6zu p50 %5"
		       PRIu64 " us p99 %6" PRIu64 " us p99.9 %6" PRIu64
		       " us | faulted pages/round %" PRIu64 "\n",
		       anon ? "anon" : "memfd", kind, how, size_mib, arm50, arm_max,
		       mb / ((double)c50 / 1e6), mb / ((double)p50 / 1e6),
		       (double)c50 / (double)p50, g.lat_n, f50, f99, f999, faulted / rounds);
		/* e.g. fault.memfd.prearm.1024.p99_us, fault.memfd.prearm.s20.1024.p99_us */
		snprintf(key, sizeof(key), "fault.%s.%s%s%s.%" PRIu64, anon ? "anon" : "memfd",
			 kind, *how ? "." : "", how, size_mib);
		figure("%s.p50_us %" PRIu64, key, f50);
		figure("%s.p99_us %" PRIu64, key, f99);
		figure("%s.p999_us %" PRIu64, key, f999);
	}
	if (r == 0 && track)
		printf("      tracking faults between sessions: %zu in %.1f s (%.0f/s), p50 %" PRIu64
		       " us p99 %" PRIu64 " us p99.9 %" PRIu64 " us max %" PRIu64 " us\n",
		       trk_n, (double)trk_us / 1e6, (double)trk_n * 1e6 / (double)MAX(trk_us, 1),
		       pct(trk, trk_n, 50) / 1000, pct(trk, trk_n, 99) / 1000,
		       trk_n ? trk[MIN(trk_n - 1, trk_n * 999 / 1000)] / 1000 : 0,
		       pct(trk, trk_n, 100) / 1000);
out:
	free(trk);
	engine_free(e);
	guest_free(&g);
	if (r < 0)
		fprintf(stderr, "bench %" PRIu64 " MiB failed: %s\n", size_mib, strerror(-r));
	return r;
}

int main(int argc, char **argv)
{
	const char *dir = getenv("TMPDIR") ? getenv("TMPDIR") : "/var/tmp";
	unsigned rounds = 3;
	bool anon = false, rt = false, track = false;
	unsigned spins[8], n_spins = 0;
	int c, r = 0;

	while ((c = getopt(argc, argv, "d:r:n:aRtS:")) != -1)
		switch (c) {
		case 'n': fault_nice = MAX(-20, MIN(0, atoi(optarg))); break;
		case 'd': dir = optarg; break;
		case 'r': rounds = (unsigned)MAX(1, MIN(16, atoi(optarg))); break;
		case 'a': anon = true; break;
		case 'R': rt = true; break;
		case 't': track = true; break;
		case 'S':
			for (char *t = strtok(optarg, ","); t && n_spins < 8; t = strtok(NULL, ","))
				spins[n_spins++] = (unsigned)atoi(t);
			break;
		default:
			fprintf(stderr, "usage: %s [-d DIR] [-r ROUNDS] [-n NICE] [-a] [-R] [-t] [-S USEC,...] "
				"[SIZE_MIB...]\n", argv[0]);
			return 2;
		}
	log_set_max_level(LOG_LEVEL_WARN);
	printf("# dir %s, %u rounds, 2 writer threads; copy and pwrite include fsync; "
	       "fault thread at nice %+d\n", dir, rounds, fault_nice);
	/* Rows: pre-armed, pre-armed with a SCHED_FIFO fault thread (-R), not,
	 * tracking (-t), then pre-armed with each spin (-S). */
	for (unsigned row = 0; row < 4 + n_spins; row++) {
		bool prearm = row != 2, fifo = row == 1, trk = row == 3;
		unsigned spin = row >= 4 ? spins[row - 4] : 0;

		if ((fifo && !rt) || (trk && !track))
			continue;
		if (optind == argc) {
			r |= bench_size(dir, anon, prearm, fifo, trk, spin, 256, rounds);
			r |= bench_size(dir, anon, prearm, fifo, trk, spin, 1024, rounds);
		}
		for (int i = optind; i < argc; i++)
			r |= bench_size(dir, anon, prearm, fifo, trk, spin,
					strtoull(argv[i], NULL, 10), rounds);
	}
	return r ? 1 : 0;
}
