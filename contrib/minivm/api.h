/* SPDX-License-Identifier: MIT
 * api.h — forkfs-minivm's Firecracker API: routing, strict bodies, the
 * instance state machine and its exact error messages (protocol doc §1, §2).
 * One struct api per process; requests are handled one at a time.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "contrib/minivm/http.h"
#include "contrib/minivm/vm.h"

struct api_options {
	const char *id;		/* instance id, "anonymous-instance" by default */
	bool stock;		/* behave like stock Firecracker 1.12: no fork extensions */
	bool anon;		/* boot with private anonymous guest memory */
	uint64_t split_mib;	/* region split for boots and restores; 0 = default */
	enum vm_cpu cpu;	/* KVM, emulated, or auto */
};

struct api_response {
	int status;		/* 200, 204 or 400 */
	bool deprecation;	/* send "Deprecation: true" */
	bool fatal;		/* a failed snapshot load: answer, then end the process */
	char *body;		/* malloc'ed JSON, NULL for none */
};

struct api;

int api_new(const struct api_options *opts, struct api **ret);
/* Stops the VM if one runs. NULL-safe. */
void api_free(struct api *api);

/* Handle one parsed request. Never fails: every problem becomes a response. */
void api_handle(struct api *api, const struct http_request *req, struct api_response *resp);
void api_response_done(struct api_response *resp);

/* True once the guest stopped on its own (shutdown, KVM error): then, as
 * Firecracker does, the process ends. */
bool api_vm_stopped(struct api *api);
