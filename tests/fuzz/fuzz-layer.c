/* SPDX-License-Identifier: MIT
 * fuzz-layer.c — fuzz target for layer_map_read() and layer_view_open(), the
 * readers of a branch's pages.map (bytes from the store, which a crash, a
 * full disk or a hand can leave damaged).
 *
 * Set-up (once): a scratch BRANCHES directory with a full layer "p" (id 7,
 * every byte 0xAA) and a branch "b" whose memory.bin is 16 pages of 0xBB; the
 * input becomes b's pages.map. Invariants (abort() on violation): both calls
 * return 0 or a negative errno; a view that opens reads the whole 64 KiB
 * image, and every page of it is wholly p's or wholly b's (nothing else
 * exists to read).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "branch/layer.h"
#include "common/error.h"
#include "common/macro.h"
#include "common/nolinks.h"
#include "common/util.h"
#include "tests/fuzz/fuzz.h"

#define PAGES 16
#define SIZE (PAGES * 4096)

/* Seeds: a header (as layer.h lays it out) and a bitmap. */
struct seed_map {
	struct layer_header h;
	uint64_t bits;
};
static const struct seed_map incr = { { "FKFSLAY1", 9, 7, PAGES, 3, "p" }, 0x13 };
static const struct seed_map full = { { "FKFSLAY1", 9, 0, PAGES, PAGES, "" }, 0 };
static const struct seed_map hidden = { { "FKFSLAY1", 9, 7, PAGES, 1, "gone" }, 0x8000 };

const struct fuzz_seed fuzz_seeds[] = {
	{ (const char *)&incr, sizeof(incr) },
	{ (const char *)&full, sizeof(full.h) },
	{ (const char *)&hidden, sizeof(hidden) },
	FUZZ_SEED("FKFSLAY1"),
};
const size_t fuzz_n_seeds = sizeof(fuzz_seeds) / sizeof(fuzz_seeds[0]);

static char root[] = "/dev/shm/fuzz-layer.XXXXXX";	/* tmpfs: a write per input */
static char dir_b[64];
static bool ready;

static void fill(const char *dir, int byte)
{
	char path[128], buf[SIZE];
	int fd;

	snprintf(path, sizeof(path), "%s/memory.bin", dir);
	memset(buf, byte, sizeof(buf));
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || pwrite_full(fd, buf, sizeof(buf), 0) < 0)
		abort();
	close(fd);
}

static void cleanup(void) { rm_rf(root); }

static void setup(void)
{
	struct layer_header h = { .id = 7, .npages = PAGES, .own_pages = PAGES };
	char dir_p[64];

	if (!mkdtemp(root))
		abort();
	atexit(cleanup);
	snprintf(dir_p, sizeof(dir_p), "%s/p", root);
	snprintf(dir_b, sizeof(dir_b), "%s/b", root);
	if (mkdir(dir_p, 0700) < 0 || mkdir(dir_b, 0700) < 0)
		abort();
	fill(dir_p, 0xAA);
	fill(dir_b, 0xBB);
	if (layer_map_write(dir_p, &h, NULL, true) < 0)
		abort();
	ready = true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct layer_view *v = NULL;
	struct layer_header h;
	uint64_t *bits = NULL;
	static uint8_t img[SIZE];
	char path[128];
	int r;

	if (!ready)
		setup();
	snprintf(path, sizeof(path), "%s/" LAYER_MAP_FILE, dir_b);
	if (write_file_atomic(path, data, size, 0600) < 0)
		abort();
	r = layer_map_read(dir_b, &h, &bits);
	if (r > 0)
		abort();
	free(bits);
	r = layer_view_open(dir_b, SIZE, &v, NULL);
	if (r > 0 || (r == 0) != (v != NULL))
		abort();
	if (!v)
		return 0;
	if (layer_view_depth(v) < 1 || layer_view_pread(v, img, SIZE, 0) != SIZE)
		abort();
	for (size_t p = 0; p < PAGES; p++) {
		uint8_t c = img[p * 4096];

		if (c != 0xAA && c != 0xBB)
			abort();
		for (size_t i = 1; i < 4096; i++)
			if (img[p * 4096 + i] != c)
				abort();
	}
	layer_view_unref(v);
	return 0;
}
