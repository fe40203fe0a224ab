# tests/ — every test, benchmark and fuzzer of forkfs outside fusefs/ (whose
# mount tests are in fusefs/local.mk), the shared test helpers, and the
# "make bench" (and its parts, "make bench-*") and "make fuzz" targets.
EXTRA_DIST += tests/tap.h tests/fds.h

# ---- common/ ----------------------------------------------------------------

check_PROGRAMS += tests/common/fdpass.t
TESTS += tests/common/fdpass.t
tests_common_fdpass_t_SOURCES = tests/common/fdpass.c tests/fds.h tests/tap.h
tests_common_fdpass_t_LDADD = common/libcommon.la
check_PROGRAMS += tests/common/error.t
TESTS += tests/common/error.t
tests_common_error_t_SOURCES = tests/common/error.c tests/tap.h
tests_common_error_t_LDADD = common/libcommon.la

# ---- fc/: the Firecracker API client ------------------------------------------

check_PROGRAMS += tests/fc/fc-parse.t tests/fc/fc-client.t tests/fc/fc-idle.t
TESTS += tests/fc/fc-parse.t tests/fc/fc-client.t tests/fc/fc-idle.t

tests_fc_fc_parse_t_SOURCES = tests/fc/fc-parse.c tests/tap.h
tests_fc_fc_parse_t_LDADD = fc/libfc.la

tests_fc_fc_client_t_SOURCES = tests/fc/fc-client.c tests/tap.h
tests_fc_fc_client_t_LDADD = fc/libfc.la

tests_fc_fc_idle_t_SOURCES = tests/fc/fc-idle.c tests/branch/minivm-proc.c tests/branch/minivm-proc.h
tests_fc_fc_idle_t_LDADD = fc/libfc.la

# ---- uffd/: the handshake and the copy engine ---------------------------------

# Real userfaultfd, no KVM. guest.c is the tests' stand-in VMM. bench-engine is
# built by "make check" and run by hand.
check_PROGRAMS += tests/uffd/engine.t tests/uffd/slots.t tests/uffd/handshake.t \
	tests/uffd/bench-engine
TESTS += tests/uffd/engine.t tests/uffd/slots.t tests/uffd/handshake.t
tests_uffd_engine_t_SOURCES = tests/uffd/test-engine.c tests/uffd/guest.c tests/uffd/guest.h
tests_uffd_engine_t_LDADD = uffd/libuffd.la
tests_uffd_slots_t_SOURCES = tests/uffd/test-slots.c tests/uffd/guest.c tests/uffd/guest.h
tests_uffd_slots_t_LDADD = uffd/libuffd.la
tests_uffd_handshake_t_SOURCES = tests/uffd/test-handshake.c tests/uffd/guest.c tests/uffd/guest.h \
	tests/fds.h
tests_uffd_handshake_t_LDADD = uffd/libuffd.la
tests_uffd_bench_engine_SOURCES = tests/uffd/bench-engine.c tests/uffd/guest.c tests/uffd/guest.h
tests_uffd_bench_engine_LDADD = uffd/libuffd.la

# ---- branch/ ----------------------------------------------------------------

check_PROGRAMS += tests/branch/branch-live.t tests/branch/branch-status.t \
	tests/branch/branch-errors.t
TESTS += tests/branch/branch-status.t tests/branch/branch-errors.t tests/branch/branch-live.t
tests_branch_branch_status_t_SOURCES = tests/branch/branch-status.c tests/tap.h
tests_branch_branch_status_t_LDADD = branch/libbranch.la $(UV_LIBS) $(JSONC_LIBS)
tests_branch_branch_errors_t_SOURCES = tests/branch/branch-errors.c tests/tap.h
tests_branch_branch_errors_t_LDADD = branch/libbranch.la $(UV_LIBS) $(JSONC_LIBS)
tests_branch_branch_live_t_SOURCES = tests/branch/branch-live.c tests/branch/minivm-proc.c \
	tests/branch/minivm-proc.h tests/tap.h
tests_branch_branch_live_t_LDADD = branch/libbranch.la $(UV_LIBS) $(JSONC_LIBS)

# ---- contrib/minivm/ ----------------------------------------------------------

# The VM core test links the core directly (no HTTP).
check_PROGRAMS += tests/minivm/vm-core.t tests/minivm/cpu.t
TESTS += tests/minivm/vm-core.t tests/minivm/cpu.t
tests_minivm_cpu_t_SOURCES = tests/minivm/cpu.c tests/tap.h contrib/minivm/cpu.c \
	contrib/minivm/cpu.h
tests_minivm_cpu_t_LDADD = common/libcommon.la
tests_minivm_vm_core_t_SOURCES = tests/minivm/vm-core.c tests/tap.h $(MINIVM_VM_SOURCES)
tests_minivm_vm_core_t_LDADD = common/libcommon.la

# Test helpers: a raw HTTP client and a write-protect branch done by hand.
check_PROGRAMS += tests/minivm/minivm-http tests/minivm/wp-copy
tests_minivm_minivm_http_SOURCES = tests/minivm/minivm-http.c
tests_minivm_wp_copy_SOURCES = tests/minivm/wp-copy.c contrib/minivm/guest/abi.h
tests_minivm_wp_copy_CFLAGS = $(AM_CFLAGS) $(JSONC_CFLAGS)
tests_minivm_wp_copy_LDADD = $(JSONC_LIBS)

# Parser unit test: no KVM needed.
check_PROGRAMS += tests/minivm/http-parse.t
TESTS += tests/minivm/http-parse.t
tests_minivm_http_parse_t_SOURCES = tests/minivm/http-parse.c tests/tap.h \
	contrib/minivm/http.c contrib/minivm/http.h contrib/minivm/body.c contrib/minivm/body.h
tests_minivm_http_parse_t_CFLAGS = $(AM_CFLAGS) $(JSONC_CFLAGS)
tests_minivm_http_parse_t_LDADD = common/libcommon.la $(JSONC_LIBS)

MINIVM_SHELL_TESTS = tests/minivm/protocol.sh tests/minivm/snapshot.sh \
	tests/minivm/wp-branch.sh tests/minivm/load-fail.sh
dist_check_SCRIPTS += $(MINIVM_SHELL_TESTS)
EXTRA_DIST += tests/minivm/lib-minivm.sh
TESTS += $(MINIVM_SHELL_TESTS)

# ---- sandbox/: the sandbox lifecycle without FUSE (real minivm guests) -------
check_PROGRAMS += tests/sandbox/lifecycle.t
TESTS += tests/sandbox/lifecycle.t
tests_sandbox_lifecycle_t_SOURCES = tests/sandbox/lifecycle.c tests/tap.h
tests_sandbox_lifecycle_t_CFLAGS = $(AM_CFLAGS) $(UV_CFLAGS) $(JSONC_CFLAGS)
tests_sandbox_lifecycle_t_LDADD = sandbox/libsandbox.la $(UV_LIBS) $(JSONC_LIBS)
check_PROGRAMS += tests/sandbox/lanes.t
TESTS += tests/sandbox/lanes.t
tests_sandbox_lanes_t_SOURCES = tests/sandbox/lanes.c tests/tap.h
tests_sandbox_lanes_t_CFLAGS = $(AM_CFLAGS) $(UV_CFLAGS) $(JSONC_CFLAGS)
tests_sandbox_lanes_t_LDADD = sandbox/libsandbox.la $(UV_LIBS) $(JSONC_LIBS)

# ---- fuzz targets -------------------------------------------------------------

# Each runs as an ordinary test through the small standalone driver of
# tests/fuzz/fuzz-main.c (built-in seeds, random mutations); "make fuzz" builds
# real libFuzzer binaries when clang is available.
check_PROGRAMS += tests/fuzz/fuzz-fc-response.t tests/fuzz/fuzz-handshake.t \
	tests/fuzz/fuzz-config.t tests/fuzz/fuzz-cpu.t tests/fuzz/fuzz-layer.t
TESTS += tests/fuzz/fuzz-fc-response.t tests/fuzz/fuzz-handshake.t tests/fuzz/fuzz-config.t \
	tests/fuzz/fuzz-cpu.t tests/fuzz/fuzz-layer.t
tests_fuzz_fuzz_layer_t_SOURCES = tests/fuzz/fuzz-layer.c tests/fuzz/fuzz-main.c tests/fuzz/fuzz.h
tests_fuzz_fuzz_layer_t_LDADD = branch/libbranch.la
tests_fuzz_fuzz_cpu_t_SOURCES = tests/fuzz/fuzz-cpu.c tests/fuzz/fuzz-main.c tests/fuzz/fuzz.h \
	contrib/minivm/cpu.c contrib/minivm/cpu.h
tests_fuzz_fuzz_cpu_t_LDADD = common/libcommon.la
tests_fuzz_fuzz_fc_response_t_SOURCES = tests/fuzz/fuzz-fc-response.c tests/fuzz/fuzz-main.c \
	tests/fuzz/fuzz.h
tests_fuzz_fuzz_fc_response_t_LDADD = fc/libfc.la
tests_fuzz_fuzz_handshake_t_SOURCES = tests/fuzz/fuzz-handshake.c tests/fuzz/fuzz-main.c \
	tests/fuzz/fuzz.h
tests_fuzz_fuzz_handshake_t_LDADD = uffd/libuffd.la
tests_fuzz_fuzz_config_t_SOURCES = tests/fuzz/fuzz-config.c tests/fuzz/fuzz-main.c \
	tests/fuzz/fuzz.h sandbox/config.c sandbox/config.h
tests_fuzz_fuzz_config_t_CFLAGS = $(AM_CFLAGS) $(JSONC_CFLAGS)
tests_fuzz_fuzz_config_t_LDADD = common/libcommon.la $(JSONC_LIBS)

FUZZ_CC = clang
FUZZ_CFLAGS = -g -O1 -fsanitize=fuzzer,address,undefined
FUZZ_CPPFLAGS = -include config.h -I$(top_srcdir) -I$(top_builddir) -D_GNU_SOURCE $(JSONC_CFLAGS)
.PHONY: fuzz fuzz-fc-response fuzz-handshake fuzz-cpu fuzz-layer
fuzz: fuzz-fc-response fuzz-handshake fuzz-cpu fuzz-layer
fuzz-layer: tests/fuzz/fuzz-layer-libfuzzer
tests/fuzz/fuzz-layer-libfuzzer: tests/fuzz/fuzz-layer.c branch/layer.c common/error.c \
		common/util.c common/log.c config.h
	@mkdir -p tests/fuzz
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(FUZZ_CPPFLAGS) -o $@ $(top_srcdir)/tests/fuzz/fuzz-layer.c \
		$(top_srcdir)/branch/layer.c $(top_srcdir)/common/error.c \
		$(top_srcdir)/common/util.c $(top_srcdir)/common/log.c
fuzz-fc-response: tests/fuzz/fuzz-fc-response-libfuzzer
fuzz-handshake: tests/fuzz/fuzz-handshake-libfuzzer
fuzz-cpu: tests/fuzz/fuzz-cpu-libfuzzer
tests/fuzz/fuzz-fc-response-libfuzzer: tests/fuzz/fuzz-fc-response.c fc/parse.c fc/fc.h \
		common/error.c config.h
	@mkdir -p tests/fuzz
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(FUZZ_CPPFLAGS) -o $@ $(top_srcdir)/tests/fuzz/fuzz-fc-response.c \
		$(top_srcdir)/fc/parse.c $(top_srcdir)/common/error.c $(JSONC_LIBS)
tests/fuzz/fuzz-handshake-libfuzzer: tests/fuzz/fuzz-handshake.c uffd/handshake.c common/error.c \
		common/util.c common/fdpass.c config.h
	@mkdir -p tests/fuzz
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(FUZZ_CPPFLAGS) -o $@ $(top_srcdir)/tests/fuzz/fuzz-handshake.c \
		$(top_srcdir)/uffd/handshake.c $(top_srcdir)/common/error.c \
		$(top_srcdir)/common/util.c $(top_srcdir)/common/fdpass.c $(JSONC_LIBS)
tests/fuzz/fuzz-cpu-libfuzzer: tests/fuzz/fuzz-cpu.c contrib/minivm/cpu.c common/error.c config.h
	@mkdir -p tests/fuzz
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(FUZZ_CPPFLAGS) -o $@ $(top_srcdir)/tests/fuzz/fuzz-cpu.c \
		$(top_srcdir)/contrib/minivm/cpu.c $(top_srcdir)/common/error.c
CLEANFILES += tests/fuzz/fuzz-fc-response-libfuzzer tests/fuzz/fuzz-handshake-libfuzzer \
	tests/fuzz/fuzz-cpu-libfuzzer tests/fuzz/fuzz-layer-libfuzzer

# ---- benchmarks: never run by make check ----------------------------------------

# "make bench": all the figures below in one table with their targets
# (tests/bench/bench-all.sh; BENCH_STORE, BENCH_SIZES, BENCH_N, BENCH_ONLY...).
EXTRA_DIST += tests/bench/bench-all.sh tests/bench/figures.h
bench: all
	MAKE="$(MAKE)" $(SHELL) $(abs_top_srcdir)/tests/bench/bench-all.sh
.PHONY: bench

# "make bench-branch": live branches of minivm guests, pause and time to ready
# (BENCH_ARGS: [-s MiB,...] [-n N] [-d DIR]).
EXTRA_PROGRAMS = tests/bench/bench-branch
tests_bench_bench_branch_SOURCES = tests/bench/bench-branch.c tests/branch/minivm-proc.c \
	tests/branch/minivm-proc.h
tests_bench_bench_branch_LDADD = branch/libbranch.la $(UV_LIBS) $(JSONC_LIBS)
CLEANFILES += tests/bench/bench-branch
bench-branch: tests/bench/bench-branch contrib/minivm/forkfs-minivm contrib/minivm/guest.img
	MINIVM=$(abs_top_builddir)/contrib/minivm/forkfs-minivm \
	GUEST_IMG=$(abs_top_builddir)/contrib/minivm/guest.img \
	$(abs_top_builddir)/tests/bench/bench-branch $(BENCH_ARGS)
.PHONY: bench-branch

# "make bench-engine": the copy engine alone, fault latency and copy rate
# (BENCH_ENGINE_ARGS: see tests/uffd/bench-engine.c; default -r 3 256 1024).
bench-engine: tests/uffd/bench-engine
	$(abs_top_builddir)/tests/uffd/bench-engine $(BENCH_ENGINE_ARGS)
.PHONY: bench-engine

# "make bench-copy": ways to move guest memory from a memfd into the store,
# without the engine (BENCH_COPY_ARGS: see tests/bench/bench-copy.c).
check_PROGRAMS += tests/bench/bench-copy
tests_bench_bench_copy_SOURCES = tests/bench/bench-copy.c
tests_bench_bench_copy_LDADD = common/libcommon.la
bench-copy: tests/bench/bench-copy
	$(abs_top_builddir)/tests/bench/bench-copy $(BENCH_COPY_ARGS)
.PHONY: bench-copy

# "make bench-mount": the same through a forkfs mount.
EXTRA_DIST += tests/bench/bench-mount.sh
bench-mount: all
	top_srcdir=$(abs_top_srcdir) top_builddir=$(abs_top_builddir) \
	MINIVM=$(abs_top_builddir)/contrib/minivm/forkfs-minivm \
	GUEST_IMG=$(abs_top_builddir)/contrib/minivm/guest.img \
	FORKFS=$(abs_top_builddir)/fusefs/forkfs \
	$(SHELL) $(abs_top_srcdir)/tests/bench/bench-mount.sh $(BENCH_MOUNT_MIB)
.PHONY: bench-mount

# "make bench-fanout": N children started from one branch (BENCH_FANOUT_ARGS:
# N then sizes in MiB; default 16 256 1024 4096).
EXTRA_DIST += tests/bench/bench-fanout.sh
bench-fanout: all
	top_srcdir=$(abs_top_srcdir) top_builddir=$(abs_top_builddir) \
	$(SHELL) $(abs_top_srcdir)/tests/bench/bench-fanout.sh $(BENCH_FANOUT_ARGS)
.PHONY: bench-fanout

# "make bench-incremental": a chain of branches with and without incremental
# branches (BENCH_INCREMENTAL_ARGS: MiB N WSET GAP; default 1024 10 50 3).
EXTRA_DIST += tests/bench/bench-incremental.sh
bench-incremental: all
	top_srcdir=$(abs_top_srcdir) top_builddir=$(abs_top_builddir) \
	$(SHELL) $(abs_top_srcdir)/tests/bench/bench-incremental.sh $(BENCH_INCREMENTAL_ARGS)
.PHONY: bench-incremental

# "make bench-load": N sandboxes branched at once while M readers cp ready
# branches, and the latency of status, state and ctl of an idle sandbox
# meanwhile (issue #11 item 4; BENCH_LOAD_ARGS: N M MiB; default 32 32 128).
EXTRA_DIST += tests/bench/bench-load.sh
bench-load: all
	top_srcdir=$(abs_top_srcdir) top_builddir=$(abs_top_builddir) \
	$(SHELL) $(abs_top_srcdir)/tests/bench/bench-load.sh $(BENCH_LOAD_ARGS)
.PHONY: bench-load

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
