/* SPDX-License-Identifier: MIT
 * config.c — config.json: the three forms, strictly validated.
 *
 * The document is untrusted: it is bounded (CONFIG_MAX_BYTES), must be one
 * JSON object with nothing after it, and every key must be known. The boot
 * form only accepts Firecracker config-file resources from a fixed table, so
 * a user cannot make forkfs send a request to an arbitrary API path; array
 * resources (drives, network-interfaces) need an id made of [A-Za-z0-9_-].
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/util.h"
#include "sandbox/config.h"

const struct config_resource config_resources[] = {
	{ "logger", "/logger", NULL },
	{ "metrics", "/metrics", NULL },
	{ "machine-config", "/machine-config", NULL },
	{ "cpu-config", "/cpu-config", NULL },
	{ "boot-source", "/boot-source", NULL },
	{ "drives", "/drives", "drive_id" },
	{ "network-interfaces", "/network-interfaces", "iface_id" },
	{ "vsock", "/vsock", NULL },
	{ "balloon", "/balloon", NULL },
	{ "entropy", "/entropy", NULL },
	{ "mmds-config", "/mmds/config", NULL },
};
const size_t config_resources_count = sizeof(config_resources) / sizeof(config_resources[0]);

struct config *config_free(struct config *c)
{
	if (c) {
		json_object_put(c->root);
		free(c);
	}
	return NULL;
}

static const struct config_resource *resource_find(const char *key)
{
	for (size_t i = 0; i < config_resources_count; i++)
		if (strcmp(config_resources[i].key, key) == 0)
			return &config_resources[i];
	return NULL;
}

static bool id_is_valid(const char *s)
{
	size_t n = strlen(s);

	if (n < 1 || n > 64)
		return false;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		      (*s >= '0' && *s <= '9') || *s == '_' || *s == '-'))
			return false;
	return true;
}

static const char *get_string(json_object *o, const char *key)
{
	json_object *v;

	if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
		return NULL;
	return json_object_get_string(v);
}

static int check_boot(json_object *root, struct error *err)
{
	json_object *bs;

	json_object_object_foreach(root, key, val) {
		const struct config_resource *res = resource_find(key);

		if (!res)
			return error_set(err, -EINVAL, "unknown key \"%.64s\" (not a boot, restore or attach document)", key);
		if (!res->id_key) {
			if (!json_object_is_type(val, json_type_object))
				return error_set(err, -EINVAL, "\"%s\" must be an object", key);
			continue;
		}
		if (!json_object_is_type(val, json_type_array))
			return error_set(err, -EINVAL, "\"%s\" must be an array", key);
		for (size_t i = 0; i < json_object_array_length(val); i++) {
			json_object *item = json_object_array_get_idx(val, i);
			const char *id;

			if (!json_object_is_type(item, json_type_object))
				return error_set(err, -EINVAL, "\"%s\"[%zu] must be an object", key, i);
			id = get_string(item, res->id_key);
			if (!id || !id_is_valid(id))
				return error_set(err, -EINVAL, "\"%s\"[%zu] needs a valid \"%s\"", key, i,
					    res->id_key);
		}
	}
	if (!json_object_object_get_ex(root, "boot-source", &bs))
		return error_set(err, -EINVAL, "boot document without \"boot-source\"");
	if (!get_string(bs, "kernel_image_path"))
		return error_set(err, -EINVAL, "\"boot-source\" needs \"kernel_image_path\"");
	return 0;
}

static int check_restore(struct config *c, json_object *r, struct error *err)
{
	const char *branch;

	if (!json_object_is_type(r, json_type_object))
		return error_set(err, -EINVAL, "\"restore\" must be an object");
	json_object_object_foreach(r, key, val) {
		(void)val;
		if (strcmp(key, "branch") && strcmp(key, "snapshot_path") &&
		    strcmp(key, "mem_file_path"))
			return error_set(err, -EINVAL, "unknown key \"restore.%.64s\"", key);
	}
	branch = get_string(r, "branch");
	if (branch) {
		const char *slash = strchr(branch, '/');
		size_t n;

		if (json_object_object_length(r) != 1)
			return error_set(err, -EINVAL, "\"restore\" takes either \"branch\" or \"snapshot_path\" + \"mem_file_path\"");
		if (!slash)
			return error_set(err, -EINVAL, "\"restore.branch\" must be \"SANDBOX/TAG\"");
		n = (size_t)(slash - branch);
		if (n > NAME_LEN_MAX)
			return error_set(err, -EINVAL, "\"restore.branch\": bad sandbox name");
		memcpy(c->branch_sandbox, branch, n);
		c->branch_sandbox[n] = 0;
		snprintf(c->branch_tag, sizeof(c->branch_tag), "%s", slash + 1);
		if (!name_is_valid(c->branch_sandbox) || strlen(slash + 1) > NAME_LEN_MAX ||
		    !name_is_valid(c->branch_tag))
			return error_set(err, -EINVAL, "\"restore.branch\": bad sandbox or tag name");
		return 0;
	}
	c->snapshot_path = get_string(r, "snapshot_path");
	c->mem_file_path = get_string(r, "mem_file_path");
	if (!c->snapshot_path || !c->mem_file_path || json_object_object_length(r) != 2)
		return error_set(err, -EINVAL, "\"restore\" needs \"branch\", or string \"snapshot_path\" and \"mem_file_path\"");
	if (c->snapshot_path[0] != '/' || c->mem_file_path[0] != '/')
		return error_set(err, -EINVAL, "\"restore\" paths must be absolute");
	return 0;
}

static int check_attach(struct config *c, json_object *a, struct error *err)
{
	if (!json_object_is_type(a, json_type_object) || json_object_object_length(a) != 1)
		return error_set(err, -EINVAL, "\"attach\" must be {\"api_socket\": PATH}");
	c->api_socket = get_string(a, "api_socket");
	if (!c->api_socket)
		return error_set(err, -EINVAL, "\"attach\" must be {\"api_socket\": PATH}");
	if (c->api_socket[0] != '/' || strlen(c->api_socket) >= 108)
		return error_set(err, -EINVAL, "\"attach.api_socket\" must be an absolute path shorter than 108 bytes");
	return 0;
}

/* Parse len bytes; *ret_done tells whether the document is complete. */
static int parse_json(const char *text, size_t len, json_object **ret, struct error *err)
{
	json_tokener *tok;
	json_object *o;
	enum json_tokener_error je;
	size_t used;

	if (len > CONFIG_MAX_BYTES)
		return error_set(err, -EFBIG, "config.json larger than %d bytes", CONFIG_MAX_BYTES);
	tok = json_tokener_new();
	if (!tok)
		return -ENOMEM;
	o = json_tokener_parse_ex(tok, text, (int)len);
	je = json_tokener_get_error(tok);
	used = json_tokener_get_parse_end(tok);
	json_tokener_free(tok);
	if (je == json_tokener_continue) {
		*ret = NULL;
		return -EAGAIN;
	}
	if (!o)
		return error_set(err, -EINVAL, "not JSON: %s at byte %zu", json_tokener_error_desc(je),
				 used);
	for (size_t i = used; i < len; i++)
		if (!strchr(" \t\r\n", text[i])) {
			json_object_put(o);
			return error_set(err, -EINVAL, "trailing bytes after the JSON document");
		}
	*ret = o;
	return 0;
}

int config_parse(const char *text, size_t len, struct config **ret, struct error *err)
{
	struct config *c;
	json_object *root = NULL, *v;
	int r;

	if (memchr(text, 0, len))
		return error_set(err, -EINVAL, "config.json contains a NUL byte");
	r = parse_json(text, len, &root, err);
	if (r == -EAGAIN)
		return error_set(err, -EINVAL, "incomplete JSON document");
	if (r < 0)
		return r;
	if (!json_object_is_type(root, json_type_object)) {
		json_object_put(root);
		return error_set(err, -EINVAL, "config.json must be a JSON object");
	}
	c = calloc(1, sizeof(*c));
	if (!c) {
		json_object_put(root);
		return -ENOMEM;
	}
	c->root = root;
	if (json_object_object_get_ex(root, "restore", &v)) {
		c->kind = CONFIG_RESTORE;
		r = json_object_object_length(root) != 1
			    ? error_set(err, -EINVAL, "\"restore\" must be the only key")
			    : check_restore(c, v, err);
	} else if (json_object_object_get_ex(root, "attach", &v)) {
		c->kind = CONFIG_ATTACH;
		r = json_object_object_length(root) != 1
			    ? error_set(err, -EINVAL, "\"attach\" must be the only key")
			    : check_attach(c, v, err);
	} else {
		c->kind = CONFIG_BOOT;
		r = check_boot(root, err);
	}
	if (r < 0) {
		config_free(c);
		return r;
	}
	*ret = c;
	return 0;
}

int config_check_prefix(const char *text, size_t len, struct error *err)
{
	json_object *root = NULL;
	struct config *c = NULL;
	int r;

	if (len == 0)
		return 0;
	r = parse_json(text, len, &root, err);
	if (r == -EAGAIN)
		return 0;
	if (r < 0)
		return r;
	json_object_put(root);
	/* A complete document: judge it now so that "echo ... > config.json"
	 * sees the error from write(2), which shells report. */
	r = config_parse(text, len, &c, err);
	config_free(c);
	return r;
}
