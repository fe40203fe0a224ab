/* SPDX-License-Identifier: MIT
 * guest.c — the uffd tests' stand-in VM; see guest.h.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include "common/macro.h"
#include "common/util.h"
#include "tests/uffd/guest.h"
#include "uffd/uffd.h"

#define GAP (2ULL << 20)
#define PM_UFFD_WP (1ULL << 57)

uint8_t *guest_addr(struct guest *g, uint64_t off)
{
	for (size_t i = 0; i < g->n_regions; i++)
		if (off >= g->regions[i].offset && off - g->regions[i].offset < g->regions[i].size)
			return (uint8_t *)(uintptr_t)(g->regions[i].base + off - g->regions[i].offset);
	abort();
}

int guest_new(struct guest *g, bool anon, size_t n_regions, uint64_t size, const char **why)
{
	uint64_t features = 0;
	int r;

	memset(g, 0, sizeof(*g));
	g->anon = anon;
	g->memfd = g->uffd = g->pagemap_fd = -1;
	g->n_regions = n_regions;
	g->total = size * n_regions;
	pthread_mutex_init(&g->lock, NULL);
	pthread_cond_init(&g->cond, NULL);
	pthread_mutex_init(&g->lat_lock, NULL);

	if (!anon) {
		g->memfd = memfd_create("uffd-test-guest", MFD_CLOEXEC);
		if (g->memfd < 0 || ftruncate(g->memfd, (off_t)g->total) < 0)
			return -errno;
	}
	/* Reserve regions plus gaps, then place each region inside, like two mmaps. */
	g->reserve_len = g->total + GAP * (n_regions + 1);
	g->reserve = mmap(NULL, g->reserve_len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (g->reserve == MAP_FAILED)
		return -errno;
	for (size_t i = 0; i < n_regions; i++) {
		uint8_t *want = g->reserve + GAP + i * (size + GAP);
		void *p;

		if (anon)
			p = mmap(want, size, PROT_READ | PROT_WRITE,
				 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
		else
			p = mmap(want, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED,
				 g->memfd, (off_t)(i * size));
		if (p == MAP_FAILED)
			return -errno;
		g->regions[i] = (struct uffd_region){ .base = (uintptr_t)p, .size = size,
						      .offset = i * size, .page_size = PAGE_4K };
	}
	r = uffd_open(&g->uffd);
	if (r < 0) {
		*why = "cannot create a userfaultfd";
		return r;
	}
	r = uffd_api(g->uffd, UFFD_FEATURE_PAGEFAULT_FLAG_WP, &features);
	if (r < 0) {
		*why = "UFFDIO_API refuses PAGEFAULT_FLAG_WP";
		return r;
	}
	for (size_t i = 0; i < n_regions; i++) {
		r = uffd_register(g->uffd, g->regions[i].base, size, UFFDIO_REGISTER_MODE_WP);
		if (r < 0) {
			*why = anon ? "cannot register anonymous memory for write-protect"
				    : "cannot register memfd memory for write-protect";
			return r;
		}
	}
	/* A quarter of the last region, in its middle, stays virgin. */
	g->virgin_n = size / PAGE_4K / 4;
	g->virgin_first = (g->total - size) / PAGE_4K + g->virgin_n;
	return 0;
}

static uint64_t xorshift(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static bool page_is_wp(struct guest *g, uint8_t *p)
{
	uint64_t ent = 0;

	if (pread(g->pagemap_fd, &ent, sizeof(ent), (off_t)((uintptr_t)p / PAGE_4K * 8)) != 8)
		return false;
	return ent & PM_UFFD_WP;
}

static void record_latency(struct guest *g, uint64_t ns)
{
	pthread_mutex_lock(&g->lat_lock);
	if (g->lat_n == g->lat_cap) {
		size_t cap = g->lat_cap ? g->lat_cap * 2 : 4096;
		uint64_t *n = realloc(g->lat_ns, cap * sizeof(*n));
		if (n) {
			g->lat_ns = n;
			g->lat_cap = cap;
		}
	}
	if (g->lat_n < g->lat_cap)
		g->lat_ns[g->lat_n++] = ns;
	pthread_mutex_unlock(&g->lat_lock);
}

static void *writer_main(void *arg)
{
	struct guest *g = arg;
	uint64_t seed = (uintptr_t)pthread_self() | 1, npages = g->total / PAGE_4K;

	while (!atomic_load_explicit(&g->stop, memory_order_relaxed)) {
		uint64_t page, stamp;
		uint8_t *p;
		bool wp = false, timed;
		uint64_t t0 = 0;

		if (atomic_load(&g->pause_req)) {
			pthread_mutex_lock(&g->lock);
			g->paused++;
			pthread_cond_broadcast(&g->cond);
			while (atomic_load(&g->pause_req) && !atomic_load(&g->stop))
				pthread_cond_wait(&g->cond, &g->lock);
			g->paused--;
			pthread_mutex_unlock(&g->lock);
			continue;
		}
		page = xorshift(&seed) % npages;
		if (page >= g->virgin_first && page < g->virgin_first + g->virgin_n &&
		    !atomic_load(&g->virgin_open))
			continue;
		p = guest_addr(g, page * PAGE_4K);
		stamp = atomic_fetch_add_explicit(&g->stamp, 1, memory_order_relaxed) + 1;
		timed = g->measure;
		if (timed) {
			wp = page_is_wp(g, p);
			t0 = now_nsec();
		}
		/* A small write: one 8-byte slot of the page. */
		((volatile uint64_t *)p)[stamp % (PAGE_4K / 8)] = stamp;
		if (timed && wp)
			record_latency(g, now_nsec() - t0);
		atomic_fetch_add_explicit(&g->writes, 1, memory_order_relaxed);
	}
	return NULL;
}

int guest_start_writers(struct guest *g, unsigned n)
{
	if (g->measure && g->pagemap_fd < 0)
		g->pagemap_fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	for (g->n_writers = 0; g->n_writers < MIN(n, GUEST_MAX_WRITERS); g->n_writers++) {
		int r = pthread_create(&g->writers[g->n_writers], NULL, writer_main, g);
		if (r)
			return -r;
	}
	return 0;
}

void guest_stop_writers(struct guest *g)
{
	pthread_mutex_lock(&g->lock);
	atomic_store(&g->stop, true);
	pthread_cond_broadcast(&g->cond);
	pthread_mutex_unlock(&g->lock);
	for (unsigned i = 0; i < g->n_writers; i++)
		pthread_join(g->writers[i], NULL);
	g->n_writers = 0;
}

void guest_pause(struct guest *g)
{
	pthread_mutex_lock(&g->lock);
	atomic_store(&g->pause_req, true);
	while (g->paused < g->n_writers)
		pthread_cond_wait(&g->cond, &g->lock);
	pthread_mutex_unlock(&g->lock);
}

void guest_resume(struct guest *g)
{
	pthread_mutex_lock(&g->lock);
	atomic_store(&g->pause_req, false);
	pthread_cond_broadcast(&g->cond);
	pthread_mutex_unlock(&g->lock);
}

void guest_open_virgin(struct guest *g) { atomic_store(&g->virgin_open, true); }

void guest_snapshot(struct guest *g, uint8_t *shadow)
{
	for (uint64_t page = 0; page < g->total / PAGE_4K; page++) {
		if (page >= g->virgin_first && page < g->virgin_first + g->virgin_n &&
		    !atomic_load(&g->virgin_open))
			memset(shadow + page * PAGE_4K, 0, PAGE_4K);
		else
			memcpy(shadow + page * PAGE_4K, guest_addr(g, page * PAGE_4K), PAGE_4K);
	}
}

long guest_count_wp(struct guest *g)
{
	_cleanup_close_ int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	uint64_t *ents;
	long n = 0;

	if (fd < 0)
		return -errno;
	for (size_t i = 0; i < g->n_regions; i++) {
		size_t np = g->regions[i].size / PAGE_4K;

		ents = malloc(np * 8);
		if (!ents)
			return -ENOMEM;
		if (pread_full(fd, ents, np * 8, (off_t)(g->regions[i].base / PAGE_4K * 8)) !=
		    (ssize_t)(np * 8)) {
			free(ents);
			return -EIO;
		}
		for (size_t j = 0; j < np; j++)
			n += !!(ents[j] & PM_UFFD_WP);
		free(ents);
	}
	return n;
}

long image_mismatches(int fd, const uint8_t *shadow, uint64_t total)
{
	static uint8_t buf[1 << 20];
	long bad = 0;

	for (uint64_t off = 0; off < total; off += sizeof(buf)) {
		size_t len = MIN(sizeof(buf), total - off);

		if (pread_full(fd, buf, len, (off_t)off) != (ssize_t)len)
			return -EIO;
		for (size_t p = 0; p < len; p += PAGE_4K)
			bad += memcmp(buf + p, shadow + off + p, PAGE_4K) != 0;
	}
	return bad;
}

bool guest_wait_writes(struct guest *g, uint64_t n, unsigned timeout_ms)
{
	uint64_t start = atomic_load(&g->writes), deadline = now_usec() + timeout_ms * 1000ULL;

	while (atomic_load(&g->writes) - start < n) {
		if (now_usec() > deadline)
			return false;
		sched_yield();
	}
	return true;
}

void guest_free(struct guest *g)
{
	guest_stop_writers(g);
	safe_close(g->uffd);
	safe_close(g->memfd);
	safe_close(g->pagemap_fd);
	if (g->reserve && g->reserve != MAP_FAILED)
		munmap(g->reserve, g->reserve_len);
	free(g->lat_ns);
	g->lat_ns = NULL;
}

bool guest_wp_available(void)
{
	int probe = -1;
	bool ok = uffd_open(&probe) == 0 &&
		  uffd_api(probe, UFFD_FEATURE_PAGEFAULT_FLAG_WP, NULL) == 0;

	safe_close(probe);
	return ok;
}

static const char *tmpdir_made;

static void remove_tmpdir(void)
{
	char cmd[PATH_MAX + 16];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir_made);
	(void)!system(cmd);
}

bool guest_tmpdir(char *tmpl)
{
	if (!mkdtemp(tmpl))
		return false;
	tmpdir_made = tmpl;
	atexit(remove_tmpdir);
	return true;
}

void guest_on_done(void *userdata, int result, const struct error *why)
{
	struct guest_done *d = userdata;

	pthread_mutex_lock(&d->m);
	d->calls++;
	d->result = result;
	d->why = *why;
	d->usec = now_usec();
	pthread_cond_broadcast(&d->c);
	pthread_mutex_unlock(&d->m);
}

bool guest_wait_done(struct guest_done *d, unsigned secs)
{
	struct timespec ts;
	bool ok;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += secs;
	pthread_mutex_lock(&d->m);
	while (d->calls == 0)
		if (pthread_cond_timedwait(&d->c, &d->m, &ts) == ETIMEDOUT)
			break;
	ok = d->calls > 0;
	pthread_mutex_unlock(&d->m);
	return ok;
}
