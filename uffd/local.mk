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
