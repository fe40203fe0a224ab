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
int read_fd(int fd, size_t max, char **ret, size_t *ret_len);
int read_file(const char *path, size_t max, char **ret, size_t *ret_len);
/* Files of the store (no symlink followed) are in nolinks.h. */

/* SANDBOX and TAG names: [A-Za-z0-9][A-Za-z0-9._-]{0,63}. */
#define NAME_LEN_MAX 64
bool name_is_valid(const char *name);

/* Parse a decimal/hex unsigned integer fully; -EINVAL on junk, -ERANGE on overflow. */
int parse_u64(const char *s, uint64_t *ret);

/* Thread priorities (Linux keeps a nice value per thread, and a new thread
 * takes its creator's). forkfs raises its loop thread, before it starts any
 * other, so that the pool workers and fault threads the loop starts answer
 * requests and faults ahead of guests and readers; bulk work (the background
 * copy, compaction) goes back to the process's own nice. */
/* This thread's nice to the process's minus by; -errno (-EACCES without
 * CAP_SYS_NICE) leaves it as it was. */
int thread_nice_raise(int by);
/* This thread back to the nice the process had before any raise, minus
 * raise (at most the service threads' raise; nothing when there was none). */
void thread_nice_bulk(int raise);
