/* SPDX-License-Identifier: MIT
 * body.c — strict JSON bodies with serde_json's error wording and positions.
 *
 * json-c parses and gives us the values; it does not keep positions, so a
 * small scanner walks the raw text again to find where serde would have
 * stopped: just after a key's closing quote for an unknown field, at the end
 * of a value for a type error, at an object's closing brace for a missing
 * field. Positions are 1-based lines and columns, like serde_json's.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "common/macro.h"
#include "contrib/minivm/body.h"

#define PREFIX "An error occurred when deserializing the json body of a request: "

/* ---- positions --------------------------------------------------------- */

static size_t skip_ws(const char *s, size_t len, size_t i)
{
	while (i < len && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r'))
		i++;
	return i;
}

/* s[i] is a '"': return the index of the closing quote. */
static size_t skip_string(const char *s, size_t len, size_t i)
{
	for (i++; i < len && s[i] != '"'; i++)
		if (s[i] == '\\')
			i++;
	return i;
}

/* Return the index of the last character of the value starting at s[i]. */
static size_t skip_value(const char *s, size_t len, size_t i)
{
	int depth = 0;

	if (i >= len)
		return len ? len - 1 : 0;
	if (s[i] == '"')
		return skip_string(s, len, i);
	if (s[i] != '{' && s[i] != '[') {
		while (i + 1 < len && !strchr(",}] \t\r\n", s[i + 1]))
			i++;
		return i;
	}
	for (; i < len; i++) {
		if (s[i] == '"')
			i = skip_string(s, len, i);
		else if (s[i] == '{' || s[i] == '[')
			depth++;
		else if ((s[i] == '}' || s[i] == ']') && --depth == 0)
			return i;
	}
	return len - 1;
}

/* In the object starting at s[obj], find key: returns the index of the key's
 * closing quote and sets *val to the value's first index; or, with key NULL
 * or not found, returns the index of the closing brace. */
static size_t find_key(const char *s, size_t len, size_t obj, const char *key, size_t *val)
{
	size_t i = skip_ws(s, len, obj + 1), kstart, kend;

	while (i < len && s[i] == '"') {
		kstart = i + 1;
		kend = skip_string(s, len, i);
		i = skip_ws(s, len, kend + 1) + 1; /* past ':' */
		i = skip_ws(s, len, i);
		if (key && kend - kstart == strlen(key) && !memcmp(s + kstart, key, kend - kstart)) {
			*val = i;
			return kend;
		}
		i = skip_ws(s, len, skip_value(s, len, i) + 1);
		if (i < len && s[i] == ',')
			i = skip_ws(s, len, i + 1);
	}
	return i < len ? i : len - 1;
}

/* Index of the object reached by following path (keys of nested objects). */
static size_t object_at(const char *s, size_t len, const char *const *path, size_t depth)
{
	size_t i = skip_ws(s, len, 0), val = 0;

	for (size_t d = 0; d < depth; d++) {
		find_key(s, len, i, path[d], &val);
		i = val;
	}
	return i;
}

static void line_col(const char *s, size_t idx, unsigned *line, unsigned *col)
{
	size_t start = 0;

	*line = 1;
	for (size_t i = 0; i < idx; i++)
		if (s[i] == '\n') {
			(*line)++;
			start = i + 1;
		}
	*col = (unsigned)(idx - start + 1);
}

static int fail_at(char *err, size_t errlen, const char *s, size_t idx, const char *fmt, ...)
	_printf_(5, 6);
static int fail_at(char *err, size_t errlen, const char *s, size_t idx, const char *fmt, ...)
{
	char msg[384];
	unsigned line, col;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	line_col(s, idx, &line, &col);
	snprintf(err, errlen, PREFIX "%s at line %u column %u.", msg, line, col);
	return -EINVAL;
}

void body_custom_error(char *err, size_t errlen, const char *msg)
{
	snprintf(err, errlen, PREFIX "%s.", msg);
}

/* ---- parsing and checking ---------------------------------------------- */

int body_parse(const char *raw, size_t len, struct json_object **ret, char *err, size_t errlen)
{
	struct json_tokener *tok = json_tokener_new();
	struct json_object *obj;
	enum json_tokener_error jerr;
	size_t used, end;

	if (!tok)
		return -ENOMEM;
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
	/* Parse the first value only, so that junk after it is reported as
	 * serde does ("trailing characters"), not as a syntax error. */
	end = skip_value(raw, len, skip_ws(raw, len, 0)) + 1;
	obj = json_tokener_parse_ex(tok, raw, (int)MIN(end, len));
	jerr = json_tokener_get_error(tok);
	used = json_tokener_get_parse_end(tok);
	json_tokener_free(tok);

	if (!obj || jerr != json_tokener_success) {
		json_object_put(obj);
		if (jerr == json_tokener_continue || used >= len)
			return fail_at(err, errlen, raw, len ? len : 0, "EOF while parsing a value");
		return fail_at(err, errlen, raw, used, "expected value");
	}
	end = skip_ws(raw, len, used);
	if (end < len) {
		json_object_put(obj);
		return fail_at(err, errlen, raw, end, "trailing characters");
	}
	if (!json_object_is_type(obj, json_type_object)) {
		json_object_put(obj);
		return fail_at(err, errlen, raw, len - 1, "invalid type: %s, expected a struct",
			       "value");
	}
	*ret = obj;
	return 0;
}

/* serde's "unexpected" wording for a JSON value. */
static void describe(struct json_object *v, char *buf, size_t n)
{
	switch (json_object_get_type(v)) {
	case json_type_null:
		snprintf(buf, n, "null");
		break;
	case json_type_boolean:
		snprintf(buf, n, "boolean `%s`", json_object_get_boolean(v) ? "true" : "false");
		break;
	case json_type_int:
		if (json_object_get_int64(v) < 0)
			snprintf(buf, n, "integer `%" PRId64 "`", json_object_get_int64(v));
		else
			snprintf(buf, n, "integer `%" PRIu64 "`", json_object_get_uint64(v));
		break;
	case json_type_double:
		snprintf(buf, n, "floating point `%s`", json_object_get_string(v));
		break;
	case json_type_string:
		snprintf(buf, n, "string \"%.200s\"", json_object_get_string(v));
		break;
	case json_type_object:
		snprintf(buf, n, "map");
		break;
	case json_type_array:
		snprintf(buf, n, "sequence");
		break;
	}
}

/* "`a`", "`a` or `b`", "one of `a`, `b`, `c`", as serde's OneOf prints. */
static void one_of(char *buf, size_t n, const char *const *names, size_t count)
{
	size_t off = 0;

	if (count == 0) {
		snprintf(buf, n, "there are no fields");
		return;
	}
	if (count == 1) {
		snprintf(buf, n, "`%s`", names[0]);
		return;
	}
	if (count == 2) {
		snprintf(buf, n, "`%s` or `%s`", names[0], names[1]);
		return;
	}
	off += (size_t)snprintf(buf, n, "one of ");
	for (size_t i = 0; i < count && off < n; i++)
		off += (size_t)snprintf(buf + off, n - off, "%s`%s`", i ? ", " : "", names[i]);
}

static const char *expected(const struct body_field *f, char *buf, size_t n)
{
	switch (f->type) {
	case BT_STRING:
		return "a string";
	case BT_PATH:
		return "path string";
	case BT_BOOL:
		return "a boolean";
	case BT_U8:
		return "u8";
	case BT_USIZE:
		return "usize";
	case BT_ENUM:
		snprintf(buf, n, "enum %s", f->rust_name);
		return buf;
	case BT_STRUCT:
		snprintf(buf, n, "struct %s", f->rust_name);
		return buf;
	case BT_ANY_OBJECT:
		return "a map";
	case BT_SEQ:
		return "a sequence";
	}
	return "a value";
}

static int check_object(const char *raw, size_t len, const char **path, size_t depth,
			struct json_object *obj, const struct body_field *fields, size_t n,
			char *err, size_t errlen);

static int check_value(const char *raw, size_t len, const char **path, size_t depth,
		       const struct body_field *f, struct json_object *v, char *err, size_t errlen)
{
	size_t obj = object_at(raw, len, path, depth), val = 0, at;
	enum json_type t = json_object_get_type(v);
	char what[256], exp[128];
	bool ok;

	find_key(raw, len, obj, f->name, &val);
	at = skip_value(raw, len, val);
	if (t == json_type_null && f->nullable)
		return 0;

	switch (f->type) {
	case BT_STRING:
	case BT_PATH:
	case BT_ENUM:
		ok = t == json_type_string;
		break;
	case BT_BOOL:
		ok = t == json_type_boolean;
		break;
	case BT_U8:
	case BT_USIZE:
		ok = t == json_type_int;
		if (ok && (json_object_get_int64(v) < 0 ||
			   (f->type == BT_U8 && json_object_get_uint64(v) > 255))) {
			describe(v, what, sizeof(what));
			return fail_at(err, errlen, raw, at, "invalid value: %s, expected %s", what,
				       expected(f, exp, sizeof(exp)));
		}
		break;
	case BT_STRUCT:
	case BT_ANY_OBJECT:
		ok = t == json_type_object;
		break;
	case BT_SEQ:
		ok = t == json_type_array;
		break;
	default:
		ok = false;
	}
	if (!ok) {
		describe(v, what, sizeof(what));
		return fail_at(err, errlen, raw, at, "invalid type: %s, expected %s", what,
			       expected(f, exp, sizeof(exp)));
	}
	if (f->type == BT_ENUM) {
		const char *s = json_object_get_string(v);
		size_t count = 0;

		for (; f->variants[count]; count++)
			if (!strcmp(s, f->variants[count]))
				return 0;
		one_of(exp, sizeof(exp), f->variants, count);
		return fail_at(err, errlen, raw, at, "unknown variant `%.100s`, expected %s", s, exp);
	}
	if (f->type == BT_STRUCT) {
		if (depth >= 7)
			return -EINVAL;
		path[depth] = f->name;
		return check_object(raw, len, path, depth + 1, v, f->sub, f->nsub, err, errlen);
	}
	return 0;
}

static int check_object(const char *raw, size_t len, const char **path, size_t depth,
			struct json_object *obj, const struct body_field *fields, size_t n,
			char *err, size_t errlen)
{
	size_t start = object_at(raw, len, path, depth), val;
	const char *names[16];
	char exp[256];
	int r;

	for (size_t i = 0; i < n && i < ARRAY_SIZE(names); i++)
		names[i] = fields[i].name;

	/* json-c keeps insertion order, which is document order. */
	json_object_object_foreach(obj, key, v) {
		const struct body_field *f = NULL;

		for (size_t i = 0; i < n; i++)
			if (!strcmp(fields[i].name, key))
				f = &fields[i];
		if (!f) {
			one_of(exp, sizeof(exp), names, MIN(n, ARRAY_SIZE(names)));
			return fail_at(err, errlen, raw, find_key(raw, len, start, key, &val),
				       "unknown field `%.100s`, expected %s", key, exp);
		}
		r = check_value(raw, len, path, depth, f, v, err, errlen);
		if (r < 0)
			return r;
	}
	for (size_t i = 0; i < n; i++)
		if (fields[i].required && !json_object_object_get_ex(obj, fields[i].name, NULL))
			return fail_at(err, errlen, raw, find_key(raw, len, start, NULL, &val),
				       "missing field `%s`", fields[i].name);
	return 0;
}

int body_check(const char *raw, size_t len, struct json_object *obj,
	       const struct body_field *fields, size_t n, char *err, size_t errlen)
{
	const char *path[8];

	return check_object(raw, len, path, 0, obj, fields, n, err, errlen);
}

/* ---- accessors --------------------------------------------------------- */

struct json_object *body_get(struct json_object *obj, const char *key)
{
	struct json_object *v = NULL;

	if (!json_object_object_get_ex(obj, key, &v) || json_object_is_type(v, json_type_null))
		return NULL;
	return v;
}

const char *body_string(struct json_object *obj, const char *key)
{
	struct json_object *v = body_get(obj, key);

	return v ? json_object_get_string(v) : NULL;
}

bool body_bool(struct json_object *obj, const char *key, bool def)
{
	struct json_object *v = body_get(obj, key);

	return v ? json_object_get_boolean(v) : def;
}

unsigned long long body_u64(struct json_object *obj, const char *key, unsigned long long def)
{
	struct json_object *v = body_get(obj, key);

	return v ? json_object_get_uint64(v) : def;
}
