# branch/ — branch orchestration (no FUSE): libbranch.la, linked by forkfs and tests.
noinst_LTLIBRARIES += branch/libbranch.la
branch_libbranch_la_SOURCES = branch/branch.h branch/branch.c
branch_libbranch_la_CFLAGS = $(AM_CFLAGS) $(UV_CFLAGS) $(JSONC_CFLAGS)
branch_libbranch_la_LIBADD = fc/libfc.la uffd/libuffd.la common/libcommon.la

check_PROGRAMS += tests/branch/branch-live.t tests/branch/branch-status.t \
	tests/branch/branch-errors.t
TESTS += tests/branch/branch-status.t tests/branch/branch-errors.t tests/branch/branch-live.t
tests_branch_branch_errors_t_SOURCES = tests/branch/branch-errors.c tests/tap.h
tests_branch_branch_errors_t_LDADD = branch/libbranch.la $(UV_LIBS) $(JSONC_LIBS)
tests_branch_branch_status_t_SOURCES = tests/branch/branch-status.c tests/tap.h
tests_branch_branch_status_t_LDADD = branch/libbranch.la $(UV_LIBS) $(JSONC_LIBS)
tests_branch_branch_live_t_SOURCES = tests/branch/branch-live.c tests/branch/minivm-proc.c \
	tests/branch/minivm-proc.h tests/tap.h
tests_branch_branch_live_t_LDADD = branch/libbranch.la $(UV_LIBS) $(JSONC_LIBS)

# Benchmarks: built and run by "make bench" (needs root and /dev/kvm), never by make check.
EXTRA_PROGRAMS = tests/bench/bench-branch
tests_bench_bench_branch_SOURCES = tests/bench/bench-branch.c tests/branch/minivm-proc.c \
	tests/branch/minivm-proc.h
tests_bench_bench_branch_LDADD = branch/libbranch.la $(UV_LIBS) $(JSONC_LIBS)
CLEANFILES += tests/bench/bench-branch
bench: tests/bench/bench-branch contrib/minivm/forkfs-minivm contrib/minivm/guest.img
	MINIVM=$(abs_top_builddir)/contrib/minivm/forkfs-minivm \
	GUEST_IMG=$(abs_top_builddir)/contrib/minivm/guest.img \
	$(abs_top_builddir)/tests/bench/bench-branch $(BENCH_ARGS)
.PHONY: bench
EXTRA_DIST += tests/bench/bench-mount.sh
bench-mount: all
	top_srcdir=$(abs_top_srcdir) top_builddir=$(abs_top_builddir) \
	MINIVM=$(abs_top_builddir)/contrib/minivm/forkfs-minivm \
	GUEST_IMG=$(abs_top_builddir)/contrib/minivm/guest.img \
	FORKFS=$(abs_top_builddir)/fusefs/forkfs \
	$(SHELL) $(abs_top_srcdir)/tests/bench/bench-mount.sh $(BENCH_MOUNT_MIB)
.PHONY: bench-mount
# QEMU's own live snapshot (background-snapshot) of a guest of the same sizes,
# for SPEC §7's side by side: "make bench-qemu" (BENCH_QEMU_ARGS: [-n N] [-d DIR]
# [MiB...]); says "skipped" without qemu-system-x86_64. The guest is a 32-bit
# multiboot ELF (it enters long mode itself); nothing is linked into it, so no
# 32-bit libraries (gcc-multilib) are needed.
EXTRA_DIST += tests/bench/bench-qemu.sh tests/bench/qemu-guest.S tests/bench/qemu-guest.ld
CLEANFILES += tests/bench/qemu-guest.elf
tests/bench/qemu-guest.elf: tests/bench/qemu-guest.S tests/bench/qemu-guest.ld
	@$(MKDIR_P) tests/bench
	$(AM_V_CCLD)$(CC) -m32 -nostdlib -static -fno-pie -no-pie -Wl,--build-id=none \
		-Wl,-z,noexecstack -Wl,-T,$(top_srcdir)/tests/bench/qemu-guest.ld -o $@ \
		$(top_srcdir)/tests/bench/qemu-guest.S
bench-qemu: tests/bench/qemu-guest.elf
	GUEST=$(abs_top_builddir)/tests/bench/qemu-guest.elf \
	$(SHELL) $(abs_top_srcdir)/tests/bench/bench-qemu.sh $(BENCH_QEMU_ARGS)
.PHONY: bench-qemu
