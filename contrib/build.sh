#!/bin/sh
# Builds forkfs in BUILD_DIR (default ./build) from this source tree: the
# packages it needs (setup-deps.sh), autoreconf when needed, configure once,
# make. Used by the README commands and .ci/run.
#
# The libfuse: the private one setup-deps.sh builds (FUSE passthrough) when
# FORKFS_LIBFUSE_PREFIX/lib/pkgconfig/fuse3.pc exists, through PKG_CONFIG_PATH
# (configure then links forkfs with an rpath to it), else (or with
# FORKFS_LIBFUSE=no) Debian's. A build directory configured against the other
# one is configured again.
set -eu
src=$(cd "$(dirname "$0")/.." && pwd)
"$src/contrib/setup-deps.sh"
build=${BUILD_DIR:-$src/build}
pcdir=${FORKFS_LIBFUSE_PREFIX:-/opt/forkfs/libfuse}/lib/pkgconfig
[ -f "$pcdir/fuse3.pc" ] && [ "${FORKFS_LIBFUSE:-yes}" != no ] || pcdir=
[ -x "$src/configure" ] || (cd "$src" && autoreconf -fi >/dev/null)
mkdir -p "$build"
cd "$build"
if [ -f Makefile ] && [ "$(cat .forkfs-libfuse 2>/dev/null)" != "$pcdir" ]; then
	echo "build: libfuse changed (${pcdir:-Debian's}): configuring again"
	rm -f Makefile
fi
if [ -n "$pcdir" ]; then
	PKG_CONFIG_PATH=$pcdir${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}
	export PKG_CONFIG_PATH
fi
if [ ! -f Makefile ]; then
	"$src/configure" --prefix=/usr/local ${CONFIGURE_FLAGS:-} >configure.out
	echo "$pcdir" >.forkfs-libfuse
	grep -E '^  (fuse3|passthrough):' configure.out
fi
make -j"$(nproc)" >/dev/null
echo "build: $build"
