/* SPDX-License-Identifier: MIT
 * error.h — the one way forkfs carries a failure's reason to where it is
 * handled.
 *
 * Internal functions return 0 or -errno. Where a human needs to know why
 * (the sandbox's log, a test's diagnostics), the caller passes a struct error
 * and the function that detects the failure fills it once with a one-line
 * reason; callers on the way up may prefix context ("PUT /snapshot/load: ").
 * Nobody below the handler logs: the layer that handles the error logs it,
 * once. Reasons may carry untrusted bytes (a VMM's fault message, a path from
 * config.json): control characters are replaced when the reason is set, so a
 * reason is always one printable line.
 *
 * Every function accepts e == NULL (the caller does not want the reason).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include "common/macro.h"

#define ERROR_MSG_MAX 512

struct error {
	int code;		/* the negative errno of the first failure, 0 if none */
	char msg[ERROR_MSG_MAX];
};

#define ERROR_INIT { 0, "" }

/* Record the reason of failure r (a negative errno) and return r, so that
 * "return error_set(e, -EINVAL, "bad %s", x);" reads naturally. A reason
 * already set is kept (the first failure is the cause; later ones are
 * consequences). */
int error_set(struct error *e, int r, const char *fmt, ...) _printf_(3, 4);
/* Like error_set(), with ": strerror(-r)" appended. */
int error_set_errno(struct error *e, int r, const char *fmt, ...) _printf_(3, 4);
/* Put context in front of the reason already set ("starting: " + reason);
 * sets the reason to the context plus strerror(-r) if none was set. Returns r. */
int error_prefix(struct error *e, int r, const char *fmt, ...) _printf_(3, 4);
/* The reason, or strerror(-code) if none was given, or "" if no failure. */
const char *error_msg(const struct error *e);
static inline bool error_is_set(const struct error *e)
{
	return e && e->code < 0;
}
void error_clear(struct error *e);

/* Replace control characters (and DEL) in s by '?', in place: what
 * error_set() does to every reason. For other strings bound for a log. */
void string_sanitize(char *s);
/* The same for n bytes that may hold NULs (a pipe's output): NUL becomes '?' too. */
void mem_sanitize(char *p, size_t n);
