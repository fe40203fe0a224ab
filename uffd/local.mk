# uffd/ — the userfaultfd handshake receiver and the write-protect copy engine.
noinst_LTLIBRARIES += uffd/libuffd.la
uffd_libuffd_la_SOURCES = uffd/uffd.h uffd/uffd.c uffd/handshake.h uffd/handshake.c \
	uffd/engine.h uffd/engine.c uffd/memsrc.c uffd/pagestate.h uffd/pagestate.c
uffd_libuffd_la_CFLAGS = $(AM_CFLAGS) $(JSONC_CFLAGS)
uffd_libuffd_la_LIBADD = common/libcommon.la $(JSONC_LIBS)

# Tests: real userfaultfd, no KVM. guest.c is the tests' stand-in VMM.
check_PROGRAMS += tests/uffd/engine.t tests/uffd/handshake.t tests/uffd/bench-engine
TESTS += tests/uffd/engine.t tests/uffd/handshake.t
tests_uffd_engine_t_SOURCES = tests/uffd/test-engine.c tests/uffd/guest.c tests/uffd/guest.h
tests_uffd_engine_t_LDADD = uffd/libuffd.la
tests_uffd_handshake_t_SOURCES = tests/uffd/test-handshake.c tests/uffd/guest.c tests/uffd/guest.h
tests_uffd_handshake_t_LDADD = uffd/libuffd.la
tests_uffd_bench_engine_SOURCES = tests/uffd/bench-engine.c tests/uffd/guest.c tests/uffd/guest.h
tests_uffd_bench_engine_LDADD = uffd/libuffd.la

# The handshake parser's fuzz target, run by the standalone driver of tests/fuzz/
# (its rules and "make fuzz" live in fc/local.mk); "make fuzz-handshake" builds
# a libFuzzer binary with clang.
check_PROGRAMS += tests/fuzz/fuzz-handshake.t
TESTS += tests/fuzz/fuzz-handshake.t
tests_fuzz_fuzz_handshake_t_SOURCES = tests/fuzz/fuzz-handshake.c tests/fuzz/fuzz-main.c \
	tests/fuzz/fuzz.h
tests_fuzz_fuzz_handshake_t_LDADD = uffd/libuffd.la
.PHONY: fuzz-handshake
fuzz: fuzz-handshake
fuzz-handshake: tests/fuzz/fuzz-handshake-libfuzzer
tests/fuzz/fuzz-handshake-libfuzzer: tests/fuzz/fuzz-handshake.c uffd/handshake.c common/error.c \
		common/util.c common/fdpass.c config.h
	@mkdir -p tests/fuzz
	$(FUZZ_CC) $(FUZZ_CFLAGS) -include config.h -I$(top_srcdir) -I$(top_builddir) -D_GNU_SOURCE \
		$(JSONC_CFLAGS) -o $@ $(top_srcdir)/tests/fuzz/fuzz-handshake.c \
		$(top_srcdir)/uffd/handshake.c $(top_srcdir)/common/error.c \
		$(top_srcdir)/common/util.c $(top_srcdir)/common/fdpass.c $(JSONC_LIBS)
CLEANFILES += tests/fuzz/fuzz-handshake-libfuzzer
