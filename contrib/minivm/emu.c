/* SPDX-License-Identifier: MIT
 * emu.c — the emulated vCPU backend of the VM core: what a vCPU thread does
 * instead of KVM_RUN when the VM runs on cpu.c (no usable /dev/kvm, or
 * --cpu emulated), and the translation of its state to and from the KVM UAPI
 * structs that boot.c fills and the vmstate file holds. A vmstate taken on
 * either backend thus has one format; vmstate.c marks an emulated one.
 *
 * Pace. A guest that spins (the bundled one stamps memory without pause)
 * would take a whole host core per vCPU; the emulated CPU runs at most
 * vm_emulated_mips million instructions per second per vCPU (0: as fast as
 * it can), in slices of EMU_SLICE instructions with a sleep where it is
 * ahead. The kick signal cuts a sleep short; pacing restarts after a pause.
 */
#define LOG_PREFIX "vm: "

#include <errno.h>
#include <string.h>
#include <time.h>

#include "common/log.h"
#include "contrib/minivm/vm-internal.h"

#define EFER_LMA 0x400ULL
#define XSAVE_FCW 0		/* byte offsets in the legacy XSAVE area */
#define XSAVE_MXCSR 24
#define XSAVE_XMM 160
#define XSAVE_XSTATE_BV 512

static void *emu__mem(void *ctx, uint64_t gpa, size_t len)
{
	struct vcpu *v = ctx;

	return vm__gpa_to_host(v->vm, gpa, len);
}

static uint32_t emu__in(void *ctx, uint16_t port, unsigned size)
{
	return vcpu__port_in(ctx, port, size);
}

static void emu__out(void *ctx, uint16_t port, unsigned size, uint32_t value)
{
	vcpu__port_out(ctx, port, size, value);
}

#define EMU_SLICE 2000ULL

unsigned vm_emulated_mips = VM_EMULATED_MIPS_DEFAULT;

static uint64_t mono_nsec(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* Run until kicked (0) or until the guest cannot go on (-EIO, logged). */
int emu__run(struct vcpu *v)
{
	const struct cpu_bus bus = { emu__mem, emu__in, emu__out, v };
	uint64_t ips = (uint64_t)vm_emulated_mips * 1000000ULL, t0 = mono_nsec(), done = 0;
	struct error err = ERROR_INIT;
	int r = 0;

	if (!(v->sregs.efer & EFER_LMA) || !v->sregs.cs.l)
		r = error_set(&err, -EIO, "the emulated CPU runs 64-bit long mode only");
	while (r == 0 && !atomic_load(&v->kick)) {
		uint64_t due, now;

		r = cpu_run(&v->cpu, &bus, &v->kick, ips ? EMU_SLICE : 0, &err);
		if (r < 0 || !ips)
			break;
		done += EMU_SLICE;
		due = t0 + done * 1000000000ULL / ips;
		now = mono_nsec();
		if (now + 100000000ULL < due || now > due + 100000000ULL) {
			t0 = now;	/* a clock jump or a long preemption: start over */
			done = 0;
		} else if (due > now && !atomic_load(&v->kick)) {
			struct timespec ts = { 0, (long)(due - now) };

			nanosleep(&ts, NULL);	/* EINTR when kicked */
		}
	}
	if (r < 0)
		log_error("vcpu %u: %s; stopping the VM", v->id, error_msg(&err));
	return r;
}

void emu__set_state(struct vcpu *v, const struct kvm_regs *regs, const struct kvm_sregs *sregs,
		    const uint8_t *legacy_xsave, const struct kvm_fpu *fpu)
{
	struct cpu_state *c = &v->cpu;
	const uint64_t g[16] = { regs->rax, regs->rcx, regs->rdx, regs->rbx, regs->rsp, regs->rbp,
				 regs->rsi, regs->rdi, regs->r8,  regs->r9,  regs->r10, regs->r11,
				 regs->r12, regs->r13, regs->r14, regs->r15 };

	memset(c, 0, sizeof(*c));
	memcpy(c->gpr, g, sizeof(g));
	c->rip = regs->rip;
	c->rflags = regs->rflags | 0x2;
	v->sregs = *sregs;
	c->fs_base = sregs->fs.base;
	c->gs_base = sregs->gs.base;
	if (legacy_xsave) {
		memcpy(&c->fcw, legacy_xsave + XSAVE_FCW, sizeof(c->fcw));
		memcpy(&c->mxcsr, legacy_xsave + XSAVE_MXCSR, sizeof(c->mxcsr));
		memcpy(c->xmm, legacy_xsave + XSAVE_XMM, sizeof(c->xmm));
	} else {
		c->fcw = fpu->fcw;
		c->mxcsr = fpu->mxcsr;
		memcpy(c->xmm, fpu->xmm, sizeof(c->xmm));
	}
}

void emu__get_state(struct vcpu *v, struct kvm_regs *regs, struct kvm_sregs *sregs,
		    struct kvm_xsave *xsave)
{
	const struct cpu_state *c = &v->cpu;
	uint8_t *x = (uint8_t *)xsave->region;
	const uint64_t bv = 0x3;	/* x87 and SSE state present */

	*regs = (struct kvm_regs){
		.rax = c->gpr[0], .rcx = c->gpr[1], .rdx = c->gpr[2], .rbx = c->gpr[3],
		.rsp = c->gpr[4], .rbp = c->gpr[5], .rsi = c->gpr[6], .rdi = c->gpr[7],
		.r8 = c->gpr[8], .r9 = c->gpr[9], .r10 = c->gpr[10], .r11 = c->gpr[11],
		.r12 = c->gpr[12], .r13 = c->gpr[13], .r14 = c->gpr[14], .r15 = c->gpr[15],
		.rip = c->rip, .rflags = c->rflags,
	};
	*sregs = v->sregs;
	sregs->fs.base = c->fs_base;
	sregs->gs.base = c->gs_base;
	memset(xsave, 0, sizeof(*xsave));
	memcpy(x + XSAVE_FCW, &c->fcw, sizeof(c->fcw));
	memcpy(x + XSAVE_MXCSR, &c->mxcsr, sizeof(c->mxcsr));
	memcpy(x + XSAVE_XMM, c->xmm, sizeof(c->xmm));
	memcpy(x + XSAVE_XSTATE_BV, &bv, sizeof(bv));
}
