# sandbox/ — the sandbox lifecycle without FUSE: the tree of sandboxes, their
# states, ctl commands, branch entries, the store, config.json and the VMM
# processes (libsandbox.la, linked by forkfs and by the lifecycle tests).
noinst_LTLIBRARIES += sandbox/libsandbox.la
sandbox_libsandbox_la_SOURCES = sandbox/env.h sandbox/env.c \
	sandbox/tree.h sandbox/tree.c sandbox/ctl.h sandbox/ctl.c \
	sandbox/sandbox.h sandbox/sandbox.c sandbox/start.h sandbox/start.c \
	sandbox/entry.h sandbox/entry.c sandbox/store.h sandbox/store.c \
	sandbox/template.h sandbox/template.c \
	sandbox/config.h sandbox/config.c \
	sandbox/supervisor.h sandbox/supervisor.c sandbox/spawner.h sandbox/spawner.c \
	sandbox/jail.h sandbox/jail.c sandbox/cgroup.h sandbox/cgroup.c \
	sandbox/confine.h sandbox/confine.c
sandbox_libsandbox_la_CFLAGS = $(AM_CFLAGS) $(UV_CFLAGS) $(JSONC_CFLAGS)
sandbox_libsandbox_la_LIBADD = branch/libbranch.la fc/libfc.la uffd/libuffd.la \
	common/libcommon.la $(UV_LIBS) $(JSONC_LIBS)
