# common/ — helpers shared by forkfs, libforkfs and forkfs-minivm. json.h is
# header only (its users add $(JSONC_CFLAGS)), so libcommon needs no json-c.
noinst_LTLIBRARIES += common/libcommon.la
common_libcommon_la_SOURCES = common/macro.h common/log.h common/log.c \
	common/util.h common/util.c common/nolinks.h common/nolinks.c \
	common/error.h common/error.c common/json.h \
	common/fdpass.h common/fdpass.c
