#!/bin/sh
# The whole test suite, from nothing: install packages, build, make check.
# Run as root on Debian 12: sudo ./tests/run-suite.sh
set -eu
src=$(cd "$(dirname "$0")/.." && pwd)
BUILD_DIR=${BUILD_DIR:-$src/build}
export BUILD_DIR
"$src/contrib/build.sh"
cd "$BUILD_DIR"
rc=0
make -j2 check || rc=$?
if [ "$rc" -ne 0 ]; then
	for f in $(find . -name '*.log' -newer Makefile); do
		grep -q '^not ok\|^ERROR\|^FAIL' "$f" 2>/dev/null && { echo "=== $f"; tail -n 60 "$f"; }
	done
fi
# One closing line with the counts of automake's harness (test-suite.log).
count() { n=$(sed -n "s/^# $1: *//p" test-suite.log 2>/dev/null | head -n1); echo "${n:-0}"; }
echo "tests: $(count PASS) passed, $(( $(count FAIL) + $(count ERROR) + $(count XPASS) )) failed, $(count SKIP) skipped"
exit "$rc"
