/* SPDX-License-Identifier: MIT
 * error.c — see error.h.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include "common/error.h"

void mem_sanitize(char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)p[i] < 0x20 || p[i] == 0x7f)
			p[i] = '?';
}

void string_sanitize(char *s)
{
	if (s)
		mem_sanitize(s, strlen(s));
}

static void setv(struct error *e, int r, bool with_errno, const char *fmt, va_list ap)
{
	size_t n;

	e->code = r < 0 ? r : -EIO;
	vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
	n = strlen(e->msg);
	if (with_errno && n < sizeof(e->msg))
		snprintf(e->msg + n, sizeof(e->msg) - n, ": %s", strerror(-e->code));
	string_sanitize(e->msg);
}

int error_set(struct error *e, int r, const char *fmt, ...)
{
	va_list ap;

	if (!e || e->code < 0)
		return r;
	va_start(ap, fmt);
	setv(e, r, false, fmt, ap);
	va_end(ap);
	return r;
}

int error_set_errno(struct error *e, int r, const char *fmt, ...)
{
	va_list ap;

	if (!e || e->code < 0)
		return r;
	va_start(ap, fmt);
	setv(e, r, true, fmt, ap);
	va_end(ap);
	return r;
}

int error_prefix(struct error *e, int r, const char *fmt, ...)
{
	char prefix[ERROR_MSG_MAX], old[ERROR_MSG_MAX];
	va_list ap;

	if (!e)
		return r;
	va_start(ap, fmt);
	vsnprintf(prefix, sizeof(prefix), fmt, ap);
	va_end(ap);
	if (e->code < 0 && e->msg[0])
		snprintf(old, sizeof(old), "%s", e->msg);
	else
		snprintf(old, sizeof(old), "%s", strerror(r < 0 ? -r : EIO));
	if (e->code >= 0)
		e->code = r < 0 ? r : -EIO;
	snprintf(e->msg, sizeof(e->msg), "%s: %s", prefix, old);
	string_sanitize(e->msg);
	return r;
}

const char *error_msg(const struct error *e)
{
	if (!e || e->code >= 0)
		return "";
	return e->msg[0] ? e->msg : strerror(-e->code);
}

void error_clear(struct error *e)
{
	if (e) {
		e->code = 0;
		e->msg[0] = 0;
	}
}
