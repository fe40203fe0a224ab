/* SPDX-License-Identifier: MIT
 * vmstate.c — forkfs-minivm's snapshot files: its own vmstate format, the
 * dense Full memory image, and creating a VM from the two (restore).
 *
 * The vmstate format (version 1). All integers little-endian; the vCPU state
 * blocks are the Linux x86_64 KVM UAPI structs (<asm/kvm.h>) byte for byte.
 *
 *   offset  size        field
 *   0       8           magic, the ASCII bytes "MVMSTATE"
 *   8       4           format version (1)
 *   12      4           header size in bytes (96)
 *   16      4           vCPU count N (1..32)
 *   20      4           region count R (1..2)
 *   24      4           size of one vCPU record in bytes
 *   28      4           reserved, 0
 *   32      8           guest memory size in bytes (Σ region sizes)
 *   40      8           region split in bytes (region 0's size when R = 2)
 *   48      2 × 24      region table: {u64 gpa, u64 size, u64 file_offset};
 *                       entries past R are zero; file_offset is cumulative
 *   96      N × record  one vCPU record each, in vCPU id order:
 *                         u32 id, u32 flags (1: xsave valid, else fpu;
 *                         2: xcrs valid; 4: vcpu_events valid; 8: taken on
 *                         the emulated CPU, see below), u32 nmsrs, u32 0,
 *                         struct kvm_regs, struct kvm_sregs (includes EFER, CR0/3/4,
 *                         segments, GDT/IDT), struct kvm_xsave (4096 bytes),
 *                         struct kvm_fpu, struct kvm_xcrs, struct kvm_vcpu_events,
 *                         struct kvm_msr_entry msrs[16] (first nmsrs valid)
 *   end-8   8           CRC-64/Jones (reflected poly 0xad93d23594c935a9, init 0,
 *                       xorout 0, as Firecracker's vmstate) over all bytes before it
 *
 * The saved MSRs are those of msr_list[] below that KVM lets us read: TSC,
 * SYSENTER_CS/ESP/EIP, PAT, MISC_ENABLE, STAR, LSTAR, CSTAR, SFMASK,
 * KERNEL_GS_BASE, TSC_AUX. Exactly the saved entries are restored.
 *
 * A vCPU of the emulated CPU (emu.c) saves its registers in the same
 * structs: kvm_regs, the kvm_sregs boot.c set (fs/gs bases updated), and its
 * x87 control word, MXCSR and XMM registers in the legacy area of kvm_xsave;
 * no MSRs, xcrs or events. Flag 8 marks such a record: AUTO restores it on the
 * emulated CPU and KVM refuses it (its system registers are not KVM's).
 *
 * Loading checks, in order: length, magic, CRC, version, header and record
 * sizes, counts, region table; each failure has its own "vmstate: ..." message.
 */
#define LOG_PREFIX "vm: "

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "common/macro.h"
#include "common/util.h"
#include "contrib/minivm/guest/abi.h"
#include "contrib/minivm/vm-internal.h"

#define VMSTATE_MAGIC "MVMSTATE"
#define VMSTATE_VERSION 1
#define VMSTATE_FILE_MAX (1U << 20)

#define VMSTATE_F_XSAVE 1U
#define VMSTATE_F_XCRS 2U
#define VMSTATE_F_EVENTS 4U
#define VMSTATE_F_EMULATED 8U

struct vmstate_header {
	char magic[8];
	uint32_t version;
	uint32_t header_size;
	uint32_t vcpu_count;
	uint32_t nr_regions;
	uint32_t vcpu_record_size;
	uint32_t reserved;
	uint64_t mem_size;
	uint64_t split;
	struct {
		uint64_t gpa, size, file_offset;
	} regions[VM_MAX_REGIONS];
};
_Static_assert(sizeof(struct vmstate_header) == 96, "vmstate header layout");

struct vmstate_vcpu {
	uint32_t id;
	uint32_t flags;
	uint32_t nmsrs;
	uint32_t pad;
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	struct kvm_xsave xsave;
	struct kvm_fpu fpu;
	struct kvm_xcrs xcrs;
	struct kvm_vcpu_events events;
	struct kvm_msr_entry msrs[VM_STATE_MAX_MSRS];
};
_Static_assert(sizeof(struct vmstate_vcpu) % 8 == 0, "vmstate vCPU record alignment");

static const uint32_t msr_list[] = {
	0x10,		/* IA32_TSC */
	0x174,		/* IA32_SYSENTER_CS */
	0x175,		/* IA32_SYSENTER_ESP */
	0x176,		/* IA32_SYSENTER_EIP */
	0x277,		/* IA32_PAT */
	0x1a0,		/* IA32_MISC_ENABLE */
	0xc0000081,	/* STAR */
	0xc0000082,	/* LSTAR */
	0xc0000083,	/* CSTAR */
	0xc0000084,	/* SFMASK */
	0xc0000102,	/* KERNEL_GS_BASE */
	0xc0000103,	/* TSC_AUX */
};
_Static_assert(ARRAY_SIZE(msr_list) <= VM_STATE_MAX_MSRS, "MSR list too long");

uint64_t vmstate__crc64(uint64_t crc, const void *buf, size_t len)
{
	static uint64_t table[256];
	const uint8_t *p = buf;

	if (!__atomic_load_n(&table[1], __ATOMIC_ACQUIRE)) {
		uint64_t t[256];

		for (unsigned i = 0; i < 256; i++) {
			uint64_t c = i;

			for (int k = 0; k < 8; k++)
				c = c & 1 ? (c >> 1) ^ 0x95ac9329ac4bc9b5ULL : c >> 1;
			t[i] = c;
		}
		for (unsigned i = 0; i < 256; i++)
			__atomic_store_n(&table[i], t[i], __ATOMIC_RELEASE);
	}
	while (len--)
		crc = table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
	return crc;
}

/* Read every MSR of msr_list that KVM accepts; KVM_GET_MSRS stops at the
 * first one it refuses, which is then dropped. */
static int vcpu__get_msrs(struct vcpu *v, struct vmstate_vcpu *rec)
{
	struct {
		struct kvm_msrs hdr;
		struct kvm_msr_entry e[VM_STATE_MAX_MSRS];
	} m = { 0 };
	uint32_t want[VM_STATE_MAX_MSRS];
	unsigned n = ARRAY_SIZE(msr_list);

	memcpy(want, msr_list, sizeof(msr_list));
	for (;;) {
		int r;

		m.hdr.nmsrs = n;
		for (unsigned i = 0; i < n; i++)
			m.e[i] = (struct kvm_msr_entry){ .index = want[i] };
		r = ioctl(v->fd, KVM_GET_MSRS, &m);
		if (r < 0)
			return -errno;
		if ((unsigned)r == n)
			break;
		memmove(&want[r], &want[r + 1], (n - (unsigned)r - 1) * sizeof(want[0]));
		n--;
	}
	rec->nmsrs = n;
	memcpy(rec->msrs, m.e, n * sizeof(m.e[0]));
	return 0;
}

static int vcpu__save(struct vcpu *v, struct vmstate_vcpu *rec)
{
	int r;

	memset(rec, 0, sizeof(*rec));
	rec->id = v->id;
	if (v->vm->emulated) {
		emu__get_state(v, &rec->regs, &rec->sregs, &rec->xsave);
		rec->flags = VMSTATE_F_XSAVE | VMSTATE_F_EMULATED;
		return 0;
	}
	if (ioctl(v->fd, KVM_GET_REGS, &rec->regs) < 0 ||
	    ioctl(v->fd, KVM_GET_SREGS, &rec->sregs) < 0)
		return -errno;
	if (ioctl(v->fd, KVM_GET_XSAVE, &rec->xsave) == 0)
		rec->flags |= VMSTATE_F_XSAVE;
	else if (ioctl(v->fd, KVM_GET_FPU, &rec->fpu) < 0)
		return -errno;
	if (ioctl(v->fd, KVM_GET_XCRS, &rec->xcrs) == 0)
		rec->flags |= VMSTATE_F_XCRS;
	if (ioctl(v->fd, KVM_GET_VCPU_EVENTS, &rec->events) == 0)
		rec->flags |= VMSTATE_F_EVENTS;
	r = vcpu__get_msrs(v, rec);
	return r;
}

static int vcpu__restore(struct vcpu *v, const struct vmstate_vcpu *rec, struct error *err)
{
	struct {
		struct kvm_msrs hdr;
		struct kvm_msr_entry e[VM_STATE_MAX_MSRS];
	} m = { .hdr.nmsrs = rec->nmsrs };
	const char *what;
	int r;

	if (v->vm->emulated) {
		emu__set_state(v, &rec->regs, &rec->sregs,
			       (rec->flags & VMSTATE_F_XSAVE) ? (const uint8_t *)rec->xsave.region : NULL,
			       &rec->fpu);
		return 0;
	}
	if (rec->flags & VMSTATE_F_EMULATED)
		return error_set(err, -EINVAL,
				 "vmstate: taken on the emulated CPU; restore it with --cpu auto or emulated");
	what = "KVM_SET_SREGS";
	if (ioctl(v->fd, KVM_SET_SREGS, &rec->sregs) < 0)
		goto fail;
	what = "KVM_SET_REGS";
	if (ioctl(v->fd, KVM_SET_REGS, &rec->regs) < 0)
		goto fail;
	what = "KVM_SET_XCRS";
	if ((rec->flags & VMSTATE_F_XCRS) && ioctl(v->fd, KVM_SET_XCRS, &rec->xcrs) < 0)
		goto fail;
	what = "KVM_SET_XSAVE";
	if ((rec->flags & VMSTATE_F_XSAVE) && ioctl(v->fd, KVM_SET_XSAVE, &rec->xsave) < 0)
		goto fail;
	what = "KVM_SET_FPU";
	if (!(rec->flags & VMSTATE_F_XSAVE) && ioctl(v->fd, KVM_SET_FPU, &rec->fpu) < 0)
		goto fail;
	what = "KVM_SET_VCPU_EVENTS";
	if ((rec->flags & VMSTATE_F_EVENTS) && ioctl(v->fd, KVM_SET_VCPU_EVENTS, &rec->events) < 0)
		goto fail;
	memcpy(m.e, rec->msrs, rec->nmsrs * sizeof(m.e[0]));
	r = ioctl(v->fd, KVM_SET_MSRS, &m);
	if (r != (int)rec->nmsrs)
		return error_set(err, -EIO, "vcpu %u: KVM_SET_MSRS restored %d of %u MSRs", v->id,
				 r, rec->nmsrs);
	return 0;
fail:
	r = -errno;
	return error_set_errno(err, r, "vcpu %u: %s", v->id, what);
}

/* The vCPU state may be read only while every living vCPU thread is parked. */
static int vm__require_paused(struct vm *vm, struct error *err)
{
	bool parked;

	pthread_mutex_lock(&vm->lock);
	parked = vm->pause_req && vm->nr_parked == vm->running;
	pthread_mutex_unlock(&vm->lock);
	if (parked)
		return 0;
	return error_set(err, -EBUSY, "the VM must be paused");
}

static int write_new_file(const char *path, struct error *err)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	if (fd < 0)
		return error_set_errno(err, -errno, "cannot create %s", path);
	return fd;
}

int vm_save_vmstate(struct vm *vm, const char *path, struct error *err)
{
	size_t len = sizeof(struct vmstate_header) + vm->nr_vcpus * sizeof(struct vmstate_vcpu) + 8;
	_cleanup_free_ uint8_t *buf = NULL;
	_cleanup_close_ int fd = -1;
	struct vmstate_header *h;
	uint64_t crc;
	int r;

	r = vm__require_paused(vm, err);
	if (r < 0)
		return r;
	buf = calloc(1, len);
	if (!buf)
		return -ENOMEM;
	h = (struct vmstate_header *)buf;
	memcpy(h->magic, VMSTATE_MAGIC, sizeof(h->magic));
	h->version = VMSTATE_VERSION;
	h->header_size = sizeof(*h);
	h->vcpu_count = vm->nr_vcpus;
	h->nr_regions = (uint32_t)vm->nr_regions;
	h->vcpu_record_size = sizeof(struct vmstate_vcpu);
	h->mem_size = vm->mem_size;
	h->split = vm->split;
	for (size_t i = 0; i < vm->nr_regions; i++) {
		h->regions[i].gpa = vm->regions[i].gpa;
		h->regions[i].size = vm->regions[i].size;
		h->regions[i].file_offset = vm->regions[i].file_offset;
	}
	for (unsigned i = 0; i < vm->nr_vcpus; i++) {
		struct vmstate_vcpu *rec = (struct vmstate_vcpu *)(buf + sizeof(*h)) + i;

		r = vcpu__save(&vm->vcpus[i], rec);
		if (r < 0)
			return error_set_errno(err, r, "vcpu %u: cannot read its state", i);
	}
	crc = vmstate__crc64(0, buf, len - 8);
	memcpy(buf + len - 8, &crc, 8);

	fd = write_new_file(path, err);
	if (fd < 0)
		return fd;
	r = write_full(fd, buf, len);
	if (r < 0)
		return error_set_errno(err, r, "cannot write %s", path);
	return 0;
}

int vm_save_memory(struct vm *vm, const char *path, struct error *err)
{
	_cleanup_close_ int fd = -1;
	int r;

	r = vm__require_paused(vm, err);
	if (r < 0)
		return r;
	fd = write_new_file(path, err);
	if (fd < 0)
		return fd;
	/* One large pwrite per region, straight from the guest mapping. */
	for (size_t i = 0; i < vm->nr_regions; i++) {
		const struct vm_region *reg = &vm->regions[i];

		r = pwrite_full(fd, reg->host, reg->size, (off_t)reg->file_offset);
		if (r < 0)
			return error_set_errno(err, r, "cannot write %s", path);
	}
	return 0;
}

/* Validate a vmstate image; returns 0 or -EINVAL with the reason in err. */
static int vmstate__check(const uint8_t *buf, size_t len, struct error *err)
{
	const struct vmstate_header *h = (const void *)buf;
	uint64_t crc, total = 0;

	if (len < sizeof(*h) + 8)
		return error_set(err, -EINVAL, "vmstate: file too short (%zu bytes)", len);
	if (memcmp(h->magic, VMSTATE_MAGIC, sizeof(h->magic)) != 0)
		return error_set(err, -EINVAL, "vmstate: bad magic (not a forkfs-minivm vmstate)");
	memcpy(&crc, buf + len - 8, 8);
	if (crc != vmstate__crc64(0, buf, len - 8))
		return error_set(err, -EINVAL, "vmstate: checksum mismatch");
	if (h->version != VMSTATE_VERSION)
		return error_set(err, -EINVAL, "vmstate: unsupported format version %u (want %u)",
				 h->version, VMSTATE_VERSION);
	if (h->header_size != sizeof(*h) || h->vcpu_record_size != sizeof(struct vmstate_vcpu))
		return error_set(err, -EINVAL, "vmstate: unexpected header or vCPU record size");
	if (h->vcpu_count < 1 || h->vcpu_count > VM_MAX_VCPUS || h->nr_regions < 1 ||
	    h->nr_regions > VM_MAX_REGIONS)
		return error_set(err, -EINVAL, "vmstate: bad vCPU or region count");
	if (len != sizeof(*h) + h->vcpu_count * sizeof(struct vmstate_vcpu) + 8)
		return error_set(err, -EINVAL, "vmstate: size mismatch (%zu bytes for %u vCPUs)",
				 len, h->vcpu_count);
	for (uint32_t i = 0; i < h->nr_regions; i++) {
		if (h->regions[i].file_offset != total || h->regions[i].size % GUEST_PAGE_SIZE ||
		    !h->regions[i].size || (i == 0 && h->regions[i].gpa != 0) ||
		    (i > 0 && h->regions[i].gpa < h->regions[i - 1].gpa + h->regions[i - 1].size))
			return error_set(err, -EINVAL, "vmstate: bad region table");
		total += h->regions[i].size;
	}
	if (total != h->mem_size)
		return error_set(err, -EINVAL,
				 "vmstate: region sizes do not add up to the memory size");
	for (uint32_t i = 0; i < h->vcpu_count; i++) {
		const struct vmstate_vcpu *rec = (const struct vmstate_vcpu *)(buf + sizeof(*h)) + i;

		if (rec->id != i || rec->nmsrs > VM_STATE_MAX_MSRS)
			return error_set(err, -EINVAL, "vmstate: bad vCPU record %u", i);
	}
	return 0;
}

static int vm__open_image(struct vm *vm, const char *mem_path, bool shared, struct error *err)
{
	struct stat st;
	int fd, r;

	fd = open(mem_path, (shared ? O_RDWR : O_RDONLY) | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0) {
		r = error_set_errno(err, -errno, "cannot open memory file %s", mem_path);
		safe_close(fd);
		return r;
	}
	if ((uint64_t)st.st_size != vm->mem_size) {
		safe_close(fd);
		return error_set(err, -EINVAL,
				 "memory file %s is %llu bytes, the vmstate says %llu", mem_path,
				 (unsigned long long)st.st_size, (unsigned long long)vm->mem_size);
	}
	return fd;
}

int vm_create_restore(const char *vmstate_path, const char *mem_path, bool shared,
		      uint64_t split_mib, enum vm_cpu cpu, struct vm **ret, struct error *err)
{
	_cleanup_free_ char *buf = NULL;
	const struct vmstate_header *h;
	const struct vmstate_vcpu *rec0;
	_cleanup_close_ int fd = -1;
	struct vm *vm = NULL;
	size_t len;
	int r;

	r = read_file(vmstate_path, VMSTATE_FILE_MAX, &buf, &len);
	if (r < 0)
		return error_set(err, r, "vmstate: cannot read %s: %s", vmstate_path,
				 r == -EFBIG ? "file too large" : strerror(-r));
	r = vmstate__check((const uint8_t *)buf, len, err);
	if (r < 0)
		return r;
	h = (const struct vmstate_header *)buf;
	if (split_mib && h->nr_regions == 2 && split_mib << 20 != h->split)
		log_warning("vmstate region split is %llu MiB, not %llu; using the vmstate's",
			    (unsigned long long)(h->split >> 20), (unsigned long long)split_mib);

	r = vm__alloc(&vm);
	if (r < 0)
		return r;
	vm->mem_size = h->mem_size;
	vm->split = h->split;
	vm->nr_regions = h->nr_regions;
	for (size_t i = 0; i < vm->nr_regions; i++) {
		vm->regions[i].gpa = h->regions[i].gpa;
		vm->regions[i].size = h->regions[i].size;
		vm->regions[i].file_offset = h->regions[i].file_offset;
	}
	fd = vm__open_image(vm, mem_path, shared, err);
	if (fd < 0) {
		r = fd;
		goto err;
	}
	rec0 = (const struct vmstate_vcpu *)(buf + sizeof(*h));
	if (cpu == VM_CPU_AUTO && (rec0->flags & VMSTATE_F_EMULATED))
		cpu = VM_CPU_EMULATED;
	r = vm__open_cpu(vm, cpu, err);
	if (r < 0)
		goto err;
	r = vm__map_memory(vm, fd, shared, false, err);
	if (r < 0)
		goto err;
	r = vm__create_vcpus(vm, h->vcpu_count, err);
	if (r < 0)
		goto err;
	for (unsigned i = 0; i < vm->nr_vcpus; i++) {
		const struct vmstate_vcpu *rec = (const void *)(buf + sizeof(*h));

		r = vcpu__restore(&vm->vcpus[i], rec + i, err);
		if (r < 0)
			goto err;
		atomic_store(&vm->vcpus[i].restored, true);
	}
	vm->pause_req = true;	/* until vm_start() */
	*ret = vm;
	return 0;
err:
	vm_destroy(vm);
	return r;
}
