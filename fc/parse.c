/* SPDX-License-Identifier: MIT
 * parse.c — the pure part of the Firecracker client: parsing one HTTP/1.1
 * response as micro_http writes it, and extracting the error text of an error
 * body. No I/O, no libuv, no global state: this is what tests/fuzz feeds with
 * untrusted bytes.
 *
 * What is accepted (firecracker-protocol.md §0):
 * - a status line "HTTP/1.0|1.1 SP 3DIGIT [SP reason]": micro_http sends
 *   "HTTP/1.1 204 \r\n" (empty reason), other servers "HTTP/1.1 204 No Content";
 *   a status outside 200..599 is refused (FC never sends 1xx);
 * - CRLF-terminated "Name: value" header lines, names case-insensitive, the
 *   whole block (status line and blank line included) at most
 *   FC_MAX_HEADER_BYTES;
 * - Content-Length gives the body size (at most FC_MAX_BODY_BYTES); without it
 *   there is no body, whatever the status (micro_http omits it exactly when
 *   there is no body, e.g. on 204), so we never wait for EOF;
 * - "Deprecation: true".
 * Refused with -EBADMSG: Transfer-Encoding (chunked is never sent by FC),
 * conflicting Content-Length values, obsolete line folding, bare CR or LF,
 * NUL bytes and control characters in the header block, anything that is not a
 * response at all. Oversized input is -EFBIG.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <json-c/json.h>
#include "common/error.h"
#include "common/macro.h"
#include "fc/fc.h"
#include "fc/internal.h"

void fc_response_clear(struct fc_response *r)
{
	if (!r)
		return;
	free(r->body);
	*r = (struct fc_response){ 0 };
}

/* Find the end of the header block ("\r\n\r\n") in the first max bytes. */
static ssize_t find_header_end(const char *buf, size_t len)
{
	size_t lim = MIN(len, (size_t)FC_MAX_HEADER_BYTES);
	const char *p = memmem(buf, lim, "\r\n\r\n", 4);

	if (p)
		return (ssize_t)(p - buf) + 4;
	if (len >= FC_MAX_HEADER_BYTES)
		return -EFBIG;
	return 0;
}

/* "HTTP/1.1 204 ", "HTTP/1.1 204" or "HTTP/1.1 204 No Content" (line without CRLF). */
static int parse_status_line(const char *s, size_t n, int *ret_status)
{
	int status;

	if (n < 12 || memcmp(s, "HTTP/1.", 7) != 0 || (s[7] != '0' && s[7] != '1') || s[8] != ' ')
		return -EBADMSG;
	for (size_t i = 9; i < 12; i++)
		if (s[i] < '0' || s[i] > '9')
			return -EBADMSG;
	if (n > 12 && s[12] != ' ')
		return -EBADMSG;
	for (size_t i = 12; i < n; i++)
		if ((unsigned char)s[i] < 0x20 && s[i] != '\t')
			return -EBADMSG;
	status = (s[9] - '0') * 100 + (s[10] - '0') * 10 + (s[11] - '0');
	if (status < 200 || status > 599)
		return -EBADMSG;
	*ret_status = status;
	return 0;
}

static bool is_tchar(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       (c && strchr("!#$%&'*+-.^_`|~", c));
}

static bool name_is(const char *name, size_t n, const char *want)
{
	return n == strlen(want) && strncasecmp(name, want, n) == 0;
}

/* Content-Length: 1*DIGIT, bounded. */
static int parse_content_length(const char *v, size_t n, size_t *ret)
{
	size_t x = 0;

	if (n == 0)
		return -EBADMSG;
	for (size_t i = 0; i < n; i++) {
		if (v[i] < '0' || v[i] > '9')
			return -EBADMSG;
		x = x * 10 + (size_t)(v[i] - '0');
		if (x > FC_MAX_BODY_BYTES)
			return -EFBIG;
	}
	*ret = x;
	return 0;
}

struct head {
	int status;
	bool have_length;
	size_t length;
	bool deprecation;
};

static int parse_header_line(const char *s, size_t n, struct head *h)
{
	const char *colon = memchr(s, ':', n);
	size_t name_len, vs, ve;
	int r;

	if (!colon || colon == s)
		return -EBADMSG; /* also catches obs-fold lines starting with SP/HTAB */
	name_len = (size_t)(colon - s);
	for (size_t i = 0; i < name_len; i++)
		if (!is_tchar(s[i]))
			return -EBADMSG;
	for (size_t i = name_len + 1; i < n; i++)
		if (((unsigned char)s[i] < 0x20 && s[i] != '\t') || s[i] == 0x7f)
			return -EBADMSG;
	vs = name_len + 1;
	ve = n;
	while (vs < ve && (s[vs] == ' ' || s[vs] == '\t'))
		vs++;
	while (ve > vs && (s[ve - 1] == ' ' || s[ve - 1] == '\t'))
		ve--;

	if (name_is(s, name_len, "Content-Length")) {
		size_t len;

		r = parse_content_length(s + vs, ve - vs, &len);
		if (r < 0)
			return r;
		if (h->have_length && h->length != len)
			return -EBADMSG;
		h->have_length = true;
		h->length = len;
	} else if (name_is(s, name_len, "Transfer-Encoding")) {
		return -EBADMSG;
	} else if (name_is(s, name_len, "Deprecation")) {
		h->deprecation = ve - vs == 4 && strncasecmp(s + vs, "true", 4) == 0;
	}
	return 0;
}

/* Parse the header block buf[0..end) (end includes the final CRLFCRLF). */
static int parse_head(const char *buf, size_t end, struct head *h)
{
	const char *p = buf, *lim = buf + end - 2; /* drop the blank line's CRLF */
	bool first = true;
	int r;

	while (p < lim) {
		const char *eol = memmem(p, (size_t)(lim - p), "\r\n", 2);
		size_t n;

		if (!eol)
			return -EBADMSG;
		n = (size_t)(eol - p);
		if (memchr(p, '\n', n) || memchr(p, '\r', n))
			return -EBADMSG;
		r = first ? parse_status_line(p, n, &h->status) : parse_header_line(p, n, h);
		if (r < 0)
			return r;
		first = false;
		p = eol + 2;
	}
	return first ? -EBADMSG : 0;
}

ssize_t fc_parse_response(const char *buf, size_t len, struct fc_response *ret)
{
	struct head h = { 0 };
	ssize_t end;
	size_t total;
	char *body = NULL;
	int r;

	if (len == 0)
		return 0;
	/* Refuse garbage as soon as it can be told apart from a short read. */
	if (memcmp(buf, "HTTP/1.", MIN(len, (size_t)7)) != 0)
		return -EBADMSG;
	if (len >= 8 && buf[7] != '0' && buf[7] != '1')
		return -EBADMSG;

	end = find_header_end(buf, len);
	if (end <= 0) {
		/* A NUL can never be part of a header block: fail fast on binary junk. */
		if (memchr(buf, '\0', MIN(len, (size_t)FC_MAX_HEADER_BYTES)))
			return -EBADMSG;
		return end;
	}
	if (memchr(buf, '\0', (size_t)end))
		return -EBADMSG;
	r = parse_head(buf, (size_t)end, &h);
	if (r < 0)
		return r;

	total = (size_t)end + (h.have_length ? h.length : 0);
	if (len < total)
		return 0;
	if (h.have_length && h.length > 0) {
		body = malloc(h.length + 1);
		if (!body)
			return -ENOMEM;
		memcpy(body, buf + end, h.length);
		body[h.length] = '\0';
	}
	*ret = (struct fc_response){
		.status = h.status,
		.body = body,
		.body_len = body ? h.length : 0,
		.deprecation = h.deprecation,
	};
	return (ssize_t)total;
}

/* Copy a JSON string value starting right after its opening quote, up to the
 * closing quote, decoding the common escapes and keeping raw control bytes
 * (micro_http's error body has a raw newline inside the string). */
static char *scan_string(const char *p, const char *end)
{
	_cleanup_free_ char *out = malloc((size_t)(end - p) + 1);
	size_t n = 0;

	if (!out)
		return NULL;
	for (; p < end; p++) {
		char c = *p;

		if (c == '"') {
			out[n] = '\0';
			return TAKE_PTR(out);
		}
		if (c == '\\') {
			if (++p >= end)
				return NULL;
			switch (*p) {
			case 'n': c = '\n'; break;
			case 't': c = '\t'; break;
			case 'r': c = '\r'; break;
			case 'b': c = '\b'; break;
			case 'f': c = '\f'; break;
			case 'u': c = '?'; p += MIN((size_t)4, (size_t)(end - p - 1)); break;
			default: c = *p; break; /* \" \\ \/ and anything else literally */
			}
		}
		out[n++] = c;
	}
	return NULL; /* unterminated */
}

/* Find "key" followed by optional whitespace, ':', whitespace and '"'. */
static char *scan_key(const char *body, size_t len, const char *key)
{
	const char *end = body + len, *p = body;
	char pat[32];
	int k = snprintf(pat, sizeof(pat), "\"%s\"", key);

	while ((p = memmem(p, (size_t)(end - p), pat, (size_t)k))) {
		const char *q = p + k;

		while (q < end && strchr(" \t\r\n", *q) && *q)
			q++;
		if (q < end && *q == ':') {
			q++;
			while (q < end && strchr(" \t\r\n", *q) && *q)
				q++;
			if (q < end && *q == '"')
				return scan_string(q + 1, end);
		}
		p += k;
	}
	return NULL;
}

/* micro_http appends "\nAll previous unanswered requests will be dropped." to
 * the message; keep the message (the first line), without trailing blanks. */
static char *first_line(char *s)
{
	size_t n;

	if (!s)
		return NULL;
	s[strcspn(s, "\n")] = '\0';
	n = strlen(s);
	while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\r' || s[n - 1] == '\t'))
		s[--n] = '\0';
	return s;
}

static char *json_text(const char *body, size_t len)
{
	struct json_tokener *tok;
	struct json_object *o, *v;
	char *s = NULL;

	if (len > INT32_MAX)
		return NULL;
	tok = json_tokener_new();
	if (!tok)
		return NULL;
	o = json_tokener_parse_ex(tok, body, (int)len);
	if (o && json_tokener_get_error(tok) == json_tokener_success &&
	    json_object_is_type(o, json_type_object)) {
		if (json_object_object_get_ex(o, "fault_message", &v) &&
		    json_object_is_type(v, json_type_string))
			s = strdup(json_object_get_string(v));
		else if (json_object_object_get_ex(o, "error", &v) &&
			 json_object_is_type(v, json_type_string))
			s = first_line(strdup(json_object_get_string(v)));
	}
	json_object_put(o);
	json_tokener_free(tok);
	return s;
}

char *fc_error_text(const char *body, size_t len)
{
	char *s;

	if (!body || len == 0)
		return NULL;
	s = json_text(body, len);
	/* Not valid JSON (or json-c refused it): scan for the two known keys. */
	if (!s)
		s = scan_key(body, len, "fault_message");
	if (!s)
		s = first_line(scan_key(body, len, "error"));
	string_sanitize(s);
	return s;
}
