/* SPDX-License-Identifier: MIT
 * abi.h — the contract between forkfs-minivm's VM core (vm.c, boot.c) and its
 * guest (guest.c, start.S): the low guest-physical layout, the boot-info block,
 * the two I/O ports and the page-stamp format. Included by host C, guest C and
 * guest assembly, so it holds only #defines and, outside assembly, one struct.
 *
 * Low guest-physical layout (identity mapped; region 0 always starts at 0):
 *   0x001000  GDT (null, 64-bit code 0x08, data 0x10)
 *   0x002000  struct guest_boot_info
 *   0x002800  the kernel command line (boot-source.boot_args), NUL-terminated
 *   0x003000  PML4, 0x004000 PDPT, 0x005000.. one PD per GiB (2 MiB pages)
 *   0x100000  vCPU stacks, 32 KiB each, vCPU i's stack top at 0x100000 + (i+1)*32 KiB
 *   0x200000  the guest image (flat binary) and its .bss
 *   0x400000  GUEST_FIRST_PAGE: everything from here on, in every region, is stamped
 *
 * Entry: 64-bit long mode, paging on, rip = GUEST_LOAD_ADDR, rdi = vCPU id,
 * rsi = vCPU count, rdx = GPA of the boot info, rsp = the vCPU's stack top.
 *
 * Ports: OUT (32-bit) to GUEST_PORT_PRINT with the GPA of a NUL-terminated
 * string (at most GUEST_PRINT_MAX bytes) prints one console line. IN (8 or
 * 32-bit) from GUEST_PORT_RESTORED returns 1 once per vCPU after a restore,
 * otherwise 0.
 *
 * Page stamp: the vCPU owning a page writes qword 0 = the 1-based sequence
 * number of that vCPU's write (j + 1 for its j-th write) and qword 1 = the
 * page's GPA ^ GUEST_STAMP_MAGIC. A page never written is all zero.
 *
 * Command line: "wset_mib=N" (N >= 1) makes the guest, after its first pass
 * over all of its pages, keep rewriting only the first N MiB of them (split
 * over the vCPUs: each keeps its first N MiB / vcpus of own pages); other
 * words are ignored. Without it every pass covers every page.
 */
#pragma once

#define GUEST_GDT_ADDR 0x1000
#define GUEST_BOOT_INFO_ADDR 0x2000
#define GUEST_CMDLINE_ADDR 0x2800
#define GUEST_CMDLINE_MAX 2048
#define GUEST_PML4_ADDR 0x3000
#define GUEST_PDPT_ADDR 0x4000
#define GUEST_PD_ADDR 0x5000
#define GUEST_PD_MAX 128		/* page directories: GPAs below 128 GiB */
#define GUEST_STACK_BASE 0x100000
#define GUEST_STACK_SIZE 0x8000
#define GUEST_LOAD_ADDR 0x200000
#define GUEST_IMAGE_MAX 0x200000	/* image + .bss must end below GUEST_FIRST_PAGE */
#define GUEST_FIRST_PAGE 0x400000

#define GUEST_PORT_PRINT 0x500
#define GUEST_PORT_RESTORED 0x504
#define GUEST_PRINT_MAX 256

#define GUEST_STAMP_MAGIC 0x5afe5a4d70f0f00dULL
#define GUEST_BOOT_MAGIC 0x4f464e49544f4f42ULL	/* "BOOTINFO" */
#define GUEST_MAX_REGIONS 2
#define GUEST_PAGE_SIZE 4096

#ifndef __ASSEMBLER__
#include <stdint.h>

struct guest_boot_info {
	uint64_t magic;		/* GUEST_BOOT_MAGIC */
	uint32_t vcpu_count;
	uint32_t nr_regions;
	uint64_t first_page;	/* GPA of the first page the guest may stamp */
	uint64_t cmdline;	/* GPA of the command line, 0 for none */
	struct {
		uint64_t gpa;
		uint64_t size;
	} regions[GUEST_MAX_REGIONS];
};
#endif
