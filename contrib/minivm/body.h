/* SPDX-License-Identifier: MIT
 * body.h — strict request bodies for forkfs-minivm, with serde-style errors.
 *
 * Firecracker deserialises each body with serde and deny_unknown_fields; a
 * client sees serde_json's wording ("unknown field `x`, expected one of ...
 * at line 1 column 5"). A body is described by a table of fields in the
 * order the Rust struct declares them (serde lists "expected" names in that
 * order); body_check() walks the object in document order, so the first
 * problem reported is the one serde would report.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <json-c/json.h>

enum body_type {
	BT_STRING,	/* Rust String */
	BT_PATH,	/* Rust PathBuf */
	BT_BOOL,
	BT_U8,
	BT_USIZE,
	BT_ENUM,	/* unit variants given as strings, listed in .variants */
	BT_STRUCT,	/* nested object described by .sub */
	BT_ANY_OBJECT,	/* an object whose inside minivm does not look at */
	BT_SEQ,		/* an array whose items minivm does not look at */
};

struct body_field {
	const char *name;
	enum body_type type;
	bool required;
	bool nullable;			/* Rust Option<T>: null means absent */
	const char *rust_name;		/* BT_ENUM/BT_STRUCT: "SnapshotType" */
	const char *const *variants;	/* BT_ENUM, NULL-terminated */
	const struct body_field *sub;	/* BT_STRUCT */
	size_t nsub;
};

/* Parse a body as one JSON object. On failure err holds the full fault
 * message ("An error occurred when deserializing the json body of a request:
 * ... at line L column C.") and -EINVAL is returned. */
int body_parse(const char *raw, size_t len, struct json_object **ret, char *err, size_t errlen);

/* Check obj (the whole body) against a field table. Same error format. */
int body_check(const char *raw, size_t len, struct json_object *obj,
	       const struct body_field *fields, size_t n, char *err, size_t errlen);

/* Format a serde custom error (no position), e.g. the mem_backend rules. */
void body_custom_error(char *err, size_t errlen, const char *msg);

/* Accessors for already checked objects; absent or null gives the default. */
const char *body_string(struct json_object *obj, const char *key);
bool body_bool(struct json_object *obj, const char *key, bool def);
unsigned long long body_u64(struct json_object *obj, const char *key, unsigned long long def);
struct json_object *body_get(struct json_object *obj, const char *key);
