/* SPDX-License-Identifier: MIT
 * tap.h — minimal TAP producer for C tests. A test calls tap_ok()/TAP_CHECK()
 * as it goes and ends with "return tap_done();". A missing prerequisite is
 * tap_skip_all(): exit 77, or a failure when the CI environment variable is set.
 */
#pragma once

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int tap_n, tap_failed;

static inline __attribute__((format(printf, 2, 3))) bool tap_ok(bool cond, const char *fmt, ...)
{
	va_list ap;

	printf("%s %d - ", cond ? "ok" : "not ok", ++tap_n);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
	if (!cond)
		tap_failed++;
	return cond;
}

static inline __attribute__((format(printf, 1, 2))) void tap_diag(const char *fmt, ...)
{
	va_list ap;

	printf("# ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
}

static inline int tap_done(void)
{
	printf("1..%d\n", tap_n);
	return tap_failed ? 1 : 0;
}

static inline __attribute__((noreturn)) void tap_skip_all(const char *why)
{
	if (getenv("CI") && *getenv("CI")) {
		printf("not ok 1 - prerequisite missing under CI: %s\n1..1\n", why);
		exit(1);
	}
	printf("1..0 # SKIP %s\n", why);
	exit(77);
}

/* One skipped check, for a part of a test that needs what this machine
 * lacks while the rest runs (the KVM half of vm-core.t). Not a failure under
 * CI: use it only where the rest of the test covers the same code. */
static inline void tap_skip(const char *why)
{
	printf("ok %d # SKIP %s\n", ++tap_n, why);
	fflush(stdout);
}

/* Guests run on KVM where /dev/kvm works, else on forkfs-minivm's emulated
 * CPU (--cpu auto): say which, as tests/lib.sh's require_guest does. */
static inline void tap_diag_guest_cpu(void)
{
	const char *cpu = getenv("FORKFS_MINIVM_CPU");

	if (cpu && !strcmp(cpu, "emulated"))
		tap_diag("guests run on the emulated CPU (FORKFS_MINIVM_CPU)");
	else if (access("/dev/kvm", R_OK | W_OK) == 0)
		tap_diag("guests run on KVM");
	else
		tap_diag("guests run on the emulated CPU (no usable /dev/kvm)");
}

/* Check an expression; the description is the expression itself. */
#define TAP_CHECK(expr) tap_ok((expr), "%s (%s:%d)", #expr, __FILE__, __LINE__)
