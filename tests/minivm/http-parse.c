/* SPDX-License-Identifier: MIT
 * http-parse.c — unit test of minivm's request parser, response writer and
 * serde-style body errors (no socket, no KVM).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "contrib/minivm/body.h"
#include "contrib/minivm/http.h"
#include "tests/tap.h"

static ssize_t parse(const char *s, struct http_request *req, char *err)
{
	return http_parse_request(s, strlen(s), req, err, 256);
}

static void test_parser(void)
{
	struct http_request req;
	char err[256];
	const char *two = "PUT /vm HTTP/1.1\r\nContent-Length: 2\r\nAccept: */*\r\n\r\n{}"
			  "GET / HTTP/1.1\r\n\r\n";
	ssize_t n;

	n = parse(two, &req, err);
	TAP_CHECK(n > 0 && req.method == HTTP_PUT && !strcmp(req.path, "/vm") && req.body_len == 2);
	n = parse(two + n, &req, err);
	TAP_CHECK(n == 18 && req.method == HTTP_GET && req.body == NULL);
	TAP_CHECK(parse("GET / HTTP/1.1\r\nHost: x\r\n", &req, err) == 0);
	TAP_CHECK(parse("PUT /a HTTP/1.1\r\nContent-Length: 5\r\n\r\n{}", &req, err) == 0);
	TAP_CHECK(parse("PUT /a HTTP/1.1\r\nContent-Length: 0\r\n\r\n", &req, err) > 0 &&
		  req.body == NULL);
	TAP_CHECK(parse("POST / HTTP/1.1\r\n", &req, err) == -EBADMSG &&
		  !strcmp(err, "Invalid HTTP Method: Unsupported HTTP method."));
	TAP_CHECK(parse("GET / HTTP/2.0\r\n\r\n", &req, err) == -EBADMSG);
	TAP_CHECK(parse("PUT / HTTP/1.1\r\nContent-Length: 999999\r\n\r\n", &req, err) ==
		  -EBADMSG && strstr(err, "larger than the limit of 51200"));
	TAP_CHECK(parse("GET http://localhost/version HTTP/1.1\r\n\r\n", &req, err) > 0 &&
		  !strcmp(req.path, "/version"));
}

static void test_responses(void)
{
	char *out;
	size_t len;

	TAP_CHECK(http_format_response(204, false, NULL, &out, &len) == 0);
	tap_ok(!strcmp(out, "HTTP/1.1 204 \r\nServer: Firecracker API\r\nConnection: keep-alive\r\n\r\n"),
	       "204 has no reason phrase and no Content-Length");
	free(out);
	TAP_CHECK(http_format_response(400, true, "{}", &out, &len) == 0);
	tap_ok(!strcmp(out, "HTTP/1.1 400 \r\nServer: Firecracker API\r\nConnection: keep-alive\r\n"
			    "Deprecation: true\r\nContent-Type: application/json\r\n"
			    "Content-Length: 2\r\n\r\n{}"),
	       "header order with Deprecation");
	free(out);
}

static const char *const types[] = { "Diff", "Full", "VmstateOnly", NULL };
static const struct body_field sub[] = { { "backend_path", BT_PATH, true } };
static const struct body_field fields[] = {
	{ "snapshot_type", BT_ENUM, false, false, "SnapshotType", types },
	{ "n", BT_U8, true },
	{ "mem_backend", BT_STRUCT, false, true, "MemBackendConfig", NULL, sub, 1 },
};

static const char *check(const char *body)
{
	static char err[512];
	struct json_object *o = NULL;

	err[0] = '\0';
	if (body_parse(body, strlen(body), &o, err, sizeof(err)) == 0)
		body_check(body, strlen(body), o, fields, 3, err, sizeof(err));
	json_object_put(o);
	return err;
}

static void test_bodies(void)
{
	const char *pre = "An error occurred when deserializing the json body of a request: ";
	struct {
		const char *body, *msg;
	} cases[] = {
		{ "{\"n\":1}", "" },
		{ "{\"x\":1}", "unknown field `x`, expected one of `snapshot_type`, `n`, "
			       "`mem_backend` at line 1 column 4." },
		{ "{\"n\":\"1\"}", "invalid type: string \"1\", expected u8 at line 1 column 8." },
		{ "{\"n\":256}", "invalid value: integer `256`, expected u8 at line 1 column 8." },
		{ "{\"n\":1,\"snapshot_type\":\"Nope\"}",
		  "unknown variant `Nope`, expected one of `Diff`, `Full`, `VmstateOnly` at line 1 "
		  "column 29." },
		{ "{\n  \"n\": 1,\n  \"mem_backend\": {\n  }\n}",
		  "missing field `backend_path` at line 4 column 3." },
		{ "{\n  \"snapshot_type\": \"Full\"\n}", "missing field `n` at line 3 column 1." },
		{ "{\"n\":1} x", "trailing characters at line 1 column 9." },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *got = check(cases[i].body);
		bool ok = !*cases[i].msg ? !*got :
			  !strncmp(got, pre, strlen(pre)) && !strcmp(got + strlen(pre), cases[i].msg);

		if (!tap_ok(ok, "body %zu: %s", i, cases[i].msg))
			tap_diag("got: %s", got);
	}
}

int main(void)
{
	test_parser();
	test_responses();
	test_bodies();
	return tap_done();
}
