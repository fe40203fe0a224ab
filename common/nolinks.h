/* SPDX-License-Identifier: MIT
 * nolinks.h — files of the store, reached by path without following a
 * symbolic link anywhere in the path (openat2 RESOLVE_NO_SYMLINKS; a
 * directory walk opens each level with O_NOFOLLOW relative to the one
 * above). The store's own path is canonical (forkfs resolves it once at
 * mount), so a link met on the way was planted: -ELOOP, never followed.
 * Every function returns 0 (or an fd) or -errno and never logs.
 */
#pragma once

#include <stddef.h>
#include <sys/types.h>

struct stat;

/* open(2) of path, no link followed (O_CLOEXEC added). */
int open_nolinks(const char *path, int flags, mode_t mode);
/* mkdir, rename and unlink with the parent directories resolved the same
 * way (the last component is never followed by these calls anyway). */
int mkdir_nolinks(const char *path, mode_t mode);
int rename_nolinks(const char *from, const char *to);
int unlink_nolinks(const char *path);
/* A regular file for reading: an fd, -ELOOP for a link, -EINVAL for
 * anything but a regular file (O_NONBLOCK: never blocks on a FIFO); ret_st
 * (may be NULL) gets its fstat. */
int open_regular_nolinks(const char *path, struct stat *ret_st);
/* Read a whole (small) regular file so, NUL-terminated; -EFBIG past max. */
int read_file_nolinks(const char *path, size_t max, char **ret, size_t *ret_len);
/* Write a file atomically and durably: a new tmp file (unpredictable name,
 * O_EXCL) in the same directory, fsync, rename, fsync of the directory. A
 * symlink at path is replaced, never followed. */
int write_file_atomic(const char *path, const void *data, size_t len, mode_t mode);
/* The same without the fsyncs (writeback is started): atomic but not yet
 * durable. A crash may leave the old file, the new one, or an empty one;
 * for what is made durable later (fsync_path) before anything relies on it. */
int write_file_replace(const char *path, const void *data, size_t len, mode_t mode);
/* fsync the file (or directory) at path. */
int fsync_path(const char *path);
/* fsync the directory holding path (after a rename or create in it). */
int fsync_parent(const char *path);
/* Remove a directory tree: each level is opened with O_NOFOLLOW relative to
 * its parent's fd and emptied with unlinkat, so a link anywhere below path
 * is removed, never followed (path's own parents are the caller's). A
 * missing path is not an error. */
int rm_rf(const char *path);
