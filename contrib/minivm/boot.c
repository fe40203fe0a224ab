/* SPDX-License-Identifier: MIT
 * boot.c — puts a fresh forkfs-minivm guest straight into 64-bit long mode:
 * loads the flat guest image, writes the GDT, the identity-mapped page tables
 * (2 MiB pages over every GiB up to the top of the highest region, so region 1
 * at 4 GiB is mapped too) and the boot-info block into the reserved low area
 * described in guest/abi.h, then sets each vCPU's segment, control and general
 * registers and its FPU. There is no firmware, no real mode, no interrupt
 * controller: the guest only stamps memory and talks through two I/O ports.
 */
#define LOG_PREFIX "vm: "

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "common/macro.h"
#include "common/util.h"
#include "contrib/minivm/guest/abi.h"
#include "contrib/minivm/vm-internal.h"

#define PTE_P 0x1ULL
#define PTE_RW 0x2ULL
#define PTE_PS 0x80ULL
#define GIB (1ULL << 30)

#define CR0_PE 0x1ULL
#define CR0_MP 0x2ULL
#define CR0_ET 0x10ULL
#define CR0_NE 0x20ULL
#define CR0_WP 0x10000ULL
#define CR0_PG 0x80000000ULL
#define CR4_PAE 0x20ULL
#define CR4_OSFXSR 0x200ULL
#define CR4_OSXMMEXCPT 0x400ULL
#define EFER_LME 0x100ULL
#define EFER_LMA 0x400ULL

static int boot__load_image(struct vm *vm, const char *path, struct error *err)
{
	_cleanup_close_ int fd = -1;
	struct stat st;
	ssize_t n;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0) {
		int r = -errno;

		return error_set_errno(err, r, "cannot open guest image %s", path);
	}
	if (!S_ISREG(st.st_mode) || st.st_size <= 0 || st.st_size > GUEST_IMAGE_MAX)
		return error_set(err, -EINVAL, "guest image %s must be a file of 1..%d bytes", path,
				 GUEST_IMAGE_MAX);
	n = pread_full(fd, vm__gpa_to_host(vm, GUEST_LOAD_ADDR, (size_t)st.st_size),
		       (size_t)st.st_size, 0);
	if (n != st.st_size) {
		int r = n < 0 ? (int)n : -EIO;

		return error_set_errno(err, r, "cannot read guest image %s", path);
	}
	return 0;
}

static int boot__page_tables(struct vm *vm, struct error *err)
{
	uint64_t top = 0, ngib;
	uint64_t *pml4 = vm__gpa_to_host(vm, GUEST_PML4_ADDR, GUEST_PAGE_SIZE);
	uint64_t *pdpt = vm__gpa_to_host(vm, GUEST_PDPT_ADDR, GUEST_PAGE_SIZE);

	for (size_t i = 0; i < vm->nr_regions; i++)
		top = MAX(top, vm->regions[i].gpa + vm->regions[i].size);
	ngib = DIV_ROUND_UP(top, GIB);
	if (ngib > GUEST_PD_MAX)
		return error_set(err, -EINVAL, "guest memory above %d GiB is not supported",
				 GUEST_PD_MAX);
	pml4[0] = GUEST_PDPT_ADDR | PTE_P | PTE_RW;
	for (uint64_t g = 0; g < ngib; g++) {
		uint64_t pd_gpa = GUEST_PD_ADDR + g * GUEST_PAGE_SIZE;
		uint64_t *pd = vm__gpa_to_host(vm, pd_gpa, GUEST_PAGE_SIZE);

		pdpt[g] = pd_gpa | PTE_P | PTE_RW;
		for (uint64_t e = 0; e < 512; e++)
			pd[e] = (g * GIB + (e << 21)) | PTE_P | PTE_RW | PTE_PS;
	}
	return 0;
}

static void boot__gdt_and_info(struct vm *vm, const char *boot_args)
{
	char *cmdline = vm__gpa_to_host(vm, GUEST_CMDLINE_ADDR, GUEST_CMDLINE_MAX);

	uint64_t *gdt = vm__gpa_to_host(vm, GUEST_GDT_ADDR, 3 * sizeof(uint64_t));
	struct guest_boot_info *info = vm__gpa_to_host(vm, GUEST_BOOT_INFO_ADDR, sizeof(*info));

	gdt[0] = 0;
	gdt[1] = 0x00af9b000000ffffULL;	/* 0x08: 64-bit code, DPL 0 */
	gdt[2] = 0x00cf93000000ffffULL;	/* 0x10: data, DPL 0 */

	info->magic = GUEST_BOOT_MAGIC;
	info->vcpu_count = vm->nr_vcpus;
	info->nr_regions = (uint32_t)vm->nr_regions;
	info->first_page = GUEST_FIRST_PAGE;
	info->cmdline = 0;
	if (boot_args) {
		snprintf(cmdline, GUEST_CMDLINE_MAX, "%s", boot_args);
		info->cmdline = GUEST_CMDLINE_ADDR;
	}
	for (size_t i = 0; i < vm->nr_regions; i++) {
		info->regions[i].gpa = vm->regions[i].gpa;
		info->regions[i].size = vm->regions[i].size;
	}
}

static void boot__segment(struct kvm_segment *s, uint16_t sel, uint8_t type, bool code)
{
	*s = (struct kvm_segment){
		.base = 0,
		.limit = 0xffffffff,
		.selector = sel,
		.type = type,
		.present = 1,
		.dpl = 0,
		.db = code ? 0 : 1,
		.s = 1,
		.l = code ? 1 : 0,
		.g = 1,
	};
}

static int boot__vcpu(struct vcpu *v)
{
	struct kvm_sregs sregs;
	struct kvm_regs regs = {
		.rip = GUEST_LOAD_ADDR,
		.rsp = GUEST_STACK_BASE + (uint64_t)(v->id + 1) * GUEST_STACK_SIZE,
		.rflags = 0x2,
		.rdi = v->id,
		.rsi = v->vm->nr_vcpus,
		.rdx = GUEST_BOOT_INFO_ADDR,
	};
	struct kvm_fpu fpu = { .fcw = 0x37f, .mxcsr = 0x1f80 };

	/* KVM's reset values are the base; the emulated CPU starts from zero
	 * (it reads only what is set below). */
	memset(&sregs, 0, sizeof(sregs));
	if (!v->vm->emulated && ioctl(v->fd, KVM_GET_SREGS, &sregs) < 0)
		return -errno;
	boot__segment(&sregs.cs, 0x08, 0xb, true);
	boot__segment(&sregs.ds, 0x10, 0x3, false);
	sregs.es = sregs.fs = sregs.gs = sregs.ss = sregs.ds;
	sregs.gdt.base = GUEST_GDT_ADDR;
	sregs.gdt.limit = 3 * 8 - 1;
	sregs.cr3 = GUEST_PML4_ADDR;
	sregs.cr4 = CR4_PAE | CR4_OSFXSR | CR4_OSXMMEXCPT;
	sregs.cr0 = CR0_PE | CR0_MP | CR0_ET | CR0_NE | CR0_WP | CR0_PG;
	sregs.efer = EFER_LME | EFER_LMA;
	if (v->vm->emulated) {
		emu__set_state(v, &regs, &sregs, NULL, &fpu);
		return 0;
	}
	if (ioctl(v->fd, KVM_SET_SREGS, &sregs) < 0)
		return -errno;
	if (ioctl(v->fd, KVM_SET_REGS, &regs) < 0)
		return -errno;
	return RET_NERRNO(ioctl(v->fd, KVM_SET_FPU, &fpu));
}

int boot__setup(struct vm *vm, const char *kernel_path, const char *boot_args,
		struct error *err)
{
	int r;

	if (vm->regions[0].size < GUEST_FIRST_PAGE + GUEST_PAGE_SIZE)
		return error_set(err, -EINVAL, "region 0 is too small for the guest");
	r = boot__load_image(vm, kernel_path, err);
	if (r < 0)
		return r;
	r = boot__page_tables(vm, err);
	if (r < 0)
		return r;
	if (boot_args && strlen(boot_args) >= GUEST_CMDLINE_MAX)
		return error_set(err, -EINVAL, "boot_args longer than %d bytes", GUEST_CMDLINE_MAX - 1);
	boot__gdt_and_info(vm, boot_args);
	for (unsigned i = 0; i < vm->nr_vcpus; i++) {
		r = boot__vcpu(&vm->vcpus[i]);
		if (r < 0)
			return error_set_errno(err, r, "vcpu %u register set-up", i);
	}
	return 0;
}
