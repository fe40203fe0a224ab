#!/bin/bash
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
# tests/minivm/wp-branch.sh — a live branch done by the test itself through
# PUT /uffd/wp (tests/minivm/wp-copy): pause, arm write-protection on every
# region, VmstateOnly, resume, copy all pages with faults first; then the
# image is loaded into a fresh minivm and every vCPU must verify ok. Also
# with --anon memory and two regions, and with one stamped page of the
# image deliberately changed, where the guest must report verify FAIL.
. "$top_srcdir/tests/lib.sh"
. "$top_srcdir/tests/minivm/lib-minivm.sh"
require_root
require_guest
require_uffd
[ -f "$GUEST_IMG" ] || skip_all "no guest image at $GUEST_IMG"

# branch NAME VCPUS MEM EXPECT(ok|FAIL) [--corrupt] -- [MINIVM ARGS...]
branch() {
	local n="$1" vcpus="$2" mem="$3" expect="$4" corrupt="" desc
	shift 4
	[ "${1:-}" = --corrupt ] && { corrupt=--corrupt; shift; }
	[ "${1:-}" = -- ] && shift
	desc="$n: $vcpus vCPU, $mem MiB $* $corrupt"
	mkdir -p "$TMPD/$n"
	vm_start "${n}src" "$@" || { not_ok "$desc: start"; return; }
	vm_boot "${n}src" "$vcpus" "$mem" || { not_ok "$desc: boot"; return; }
	sleep 0.3
	if out=$("$WP_COPY" "$TMPD/${n}src.sock" "$(vm_pid "${n}src")" "$TMPD/$n" $corrupt 2>&1); then
		ok "$desc: live branch through /uffd/wp ($out)"
	else
		not_ok "$desc: live branch through /uffd/wp"; diag "$out"; return
	fi
	check "$desc: source VM still running" vm_alive "${n}src"
	expect_api "$desc: source VM Running" 200 '{"id":"anonymous-instance","state":"Running","vmm_version":"1.12.0","app_name":"Firecracker"}' "${n}src" GET /
	check "$desc: memory.bin is $mem MiB" test "$(stat -c %s "$TMPD/$n/memory.bin")" = $((mem << 20))
	diag "$desc: vmstate $(stat -c %s "$TMPD/$n/vmstate") bytes, memory.bin $(stat -c %s "$TMPD/$n/memory.bin") bytes"
	# A second /uffd/wp works once our copy of the first fd is closed.
	mkdir -p "$TMPD/$n/again"
	check "$desc: a second branch of the same VM" "$WP_COPY" "$TMPD/${n}src.sock" "$(vm_pid "${n}src")" "$TMPD/$n/again"
	vm_stop "${n}src"

	vm_start "${n}dst" "$@" || { not_ok "$desc: start restore"; return; }
	api "${n}dst" PUT /snapshot/load "{\"snapshot_path\":\"$TMPD/$n/vmstate\",\"mem_backend\":{\"backend_type\":\"File\",\"backend_path\":\"$TMPD/$n/memory.bin\",\"shared\":true},\"resume_vm\":true}"
	check "$desc: load the branch" test "$status" = 204
	if [ "$expect" = ok ]; then
		if wait_lines "${n}dst" "guest: verify ok" "$vcpus" 30; then
			ok "$desc: every vCPU verified the branch"
		else
			not_ok "$desc: every vCPU verified the branch"; diag "$(grep verify "$TMPD/${n}dst.out")"
		fi
		check "$desc: no verify FAIL" test "$(count_lines "${n}dst" 'verify FAIL')" = 0
	else
		check "$desc: damaged branch gives verify FAIL" wait_lines "${n}dst" "guest: verify FAIL" 1 30
		diag "$(grep -m1 'verify FAIL' "$TMPD/${n}dst.out")"
	fi
	vm_stop "${n}dst"
}

branch w1 2 64 ok
branch w2 2 64 ok -- --anon --mem-split-mib 32
branch w3 1 64 FAIL --corrupt
done_testing
