/* SPDX-License-Identifier: MIT
 * log.c — line-buffered, thread-safe logging to stderr with a level filter.
 * One write(2) per line so lines from threads never interleave.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>
#include "common/log.h"

static enum log_level max_level = LOG_LEVEL_INFO;
static const char *ident = NULL;

void log_set_max_level(enum log_level level) { max_level = level; }
enum log_level log_get_max_level(void) { return max_level; }
void log_set_ident(const char *id) { ident = id; }

int log_internalv(enum log_level level, int err, const char *prefix, const char *fmt, va_list ap)
{
	char line[2048];
	size_t n = 0;
	int saved = errno;

	if (err < 0)
		err = -err;
	if (level > max_level)
		goto out;
	if (ident)
		n += (size_t)snprintf(line, sizeof(line), "%s: ", ident);
	if (n < sizeof(line) && prefix && *prefix)
		n += (size_t)snprintf(line + n, sizeof(line) - n, "%s", prefix);
	if (n < sizeof(line))
		n += (size_t)vsnprintf(line + n, sizeof(line) - n, fmt, ap);
	if (err && n < sizeof(line))
		n += (size_t)snprintf(line + n, sizeof(line) - n, ": %s", strerror(err));
	if (n > sizeof(line) - 2)
		n = sizeof(line) - 2;
	line[n++] = '\n';
	if (write(STDERR_FILENO, line, n) < 0) {
		/* Nowhere left to report it. */
	}
out:
	errno = saved;
	return -err;
}

int log_internal(enum log_level level, int err, const char *prefix, const char *fmt, ...)
{
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = log_internalv(level, err, prefix, fmt, ap);
	va_end(ap);
	return r;
}
