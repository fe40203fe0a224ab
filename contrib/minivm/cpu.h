/* SPDX-License-Identifier: MIT
 * cpu.h — forkfs-minivm's emulated CPU: an interpreter of the x86_64 integer
 * instructions (and the SSE moves) that the minivm guest is compiled to, for
 * machines without a usable /dev/kvm. vm.c runs a vCPU thread either on
 * KVM_RUN or on cpu_run(); everything else in the VMM (memory, pause and
 * resume, ports, the vmstate, uffd write-protection) is the same code.
 *
 * What it models: 64-bit long mode only, CPL 0, flat segments (FS/GS bases
 * honoured), linear address == guest-physical address (the guest's page
 * tables identity-map all memory; cr3 is kept for the vmstate, not walked),
 * no interrupts, no exceptions delivered to the guest: any fault (#DE, an
 * access outside guest memory, an instruction it does not know) stops the
 * vCPU with a one-line reason. Guest memory is accessed through the host
 * mapping the bus returns, with plain loads and stores, so a write to a
 * write-protected page faults into userfaultfd exactly as a KVM guest's does
 * (the vCPU thread sleeps in the kernel until the page is released).
 *
 * It is not a general-purpose x86 emulator and does not pretend to be one:
 * the set of instructions is what tests/minivm/vm-core.t's guest needs, each
 * decoded in full (prefixes, REX, ModRM/SIB, RIP-relative, every operand
 * size) so that another compiler's choice of encoding works too.
 */
#pragma once

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct error;

/* General registers in x86 encoding order: rax rcx rdx rbx rsp rbp rsi rdi r8..r15. */
enum { CPU_RAX, CPU_RCX, CPU_RDX, CPU_RBX, CPU_RSP, CPU_RBP, CPU_RSI, CPU_RDI };

struct cpu_state {
	uint64_t gpr[16];
	uint64_t rip;
	uint64_t rflags;
	uint64_t fs_base, gs_base;
	uint8_t xmm[16][16];
	uint32_t mxcsr;
	uint16_t fcw;
};

/* How the CPU reaches the machine. mem returns the host address of len bytes
 * of guest-physical memory at gpa, or NULL when they are not all inside one
 * region. in/out are the port I/O of an IN/OUT instruction (size 1, 2 or 4). */
struct cpu_bus {
	void *(*mem)(void *ctx, uint64_t gpa, size_t len);
	uint32_t (*in)(void *ctx, uint16_t port, unsigned size);
	void (*out)(void *ctx, uint16_t port, unsigned size, uint32_t value);
	void *ctx;
};

/* Run instructions until *kick is set (checked before every instruction) or
 * max_insns have run (0: no limit): returns 0 with the state at that
 * instruction boundary. Returns -EIO with the reason in err when the guest
 * cannot go on (HLT, a fault, an unknown instruction); the state is then that
 * of the faulting instruction's start. */
int cpu_run(struct cpu_state *c, const struct cpu_bus *bus, const atomic_bool *kick,
	    uint64_t max_insns, struct error *err);
