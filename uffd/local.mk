# uffd/ — the userfaultfd handshake receiver and the write-protect copy engine.
# Its tests, benchmark and fuzz target are in tests/local.mk.
noinst_LTLIBRARIES += uffd/libuffd.la
uffd_libuffd_la_SOURCES = uffd/uffd.h uffd/uffd.c uffd/handshake.h uffd/handshake.c \
	uffd/engine.h uffd/engine-types.h uffd/engine.c uffd/engine-copy.c \
	uffd/engine-fault.c uffd/engine-slots.c uffd/memsrc.c uffd/pagestate.h uffd/pagestate.c
uffd_libuffd_la_CFLAGS = $(AM_CFLAGS) $(JSONC_CFLAGS)
uffd_libuffd_la_LIBADD = common/libcommon.la $(JSONC_LIBS)
