/* SPDX-License-Identifier: MIT
 * qemu-guest.S — the guest that bench-qemu.sh runs under QEMU: a multiboot (v1)
 * kernel that keeps writing all of its memory, so that QEMU's background
 * snapshot has write faults to serve, as forkfs's copy does with the minivm
 * guest.
 *
 * QEMU's -kernel loads it (as an ELF32: QEMU refuses 64-bit ELF for multiboot)
 * and enters _start in 32-bit protected mode with paging off, EAX = multiboot
 * magic, EBX = the multiboot info. Paging off reaches only RAM below 4 GiB,
 * and QEMU puts RAM above 3 GiB at 4 GiB and up, so the guest switches to long
 * mode with the first 64 GiB identity-mapped by 2 MiB pages. It then loops for
 * ever over the multiboot memory map (QEMU's e820 table): every 4 KiB page of
 * every usable region above 2 MiB gets one qword store of a counter that goes
 * up by one per store (so no page stays zero after the first pass). One store
 * per page: nothing else per page. It writes "qemu-guest: stamping" once, then
 * one '.' per finished pass over memory, to the debug console (port 0xe9).
 *
 * Build (no 32-bit libraries needed, nothing is linked but this file):
 *   gcc -m32 -nostdlib -static -no-pie -Wl,-T,qemu-guest.ld -o qemu-guest.elf qemu-guest.S
 *   ("make tests/bench/qemu-guest.elf" does this; or as --32 and ld -m elf_i386)
 */
#define MB_MAGIC	0x1BADB002
#define MB_FLAGS	0x00000002	/* bit 1: we want the memory information */
#define MB_BOOT_MAGIC	0x2BADB002	/* in EAX at entry */
#define MBI_FLAGS	0
#define MBI_MMAP_LENGTH	44
#define MBI_MMAP_ADDR	48
#define MBI_HAS_MMAP	(1 << 6)
#define FIRST_BYTE	0x200000	/* below this: BIOS, boot info, this image */
#define MAPPED_GIB	64		/* identity-mapped in long mode */
#define DEBUGCON	0xe9

	.section .multiboot, "a"
	.align 4
	.long MB_MAGIC, MB_FLAGS, -(MB_MAGIC + MB_FLAGS)

	.text
	.code32
	.globl _start
_start:
	cli
	movl $stack_top, %esp
	movl %ebx, %esi			/* multiboot info, kept in ESI/RSI */
	cmpl $MB_BOOT_MAGIC, %eax
	jne halt32
	testl $MBI_HAS_MMAP, MBI_FLAGS(%esi)
	jz halt32

	/* Page tables (in .bss): PML4[0] -> PDPT; PDPT[i] -> PD i; PD entries
	 * are 2 MiB pages. Zero them first, then fill them in. */
	movl $pml4, %edi
	movl $(pd_end - pml4) / 4, %ecx
	xorl %eax, %eax
	rep stosl
	movl $pdpt + 3, pml4		/* present, writable */
	xorl %ecx, %ecx
1:	movl %ecx, %eax			/* PD i is at pd + i * 4096 */
	shll $12, %eax
	addl $pd + 3, %eax
	movl %eax, pdpt(,%ecx,8)
	incl %ecx
	cmpl $MAPPED_GIB, %ecx
	jb 1b
	xorl %ecx, %ecx			/* PD entry n maps n * 2 MiB (edx: high half) */
2:	movl %ecx, %eax
	shll $21, %eax
	orl $0x83, %eax			/* present, writable, 2 MiB page */
	movl %ecx, %edx
	shrl $11, %edx
	movl %eax, pd(,%ecx,8)
	movl %edx, pd + 4(,%ecx,8)
	incl %ecx
	cmpl $MAPPED_GIB * 512, %ecx
	jb 2b

	/* Long mode: PAE, CR3, EFER.LME, paging; then a far jump to 64-bit code. */
	movl %cr4, %eax
	orl $1 << 5, %eax
	movl %eax, %cr4
	movl $pml4, %eax
	movl %eax, %cr3
	movl $0xC0000080, %ecx
	rdmsr
	orl $1 << 8, %eax
	wrmsr
	movl %cr0, %eax
	orl $(1 << 31) | 1, %eax
	movl %eax, %cr0
	lgdt gdt_desc
	movw $0x10, %ax
	movw %ax, %ds
	movw %ax, %es
	movw %ax, %ss
	ljmp $0x08, $start64

halt32:
	hlt
	jmp halt32

	.code64
start64:
	leaq banner(%rip), %rbx
	movw $DEBUGCON, %dx
3:	movb (%rbx), %al
	testb %al, %al
	jz 4f
	outb %al, %dx
	incq %rbx
	jmp 3b

	/* The loop. RAX: the counter; RBX: the map entry; RCX: end of the map;
	 * RDI: the page; R8: end of the region. */
4:	xorl %eax, %eax
pass:
	movl MBI_MMAP_ADDR(%rsi), %ebx
	movl MBI_MMAP_LENGTH(%rsi), %ecx
	addq %rbx, %rcx
entry:
	cmpq %rcx, %rbx
	jae pass_done
	cmpl $1, 20(%rbx)		/* type 1: usable RAM */
	jne next
	movq 4(%rbx), %rdi		/* base */
	movq 12(%rbx), %r8
	addq %rdi, %r8			/* end = base + length */
	movq $MAPPED_GIB << 30, %r9
	cmpq %r9, %r8
	cmova %r9, %r8
	andq $-4096, %r8
	movl $FIRST_BYTE, %r9d
	cmpq %r9, %rdi
	cmovb %r9, %rdi
	addq $4095, %rdi
	andq $-4096, %rdi
	jmp 6f
5:	movq %rax, (%rdi)		/* the one store per page */
	incq %rax
	addq $4096, %rdi
6:	cmpq %r8, %rdi
	jb 5b
next:
	movl (%rbx), %r9d		/* entry size, not counting the size field */
	leaq 4(%rbx, %r9), %rbx
	jmp entry
pass_done:
	movq %rax, %r9
	movb $0x2e, %al			/* '.' */
	outb %al, %dx
	movq %r9, %rax
	jmp pass

	.section .rodata
banner:
	.asciz "qemu-guest: stamping\n"
	.align 8
gdt:
	.quad 0
	.quad 0x00209A0000000000	/* 0x08: 64-bit code */
	.quad 0x00CF92000000FFFF	/* 0x10: data */
gdt_desc:
	.word gdt_desc - gdt - 1
	.long gdt

	.bss
	.align 4096
pml4:	.skip 4096
pdpt:	.skip 4096
pd:	.skip MAPPED_GIB * 4096
pd_end:
	.skip 4096
stack_top:
