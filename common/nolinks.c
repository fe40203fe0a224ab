/* SPDX-License-Identifier: MIT
 * nolinks.c — see nolinks.h.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/macro.h"
#include "common/nolinks.h"
#include "common/util.h"

int open_nolinks(const char *path, int flags, mode_t mode)
{
	struct open_how how = {
		.flags = (uint64_t)(flags | O_CLOEXEC),
		.mode = (flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE ? mode : 0,
		.resolve = RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
	};
	long fd = syscall(SYS_openat2, AT_FDCWD, path, &how, sizeof(how));

	/* Before Linux 5.6: the last component, at least. */
	if (fd < 0 && errno == ENOSYS)
		fd = open(path, flags | O_NOFOLLOW | O_CLOEXEC, mode);
	return fd < 0 ? -errno : (int)fd;
}

/* The directory part of path into dir (size PATH_MAX); *ret_base points at
 * path's last component. */
static int split_parent(const char *path, char dir[PATH_MAX], const char **ret_base)
{
	const char *slash = strrchr(path, '/');

	if (!slash || !slash[1])
		return -EINVAL;
	if ((size_t)(slash - path) >= PATH_MAX)
		return -ENAMETOOLONG;
	snprintf(dir, PATH_MAX, "%.*s", slash == path ? 1 : (int)(slash - path), path);
	*ret_base = slash + 1;
	return 0;
}

/* The directory holding path, opened (for reading: it can be fsynced)
 * without following a link; *ret_base points at path's last component. */
static int open_parent(const char *path, const char **ret_base)
{
	char dir[PATH_MAX];
	int r = split_parent(path, dir, ret_base);

	return r < 0 ? r : open_nolinks(dir, O_RDONLY | O_DIRECTORY, 0);
}

int mkdir_nolinks(const char *path, mode_t mode)
{
	const char *base;
	_cleanup_close_ int dfd = open_parent(path, &base);

	if (dfd < 0)
		return dfd;
	return RET_NERRNO(mkdirat(dfd, base, mode));
}

int unlink_nolinks(const char *path)
{
	const char *base;
	_cleanup_close_ int dfd = open_parent(path, &base);

	if (dfd < 0)
		return dfd;
	return RET_NERRNO(unlinkat(dfd, base, 0));
}

int rename_nolinks(const char *from, const char *to)
{
	const char *fbase, *tbase;
	_cleanup_close_ int ffd = open_parent(from, &fbase), tfd = open_parent(to, &tbase);

	if (ffd < 0)
		return ffd;
	if (tfd < 0)
		return tfd;
	return RET_NERRNO(renameat(ffd, fbase, tfd, tbase));
}

int open_regular_nolinks(const char *path, struct stat *ret_st)
{
	_cleanup_close_ int fd = open_nolinks(path, O_RDONLY | O_NONBLOCK, 0);
	struct stat st;

	if (fd < 0)
		return fd;
	if (fstat(fd, &st) < 0)
		return -errno;
	if (!S_ISREG(st.st_mode))
		return -EINVAL;
	if (ret_st)
		*ret_st = st;
	return TAKE_FD(fd);
}

int read_file_nolinks(const char *path, size_t max, char **ret, size_t *ret_len)
{
	_cleanup_close_ int fd = open_regular_nolinks(path, NULL);

	if (fd < 0)
		return fd;
	return read_fd(fd, max, ret, ret_len);
}

int fsync_path(const char *path)
{
	_cleanup_close_ int fd = open_nolinks(path, O_RDONLY, 0);

	if (fd < 0)
		return fd;
	return RET_NERRNO(fsync(fd));
}

int fsync_parent(const char *path)
{
	const char *base;
	_cleanup_close_ int dfd = open_parent(path, &base);

	if (dfd < 0)
		return dfd;
	return RET_NERRNO(fsync(dfd));
}

static int replace_file(const char *path, const void *data, size_t len, mode_t mode,
			bool durable)
{
	const char *base;
	_cleanup_close_ int dfd = open_parent(path, &base);
	char tmp[NAME_MAX + 1];
	int fd = -1, r;

	if (dfd < 0)
		return dfd;
	/* A fresh random name, created exclusively (O_EXCL), so that nothing
	 * planted at a predictable name is followed or truncated. */
	for (int tries = 0; fd < 0 && tries < 16; tries++) {
		uint64_t rnd;

		if (getentropy(&rnd, sizeof(rnd)) < 0)
			return -errno;
		if (snprintf(tmp, sizeof(tmp), "%.200s.tmp.%016llx", base,
			     (unsigned long long)rnd) >= (int)sizeof(tmp))
			return -ENAMETOOLONG;
		fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
		if (fd < 0 && errno != EEXIST)
			return -errno;
	}
	if (fd < 0)
		return -EEXIST;
	r = fchmod(fd, mode) < 0 ? -errno : 0;	/* whatever the umask */
	if (r == 0)
		r = write_full(fd, data, len);
	if (r == 0 && durable && fsync(fd) < 0)
		r = -errno;
	if (r == 0 && !durable)
		(void)sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE);
	close(fd);
	if (r == 0 && renameat(dfd, tmp, dfd, base) < 0)
		r = -errno;
	if (r < 0) {
		(void)unlinkat(dfd, tmp, 0);
		return r;
	}
	return durable ? RET_NERRNO(fsync(dfd)) : 0;
}

int write_file_atomic(const char *path, const void *data, size_t len, mode_t mode)
{
	return replace_file(path, data, len, mode, true);
}

int write_file_replace(const char *path, const void *data, size_t len, mode_t mode)
{
	return replace_file(path, data, len, mode, false);
}

/* Empty and remove the directory name of dfd; anything else there (a file,
 * a link) is unlinked. */
static int rm_rf_at(int dfd, const char *name, unsigned depth)
{
	int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	struct dirent *de;
	DIR *d;
	int r = 0;

	if (fd < 0) {
		if (errno == ENOENT)
			return 0;
		if (errno != ENOTDIR && errno != ELOOP)
			return -errno;
		return unlinkat(dfd, name, 0) < 0 && errno != ENOENT ? -errno : 0;
	}
	if (depth > 64) {
		close(fd);
		return -ELOOP;
	}
	d = fdopendir(fd);
	if (!d) {
		close(fd);
		return -errno;
	}
	while ((de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (de->d_type == DT_DIR || de->d_type == DT_UNKNOWN)
			r = rm_rf_at(fd, de->d_name, depth + 1) ?: r;
		else if (unlinkat(fd, de->d_name, 0) < 0 && errno != ENOENT)
			r = -errno;
	}
	closedir(d);
	if (unlinkat(dfd, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
		r = -errno;
	return r;
}

int rm_rf(const char *path)
{
	char dir[PATH_MAX];
	const char *base;
	_cleanup_close_ int dfd = -1;
	int r = split_parent(path, dir, &base);

	if (r < 0)
		return r;
	/* The caller's path to the tree may go through links (a run directory
	 * under /var/run); nothing below it is followed. */
	dfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return errno == ENOENT ? 0 : -errno;
	return rm_rf_at(dfd, base, 0);
}
