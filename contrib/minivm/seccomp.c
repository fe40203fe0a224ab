/* SPDX-License-Identifier: MIT
 * seccomp.c — the system calls forkfs-minivm may make once it is set up.
 *
 * Written as a table, in the manner of chrony's sys_linux.c: one line per
 * call, grouped by who needs it. The filter is loaded before any vCPU thread
 * exists, so the API thread and the vCPU threads share it. Building a VM
 * (InstanceStart, snapshot load) happens after the filter is loaded, so the
 * calls the VM core makes to create memory, vCPUs and threads are listed
 * too. ioctl is allowed only for KVM (type 0xAE), userfaultfd (type 0xAA)
 * and the terminal query stdio makes; socket only for AF_UNIX (the uffd
 * hand-off); clone only for threads (clone3, whose flags a filter cannot
 * see, fails with ENOSYS and glibc falls back to clone); mmap and mprotect
 * never with PROT_EXEC. unlink fails with EPERM (the API socket is left at
 * exit, as Firecracker leaves its own; forkfs removes it before a launch).
 * Anything else kills the
 * process. Where files may be created is the jail's business (forkfs(8)).
 */
#include <errno.h>
#include <sched.h>
#include <seccomp.h>
#include <stddef.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>

#define LOG_PREFIX "seccomp: "
#include "common/log.h"
#include "common/macro.h"
#include "contrib/minivm/seccomp.h"

static const int allowed[] = {
	/* API thread: the socket, its connections, the signalfd, logging. */
	SCMP_SYS(accept4), SCMP_SYS(poll), SCMP_SYS(ppoll), SCMP_SYS(read), SCMP_SYS(write),
	SCMP_SYS(readv), SCMP_SYS(writev), SCMP_SYS(sendto), SCMP_SYS(recvfrom),
	SCMP_SYS(setsockopt), SCMP_SYS(getsockopt), SCMP_SYS(shutdown), SCMP_SYS(close),
	SCMP_SYS(fcntl),

	/* PUT /uffd/wp: create and register the uffd, connect, send it (socket:
	 * AF_UNIX only, below). */
	SCMP_SYS(userfaultfd), SCMP_SYS(connect), SCMP_SYS(sendmsg),

	/* Boot resources and snapshot files: open, read, write, size, sync. */
	SCMP_SYS(openat), SCMP_SYS(open), SCMP_SYS(fstat), SCMP_SYS(newfstatat),
	SCMP_SYS(statx), SCMP_SYS(lseek), SCMP_SYS(pread64), SCMP_SYS(pwrite64),
	SCMP_SYS(preadv), SCMP_SYS(pwritev), SCMP_SYS(ftruncate), SCMP_SYS(fallocate),
	SCMP_SYS(fsync), SCMP_SYS(fdatasync), SCMP_SYS(copy_file_range), SCMP_SYS(sendfile),
	SCMP_SYS(rename), SCMP_SYS(renameat), SCMP_SYS(renameat2), SCMP_SYS(getdents64),

	/* Guest memory and the heap. */
	SCMP_SYS(memfd_create), SCMP_SYS(munmap), SCMP_SYS(madvise), SCMP_SYS(mremap),
	SCMP_SYS(brk),	/* mmap, mprotect: without PROT_EXEC, below */

	/* vCPU threads: creation, parking (futex), kicks out of KVM_RUN by signal,
	 * eventfds, and exit. */
	SCMP_SYS(set_robust_list), SCMP_SYS(rseq),	/* clone: threads only, below */
	SCMP_SYS(futex), SCMP_SYS(sched_yield), SCMP_SYS(sched_getaffinity), SCMP_SYS(gettid),
	SCMP_SYS(getpid), SCMP_SYS(tgkill), SCMP_SYS(tkill), SCMP_SYS(rt_sigprocmask),
	SCMP_SYS(rt_sigaction), SCMP_SYS(rt_sigreturn), SCMP_SYS(rt_sigtimedwait),
	SCMP_SYS(sigaltstack), SCMP_SYS(eventfd2), SCMP_SYS(epoll_create1), SCMP_SYS(epoll_ctl),
	SCMP_SYS(epoll_wait), SCMP_SYS(epoll_pwait), SCMP_SYS(exit), SCMP_SYS(exit_group),
	SCMP_SYS(restart_syscall),

	/* Time and randomness (glibc, log lines, latency figures). */
	SCMP_SYS(clock_gettime), SCMP_SYS(clock_nanosleep), SCMP_SYS(nanosleep),
	SCMP_SYS(gettimeofday), SCMP_SYS(getrandom),
};

/* ioctl, by the request's type byte (bits 8..15) or exact value. */
static const struct {
	unsigned long mask, value;
} ioctls[] = {
	{ 0xff00, 0xAE00 },	/* KVM_*: system, VM and vCPU ioctls */
	{ 0xff00, 0xAA00 },	/* UFFDIO_* and USERFAULTFD_IOC_NEW */
	{ 0xffffffff, TCGETS },	/* isatty() from stdio */
	{ 0xffffffff, FIONBIO },
};

#ifdef BUILT_WITH_ASAN
#define DEFAULT_ACTION SCMP_ACT_LOG	/* see common/macro.h */
#else
#define DEFAULT_ACTION SCMP_ACT_KILL_PROCESS
#endif

int minivm_seccomp_install(void)
{
	scmp_filter_ctx ctx = seccomp_init(DEFAULT_ACTION);
	int r = 0;

	if (!ctx)
		return log_error_errno(-ENOMEM, "seccomp_init");
	for (size_t i = 0; i < sizeof(allowed) / sizeof(allowed[0]) && r >= 0; i++) {
		r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, allowed[i], 0);
		/* A call this architecture lacks (e.g. open on some) is fine. */
		if (r == -EFAULT || r == -EINVAL)
			r = 0;
	}
	for (size_t i = 0; i < sizeof(ioctls) / sizeof(ioctls[0]) && r >= 0; i++)
		r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(ioctl), 1,
				     SCMP_A1(SCMP_CMP_MASKED_EQ, ioctls[i].mask, ioctls[i].value));
	if (r >= 0)
		r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(socket), 1,
				     SCMP_A0(SCMP_CMP_EQ, AF_UNIX));
	if (r >= 0)
		r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(clone), 1,
				     SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_THREAD, CLONE_THREAD));
	if (r >= 0)
		r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0);
	if (r >= 0)
		r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(unlink), 0);
	if (r >= 0)
		r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(mmap), 1,
				     SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0));
	if (r >= 0)
		r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(mprotect), 1,
				     SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0));
	if (r >= 0)
		r = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_TSYNC, 1);
	if (r >= 0)
		r = seccomp_load(ctx);
	if (r < 0)
		log_error_errno(r, "cannot build or load the filter");
	seccomp_release(ctx);
	return r;
}
