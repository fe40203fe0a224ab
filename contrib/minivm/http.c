/* SPDX-License-Identifier: MIT
 * http.c — request parser and response writer for the minivm API socket.
 *
 * micro_http, the server Firecracker embeds, is strict in some places and
 * lenient in others, and clients have come to depend on both: only GET, PUT
 * and PATCH parse at all; Content-Type and Accept values it does not know
 * (curl's "Accept: * / *") are ignored rather than refused; a Content-Length
 * of 0 means "no body"; responses carry no reason phrase. Everything here
 * follows docs/firecracker-protocol.md §0. Sizes are bounded: the head by
 * HTTP_MAX_HEAD, the body by HTTP_MAX_BODY.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/macro.h"
#include "common/util.h"
#include "contrib/minivm/http.h"

const char *http_method_to_string(enum http_method m)
{
	switch (m) {
	case HTTP_GET:
		return "GET";
	case HTTP_PUT:
		return "PUT";
	case HTTP_PATCH:
		return "PATCH";
	}
	return "?";
}

static int bad(char *err, size_t errlen, const char *msg)
{
	snprintf(err, errlen, "%s", msg);
	return -EBADMSG;
}

/* "GET /path HTTP/1.1": method, then target, then version; each checked in
 * the order micro_http checks them so that the first error wins. */
static int parse_request_line(const char *line, size_t n, struct http_request *req, char *err,
			      size_t errlen)
{
	const char *sp1 = memchr(line, ' ', n), *sp2, *uri;
	size_t mlen, ulen, vlen;

	if (!sp1)
		return bad(err, errlen, "Invalid request.");
	mlen = (size_t)(sp1 - line);
	if (mlen == 3 && !memcmp(line, "GET", 3))
		req->method = HTTP_GET;
	else if (mlen == 3 && !memcmp(line, "PUT", 3))
		req->method = HTTP_PUT;
	else if (mlen == 5 && !memcmp(line, "PATCH", 5))
		req->method = HTTP_PATCH;
	else
		return bad(err, errlen, "Invalid HTTP Method: Unsupported HTTP method.");

	uri = sp1 + 1;
	sp2 = memchr(uri, ' ', n - (size_t)(uri - line));
	if (!sp2)
		return bad(err, errlen, "Invalid request.");
	ulen = (size_t)(sp2 - uri);
	vlen = n - (size_t)(sp2 + 1 - line);
	if (!(vlen == 8 && (!memcmp(sp2 + 1, "HTTP/1.1", 8) || !memcmp(sp2 + 1, "HTTP/1.0", 8))))
		return bad(err, errlen, "Invalid HTTP Version: Unsupported HTTP version.");

	/* Absolute form ("http://localhost/vm") is reduced to its path. */
	if (ulen > 7 && !strncasecmp(uri, "http://", 7)) {
		const char *slash = memchr(uri + 7, '/', ulen - 7);

		if (!slash)
			return bad(err, errlen, "Invalid URI: Unsupported URI.");
		ulen -= (size_t)(slash - uri);
		uri = slash;
	}
	if (ulen == 0 || uri[0] != '/' || ulen >= sizeof(req->path_buf))
		return bad(err, errlen, "Invalid URI: Unsupported URI.");
	memcpy(req->path_buf, uri, ulen);
	req->path_buf[ulen] = '\0';
	/* The query string plays no part in routing. */
	req->path_buf[strcspn(req->path_buf, "?")] = '\0';
	req->path = req->path_buf;
	return 0;
}

/* One header line. Only Content-Length and Transfer-Encoding matter here;
 * Content-Type, Accept and everything else is ignored whatever its value. */
static int parse_header(const char *line, size_t n, uint64_t *content_length, char *err,
			size_t errlen)
{
	const char *colon = memchr(line, ':', n);
	char value[64];
	size_t klen, vlen;
	const char *v;

	if (!colon)
		return bad(err, errlen, "Invalid header.");
	klen = (size_t)(colon - line);
	v = colon + 1;
	while (v < line + n && (*v == ' ' || *v == '\t'))
		v++;
	vlen = (size_t)(line + n - v);
	while (vlen > 0 && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t'))
		vlen--;

	if (klen == 14 && !strncasecmp(line, "Content-Length", 14)) {
		if (vlen == 0 || vlen >= sizeof(value) || v[0] < '0' || v[0] > '9')
			goto invalid;
		memcpy(value, v, vlen);
		value[vlen] = '\0';
		if (parse_u64(value, content_length) < 0)
			goto invalid;
	} else if (klen == 17 && !strncasecmp(line, "Transfer-Encoding", 17)) {
		if (!(vlen == 8 && !strncasecmp(v, "identity", 8)))
			return bad(err, errlen,
				   "Invalid header. Reason: Unsupported value for Transfer-Encoding");
	}
	return 0;
invalid:
	snprintf(err, errlen, "Invalid header. Reason: Invalid value. Key:%.*s; Value:%.*s",
		 (int)klen, line, (int)MIN(vlen, (size_t)64), v);
	return -EBADMSG;
}

ssize_t http_parse_request(const char *buf, size_t len, struct http_request *req, char *err,
			   size_t errlen)
{
	const char *end = memmem(buf, MIN(len, (size_t)HTTP_MAX_HEAD), "\r\n\r\n", 4);
	const char *p, *eol;
	uint64_t content_length = 0;
	size_t head;
	int r;

	if (!end) {
		if (len >= HTTP_MAX_HEAD)
			return bad(err, errlen, "Invalid request. Request head is too large.");
		/* A request line can already be refused before the head is complete. */
		eol = memmem(buf, len, "\r\n", 2);
		if (eol) {
			r = parse_request_line(buf, (size_t)(eol - buf), req, err, errlen);
			if (r < 0)
				return r;
		}
		return 0;
	}
	head = (size_t)(end - buf) + 4;

	eol = memmem(buf, head, "\r\n", 2);
	r = parse_request_line(buf, (size_t)(eol - buf), req, err, errlen);
	if (r < 0)
		return r;
	for (p = eol + 2; p < end; p = eol + 2) {
		eol = memmem(p, (size_t)(end + 2 - p), "\r\n", 2);
		r = parse_header(p, (size_t)(eol - p), &content_length, err, errlen);
		if (r < 0)
			return r;
	}

	if (content_length > HTTP_MAX_BODY) {
		snprintf(err, errlen,
			 "Request payload with size %llu is larger than the limit of %d allowed by server.",
			 (unsigned long long)content_length, HTTP_MAX_BODY);
		return -EBADMSG;
	}
	if (len - head < content_length)
		return 0;
	req->body = content_length ? buf + head : NULL;
	req->body_len = (size_t)content_length;
	return (ssize_t)(head + content_length);
}

int http_format_response(int status, bool deprecation, const char *body, char **ret,
			 size_t *ret_len)
{
	size_t blen = body ? strlen(body) : 0;
	char *out = NULL;
	int n;

	if (blen)
		n = asprintf(&out,
			     "HTTP/1.1 %d \r\nServer: Firecracker API\r\nConnection: keep-alive\r\n"
			     "%sContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
			     status, deprecation ? "Deprecation: true\r\n" : "", blen, body);
	else
		n = asprintf(&out,
			     "HTTP/1.1 %d \r\nServer: Firecracker API\r\nConnection: keep-alive\r\n"
			     "%s\r\n",
			     status, deprecation ? "Deprecation: true\r\n" : "");
	if (n < 0)
		return -ENOMEM;
	*ret = out;
	*ret_len = (size_t)n;
	return 0;
}

int http_format_parse_error(const char *msg, char **ret, size_t *ret_len)
{
	_cleanup_free_ char *body = NULL;

	if (asprintf(&body, "{ \"error\": \"%s\nAll previous unanswered requests will be dropped.\" }",
		     msg) < 0)
		return -ENOMEM;
	return http_format_response(400, false, body, ret, ret_len);
}
