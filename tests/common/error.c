/* SPDX-License-Identifier: MIT
 * error.t — struct error (common/error.h): the first reason wins, context is
 * prefixed, the code comes back, and every reason is one printable line.
 */
#include <errno.h>
#include <string.h>

#include "common/error.h"
#include "tests/tap.h"

static bool printable(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return false;
	return true;
}

int main(void)
{
	struct error e = ERROR_INIT;
	char raw[] = "abc\0\x1b[2Jdef\x07";
	char big[2 * ERROR_MSG_MAX];

	TAP_CHECK(!error_is_set(&e) && !strcmp(error_msg(&e), ""));
	TAP_CHECK(error_set(&e, -EINVAL, "bad %s", "thing") == -EINVAL);
	TAP_CHECK(error_is_set(&e) && e.code == -EINVAL && !strcmp(error_msg(&e), "bad thing"));
	/* A later failure is a consequence: the first reason stays. */
	TAP_CHECK(error_set(&e, -EIO, "later") == -EIO && !strcmp(e.msg, "bad thing") &&
		  e.code == -EINVAL);
	TAP_CHECK(error_prefix(&e, -EINVAL, "PUT /x") == -EINVAL &&
		  !strcmp(error_msg(&e), "PUT /x: bad thing"));
	error_clear(&e);
	TAP_CHECK(!error_is_set(&e));
	TAP_CHECK(error_set_errno(&e, -ENOENT, "open %s", "/a") == -ENOENT &&
		  !strcmp(e.msg, "open /a: No such file or directory"));
	error_clear(&e);
	/* A prefix with no reason yet says what failed and the errno. */
	TAP_CHECK(error_prefix(&e, -ETIMEDOUT, "GET /") == -ETIMEDOUT &&
		  !strcmp(e.msg, "GET /: Connection timed out"));
	error_clear(&e);
	/* A code set without a message still reads as its errno. */
	TAP_CHECK(error_set(&e, -EPERM, "%s", "") == -EPERM &&
		  !strcmp(error_msg(&e), strerror(EPERM)));
	/* NULL is accepted everywhere. */
	TAP_CHECK(error_set(NULL, -EBUSY, "x") == -EBUSY && error_prefix(NULL, -EBUSY, "y") == -EBUSY);
	TAP_CHECK(!error_is_set(NULL) && !strcmp(error_msg(NULL), ""));
	/* Untrusted bytes: one printable line, and long reasons are cut. */
	error_clear(&e);
	error_set(&e, -EINVAL, "key \"%s\"", "a\nb\x1b[0m\x7f");
	TAP_CHECK(!strcmp(e.msg, "key \"a?b?[0m?\"") && printable(e.msg, strlen(e.msg)));
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = 0;
	error_clear(&e);
	error_set(&e, -EINVAL, "%s", big);
	TAP_CHECK(strlen(e.msg) == ERROR_MSG_MAX - 1);
	error_prefix(&e, -EINVAL, "%s", big);
	TAP_CHECK(strlen(e.msg) == ERROR_MSG_MAX - 1 && printable(e.msg, strlen(e.msg)));
	/* mem_sanitize() goes past NULs (a VMM's raw output). */
	mem_sanitize(raw, sizeof(raw) - 1);
	TAP_CHECK(!memcmp(raw, "abc??[2Jdef?", sizeof(raw) - 1));
	return tap_done();
}
