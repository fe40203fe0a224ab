/* SPDX-License-Identifier: MIT
 * fuzz.h — the contract between a fuzz target and tests/fuzz/fuzz-main.c.
 *
 * A target defines the libFuzzer entry point and a table of seeds. Built with
 * clang -fsanitize=fuzzer, libFuzzer drives LLVMFuzzerTestOneInput and the
 * seed table is unused; linked with fuzz-main.c, the target becomes an
 * ordinary TAP test that replays files or mutates the seeds.
 * A target reports a broken invariant by crashing (abort()), like libFuzzer
 * expects.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

struct fuzz_seed {
	const char *data;
	size_t len;
};

#define FUZZ_SEED(lit) { lit, sizeof(lit) - 1 }

extern const struct fuzz_seed fuzz_seeds[];
extern const size_t fuzz_n_seeds;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
