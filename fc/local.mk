# fc/ — the Firecracker API client (HTTP/1.1 over AF_UNIX on a private libuv
# loop), its tests (tests/fc/) and the fuzz target of its response parser.
noinst_LTLIBRARIES += fc/libfc.la
fc_libfc_la_SOURCES = fc/fc.h fc/internal.h fc/parse.c fc/http.c fc/api.c
fc_libfc_la_CFLAGS = $(AM_CFLAGS) $(UV_CFLAGS) $(JSONC_CFLAGS)
fc_libfc_la_LIBADD = common/libcommon.la $(UV_LIBS) $(JSONC_LIBS)

check_PROGRAMS += tests/fc/fc-parse.t tests/fc/fc-client.t tests/fuzz/fuzz-fc-response.t
TESTS += tests/fc/fc-parse.t tests/fc/fc-client.t tests/fuzz/fuzz-fc-response.t

tests_fc_fc_parse_t_SOURCES = tests/fc/fc-parse.c tests/tap.h
tests_fc_fc_parse_t_LDADD = fc/libfc.la

tests_fc_fc_client_t_SOURCES = tests/fc/fc-client.c tests/tap.h
tests_fc_fc_client_t_LDADD = fc/libfc.la

# The fuzz target runs as an ordinary test through the small standalone driver
# (built-in seeds, random mutations); "make fuzz" builds a real libFuzzer binary
# when clang is available.
tests_fuzz_fuzz_fc_response_t_SOURCES = tests/fuzz/fuzz-fc-response.c tests/fuzz/fuzz-main.c \
	tests/fuzz/fuzz.h
tests_fuzz_fuzz_fc_response_t_LDADD = fc/libfc.la

FUZZ_CC = clang
FUZZ_CFLAGS = -g -O1 -fsanitize=fuzzer,address,undefined
.PHONY: fuzz fuzz-fc-response
fuzz: fuzz-fc-response
fuzz-fc-response: tests/fuzz/fuzz-fc-response-libfuzzer
tests/fuzz/fuzz-fc-response-libfuzzer: tests/fuzz/fuzz-fc-response.c fc/parse.c fc/fc.h config.h
	@mkdir -p tests/fuzz
	$(FUZZ_CC) $(FUZZ_CFLAGS) -include config.h -I$(top_srcdir) -I$(top_builddir) -D_GNU_SOURCE \
		$(JSONC_CFLAGS) -o $@ $(top_srcdir)/tests/fuzz/fuzz-fc-response.c \
		$(top_srcdir)/fc/parse.c $(JSONC_LIBS)
CLEANFILES += tests/fuzz/fuzz-fc-response-libfuzzer
