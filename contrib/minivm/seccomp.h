/* SPDX-License-Identifier: MIT
 * seccomp.h — forkfs-minivm's libseccomp allow-list.
 */
#pragma once

/* Install the filter for the whole process (the calling thread and every
 * thread it creates later; SECCOMP_FILTER_FLAG_TSYNC covers any that exist).
 * A syscall outside the list kills the process. Returns 0 or -errno. */
int minivm_seccomp_install(void);
