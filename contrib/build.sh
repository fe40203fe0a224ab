#!/bin/sh
# Builds forkfs in BUILD_DIR (default ./build) from this source tree: the
# packages it needs (setup-deps.sh), autoreconf when needed, configure once,
# make. Used by the README commands and .ci/run.
set -eu
src=$(cd "$(dirname "$0")/.." && pwd)
"$src/contrib/setup-deps.sh"
build=${BUILD_DIR:-$src/build}
[ -x "$src/configure" ] || (cd "$src" && autoreconf -fi >/dev/null)
mkdir -p "$build"
cd "$build"
[ -f Makefile ] || "$src/configure" --prefix=/usr/local ${CONFIGURE_FLAGS:-} >/dev/null
make -j"$(nproc)" >/dev/null
echo "build: $build"
