/* SPDX-License-Identifier: MIT
 * uffd.h — thin userfaultfd(2) wrappers used by the copy engine and by the
 * tests that play the VMM: create a uffd, negotiate the API, register a range,
 * write-protect or release a range, read fault messages. Each returns 0 (or a
 * count) or -errno and never logs, like the kernel selftests' uffd-common.c.
 */
#pragma once

#include <linux/userfaultfd.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A new uffd (O_CLOEXEC|O_NONBLOCK, kernel faults included): /dev/userfaultfd
 * with USERFAULTFD_IOC_NEW, else userfaultfd(2). */
int uffd_open(int *ret_fd);
/* UFFDIO_API asking for features; *ret_features (may be NULL) gets what the kernel offers. */
int uffd_api(int uffd, uint64_t features, uint64_t *ret_features);
/* UFFDIO_REGISTER with mode (UFFDIO_REGISTER_MODE_WP / _MISSING). */
int uffd_register(int uffd, uint64_t start, uint64_t len, uint64_t mode);
/* UFFDIO_WRITEPROTECT: protect (mode WP) or release (mode 0, which also wakes
 * threads waiting on the range unless dontwake). Retries EAGAIN. */
int uffd_wp_range(int uffd, uint64_t start, uint64_t len, bool protect, bool dontwake);
int uffd_wake(int uffd, uint64_t start, uint64_t len);
/* Read up to max messages without blocking: count read, 0 when none is pending. */
int uffd_read_msgs(int uffd, struct uffd_msg *msgs, size_t max);
