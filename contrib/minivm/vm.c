/* SPDX-License-Identifier: MIT
 * vm.c — the core of forkfs-minivm's KVM half: guest memory, vCPU threads,
 * pause and resume, the guest's I/O ports, and the VM's lifetime.
 *
 * Memory. By default all guest memory is ONE memfd ("forkfs-minivm-guest");
 * region i is mapped MAP_SHARED from file offset Σ sizes of the regions before
 * it, exactly like Firecracker restored from a memory file with shared:true,
 * so /proc/PID/maps shows rw-s mappings and /proc/PID/map_files/ works. With
 * cfg->anon every region is private anonymous memory instead. The regions sit
 * in one PROT_NONE reservation with a gap between them, so that their mappings
 * are never adjacent (as in Firecracker), each mapped with its own mmap.
 *
 * vCPU threads. Each thread loops on KVM_RUN. vm_pause() sets pause_req, sets
 * every vCPU's run->immediate_exit and kicks its thread with VM_KICK_SIGNAL
 * (an empty handler): a thread inside the guest leaves KVM_RUN with EINTR, a
 * thread about to enter it finds immediate_exit set and returns at once. The
 * KVM_RUN that returns EINTR has also completed any pending port I/O, so the
 * registers are consistent when the thread parks on vm->cond. vm_pause()
 * returns once every living thread is parked. Only the owning thread clears
 * immediate_exit, under vm->lock, when it leaves the park.
 *
 * Emulated vCPUs (emu.c, cpu.c) follow the same protocol with v->kick in
 * place of immediate_exit: cpu_run() checks it before every instruction, so
 * a parked emulated vCPU is always at an instruction boundary. A thread
 * asleep in a userfault (a write to a write-protected page) wakes when the
 * page is released, on either backend.
 *
 * An exit the VM core does not expect (shutdown, failed entry, internal
 * error, hlt ...) is logged and stops the whole VM: every thread leaves and
 * vm_has_stopped() turns true. Nothing here ever aborts the process.
 */
#define LOG_PREFIX "vm: "

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "common/macro.h"
#include "contrib/minivm/guest/abi.h"
#include "contrib/minivm/vm-internal.h"

#define VM_KICK_SIGNAL SIGRTMIN
#define VM_PAUSE_TIMEOUT_SEC 10
#define VM_REGION_GAP (2ULL << 20)
#define VM_MAP_ALIGN (2ULL << 20)

static void kick_handler(int sig) { (void)sig; }

static void install_kick_handler(void)
{
	struct sigaction sa = { .sa_handler = kick_handler };

	/* No SA_RESTART: KVM_RUN must return EINTR. */
	sigemptyset(&sa.sa_mask);
	sigaction(VM_KICK_SIGNAL, &sa, NULL);
}

int vm__alloc(struct vm **ret)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	pthread_condattr_t ca;
	struct vm *vm;

	vm = calloc(1, sizeof(*vm));
	if (!vm)
		return -ENOMEM;
	vm->kvm_fd = vm->vm_fd = vm->mem_fd = -1;
	for (unsigned i = 0; i < VM_MAX_VCPUS; i++)
		vm->vcpus[i].fd = -1;
	pthread_mutex_init(&vm->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&vm->cond, &ca);
	pthread_condattr_destroy(&ca);
	pthread_once(&once, install_kick_handler);
	*ret = vm;
	return 0;
}

void vm_set_console(struct vm *vm, vm_console_fn fn, void *userdata)
{
	vm->console = fn;
	vm->console_userdata = userdata;
}

static void vm__console(struct vm *vm, const char *line)
{
	if (vm->console) {
		vm->console(line, vm->console_userdata);
		return;
	}
	/* One call per line, so that lines of different vCPUs never interleave. */
	fprintf(stdout, "%s\n", line);
	fflush(stdout);
}

static int vm__get_supported_cpuid(struct vm *vm)
{
	for (unsigned nent = 64; nent <= 4096; nent *= 2) {
		struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + nent * sizeof(c->entries[0]));

		if (!c)
			return -ENOMEM;
		c->nent = nent;
		if (ioctl(vm->kvm_fd, KVM_GET_SUPPORTED_CPUID, c) == 0) {
			vm->cpuid = c;
			return 0;
		}
		free(c);
		if (errno != E2BIG)
			return -errno;
	}
	return -E2BIG;
}

static int vm__open_kvm(struct vm *vm, struct error *err)
{
	int r;

	vm->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (vm->kvm_fd < 0) {
		r = -errno;
		return error_set_errno(err, r, "cannot open /dev/kvm");
	}
	r = ioctl(vm->kvm_fd, KVM_GET_API_VERSION, 0);
	if (r != KVM_API_VERSION)
		return error_set(err, -ENOTSUP, "KVM API version %d, want %d", r, KVM_API_VERSION);
	vm->vm_fd = ioctl(vm->kvm_fd, KVM_CREATE_VM, 0);
	if (vm->vm_fd < 0) {
		r = -errno;
		return error_set_errno(err, r, "KVM_CREATE_VM");
	}
	r = ioctl(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (r < (int)sizeof(struct kvm_run))
		return error_set(err, -ENOTSUP, "KVM_GET_VCPU_MMAP_SIZE: %s", strerror(errno));
	vm->run_size = (size_t)r;
	r = vm__get_supported_cpuid(vm);
	if (r < 0)
		return error_set_errno(err, r, "KVM_GET_SUPPORTED_CPUID");
	return 0;
}

int vm__open_cpu(struct vm *vm, enum vm_cpu cpu, struct error *err)
{
	struct error kvm_err = ERROR_INIT;
	int r;

	if (cpu == VM_CPU_EMULATED) {
		vm->emulated = true;
		return 0;
	}
	r = vm__open_kvm(vm, cpu == VM_CPU_KVM ? err : &kvm_err);
	if (r >= 0 || cpu == VM_CPU_KVM)
		return r;
	vm->vm_fd = safe_close(vm->vm_fd);
	vm->kvm_fd = safe_close(vm->kvm_fd);
	free(vm->cpuid);
	vm->cpuid = NULL;
	vm->emulated = true;
	log_info("no usable KVM (%s): the guest runs on the emulated CPU", error_msg(&kvm_err));
	return 0;
}

const char *vm_cpu_name(struct vm *vm)
{
	return vm->emulated ? "emulated" : "kvm";
}

void vm__layout(uint64_t mem_size, uint64_t split, struct vm_region *regions, size_t *nr)
{
	memset(regions, 0, sizeof(*regions) * VM_MAX_REGIONS);
	if (mem_size <= split) {
		regions[0].size = mem_size;
		*nr = 1;
		return;
	}
	regions[0].size = split;
	regions[1].gpa = VM_HIGH_REGION_GPA;
	regions[1].size = mem_size - split;
	regions[1].file_offset = split;
	*nr = 2;
}

/* fd >= 0: map every region from fd (a memory image); otherwise create the
 * memfd, or private anonymous memory when anon is set. */
int vm__map_memory(struct vm *vm, int fd, bool shared, bool anon, struct error *err)
{
	uint8_t *base;
	size_t total = VM_MAP_ALIGN;
	int r;

	if (fd < 0 && !anon) {
		vm->mem_fd = memfd_create("forkfs-minivm-guest", MFD_CLOEXEC);
		if (vm->mem_fd < 0 || ftruncate(vm->mem_fd, (off_t)vm->mem_size) < 0) {
			r = -errno;
			return error_set_errno(err, r, "guest memory memfd");
		}
		fd = vm->mem_fd;
		shared = true;
	}
	for (size_t i = 0; i < vm->nr_regions; i++)
		total += ALIGN_UP(vm->regions[i].size, VM_MAP_ALIGN) + VM_REGION_GAP;
	vm->reserve = mmap(NULL, total, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
			   -1, 0);
	if (vm->reserve == MAP_FAILED) {
		vm->reserve = NULL;
		return error_set(err, -ENOMEM, "cannot reserve %zu bytes of address space", total);
	}
	vm->reserve_size = total;
	base = (uint8_t *)ALIGN_UP((uintptr_t)vm->reserve, VM_MAP_ALIGN);

	for (size_t i = 0; i < vm->nr_regions; i++) {
		struct vm_region *reg = &vm->regions[i];
		struct kvm_userspace_memory_region kreg;
		void *p;

		if (fd < 0)
			p = mmap(base, reg->size, PROT_READ | PROT_WRITE,
				 MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		else
			p = mmap(base, reg->size, PROT_READ | PROT_WRITE,
				 MAP_FIXED | (shared ? MAP_SHARED : MAP_PRIVATE | MAP_NORESERVE), fd,
				 (off_t)reg->file_offset);
		if (p == MAP_FAILED) {
			r = -errno;
			return error_set_errno(err, r, "mmap of guest region %zu", i);
		}
		reg->host = p;
		/* Leave a PROT_NONE gap so the next region is not adjacent. */
		base += ALIGN_UP(reg->size, VM_MAP_ALIGN) + VM_REGION_GAP;
		if (vm->emulated)
			continue;
		kreg = (struct kvm_userspace_memory_region){
			.slot = (uint32_t)i,
			.guest_phys_addr = reg->gpa,
			.memory_size = reg->size,
			.userspace_addr = (uintptr_t)p,
		};
		if (ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &kreg) < 0) {
			r = -errno;
			return error_set_errno(err, r, "KVM_SET_USER_MEMORY_REGION %zu", i);
		}
	}
	return 0;
}

void *vm__gpa_to_host(struct vm *vm, uint64_t gpa, size_t len)
{
	for (size_t i = 0; i < vm->nr_regions; i++) {
		const struct vm_region *reg = &vm->regions[i];

		if (gpa >= reg->gpa && gpa - reg->gpa <= reg->size && len <= reg->size - (gpa - reg->gpa))
			return (uint8_t *)reg->host + (gpa - reg->gpa);
	}
	return NULL;
}

static int vcpu__set_cpuid(struct vcpu *v)
{
	struct kvm_cpuid2 *src = v->vm->cpuid;
	size_t sz = sizeof(*src) + src->nent * sizeof(src->entries[0]);
	_cleanup_free_ struct kvm_cpuid2 *c = malloc(sz);

	if (!c)
		return -ENOMEM;
	memcpy(c, src, sz);
	for (unsigned i = 0; i < c->nent; i++) {
		struct kvm_cpuid_entry2 *e = &c->entries[i];

		/* Give each vCPU its own initial APIC id, as kvmtool does. */
		if (e->function == 1)
			e->ebx = (e->ebx & 0x00ffffff) | (v->id << 24);
		else if (e->function == 0xb || e->function == 0x1f)
			e->edx = v->id;
	}
	return RET_NERRNO(ioctl(v->fd, KVM_SET_CPUID2, c));
}

int vm__create_vcpus(struct vm *vm, unsigned count, struct error *err)
{
	int r;

	for (unsigned i = 0; i < count; i++) {
		struct vcpu *v = &vm->vcpus[i];

		v->vm = vm;
		v->id = i;
		if (vm->emulated) {
			vm->nr_vcpus = i + 1;
			continue;
		}
		v->fd = ioctl(vm->vm_fd, KVM_CREATE_VCPU, (unsigned long)i);
		if (v->fd < 0) {
			r = -errno;
			return error_set_errno(err, r, "KVM_CREATE_VCPU %u", i);
		}
		/* KVM does not set O_CLOEXEC on vCPU fds before 5.x; make sure. */
		fcntl(v->fd, F_SETFD, FD_CLOEXEC);
		vm->nr_vcpus = i + 1;
		v->run = mmap(NULL, vm->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, v->fd, 0);
		if (v->run == MAP_FAILED) {
			v->run = NULL;
			r = -errno;
			return error_set_errno(err, r, "mmap of kvm_run %u", i);
		}
		r = vcpu__set_cpuid(v);
		if (r < 0)
			return error_set_errno(err, r, "KVM_SET_CPUID2 %u", i);
	}
	return 0;
}

/* Stop every vCPU thread (called with vm->lock held). */
static void vm__kick_all_locked(struct vm *vm)
{
	for (unsigned i = 0; i < vm->nr_vcpus; i++) {
		struct vcpu *v = &vm->vcpus[i];

		if (vm->emulated) {
			atomic_store(&v->kick, true);
			if (v->thread_started)	/* cuts emu.c's pacing sleep short */
				pthread_kill(v->thread, VM_KICK_SIGNAL);
			continue;
		}
		if (!v->run)
			continue;
		__atomic_store_n(&v->run->immediate_exit, 1, __ATOMIC_SEQ_CST);
		if (v->thread_started)
			pthread_kill(v->thread, VM_KICK_SIGNAL);
	}
}

static void vm__fail(struct vm *vm)
{
	atomic_store(&vm->failed, true);
	pthread_mutex_lock(&vm->lock);
	vm->stop_req = true;
	vm__kick_all_locked(vm);
	pthread_cond_broadcast(&vm->cond);
	pthread_mutex_unlock(&vm->lock);
}

static void vcpu__print(struct vcpu *v, uint32_t gpa)
{
	char line[GUEST_PRINT_MAX];
	const char *s = NULL;
	size_t n = 0;

	for (size_t len = GUEST_PRINT_MAX; len && !s; len /= 2)
		s = vm__gpa_to_host(v->vm, gpa, len);
	if (!s) {
		log_warning("vcpu %u printed from a bad address 0x%x", v->id, gpa);
		return;
	}
	while (n < GUEST_PRINT_MAX - 1 && vm__gpa_to_host(v->vm, gpa + n, 1) && s[n]) {
		line[n] = (s[n] >= 0x20 && s[n] < 0x7f) ? s[n] : '?';
		n++;
	}
	line[n] = '\0';
	vm__console(v->vm, line);
}

void vcpu__port_out(struct vcpu *v, uint16_t port, unsigned size, uint32_t value)
{
	if (port == GUEST_PORT_PRINT && size == 4)
		vcpu__print(v, value);
	else
		log_debug("vcpu %u: OUT to unknown port 0x%x ignored", v->id, port);
}

uint32_t vcpu__port_in(struct vcpu *v, uint16_t port, unsigned size)
{
	if (port == GUEST_PORT_RESTORED)
		return atomic_exchange(&v->restored, false) ? 1 : 0;
	return size == 4 ? 0xffffffffU : (1U << (8 * size)) - 1;
}

static void vcpu__handle_io(struct vcpu *v)
{
	struct kvm_run *run = v->run;
	uint8_t *data = (uint8_t *)run + run->io.data_offset;
	unsigned size = run->io.size;

	/* String I/O (count > 1) is not part of the guest's ABI: each element
	 * is served as its own access. */
	for (uint32_t i = 0; i < run->io.count; i++, data += size) {
		uint32_t val = 0;

		if (run->io.direction == KVM_EXIT_IO_OUT) {
			memcpy(&val, data, size <= 4 ? size : 4);
			vcpu__port_out(v, run->io.port, size, val);
		} else {
			val = vcpu__port_in(v, run->io.port, size);
			memcpy(data, &val, size <= 4 ? size : 4);
		}
	}
}

/* Returns 0 to go on, or -EIO for an exit that stops the VM. */
static int vcpu__handle_exit(struct vcpu *v)
{
	struct kvm_run *run = v->run;

	switch (run->exit_reason) {
	case KVM_EXIT_IO:
		vcpu__handle_io(v);
		return 0;
	case KVM_EXIT_INTR:
		return 0;
	case KVM_EXIT_HLT:
		log_error("vcpu %u halted; stopping the VM", v->id);
		return -EIO;
	case KVM_EXIT_SHUTDOWN:
		log_error("vcpu %u: guest shutdown (triple fault?); stopping the VM", v->id);
		return -EIO;
	case KVM_EXIT_FAIL_ENTRY:
		log_error("vcpu %u: entry failed, reason 0x%llx; stopping the VM", v->id,
			  (unsigned long long)run->fail_entry.hardware_entry_failure_reason);
		return -EIO;
	case KVM_EXIT_INTERNAL_ERROR: {
		struct kvm_regs regs = { 0 };

		ioctl(v->fd, KVM_GET_REGS, &regs);
		log_error("vcpu %u: KVM internal error, suberror %u at rip 0x%llx; stopping the VM",
			  v->id, run->internal.suberror, (unsigned long long)regs.rip);
		for (unsigned i = 0; i < run->internal.ndata && i < 4; i++)
			log_error("vcpu %u: internal error data[%u] = 0x%llx", v->id, i,
				  (unsigned long long)run->internal.data[i]);
		return -EIO;
	}
	default:
		log_error("vcpu %u: unexpected exit reason %u; stopping the VM", v->id,
			  run->exit_reason);
		return -EIO;
	}
}

/* Park until resumed. Returns true when the thread must exit. */
static bool vcpu__park(struct vcpu *v)
{
	struct vm *vm = v->vm;
	bool stop;

	pthread_mutex_lock(&vm->lock);
	while (vm->pause_req && !vm->stop_req) {
		if (!v->parked) {
			v->parked = true;
			vm->nr_parked++;
			pthread_cond_broadcast(&vm->cond);
		}
		pthread_cond_wait(&vm->cond, &vm->lock);
	}
	if (v->parked) {
		v->parked = false;
		vm->nr_parked--;
	}
	stop = vm->stop_req;
	if (!stop && vm->emulated)
		atomic_store(&v->kick, false);
	else if (!stop)
		__atomic_store_n(&v->run->immediate_exit, 0, __ATOMIC_SEQ_CST);
	pthread_mutex_unlock(&vm->lock);
	return stop;
}

static void *vcpu__thread(void *arg)
{
	struct vcpu *v = arg;
	struct vm *vm = v->vm;
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, VM_KICK_SIGNAL);
	pthread_sigmask(SIG_UNBLOCK, &set, NULL);

	while (vm->emulated) {
		if (emu__run(v) < 0) {
			vm__fail(vm);
			break;
		}
		if (vcpu__park(v))
			break;
	}
	while (!vm->emulated) {
		if (ioctl(v->fd, KVM_RUN, 0) < 0) {
			if (errno == EINTR || errno == EAGAIN) {
				if (vcpu__park(v))
					break;
				continue;
			}
			log_error_errno(errno, "vcpu %u: KVM_RUN", v->id);
			vm__fail(vm);
			break;
		}
		if (vcpu__handle_exit(v) < 0) {
			vm__fail(vm);
			break;
		}
	}

	pthread_mutex_lock(&vm->lock);
	vm->running--;
	pthread_cond_broadcast(&vm->cond);
	pthread_mutex_unlock(&vm->lock);
	return NULL;
}

int vm_start(struct vm *vm, bool start_paused)
{
	sigset_t all, old;
	int r = 0;

	pthread_mutex_lock(&vm->lock);
	if (vm->started) {
		pthread_mutex_unlock(&vm->lock);
		return -EALREADY;
	}
	vm->started = true;
	vm->pause_req = start_paused;	/* a restored VM waits for this call */
	for (unsigned i = 0; i < vm->nr_vcpus; i++) {
		if (vm->emulated)
			atomic_store(&vm->vcpus[i].kick, vm->pause_req);
		else
			vm->vcpus[i].run->immediate_exit = vm->pause_req;
	}

	/* vCPU threads start with every signal blocked but the kick. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	for (unsigned i = 0; i < vm->nr_vcpus; i++) {
		struct vcpu *v = &vm->vcpus[i];

		r = -pthread_create(&v->thread, NULL, vcpu__thread, v);
		if (r < 0) {
			log_error_errno(r, "cannot create vCPU thread %u", i);
			break;
		}
		v->thread_started = true;
		vm->running++;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	pthread_mutex_unlock(&vm->lock);
	if (r < 0)
		vm__fail(vm);
	return r;
}

int vm_pause(struct vm *vm)
{
	struct timespec deadline;
	int r = 0;

	clock_gettime(CLOCK_MONOTONIC, &deadline);
	deadline.tv_sec += VM_PAUSE_TIMEOUT_SEC;

	pthread_mutex_lock(&vm->lock);
	if (!vm->pause_req) {
		vm->pause_req = true;
		if (vm->started)
			vm__kick_all_locked(vm);
	}
	while (vm->started && vm->nr_parked < vm->running && r == 0)
		r = -pthread_cond_timedwait(&vm->cond, &vm->lock, &deadline);
	pthread_mutex_unlock(&vm->lock);
	if (r < 0)
		return log_error_errno(r, "vCPUs did not stop within %d s", VM_PAUSE_TIMEOUT_SEC);
	return 0;
}

int vm_resume(struct vm *vm)
{
	pthread_mutex_lock(&vm->lock);
	vm->pause_req = false;
	pthread_cond_broadcast(&vm->cond);
	pthread_mutex_unlock(&vm->lock);
	return 0;
}

bool vm_is_paused(struct vm *vm)
{
	bool paused;

	pthread_mutex_lock(&vm->lock);
	paused = vm->pause_req;
	pthread_mutex_unlock(&vm->lock);
	return paused;
}

bool vm_has_stopped(struct vm *vm)
{
	return atomic_load(&vm->failed);
}

size_t vm_get_regions(struct vm *vm, const struct vm_region **ret)
{
	*ret = vm->regions;
	return vm->nr_regions;
}

unsigned vm_vcpu_count(struct vm *vm) { return vm->nr_vcpus; }
uint64_t vm_mem_size(struct vm *vm) { return vm->mem_size; }

int vm_create_boot(const struct vm_config *cfg, const char *kernel_path, struct vm **ret,
		   struct error *err)
{
	struct vm *vm = NULL;
	uint64_t split_mib = cfg->split_mib ? cfg->split_mib : VM_DEFAULT_SPLIT_MIB;
	int r;

	if (cfg->vcpu_count < 1 || cfg->vcpu_count > VM_MAX_VCPUS)
		return error_set(err, -EINVAL, "vcpu_count must be 1..%d", VM_MAX_VCPUS);
	if (cfg->mem_size_mib < 8 || cfg->mem_size_mib > (64ULL << 10))
		return error_set(err, -EINVAL, "guest memory must be 8 MiB..64 GiB");
	/* Region 0 must end below region 1 at 4 GiB. */
	if (split_mib < 8 || (cfg->mem_size_mib > split_mib && split_mib > 4096))
		return error_set(err, -EINVAL, "the region split must be 8..4096 MiB");
	r = vm__alloc(&vm);
	if (r < 0)
		return r;
	vm->mem_size = cfg->mem_size_mib << 20;
	vm->split = split_mib << 20;
	vm__layout(vm->mem_size, vm->split, vm->regions, &vm->nr_regions);

	r = vm__open_cpu(vm, cfg->cpu, err);
	if (r < 0)
		goto err;
	r = vm__map_memory(vm, -1, true, cfg->anon, err);
	if (r < 0)
		goto err;
	r = vm__create_vcpus(vm, cfg->vcpu_count, err);
	if (r < 0)
		goto err;
	r = boot__setup(vm, kernel_path, cfg->boot_args, err);
	if (r < 0)
		goto err;
	*ret = vm;
	return 0;
err:
	vm_destroy(vm);
	return r;
}

void vm_destroy(struct vm *vm)
{
	if (!vm)
		return;
	pthread_mutex_lock(&vm->lock);
	vm->stop_req = true;
	if (vm->nr_vcpus)
		vm__kick_all_locked(vm);
	pthread_cond_broadcast(&vm->cond);
	pthread_mutex_unlock(&vm->lock);

	for (unsigned i = 0; i < vm->nr_vcpus; i++) {
		struct vcpu *v = &vm->vcpus[i];

		if (v->thread_started)
			pthread_join(v->thread, NULL);
		if (v->run)
			munmap(v->run, vm->run_size);
		safe_close(v->fd);
	}
	safe_close(vm->vm_fd);
	safe_close(vm->kvm_fd);
	if (vm->reserve)
		munmap(vm->reserve, vm->reserve_size);
	safe_close(vm->mem_fd);
	free(vm->cpuid);
	pthread_cond_destroy(&vm->cond);
	pthread_mutex_destroy(&vm->lock);
	free(vm);
}
