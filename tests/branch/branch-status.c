/* SPDX-License-Identifier: MIT
 * branch-status.t — the status text and its persistence, without a VMM:
 * branch_status_format() renders the SPEC's keys; branch_load() reads a ready
 * branch back, turns a branch that was copying into failed "interrupted", and
 * refuses a ready branch whose memory.bin is missing or of the wrong size.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "common/nolinks.h"
#include "common/util.h"
#include "branch/branch.h"
#include "branch/layer.h"
#include "tests/tap.h"

static char tmpdir[] = "/tmp/forkfs-status.XXXXXX";

static void put(const char *dir, const char *name, const char *text)
{
	char p[512];

	snprintf(p, sizeof(p), "%s/%s", dir, name);
	if (write_file_atomic(p, text, strlen(text), 0600) < 0)
		tap_diag("cannot write %s", p);
}

static struct branch *load(const char *name, const char *state_text, long mem_size)
{
	char dir[512], p[600];
	struct branch *b = NULL;
	int fd;

	snprintf(dir, sizeof(dir), "%s/%s", tmpdir, name);
	mkdir(dir, 0700);
	put(dir, "branch.state", state_text);
	if (mem_size >= 0) {
		snprintf(p, sizeof(p), "%s/memory.bin", dir);
		fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		if (fd >= 0) {
			if (ftruncate(fd, mem_size) < 0)
				tap_diag("ftruncate failed");
			close(fd);
		}
	}
	if (branch_load(dir, &b) < 0)
		return NULL;
	return b;
}

int main(void)
{
	struct branch_status st = {
		.state = BRANCH_COPYING, .mode = BRANCH_LIVE, .bytes_total = 4096 * 100,
		.bytes_copied = 4096 * 25, .pages_faulted = 3, .pause_us = 812, .elapsed_ms = 40,
	};
	char text[1024];
	struct branch *b;
	struct layer_view *v;
	size_t n;

	if (!mkdtemp(tmpdir))
		return 1;
	n = branch_status_format(&st, text, sizeof(text));
	TAP_CHECK(n == strlen(text));
	TAP_CHECK(strncmp(text, "copying\n", 8) == 0);
	TAP_CHECK(strstr(text, "\nmode: live\n") != NULL);
	TAP_CHECK(strstr(text, "\nprogress: 25\n") != NULL);
	TAP_CHECK(strstr(text, "\nbytes_total: 409600\n") != NULL);
	TAP_CHECK(strstr(text, "\nbytes_copied: 102400\n") != NULL);
	TAP_CHECK(strstr(text, "\npages_faulted: 3\n") != NULL);
	TAP_CHECK(strstr(text, "\npause_us: 812\n") != NULL);
	TAP_CHECK(strstr(text, "\nelapsed_ms: 40\n") != NULL);
	TAP_CHECK(strstr(text, "error:") == NULL);
	st.state = BRANCH_FAILED;
	snprintf(st.error, sizeof(st.error), "store full");
	branch_status_format(&st, text, sizeof(text));
	TAP_CHECK(strncmp(text, "failed\n", 7) == 0 && strstr(text, "\nerror: store full\n"));
	TAP_CHECK(branch_status_format(&st, text, 10) == 9 && strlen(text) == 9);

	b = load("ready", "ready\nmode: full\nprogress: 100\nbytes_total: 8192\nbytes_copied: 8192\n"
			  "pages_faulted: 0\npause_us: 99\nelapsed_ms: 5\n", 8192);
	if (TAP_CHECK(b != NULL)) {
		branch_get_status(b, &st);
		tap_ok(st.state == BRANCH_READY && st.mode == BRANCH_FULL && st.pause_us == 99 &&
			       st.bytes_total == 8192,
		       "a ready branch loads as ready with its figures");
		v = branch_ready_view(b);
		TAP_CHECK(v && layer_view_depth(v) == 1 && branch_memory_size(b) == 8192);
		layer_view_unref(v);
		branch_unref(b);
	}
	b = load("copying", "copying\nmode: live\nbytes_total: 8192\n", 4096);
	if (TAP_CHECK(b != NULL)) {
		branch_get_status(b, &st);
		tap_ok(st.state == BRANCH_FAILED && strcmp(st.error, "interrupted") == 0,
		       "a branch copying at a restart is failed: interrupted");
		TAP_CHECK(branch_ready_view(b) == NULL);
		branch_unref(b);
	}
	{
		char p[600], *t = NULL;
		snprintf(p, sizeof(p), "%s/copying/branch.state", tmpdir);
		tap_ok(read_file(p, 4096, &t, NULL) == 0 && strncmp(t, "failed\n", 7) == 0,
		       "the failed state is persisted");
		free(t);
	}
	b = load("short", "ready\nmode: live\nbytes_total: 8192\n", 4096);
	if (TAP_CHECK(b != NULL)) {
		branch_get_status(b, &st);
		tap_ok(st.state == BRANCH_FAILED, "a ready branch with a short memory.bin is failed");
		branch_unref(b);
	}
	{
		char cmd[600];
		snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
		if (system(cmd) != 0)
			tap_diag("rm failed");
	}
	return tap_done();
}
