/* SPDX-License-Identifier: MIT
 * seccomp.h — forkfs's own libseccomp allow-list (-o seccomp=).
 */
#pragma once

enum forkfs_seccomp {
	FORKFS_SECCOMP_OFF,	/* no filter */
	FORKFS_SECCOMP_LOG,	/* allow everything, audit-log calls outside the list */
	FORKFS_SECCOMP_KILL,	/* a call outside the list kills the process (default) */
};

/* "off", "log" or "kill" -> the mode, or -EINVAL. */
int forkfs_seccomp_from_string(const char *s);

/* Load the filter for the whole process: every thread that exists
 * (SECCOMP_FILTER_FLAG_TSYNC) and every thread created later. Call it once
 * set-up is done (mounted, the spawner forked). 0 or -errno (logged). */
int forkfs_seccomp_install(enum forkfs_seccomp mode);
