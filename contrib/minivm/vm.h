/* SPDX-License-Identifier: MIT
 * vm.h — the KVM half of forkfs-minivm: guest memory, vCPU threads, pause and
 * resume, the vmstate file, Full memory images and restore.
 *
 * The HTTP/API half (api.c, http.c, main.c) calls only what is declared here;
 * this half knows nothing of HTTP or JSON. All functions return 0 or -errno.
 * Functions that can fail for a reason the API must report take a struct
 * error (common/error.h) and fill it with a one-line human-readable reason.
 *
 * Guest memory layout follows Firecracker on x86_64: one region at GPA 0 when
 * mem_size_mib <= split_mib (3328 by default), otherwise region 0 is
 * [0, split) and region 1 starts at GPA 4 GiB with the rest. The memory image
 * and the handshake offsets are cumulative region sizes.
 *
 * The guest (guest/guest.c, guest/abi.h) runs on every vCPU and stamps its
 * own share of the pages above 4 MiB, in every region: qword 0 = 1-based
 * sequence number of that vCPU's write, qword 1 = page GPA ^ 0x5afe5a4d70f0f00d.
 * Its write counter lives only in registers. The console lines it prints are:
 *   guest: boot vcpu=V of=N pages=P [wset=W]    (W: boot_args wset_mib, abi.h)
 *   guest: first pass done vcpu=V pages=P       (every own page written once)
 *   guest: verify ok vcpu=V pages=P writes=C
 *   guest: verify FAIL vcpu=V page=0xGPA got=0xX want=0xY mismatches=M pages=P writes=C
 *   guest: verify FAIL vcpu=V fpu got=0xX want=0xY pages=P writes=C
 * (P = pages the vCPU owns, C = its writes so far; "fpu": xmm0, which holds
 * C - 256, was not restored). A verify line appears once
 * per vCPU shortly after a restored VM runs.
 *
 * Threads and syscalls (measured with strace -f on tests/minivm/vm-core.t).
 * Every function here is called from the API thread; vm_start() creates one
 * thread per vCPU. All set-up (open /dev/kvm, create the VM, memory, vCPUs,
 * the SIGRTMIN kick handler) is done by vm_create_*() and vm_start().
 *   vCPU threads: ioctl (KVM_RUN; KVM_GET_REGS when logging an internal
 *     error), futex, rt_sigprocmask, rt_sigreturn (the empty SIGRTMIN
 *     handler), write (console lines to stdout unless a console callback is
 *     set, log lines to stderr), and at thread start/exit set_robust_list,
 *     rseq, madvise, exit.
 *   vm_create_boot/vm_create_restore: openat, newfstatat, read, pread64,
 *     close, ioctl (KVM_*), memfd_create, ftruncate, mmap, munmap, fcntl,
 *     rt_sigaction (once per process).
 *   vm_start: clone3 (or clone), mmap, mprotect, rt_sigprocmask, futex.
 *   vm_pause/vm_resume: getpid + tgkill (the SIGRTMIN kick), futex,
 *     clock_gettime.
 *   vm_save_vmstate/vm_save_memory: ioctl (KVM_GET_*), openat, write,
 *     pwrite64, close, and malloc's brk/mmap/munmap.
 * SIGRTMIN belongs to the VM core (the kick); do not use it elsewhere.
 *   vm_destroy: tgkill, futex, munmap, close.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VM_MAX_VCPUS 32
#define VM_MAX_REGIONS 2
#define VM_DEFAULT_SPLIT_MIB 3328ULL
#define VM_HIGH_REGION_GPA 0x100000000ULL

/* Where the vCPUs run. AUTO: KVM when /dev/kvm can create a VM, else the
 * emulated CPU (cpu.h: an interpreter of the guest's instructions, for
 * machines without KVM), with one log line saying so. */
enum vm_cpu { VM_CPU_AUTO, VM_CPU_KVM, VM_CPU_EMULATED };

/* The emulated CPU's pace per vCPU, in millions of instructions per second
 * (0: unlimited); set before vm_start(). */
#define VM_EMULATED_MIPS_DEFAULT 2
extern unsigned vm_emulated_mips;

struct vm_config {
	unsigned vcpu_count;	/* 1..VM_MAX_VCPUS */
	uint64_t mem_size_mib;	/* > 0 */
	uint64_t split_mib;	/* region split; 0 means VM_DEFAULT_SPLIT_MIB */
	bool anon;		/* private anonymous memory instead of a shared memfd */
	enum vm_cpu cpu;
	const char *boot_args;	/* the guest's command line (guest/abi.h), or NULL */
};

struct vm_region {
	uint64_t gpa;		/* guest-physical base */
	uint64_t size;		/* bytes, page aligned */
	uint64_t file_offset;	/* cumulative offset in the memory image */
	void *host;		/* host virtual address of the mapping */
};

struct error;
struct vm;

/* Lines the guest prints (without newline), e.g. "guest: verify ok ...".
 * The callback may be called from any vCPU thread. Default: print to stdout. */
typedef void (*vm_console_fn)(const char *line, void *userdata);
void vm_set_console(struct vm *vm, vm_console_fn fn, void *userdata);

/* Boot path: allocate memory and vCPUs, load the guest image (a flat binary
 * linked for the guest's load address), set up long mode and the boot info
 * the guest reads. The vCPUs do not run until vm_start(). */
int vm_create_boot(const struct vm_config *cfg, const char *kernel_path, struct vm **ret,
		   struct error *err);

/* Restore path: read and validate the vmstate, map the memory image
 * (MAP_SHARED + O_RDWR when shared, else MAP_PRIVATE + O_RDONLY, like
 * Firecracker), create vCPUs with the saved state. The VM is left paused;
 * vm_start() then vm_resume() (or only vm_start(), which runs) continues it.
 * Tells the guest it was restored so that it verifies its memory. A vmstate
 * taken on the emulated CPU restores on it (AUTO picks it; KVM refuses it);
 * one taken on KVM restores on either. */
int vm_create_restore(const char *vmstate_path, const char *mem_path, bool shared,
		      uint64_t split_mib, enum vm_cpu cpu, struct vm **ret, struct error *err);

/* Start the vCPU threads. With start_paused they park before entering the
 * guest; otherwise they run (also for a restored VM, which is paused until
 * this call). -EALREADY when called twice. */
int vm_start(struct vm *vm, bool start_paused);

/* Pause returns only after every vCPU has left KVM_RUN and is parked
 * (-ETIMEDOUT after 10 s, e.g. a vCPU stuck on an unserved userfault).
 * Both are idempotent. */
int vm_pause(struct vm *vm);
int vm_resume(struct vm *vm);
bool vm_is_paused(struct vm *vm);
/* True once an unexpected vCPU exit (guest shutdown, KVM error ...) stopped
 * the VM: it was logged and every vCPU thread has left or is leaving. */
bool vm_has_stopped(struct vm *vm);

/* Snapshot files; the VM must be paused. */
int vm_save_vmstate(struct vm *vm, const char *path, struct error *err);
int vm_save_memory(struct vm *vm, const char *path, struct error *err);

/* The guest memory regions in ascending GPA order. */
size_t vm_get_regions(struct vm *vm, const struct vm_region **ret);
unsigned vm_vcpu_count(struct vm *vm);
/* "kvm" or "emulated". */
const char *vm_cpu_name(struct vm *vm);
uint64_t vm_mem_size(struct vm *vm);

/* Stop vCPU threads, unmap memory, close KVM fds. NULL-safe. */
void vm_destroy(struct vm *vm);
