/* SPDX-License-Identifier: MIT
 * wp.h — PUT /uffd/wp of the forkd Firecracker fork, done by forkfs-minivm:
 * hand a write-protect userfaultfd over the guest memory to a listener.
 */
#pragma once

#include <stddef.h>

struct error;
struct vm;

/* Create a userfaultfd (O_CLOEXEC|O_NONBLOCK, features PAGEFAULT_FLAG_WP
 * only), register every guest region in WP mode without arming, connect to
 * socket_path and send the region table (compact JSON) with the fd in one
 * sendmsg, then close both. On failure err holds Firecracker's message
 * ("Setup WP uffd error: Failed to connect to listener UDS: ...") and a
 * negative errno is returned. */
int wp_setup(struct vm *vm, const char *socket_path, struct error *err);

/* The JSON array of region descriptors, as the fork serialises it. */
int wp_format_regions(struct vm *vm, char *buf, size_t len);
