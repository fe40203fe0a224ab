# fusefs/ — the forkfs daemon: the FUSE layer (the low-level operations on a
# libuv loop, the inodes, start-up, seccomp) over the sandbox lifecycle of
# sandbox/, the man page, and the mount tests.
sbin_PROGRAMS += fusefs/forkfs
fusefs_forkfs_SOURCES = fusefs/forkfs.h fusefs/main.c fusefs/daemon.c \
	fusefs/inode.h fusefs/inode.c fusefs/ops.h fusefs/ops.c fusefs/files.c fusefs/wait.c \
	fusefs/seccomp.h fusefs/seccomp.c
fusefs_forkfs_CFLAGS = $(AM_CFLAGS) $(FUSE_CFLAGS) $(UV_CFLAGS) $(JSONC_CFLAGS) $(SECCOMP_CFLAGS)
fusefs_forkfs_LDADD = sandbox/libsandbox.la branch/libbranch.la fc/libfc.la uffd/libuffd.la \
	common/libcommon.la $(FUSE_LIBS) $(UV_LIBS) $(JSONC_LIBS) $(SECCOMP_LIBS)


# Mount tests: a real forkfs on a real FUSE mount with real minivm guests.
FORKFS_MOUNT_TESTS = tests/mount/user-story.sh tests/mount/attach.sh \
	tests/mount/fan-out.sh tests/mount/errors.sh tests/mount/persistence.sh \
	tests/mount/seccomp.sh tests/mount/stock.sh tests/mount/lifecycle.sh \
	tests/mount/cli.sh tests/mount/install.sh tests/mount/examples.sh \
	tests/mount/wait.sh tests/mount/incremental.sh tests/mount/overlap.sh \
	tests/mount/jail.sh tests/mount/passthrough.sh tests/mount/reflink.sh \
	tests/mount/copies.sh
dist_check_SCRIPTS += $(FORKFS_MOUNT_TESTS)
EXTRA_DIST += tests/mount/lib-mount.sh tests/mount/fault-proxy.pl \
	contrib/examples/checkpoints.sh contrib/examples/fan-out.sh \
	contrib/examples/export.sh contrib/examples/import.sh
TESTS += $(FORKFS_MOUNT_TESTS)
dist_man_MANS += man/forkfs.8

# Reliability tests (SPEC §8): kills, a full store, VMM errors, concurrency, unmount.
FORKFS_RELIABILITY_TESTS = tests/mount/reliability-vmm-kill.sh \
	tests/mount/reliability-forkfs-kill.sh tests/mount/reliability-enospc.sh \
	tests/mount/reliability-vmm-error.sh tests/mount/reliability-concurrency.sh \
	tests/mount/reliability-unmount.sh
dist_check_SCRIPTS += $(FORKFS_RELIABILITY_TESTS)
TESTS += $(FORKFS_RELIABILITY_TESTS)

# The systemd unit (contrib/systemd/forkfs@.service.in), with the installed
# path of forkfs. Installed under $(prefix)/lib/systemd/system, which systemd
# reads for /usr and /usr/local.
systemdunitdir = $(prefix)/lib/systemd/system
systemdunit_DATA = contrib/systemd/forkfs@.service
EXTRA_DIST += contrib/systemd/forkfs@.service.in
CLEANFILES += contrib/systemd/forkfs@.service
contrib/systemd/forkfs@.service: $(top_srcdir)/contrib/systemd/forkfs@.service.in Makefile
	@$(MKDIR_P) contrib/systemd
	$(AM_V_GEN)sed 's|@sbindir[@]|$(sbindir)|g' $(top_srcdir)/contrib/systemd/forkfs@.service.in >$@
