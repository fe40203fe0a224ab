# tests/ — shared test helpers, and tests that span components.
EXTRA_DIST += tests/tap.h

check_PROGRAMS += tests/common/fdpass.t
TESTS += tests/common/fdpass.t
tests_common_fdpass_t_SOURCES = tests/common/fdpass.c tests/tap.h
tests_common_fdpass_t_LDADD = common/libcommon.la

# The config.json parser is fuzzed as an ordinary test through the standalone
# driver of tests/fuzz/fuzz-main.c (built-in seeds, random mutations).
check_PROGRAMS += tests/fuzz/fuzz-config.t
TESTS += tests/fuzz/fuzz-config.t
tests_fuzz_fuzz_config_t_SOURCES = tests/fuzz/fuzz-config.c tests/fuzz/fuzz-main.c \
	tests/fuzz/fuzz.h fusefs/sbconfig.c fusefs/sbconfig.h
tests_fuzz_fuzz_config_t_CFLAGS = $(AM_CFLAGS) $(JSONC_CFLAGS)
tests_fuzz_fuzz_config_t_LDADD = common/libcommon.la $(JSONC_LIBS)

check_PROGRAMS += tests/fc/fc-idle.t
TESTS += tests/fc/fc-idle.t
tests_fc_fc_idle_t_SOURCES = tests/fc/fc-idle.c tests/branch/minivm-proc.c tests/branch/minivm-proc.h
tests_fc_fc_idle_t_LDADD = fc/libfc.la
