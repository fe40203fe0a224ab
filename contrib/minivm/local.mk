# contrib/minivm/local.mk — forkfs-minivm's API half (HTTP, Firecracker API,
# /uffd/wp, seccomp) linked with the KVM half from vm.mk. Its tests are in
# tests/local.mk.
bin_PROGRAMS += contrib/minivm/forkfs-minivm
contrib_minivm_forkfs_minivm_SOURCES = contrib/minivm/main.c \
	contrib/minivm/http.c contrib/minivm/http.h \
	contrib/minivm/api.c contrib/minivm/api.h \
	contrib/minivm/body.c contrib/minivm/body.h \
	contrib/minivm/wp.c contrib/minivm/wp.h \
	contrib/minivm/seccomp.c contrib/minivm/seccomp.h \
	$(MINIVM_VM_SOURCES)
contrib_minivm_forkfs_minivm_CFLAGS = $(AM_CFLAGS) $(JSONC_CFLAGS) $(SECCOMP_CFLAGS)
contrib_minivm_forkfs_minivm_LDADD = common/libcommon.la $(JSONC_LIBS) $(SECCOMP_LIBS)

EXTRA_DIST += contrib/demo-minivm.sh
