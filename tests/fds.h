/* SPDX-License-Identifier: MIT
 * fds.h — for tests that check that nothing leaks a file descriptor.
 */
#pragma once

#include <dirent.h>

/* Entries of /proc/self/fd (including the directory's own fd while it is
 * read, and . and ..): compare two counts, not an absolute number. -1 if it
 * cannot be read. */
static inline int count_open_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;

	if (!d)
		return -1;
	while (readdir(d))
		n++;
	closedir(d);
	return n;
}
