# tests/ — shared test helpers, and tests that span components.
EXTRA_DIST += tests/tap.h

# The config.json parser is fuzzed as an ordinary test through the standalone
# driver of tests/fuzz/fuzz-main.c (built-in seeds, random mutations).
check_PROGRAMS += tests/fuzz/fuzz-config.t
TESTS += tests/fuzz/fuzz-config.t
tests_fuzz_fuzz_config_t_SOURCES = tests/fuzz/fuzz-config.c tests/fuzz/fuzz-main.c \
	tests/fuzz/fuzz.h sandbox/config.c sandbox/config.h
tests_fuzz_fuzz_config_t_CFLAGS = $(AM_CFLAGS) $(JSONC_CFLAGS)
tests_fuzz_fuzz_config_t_LDADD = common/libcommon.la $(JSONC_LIBS)

check_PROGRAMS += tests/fc/fc-idle.t
TESTS += tests/fc/fc-idle.t
tests_fc_fc_idle_t_SOURCES = tests/fc/fc-idle.c tests/branch/minivm-proc.c tests/branch/minivm-proc.h
tests_fc_fc_idle_t_LDADD = fc/libfc.la

# The sandbox lifecycle without FUSE: real minivm guests (needs /dev/kvm).
check_PROGRAMS += tests/sandbox/lifecycle.t
TESTS += tests/sandbox/lifecycle.t
tests_sandbox_lifecycle_t_SOURCES = tests/sandbox/lifecycle.c tests/tap.h
tests_sandbox_lifecycle_t_CFLAGS = $(AM_CFLAGS) $(UV_CFLAGS) $(JSONC_CFLAGS)
tests_sandbox_lifecycle_t_LDADD = sandbox/libsandbox.la $(UV_LIBS) $(JSONC_LIBS)
