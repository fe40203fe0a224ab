/* SPDX-License-Identifier: MIT
 * vm-internal.h — struct vm and the helpers shared by the files of the VM core:
 * vm.c (memory, vCPU threads, pause/resume, lifecycle), boot.c (long-mode
 * set-up of a fresh guest) and vmstate.c (the vmstate file, memory images,
 * restore). Nothing outside contrib/minivm/vm*.c, boot.c, vmstate.c includes it.
 */
#pragma once

#include <linux/kvm.h>
#include <pthread.h>
#include <stdatomic.h>

#include "common/error.h"
#include "contrib/minivm/cpu.h"
#include "contrib/minivm/vm.h"

/* MSRs saved and restored per vCPU, in this order (vmstate.c documents it). */
#define VM_STATE_MAX_MSRS 16

struct vcpu {
	struct vm *vm;
	unsigned id;
	int fd;				/* KVM: the vCPU fd and its kvm_run; -1 and NULL when emulated */
	struct kvm_run *run;
	struct cpu_state cpu;		/* emulated: the registers ... */
	struct kvm_sregs sregs;		/* ... and the system registers, kept for the vmstate */
	atomic_bool kick;		/* emulated: leave cpu_run() at the next instruction */
	pthread_t thread;
	bool thread_started;
	atomic_bool restored;		/* the "restored?" port answers 1 once */
	bool parked;			/* protected by vm->lock */
};

struct vm {
	bool emulated;			/* vCPUs run on cpu.c (emu.c), not KVM */
	int kvm_fd;
	int vm_fd;
	int mem_fd;			/* the memfd, -1 for anon or file-backed memory */
	size_t run_size;

	void *reserve;			/* one PROT_NONE reservation holding every region */
	size_t reserve_size;
	struct vm_region regions[VM_MAX_REGIONS];
	size_t nr_regions;
	uint64_t mem_size;
	uint64_t split;			/* bytes */

	unsigned nr_vcpus;
	struct vcpu vcpus[VM_MAX_VCPUS];
	struct kvm_cpuid2 *cpuid;

	vm_console_fn console;
	void *console_userdata;

	pthread_mutex_t lock;
	pthread_cond_t cond;		/* parked/unparked and thread exit */
	bool pause_req;			/* protected by lock */
	bool stop_req;			/* protected by lock */
	bool started;			/* protected by lock */
	unsigned running;		/* threads not yet exited; protected by lock */
	unsigned nr_parked;		/* protected by lock */
	atomic_bool failed;		/* an unexpected exit stopped the VM */
};

/* vm.c */
int vm__alloc(struct vm **ret);
/* Choose the backend: KVM, the emulated CPU, or (auto) KVM when /dev/kvm works. */
int vm__open_cpu(struct vm *vm, enum vm_cpu cpu, struct error *err);
void vm__layout(uint64_t mem_size, uint64_t split, struct vm_region *regions, size_t *nr);
/* Map regions: fd < 0 → memfd (or anon when anon), else map fd per region. */
int vm__map_memory(struct vm *vm, int fd, bool shared, bool anon, struct error *err);
int vm__create_vcpus(struct vm *vm, unsigned count, struct error *err);
void *vm__gpa_to_host(struct vm *vm, uint64_t gpa, size_t len);
/* The guest's two ports (guest/abi.h), for either backend. */
void vcpu__port_out(struct vcpu *v, uint16_t port, unsigned size, uint32_t value);
uint32_t vcpu__port_in(struct vcpu *v, uint16_t port, unsigned size);

/* emu.c */
int emu__run(struct vcpu *v);
/* Load the state from the KVM structs: the XMM registers from the legacy
 * XSAVE area when legacy_xsave is set, else from fpu. */
void emu__set_state(struct vcpu *v, const struct kvm_regs *regs, const struct kvm_sregs *sregs,
		    const uint8_t *legacy_xsave, const struct kvm_fpu *fpu);
void emu__get_state(struct vcpu *v, struct kvm_regs *regs, struct kvm_sregs *sregs,
		    struct kvm_xsave *xsave);

/* boot.c */
int boot__setup(struct vm *vm, const char *kernel_path, const char *boot_args,
		struct error *err);

/* vmstate.c */
uint64_t vmstate__crc64(uint64_t crc, const void *buf, size_t len);
