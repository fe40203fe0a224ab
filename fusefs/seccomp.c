/* SPDX-License-Identifier: MIT
 * seccomp.c — the system calls the forkfs daemon may make once it is set up.
 *
 * Written as tables, in the manner of chrony's sys_linux.c: one group of
 * calls per line, each group saying who needs it. The list is what strace -f
 * of the whole mount test suite saw forkfs's threads call once the filter
 * was loaded (2026-11-30), plus the few calls a path the suite does not
 * take makes, each said where it is listed. main() loads the filter
 * after the mount, the store scan and the fork of the spawner, before the
 * loop runs: the loop thread, libuv's worker threads (created lazily, later)
 * and the engine's copy and fault threads all run under it. TSYNC puts it on
 * any thread that would already exist.
 *
 * Never allowed: execve (VMMs are launched by the spawner, forked before the
 * filter, so they do not inherit it), mount (the mount is done), ptrace,
 * module and key calls, and fork: clone is allowed only with CLONE_THREAD
 * (without, it fails with EPERM), and clone3, whose flags a filter cannot
 * read, fails with ENOSYS so that glibc falls back to clone. ioctl is allowed
 * only for the requests below (FUSE passthrough registers and drops backing
 * files with two ioctls on /dev/fuse, from the loop thread).
 *
 * Unmounting as root is umount2, which main() calls itself first; as a
 * user libfuse forks fusermount3, so main() has the spawner run it first
 * (supervisor_unmount()); libfuse's own fork then fails softly with EPERM.
 *
 * One role gets a second, narrower filter of its own on top: the engine's
 * fault thread, the thread that reads what the guest drives (write faults
 * through the VMM's userfaultfd). It polls and reads the uffd, copies pages
 * (pread, pwrite), write-protects and wakes (UFFDIO ioctls), takes locks and
 * logs; anything else fails with EPERM (or is logged, with seccomp=log). The
 * list came from strace of the test suite's fault threads (forkfs(8)).
 */
#include <errno.h>
#include <linux/sched.h>
#include <seccomp.h>
#include <sys/mman.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/resource.h>

#define LOG_PREFIX "seccomp: "
#include "common/log.h"
#include "fusefs/seccomp.h"
#include "uffd/engine.h"

static const int allowed[] = {
	/* The loop: epoll, timers, uv_async's eventfd, uv_signal's pipe, the
	 * spawner socket and the VMMs' output pipes and pidfds. */
	SCMP_SYS(epoll_create1), SCMP_SYS(epoll_ctl), SCMP_SYS(epoll_wait), SCMP_SYS(eventfd2),
	SCMP_SYS(pipe2), SCMP_SYS(poll), SCMP_SYS(read), SCMP_SYS(write), SCMP_SYS(writev),
	SCMP_SYS(close), SCMP_SYS(fcntl),
	SCMP_SYS(dup3),		/* a sandbox log turned to log.1 */

	/* /dev/fuse: requests in, replies out (writev; splice when the kernel
	 * and libfuse agree on it). Unmount at the end as root (main()). */
	SCMP_SYS(splice), SCMP_SYS(vmsplice), SCMP_SYS(umount2),

	/* The store: sandbox and branch directories, config.json, logs,
	 * vmstate and memory.bin files, the run directory and its sockets.
	 * (glibc's stat family is newfstatat; the store is opened with openat2.) */
	SCMP_SYS(openat), SCMP_SYS(openat2), SCMP_SYS(newfstatat), SCMP_SYS(lseek),
	SCMP_SYS(pread64), SCMP_SYS(pwrite64), SCMP_SYS(ftruncate),
	SCMP_SYS(fsync), SCMP_SYS(fdatasync), SCMP_SYS(sync_file_range),
	SCMP_SYS(copy_file_range),	/* snapshots of a VMM attached to, from its /snapshots */
	SCMP_SYS(sendfile), SCMP_SYS(getdents64), SCMP_SYS(mkdir),
	SCMP_SYS(mkdirat), SCMP_SYS(rmdir), SCMP_SYS(unlink), SCMP_SYS(unlinkat),
	SCMP_SYS(rename), SCMP_SYS(renameat), SCMP_SYS(fchmod), SCMP_SYS(chmod),
	SCMP_SYS(readlink), SCMP_SYS(umask),
	SCMP_SYS(statfs), SCMP_SYS(fstatfs),	/* statfs of the mount (df): the store's */
	SCMP_SYS(fchown), SCMP_SYS(fchownat), SCMP_SYS(lchown),	/* jails: files given to a VMM's uid */

	/* The Firecracker API client and the uffd hand-over socket: connect to
	 * the VMM, listen for its uffd (SCM_RIGHTS), check its SO_PEERCRED. */
	SCMP_SYS(socket), SCMP_SYS(connect), SCMP_SYS(bind), SCMP_SYS(listen), SCMP_SYS(accept4),
	SCMP_SYS(sendto), SCMP_SYS(recvfrom), SCMP_SYS(sendmsg), SCMP_SYS(recvmsg),
	SCMP_SYS(getsockopt),

	/* Guest memory: the restore memfd, mapping a VMM's memfd, reading
	 * anonymous guest memory; the heap. */
	SCMP_SYS(memfd_create), SCMP_SYS(mmap), SCMP_SYS(munmap), SCMP_SYS(mprotect),
	SCMP_SYS(madvise), SCMP_SYS(mremap), SCMP_SYS(brk),

	/* Launched VMMs: signal through the pidfd, reap the spawner at the end. */
	SCMP_SYS(pidfd_send_signal), SCMP_SYS(wait4),

	/* Threads (libuv's pool, the engine's copy and fault threads; clone is
	 * restricted below): creation, names, futexes, signals, exit. tgkill
	 * and tkill: abort() and raise(), so that a failed assertion is a
	 * SIGABRT with its message, not SIGSYS. */
	SCMP_SYS(set_robust_list), SCMP_SYS(rseq), SCMP_SYS(futex), SCMP_SYS(sched_yield),
	SCMP_SYS(gettid), SCMP_SYS(getpid),
	SCMP_SYS(tgkill), SCMP_SYS(tkill), SCMP_SYS(rt_sigprocmask),
	SCMP_SYS(rt_sigaction), SCMP_SYS(rt_sigreturn), SCMP_SYS(prctl),
	SCMP_SYS(exit), SCMP_SYS(exit_group), SCMP_SYS(restart_syscall), SCMP_SYS(prlimit64),
	SCMP_SYS(seccomp),	/* the fault thread's own filter: filters only ever narrow */

	/* Time, identity and randomness (glibc, log lines, status figures).
	 * The clocks are the vDSO's, but it falls back to the system calls
	 * when the clock source cannot be read from user space. */
	SCMP_SYS(clock_gettime), SCMP_SYS(clock_getres), SCMP_SYS(clock_nanosleep),
	SCMP_SYS(gettimeofday), SCMP_SYS(time), SCMP_SYS(getrandom),
	SCMP_SYS(geteuid), SCMP_SYS(getegid),
	/* libfuse's unmount at exit, when a file kept the detached mount
	 * alive: it checks whether /etc/mtab needs an update. */
	SCMP_SYS(getuid), SCMP_SYS(access),
};

/* FUSE passthrough's requests on /dev/fuse (<linux/fuse.h> of Linux 6.9;
 * Debian 12's headers predate them): register a backing file, and drop it. */
#ifndef FUSE_DEV_IOC_BACKING_OPEN
struct fuse_backing_map_ {
	int32_t fd;
	uint32_t flags;
	uint64_t padding;
};
#define FUSE_DEV_IOC_BACKING_OPEN _IOW(229, 1, struct fuse_backing_map_)
#define FUSE_DEV_IOC_BACKING_CLOSE _IOW(229, 2, uint32_t)
#endif

/* ioctl, by exact request or by the request's type byte (bits 8..15). */
static const struct {
	unsigned long mask, value;
} ioctls[] = {
	{ 0xffffffff, FIONBIO },	/* libuv: uv__nonblock */
	{ 0xffffffff, FIOCLEX },	/* libuv: uv__cloexec */
	{ 0xffffffff, TCGETS },		/* isatty() from stdio */
	{ 0xff00, 0xAA00 },		/* UFFDIO_*: write-protect, wake, unregister */
	{ 0xffffffff, FUSE_DEV_IOC_BACKING_OPEN },	/* FUSE passthrough (files.c) */
	{ 0xffffffff, FUSE_DEV_IOC_BACKING_CLOSE },
	{ 0xffffffff, FICLONE },	/* does the store share extents? (branch/layer.c) */
};

int forkfs_seccomp_from_string(const char *s)
{
	static const char *const names[] = {
		[FORKFS_SECCOMP_OFF] = "off", [FORKFS_SECCOMP_LOG] = "log",
		[FORKFS_SECCOMP_KILL] = "kill",
	};

	for (size_t i = 0; i < ARRAY_SIZE(names); i++)
		if (!strcmp(s, names[i]))
			return (int)i;
	return -EINVAL;
}

/* Allow each of calls[0..n). */
static int allow_all(scmp_filter_ctx ctx, const int *calls, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		int r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, calls[i], 0);

		/* A call this architecture lacks (open, stat ... on arm64) is fine. */
		if (r < 0 && r != -EFAULT && r != -EINVAL)
			return r;
	}
	return 0;
}

static int add_rules(scmp_filter_ctx ctx, uint32_t fork_action)
{
	int r = allow_all(ctx, allowed, ARRAY_SIZE(allowed));

	if (r < 0)
		return r;
	for (size_t i = 0; i < ARRAY_SIZE(ioctls); i++) {
		r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(ioctl), 1,
				     SCMP_A1(SCMP_CMP_MASKED_EQ, ioctls[i].mask, ioctls[i].value));
		if (r < 0)
			return r;
	}
	/* kill(pid, 0) only: is the VMM we wait for still there? Signals go
	 * through pidfds. */
	r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(kill), 1, SCMP_A1(SCMP_CMP_EQ, 0));
	if (r < 0)
		return r;
	/* setpriority(PRIO_PROCESS, 0 = this thread, ...) only: a copy or the
	 * compactor drops the raised nice it was started with (util.h). */
	r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(setpriority), 2,
			     SCMP_A0(SCMP_CMP_EQ, PRIO_PROCESS), SCMP_A1(SCMP_CMP_EQ, 0));
	if (r < 0)
		return r;
	/* Threads, never processes. The flags are clone's first argument on
	 * x86-64 and arm64 alike. */
	r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(clone), 1,
			     SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_THREAD, CLONE_THREAD));
	if (r < 0)
		return r;
	if (fork_action != SCMP_ACT_LOG) {	/* a rule may not repeat the default action */
		r = seccomp_rule_add(ctx, fork_action, SCMP_SYS(clone), 1,
				     SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_THREAD, 0));
		if (r < 0)
			return r;
	}
	return seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0);
}

/* The fault thread's own list (see the top of the file). */
static const int fault_allowed[] = {
	SCMP_SYS(poll), SCMP_SYS(ppoll), SCMP_SYS(read), SCMP_SYS(write),
	SCMP_SYS(pread64), SCMP_SYS(pwrite64), SCMP_SYS(futex), SCMP_SYS(sched_yield),
	SCMP_SYS(clock_gettime), SCMP_SYS(clock_nanosleep), SCMP_SYS(nanosleep),
	SCMP_SYS(getpid), SCMP_SYS(gettid), SCMP_SYS(rt_sigprocmask),
	SCMP_SYS(madvise), SCMP_SYS(munmap), SCMP_SYS(brk), SCMP_SYS(exit),
	/* A poll with a timeout that SIGSTOP/SIGCONT of forkfs interrupts is
	 * resumed by the kernel through restart_syscall(2). */
	SCMP_SYS(restart_syscall),
};

static enum forkfs_seccomp installed = FORKFS_SECCOMP_OFF;

static void fault_thread_filter(const char *role)
{
	uint32_t deny = installed == FORKFS_SECCOMP_LOG ? SCMP_ACT_LOG : SCMP_ACT_ERRNO(EPERM);
	scmp_filter_ctx ctx;
	int r;

	if (strcmp(role, "fault") != 0)
		return;
	ctx = seccomp_init(deny);
	if (!ctx) {
		log_warning_errno(ENOMEM, "fault thread: seccomp_init");
		return;
	}
	r = allow_all(ctx, fault_allowed, ARRAY_SIZE(fault_allowed));
	if (r >= 0)
		r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(ioctl), 1,
				     SCMP_A1(SCMP_CMP_MASKED_EQ, 0xff00, 0xAA00));
	for (int i = 0; i < 2 && r >= 0; i++)	/* glibc's malloc arenas: never executable */
		r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, i ? SCMP_SYS(mprotect) : SCMP_SYS(mmap), 1,
				     SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0));
	if (r >= 0)
		r = seccomp_load(ctx);	/* this thread only: no TSYNC */
	seccomp_release(ctx);
	if (r < 0)
		log_warning_errno(r, "fault thread: cannot load its own filter");
}

int forkfs_seccomp_install(enum forkfs_seccomp mode)
{
	scmp_filter_ctx ctx;
	int r;

	if (mode == FORKFS_SECCOMP_OFF) {
		log_info("off (-o seccomp=off)");
		return 0;
	}
	ctx = seccomp_init(mode == FORKFS_SECCOMP_LOG ? SCMP_ACT_LOG : SCMP_ACT_KILL_PROCESS);
	if (!ctx)
		return log_error_errno(ENOMEM, "seccomp_init");
	r = add_rules(ctx, mode == FORKFS_SECCOMP_LOG ? SCMP_ACT_LOG : SCMP_ACT_ERRNO(EPERM));
	if (r >= 0)
		r = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_TSYNC, 1);
	if (r >= 0)
		r = seccomp_load(ctx);
	seccomp_release(ctx);
	if (r < 0)
		return log_error_errno(r, "cannot build or load the filter");
	if (mode == FORKFS_SECCOMP_LOG)
		log_info("log mode: calls outside the allow-list are logged to the audit log");
	installed = mode;
	engine_set_thread_hook(fault_thread_filter);
	return 0;
}
