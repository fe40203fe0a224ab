/* SPDX-License-Identifier: MIT
 * fc.h — the Firecracker API client of forkfs (no FUSE, no global state).
 *
 * One struct fc_client is one keep-alive HTTP/1.1 connection to one VMM's API
 * socket (AF_UNIX). Calls are synchronous for the caller and are driven by a
 * private libuv loop owned by the client, so a caller on any thread (a branch
 * worker, a test) gets a bounded call: every request has a timeout, header and
 * body sizes are bounded, and a dead or hung VMM gives -ECONNRESET/-EPIPE or
 * -ETIMEDOUT rather than a hang. A client is used by one thread at a time.
 *
 * Return values: 0 on a 2xx answer; -EREMOTEIO when the VMM answered with an
 * error status (the text of its "fault_message", or of the non-JSON "error"
 * body, is then in fc_client_last_error()); other -errno for transport
 * failures (-ENOENT/-ECONNREFUSED: nobody listens, -ECONNRESET/-EPIPE: the VMM
 * went away, -ETIMEDOUT, -EBADMSG: a malformed answer).
 * See shared/docs/firecracker-protocol.md for the wire details.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define FC_DEFAULT_TIMEOUT_MS 5000
#define FC_MAX_HEADER_BYTES (16 * 1024)
#define FC_MAX_BODY_BYTES (1024 * 1024)
/* Never opened by a forkd VMM for VmstateOnly; any accidental open fails with ENOTDIR. */
#define FC_VMSTATE_ONLY_MEM_PLACEHOLDER "/dev/null/forkfs-vmstate-only-mem-ignored"

struct error;
struct fc_client;

int fc_client_new(const char *api_socket, struct fc_client **ret);
struct fc_client *fc_client_free(struct fc_client *c);
void fc_client_set_timeout(struct fc_client *c, unsigned timeout_ms);
const char *fc_client_socket(const struct fc_client *c);
/* The error text of the last failed call (API fault text or transport reason). */
const char *fc_client_last_error(const struct fc_client *c);
/* The reason of a failed call r for whoever reports it: sets e (common/error.h)
 * to "WHAT: " and fc_client_last_error(c) (the VMM's fault message or the
 * transport reason), or strerror(-r) when c has no text (c may be NULL).
 * Returns r. */
int fc_error(struct fc_client *c, int r, struct error *e, const char *what);

/* A parsed response. body is NUL-terminated (NULL when there is none). */
struct fc_response {
	int status;		/* e.g. 200, 204, 400 */
	char *body;
	size_t body_len;
	bool deprecation;	/* "Deprecation: true" was sent */
};
void fc_response_clear(struct fc_response *r);

/* Parse one complete response from buf (the fuzzed entry point). Returns the
 * number of bytes consumed, 0 when more bytes are needed, -EBADMSG/-EFBIG on
 * malformed or oversized input. */
ssize_t fc_parse_response(const char *buf, size_t len, struct fc_response *ret);
/* Extract the error text of an error body: {"fault_message":"..."} or the
 * non-JSON {"error": "...\n..."} form, with every control character (< 0x20,
 * 0x7f) replaced by '?' (so is fc_client_last_error()'s text): it goes to logs.
 * Returns a malloc'd string or NULL. */
char *fc_error_text(const char *body, size_t len);

/* Raw call. Returns 0 when any HTTP response arrived (check resp->status).
 * resp (may be NULL) is overwritten only on success; fc_response_clear() it.
 * timeout_ms 0 means the client's timeout. */
int fc_request(struct fc_client *c, const char *method, const char *path, const char *json_body,
	       unsigned timeout_ms, struct fc_response *resp);
/* Call and map the status: 0 on 2xx, -EREMOTEIO otherwise (text kept). */
int fc_call(struct fc_client *c, const char *method, const char *path, const char *json_body,
	    unsigned timeout_ms, struct fc_response *resp);

enum fc_vm_state { FC_STATE_NOT_STARTED, FC_STATE_RUNNING, FC_STATE_PAUSED, FC_STATE_UNKNOWN };

struct fc_instance_info {
	char id[128];
	enum fc_vm_state state;
	char vmm_version[64];
	char app_name[64];
};

struct fc_machine_config {
	unsigned vcpu_count;
	uint64_t mem_size_mib;
	bool smt;
	bool track_dirty_pages;
	char huge_pages[16];	/* "None" or "2M"; empty = omit */
};

enum fc_snapshot_type { FC_SNAPSHOT_FULL, FC_SNAPSHOT_DIFF, FC_SNAPSHOT_VMSTATE_ONLY };

struct fc_caps {
	bool uffd_wp;		/* PUT /uffd/wp exists (forkd fork) */
	bool vmstate_only;	/* snapshot_type "VmstateOnly" is understood */
};

int fc_get_instance_info(struct fc_client *c, struct fc_instance_info *ret);
int fc_get_machine_config(struct fc_client *c, struct fc_machine_config *ret);
int fc_put_machine_config(struct fc_client *c, const struct fc_machine_config *mc);
int fc_put_boot_source(struct fc_client *c, const char *kernel_image_path, const char *boot_args,
		       const char *initrd_path);
/* PUT any resource with a caller-made JSON body (config-file resources such as
 * /drives/{id}, /network-interfaces/{id}, /entropy); 0 on 2xx, -EREMOTEIO
 * otherwise. */
int fc_put_json(struct fc_client *c, const char *path, const char *json_body);
int fc_instance_start(struct fc_client *c);
int fc_pause(struct fc_client *c);
int fc_resume(struct fc_client *c);
/* mem_file_path may be NULL for VmstateOnly: the placeholder above is sent. */
int fc_snapshot_create(struct fc_client *c, enum fc_snapshot_type type, const char *snapshot_path,
		       const char *mem_file_path, unsigned timeout_ms);
/* mem_backend File; "shared" is sent only when shared is true (stock rejects the key). */
int fc_snapshot_load(struct fc_client *c, const char *snapshot_path, const char *backend_path,
		     bool shared, bool resume_vm, unsigned timeout_ms);
int fc_uffd_wp(struct fc_client *c, const char *listen_socket_path);
/* Probe the forkd extensions without side effects (paths under /dev/null/). */
int fc_probe_caps(struct fc_client *c, struct fc_caps *ret);

const char *fc_vm_state_to_string(enum fc_vm_state s);
