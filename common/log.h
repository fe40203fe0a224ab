/* SPDX-License-Identifier: MIT
 * log.h — the one logging facility of forkfs and forkfs-minivm.
 *
 * Each .c file may define LOG_PREFIX ("uffd: ") before including this header.
 * Functions that handle an error log it once and return the negative errno
 * they were given, so "return log_error_errno(r, ...)" reads naturally.
 * Messages go to stderr, one write(2) per line. Nothing else: a sandbox's
 * "log" file is written by forkfs itself (sb_log()), from the reasons that
 * failing functions hand up in a struct error (common/error.h).
 */
#pragma once

#include <stdarg.h>
#include "common/macro.h"

#ifndef LOG_PREFIX
#define LOG_PREFIX ""
#endif

enum log_level { LOG_LEVEL_ERR = 3, LOG_LEVEL_WARN = 4, LOG_LEVEL_INFO = 6, LOG_LEVEL_DEBUG = 7 };

void log_set_max_level(enum log_level level);
enum log_level log_get_max_level(void);
/* Program name printed at the start of each line, e.g. "forkfs". */
void log_set_ident(const char *ident);

/* Log one line. err is a (positive or negative) errno appended as ": strerror"
 * when non-zero. Returns -abs(err) (or 0 when err is 0). Thread safe. */
int log_internal(enum log_level level, int err, const char *prefix, const char *fmt, ...)
	_printf_(4, 5);
int log_internalv(enum log_level level, int err, const char *prefix, const char *fmt,
		  va_list ap);

#define log_error(...) log_internal(LOG_LEVEL_ERR, 0, LOG_PREFIX, __VA_ARGS__)
#define log_warning(...) log_internal(LOG_LEVEL_WARN, 0, LOG_PREFIX, __VA_ARGS__)
#define log_info(...) log_internal(LOG_LEVEL_INFO, 0, LOG_PREFIX, __VA_ARGS__)
#define log_debug(...)                                                          \
	do {                                                                    \
		if (log_get_max_level() >= LOG_LEVEL_DEBUG)                     \
			log_internal(LOG_LEVEL_DEBUG, 0, LOG_PREFIX, __VA_ARGS__); \
	} while (0)
#define log_error_errno(err, ...) log_internal(LOG_LEVEL_ERR, (err), LOG_PREFIX, __VA_ARGS__)
#define log_warning_errno(err, ...) log_internal(LOG_LEVEL_WARN, (err), LOG_PREFIX, __VA_ARGS__)
