/* SPDX-License-Identifier: MIT
 * figures.h — how a benchmark hands its headline figures to bench-all.sh:
 * one "key value" line appended to the file $BENCH_FIGURES, when that is set
 * (the shell benchmarks do the same with lib.sh's figure()). The benchmark's
 * own table is unchanged; this is only for the one-table summary.
 */
#ifndef FORKFS_TESTS_BENCH_FIGURES_H
#define FORKFS_TESTS_BENCH_FIGURES_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

/* figure("live.%d.pause_p99_us %d", mib, p99): the whole line, formatted. */
__attribute__((format(printf, 1, 2)))
static inline void figure(const char *fmt, ...)
{
	const char *path = getenv("BENCH_FIGURES");
	FILE *f;
	va_list ap;

	if (!path || !*path || !(f = fopen(path, "ae")))
		return;
	va_start(ap, fmt);
	vfprintf(f, fmt, ap);
	va_end(ap);
	fputc('\n', f);
	fclose(f);
}

#endif
