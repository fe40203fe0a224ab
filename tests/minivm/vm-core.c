/* SPDX-License-Identifier: MIT
 * vm-core.c — tests forkfs-minivm's KVM core through vm.h alone, on real KVM:
 * boot the guest, let it write, pause, save vmstate + memory, destroy, restore
 * into a new VM (private and shared file mappings) and wait for every vCPU's
 * "guest: verify ok" line. Covers 1 and 2 vCPUs, memfd and anonymous memory,
 * one and two regions. Proves the check can fail (a flipped stamp gives
 * "verify FAIL", so does a changed xmm0 in the vmstate), that a corrupted
 * vmstate is refused, and reports the vm_pause()/vm_resume() latency, the
 * save times and the snapshot sizes.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/error.h"
#include "common/macro.h"
#include "common/nolinks.h"
#include "common/util.h"
#include "contrib/minivm/vm.h"
#include "tests/tap.h"

/* The vmstate CRC (vmstate.c); checked against its documented check value. */
uint64_t vmstate__crc64(uint64_t crc, const void *buf, size_t len);

#define GUEST_FIRST_PAGE (4ULL << 20)

struct console {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	unsigned boot, ok, fail, passed;
	uint64_t writes[VM_MAX_VCPUS];
	char first_fail[256];
};

static struct console con = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER };
static char tmpdir[] = "/tmp/vm-core.XXXXXX";
static const char *guest_img;
static enum vm_cpu test_cpu;	/* the backend of the current pass */

static void console_line(const char *line, void *userdata)
{
	struct console *c = userdata;
	unsigned v;
	unsigned long long pages, writes;

	pthread_mutex_lock(&c->lock);
	if (!strncmp(line, "guest: boot ", 12)) {
		c->boot++;
	} else if (!strncmp(line, "guest: first pass done ", 23)) {
		c->passed++;
	} else if (sscanf(line, "guest: verify ok vcpu=%u pages=%llu writes=%llu", &v, &pages,
			  &writes) == 3) {
		c->ok++;
		if (v < VM_MAX_VCPUS)
			c->writes[v] = writes;
	} else if (!strncmp(line, "guest: verify FAIL", 18)) {
		if (!c->fail++)
			snprintf(c->first_fail, sizeof(c->first_fail), "%s", line);
	}
	pthread_cond_broadcast(&c->cond);
	pthread_mutex_unlock(&c->lock);
	if (getenv("VM_CORE_VERBOSE"))
		tap_diag("console: %s", line);
}

static void console_reset(void)
{
	pthread_mutex_lock(&con.lock);
	con.boot = con.ok = con.fail = con.passed = 0;
	memset(con.writes, 0, sizeof(con.writes));
	con.first_fail[0] = '\0';
	pthread_mutex_unlock(&con.lock);
}

/* Wait until ok + fail verify lines (or boot lines) reach n; false on
 * timeout or when the VM stopped on an unexpected exit. */
static bool console_wait(struct vm *vm, bool boot, unsigned n, unsigned timeout_sec)
{
	uint64_t deadline = now_usec() + timeout_sec * USEC_PER_SEC;
	bool done;

	pthread_mutex_lock(&con.lock);
	for (;;) {
		struct timespec ts;

		done = (boot ? con.boot : con.ok + con.fail) >= n;
		if (done || vm_has_stopped(vm) || now_usec() > deadline)
			break;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 100 * 1000 * 1000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		pthread_cond_timedwait(&con.cond, &con.lock, &ts);
	}
	pthread_mutex_unlock(&con.lock);
	return done;
}

static void path_in_tmp(char *buf, size_t len, const char *name)
{
	snprintf(buf, len, "%s/%s", tmpdir, name);
}

static off_t file_size(const char *path)
{
	struct stat st;

	return stat(path, &st) < 0 ? -1 : st.st_size;
}

/* Does /proc/self/maps show a shared writable mapping of path (or memfd)? */
static bool maps_has_shared(const char *what)
{
	FILE *f = fopen("/proc/self/maps", "re");
	char line[512];
	bool found = false;

	if (!f)
		return false;
	while (fgets(line, sizeof(line), f))
		if (strstr(line, " rw-s ") && strstr(line, what))
			found = true;
	fclose(f);
	return found;
}

/* Restore from the files, run, and wait for one verify line per vCPU. */
static int restore_and_verify(const char *vmstate, const char *mem, bool shared,
			      unsigned vcpus, unsigned *ok, unsigned *fail)
{
	struct vm *vm = NULL;
	struct error err = ERROR_INIT;
	int r;

	console_reset();
	r = vm_create_restore(vmstate, mem, shared, 0, test_cpu, &vm, &err);
	if (r < 0) {
		tap_diag("vm_create_restore: %s", error_msg(&err));
		return r;
	}
	vm_set_console(vm, console_line, &con);
	if (shared && !maps_has_shared(mem))
		tap_diag("no rw-s mapping of %s in /proc/self/maps", mem);
	r = shared && !maps_has_shared(mem) ? -EINVAL : 0;
	if (r == 0)
		r = vm_start(vm, false);
	if (r == 0 && !console_wait(vm, false, vcpus, 30))
		r = -ETIMEDOUT;
	vm_destroy(vm);
	pthread_mutex_lock(&con.lock);
	*ok = con.ok;
	*fail = con.fail;
	if (con.fail)
		tap_diag("first failure: %s", con.first_fail);
	pthread_mutex_unlock(&con.lock);
	return r;
}

/* Boot, write for ~0.5 s, pause, save both files, destroy. */
static int boot_and_snapshot(const struct vm_config *cfg, const char *vmstate, const char *mem)
{
	struct vm *vm = NULL;
	struct error err = ERROR_INIT;
	uint64_t t0, t1;
	int r;

	console_reset();
	r = vm_create_boot(cfg, guest_img, &vm, &err);
	if (r < 0) {
		tap_diag("vm_create_boot: %s", error_msg(&err));
		return r;
	}
	vm_set_console(vm, console_line, &con);
	TAP_CHECK(cfg->anon ? !maps_has_shared("memfd:forkfs-minivm-guest")
			    : maps_has_shared("memfd:forkfs-minivm-guest"));
	r = vm_start(vm, false);
	if (r == 0 && !console_wait(vm, true, cfg->vcpu_count, 10))
		r = -ETIMEDOUT;
	if (r == 0) {
		usleep(500 * 1000);
		TAP_CHECK(vm_save_vmstate(vm, vmstate, &err) == -EBUSY);
		error_clear(&err);
		r = vm_pause(vm);
	}
	t0 = now_usec();
	if (r == 0 && (r = vm_save_vmstate(vm, vmstate, &err)) < 0)
		tap_diag("vm_save_vmstate: %s", error_msg(&err));
	t1 = now_usec();
	if (r == 0 && (r = vm_save_memory(vm, mem, &err)) < 0)
		tap_diag("vm_save_memory: %s", error_msg(&err));
	if (r == 0)
		tap_diag("vm_save_vmstate took %llu us, vm_save_memory %llu us",
			 (unsigned long long)(t1 - t0), (unsigned long long)(now_usec() - t1));
	vm_destroy(vm);
	return r;
}

/* Count pages with a non-zero stamp in [from, to) of a memory image. */
static unsigned long stamped_pages(const char *path, uint64_t from, uint64_t to)
{
	unsigned long n = 0;
	uint64_t stamp;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	for (uint64_t off = from; fd >= 0 && off < to; off += 4096)
		if (pread(fd, &stamp, 8, (off_t)off) == 8 && stamp)
			n++;
	safe_close(fd);
	return n;
}

static void run_case(unsigned vcpus, uint64_t mem_mib, uint64_t split_mib, bool anon)
{
	struct vm_config cfg = { vcpus, mem_mib, split_mib, anon, test_cpu };
	char vmstate[256], mem[256], name[128];
	unsigned ok, fail;
	int r;

	snprintf(name, sizeof(name), "%u vCPU, %llu MiB, %s, %s", vcpus,
		 (unsigned long long)mem_mib, anon ? "anon" : "memfd",
		 split_mib && mem_mib > split_mib ? "two regions" : "one region");
	path_in_tmp(vmstate, sizeof(vmstate), "vmstate");
	path_in_tmp(mem, sizeof(mem), "memory.bin");

	r = boot_and_snapshot(&cfg, vmstate, mem);
	if (!tap_ok(r == 0, "%s: boot, write, pause, save", name))
		return;
	tap_ok(file_size(mem) == (off_t)(mem_mib << 20), "%s: memory image is %llu bytes", name,
	       (unsigned long long)(mem_mib << 20));
	tap_diag("%s: vmstate %lld bytes, memory %lld bytes", name, (long long)file_size(vmstate),
		 (long long)file_size(mem));
	if (split_mib && mem_mib > split_mib) {
		unsigned long n = stamped_pages(mem, split_mib << 20, mem_mib << 20);

		tap_diag("%s: %lu stamped pages in region 1 (GPA 4 GiB)", name, n);
		if (vcpus > 1)
			tap_ok(n > 0, "%s: the guest stamps region 1 too", name);
	}

	/* Private first: a shared restore writes through to the image. */
	r = restore_and_verify(vmstate, mem, false, vcpus, &ok, &fail);
	tap_ok(r == 0 && ok == vcpus && fail == 0, "%s: private restore verifies on every vCPU",
	       name);
	r = restore_and_verify(vmstate, mem, true, vcpus, &ok, &fail);
	tap_ok(r == 0 && ok == vcpus && fail == 0,
	       "%s: shared (rw-s) restore verifies on every vCPU", name);
	pthread_mutex_lock(&con.lock);
	for (unsigned i = 0; i < vcpus; i++)
		tap_diag("%s: vcpu %u had done %llu writes", name, i,
			 (unsigned long long)con.writes[i]);
	pthread_mutex_unlock(&con.lock);
}

/* Change the stamp of one written page in the image: the guest must notice. */
static void check_verify_can_fail(void)
{
	struct vm_config cfg = { 2, 64, 0, false, test_cpu };
	char vmstate[256], mem[256];
	uint64_t stamp = 0;
	unsigned ok, fail;
	off_t off;
	int fd, r;

	path_in_tmp(vmstate, sizeof(vmstate), "vmstate");
	path_in_tmp(mem, sizeof(mem), "memory.bin");
	if (!tap_ok(boot_and_snapshot(&cfg, vmstate, mem) == 0, "flip: boot and snapshot"))
		return;
	fd = open(mem, O_RDWR | O_CLOEXEC);
	for (off = GUEST_FIRST_PAGE; fd >= 0 && off < (off_t)(64 << 20); off += 4096)
		if (pread(fd, &stamp, 8, off) == 8 && stamp)
			break;
	if (!tap_ok(fd >= 0 && stamp, "flip: found a stamped page at 0x%llx (stamp %llu)",
		    (unsigned long long)off, (unsigned long long)stamp)) {
		if (fd >= 0)
			close(fd);
		return;
	}
	stamp ^= 0x100;
	TAP_CHECK(pwrite(fd, &stamp, 8, off) == 8);
	close(fd);
	r = restore_and_verify(vmstate, mem, false, 2, &ok, &fail);
	tap_ok(r == 0 && fail == 1 && ok == 1, "flipped stamp: exactly one vCPU reports verify FAIL");
}

/* Change xmm0 in the saved XSAVE area (vmstate.c documents the layout) and
 * re-seal the CRC: the guest must notice that its FPU/SSE state changed. */
static void check_fpu_check_can_fail(void)
{
	struct vm_config cfg = { 1, 64, 0, false, test_cpu };
	const size_t xmm0 = 96 + 16 + sizeof(struct kvm_regs) + sizeof(struct kvm_sregs) + 160;
	char vmstate[256], mem[256];
	_cleanup_free_ char *buf = NULL;
	unsigned ok = 0, fail = 0;
	uint64_t crc;
	size_t len;
	int r;

	path_in_tmp(vmstate, sizeof(vmstate), "vmstate");
	path_in_tmp(mem, sizeof(mem), "memory.bin");
	if (!tap_ok(boot_and_snapshot(&cfg, vmstate, mem) == 0, "fpu: boot and snapshot"))
		return;
	if (!tap_ok(read_file(vmstate, 1 << 20, &buf, &len) == 0 && len > xmm0 + 16,
		    "fpu: read the vmstate"))
		return;
	buf[xmm0 + 2] ^= 0x5a;
	crc = vmstate__crc64(0, buf, len - 8);
	memcpy(buf + len - 8, &crc, 8);
	TAP_CHECK(write_file_atomic(vmstate, buf, len, 0600) == 0);
	r = restore_and_verify(vmstate, mem, false, 1, &ok, &fail);
	pthread_mutex_lock(&con.lock);
	tap_ok(r == 0 && fail == 1 && strstr(con.first_fail, " fpu "),
	       "changed xmm0 in the vmstate: the guest reports verify FAIL ... fpu");
	pthread_mutex_unlock(&con.lock);
}

static int copy_file(const char *from, const char *to, off_t flip_at)
{
	_cleanup_free_ char *buf = NULL;
	size_t len;
	int r = read_file(from, 1 << 20, &buf, &len);

	if (r < 0)
		return r;
	if (flip_at >= 0 && (size_t)flip_at < len)
		buf[flip_at] ^= 0x40;
	return write_file_atomic(to, buf, len, 0600);
}

static void check_vmstate_rejected(void)
{
	char vmstate[256], bad[256], mem[256];
	struct error err = ERROR_INIT;
	struct vm *vm = NULL;
	int r;

	path_in_tmp(vmstate, sizeof(vmstate), "vmstate");
	path_in_tmp(bad, sizeof(bad), "vmstate.bad");
	path_in_tmp(mem, sizeof(mem), "memory.bin");

	TAP_CHECK(copy_file(vmstate, bad, file_size(vmstate) / 2) == 0);
	error_clear(&err);
	r = vm_create_restore(bad, mem, false, 0, test_cpu, &vm, &err);
	tap_ok(r < 0 && strstr(error_msg(&err), "checksum"), "corrupt vmstate byte refused: %s",
	       error_msg(&err));

	TAP_CHECK(copy_file(vmstate, bad, 0) == 0);
	error_clear(&err);
	r = vm_create_restore(bad, mem, false, 0, test_cpu, &vm, &err);
	tap_ok(r < 0 && strstr(error_msg(&err), "bad magic"), "bad vmstate magic refused: %s",
	       error_msg(&err));

	TAP_CHECK(truncate(mem, (64 << 20) - 4096) == 0);
	error_clear(&err);
	r = vm_create_restore(vmstate, mem, false, 0, test_cpu, &vm, &err);
	tap_ok(r < 0 && strstr(error_msg(&err), "memory file"),
	       "memory image of the wrong size refused: %s", error_msg(&err));
}

/* A guest that halts at once is an exit the core does not expect: the VM
 * must stop cleanly (logged, threads gone), not crash the process. */
static void check_unexpected_exit(void)
{
	struct vm_config cfg = { 2, 16, 0, false, test_cpu };
	static const unsigned char hlt[] = { 0xf4 };
	char img[256];
	struct error err = ERROR_INIT;
	struct vm *vm = NULL;
	uint64_t deadline;

	path_in_tmp(img, sizeof(img), "hlt.img");
	if (!tap_ok(write_file_atomic(img, hlt, sizeof(hlt), 0600) == 0 &&
			vm_create_boot(&cfg, img, &vm, &err) == 0,
		    "hlt guest: created %s", error_msg(&err)))
		return;
	TAP_CHECK(vm_start(vm, false) == 0);
	deadline = now_usec() + 10 * USEC_PER_SEC;
	while (!vm_has_stopped(vm) && now_usec() < deadline)
		usleep(10 * 1000);
	tap_ok(vm_has_stopped(vm), "hlt guest: the VM stopped on the unexpected exit");
	TAP_CHECK(vm_pause(vm) == 0);
	vm_destroy(vm);
	unlink(img);
}

/* wset_mib=1 on the command line: after its first pass the guest rewrites
 * only its first MiB (256 pages on one vCPU). In the image, pages past the
 * working set hold their first-pass stamp k + 1, pages in it later ones; the
 * restored guest verifies every page. */
static void check_wset(void)
{
	struct vm_config cfg = { .vcpu_count = 1, .mem_size_mib = 16, .cpu = test_cpu,
				 .boot_args = "console=none wset_mib=1" };
	char vmstate[256], mem[256];
	unsigned ok = 0, fail = 0, bad_cold = 0, hot = 0;
	const uint64_t first = GUEST_FIRST_PAGE, pages = (16ULL << 20) / 4096 - first / 4096;
	int fd;

	path_in_tmp(vmstate, sizeof(vmstate), "vmstate");
	path_in_tmp(mem, sizeof(mem), "memory.bin");
	if (!tap_ok(boot_and_snapshot(&cfg, vmstate, mem) == 0, "wset: boot and snapshot"))
		return;
	pthread_mutex_lock(&con.lock);
	tap_ok(con.passed == 1, "wset: the guest said once that its first pass was done (%u)",
	       con.passed);
	pthread_mutex_unlock(&con.lock);
	fd = open(mem, O_RDONLY | O_CLOEXEC);
	for (uint64_t k = 0; fd >= 0 && k < pages; k++) {
		uint64_t stamp = 0;

		if (pread(fd, &stamp, 8, (off_t)(first + k * 4096)) != 8)
			break;
		if (k < 256)
			hot += stamp > pages;
		else
			bad_cold += stamp != k + 1;
	}
	safe_close(fd);
	tap_ok(hot == 256 && !bad_cold,
	       "wset: the first 256 pages were rewritten (%u), the other %llu hold their first "
	       "stamp (%u do not)", hot, (unsigned long long)(pages - 256), bad_cold);
	tap_ok(restore_and_verify(vmstate, mem, false, 1, &ok, &fail) == 0 && ok == 1 && !fail,
	       "wset: the restored guest verifies every page");
}

/* A vmstate moves from KVM to the emulated CPU (same registers, same
 * memory: the guest verifies), not the other way (the emulated CPU's system
 * registers are not KVM's: refused with a reason). */
static void check_cross_backend(void)
{
	struct vm_config cfg = { 2, 64, 0, false, VM_CPU_KVM };
	char vmstate[256], mem[256];
	struct error err = ERROR_INIT;
	struct vm *vm = NULL;
	unsigned ok = 0, fail = 0;
	int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);

	if (fd < 0) {
		tap_skip("KVM to emulated restore: no usable /dev/kvm");
		return;
	}
	close(fd);
	path_in_tmp(vmstate, sizeof(vmstate), "vmstate");
	path_in_tmp(mem, sizeof(mem), "memory.bin");
	test_cpu = VM_CPU_EMULATED;
	tap_ok(boot_and_snapshot(&cfg, vmstate, mem) == 0 &&
		       restore_and_verify(vmstate, mem, false, 2, &ok, &fail) == 0 && ok == 2 && !fail,
	       "a KVM vmstate restores on the emulated CPU and the guest verifies (%u ok)", ok);
	cfg.cpu = VM_CPU_EMULATED;
	TAP_CHECK(boot_and_snapshot(&cfg, vmstate, mem) == 0);
	fd = vm_create_restore(vmstate, mem, false, 0, VM_CPU_KVM, &vm, &err);
	tap_ok(fd < 0 && strstr(error_msg(&err), "emulated CPU"),
	       "an emulated vmstate is refused by KVM: %s", error_msg(&err));
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* p50 and max of 20 pause/resume cycles, 20 ms apart; false on any error. */
static bool pause_resume_cycles(struct vm *vm, const char *phase)
{
	uint64_t pause_us[20], resume_us[20];
	int bad = 0;

	for (int i = 0; i < 20; i++) {
		uint64_t t0, t1, t2;

		usleep(20 * 1000);
		t0 = now_nsec();
		bad |= vm_pause(vm);
		t1 = now_nsec();
		bad |= vm_resume(vm);
		t2 = now_nsec();
		pause_us[i] = (t1 - t0) / 1000;
		resume_us[i] = (t2 - t1) / 1000;
	}
	qsort(pause_us, 20, sizeof(pause_us[0]), cmp_u64);
	qsort(resume_us, 20, sizeof(resume_us[0]), cmp_u64);
	tap_diag("%s: vm_pause p50 %llu us (max %llu us), vm_resume p50 %llu us (max %llu us)",
		 phase, (unsigned long long)pause_us[10], (unsigned long long)pause_us[19],
		 (unsigned long long)resume_us[10], (unsigned long long)resume_us[19]);
	return !bad && !vm_has_stopped(vm);
}

static void measure_latency(void)
{
	struct vm_config cfg = { 2, 64, 0, false, test_cpu };
	struct vm *vm = NULL;
	struct error err = ERROR_INIT;

	console_reset();
	if (vm_create_boot(&cfg, guest_img, &vm, &err) < 0) {
		tap_ok(false, "latency: vm_create_boot: %s", error_msg(&err));
		return;
	}
	vm_set_console(vm, console_line, &con);
	if (!tap_ok(vm_start(vm, false) == 0 && console_wait(vm, true, 2, 10),
		    "latency: guest boots"))
		goto out;
	TAP_CHECK(vm_pause(vm) == 0 && vm_pause(vm) == 0 && vm_is_paused(vm));
	TAP_CHECK(vm_resume(vm) == 0 && vm_resume(vm) == 0 && !vm_is_paused(vm));
	/* First pass: every write faults a fresh page in; KVM_RUN is left only
	 * between faults. Then the steady state, once every page is present. */
	tap_ok(pause_resume_cycles(vm, "first pass over fresh pages"),
	       "latency: 20 pause/resume cycles while the guest touches fresh pages");
	usleep(1500 * 1000);
	tap_ok(pause_resume_cycles(vm, "steady state"),
	       "latency: 20 pause/resume cycles in the steady state");
out:
	vm_destroy(vm);
}

static void cleanup_tmp(void)
{
	static const char *const names[] = { "vmstate", "vmstate.bad", "memory.bin", "hlt.img" };
	char p[256];

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		path_in_tmp(p, sizeof(p), names[i]);
		unlink(p);
	}
	rmdir(tmpdir);
}

int main(void)
{
	const char *top = getenv("top_builddir");
	static char img[1024];
	int fd;

	if (geteuid() != 0)
		tap_skip_all("needs root");
	guest_img = getenv("GUEST_IMG");
	if (!guest_img) {
		snprintf(img, sizeof(img), "%s/contrib/minivm/guest.img", top ? top : ".");
		guest_img = img;
	}
	if (!mkdtemp(tmpdir)) {
		tap_ok(false, "mkdtemp");
		return tap_done();
	}
	atexit(cleanup_tmp);

	tap_ok(vmstate__crc64(0, "123456789", 9) == 0xe9c6d914c4b8d9caULL,
	       "vmstate CRC-64/Jones check value");
	/* Every case on the emulated CPU, which needs nothing but root; then on
	 * KVM where /dev/kvm works (CI machines may have none: that half is
	 * then reported as skipped, the emulated half still runs). */
	for (int pass = 0; pass < 2; pass++) {
		test_cpu = pass ? VM_CPU_KVM : VM_CPU_EMULATED;
		if (test_cpu == VM_CPU_KVM) {
			fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
			if (fd < 0) {
				tap_skip("the KVM pass: no usable /dev/kvm");
				break;
			}
			close(fd);
		}
		tap_diag("---- vCPUs on %s ----", pass ? "KVM" : "the emulated CPU");
		run_case(1, 64, 0, false);
		run_case(2, 64, 0, false);
		run_case(2, 64, 0, true);
		run_case(2, 96, 32, false);
		run_case(1, 96, 64, true);
		check_verify_can_fail();
		check_fpu_check_can_fail();
		check_vmstate_rejected();
		check_unexpected_exit();
		check_wset();
		measure_latency();
	}
	check_cross_backend();
	return tap_done();
}
