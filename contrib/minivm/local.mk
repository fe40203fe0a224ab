# contrib/minivm/local.mk — forkfs-minivm's API half (HTTP, Firecracker API,
# /uffd/wp, seccomp) linked with the KVM half from vm.mk, and its tests.
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

# Test helpers: a raw HTTP client and a write-protect branch done by hand.
check_PROGRAMS += tests/minivm/minivm-http tests/minivm/wp-copy
tests_minivm_minivm_http_SOURCES = tests/minivm/minivm-http.c
tests_minivm_wp_copy_SOURCES = tests/minivm/wp-copy.c contrib/minivm/guest/abi.h
tests_minivm_wp_copy_CFLAGS = $(AM_CFLAGS) $(JSONC_CFLAGS)
tests_minivm_wp_copy_LDADD = $(JSONC_LIBS)

# Parser unit test: no KVM needed.
check_PROGRAMS += tests/minivm/http-parse.t
TESTS += tests/minivm/http-parse.t
tests_minivm_http_parse_t_SOURCES = tests/minivm/http-parse.c tests/tap.h \
	contrib/minivm/http.c contrib/minivm/http.h contrib/minivm/body.c contrib/minivm/body.h
tests_minivm_http_parse_t_CFLAGS = $(AM_CFLAGS) $(JSONC_CFLAGS)
tests_minivm_http_parse_t_LDADD = common/libcommon.la $(JSONC_LIBS)

MINIVM_SHELL_TESTS = tests/minivm/protocol.sh tests/minivm/snapshot.sh \
	tests/minivm/wp-branch.sh tests/minivm/load-fail.sh
dist_check_SCRIPTS += $(MINIVM_SHELL_TESTS)
EXTRA_DIST += tests/minivm/lib-minivm.sh
TESTS += $(MINIVM_SHELL_TESTS)
EXTRA_DIST += contrib/demo-minivm.sh
