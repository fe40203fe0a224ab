/* SPDX-License-Identifier: MIT
 * fc-parse.c — unit tests of fc_parse_response() and fc_error_text() on the
 * exact bytes of firecracker-protocol.md §0 (micro_http's framing), plus the
 * edges: partial input, oversized input, garbage, two answers back to back.
 */
#include <errno.h>
#include <string.h>
#include "common/error.h"
#include "common/macro.h"
#include "fc/fc.h"
#include "tests/tap.h"

#define S(lit) lit, sizeof(lit) - 1

static ssize_t parse(const char *buf, size_t len, struct fc_response *r)
{
	*r = (struct fc_response){ .status = -1 };
	return fc_parse_response(buf, len, r);
}

/* Every proper prefix of a complete answer must ask for more bytes. */
static bool prefixes_need_more(const char *buf, size_t len)
{
	struct fc_response r;

	for (size_t i = 0; i < len; i++)
		if (parse(buf, i, &r) != 0)
			return tap_ok(false, "prefix of %zu bytes did not return 0", i);
	return true;
}

static void test_204(void)
{
	static const char a[] = "HTTP/1.1 204 \r\nServer: Firecracker API\r\n"
				"Connection: keep-alive\r\n\r\n";
	struct fc_response r;

	TAP_CHECK(parse(S(a), &r) == (ssize_t)strlen(a));
	TAP_CHECK(r.status == 204 && r.body == NULL && r.body_len == 0 && !r.deprecation);
	TAP_CHECK(prefixes_need_more(S(a)));
	fc_response_clear(&r);
}

static void test_200_body(void)
{
	static const char a[] =
		"HTTP/1.1 200 \r\nServer: Firecracker API\r\nConnection: keep-alive\r\n"
		"Content-Type: application/json\r\nContent-Length: 97\r\n\r\n"
		"{\"id\":\"anonymous-instance\",\"state\":\"Not started\",\"vmm_version\":\"1.12.0\","
		"\"app_name\":\"Firecracker\"}";
	struct fc_response r;

	TAP_CHECK(parse(S(a), &r) == (ssize_t)strlen(a));
	TAP_CHECK(r.status == 200 && r.body_len == 97 && r.body && r.body[97] == '\0');
	TAP_CHECK(r.body && strncmp(r.body, "{\"id\":\"anonymous-instance\"", 26) == 0);
	TAP_CHECK(prefixes_need_more(S(a)));
	fc_response_clear(&r);
	TAP_CHECK(r.body == NULL && r.status == 0);
}

static void test_400_fault(void)
{
	static const char a[] =
		"HTTP/1.1 400 \r\nServer: Firecracker API\r\nConnection: keep-alive\r\n"
		"Content-Type: application/json\r\nContent-Length: 65\r\n\r\n"
		"{\"fault_message\":\"Invalid request method and/or path: PUT uffd.\"}";
	struct fc_response r;
	char *t;

	TAP_CHECK(parse(S(a), &r) == (ssize_t)strlen(a));
	TAP_CHECK(r.status == 400 && r.body_len == 65);
	TAP_CHECK(prefixes_need_more(S(a)));
	t = fc_error_text(r.body, r.body_len);
	TAP_CHECK(t && strcmp(t, "Invalid request method and/or path: PUT uffd.") == 0);
	free(t);
	fc_response_clear(&r);
}

static void test_error_texts(void)
{
	static const char mh[] = "{ \"error\": \"Invalid HTTP Method: Unsupported HTTP method.\n"
				 "All previous unanswered requests will be dropped.\" }";
	static const char esc[] = "{\"fault_message\":\"a \\\"quoted\\\" \\\\ path\\/x\"}";
	static const char broken[] = "{\"fault_message\":\"raw\nnewline\", \"x\": }";
	static const char forged[] =
		"{\"fault_message\":\"bad\\nuffd: branch ok\\r\\n\\u001b[31mred\\u007f\"}";
	static const char forged_raw[] = "{\"fault_message\":\"a\rb\\nc\x01\x7f\", \"x\": }";
	static const char forged_mh[] = "{ \"error\": \"x\\ty\\rz\n2nd line\" }";
	char *t;

	t = fc_error_text(S(mh));
	TAP_CHECK(t && strcmp(t, "Invalid HTTP Method: Unsupported HTTP method.") == 0);
	free(t);
	t = fc_error_text(S(esc));
	TAP_CHECK(t && strcmp(t, "a \"quoted\" \\ path/x") == 0);
	free(t);
	t = fc_error_text(S(broken)); /* not JSON: the scanner still finds it */
	TAP_CHECK(t && strcmp(t, "raw?newline") == 0);
	free(t);
	/* The VMM's text goes to logs: no line of its own making, no terminal escape. */
	t = fc_error_text(S(forged));
	tap_ok(t && strcmp(t, "bad?uffd: branch ok???[31mred?") == 0,
	       "control characters of a fault_message become '?'");
	free(t);
	t = fc_error_text(S(forged_raw)); /* not JSON: the scanner's own unescaping */
	tap_ok(t && strcmp(t, "a?b?c??") == 0, "also when scanned");
	free(t);
	t = fc_error_text(S(forged_mh)); /* micro_http form: the first line, then replaced */
	TAP_CHECK(t && strcmp(t, "x?y?z") == 0);
	free(t);
	TAP_CHECK(fc_error_text(S("{\"something\":\"else\"}")) == NULL);
	TAP_CHECK(fc_error_text(S("{\"fault_message\":\"unterminated")) == NULL);
	TAP_CHECK(fc_error_text(S("<html>")) == NULL);
	TAP_CHECK(fc_error_text(NULL, 0) == NULL);
	TAP_CHECK(fc_error_text(S("{\"fault_message\":42}")) == NULL);
}

static void test_reason_and_headers(void)
{
	static const char a[] = "HTTP/1.1 204 No Content\r\nconnection: keep-alive\r\n"
				"DEPRECATION:   true  \r\n\r\n";
	static const char b[] = "HTTP/1.0 200 OK\r\ncontent-length:  3 \r\n\r\nabc";
	static const char c[] = "HTTP/1.1 204\r\n\r\n";
	struct fc_response r;

	TAP_CHECK(parse(S(a), &r) == (ssize_t)strlen(a) && r.status == 204 && r.deprecation);
	fc_response_clear(&r);
	TAP_CHECK(parse(S(b), &r) == (ssize_t)strlen(b) && r.body_len == 3 &&
		  strcmp(r.body, "abc") == 0);
	fc_response_clear(&r);
	TAP_CHECK(parse(S(c), &r) == (ssize_t)strlen(c) && r.status == 204);
	/* A 200 without Content-Length has no body: never wait for EOF. */
	TAP_CHECK(parse(S("HTTP/1.1 200 \r\n\r\nleftover"), &r) == 17 && r.body == NULL);
	TAP_CHECK(parse(S("HTTP/1.1 204 \r\nDeprecation: false\r\n\r\n"), &r) > 0 &&
		  !r.deprecation);
}

static void test_partial(void)
{
	struct fc_response r;

	TAP_CHECK(parse("", 0, &r) == 0 && r.status == -1);
	TAP_CHECK(parse(S("HTTP/1.1 2"), &r) == 0);
	TAP_CHECK(parse(S("HTTP/1.1 200 \r\nContent-Length: 10\r\n\r\n12345"), &r) == 0);
	TAP_CHECK(r.status == -1); /* untouched until complete */
}

static void test_oversized(void)
{
	size_t n = FC_MAX_HEADER_BYTES + 64;
	_cleanup_free_ char *big = malloc(n);
	struct fc_response r;
	char hdr[128];

	memcpy(big, "HTTP/1.1 200 \r\nX-Pad: ", 22);
	memset(big + 22, 'a', n - 22);
	TAP_CHECK(parse(big, FC_MAX_HEADER_BYTES - 1, &r) == 0);
	TAP_CHECK(parse(big, FC_MAX_HEADER_BYTES, &r) == -EFBIG);
	TAP_CHECK(parse(big, n, &r) == -EFBIG);
	snprintf(hdr, sizeof(hdr), "HTTP/1.1 200 \r\nContent-Length: %d\r\n\r\n",
		 FC_MAX_BODY_BYTES + 1);
	TAP_CHECK(parse(hdr, strlen(hdr), &r) == -EFBIG);
	snprintf(hdr, sizeof(hdr), "HTTP/1.1 200 \r\nContent-Length: %d\r\n\r\n", FC_MAX_BODY_BYTES);
	TAP_CHECK(parse(hdr, strlen(hdr), &r) == 0); /* at the limit: wait for the body */
	TAP_CHECK(parse(S("HTTP/1.1 200 \r\nContent-Length: 99999999999999999999999\r\n\r\n"),
			&r) == -EFBIG);
}

static void test_garbage(void)
{
	static const char *const bad[] = {
		"GET / HTTP/1.1\r\n\r\n",
		"HTTP/2 200\r\n\r\n",
		"HTTP/1.2 200 \r\n\r\n",
		"HTTP/1.1 20 \r\n\r\n",
		"HTTP/1.1 2000 \r\n\r\n",
		"HTTP/1.1 100 Continue\r\n\r\n",
		"HTTP/1.1 abc \r\n\r\n",
		"HTTP/1.1 200 \r\nno colon here\r\n\r\n",
		"HTTP/1.1 200 \r\n: empty name\r\n\r\n",
		"HTTP/1.1 200 \r\nBad Name: x\r\n\r\n",
		"HTTP/1.1 200 \r\nX: a\r\n folded\r\n\r\n",
		"HTTP/1.1 200 \r\nX: a\nY: b\r\n\r\n",
		"HTTP/1.1 200 \r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
		"HTTP/1.1 200 \r\nContent-Length: -1\r\n\r\n",
		"HTTP/1.1 200 \r\nContent-Length: 1x\r\n\r\n",
		"HTTP/1.1 200 \r\nContent-Length:\r\n\r\n",
		"HTTP/1.1 200 \r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
		"<html>",
		"\r\n\r\n",
	};
	struct fc_response r;

	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		ssize_t x = parse(bad[i], strlen(bad[i]), &r);
		if (!tap_ok(x == -EBADMSG, "garbage #%zu -> -EBADMSG (got %zd)", i, x))
			fc_response_clear(&r);
	}
	/* NUL bytes, even before the header block is complete. */
	TAP_CHECK(parse("HTTP/1.1 200 \r\nX: a\0b", 22, &r) == -EBADMSG);
	/* Duplicate but equal Content-Length is harmless. */
	TAP_CHECK(parse(S("HTTP/1.1 200 \r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\na"),
			&r) > 0);
	fc_response_clear(&r);
}

static void test_back_to_back(void)
{
	static const char two[] = "HTTP/1.1 204 \r\nServer: Firecracker API\r\n"
				  "Connection: keep-alive\r\n\r\n"
				  "HTTP/1.1 200 \r\nContent-Length: 2\r\n\r\n{}";
	size_t first = strlen("HTTP/1.1 204 \r\nServer: Firecracker API\r\n"
			      "Connection: keep-alive\r\n\r\n");
	struct fc_response r;
	ssize_t n;

	n = parse(S(two), &r);
	TAP_CHECK(n == (ssize_t)first && r.status == 204 && r.body == NULL);
	n = parse(two + first, sizeof(two) - 1 - first, &r);
	TAP_CHECK(n == (ssize_t)(sizeof(two) - 1 - first) && r.status == 200 && r.body_len == 2);
	fc_response_clear(&r);
}

/* fc_error(): the client's text when it has one, else strerror. No VMM
 * needed: nobody listens on the socket. */
static void test_fc_error(void)
{
	struct fc_client *c = NULL;
	struct error e = ERROR_INIT;
	int r;

	TAP_CHECK(fc_client_new("/nonexistent-forkfs-dir/api.sock", &c) == 0);
	r = c ? fc_pause(c) : -ENOMEM;
	TAP_CHECK(r == -ENOENT);
	TAP_CHECK(fc_error(c, r, &e, "pausing the VM") == r && e.code == -ENOENT);
	tap_ok(strcmp(error_msg(&e), "pausing the VM: connect /nonexistent-forkfs-dir/api.sock: "
		      "No such file or directory") == 0, "fc_error: the client's text (%s)",
	       error_msg(&e));
	TAP_CHECK(fc_error(c, -EIO, &e, "later") == -EIO && e.code == -ENOENT);
	error_clear(&e);
	TAP_CHECK(fc_error(NULL, -ETIMEDOUT, &e, "GET /") == -ETIMEDOUT &&
		  strcmp(error_msg(&e), "GET /: Connection timed out") == 0);
	TAP_CHECK(fc_error(c, -EPIPE, NULL, "nobody listens") == -EPIPE);
	fc_client_free(c);
}

int main(void)
{
	test_fc_error();
	test_204();
	test_200_body();
	test_400_fault();
	test_error_texts();
	test_reason_and_headers();
	test_partial();
	test_oversized();
	test_garbage();
	test_back_to_back();
	return tap_done();
}
