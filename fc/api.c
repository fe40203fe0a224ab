/* SPDX-License-Identifier: MIT
 * api.c — the typed Firecracker calls of forkfs, on top of fc_call() in
 * http.c: request bodies built with json-c (so every string is escaped),
 * answers parsed leniently (unknown keys are ignored, as a newer VMM may add
 * some). Which fields go out, and which never do, follows
 * firecracker-protocol.md §1, §2 and forkd's call order in §5.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include "common/error.h"
#include "common/json.h"
#include "common/macro.h"
#include "fc/fc.h"
#include "fc/internal.h"

/* What the uffd probe sends: a socket that can never be connected to. */
#define PROBE_UFFD_SOCKET "/dev/null/forkfs-probe-uffd.sock"
#define PROBE_VMSTATE_PATH "/dev/null/forkfs-probe-vmstate"
#define PROBE_MEM_PATH "/dev/null/forkfs-probe-mem"

int fc_error(struct fc_client *c, int r, struct error *e, const char *what)
{
	const char *text = c ? fc_client_last_error(c) : NULL;

	if (text && *text)
		return error_set(e, r, "%s: %s", what, text);
	return error_set_errno(e, r, "%s", what);
}

/* Add v (just made, possibly NULL on allocation failure) under key; it is
 * freed if it cannot be added. */
static int add_value(struct json_object *o, const char *key, struct json_object *v)
{
	if (!v || json_object_object_add(o, key, v) < 0) {
		json_object_put(v);
		return -ENOMEM;
	}
	return 0;
}

static int add_string(struct json_object *o, const char *key, const char *value)
{
	return add_value(o, key, json_object_new_string(value));
}

static int add_bool(struct json_object *o, const char *key, bool value)
{
	return add_value(o, key, json_object_new_boolean(value));
}

static int add_u64(struct json_object *o, const char *key, uint64_t value)
{
	return add_value(o, key, json_object_new_uint64(value));
}

/* Send o with method to path, expecting a 2xx. */
static int call_json(struct fc_client *c, const char *method, const char *path,
		     struct json_object *o, unsigned timeout_ms)
{
	const char *body = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);

	if (!body)
		return -ENOMEM;
	return fc_call(c, method, path, body, timeout_ms, NULL);
}

/* GET path and parse the JSON object it answers. */
static int get_json(struct fc_client *c, const char *path, struct json_object **ret)
{
	struct fc_response resp = { 0 };
	struct json_object *o;
	int r;

	r = fc_call(c, "GET", path, NULL, 0, &resp);
	if (r < 0)
		goto out;
	o = resp.body ? json_tokener_parse(resp.body) : NULL;
	if (!o || !json_object_is_type(o, json_type_object)) {
		json_object_put(o);
		r = fc__set_error(c, -EBADMSG, "GET %s: answer is not a JSON object", path);
		goto out;
	}
	*ret = o;
out:
	fc_response_clear(&resp);
	return r;
}

static const char *get_string(struct json_object *o, const char *key)
{
	struct json_object *v;

	if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
		return NULL;
	return json_object_get_string(v);
}

static void copy_string(char *dst, size_t size, const char *src)
{
	snprintf(dst, size, "%s", src ? src : "");
}

static const char *const state_names[] = {
	[FC_STATE_NOT_STARTED] = "Not started",
	[FC_STATE_RUNNING] = "Running",
	[FC_STATE_PAUSED] = "Paused",
	[FC_STATE_UNKNOWN] = "unknown",
};

const char *fc_vm_state_to_string(enum fc_vm_state s)
{
	if ((unsigned)s >= ARRAY_SIZE(state_names))
		return "unknown";
	return state_names[s];
}

static enum fc_vm_state state_from_string(const char *s)
{
	for (size_t i = 0; s && i < FC_STATE_UNKNOWN; i++)
		if (strcmp(s, state_names[i]) == 0)
			return (enum fc_vm_state)i;
	return FC_STATE_UNKNOWN;
}

int fc_get_instance_info(struct fc_client *c, struct fc_instance_info *ret)
{
	_cleanup_json_ struct json_object *o = NULL;
	struct fc_instance_info info = { 0 };
	int r;

	r = get_json(c, "/", &o);
	if (r < 0)
		return r;
	copy_string(info.id, sizeof(info.id), get_string(o, "id"));
	info.state = state_from_string(get_string(o, "state"));
	copy_string(info.vmm_version, sizeof(info.vmm_version), get_string(o, "vmm_version"));
	copy_string(info.app_name, sizeof(info.app_name), get_string(o, "app_name"));
	*ret = info;
	return 0;
}

static bool get_u64(struct json_object *o, const char *key, uint64_t *ret)
{
	struct json_object *v;

	if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_int))
		return false;
	errno = 0;
	*ret = json_object_get_uint64(v);
	return errno == 0 && json_object_get_int64(v) >= 0;
}

static bool get_bool(struct json_object *o, const char *key)
{
	struct json_object *v;

	return json_object_object_get_ex(o, key, &v) && json_object_is_type(v, json_type_boolean) &&
	       json_object_get_boolean(v);
}

int fc_get_machine_config(struct fc_client *c, struct fc_machine_config *ret)
{
	_cleanup_json_ struct json_object *o = NULL;
	struct fc_machine_config mc = { 0 };
	uint64_t vcpus;
	int r;

	r = get_json(c, "/machine-config", &o);
	if (r < 0)
		return r;
	if (!get_u64(o, "vcpu_count", &vcpus) || vcpus > UINT32_MAX ||
	    !get_u64(o, "mem_size_mib", &mc.mem_size_mib)) {
		return fc__set_error(
		    c, -EBADMSG,
		    "GET /machine-config: vcpu_count or mem_size_mib missing or invalid");
	}
	mc.vcpu_count = (unsigned)vcpus;
	mc.smt = get_bool(o, "smt");
	mc.track_dirty_pages = get_bool(o, "track_dirty_pages");
	copy_string(mc.huge_pages, sizeof(mc.huge_pages), get_string(o, "huge_pages"));
	*ret = mc;
	return 0;
}

/* PUT resets omitted fields to their defaults (false, "None"), so sending
 * smt/track_dirty_pages only when true is the same request, and keeps us off
 * keys a minimal VMM might not know. cpu_template is deprecated: never sent. */
int fc_put_machine_config(struct fc_client *c, const struct fc_machine_config *mc)
{
	_cleanup_json_ struct json_object *o = json_object_new_object();

	if (!o || add_u64(o, "vcpu_count", mc->vcpu_count) < 0 ||
	    add_u64(o, "mem_size_mib", mc->mem_size_mib) < 0 ||
	    (mc->smt && add_bool(o, "smt", true) < 0) ||
	    (mc->track_dirty_pages && add_bool(o, "track_dirty_pages", true) < 0) ||
	    (mc->huge_pages[0] && add_string(o, "huge_pages", mc->huge_pages) < 0))
		return -ENOMEM;
	return call_json(c, "PUT", "/machine-config", o, 0);
}

int fc_put_boot_source(struct fc_client *c, const char *kernel_image_path, const char *boot_args,
		       const char *initrd_path)
{
	_cleanup_json_ struct json_object *o = json_object_new_object();

	if (!kernel_image_path)
		return -EINVAL;
	if (!o || add_string(o, "kernel_image_path", kernel_image_path) < 0 ||
	    (boot_args && add_string(o, "boot_args", boot_args) < 0) ||
	    (initrd_path && add_string(o, "initrd_path", initrd_path) < 0))
		return -ENOMEM;
	return call_json(c, "PUT", "/boot-source", o, 0);
}

int fc_put_json(struct fc_client *c, const char *path, const char *json_body)
{
	if (!path || path[0] != '/' || !json_body)
		return -EINVAL;
	return fc_call(c, "PUT", path, json_body, 0, NULL);
}

int fc_instance_start(struct fc_client *c)
{
	return fc_call(c, "PUT", "/actions", "{\"action_type\":\"InstanceStart\"}", 0, NULL);
}

int fc_pause(struct fc_client *c)
{
	return fc_call(c, "PATCH", "/vm", "{\"state\":\"Paused\"}", 0, NULL);
}

int fc_resume(struct fc_client *c)
{
	return fc_call(c, "PATCH", "/vm", "{\"state\":\"Resumed\"}", 0, NULL);
}

static const char *snapshot_type_name(enum fc_snapshot_type t)
{
	switch (t) {
	case FC_SNAPSHOT_FULL: return "Full";
	case FC_SNAPSHOT_DIFF: return "Diff";
	case FC_SNAPSHOT_VMSTATE_ONLY: return "VmstateOnly";
	}
	return NULL;
}

/* No "version" key: 1.12 rejects it (deny_unknown_fields). */
int fc_snapshot_create(struct fc_client *c, enum fc_snapshot_type type, const char *snapshot_path,
		       const char *mem_file_path, unsigned timeout_ms)
{
	_cleanup_json_ struct json_object *o = json_object_new_object();
	const char *tname = snapshot_type_name(type);

	if (!tname || !snapshot_path)
		return -EINVAL;
	if (!mem_file_path) {
		if (type != FC_SNAPSHOT_VMSTATE_ONLY)
			return -EINVAL;
		mem_file_path = FC_VMSTATE_ONLY_MEM_PLACEHOLDER;
	}
	if (!o || add_string(o, "snapshot_path", snapshot_path) < 0 ||
	    add_string(o, "mem_file_path", mem_file_path) < 0 ||
	    add_string(o, "snapshot_type", tname) < 0)
		return -ENOMEM;
	return call_json(c, "PUT", "/snapshot/create", o, timeout_ms);
}

/* Never "track_dirty_pages" (v1.13+ only) nor the deprecated mem_file_path. */
int fc_snapshot_load(struct fc_client *c, const char *snapshot_path, const char *backend_path,
		     bool shared, bool resume_vm, unsigned timeout_ms)
{
	_cleanup_json_ struct json_object *o = json_object_new_object();
	struct json_object *mb;

	if (!snapshot_path || !backend_path)
		return -EINVAL;
	if (!o || add_string(o, "snapshot_path", snapshot_path) < 0)
		return -ENOMEM;
	mb = json_object_new_object();
	if (!mb || json_object_object_add(o, "mem_backend", mb) < 0) {
		json_object_put(mb);
		return -ENOMEM;
	}
	if (add_string(mb, "backend_type", "File") < 0 ||
	    add_string(mb, "backend_path", backend_path) < 0 ||
	    (shared && add_bool(mb, "shared", true) < 0) || add_bool(o, "resume_vm", resume_vm) < 0)
		return -ENOMEM;
	return call_json(c, "PUT", "/snapshot/load", o, timeout_ms);
}

int fc_uffd_wp(struct fc_client *c, const char *listen_socket_path)
{
	_cleanup_json_ struct json_object *o = json_object_new_object();

	if (!listen_socket_path)
		return -EINVAL;
	if (!o || add_string(o, "socket", listen_socket_path) < 0)
		return -ENOMEM;
	return call_json(c, "PUT", "/uffd/wp", o, 0);
}

/* The probes rely on the answers of stock Firecracker v1.12 (protocol doc
 * §0-§2), matched as substrings of the error text:
 * - PUT /uffd/wp: stock has no such route and answers 400
 *   "Invalid request method and/or path: PUT uffd." -> uffd_wp = false. Any
 *   other answer means the route exists: the fork answers "Setup WP uffd error:
 *   Failed to connect to listener UDS: ..." (the socket is under /dev/null/, so
 *   nothing connects and no uffd leaves the VMM) or, before boot, "... not
 *   supported before starting the microVM." -> uffd_wp = true.
 * - PUT /snapshot/create with snapshot_type "VmstateOnly" and both paths under
 *   /dev/null/: stock's serde answer contains "unknown variant" -> false. The
 *   fork refuses it for another reason (running, not started, or ENOTDIR when
 *   it opens the vmstate path) -> true. When paused, the fork gets as far as
 *   saving the vCPU state before failing to create the file; nothing is written.
 * Transport errors are returned as such; a 2xx (impossible with these paths)
 * counts as support. */
#define STOCK_NO_ROUTE "Invalid request method and/or path"
#define STOCK_UNKNOWN_VARIANT "unknown variant"

static int probe(struct fc_client *c, const char *path, struct json_object *o, const char *stock,
		 bool *ret)
{
	int r = call_json(c, "PUT", path, o, 0);

	if (r == -EREMOTEIO)
		*ret = !strstr(fc_client_last_error(c), stock);
	else if (r == 0)
		*ret = true;
	else
		return r;
	return 0;
}

int fc_probe_caps(struct fc_client *c, struct fc_caps *ret)
{
	_cleanup_json_ struct json_object *wp = json_object_new_object();
	_cleanup_json_ struct json_object *snap = json_object_new_object();
	struct fc_caps caps = { 0 };
	int r;

	if (!wp || !snap || add_string(wp, "socket", PROBE_UFFD_SOCKET) < 0 ||
	    add_string(snap, "snapshot_path", PROBE_VMSTATE_PATH) < 0 ||
	    add_string(snap, "mem_file_path", PROBE_MEM_PATH) < 0 ||
	    add_string(snap, "snapshot_type", "VmstateOnly") < 0)
		return -ENOMEM;
	r = probe(c, "/uffd/wp", wp, STOCK_NO_ROUTE, &caps.uffd_wp);
	if (r < 0)
		return r;
	r = probe(c, "/snapshot/create", snap, STOCK_UNKNOWN_VARIANT, &caps.vmstate_only);
	if (r < 0)
		return r;
	fc__set_error(c, 0, "%s", ""); /* the refusals above were expected */
	*ret = caps;
	return 0;
}
