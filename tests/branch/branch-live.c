/* SPDX-License-Identifier: MIT
 * branch-live.t — the live-branch core against real forkfs-minivm guests.
 *
 * Each case boots a guest that stamps its memory on every vCPU, takes a branch
 * with branch_take() while it writes, waits for "ready", loads the branch into
 * a fresh minivm and requires every vCPU's "guest: verify ok" (and no FAIL).
 * During the copy a reader asks for a range through branch_read_memory(); the
 * bytes must equal the final image (point-in-time reads).
 * Also: --stock falls back to full mode; an injected snapshot failure leaves
 * the VM running and no files behind; a restored VM (memfd handed over by the
 * test, as forkfs does) branches again; cancel mid-copy keeps the guest running.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include "common/error.h"
#include "common/macro.h"
#include "common/util.h"
#include "branch/branch.h"
#include "fc/fc.h"
#include "tests/branch/minivm-proc.h"
#include "tests/tap.h"


static char tmpdir[] = "/tmp/forkfs-branch.XXXXXX";

static int wait_final(struct branch *b, struct branch_status *st, int timeout_s)
{
	uint64_t end = now_usec() + (uint64_t)timeout_s * USEC_PER_SEC;

	for (;;) {
		branch_get_status(b, st);
		if (st->state != BRANCH_COPYING)
			return 0;
		if (now_usec() > end)
			return -ETIMEDOUT;
		usleep(10000);
	}
}

/* Threads of this process whose name starts with prefix. */
static int count_threads(const char *prefix)
{
	char path[64], comm[32];
	struct dirent *d;
	DIR *dir = opendir("/proc/self/task");
	int n = 0;

	while (dir && (d = readdir(dir))) {
		FILE *f;

		if (d->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/self/task/%s/comm", d->d_name);
		f = fopen(path, "re");
		if (f && fgets(comm, sizeof(comm), f) && strncmp(comm, prefix, strlen(prefix)) == 0)
			n++;
		if (f)
			fclose(f);
	}
	if (dir)
		closedir(dir);
	return n;
}

static bool maps_have(const char *needle)
{
	char line[512];
	FILE *f = fopen("/proc/self/maps", "re");
	bool found = false;

	while (f && !found && fgets(line, sizeof(line), f))
		found = strstr(line, needle) != NULL;
	if (f)
		fclose(f);
	return found;
}

static bool file_exists(const char *dir, const char *name)
{
	char p[PATH_MAX];

	snprintf(p, sizeof(p), "%s/%s", dir, name);
	return access(p, F_OK) == 0;
}

static bool vm_state_is(const char *sock, enum fc_vm_state want)
{
	struct fc_instance_info info;
	struct fc_client *c;
	bool ok;

	if (fc_client_new(sock, &c) < 0)
		return false;
	ok = fc_get_instance_info(c, &info) == 0 && info.state == want;
	fc_client_free(c);
	return ok;
}

static int copy_fd(int src, int dst, uint64_t size)
{
	static char buf[1 << 20];
	uint64_t off;
	ssize_t n;

	for (off = 0; off < size; off += (uint64_t)n) {
		n = pread_full(src, buf, sizeof(buf), (off_t)off);
		if (n <= 0)
			return n < 0 ? (int)n : -EIO;
		if (pwrite_full(dst, buf, (size_t)n, (off_t)off) < 0)
			return -EIO;
	}
	return 0;
}

/* Load dir's branch into a fresh minivm (from a memfd copy of memory.bin when
 * memfd_out is given, as forkfs's restore does) and wait for the verdicts. */
static bool restore_and_verify(const char *name, const char *dir, unsigned vcpus, bool stock,
			       struct minivm_proc *p, int *memfd_out)
{
	const char *const stock_args[] = { "--stock", NULL };
	char vmstate[PATH_MAX], mem[PATH_MAX], backend[PATH_MAX];
	struct fc_client *c = NULL;
	bool ok = false;
	int r;

	snprintf(vmstate, sizeof(vmstate), "%s/vmstate", dir);
	snprintf(mem, sizeof(mem), "%s/memory.bin", dir);
	snprintf(backend, sizeof(backend), "%s", mem);
	if (memfd_out) {
		_cleanup_close_ int src = open(mem, O_RDONLY | O_CLOEXEC);
		struct stat s;
		int fd = memfd_create("branch-test-restore", MFD_CLOEXEC);

		if (src < 0 || fd < 0 || fstat(src, &s) < 0 || ftruncate(fd, s.st_size) < 0 ||
		    copy_fd(src, fd, (uint64_t)s.st_size) < 0) {
			tap_diag("memfd copy of %s failed: %m", mem);
			safe_close(fd);
			return false;
		}
		*memfd_out = fd;
		snprintf(backend, sizeof(backend), "/proc/%d/fd/%d", (int)getpid(), fd);
	}
	if (minivm_spawn(tmpdir, name, stock ? stock_args : NULL, p) < 0)
		return false;
	if (fc_client_new(p->sock, &c) < 0)
		goto out;
	r = fc_snapshot_load(c, vmstate, backend, memfd_out != NULL, true, 30000);
	if (r < 0) {
		tap_diag("load %s: %s", name, fc_client_last_error(c));
		goto out;
	}
	if (minivm_wait_lines(p, "guest: verify ", (int)vcpus, 60000) < 0) {
		tap_diag("%s: no verdict from every vCPU", name);
		goto out;
	}
	ok = minivm_count_lines(p, "guest: verify ok") == (int)vcpus &&
	     minivm_count_lines(p, "verify FAIL") == 0;
out:
	if (!ok)
		minivm_dump(p);
	fc_client_free(c);
	return ok;
}

struct branch_case {
	const char *name;
	unsigned vcpus, mem_mib;
	const char *const *args;
	enum branch_mode want_mode;
};

/* Branch a running guest; check mode, point-in-time read, ready, restore. */
static void run_case(const struct branch_case *tc)
{
	char dir[PATH_MAX], rname[64], path[PATH_MAX];
	struct error err = ERROR_INIT;
	struct minivm_proc a = { 0 }, b = { 0 };
	struct branch_status st;
	struct branch *br = NULL;
	struct vmm *v = NULL;
	static char probe[64 * 1024], final[64 * 1024];
	off_t probe_off;
	ssize_t n = -1;
	int r;

	snprintf(dir, sizeof(dir), "%s/%s", tmpdir, tc->name);
	mkdir(dir, 0700);
	if (!tap_ok(minivm_spawn(tmpdir, tc->name, tc->args, &a) == 0 &&
			    minivm_boot(&a, tc->vcpus, tc->mem_mib) == 0,
		    "%s: guest boots", tc->name))
		goto out;
	usleep(300000);	/* let the guest write, and reach pages it has not touched yet */
	if (vmm_new(a.sock, a.pid, -1, tmpdir, &v) < 0)
		goto out;
	r = branch_take(v, dir, BRANCH_MODE_AUTO, &br, &err);
	if (!tap_ok(r == 0, "%s: branch_take (%s)", tc->name, r ? error_msg(&err) : "ok"))
		goto out;
	branch_get_status(br, &st);
	tap_ok(st.mode == tc->want_mode, "%s: mode %s", tc->name, branch_mode_to_string(st.mode));
	tap_ok(vm_state_is(a.sock, FC_STATE_RUNNING), "%s: VM running after the pause window",
	       tc->name);
	tap_diag("%s: pause window %" PRIu64 " us, state %s", tc->name, st.pause_us,
		 branch_state_to_string(st.state));
	/* A reader during the copy: a range near the end, likely not copied yet. */
	probe_off = (off_t)(tc->mem_mib * MIB - 3 * sizeof(probe));
	n = branch_read_memory(br, probe, sizeof(probe), probe_off);
	tap_ok(n == (ssize_t)sizeof(probe), "%s: read during the copy", tc->name);
	r = wait_final(br, &st, 120);
	if (!tap_ok(r == 0 && st.state == BRANCH_READY, "%s: ready (%s) in %" PRIu64 " ms, %" PRIu64
						      " pages faulted",
		    tc->name, branch_state_to_string(st.state), st.elapsed_ms, st.pages_faulted))
		goto out;
	tap_ok(st.bytes_copied == st.bytes_total && st.bytes_total == tc->mem_mib * MIB,
	       "%s: bytes_copied == bytes_total", tc->name);
	snprintf(path, sizeof(path), "%s/memory.bin", dir);
	{
		_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
		tap_ok(fd >= 0 && pread_full(fd, final, sizeof(final), probe_off) == n &&
			       memcmp(probe, final, sizeof(probe)) == 0,
		       "%s: the read during the copy equals the final image", tc->name);
	}
	/* The owner lets go of the VMM (as forkfs does when it stops): the
	 * ready branch must not keep the engine, its uffd and its view of guest
	 * memory alive. */
	v = vmm_unref(v);
	{
		/* The copy's own hold ends just after "ready" is published. */
		uint64_t end = now_usec() + 2 * USEC_PER_SEC;
		bool held;

		while ((held = count_threads("forkfs-fault") > 0 || maps_have("forkfs-minivm-guest")) &&
		       now_usec() < end)
			usleep(10000);
		tap_ok(!held, "%s: a ready branch holds no engine once the VMM is let go",
		       tc->name);
	}
	snprintf(rname, sizeof(rname), "%s-restored", tc->name);
	tap_ok(restore_and_verify(rname, dir, tc->vcpus, tc->want_mode == BRANCH_FULL, &b, NULL),
	       "%s: restored guest verifies its memory", tc->name);
out:
	branch_unref(br);
	vmm_unref(v);
	minivm_kill(&a);
	minivm_kill(&b);
}

/* A VmstateOnly that fails inside the pause: the VM must run again and the
 * branch directory must hold nothing. */
static void test_injected_failure(bool stock)
{
	const char *const stock_args[] = { "--stock", NULL };
	const char *name = stock ? "inject-full" : "inject-live";
	char dir[PATH_MAX], sub[PATH_MAX];
	struct error err = ERROR_INIT;
	struct minivm_proc a = { 0 };
	struct branch *br = NULL;
	struct vmm *v = NULL;
	int r;

	snprintf(dir, sizeof(dir), "%s/%s", tmpdir, name);
	snprintf(sub, sizeof(sub), "%s/vmstate", dir);
	mkdir(dir, 0700);
	mkdir(sub, 0700);	/* the VMM cannot create a file where a directory is */
	if (minivm_spawn(tmpdir, name, stock ? stock_args : NULL, &a) < 0 ||
	    minivm_boot(&a, 1, 64) < 0 || vmm_new(a.sock, a.pid, -1, tmpdir, &v) < 0) {
		tap_ok(false, "%s: set-up", name);
		goto out;
	}
	r = branch_take(v, dir, BRANCH_MODE_AUTO, &br, &err);
	tap_ok(r < 0 && err.code == r, "%s: branch_take fails (%d: %s)", name, r, error_msg(&err));
	tap_ok(vm_state_is(a.sock, FC_STATE_RUNNING), "%s: the VM runs again", name);
	tap_ok(!file_exists(dir, "memory.bin") && !file_exists(dir, "branch.state"),
	       "%s: nothing half-made left", name);
	/* And a later branch of the same VM works. */
	rmdir(sub);
	error_clear(&err);
	r = branch_take(v, dir, BRANCH_MODE_AUTO, &br, &err);
	if (tap_ok(r == 0, "%s: the next branch works (%s)", name, r ? error_msg(&err) : "ok")) {
		struct branch_status st;
		tap_ok(wait_final(br, &st, 120) == 0 && st.state == BRANCH_READY, "%s: ready",
		       name);
	}
out:
	branch_unref(br);
	vmm_unref(v);
	minivm_kill(&a);
}

/* A guest restored from a memfd the test owns (forkfs's restore path) is
 * branched again with the memfd as the source; the grandchild verifies. Then
 * cancel: a branch cancelled mid-copy fails "cancelled", the guest runs on. */
static void test_chain_and_cancel(void)
{
	char dir1[PATH_MAX], dir2[PATH_MAX], dir3[PATH_MAX];
	struct error err = ERROR_INIT;
	struct minivm_proc a = { 0 }, b = { 0 }, c = { 0 };
	struct branch *br = NULL, *br2 = NULL, *br3 = NULL;
	struct vmm *va = NULL, *vb = NULL;
	struct branch_status st;
	int memfd = -1, r;

	snprintf(dir1, sizeof(dir1), "%s/chain1", tmpdir);
	snprintf(dir2, sizeof(dir2), "%s/chain2", tmpdir);
	snprintf(dir3, sizeof(dir3), "%s/cancel", tmpdir);
	mkdir(dir1, 0700);
	mkdir(dir2, 0700);
	mkdir(dir3, 0700);
	if (minivm_spawn(tmpdir, "chain-a", NULL, &a) < 0 || minivm_boot(&a, 2, 128) < 0 ||
	    vmm_new(a.sock, a.pid, -1, tmpdir, &va) < 0)
		goto fail;
	usleep(200000);
	if (branch_take(va, dir1, BRANCH_MODE_LIVE, &br, &err) < 0 ||
	    wait_final(br, &st, 120) < 0 || st.state != BRANCH_READY)
		goto fail;
	if (!tap_ok(restore_and_verify("chain-b", dir1, 2, false, &b, &memfd),
		    "chain: first restore (shared memfd) verifies"))
		goto out;
	if (vmm_new(b.sock, b.pid, memfd, tmpdir, &vb) < 0)
		goto fail;
	usleep(200000);
	r = branch_take(vb, dir2, BRANCH_MODE_LIVE, &br2, &err);
	if (!tap_ok(r == 0 && wait_final(br2, &st, 120) == 0 && st.state == BRANCH_READY,
		    "chain: branch of the restored VM (%s)", r ? error_msg(&err) : "ok"))
		goto out;
	tap_ok(restore_and_verify("chain-c", dir2, 2, false, &c, NULL),
	       "chain: the grandchild verifies");

	r = branch_take(vb, dir3, BRANCH_MODE_LIVE, &br3, &err);
	if (tap_ok(r == 0, "cancel: branch taken (%s)", r ? error_msg(&err) : "ok")) {
		bool was_copying;

		branch_get_status(br3, &st);
		was_copying = st.state == BRANCH_COPYING;
		tap_ok(branch_cancel(br3) == 0, "cancel: branch_cancel");
		tap_ok(wait_final(br3, &st, 30) == 0 && st.state != BRANCH_COPYING,
		       "cancel: copy stopped (%s %s)", branch_state_to_string(st.state), st.error);
		if (was_copying)
			tap_ok(st.state == BRANCH_FAILED && strcmp(st.error, "cancelled") == 0,
			       "cancel: failed with \"cancelled\"");
		tap_ok(vm_state_is(b.sock, FC_STATE_RUNNING), "cancel: guest still running");
		tap_ok(minivm_count_lines(&b, "verify FAIL") == 0, "cancel: guest unharmed");
	}
	goto out;
fail:
	tap_ok(false, "chain: set-up (%s)", error_msg(&err));
out:
	branch_unref(br);
	branch_unref(br2);
	branch_unref(br3);
	vmm_unref(va);
	vmm_unref(vb);
	safe_close(memfd);
	minivm_kill(&a);
	minivm_kill(&b);
	minivm_kill(&c);
}

int main(void)
{
	static const char *const anon[] = { "--anon", NULL };
	static const char *const split[] = { "--mem-split-mib", "64", NULL };
	static const char *const anon_split[] = { "--anon", "--mem-split-mib", "64", NULL };
	static const char *const stock[] = { "--stock", NULL };
	static const struct branch_case cases[] = {
		{ "memfd-2cpu", 2, 128, NULL, BRANCH_LIVE },
		{ "memfd-1cpu", 1, 64, NULL, BRANCH_LIVE },
		{ "anon-2cpu", 2, 128, anon, BRANCH_LIVE },
		{ "memfd-2regions", 2, 96, split, BRANCH_LIVE },
		{ "anon-2regions", 2, 96, anon_split, BRANCH_LIVE },
		{ "stock-full", 2, 64, stock, BRANCH_FULL },
	};
	size_t i;

	if (geteuid() != 0)
		tap_skip_all("needs root");
	tap_diag_guest_cpu();
	if (!getenv("MINIVM") || access(getenv("MINIVM"), X_OK) < 0)
		tap_skip_all("needs forkfs-minivm ($MINIVM)");
	if (!mkdtemp(tmpdir))
		return 1;
	for (i = 0; i < ARRAY_SIZE(cases); i++)
		run_case(&cases[i]);
	test_injected_failure(false);
	test_injected_failure(true);
	test_chain_and_cancel();
	if (!tap_failed) {
		char cmd[PATH_MAX + 16];
		snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
		if (system(cmd) != 0)
			tap_diag("could not remove %s", tmpdir);
	} else {
		tap_diag("kept %s for inspection", tmpdir);
	}
	return tap_done();
}
