/* SPDX-License-Identifier: MIT
 * api.c — the Firecracker 1.12 API as forkfs-minivm serves it.
 *
 * Routing copies Firecracker's ParsedRequest::try_from: the first path
 * segment picks the endpoint, a GET with a body and a PUT/PATCH without one
 * are refused before the path is looked at, and an unknown path is a 400
 * naming only that first segment. Bodies are checked by body.c against
 * tables written in the Rust structs' field order. The state machine is
 * Firecracker's: "Not started" accepts boot resources, InstanceStart and
 * snapshot load; afterwards only the post-boot calls. A failed load is fatal,
 * as in Firecracker: the response says so and main.c ends the process.
 *
 * The fork's extensions (PUT /uffd/wp, snapshot_type VmstateOnly, shared on
 * load) are switched off by --stock, which then answers exactly as stock
 * Firecracker does.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define LOG_PREFIX "api: "
#include "common/error.h"
#include "common/log.h"
#include "common/util.h"
#include "contrib/minivm/api.h"
#include "contrib/minivm/body.h"
#include "contrib/minivm/vm.h"
#include "contrib/minivm/wp.h"

#define VMM_VERSION "1.12.0"
#define MSG_AFTER_START "The requested operation is not supported after starting the microVM."
#define MSG_BEFORE_START "The requested operation is not supported before starting the microVM."

struct api {
	struct api_options opts;
	char id[128];
	/* Machine configuration, as GET /machine-config reports it. */
	unsigned vcpu_count;
	uint64_t mem_size_mib;
	bool smt, track_dirty_pages;
	char cpu_template[16];
	char *kernel_path;
	char *boot_args;
	bool boot_path;		/* a boot resource was configured: load is refused */
	struct vm *vm;		/* NULL until InstanceStart or load */
};

struct ctx {
	const struct http_request *req;
	struct api_response *resp;
	char err[1024];
};

/* ---- responses --------------------------------------------------------- */

static void reply_json(struct ctx *c, int status, struct json_object *obj)
{
	const char *s = json_object_to_json_string_ext(obj, JSON_C_TO_STRING_PLAIN |
								JSON_C_TO_STRING_NOSLASHESCAPE);

	c->resp->status = status;
	c->resp->body = strdup(s);
	json_object_put(obj);
}

static void reply_fault(struct ctx *c, const char *msg)
{
	struct json_object *o = json_object_new_object();

	json_object_object_add(o, "fault_message", json_object_new_string(msg));
	log_warning("%s %s: 400: %s", http_method_to_string(c->req->method), c->req->path, msg);
	reply_json(c, 400, o);
}

static void reply_faultf(struct ctx *c, const char *fmt, ...) _printf_(2, 3);
static void reply_faultf(struct ctx *c, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	reply_fault(c, msg);
}

static void reply_204(struct ctx *c) { c->resp->status = 204; }

static void reply_invalid_path(struct ctx *c, const char *segment)
{
	reply_faultf(c, "Invalid request method and/or path: %s %s.",
		     http_method_to_string(c->req->method), segment);
}

/* Parse and check a body; on failure the 400 has been set. */
static struct json_object *parse_body(struct ctx *c, const struct body_field *fields, size_t n)
{
	struct json_object *obj = NULL;

	if (body_parse(c->req->body, c->req->body_len, &obj, c->err, sizeof(c->err)) < 0 ||
	    body_check(c->req->body, c->req->body_len, obj, fields, n, c->err, sizeof(c->err)) < 0) {
		json_object_put(obj);
		reply_fault(c, c->err);
		return NULL;
	}
	return obj;
}

static const char *state_string(struct api *a)
{
	if (!a->vm)
		return "Not started";
	return vm_is_paused(a->vm) ? "Paused" : "Running";
}

/* ---- GET --------------------------------------------------------------- */

static void get_instance_info(struct api *a, struct ctx *c)
{
	struct json_object *o = json_object_new_object();

	json_object_object_add(o, "id", json_object_new_string(a->id));
	json_object_object_add(o, "state", json_object_new_string(state_string(a)));
	json_object_object_add(o, "vmm_version", json_object_new_string(VMM_VERSION));
	json_object_object_add(o, "app_name", json_object_new_string("Firecracker"));
	reply_json(c, 200, o);
}

static void get_version(struct api *a, struct ctx *c)
{
	struct json_object *o = json_object_new_object();

	json_object_object_add(o, "firecracker_version", json_object_new_string(VMM_VERSION));
	reply_json(c, 200, o);
}

static void get_machine_config(struct api *a, struct ctx *c)
{
	struct json_object *o = json_object_new_object();

	json_object_object_add(o, "vcpu_count", json_object_new_int(a->vcpu_count));
	json_object_object_add(o, "mem_size_mib", json_object_new_uint64(a->mem_size_mib));
	json_object_object_add(o, "smt", json_object_new_boolean(a->smt));
	if (a->cpu_template[0])
		json_object_object_add(o, "cpu_template", json_object_new_string(a->cpu_template));
	json_object_object_add(o, "track_dirty_pages", json_object_new_boolean(a->track_dirty_pages));
	json_object_object_add(o, "huge_pages", json_object_new_string("None"));
	reply_json(c, 200, o);
}

/* ---- pre-boot resources ------------------------------------------------ */

static const char *const cpu_templates[] = { "C3", "T2", "T2S", "T2CL", "T2A", "None", NULL };
static const char *const huge_pages[] = { "None", "2M", NULL };

/* PUT replaces the whole configuration; PATCH only what it names. */
static void set_machine_config(struct api *a, struct ctx *c, bool patch)
{
	const struct body_field fields[] = {
		{ "vcpu_count", BT_U8, !patch },
		{ "mem_size_mib", BT_USIZE, !patch },
		{ "smt", BT_BOOL },
		{ "cpu_template", BT_ENUM, false, true, "StaticCpuTemplate", cpu_templates },
		{ "track_dirty_pages", BT_BOOL },
		{ "huge_pages", BT_ENUM, false, false, "HugePageConfig", huge_pages },
	};
	struct json_object *o;
	unsigned vcpus;
	uint64_t mem;
	bool smt;
	const char *tmpl, *huge;

	if (a->vm)
		return reply_fault(c, MSG_AFTER_START);
	o = parse_body(c, fields, ARRAY_SIZE(fields));
	if (!o)
		return;
	vcpus = (unsigned)body_u64(o, "vcpu_count", patch ? a->vcpu_count : 1);
	mem = body_u64(o, "mem_size_mib", patch ? a->mem_size_mib : 128);
	smt = body_bool(o, "smt", patch ? a->smt : false);
	tmpl = body_string(o, "cpu_template");
	huge = body_string(o, "huge_pages");

	if (vcpus == 0 || vcpus > VM_MAX_VCPUS || (smt && vcpus > 1 && vcpus % 2))
		reply_fault(c, "The vCPU number is invalid! The vCPU number can only be 1 or an even "
			       "number when SMT is enabled.");
	else if (mem == 0)
		reply_fault(c, "The memory size (MiB) is invalid.");
	else if (huge && strcmp(huge, "None"))
		reply_fault(c, "Huge pages are not supported by minivm.");
	else {
		a->vcpu_count = vcpus;
		a->mem_size_mib = mem;
		a->smt = smt;
		a->track_dirty_pages = body_bool(o, "track_dirty_pages",
						 patch ? a->track_dirty_pages : false);
		if (tmpl || !patch)
			snprintf(a->cpu_template, sizeof(a->cpu_template), "%s",
				 tmpl && strcmp(tmpl, "None") ? tmpl : "");
		c->resp->deprecation = tmpl != NULL;
		a->boot_path = true;
		reply_204(c);
	}
	json_object_put(o);
}

static void put_boot_source(struct api *a, struct ctx *c)
{
	static const struct body_field fields[] = {
		{ "kernel_image_path", BT_STRING, true },
		{ "initrd_path", BT_STRING, false, true },
		{ "boot_args", BT_STRING, false, true },
	};
	struct json_object *o;
	const char *kernel, *initrd;
	int fd;

	if (a->vm)
		return reply_fault(c, MSG_AFTER_START);
	o = parse_body(c, fields, ARRAY_SIZE(fields));
	if (!o)
		return;
	kernel = body_string(o, "kernel_image_path");
	initrd = body_string(o, "initrd_path");
	/* Firecracker opens both files at PUT time. */
	fd = open(kernel, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		reply_faultf(c, "The kernel file cannot be opened: %s (os error %d)",
			     strerror(errno), errno);
		goto out;
	}
	close(fd);
	if (initrd) {
		fd = open(initrd, O_RDONLY | O_CLOEXEC);
		if (fd < 0) {
			reply_faultf(c, "The initrd file cannot be opened due to invalid path or "
					"invalid permissions. %s (os error %d)",
				     strerror(errno), errno);
			goto out;
		}
		close(fd);
	}
	free(a->kernel_path);
	a->kernel_path = strdup(kernel);
	free(a->boot_args);
	a->boot_args = body_string(o, "boot_args") ? strdup(body_string(o, "boot_args")) : NULL;
	a->boot_path = true;
	reply_204(c);
out:
	json_object_put(o);
}

static bool id_is_valid(const char *id)
{
	for (; *id; id++)
		if (!(*id == '_' || (*id >= 'a' && *id <= 'z') || (*id >= 'A' && *id <= 'Z') ||
		      (*id >= '0' && *id <= '9')))
			return false;
	return true;
}

/* minivm has no block device: a drive is checked and recorded, nothing more. */
static void put_drive(struct api *a, struct ctx *c, const char *id)
{
	static const char *const cache_types[] = { "Unsafe", "Writeback", NULL };
	static const char *const io_engines[] = { "Sync", "Async", NULL };
	static const struct body_field fields[] = {
		{ "drive_id", BT_STRING, true },
		{ "partuuid", BT_STRING, false, true },
		{ "is_root_device", BT_BOOL, true },
		{ "cache_type", BT_ENUM, false, false, "CacheType", cache_types },
		{ "is_read_only", BT_BOOL, false, true },
		{ "path_on_host", BT_STRING, false, true },
		{ "rate_limiter", BT_ANY_OBJECT, false, true },
		{ "io_engine", BT_ENUM, false, true, "FileEngineType", io_engines },
		{ "socket", BT_STRING, false, true },
	};
	struct json_object *o;

	if (!id || !*id)
		return reply_fault(c, "The ID cannot be empty.");
	if (!id_is_valid(id))
		return reply_fault(c, "API Resource IDs can only contain alphanumeric characters "
				      "and underscores.");
	o = parse_body(c, fields, ARRAY_SIZE(fields));
	if (!o)
		return;
	if (strcmp(id, body_string(o, "drive_id")))
		reply_fault(c, "The id from the path does not match the id from the body!");
	else if (a->vm)
		reply_fault(c, MSG_AFTER_START);
	else {
		log_info("drive %s recorded (minivm has no block device)", id);
		a->boot_path = true;
		reply_204(c);
	}
	json_object_put(o);
}

/* ---- actions and VM state ---------------------------------------------- */

static void console_line(const char *line, void *userdata)
{
	flockfile(stdout);
	fputs(line, stdout);
	fputc('\n', stdout);
	fflush(stdout);
	funlockfile(stdout);
}

static void instance_start(struct api *a, struct ctx *c)
{
	struct vm_config cfg = {
		.vcpu_count = a->vcpu_count,
		.mem_size_mib = a->mem_size_mib,
		.split_mib = a->opts.split_mib,
		.anon = a->opts.anon,
		.cpu = a->opts.cpu,
		.boot_args = a->boot_args,
	};
	struct error err = ERROR_INIT;
	int r;

	if (a->vm)
		return reply_fault(c, MSG_AFTER_START);
	if (!a->kernel_path)
		return reply_fault(c, "Start microVM error: Cannot start microvm without kernel "
				      "configuration.");
	r = vm_create_boot(&cfg, a->kernel_path, &a->vm, &err);
	if (r < 0)
		return reply_faultf(c, "Start microVM error: %s", error_msg(&err));
	vm_set_console(a->vm, console_line, NULL);
	r = vm_start(a->vm, false);
	if (r < 0) {
		vm_destroy(a->vm);
		a->vm = NULL;
		return reply_faultf(c, "Start microVM error: cannot start vCPUs: %s", strerror(-r));
	}
	log_info("booted: %u vCPU(s), %llu MiB%s, %s CPU", a->vcpu_count,
		 (unsigned long long)a->mem_size_mib, a->opts.anon ? ", anonymous memory" : "",
		 vm_cpu_name(a->vm));
	reply_204(c);
}

static void put_actions(struct api *a, struct ctx *c)
{
	static const char *const actions[] = { "FlushMetrics", "InstanceStart", "SendCtrlAltDel",
					       NULL };
	static const struct body_field fields[] = {
		{ "action_type", BT_ENUM, true, false, "ActionType", actions },
	};
	struct json_object *o = parse_body(c, fields, ARRAY_SIZE(fields));
	const char *action;

	if (!o)
		return;
	action = body_string(o, "action_type");
	if (!strcmp(action, "InstanceStart"))
		instance_start(a, c);
	else if (!strcmp(action, "FlushMetrics"))
		reply_204(c);
	else if (!a->vm)
		reply_fault(c, MSG_BEFORE_START);
	else
		reply_fault(c, "SendCtrlAltDel is not supported by minivm: it has no i8042 device.");
	json_object_put(o);
}

static void patch_vm(struct api *a, struct ctx *c)
{
	static const char *const states[] = { "Paused", "Resumed", NULL };
	static const struct body_field fields[] = {
		{ "state", BT_ENUM, true, false, "VmState", states },
	};
	struct json_object *o = parse_body(c, fields, ARRAY_SIZE(fields));
	bool pause;
	int r;

	if (!o)
		return;
	pause = !strcmp(body_string(o, "state"), "Paused");
	json_object_put(o);
	if (!a->vm)
		return reply_fault(c, MSG_BEFORE_START);
	r = pause ? vm_pause(a->vm) : vm_resume(a->vm);
	if (r < 0)
		return reply_faultf(c, "Internal error while %s microVM: %s",
				    pause ? "pausing" : "resuming", strerror(-r));
	reply_204(c);
}

/* ---- snapshots --------------------------------------------------------- */

static void snapshot_create(struct api *a, struct ctx *c)
{
	static const char *const types_fork[] = { "Diff", "Full", "VmstateOnly", NULL };
	static const char *const types_stock[] = { "Diff", "Full", NULL };
	const struct body_field fields[] = {
		{ "snapshot_type", BT_ENUM, false, false, "SnapshotType",
		  a->opts.stock ? types_stock : types_fork },
		{ "snapshot_path", BT_PATH, true },
		{ "mem_file_path", BT_PATH, true },
	};
	struct json_object *o = parse_body(c, fields, ARRAY_SIZE(fields));
	const char *type, *vmstate, *mem;
	struct error err = ERROR_INIT;
	uint64_t t0 = now_usec();

	if (!o)
		return;
	type = body_string(o, "snapshot_type") ?: "Full";
	vmstate = body_string(o, "snapshot_path");
	mem = body_string(o, "mem_file_path");

	if (!a->vm)
		reply_fault(c, MSG_BEFORE_START);
	else if (!strcmp(type, "Diff") && !a->track_dirty_pages)
		reply_fault(c, "The requested operation is not supported: Diff snapshots are not "
			       "allowed on uVMs with dirty page tracking disabled.");
	else if (!vm_is_paused(a->vm))
		reply_fault(c, "Create snapshot error: Cannot save the microVM state: Operation not "
			       "allowed: save/restore unavailable while running");
	else if (vm_save_vmstate(a->vm, vmstate, &err) < 0)
		reply_faultf(c, "Create snapshot error: Cannot save the microVM state: %s",
			     error_msg(&err));
	/* VmstateOnly never opens mem_file_path. A Diff is written dense: minivm
	 * does not track dirty pages, and a full image is a valid diff base. */
	else if (strcmp(type, "VmstateOnly") && vm_save_memory(a->vm, mem, &err) < 0)
		reply_faultf(c, "Create snapshot error: Cannot write memory file: %s",
			     error_msg(&err));
	else {
		log_info("snapshot %s written in %llu us", type,
			 (unsigned long long)(now_usec() - t0));
		reply_204(c);
	}
	json_object_put(o);
}

static void snapshot_load(struct api *a, struct ctx *c)
{
	static const char *const backends[] = { "File", "Uffd", NULL };
	const struct body_field backend_fields[] = {
		{ "backend_path", BT_PATH, true },
		{ "backend_type", BT_ENUM, true, false, "MemBackendType", backends },
		{ "shared", BT_BOOL },
	};
	const struct body_field fields[] = {
		{ "snapshot_path", BT_PATH, true },
		{ "mem_file_path", BT_PATH, false, true },
		{ "mem_backend", BT_STRUCT, false, true, "MemBackendConfig", NULL, backend_fields,
		  a->opts.stock ? 2 : 3 },
		{ "enable_diff_snapshots", BT_BOOL },
		{ "resume_vm", BT_BOOL },
		{ "network_overrides", BT_SEQ },
	};
	struct json_object *o = parse_body(c, fields, ARRAY_SIZE(fields)), *backend;
	struct error err = ERROR_INIT;
	const char *mem_path;
	bool shared = false, resume;
	int r;

	if (!o)
		return;
	backend = body_get(o, "mem_backend");
	mem_path = body_string(o, "mem_file_path");
	if (backend && mem_path) {
		body_custom_error(c->err, sizeof(c->err), "too many fields: either `mem_backend` or "
							  "`mem_file_path` exclusively is required");
		reply_fault(c, c->err);
		goto out;
	}
	if (!backend && !mem_path) {
		body_custom_error(c->err, sizeof(c->err),
				  "missing field: either `mem_backend` or `mem_file_path` is required");
		reply_fault(c, c->err);
		goto out;
	}
	c->resp->deprecation = mem_path != NULL;
	if (backend) {
		if (!strcmp(body_string(backend, "backend_type"), "Uffd")) {
			reply_fault(c, "Load snapshot error: the Uffd memory backend is not supported "
				       "by minivm.");
			goto out;
		}
		mem_path = body_string(backend, "backend_path");
		shared = body_bool(backend, "shared", false);
	}
	resume = body_bool(o, "resume_vm", false);

	if (a->vm) {
		reply_fault(c, MSG_AFTER_START);
		goto out;
	}
	if (a->boot_path) {
		reply_fault(c, "Load snapshot error: Loading a microVM snapshot not allowed after "
			       "configuring boot-specific resources.");
		goto out;
	}

	/* From here on a failure is fatal, as in Firecracker. */
	r = vm_create_restore(body_string(o, "snapshot_path"), mem_path, shared, a->opts.split_mib,
			      a->opts.cpu, &a->vm, &err);
	if (r < 0) {
		c->resp->fatal = true;
		reply_faultf(c, "Load snapshot error: Cannot build a microVM from snapshot: %s",
			     error_msg(&err));
		goto out;
	}
	vm_set_console(a->vm, console_line, NULL);
	r = vm_start(a->vm, !resume);
	if (r < 0) {
		c->resp->fatal = true;
		reply_faultf(c, "Load snapshot error: Failed to start vCPUs: %s", strerror(-r));
		goto out;
	}
	a->vcpu_count = vm_vcpu_count(a->vm);
	a->mem_size_mib = vm_mem_size(a->vm) >> 20;
	a->track_dirty_pages = body_bool(o, "enable_diff_snapshots", false);
	log_info("restored %s (%s%s), %s", body_string(o, "snapshot_path"), mem_path,
		 shared ? ", shared" : "", resume ? "running" : "paused");
	reply_204(c);
out:
	json_object_put(o);
}

static void put_uffd_wp(struct api *a, struct ctx *c)
{
	static const struct body_field fields[] = { { "socket", BT_PATH, true } };
	struct json_object *o = parse_body(c, fields, ARRAY_SIZE(fields));
	struct error err = ERROR_INIT;

	if (!o)
		return;
	if (!a->vm)
		reply_fault(c, MSG_BEFORE_START);
	else if (wp_setup(a->vm, body_string(o, "socket"), &err) < 0)
		reply_fault(c, error_msg(&err));
	else
		reply_204(c);
	json_object_put(o);
}

/* ---- routing ----------------------------------------------------------- */

/* Firecracker: trim leading '/', split_terminator('/'). */
static size_t split_path(const char *path, char tokens[][128], size_t max)
{
	size_t n = 0;

	while (*path == '/')
		path++;
	while (*path && n < max) {
		size_t len = strcspn(path, "/");

		snprintf(tokens[n++], 128, "%.*s", (int)MIN(len, (size_t)127), path);
		path += len;
		if (*path == '/')
			path++;
	}
	return n;
}

void api_handle(struct api *a, const struct http_request *req, struct api_response *resp)
{
	struct ctx c = { .req = req, .resp = resp };
	char tok[3][128] = { "", "", "" };
	size_t n = split_path(req->path, tok, 3);
	const char *first = tok[0], *second = n > 1 ? tok[1] : NULL;
	bool body = req->body != NULL;

	memset(resp, 0, sizeof(*resp));
	switch (req->method) {
	case HTTP_GET:
		if (body)
			return reply_fault(&c, "GET request cannot have a body.");
		if (!strcmp(first, ""))
			return get_instance_info(a, &c);
		if (!strcmp(first, "version"))
			return get_version(a, &c);
		if (!strcmp(first, "machine-config"))
			return get_machine_config(a, &c);
		break;
	case HTTP_PUT:
		if (!body)
			return reply_fault(&c, "Empty PUT request.");
		if (!strcmp(first, "actions"))
			return put_actions(a, &c);
		if (!strcmp(first, "boot-source"))
			return put_boot_source(a, &c);
		if (!strcmp(first, "drives"))
			return put_drive(a, &c, second);
		if (!strcmp(first, "machine-config"))
			return set_machine_config(a, &c, false);
		if (!strcmp(first, "snapshot")) {
			if (!second)
				return reply_fault(&c, "Missing snapshot operation type.");
			if (!strcmp(second, "create"))
				return snapshot_create(a, &c);
			if (!strcmp(second, "load"))
				return snapshot_load(a, &c);
			return reply_faultf(&c, "Invalid request method and/or path: PUT /snapshot/%s.",
					    second);
		}
		if (!strcmp(first, "uffd") && !a->opts.stock && second && !strcmp(second, "wp"))
			return put_uffd_wp(a, &c);
		break;
	case HTTP_PATCH:
		if (!body)
			return reply_fault(&c, "Empty PATCH request.");
		if (!strcmp(first, "vm"))
			return patch_vm(a, &c);
		if (!strcmp(first, "machine-config"))
			return set_machine_config(a, &c, true);
		break;
	}
	reply_invalid_path(&c, first);
}

void api_response_done(struct api_response *resp)
{
	free(resp->body);
	resp->body = NULL;
}

bool api_vm_stopped(struct api *a)
{
	return a->vm && vm_has_stopped(a->vm);
}

int api_new(const struct api_options *opts, struct api **ret)
{
	struct api *a = calloc(1, sizeof(*a));

	if (!a)
		return -ENOMEM;
	a->opts = *opts;
	snprintf(a->id, sizeof(a->id), "%s", opts->id ? opts->id : "anonymous-instance");
	a->vcpu_count = 1;
	a->mem_size_mib = 128;
	*ret = a;
	return 0;
}

void api_free(struct api *a)
{
	if (!a)
		return;
	vm_destroy(a->vm);
	free(a->kernel_path);
	free(a->boot_args);
	free(a);
}
