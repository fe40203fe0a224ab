# core/ — branch orchestration (no FUSE): libcore.la, linked by forkfs and tests.
noinst_LTLIBRARIES += core/libcore.la
core_libcore_la_SOURCES = core/branch.h core/branch.c
core_libcore_la_CFLAGS = $(AM_CFLAGS) $(UV_CFLAGS) $(JSONC_CFLAGS)
core_libcore_la_LIBADD = fc/libfc.la uffd/libuffd.la common/libcommon.la

check_PROGRAMS += tests/core/branch-live.t tests/core/branch-status.t
TESTS += tests/core/branch-status.t tests/core/branch-live.t
tests_core_branch_status_t_SOURCES = tests/core/branch-status.c tests/tap.h
tests_core_branch_status_t_LDADD = core/libcore.la $(UV_LIBS) $(JSONC_LIBS)
tests_core_branch_live_t_SOURCES = tests/core/branch-live.c tests/core/minivm-proc.c \
	tests/core/minivm-proc.h tests/tap.h
tests_core_branch_live_t_LDADD = core/libcore.la $(UV_LIBS) $(JSONC_LIBS)

# Benchmarks: built and run by "make bench" (needs root and /dev/kvm), never by make check.
EXTRA_PROGRAMS = tests/bench/bench-branch
tests_bench_bench_branch_SOURCES = tests/bench/bench-branch.c tests/core/minivm-proc.c \
	tests/core/minivm-proc.h
tests_bench_bench_branch_LDADD = core/libcore.la $(UV_LIBS) $(JSONC_LIBS)
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
