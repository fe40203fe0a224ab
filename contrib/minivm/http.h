/* SPDX-License-Identifier: MIT
 * http.h — the HTTP/1.1 framing of forkfs-minivm's API socket, byte for byte
 * as Firecracker's micro_http does it (docs/firecracker-protocol.md §0):
 * request parsing with bounded head and body, and response formatting
 * (status line without reason phrase, fixed header order, 204 without
 * Content-Length). No sockets here: the caller owns the connection buffers.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define HTTP_MAX_HEAD 8192	/* request line + headers */
#define HTTP_MAX_BODY 51200	/* Firecracker's default --http-api-max-payload-size */

enum http_method { HTTP_GET, HTTP_PUT, HTTP_PATCH };

struct http_request {
	enum http_method method;
	const char *path;	/* NUL-terminated copy owned by the request */
	const char *body;	/* NULL when the request had no body; points into the buffer */
	size_t body_len;
	char path_buf[1024];
};

const char *http_method_to_string(enum http_method m);

/* Parse one request at the start of buf. Returns the number of bytes it used
 * (> 0) and fills req, 0 when more bytes are needed, or -EBADMSG with a
 * micro_http-style message in err (e.g. "Invalid HTTP Method: Unsupported
 * HTTP method."). req->body points into buf and stays valid while buf does. */
ssize_t http_parse_request(const char *buf, size_t len, struct http_request *req, char *err,
			   size_t errlen);

/* Format a complete response into a malloc'ed buffer. body NULL (or "") means
 * no body: then neither Content-Type nor Content-Length is sent. */
int http_format_response(int status, bool deprecation, const char *body, char **ret,
			 size_t *ret_len);

/* The body micro_http sends for a request it could not parse. Not valid JSON:
 * it carries a raw newline inside the string, as micro_http's does. */
int http_format_parse_error(const char *msg, char **ret, size_t *ret_len);
