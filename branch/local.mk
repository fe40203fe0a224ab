# branch/ — branch orchestration (no FUSE): libbranch.la, linked by forkfs and
# tests. Its tests and benchmark are in tests/local.mk.
noinst_LTLIBRARIES += branch/libbranch.la
branch_libbranch_la_SOURCES = branch/branch.h branch/branch.c branch/layer.h branch/layer.c \
	branch/snapfile.h branch/snapfile.c
branch_libbranch_la_CFLAGS = $(AM_CFLAGS) $(UV_CFLAGS) $(JSONC_CFLAGS)
branch_libbranch_la_LIBADD = fc/libfc.la uffd/libuffd.la common/libcommon.la
