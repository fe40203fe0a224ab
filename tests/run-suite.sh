#!/bin/sh
# The whole test suite, from nothing: install packages, build, make check.
# Run as root on Debian 12: sudo ./tests/run-suite.sh
set -eu
src=$(cd "$(dirname "$0")/.." && pwd)
"$src/contrib/setup-deps.sh"
BUILD_DIR=${BUILD_DIR:-$src/build}
export BUILD_DIR
"$src/contrib/build.sh"
cd "$BUILD_DIR"
if ! make -j2 check; then
	for f in $(find . -name '*.log' -newer Makefile); do
		grep -q '^not ok\|^ERROR\|^FAIL' "$f" 2>/dev/null && { echo "=== $f"; tail -n 60 "$f"; }
	done
	exit 1
fi
