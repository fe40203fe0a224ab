#!/bin/sh
# man/mandoc-lint.sh — every man page under man/ passes "mandoc -Tlint"
# at warning level (a missing forkfs(8) cross-reference is tolerated).
. "$top_srcdir/tests/lib.sh"
command -v mandoc >/dev/null || skip_all "needs mandoc"
found=0
for page in "$top_srcdir"/man/*.[1-8]; do
	[ -f "$page" ] || continue
	found=1
	out=$(mandoc -Tlint -W warning "$page" 2>&1 | grep -v 'referenced manual not found')
	if [ -z "$out" ]; then ok "mandoc -Tlint $(basename "$page")"; else
		not_ok "mandoc -Tlint $(basename "$page")"; diag "$out"; fi
done
[ "$found" = 1 ] || not_ok "no man pages found"
done_testing
