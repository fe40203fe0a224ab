/* SPDX-License-Identifier: MIT
 * template.c — branch memory templates (template.h) and reading memory images
 * into memfds, for templates and for restores from files named in config.json.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/error.h"
#include "common/macro.h"
#include "branch/branch.h"
#include "sandbox/template.h"

int image_to_memfd(int src, const char *path, int *ret_fd, struct error *err)
{
	_cleanup_close_ int mfd = -1;
	struct stat st;
	off_t off = 0;

	if (fstat(src, &st) < 0)
		return error_set_errno(err, -errno, "memory image %.300s", path);
	mfd = memfd_create("forkfs-guest-mem", MFD_CLOEXEC);
	if (mfd < 0 || ftruncate(mfd, st.st_size) < 0)
		return error_set_errno(err, -errno, "memfd for %.300s", path);
	while (off < st.st_size) {
		ssize_t n = sendfile(mfd, src, &off, (size_t)MIN(st.st_size - off, 1 << 30));

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return error_set_errno(err, n < 0 ? -errno : -EIO,
					       "copying %.300s into the memfd", path);
	}
	*ret_fd = TAKE_FD(mfd);
	return 0;
}

size_t template_memory_text(pid_t pid, char *buf, size_t size)
{
	uint64_t total = 0, shared = 0, rss = 0, anon = 0;
	_cleanup_free_ char *line = NULL;
	bool in_template = false;
	size_t cap = 0;
	char path[64];
	FILE *f = NULL;
	int n;

	if (pid > 0) {
		snprintf(path, sizeof(path), "/proc/%d/smaps", (int)pid);
		f = fopen(path, "re");
	}
	while (f && getline(&line, &cap, f) > 0) {
		unsigned long long kb;

		if (sscanf(line, "Rss: %llu kB", &kb) == 1) {
			rss = kb << 10;
			total += rss;
		} else if (sscanf(line, "Anonymous: %llu kB", &kb) == 1) {
			anon = kb << 10;
			if (in_template && rss >= anon)
				shared += rss - anon;
		} else if (strchr(line, ' ') && strchr(line, '-') &&
			   strchr(line, '-') < strchr(line, ' ')) {
			/* a VMA's header, "start-end perms offset dev inode path":
			 * only there is a dash in the first word */
			in_template = strstr(line, "memfd:forkfs-template") != NULL;
		}
	}
	if (f)
		fclose(f);
	n = snprintf(buf, size, "total: %llu\nprivate: %llu\nshared: %llu\n",
		     (unsigned long long)total, (unsigned long long)(total - shared),
		     (unsigned long long)shared);
	return n < 0 ? 0 : MIN((size_t)n, size ? size - 1 : 0);
}

struct template *template_get(struct template **slot)
{
	struct template *t = *slot;

	if (t)
		return template_ref(t);
	t = calloc(1, sizeof(*t));
	if (!t)
		return NULL;
	t->refs = 1;
	t->fd = -1;
	pthread_mutex_init(&t->lock, NULL);
	t->owner = slot;
	*slot = t;
	return t;
}

struct template *template_ref(struct template *t)
{
	if (t)
		t->refs++;
	return t;
}

struct template *template_unref(struct template *t)
{
	if (!t || --t->refs > 0)
		return NULL;
	if (t->owner)
		*t->owner = NULL;
	safe_close(t->fd);
	pthread_mutex_destroy(&t->lock);
	free(t);
	return NULL;
}

void template_disown(struct template **slot)
{
	if (*slot)
		(*slot)->owner = NULL;
	*slot = NULL;
}

/* A sealed memfd holding branch b's dense image. */
static int branch_to_memfd(struct branch *b, int *ret_fd, uint64_t *ret_size, struct error *err)
{
	_cleanup_close_ int mfd = -1;
	uint64_t size = branch_memory_size(b);
	int r;

	mfd = memfd_create("forkfs-template", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (mfd < 0 || ftruncate(mfd, (off_t)size) < 0)
		return error_set_errno(err, -errno, "memfd for the template");
	r = branch_export(b, mfd, err);
	if (r < 0)
		return r;
	if (fcntl(mfd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) < 0)
		return error_set_errno(err, -errno, "sealing the template");
	*ret_fd = TAKE_FD(mfd);
	*ret_size = size;
	return 0;
}

int template_fill(struct template *t, struct branch *b, struct error *err)
{
	int r;

	pthread_mutex_lock(&t->lock);
	if (!t->filled) {
		struct error e = ERROR_INIT;

		t->fill_r = b ? branch_to_memfd(b, &t->fd, &t->size, &e)
			      : error_set(&e, -EINVAL, "no source branch");
		snprintf(t->fill_error, sizeof(t->fill_error), "%s", error_msg(&e));
		t->filled = true;
	}
	r = t->fill_r;
	if (r < 0)
		error_set(err, r, "%s", t->fill_error);
	pthread_mutex_unlock(&t->lock);
	return r;
}
