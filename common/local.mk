# common/ — helpers shared by forkfs, libforkfs and forkfs-minivm.
noinst_LTLIBRARIES += common/libcommon.la
common_libcommon_la_SOURCES = common/macro.h common/log.h common/log.c \
	common/util.h common/util.c \
	common/error.h common/error.c
