/* SPDX-License-Identifier: MIT
 * fuzz-handshake.c — fuzz target for uffd_parse_regions(), the parser of the
 * region table a VMM sends with its userfaultfd (untrusted bytes).
 *
 * Invariants checked (abort() on violation): the result is 0, -EINVAL,
 * -EOPNOTSUPP or -ENOMEM; on failure the output is untouched and the reason is
 * set (with that code, one printable line), on success no reason; on success there
 * are 1..UFFD_MAX_REGIONS regions, each page-aligned (base and size), with a
 * 4096-byte page, offsets forming the running total, not wrapping, not
 * overlapping; and parsing again with that total as expect_total succeeds
 * while total + 4096 is refused.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "common/error.h"
#include "tests/fuzz/fuzz.h"
#include "uffd/handshake.h"

const struct fuzz_seed fuzz_seeds[] = {
	FUZZ_SEED("[{\"base_host_virt_addr\":139896748507136,\"size\":1073741824,\"offset\":0,"
		  "\"page_size\":4096,\"page_size_kib\":4096}]"),
	FUZZ_SEED("[{\"base_host_virt_addr\":139896748507136,\"size\":3489660928,\"offset\":0,"
		  "\"page_size\":4096,\"page_size_kib\":4096},{\"base_host_virt_addr\":"
		  "139900000000000,\"size\":805306368,\"offset\":3489660928,\"page_size\":4096,"
		  "\"page_size_kib\":4096}]"),
	FUZZ_SEED("[{\"base_host_virt_addr\":4096,\"size\":8192,\"offset\":0,\"page_size_kib\":4096}]"),
	FUZZ_SEED("[{\"size\":8192,\"offset\":0,\"page_size\":4096,\"base_host_virt_addr\":4096,"
		  "\"x\":{\"y\":[null,true,1.5,\"s\\u00e9\"]}}]"),
	FUZZ_SEED("[{\"base_host_virt_addr\":18446744073709547520,\"size\":4096,\"offset\":0,"
		  "\"page_size\":4096}]"),
	FUZZ_SEED("[{\"base_host_virt_addr\":4096,\"size\":4096,\"offset\":0,\"page_size\":4096},"
		  "{\"base_host_virt_addr\":8192,\"size\":4096,\"offset\":4096,\"page_size\":4096}]"),
};
const size_t fuzz_n_seeds = sizeof(fuzz_seeds) / sizeof(fuzz_seeds[0]);

static void check_table(const struct uffd_region *r, size_t n, uint64_t *ret_total)
{
	uint64_t total = 0;

	if (n == 0 || n > UFFD_MAX_REGIONS)
		abort();
	for (size_t i = 0; i < n; i++) {
		if (r[i].page_size != PAGE_4K || r[i].size == 0 || r[i].size % PAGE_4K ||
		    r[i].base % PAGE_4K || r[i].offset != total || r[i].base + r[i].size < r[i].base)
			abort();
		for (size_t j = 0; j < i; j++)
			if (r[i].base < r[j].base + r[j].size && r[j].base < r[i].base + r[i].size)
				abort();
		if (total + r[i].size < total)
			abort();
		total += r[i].size;
	}
	*ret_total = total;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct uffd_region poison = { 0xdead, 0xbeef, 0xf00d, 0xcafe };
	struct uffd_region regs[UFFD_MAX_REGIONS], again[UFFD_MAX_REGIONS];
	const char *json = (const char *)data;
	struct error e = ERROR_INIT;
	size_t n = 12345, n2 = 0;
	uint64_t total = 0;
	int r;

	for (size_t i = 0; i < UFFD_MAX_REGIONS; i++)
		regs[i] = poison;
	r = uffd_parse_regions(json, size, 0, regs, UFFD_MAX_REGIONS, &n, &e);
	if (r < 0) {
		if (r != -EINVAL && r != -EOPNOTSUPP && r != -ENOMEM)
			abort();
		if (n != 12345 || memcmp(&regs[0], &poison, sizeof(poison)))
			abort();
		if (e.code != r || !e.msg[0])
			abort();
		for (const char *c = e.msg; *c; c++)
			if ((unsigned char)*c < 0x20 || *c == 0x7f)
				abort();
		return 0;
	}
	if (r != 0 || error_is_set(&e))
		abort();
	check_table(regs, n, &total);
	if (uffd_parse_regions(json, size, total, again, UFFD_MAX_REGIONS, &n2, NULL) != 0 ||
	    n2 != n ||
	    memcmp(again, regs, n * sizeof(*regs)))
		abort();
	if (uffd_parse_regions(json, size, total + PAGE_4K, again, UFFD_MAX_REGIONS, &n2, NULL) !=
	    -EINVAL)
		abort();
	return 0;
}
