/* SPDX-License-Identifier: MIT
 * bench-copy.c — how to move guest memory from a memfd into a store file,
 * measured without the engine (issue #11 item 2): pread + pwrite (what the
 * engine does), splice through a pipe, copy_file_range, and pread + an
 * O_DIRECT pwrite; each copy in CHUNK-sized calls, writeback started every
 * SYNC bytes with sync_file_range (as the bulk copy does), then fsync.
 * Prints the wall time to the end of the fsync and the CPU time the copying
 * thread spent (not the kernel's writeback). With -b N, N threads spin
 * meanwhile, to see each way on busy cores.
 *
 * Usage: bench-copy [-d DIR] [-s MiB] [-r ROUNDS] [-b BUSY] [CHUNK_KIB:SYNC_KIB ...]
 *        (default /var/tmp, 1024 MiB, 3 rounds, 0 busy, 256:4096 64:64 64:4096)
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>
#include "common/macro.h"
#include "common/util.h"

enum method { M_PREAD, M_SPLICE, M_CFR, M_DIRECT, M_COUNT };
static const char *const names[M_COUNT] = { "pread+pwrite", "splice", "copy_file_range",
					     "O_DIRECT" };
static atomic_bool busy_stop;

static void *busy_main(void *unused)
{
	(void)unused;
	while (!atomic_load_explicit(&busy_stop, memory_order_relaxed))
		;
	return NULL;
}

static uint64_t cpu_usec(void)
{
	struct rusage ru;

	getrusage(RUSAGE_THREAD, &ru);	/* not the busy threads */
	return (uint64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * USEC_PER_SEC +
	       (uint64_t)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

/* One chunk [off, off+len) of src into dest by method m; 0 or -errno. */
static int copy_chunk(enum method m, int src, int dest, int pipefd[2], void *buf, off_t off,
		      size_t len)
{
	loff_t in = off, out = off;

	switch (m) {
	case M_PREAD:
	case M_DIRECT:
		if (pread_full(src, buf, len, off) != (ssize_t)len)
			return -EIO;
		return pwrite_full(dest, buf, len, off);
	case M_CFR:
		for (size_t left = len; left;) {
			ssize_t n = copy_file_range(src, &in, dest, &out, left, 0);

			if (n <= 0)
				return n < 0 ? -errno : -EIO;
			left -= (size_t)n;
		}
		return 0;
	case M_SPLICE:
		for (size_t left = len; left;) {
			ssize_t n = splice(src, &in, pipefd[1], NULL, left, 0);

			if (n <= 0)
				return n < 0 ? -errno : -EIO;
			left -= (size_t)n;
			while (n > 0) {
				ssize_t w = splice(pipefd[0], NULL, dest, &out, (size_t)n, 0);

				if (w <= 0)
					return w < 0 ? -errno : -EIO;
				n -= w;
			}
		}
		return 0;
	default:
		return -EINVAL;
	}
}

/* One round; prints a row. */
static int round_(enum method m, int src, const char *path, uint64_t size, size_t chunk,
		  size_t sync)
{
	int flags = O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC | (m == M_DIRECT ? O_DIRECT : 0);
	int dest = open(path, flags, 0600), pipefd[2] = { -1, -1 }, r = 0;
	void *buf = aligned_alloc(4096, chunk);
	uint64_t t0, c0, t1;

	if (dest < 0 || !buf || pipe2(pipefd, O_CLOEXEC) < 0) {
		r = -errno;
		goto out;
	}
	(void)fcntl(pipefd[1], F_SETPIPE_SZ, (int)MIN(chunk, 1u << 20));
	t0 = now_usec();
	c0 = cpu_usec();
	for (uint64_t off = 0; off < size && r == 0; off += chunk) {
		r = copy_chunk(m, src, dest, pipefd, buf, (off_t)off, chunk);
		if (r == 0 && (off + chunk) % sync == 0)
			(void)sync_file_range(dest, (off_t)(off + chunk - sync), (off_t)sync,
					      SYNC_FILE_RANGE_WRITE);
	}
	if (r == 0 && fsync(dest) < 0)
		r = -errno;
	t1 = now_usec();
	if (r == 0)
		printf("%-16s %6zu KiB %6zu KiB %8.0f MB/s %8.0f ms %8.0f ms\n", names[m],
		       chunk >> 10, sync >> 10, (double)size / (double)(t1 - t0),
		       (double)(t1 - t0) / 1000, (double)(cpu_usec() - c0) / 1000);
	else
		printf("%-16s %6zu KiB %6zu KiB %s\n", names[m], chunk >> 10, sync >> 10,
		       strerror(-r));
out:
	safe_close(pipefd[0]);
	safe_close(pipefd[1]);
	safe_close(dest);
	free(buf);
	unlink(path);
	return r;
}

int main(int argc, char **argv)
{
	const char *dir = "/var/tmp", *defaults[] = { "256:4096", "64:64", "64:4096" };
	unsigned rounds = 3, nbusy = 0;
	uint64_t size = 1024ULL << 20;
	pthread_t busy[16];
	char path[4096];
	uint8_t *mem;
	int opt, src;

	while ((opt = getopt(argc, argv, "d:s:r:b:")) != -1) {
		switch (opt) {
		case 'd': dir = optarg; break;
		case 's': size = strtoull(optarg, NULL, 0) << 20; break;
		case 'r': rounds = (unsigned)atoi(optarg); break;
		case 'b': nbusy = MIN((unsigned)atoi(optarg), 16u); break;
		default:
			fprintf(stderr, "usage: %s [-d DIR] [-s MiB] [-r ROUNDS] [-b BUSY] "
				"[CHUNK_KIB:SYNC_KIB ...]\n", argv[0]);
			return 2;
		}
	}
	src = memfd_create("bench-copy", MFD_CLOEXEC);
	if (src < 0 || ftruncate(src, (off_t)size) < 0 ||
	    (mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, src, 0)) == MAP_FAILED) {
		perror("guest memory");
		return 1;
	}
	for (uint64_t o = 0; o < size; o += 4096)	/* a stamp per page, as guests do */
		memcpy(mem + o, &o, sizeof(o));
	snprintf(path, sizeof(path), "%s/bench-copy.bin", dir);
	for (unsigned i = 0; i < nbusy; i++)
		pthread_create(&busy[i], NULL, busy_main, NULL);
	printf("# %" PRIu64 " MiB from a memfd into %s, %u rounds, %u busy threads\n",
	       size >> 20, dir, rounds, nbusy);
	printf("%-16s %10s %10s %13s %11s %11s\n", "method", "chunk", "sync every", "throughput",
	       "wall", "cpu");
	for (int a = optind; a < argc || (optind == argc && a - optind < 3); a++) {
		const char *spec = a < argc ? argv[a] : defaults[a - optind];
		size_t chunk = strtoull(spec, NULL, 0) << 10, sync;
		const char *colon = strchr(spec, ':');

		sync = colon ? strtoull(colon + 1, NULL, 0) << 10 : chunk;
		if (!chunk || sync < chunk || sync % chunk || size % sync) {
			fprintf(stderr, "%s: CHUNK_KIB:SYNC_KIB, SYNC a multiple of CHUNK dividing"
				" the size\n", spec);
			return 2;
		}
		for (unsigned r = 0; r < rounds; r++)
			for (int m = 0; m < M_COUNT; m++)
				round_((enum method)m, src, path, size, chunk, sync);
	}
	atomic_store(&busy_stop, true);
	for (unsigned i = 0; i < nbusy; i++)
		pthread_join(busy[i], NULL);
	return 0;
}
