/* SPDX-License-Identifier: MIT
 * store.c — see store.h.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/macro.h"
#include "common/nolinks.h"
#include "common/util.h"
#include "sandbox/store.h"

char *store_path(const char *a, const char *b)
{
	char *p;

	return asprintf(&p, "%s/%s", a, b) < 0 ? NULL : p;
}

/* A store directory forkfs may trust: a directory (not a symlink) owned by
 * root or by us, that nobody else may write to. */
static int check_dir(const char *path)
{
	struct stat st;

	if (lstat(path, &st) < 0)
		return -errno;
	if (!S_ISDIR(st.st_mode))
		return -ENOTDIR;
	if ((st.st_uid != 0 && st.st_uid != geteuid()) || (st.st_mode & (S_IWGRP | S_IWOTH)))
		return -EPERM;
	return 0;
}

int store_init(const char *store, const char *sandboxes_dir)
{
	int r;

	if (mkdir(store, 0700) < 0 && errno != EEXIST)
		return -errno;
	r = check_dir(store);
	if (r < 0)
		return r;
	if (mkdir(sandboxes_dir, 0700) < 0 && errno != EEXIST)
		return -errno;
	return check_dir(sandboxes_dir);
}

int store_create_sandbox(const char *dir)
{
	_cleanup_free_ char *bdir = store_path(dir, STORE_BRANCHES);
	int r;

	if (!bdir)
		return -ENOMEM;
	r = mkdir_nolinks(dir, 0700);
	if (r < 0)
		return r;
	r = mkdir_nolinks(bdir, 0700);
	if (r < 0)
		store_rm_rf(dir);
	return r;
}

/* A directory entry is a directory: d_type, or fstatat() on filesystems that
 * leave it DT_UNKNOWN (the store may be on any filesystem). */
static bool entry_is_dir(DIR *d, const struct dirent *de)
{
	struct stat st;

	if (de->d_type != DT_UNKNOWN)
		return de->d_type == DT_DIR;
	return fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode);
}

int store_rm_rf(const char *path) { return rm_rf(path); }

int store_for_each_dir(const char *dir, int (*fn)(const char *name, void *ctx), void *ctx,
		       unsigned *ret_skipped)
{
	int fd = open_nolinks(dir, O_RDONLY | O_DIRECTORY, 0);
	struct dirent *de;
	DIR *d = fd < 0 ? NULL : fdopendir(fd);

	if (!d) {
		int r = fd < 0 ? fd : -errno;

		safe_close(fd);
		return r;
	}
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.' || !entry_is_dir(d, de))
			continue;
		if (!name_is_valid(de->d_name)) {
			if (ret_skipped)
				(*ret_skipped)++;
			continue;
		}
		(void)fn(de->d_name, ctx);
	}
	closedir(d);
	return 0;
}

int store_read_config(const char *sb_dir, size_t max, char **ret, size_t *ret_len)
{
	_cleanup_free_ char *path = store_path(sb_dir, STORE_CONFIG);
	int r;

	*ret = NULL;
	*ret_len = 0;
	if (!path)
		return -ENOMEM;
	r = read_file_nolinks(path, max, ret, ret_len);
	return r == -ENOENT ? 0 : r;
}

int store_write_config(const char *sb_dir, const char *text, size_t len)
{
	_cleanup_free_ char *path = store_path(sb_dir, STORE_CONFIG);

	return path ? write_file_atomic(path, text, len, 0600) : -ENOMEM;
}

int store_open_log(const char *sb_dir)
{
	_cleanup_free_ char *path = store_path(sb_dir, STORE_LOG);

	if (!path)
		return -ENOMEM;
	return open_nolinks(path, O_WRONLY | O_APPEND | O_CREAT, 0600);
}
