/* SPDX-License-Identifier: MIT
 * util.h — small I/O and time helpers shared by forkfs, its core library and
 * forkfs-minivm. Every function returns 0 (or a count) on success, -errno on
 * failure, and never logs.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define USEC_PER_SEC 1000000ULL
#define NSEC_PER_USEC 1000ULL
#define USEC_PER_MSEC 1000ULL

uint64_t now_usec(void);	/* CLOCK_MONOTONIC in µs */
uint64_t now_nsec(void);	/* CLOCK_MONOTONIC in ns */
/* Local wall-clock time as "YYYY-MM-DD HH:MM:SS.mmm" (log lines). */
#define TIMESTAMP_MAX 32
void format_timestamp(char buf[TIMESTAMP_MAX]);

/* Loop over short reads/writes and EINTR. pread_full returns bytes read (short only at EOF). */
ssize_t read_full(int fd, void *buf, size_t len);
int write_full(int fd, const void *buf, size_t len);
ssize_t pread_full(int fd, void *buf, size_t len, off_t off);
int pwrite_full(int fd, const void *buf, size_t len, off_t off);

/* Whether the process of pidfd has exited (false for -1: not known). */
bool pidfd_exited(int pidfd);

/* Read a whole (small) file into a NUL-terminated buffer, failing with -EFBIG past max. */
int read_file(const char *path, size_t max, char **ret, size_t *ret_len);
/* The same for a file of the store: a symlink is not followed (-ELOOP) and
 * anything but a regular file is -EINVAL (never blocks on a FIFO). */
int read_file_nofollow(const char *path, size_t max, char **ret, size_t *ret_len);
/* Open a file of the store for reading the same way: an fd, or -ELOOP for a
 * symlink, -EINVAL for anything but a regular file; ret_st (may be NULL)
 * gets its fstat. */
struct stat;
int open_regular_nofollow(const char *path, struct stat *ret_st);
/* Write a file atomically and durably: a new tmp file (unpredictable name,
 * O_EXCL) in the same directory, fsync, rename, fsync of the directory. A
 * symlink at path is replaced, never followed. */
int write_file_atomic(const char *path, const void *data, size_t len, mode_t mode);
/* The same without the fsyncs (writeback is started): atomic but not yet
 * durable. A crash may leave the old file, the new one, or an empty one;
 * for what is made durable later (fsync_path) before anything relies on it. */
int write_file_replace(const char *path, const void *data, size_t len, mode_t mode);
/* fsync the file at path (a regular file, not followed if a symlink). */
int fsync_path(const char *path);
/* fsync the directory holding path (after a rename or create in it). */
int fsync_parent(const char *path);

/* Remove a directory tree (files and sub-directories, never following a
 * symlink); a missing path is not an error. */
int rm_rf(const char *path);

/* SANDBOX and TAG names: [A-Za-z0-9][A-Za-z0-9._-]{0,63}. */
#define NAME_LEN_MAX 64
bool name_is_valid(const char *name);

/* Parse a decimal/hex unsigned integer fully; -EINVAL on junk, -ERANGE on overflow. */
int parse_u64(const char *s, uint64_t *ret);
