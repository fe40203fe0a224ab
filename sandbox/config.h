/* SPDX-License-Identifier: MIT
 * config.h — parsing and validation of a sandbox's config.json (untrusted
 * bytes; no FUSE, no I/O). Three forms, see forkfs(8):
 *   boot:    a Firecracker config-file document ("boot-source", ...)
 *   restore: {"restore":{"branch":"SANDBOX/TAG"}} or
 *            {"restore":{"snapshot_path":"...","mem_file_path":"..."}}
 *   attach:  {"attach":{"api_socket":"/path"}}
 */
#pragma once

#include <json-c/json.h>
#include <stddef.h>

#include "common/error.h"
#include "common/util.h"

#define CONFIG_MAX_BYTES (1024 * 1024)	/* config.json bound: EFBIG beyond */

enum config_kind { CONFIG_BOOT, CONFIG_RESTORE, CONFIG_ATTACH };

struct config {
	enum config_kind kind;
	json_object *root;		/* the whole document (boot: the resources) */
	/* restore */
	char branch_sandbox[NAME_LEN_MAX + 1];
	char branch_tag[NAME_LEN_MAX + 1];
	const char *snapshot_path;	/* points into root */
	const char *mem_file_path;
	/* attach */
	const char *api_socket;
};

/* One Firecracker resource of the boot form, in the order start applies them. */
struct config_resource {
	const char *key;	/* key in the document */
	const char *path;	/* API path */
	const char *id_key;	/* array form: field naming the sub-path, else NULL */
};
extern const struct config_resource config_resources[];
extern const size_t config_resources_count;

/* Parse and validate a complete document. err gets a one-line reason. Returns
 * 0, -EINVAL (invalid), -EFBIG (too large), -ENOMEM. */
int config_parse(const char *text, size_t len, struct config **ret, struct error *err);
/* Check a prefix written so far: 0 if it may still become valid (or is
 * valid), -EINVAL (with a reason) if it can no longer be. */
int config_check_prefix(const char *text, size_t len, struct error *err);
struct config *config_free(struct config *c);
