/* SPDX-License-Identifier: MIT
 * fuzz-cpu.c — fuzz target for forkfs-minivm's emulated CPU (cpu_run()):
 * the guest's instruction bytes are untrusted input to the VMM. The input is
 * placed as code in a 16 KiB guest memory (and, repeated, fills the rest of
 * it, so loads, stores and jumps land on fuzzed bytes too); the registers start
 * from the input's first bytes. The CPU runs for a budget of memory accesses,
 * then is kicked.
 *
 * Invariants (abort() on violation): cpu_run() returns 0 (kicked) or -EIO
 * with a one-line reason; it returns 0 only once kicked; every host access
 * stays inside the guest memory (ASan and UBSan check the rest).
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "contrib/minivm/cpu.h"
#include "tests/fuzz/fuzz.h"

#define MEM_SIZE (16 * 1024)
#define CODE_AT 0x1000
#define BUDGET 2000

const struct fuzz_seed fuzz_seeds[] = {
	/* the guest's stamp loop (start.S) */
	FUZZ_SEED("\x48\x8d\x43\x01\x48\x89\x03\x48\x89\xd8\x48\x31\xe8\x48\x89\x43\x08\x49\xff\xc4"
		  "\x49\xff\xc5\x4d\x39\xf5\x74\x10\x49\xf7\xc4\xff\x00\x00\x00\x75\xdd\xeb\xd0"),
	/* prefixes, SSE moves, string ops, port I/O, division */
	FUZZ_SEED("\x66\x2e\x0f\x1f\x84\x00\x00\x00\x00\x00\xf3\x41\x0f\x6f\x47\x50\xf3\x0f\x7f\x47"
		  "\x50\x66\x48\x0f\x6e\xc7\x66\x0f\xef\xc1\xf3\xaa\xf3\xa4\xed\xef\x49\xf7\xf1\x48\x99"
		  "\x48\xf7\xf9\x0f\xba\xe6\x05\x0f\xa3\xc6\x0f\xab\x06\xc3"),
	/* calls, pushes, RIP-relative, group 2 and 3, high bytes */
	FUZZ_SEED("\xe8\x05\x00\x00\x00\x50\x58\x9c\x9d\xc3\x48\x8b\x05\xf0\xff\xff\xff\xd3\xe0\xc1"
		  "\xf8\x03\xf6\xd8\x88\xe0\x86\xe3\x0f\x44\xc1\x0f\x94\xc0\x6b\xc0\x07\x0f\xaf\xc1"),
};
const size_t fuzz_n_seeds = sizeof(fuzz_seeds) / sizeof(fuzz_seeds[0]);

static uint8_t mem[MEM_SIZE];
static unsigned budget;
static atomic_bool kick;

static void *bus_mem(void *ctx, uint64_t gpa, size_t len)
{
	(void)ctx;
	if (!--budget)
		atomic_store(&kick, true);
	if (gpa >= MEM_SIZE || len > MEM_SIZE - gpa)
		return NULL;
	return mem + gpa;
}

static uint32_t bus_in(void *ctx, uint16_t port, unsigned size)
{
	(void)ctx;
	return (uint32_t)(port * 2654435761U) >> (32 - 8 * size);
}

static void bus_out(void *ctx, uint16_t port, unsigned size, uint32_t value)
{
	(void)ctx;
	(void)port;
	(void)size;
	(void)value;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct cpu_bus bus = { bus_mem, bus_in, bus_out, NULL };
	struct error err = ERROR_INIT;
	struct cpu_state c = { .rip = CODE_AT, .rflags = 0x2 };
	size_t n = size < MEM_SIZE - CODE_AT ? size : MEM_SIZE - CODE_AT;
	int r;

	if (!size)
		return 0;
	for (size_t i = 0; i < MEM_SIZE; i++)
		mem[i] = data[i % size];
	memcpy(mem + CODE_AT, data, n);
	/* Registers: small values (addresses inside memory) from the input. */
	for (unsigned i = 0; i < 16; i++)
		c.gpr[i] = (uint64_t)data[i % size] << (i % 2 ? 8 : 4);
	c.gpr[CPU_RSP] = MEM_SIZE - 64;
	budget = BUDGET;
	atomic_store(&kick, false);
	r = cpu_run(&c, &bus, &kick, 0, &err);
	if (r != 0 && r != -EIO)
		abort();
	if (r == -EIO && (!error_is_set(&err) || !*error_msg(&err) || strchr(error_msg(&err), '\n')))
		abort();
	if (r == 0 && !atomic_load(&kick))
		abort();
	return 0;
}
