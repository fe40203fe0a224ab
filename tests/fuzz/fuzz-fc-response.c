/* SPDX-License-Identifier: MIT
 * fuzz-fc-response.c — fuzz target for the Firecracker client's parsers of
 * untrusted bytes: fc_parse_response() on the input as an HTTP answer, and
 * fc_error_text() on the input and on any body parsed from it.
 *
 * Invariants checked (abort() on violation): a positive result never exceeds
 * the input; a parsed answer has a status in 200..599, a NUL-terminated body of
 * body_len bytes that lies inside the consumed bytes, or none; parsing exactly
 * the consumed bytes gives the same result, and one byte less asks for more
 * (or fails, never succeeds); error texts are NUL-terminated strings.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "fc/fc.h"
#include "tests/fuzz/fuzz.h"

const struct fuzz_seed fuzz_seeds[] = {
	FUZZ_SEED("HTTP/1.1 204 \r\nServer: Firecracker API\r\nConnection: keep-alive\r\n\r\n"),
	FUZZ_SEED("HTTP/1.1 200 \r\nServer: Firecracker API\r\nConnection: keep-alive\r\n"
		  "Content-Type: application/json\r\nContent-Length: 97\r\n\r\n"
		  "{\"id\":\"anonymous-instance\",\"state\":\"Not started\",\"vmm_version\":\"1.12.0\","
		  "\"app_name\":\"Firecracker\"}"),
	FUZZ_SEED("HTTP/1.1 400 \r\nServer: Firecracker API\r\nConnection: keep-alive\r\n"
		  "Content-Type: application/json\r\nContent-Length: 65\r\n\r\n"
		  "{\"fault_message\":\"Invalid request method and/or path: PUT uffd.\"}"),
	FUZZ_SEED("HTTP/1.1 400 \r\nServer: Firecracker API\r\nConnection: keep-alive\r\n"
		  "Content-Type: application/json\r\nContent-Length: 110\r\n\r\n"
		  "{ \"error\": \"Invalid HTTP Method: Unsupported HTTP method.\n"
		  "All previous unanswered requests will be dropped.\" }"),
	FUZZ_SEED("HTTP/1.1 204 \r\nServer: Firecracker API\r\nConnection: keep-alive\r\n"
		  "Deprecation: true\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"),
	FUZZ_SEED("HTTP/1.0 200 OK\r\ncontent-length: 3\r\nX-A: b\r\n\r\nabc"),
	FUZZ_SEED("{\"fault_message\":\"a \\\"quoted\\\" \\u00e9 text\"}"),
};
const size_t fuzz_n_seeds = sizeof(fuzz_seeds) / sizeof(fuzz_seeds[0]);

static void check_text(const char *data, size_t size)
{
	char *t = fc_error_text(data, size);

	if (t && strlen(t) > size)
		abort();
	free(t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *buf = (const char *)data;
	struct fc_response r = { 0 }, r2 = { 0 };
	ssize_t n, n2;

	check_text(buf, size);
	n = fc_parse_response(buf, size, &r);
	if (n < 0) {
		if (n != -EBADMSG && n != -EFBIG && n != -ENOMEM)
			abort();
		return 0;
	}
	if (n == 0)
		return 0;
	if ((size_t)n > size || r.status < 200 || r.status > 599)
		abort();
	if (r.body) {
		if (r.body_len == 0 || r.body_len >= (size_t)n || r.body[r.body_len] != '\0' ||
		    memcmp(r.body, buf + n - r.body_len, r.body_len) != 0)
			abort();
		check_text(r.body, r.body_len);
	} else if (r.body_len != 0) {
		abort();
	}
	n2 = fc_parse_response(buf, (size_t)n, &r2);
	if (n2 != n || r2.status != r.status || r2.body_len != r.body_len)
		abort();
	fc_response_clear(&r2);
	if (fc_parse_response(buf, (size_t)n - 1, &r2) > 0)
		abort();
	fc_response_clear(&r);
	return 0;
}
