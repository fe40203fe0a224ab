/* SPDX-License-Identifier: MIT
 * bench-branch — SPEC §7 figures that the branch core controls, measured on
 * real forkfs-minivm guests that keep writing their memory on every vCPU:
 *
 *   pause window p50/p99 (µs) per guest size, live mode (and full mode once,
 *   for contrast), and forkfs's own part of it (arm: from the VMM's answer
 *   to the pause to write-protection armed; the rest is the VMM's); time to
 *   "ready" against writing the same bytes with plain pwrite + fsync into
 *   the same store directory (ratio); pages faulted.
 *
 * Usage: bench-branch [-s MiB[,MiB...]] [-n branches] [-d store-dir]
 * Needs root, /dev/kvm, $MINIVM and $GUEST_IMG (set by "make bench").
 * Prints one table. Not a test: figures go to BENCHMARKS.md.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#include "common/error.h"
#include "common/log.h"
#include "common/macro.h"
#include "common/util.h"
#include "branch/branch.h"
#include "tests/branch/minivm-proc.h"
#include "tests/bench/figures.h"


static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static uint64_t pct(uint64_t *v, int n, int p)
{
	int i = (n * p + 99) / 100 - 1;

	qsort(v, (size_t)n, sizeof(*v), cmp_u64);
	return v[i < 0 ? 0 : i >= n ? n - 1 : i];
}

/* Private memory of this process (kB): what branching costs, unlike RSS,
 * which also counts guest pages the engine's view of the memfd maps. */
static uint64_t max_anon_kb;

static void sample_anon(void)
{
	char line[256];
	uint64_t kb;
	FILE *f = fopen("/proc/self/status", "re");

	if (!f)
		return;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "RssAnon: %" SCNu64, &kb) == 1 && kb > max_anon_kb)
			max_anon_kb = kb;
	fclose(f);
}

static void clean_branch(const char *dir)
{
	static const char *const names[] = { "vmstate", "memory.bin", "branch.state", "pages.map" };
	char p[PATH_MAX];
	size_t i;

	for (i = 0; i < ARRAY_SIZE(names); i++) {
		snprintf(p, sizeof(p), "%s/%s", dir, names[i]);
		unlink(p);
	}
}

/* The baseline: the same number of bytes written with pwrite, then fsync. */
static uint64_t pwrite_usec(const char *dir, uint64_t bytes)
{
	size_t chunk = 4 * MIB;
	char *buf = malloc(chunk), p[PATH_MAX];
	uint64_t t0, off;
	int fd;

	snprintf(p, sizeof(p), "%s/pwrite.bin", dir);
	fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (!buf || fd < 0)
		return 0;
	memset(buf, 0x5a, chunk);
	t0 = now_usec();
	for (off = 0; off < bytes; off += chunk)
		if (pwrite_full(fd, buf, MIN(chunk, bytes - off), (off_t)off) < 0)
			break;
	fsync(fd);
	t0 = now_usec() - t0;
	close(fd);
	unlink(p);
	free(buf);
	return t0;
}

struct row {
	const char *mode;
	uint64_t mib, p50, p99, max, arm50, arm99, ready_ms, pwrite_ms, faulted;
	double ratio;
	int n;
};

static int bench_size(const char *store, uint64_t mib, int n, enum branch_mode_req mode,
		      struct row *row)
{
	const char *const stock[] = { "--stock", NULL };
	uint64_t pauses[64], arms[64], ready[64], faulted = 0;
	struct minivm_proc a = { 0 };
	struct vmm *v = NULL;
	char dir[PATH_MAX], name[64];
	int i, r = 0;

	snprintf(name, sizeof(name), "bench-%" PRIu64, mib);
	snprintf(dir, sizeof(dir), "%s/%s-branch", store, name);
	mkdir(dir, 0700);
	r = minivm_spawn(store, name, mode == BRANCH_MODE_FULL ? stock : NULL, &a);
	if (r == 0)
		r = minivm_boot(&a, 2, (unsigned)mib);
	if (r == 0)
		r = vmm_new(a.sock, a.pid, -1, store, &v);
	if (r < 0) {
		fprintf(stderr, "bench: cannot start a %" PRIu64 " MiB guest\n", mib);
		goto out;
	}
	/* Every branch a whole image (bench-incremental measures the others),
	 * taken into the same directory again and again. */
	vmm_set_incremental(v, false);
	sleep(1);	/* the guest writes on every vCPU from now on */
	for (i = 0; i < n && i < 64; i++) {
		struct error err = ERROR_INIT;
		struct branch_status st;
		struct branch *b = NULL;

		clean_branch(dir);
		r = branch_take(v, dir, mode, &b, &err);
		if (r < 0) {
			fprintf(stderr, "bench: branch failed: %s\n", error_msg(&err));
			goto out;
		}
		do {
			usleep(2000);
			sample_anon();
			branch_get_status(b, &st);
		} while (st.state == BRANCH_COPYING);
		if (st.state != BRANCH_READY) {
			fprintf(stderr, "bench: branch failed: %s\n", st.error);
			branch_unref(b);
			r = -EIO;
			goto out;
		}
		pauses[i] = st.pause_us;
		arms[i] = st.arm_us;
		ready[i] = st.elapsed_ms;
		faulted += st.pages_faulted;
		branch_unref(b);
	}
	row->mode = mode == BRANCH_MODE_FULL ? "full" : "live";
	row->mib = mib;
	row->n = n;
	row->max = pct(pauses, n, 100);
	row->p50 = pct(pauses, n, 50);
	row->p99 = pct(pauses, n, 99);
	row->arm50 = pct(arms, n, 50);
	row->arm99 = pct(arms, n, 99);
	row->ready_ms = pct(ready, n, 50);
	row->pwrite_ms = pwrite_usec(store, mib * MIB) / 1000;
	row->ratio = row->pwrite_ms ? (double)row->ready_ms / (double)row->pwrite_ms : 0;
	row->faulted = faulted / (uint64_t)n;
out:
	clean_branch(dir);
	rmdir(dir);
	vmm_unref(v);
	minivm_kill(&a);
	return r;
}

int main(int argc, char **argv)
{
	char sizes[128] = "256,1024,4096", store[PATH_MAX] = "/var/tmp", *tok, *save = NULL;
	struct row rows[8];
	struct rusage ru;
	int n = 10, nrows = 0, c, i;

	if (getenv("BENCH_DEBUG"))
		log_set_max_level(LOG_LEVEL_DEBUG);
	while ((c = getopt(argc, argv, "s:n:d:")) != -1) {
		if (c == 's')
			snprintf(sizes, sizeof(sizes), "%s", optarg);
		else if (c == 'n')
			n = atoi(optarg);
		else if (c == 'd')
			snprintf(store, sizeof(store), "%s", optarg);
		else
			return 2;
	}
	if (n < 1 || n > 64)
		return 2;
	for (tok = strtok_r(sizes, ",", &save); tok && nrows < 7; tok = strtok_r(NULL, ",", &save))
		if (bench_size(store, strtoull(tok, NULL, 10), n, BRANCH_MODE_LIVE, &rows[nrows]) == 0)
			nrows++;
	/* Full mode once at the first size, for contrast with the live pause. */
	if (bench_size(store, rows[0].mib ? rows[0].mib : 256, 3, BRANCH_MODE_FULL, &rows[nrows]) == 0)
		nrows++;
	printf("%-6s %-9s %4s %10s %10s %10s %10s %10s %10s %11s %7s %9s\n", "mode", "guest",
	       "n", "pause p50", "pause p99", "pause max", "arm p50", "arm p99", "ready ms",
	       "pwrite ms", "ratio", "faulted");
	for (i = 0; i < nrows; i++)
		printf("%-6s %5" PRIu64 " MiB %4d %7" PRIu64 " us %7" PRIu64 " us %7" PRIu64
		       " us %7" PRIu64 " us %7" PRIu64 " us %10" PRIu64 " %11" PRIu64
		       " %7.2f %9" PRIu64 "\n",
		       rows[i].mode, rows[i].mib, rows[i].n, rows[i].p50,
		       rows[i].p99, rows[i].max, rows[i].arm50, rows[i].arm99, rows[i].ready_ms,
		       rows[i].pwrite_ms, rows[i].ratio, rows[i].faulted);
	for (i = 0; i < nrows; i++) {
		const struct row *w = &rows[i];
		char k[32];

		snprintf(k, sizeof(k), "%s.%" PRIu64, w->mode, w->mib);
		figure("%s.pause_p50_us %" PRIu64, k, w->p50);
		figure("%s.pause_p99_us %" PRIu64, k, w->p99);
		figure("%s.arm_p99_us %" PRIu64, k, w->arm99);
		figure("%s.ready_ratio %.2f", k, w->ratio);
		figure("%s.ready_ms %" PRIu64, k, w->ready_ms);
	}
	getrusage(RUSAGE_SELF, &ru);
	printf("branching process: peak RSS %ld KiB (includes mapped guest pages), "
	       "peak private (RssAnon) %" PRIu64 " KiB\n", ru.ru_maxrss, max_anon_kb);
	figure("branch_anon_kib %" PRIu64, max_anon_kb);
	return 0;
}
