# fc/ — the Firecracker API client (HTTP/1.1 over AF_UNIX on a private libuv
# loop). Its tests and fuzz target are in tests/local.mk.
noinst_LTLIBRARIES += fc/libfc.la
fc_libfc_la_SOURCES = fc/fc.h fc/internal.h fc/parse.c fc/http.c fc/api.c
fc_libfc_la_CFLAGS = $(AM_CFLAGS) $(UV_CFLAGS) $(JSONC_CFLAGS)
fc_libfc_la_LIBADD = common/libcommon.la $(UV_LIBS) $(JSONC_LIBS)
