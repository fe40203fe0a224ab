/* SPDX-License-Identifier: MIT
 * layer.c — the layered store: pages.map files, composed views, rmdir of a
 * layer others need, and compaction (see layer.h for the on-disk format and
 * the rules that keep every image byte-identical).
 */
#define LOG_PREFIX "layer: "
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "common/error.h"
#include "common/log.h"
#include "common/macro.h"
#include "common/util.h"
#include "common/nolinks.h"
#include "branch/layer.h"

#define MAGIC "FKFSLAY1"
#define COPY_BUF (1U << 20)
#define NO_LAYER 0xff
#define STATE_FILE "branch.state"	/* branch.c's: its first line is the state */

/* Every decision and commit that changes which layers exist or what a map
 * says; never held while copying data. */
static pthread_mutex_t store_lock = PTHREAD_MUTEX_INITIALIZER;
static _Atomic uint64_t generation;
static atomic_bool comp_stop;	/* layer_compactor_stop(): abandon a rebase */

uint64_t layer_generation(void) { return atomic_load(&generation); }

uint64_t layer_new_id(uint64_t after)
{
	static _Atomic uint64_t last;
	struct timespec ts;
	uint64_t id, prev;

	clock_gettime(CLOCK_REALTIME, &ts);
	id = (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
	prev = atomic_load(&last);
	do {
		id = MAX(id, MAX(prev, after) + 1);
	} while (!atomic_compare_exchange_weak(&last, &prev, id));
	return id;
}

static int map_path(char *buf, size_t size, const char *dir, const char *name)
{
	return snprintf(buf, size, "%s/%s", dir, name) >= (int)size ? -ENAMETOOLONG : 0;
}

static size_t map_words(uint64_t npages) { return (size_t)((npages + 63) / 64); }

int layer_map_write(const char *dir, const struct layer_header *h, const uint64_t *bits,
		    bool durable)
{
	size_t nbits = h->parent_id ? map_words(h->npages) * sizeof(uint64_t) : 0;
	_cleanup_free_ char *buf = malloc(sizeof(*h) + nbits);
	struct layer_header hdr = *h;
	char path[PATH_MAX];
	int r;

	if (!buf)
		return -ENOMEM;
	r = map_path(path, sizeof(path), dir, LAYER_MAP_FILE);
	if (r < 0)
		return r;
	memcpy(hdr.magic, MAGIC, sizeof(hdr.magic));
	hdr.parent_tag[sizeof(hdr.parent_tag) - 1] = 0;
	memcpy(buf, &hdr, sizeof(hdr));
	if (nbits)
		memcpy(buf + sizeof(hdr), bits, nbits);
	return durable ? write_file_atomic(path, buf, sizeof(hdr) + nbits, 0600)
		       : write_file_replace(path, buf, sizeof(hdr) + nbits, 0600);
}

int layer_map_read(const char *dir, struct layer_header *h, uint64_t **ret_bits)
{
	_cleanup_close_ int fd = -1;
	char path[PATH_MAX];
	struct stat st;
	size_t nbits;
	ssize_t n;
	int r;

	r = map_path(path, sizeof(path), dir, LAYER_MAP_FILE);
	if (r < 0)
		return r;
	fd = open_regular_nolinks(path, &st);
	if (fd < 0)
		return fd;
	n = pread_full(fd, h, sizeof(*h), 0);
	if (n < 0)
		return (int)n;
	if ((size_t)n != sizeof(*h) || memcmp(h->magic, MAGIC, sizeof(h->magic)) || !h->id ||
	    h->npages > (UINT64_MAX / 8) - 64)
		return -EBADMSG;
	h->parent_tag[sizeof(h->parent_tag) - 1] = 0;
	nbits = h->parent_id ? map_words(h->npages) * sizeof(uint64_t) : 0;
	if ((uint64_t)st.st_size != sizeof(*h) + (uint64_t)nbits)
		return -EBADMSG;
	if (!ret_bits)
		return 0;
	*ret_bits = NULL;
	if (!nbits)
		return 0;
	*ret_bits = malloc(nbits);
	if (!*ret_bits)
		return -ENOMEM;
	n = pread_full(fd, *ret_bits, nbits, sizeof(*h));
	if (n < 0 || (size_t)n != nbits) {
		free(*ret_bits);
		*ret_bits = NULL;
		return n < 0 ? (int)n : -EBADMSG;
	}
	return 0;
}

/* The directory of dir's parent: BRANCHES/TAG holding that id, else the
 * hidden BRANCHES/.layer-ID. */
static int parent_dir(const char *dir, const struct layer_header *h, char *buf, size_t size)
{
	struct layer_header ph;
	const char *slash = strrchr(dir, '/');
	int n = slash ? (int)(slash - dir) : 0;

	if (!slash)
		return -EINVAL;
	if (h->parent_tag[0] && !strchr(h->parent_tag, '/') &&
	    snprintf(buf, size, "%.*s/%s", n, dir, h->parent_tag) < (int)size &&
	    layer_map_read(buf, &ph, NULL) == 0 && ph.id == h->parent_id)
		return 0;
	if (snprintf(buf, size, "%.*s/" LAYER_HIDDEN_PREFIX "%" PRIu64, n, dir, h->parent_id) >=
	    (int)size)
		return -ENAMETOOLONG;
	return 0;
}

/* ---- views ---- */

struct layer_view {
	atomic_int refs;
	uint64_t size, npages;
	unsigned depth;
	uint64_t own_pages;
	int fds[LAYER_MAX_CHAIN];
	uint64_t ids[LAYER_MAX_CHAIN];
	char *dirs[LAYER_MAX_CHAIN];
	uint8_t *index;		/* NULL when depth == 1 */
};

struct layer_view *layer_view_ref(struct layer_view *v)
{
	if (v)
		atomic_fetch_add(&v->refs, 1);
	return v;
}

struct layer_view *layer_view_unref(struct layer_view *v)
{
	if (!v || atomic_fetch_sub(&v->refs, 1) != 1)
		return NULL;
	for (unsigned i = 0; i < v->depth; i++) {
		safe_close(v->fds[i]);
		free(v->dirs[i]);
	}
	free(v->index);
	free(v);
	return NULL;
}

unsigned layer_view_depth(const struct layer_view *v) { return v->depth; }
uint64_t layer_view_own_pages(const struct layer_view *v) { return v->own_pages; }
int layer_view_single_fd(const struct layer_view *v) { return v->depth == 1 ? v->fds[0] : -1; }

/* Add the layer in dir as v->depth: open its memory.bin, claim its pages that
 * no nearer layer holds. *ret_h gets its header (a full one if it has no
 * pages.map). */
static int view_add(struct layer_view *v, const char *dir, struct layer_header *ret_h,
		    struct error *err)
{
	_cleanup_free_ uint64_t *bits = NULL;
	unsigned d = v->depth;
	char path[PATH_MAX];
	struct stat st;
	int r, fd;

	if (d == LAYER_MAX_CHAIN)
		return error_set(err, -ELOOP, "chain of layers longer than %d at %s",
				 LAYER_MAX_CHAIN, dir);
	r = layer_map_read(dir, ret_h, &bits);
	if (r == -ENOENT && d == 0)
		*ret_h = (struct layer_header){ .npages = v->npages, .own_pages = v->npages };
	else if (r < 0)
		return error_set_errno(err, r, "reading %s/" LAYER_MAP_FILE, dir);
	if (ret_h->npages != v->npages)
		return error_set(err, -EBADMSG, "%s/" LAYER_MAP_FILE " is for %" PRIu64
				 " pages, not %" PRIu64, dir, ret_h->npages, v->npages);
	if (map_path(path, sizeof(path), dir, "memory.bin") < 0)
		return error_set(err, -ENAMETOOLONG, "path too long: %s", dir);
	fd = open_nolinks(path, O_RDONLY, 0);
	if (fd < 0)
		return error_set_errno(err, fd, "opening %s", path);
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || (uint64_t)st.st_size != v->size) {
		safe_close(fd);
		return error_set(err, -EBADMSG, "%s is not a %" PRIu64 "-byte file", path, v->size);
	}
	v->fds[d] = fd;
	v->ids[d] = ret_h->id;
	v->dirs[d] = strdup(dir);
	v->depth++;
	if (!v->dirs[d])
		return error_set(err, -ENOMEM, "out of memory");
	if (d == 0)
		v->own_pages = ret_h->own_pages;
	if (!ret_h->parent_id) {
		/* The bottom: every page no nearer layer holds. */
		for (uint64_t p = 0; v->index && p < v->npages; p++)
			if (v->index[p] == NO_LAYER)
				v->index[p] = (uint8_t)d;
		return 0;
	}
	if (!v->index) {
		v->index = malloc(v->npages);
		if (!v->index)
			return error_set(err, -ENOMEM, "out of memory");
		memset(v->index, NO_LAYER, v->npages);
	}
	for (uint64_t w = 0; w < map_words(v->npages); w++)
		for (uint64_t m = bits[w]; m; m &= m - 1) {
			uint64_t p = w * 64 + (uint64_t)__builtin_ctzll(m);

			if (p < v->npages && v->index[p] == NO_LAYER)
				v->index[p] = (uint8_t)d;
		}
	return 0;
}

int layer_view_open(const char *dir, uint64_t size, struct layer_view **ret, struct error *err)
{
	struct layer_view *v = calloc(1, sizeof(*v));
	struct layer_header h;
	char cur[PATH_MAX], next[PATH_MAX];
	int r;

	if (!v)
		return error_set(err, -ENOMEM, "out of memory");
	atomic_init(&v->refs, 1);
	v->size = size;
	v->npages = size / PAGE_4K;
	if (size % PAGE_4K || !size) {
		r = error_set(err, -EINVAL, "image size %" PRIu64 " is not whole pages", size);
		goto fail;
	}
	snprintf(cur, sizeof(cur), "%s", dir);
	for (;;) {
		r = view_add(v, cur, &h, err);
		if (r < 0)
			goto fail;
		if (!h.parent_id)
			break;
		r = parent_dir(cur, &h, next, sizeof(next));
		if (r < 0) {
			error_set_errno(err, r, "finding the parent of %s", cur);
			goto fail;
		}
		snprintf(cur, sizeof(cur), "%s", next);
	}
	*ret = v;
	return 0;
fail:
	layer_view_unref(v);
	return r;
}

/* The layer of page p and how many pages from p (below end) share it. */
static unsigned run_at(const struct layer_view *v, uint64_t p, uint64_t end, uint64_t *ret_n)
{
	unsigned l = v->index ? v->index[p] : 0;
	uint64_t q = p + 1;

	while (v->index && q < end && v->index[q] == l)
		q++;
	*ret_n = (v->index ? q : end) - p;
	return l;
}

size_t layer_view_segments(const struct layer_view *v, off_t off, size_t len,
			   struct layer_seg *segs, size_t max)
{
	uint64_t o = (uint64_t)off, end = MIN(o + len, v->size);
	size_t n = 0;

	while (o < end && n < max) {
		uint64_t pages, run_end;
		unsigned l = run_at(v, o / PAGE_4K, (end + PAGE_4K - 1) / PAGE_4K, &pages);

		run_end = MIN(ALIGN_DOWN(o, PAGE_4K) + pages * PAGE_4K, end);
		segs[n++] = (struct layer_seg){ .fd = v->fds[l], .off = (off_t)o,
						.len = (size_t)(run_end - o) };
		o = run_end;
	}
	return n;
}

ssize_t layer_view_pread(const struct layer_view *v, void *buf, size_t len, off_t off)
{
	struct layer_seg segs[64];
	size_t done = 0;

	if (off < 0 || (uint64_t)off >= v->size)
		return 0;
	len = (size_t)MIN((uint64_t)len, v->size - (uint64_t)off);
	while (done < len) {
		size_t n = layer_view_segments(v, off + (off_t)done, len - done, segs, 64);

		for (size_t i = 0; i < n; i++) {
			int r = (int)pread_full(segs[i].fd, (char *)buf + done, segs[i].len, segs[i].off);

			if (r < 0)
				return r;
			if ((size_t)r != segs[i].len)
				return -EIO;
			done += segs[i].len;
		}
	}
	return (ssize_t)done;
}

int layer_view_export(const struct layer_view *v, int out_fd, struct error *err)
{
	_cleanup_free_ char *buf = NULL;

	if (v->depth == 1) {
		off_t in = 0;

		if (lseek(out_fd, 0, SEEK_SET) < 0)
			return error_set_errno(err, -errno, "seeking the destination");
		while ((uint64_t)in < v->size) {
			ssize_t n = sendfile(out_fd, v->fds[0], &in,
					     (size_t)MIN(v->size - (uint64_t)in, 1ULL << 30));

			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
				return error_set_errno(err, n < 0 ? -errno : -EIO,
						       "copying %s/memory.bin", v->dirs[0]);
		}
		return 0;
	}
	buf = malloc(COPY_BUF);
	if (!buf)
		return error_set(err, -ENOMEM, "out of memory");
	for (uint64_t o = 0; o < v->size; o += COPY_BUF) {
		size_t n = (size_t)MIN((uint64_t)COPY_BUF, v->size - o);
		ssize_t r = layer_view_pread(v, buf, n, (off_t)o);

		if (r >= 0 && (size_t)r != n)
			r = -EIO;
		if (r >= 0)
			r = pwrite_full(out_fd, buf, n, (off_t)o);
		if (r < 0)
			return error_set_errno(err, (int)r, "composing the image of %s",
					       v->dirs[0]);
	}
	return 0;
}

/* ---- the store: scanning, removing, compacting ---- */

struct entry {
	char name[NAME_MAX + 1];
	struct layer_header h;
	bool hidden;
	bool live;		/* ready, copying or hidden: pins its parent */
	bool ready;
	unsigned children;	/* live entries whose parent it is */
};

struct scan {
	struct entry *e;
	size_t n;
};

static bool first_line_is(const char *dir, const char *want)
{
	_cleanup_free_ char *text = NULL;
	char path[PATH_MAX];
	size_t n = strlen(want);

	if (map_path(path, sizeof(path), dir, STATE_FILE) < 0 ||
	    read_file_nolinks(path, 4096, &text, NULL) < 0)
		return false;
	return strncmp(text, want, n) == 0 && (text[n] == '\n' || !text[n]);
}

static struct entry *scan_find(struct scan *s, uint64_t id)
{
	for (size_t i = 0; id && i < s->n; i++)
		if (s->e[i].h.id == id)
			return &s->e[i];
	return NULL;
}

/* Every directory of branches_dir with a pages.map; .trash-* leftovers of an
 * interrupted removal are removed. */
static int scan_store(const char *branches_dir, struct scan *s)
{
	int fd = open_nolinks(branches_dir, O_RDONLY | O_DIRECTORY, 0);
	DIR *d = fd < 0 ? NULL : fdopendir(fd);
	struct dirent *de;
	char path[PATH_MAX];

	*s = (struct scan){};
	if (!d) {
		int r = fd < 0 ? fd : -errno;

		safe_close(fd);
		return r;
	}
	while ((de = readdir(d))) {
		struct entry e = {};
		struct entry *ne;

		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (snprintf(path, sizeof(path), "%s/%s", branches_dir, de->d_name) >=
		    (int)sizeof(path))
			continue;
		if (!strncmp(de->d_name, ".trash-", 7)) {
			rm_rf(path);
			continue;
		}
		if (layer_map_read(path, &e.h, NULL) < 0)
			continue;
		snprintf(e.name, sizeof(e.name), "%s", de->d_name);
		e.hidden = !strncmp(de->d_name, LAYER_HIDDEN_PREFIX, strlen(LAYER_HIDDEN_PREFIX));
		e.ready = e.hidden || first_line_is(path, "ready");
		e.live = e.ready || first_line_is(path, "copying");
		ne = reallocarray(s->e, s->n + 1, sizeof(*s->e));
		if (!ne) {
			closedir(d);
			return -ENOMEM;
		}
		s->e = ne;
		s->e[s->n++] = e;
	}
	closedir(d);
	for (size_t i = 0; i < s->n; i++) {
		struct entry *p = s->e[i].live ? scan_find(s, s->e[i].h.parent_id) : NULL;

		if (p)
			p->children++;
	}
	return 0;
}

/* Remove dir for good: renamed out of the way first (one step), then
 * emptied. A crash in between leaves a .trash-* that the next scan removes. */
static int remove_layer_dir(const char *branches_dir, const char *name, uint64_t id)
{
	char from[PATH_MAX], to[PATH_MAX];
	int r;

	if (snprintf(from, sizeof(from), "%s/%s", branches_dir, name) >= (int)sizeof(from) ||
	    snprintf(to, sizeof(to), "%s/.trash-%" PRIu64, branches_dir, id) >= (int)sizeof(to))
		return -ENAMETOOLONG;
	r = rename_nolinks(from, to);
	if (r < 0)
		return r;
	atomic_fetch_add(&generation, 1);
	return rm_rf(to);
}

int layer_remove(const char *branches_dir, const char *tag, bool *ret_hidden)
{
	struct layer_header h;
	char dir[PATH_MAX], to[PATH_MAX];
	struct scan s;
	int r;

	*ret_hidden = false;
	if (snprintf(dir, sizeof(dir), "%s/%s", branches_dir, tag) >= (int)sizeof(dir))
		return -ENAMETOOLONG;
	pthread_mutex_lock(&store_lock);
	if (layer_map_read(dir, &h, NULL) < 0) {
		/* No layer: nothing can depend on it. */
		pthread_mutex_unlock(&store_lock);
		return rm_rf(dir);
	}
	r = scan_store(branches_dir, &s);
	if (r == 0) {
		struct entry *me = scan_find(&s, h.id);

		*ret_hidden = me && me->children > 0;
		if (*ret_hidden) {
			snprintf(to, sizeof(to), "%s/" LAYER_HIDDEN_PREFIX "%" PRIu64, branches_dir,
				 h.id);
			r = rename_nolinks(dir, to) ?: fsync_parent(to);
			atomic_fetch_add(&generation, 1);
		} else {
			r = remove_layer_dir(branches_dir, tag, h.id);
		}
	}
	free(s.e);
	pthread_mutex_unlock(&store_lock);
	return r;
}

int layer_remove_tree(const char *dir)
{
	int r;

	pthread_mutex_lock(&store_lock);
	r = rm_rf(dir);
	atomic_fetch_add(&generation, 1);
	pthread_mutex_unlock(&store_lock);
	return r;
}

/* Rebase the ready layer BRANCHES/name onto its ancestor onto_id (0: make it
 * full): copy into its memory.bin every page it lacks that a layer between
 * it and that ancestor provides, fsync, then swap its map if it is still the
 * one this started from. Returns 1 if committed, 0 if the store changed
 * meanwhile (nothing lost: the pages written are ones its map did not
 * claim), or -errno. */
/* [off, off+len) of in into out, at the same offsets: copy_file_range, which
 * shares the extents where the store can (XFS, btrfs: no data moves) and
 * copies inside the kernel elsewhere; read and write through buf where it
 * cannot be used. 0 or -errno. */
static int copy_pages(int in, int out, off_t off, size_t len, void *buf)
{
	while (len > 0) {
		off_t i = off, o = off;
		ssize_t n = copy_file_range(in, &i, out, &o, len, 0);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EXDEV || errno == EOPNOTSUPP || errno == ENOSYS ||
			      errno == EINVAL))
			break;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;	/* 0: in ends early */
		off += n;
		len -= (size_t)n;
	}
	while (len > 0) {
		size_t n = MIN(len, (size_t)COPY_BUF);
		ssize_t r = pread_full(in, buf, n, off);

		if (r >= 0 && (size_t)r != n)
			r = -EIO;
		if (r >= 0)
			r = pwrite_full(out, buf, n, off);
		if (r < 0)
			return (int)r;
		off += (off_t)n;
		len -= n;
	}
	return 0;
}

/* Can files in dir share extents (reflinks: XFS with reflink, btrfs)? Tried
 * once per file system: a page cloned (FICLONE) between two unnamed files. */
static bool store_shares_extents(const char *dir)
{
	static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
	static struct { dev_t dev; bool yes; } known[8];
	static size_t n_known;
	_cleanup_close_ int a = -1, b = -1;
	char page[PAGE_4K] = { 1 };
	struct stat st;
	bool yes;

	if (stat(dir, &st) < 0)
		return false;
	pthread_mutex_lock(&lock);
	for (size_t i = 0; i < n_known; i++)
		if (known[i].dev == st.st_dev) {
			yes = known[i].yes;
			pthread_mutex_unlock(&lock);
			return yes;
		}
	pthread_mutex_unlock(&lock);
	a = open_nolinks(dir, O_TMPFILE | O_RDWR, 0600);
	b = open_nolinks(dir, O_TMPFILE | O_RDWR, 0600);
	yes = a >= 0 && b >= 0 && pwrite_full(a, page, sizeof(page), 0) == 0 &&
	      ioctl(b, FICLONE, a) == 0;
	pthread_mutex_lock(&lock);
	if (n_known < ARRAY_SIZE(known))
		known[n_known++] = (typeof(known[0])){ st.st_dev, yes };
	pthread_mutex_unlock(&lock);
	if (yes)
		log_info("%s: the store shares extents (reflinks): ready incremental branches are flattened",
			 dir);
	return yes;
}

/* Give the branch c every page it takes from the layers above onto_id (0:
 * all of them) and make onto_id its parent. Pages copied count as its own
 * (own_pages); pages whose extents it now shares (shares) do not: they add
 * nothing to the store. */
static int rebase(const char *branches_dir, const struct entry *c, uint64_t onto_id, bool shares,
		  struct error *err)
{
	_cleanup_free_ uint64_t *bits = NULL;
	_cleanup_free_ char *buf = NULL;
	_cleanup_close_ int fd = -1;
	struct layer_view *v = NULL;
	struct layer_header h, now;
	char dir[PATH_MAX], path[PATH_MAX];
	unsigned k;
	int r;

	if (snprintf(dir, sizeof(dir), "%s/%s", branches_dir, c->name) >= (int)sizeof(dir))
		return error_set(err, -ENAMETOOLONG, "path too long");
	r = layer_map_read(dir, &h, &bits);
	if (r < 0 || !h.parent_id || h.id != c->h.id)
		return r < 0 ? error_set_errno(err, r, "reading %s", dir) : 0;
	r = layer_view_open(dir, h.npages * PAGE_4K, &v, err);
	if (r < 0)
		return r;
	for (k = 1; k < v->depth && v->ids[k] != onto_id; k++)
		;
	if (onto_id && k == v->depth) {
		layer_view_unref(v);
		return 0;	/* not an ancestor (any more) */
	}
	buf = malloc(COPY_BUF);
	fd = map_path(path, sizeof(path), dir, "memory.bin") ?: open_nolinks(path, O_WRONLY, 0);
	if (!buf || fd < 0) {
		r = error_set_errno(err, buf ? fd : -ENOMEM, "opening %s", path);
		goto out;
	}
	/* Pages from layers 1..k-1 (all of them for onto_id 0: k == depth). */
	for (uint64_t p = 0; p < v->npages;) {
		uint64_t n;
		unsigned l = run_at(v, p, v->npages, &n);

		n = MIN(n, (uint64_t)COPY_BUF / PAGE_4K);
		if (atomic_load(&comp_stop)) {
			r = 0;
			goto out;
		}
		if (l >= 1 && l < k) {
			r = copy_pages(v->fds[l], fd, (off_t)(p * PAGE_4K), n * PAGE_4K, buf);
			if (r < 0) {
				error_set_errno(err, r, "copying pages into %s", path);
				goto out;
			}
			for (uint64_t q = p; q < p + n; q++)
				bits[q / 64] |= 1ULL << (q % 64);
			if (!shares)
				h.own_pages += n;
		}
		p += n;
	}
	if (fdatasync(fd) < 0) {
		r = error_set_errno(err, -errno, "fsync of %s", path);
		goto out;
	}
	h.parent_id = onto_id;
	h.parent_tag[0] = 0;
	if (onto_id) {
		const char *base = strrchr(v->dirs[k], '/');

		base = base ? base + 1 : v->dirs[k];
		if (strncmp(base, LAYER_HIDDEN_PREFIX, strlen(LAYER_HIDDEN_PREFIX)))
			snprintf(h.parent_tag, sizeof(h.parent_tag), "%s", base);
	}
	pthread_mutex_lock(&store_lock);
	r = layer_map_read(dir, &now, NULL);
	if (r == 0 && now.id == c->h.id && now.parent_id == c->h.parent_id &&
	    now.own_pages == c->h.own_pages) {
		r = layer_map_write(dir, &h, onto_id ? bits : NULL, true);
		if (r < 0)
			error_set_errno(err, r, "writing %s/" LAYER_MAP_FILE, dir);
		else
			r = 1;
		atomic_fetch_add(&generation, 1);
	} else {
		r = 0;
	}
	pthread_mutex_unlock(&store_lock);
out:
	layer_view_unref(v);
	return r;
}

/* Depth of e's chain (1: full), following parents in the scan. */
static unsigned chain_depth(struct scan *s, const struct entry *e, uint64_t *ret_base)
{
	unsigned d = 1;

	while (e && e->h.parent_id && d <= LAYER_MAX_CHAIN) {
		e = scan_find(s, e->h.parent_id);
		d++;
	}
	*ret_base = e && !e->h.parent_id ? e->h.id : 0;
	return d;
}

/* One step: the first change found, made. 1 if something changed, 0 if the
 * store is compact, or -errno. */
static int compact_step(const char *branches_dir, unsigned max_depth, bool shares,
			struct error *err)
{
	struct scan s;
	int r;

	pthread_mutex_lock(&store_lock);
	r = scan_store(branches_dir, &s);
	if (r < 0) {
		pthread_mutex_unlock(&store_lock);
		free(s.e);
		/* The sandbox was removed meanwhile: nothing left to compact. */
		return r == -ENOENT ? 0 : error_set_errno(err, r, "reading %s", branches_dir);
	}
	for (size_t i = 0; i < s.n; i++) {
		struct entry *e = &s.e[i];

		if (e->hidden && e->children == 0) {
			r = remove_layer_dir(branches_dir, e->name, e->h.id);
			r = r < 0 ? error_set_errno(err, r, "removing %s", e->name) : 1;
			pthread_mutex_unlock(&store_lock);
			free(s.e);
			return r;
		}
	}
	pthread_mutex_unlock(&store_lock);
	for (size_t i = 0; r == 0 && i < s.n; i++) {
		struct entry *c = &s.e[i], *p = scan_find(&s, c->h.parent_id);
		uint64_t base;

		if (!c->ready || !c->h.parent_id)
			continue;
		if (shares)	/* flatten: a full image, sharing its pages' extents */
			r = rebase(branches_dir, c, 0, true, err);
		else if (p && p->hidden && p->children == 1)
			r = rebase(branches_dir, c, p->h.parent_id, false, err);	/* fold p into c */
		else if (chain_depth(&s, c, &base) > max_depth && base)
			r = rebase(branches_dir, c, base, false, err);
	}
	free(s.e);
	return r;
}

int layer_compact(const char *branches_dir, unsigned max_depth, struct error *err)
{
	bool shares = store_shares_extents(branches_dir);
	int changes = 0, r;

	for (int i = 0; i < 256; i++) {
		r = compact_step(branches_dir, MAX(max_depth, 2U), shares, err);
		if (r < 0)
			return r;
		if (r == 0)
			break;
		changes++;
	}
	return changes;
}

/* ---- the compactor thread ---- */

#define COMPACT_QUEUE 32

static struct {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	pthread_t thread;
	bool enabled;			/* layer_compactor_start() was called */
	bool started;
	char *queue[COMPACT_QUEUE];	/* distinct directories */
	size_t n;
} comp = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER };

static void *compactor_main(void *unused)
{
	(void)unused;
	thread_nice_bulk(0);	/* background work: not at the loop's raise */
	pthread_mutex_lock(&comp.lock);
	while (!atomic_load(&comp_stop)) {
		struct error err = ERROR_INIT;
		char *dir;
		int r;

		if (comp.n == 0) {
			pthread_cond_wait(&comp.cond, &comp.lock);
			continue;
		}
		dir = comp.queue[0];
		memmove(comp.queue, comp.queue + 1, --comp.n * sizeof(comp.queue[0]));
		pthread_mutex_unlock(&comp.lock);
		r = layer_compact(dir, LAYER_KEEP_DEPTH, &err);
		if (r < 0)
			log_warning("%s: compacting the store's layers: %s", dir, error_msg(&err));
		else if (r > 0)
			log_info("%s: %d layer change(s) (folds, rebases, flattenings, removals)", dir, r);
		free(dir);
		pthread_mutex_lock(&comp.lock);
	}
	pthread_mutex_unlock(&comp.lock);
	return NULL;
}

/* Under comp.lock. */
static void compactor_spawn(void)
{
	sigset_t all, old;

	if (comp.started || !comp.enabled)
		return;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);	/* it takes no signals */
	comp.started = pthread_create(&comp.thread, NULL, compactor_main, NULL) == 0;
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (comp.started)
		pthread_setname_np(comp.thread, "forkfs-compact");
	else
		log_warning("cannot start the compactor thread: layers are not compacted");
}

void layer_compact_request(const char *branches_dir)
{
	char *dir;

	pthread_mutex_lock(&comp.lock);
	if (atomic_load(&comp_stop))
		goto out;
	for (size_t i = 0; i < comp.n; i++)
		if (!strcmp(comp.queue[i], branches_dir))
			goto out;
	if (comp.n == COMPACT_QUEUE || !(dir = strdup(branches_dir)))
		goto out;	/* the next request does it */
	comp.queue[comp.n++] = dir;
	compactor_spawn();
	pthread_cond_signal(&comp.cond);
out:
	pthread_mutex_unlock(&comp.lock);
}

void layer_compactor_start(void)
{
	pthread_mutex_lock(&comp.lock);
	comp.enabled = true;
	if (comp.n > 0)
		compactor_spawn();
	pthread_mutex_unlock(&comp.lock);
}

void layer_compactor_stop(void)
{
	bool started;

	pthread_mutex_lock(&comp.lock);
	atomic_store(&comp_stop, true);
	started = comp.started;
	comp.started = false;
	pthread_cond_broadcast(&comp.cond);
	pthread_mutex_unlock(&comp.lock);
	if (started)
		pthread_join(comp.thread, NULL);
	while (comp.n > 0)
		free(comp.queue[--comp.n]);
}
