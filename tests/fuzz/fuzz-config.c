/* SPDX-License-Identifier: MIT
 * fuzz-config.c — fuzz target for config_parse() and config_check_prefix(),
 * the parsers of a sandbox's config.json (bytes any user of the mount writes).
 *
 * Invariants (abort() on violation): results are 0, -EINVAL, -EFBIG or
 * -ENOMEM; a failure leaves a one-line reason; a success yields exactly one
 * of the three forms with its fields set (restore-from-branch names pass
 * name_is_valid(), attach sockets are absolute paths); every prefix of a
 * document that parses is accepted by config_check_prefix().
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "common/util.h"
#include "sandbox/config.h"
#include "tests/fuzz/fuzz.h"

const struct fuzz_seed fuzz_seeds[] = {
	FUZZ_SEED("{\"boot-source\":{\"kernel_image_path\":\"/g.img\",\"boot_args\":\"x\"},"
		  "\"machine-config\":{\"vcpu_count\":2,\"mem_size_mib\":256},"
		  "\"drives\":[{\"drive_id\":\"rootfs\",\"path_on_host\":\"/r\",\"is_root_device\":true,"
		  "\"is_read_only\":false}]}"),
	FUZZ_SEED("{\"restore\":{\"branch\":\"agent1/before-tool-call\"}}"),
	FUZZ_SEED("{\"restore\":{\"snapshot_path\":\"/a/vmstate\",\"mem_file_path\":\"/a/m.bin\"}}"),
	FUZZ_SEED("{\"attach\":{\"api_socket\":\"/run/fc.sock\"}}"),
	FUZZ_SEED("{\"network-interfaces\":[{\"iface_id\":\"eth0\",\"host_dev_name\":\"tap0\"}],"
		  "\"boot-source\":{\"kernel_image_path\":\"/k\"}}"),
	FUZZ_SEED("[1,2,{\"restore\":null}]"),
};
const size_t fuzz_n_seeds = sizeof(fuzz_seeds) / sizeof(fuzz_seeds[0]);

static void check_ok(const struct config *c)
{
	switch (c->kind) {
	case CONFIG_BOOT:
		if (!c->root)
			abort();
		break;
	case CONFIG_RESTORE:
		if (c->snapshot_path) {
			if (!c->mem_file_path)
				abort();
		} else if (!name_is_valid(c->branch_sandbox) || !name_is_valid(c->branch_tag)) {
			abort();
		}
		break;
	case CONFIG_ATTACH:
		if (!c->api_socket || c->api_socket[0] != '/')
			abort();
		break;
	default:
		abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = malloc(size + 1);
	struct error err = ERROR_INIT;
	struct config *c = NULL;
	int r;

	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = 0;
	r = config_parse(text, size, &c, &err);
	if (r == 0) {
		if (!c)
			abort();
		check_ok(c);
		config_free(c);
		/* Every prefix of a valid document may still become valid. */
		for (size_t n = 0; n <= size; n += 1 + size / 16) {
			if (config_check_prefix(text, n, NULL) != 0)
				abort();
		}
	} else if (r == -EINVAL || r == -EFBIG) {
		/* A reason, one printable line, and the code returned. */
		if (!err.msg[0] || err.code != r)
			abort();
		for (const char *p = err.msg; *p; p++)
			if ((unsigned char)*p < 0x20 || *p == 0x7f)
				abort();
	} else if (r != -ENOMEM) {
		abort();
	}
	free(text);
	return 0;
}
