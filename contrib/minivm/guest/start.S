/* SPDX-License-Identifier: MIT
 * start.S — the guest's entry point and its page-stamping loop.
 *
 * The loop is written in assembly so that the vCPU's write counter and its
 * position live ONLY in registers while it runs: a restored guest is then
 * consistent only if the vmstate (registers) and the memory image were taken
 * at the same instant. Register use inside stamp_run (all callee-saved, so the
 * C verifier called at a poll point preserves them):
 *   r12  j     number of writes done so far; the next write stamps j + 1
 *   r13  k     index of the next page among this vCPU's own pages (j mod pages)
 *   rbx        GPA of own page k
 *   r14        pages of the current pass: all own pages in the first, then the
 *              working set W (stamp_params.wset, guest.c)
 *   r15        pointer to this vCPU's struct stamp_params (constants only)
 *   rbp        GUEST_STAMP_MAGIC
 *   xmm0       j as of the previous poll (loaded through memory: this KVM emulates
 *              the guest's instructions and has no GPR-to-XMM move), so that a
 *              restore that loses the FPU/SSE state is caught too
 * Every 256 writes it reads the "restored?" port; on 1 it calls
 * guest_verify(params, j), which checks every own page and prints one line.
 */
#include "contrib/minivm/guest/abi.h"

/* struct stamp_params field offsets (guest.c has the struct). */
#define SP_FIRST_GPA 0
#define SP_STRIDE 8
#define SP_R0_END 16
#define SP_R1_DELTA 24
#define SP_PAGES 32
#define SP_XMM_SLOT 80
#define SP_WSET 96
#define SP_PASSED 104

	.section .text.start, "ax"
	.globl _start
_start:
	/* rdi = vCPU id, rsi = vCPU count, rdx = boot info, rsp = stack top */
	call	guest_main
1:	hlt
	jmp	1b

	.text
	.globl stamp_run
	.type stamp_run, @function
stamp_run:				/* rdi = struct stamp_params *, never returns */
	andq	$-16, %rsp
	movq	%rdi, %r15
	xorl	%r12d, %r12d
	xorl	%r13d, %r13d
	movq	SP_FIRST_GPA(%r15), %rbx
	movq	SP_PAGES(%r15), %r14
	movabsq	$GUEST_STAMP_MAGIC, %rbp
	movq	%r12, SP_XMM_SLOT(%r15)
	movq	%r12, SP_XMM_SLOT+8(%r15)
	movdqu	SP_XMM_SLOT(%r15), %xmm0
.Lstamp:
	leaq	1(%r12), %rax
	movq	%rax, (%rbx)		/* qword 0: sequence number j + 1 */
	movq	%rbx, %rax
	xorq	%rbp, %rax
	movq	%rax, 8(%rbx)		/* qword 1: GPA ^ magic */
	incq	%r12
	incq	%r13
	cmpq	%r14, %r13
	je	.Lwrap
	movq	%rbx, %rax
	addq	SP_STRIDE(%r15), %rbx
	cmpq	SP_R0_END(%r15), %rax	/* stepped out of region 0 ... */
	jae	.Lpoll
	cmpq	SP_R0_END(%r15), %rbx
	jb	.Lpoll
	addq	SP_R1_DELTA(%r15), %rbx	/* ... into region 1 */
.Lpoll:
	testq	$255, %r12
	jnz	.Lstamp
	movw	$GUEST_PORT_RESTORED, %dx
	inl	%dx, %eax
	testl	%eax, %eax
	jz	.Lxmm
	movq	%r15, %rdi
	movq	%r12, %rsi
	call	guest_verify		/* checks xmm0 == j - 256 */
.Lxmm:
	movq	%r12, SP_XMM_SLOT(%r15)
	movdqu	SP_XMM_SLOT(%r15), %xmm0
	jmp	.Lstamp
.Lwrap:					/* every pass after the first: W pages */
	movq	SP_WSET(%r15), %r14
	cmpq	$0, SP_PASSED(%r15)
	jne	1f
	movq	$1, SP_PASSED(%r15)
	movq	%r15, %rdi
	call	guest_first_pass	/* C, general registers only: xmm0 survives */
1:	xorl	%r13d, %r13d
	movq	SP_FIRST_GPA(%r15), %rbx
	jmp	.Lpoll
	.size stamp_run, . - stamp_run

	.section .note.GNU-stack, "", @progbits
