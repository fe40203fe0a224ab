#!/bin/bash
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
# tests/minivm/snapshot.sh — boot → let the guest write → pause → Full
# snapshot → load into a FRESH minivm process → every vCPU verifies its
# memory ("guest: verify ok"). Matrix: 1 and 2 vCPUs, memfd and --anon
# memory, one and two regions (--mem-split-mib), shared and private load.
# Also: shared:true maps the image MAP_SHARED (rw-s in /proc/PID/maps),
# the memory file has the guest's size, and the check can fail (a damaged
# image gives "verify FAIL").
. "$top_srcdir/tests/lib.sh"
. "$top_srcdir/tests/minivm/lib-minivm.sh"
require_root
require_guest
[ -f "$GUEST_IMG" ] || skip_all "no guest image at $GUEST_IMG"

# one_case NAME VCPUS MEM SHARED [MINIVM ARGS...]
one_case() {
	local n="$1" vcpus="$2" mem="$3" shared="$4"; shift 4
	local src="${n}src" dst="${n}dst" desc="$n: $vcpus vCPU, $mem MiB, $* shared=$shared"
	vm_start "$src" "$@" || { not_ok "$desc: start"; return; }
	vm_boot "$src" "$vcpus" "$mem" || { not_ok "$desc: boot"; return; }
	sleep 0.5	# let the guest stamp pages
	api "$src" PATCH /vm '{"state":"Paused"}'
	api "$src" PUT /snapshot/create "{\"snapshot_path\":\"$TMPD/$n.vmstate\",\"mem_file_path\":\"$TMPD/$n.mem\",\"snapshot_type\":\"Full\"}"
	check "$desc: Full snapshot" test "$status" = 204
	check "$desc: memory file is exactly $mem MiB" test "$(stat -c %s "$TMPD/$n.mem")" = $((mem << 20))
	diag "$desc: vmstate $(stat -c %s "$TMPD/$n.vmstate") bytes, memory $(stat -c %s "$TMPD/$n.mem") bytes"
	vm_stop "$src"

	vm_start "$dst" "$@" || { not_ok "$desc: start restore process"; return; }
	api "$dst" PUT /snapshot/load "{\"snapshot_path\":\"$TMPD/$n.vmstate\",\"mem_backend\":{\"backend_type\":\"File\",\"backend_path\":\"$TMPD/$n.mem\",\"shared\":$shared},\"resume_vm\":true}"
	check "$desc: load" test "$status" = 204
	[ "$status" = 204 ] || diag "$body"
	if wait_lines "$dst" "guest: verify ok" "$vcpus" 30; then
		ok "$desc: every vCPU verified its memory"
	else
		not_ok "$desc: every vCPU verified its memory"
		diag "$(grep verify "$TMPD/$dst.out")"
	fi
	check "$desc: no verify FAIL" test "$(count_lines "$dst" 'verify FAIL')" = 0
	expect_api "$desc: restored VM is Running" 200 '{"id":"anonymous-instance","state":"Running","vmm_version":"1.12.0","app_name":"Firecracker"}' "$dst" GET /
	if [ "$shared" = true ]; then
		if grep -q "rw-s .* $TMPD/$n.mem\$" "/proc/$(vm_pid "$dst")/maps"; then
			ok "$desc: shared:true maps the image rw-s"
		else
			not_ok "$desc: shared:true maps the image rw-s"
			diag "$(grep "$n.mem" "/proc/$(vm_pid "$dst")/maps")"
		fi
	else
		check "$desc: shared:false does not map it shared" \
			sh -c "! grep -q 'rw-s .* $TMPD/$n.mem\$' /proc/$(vm_pid "$dst")/maps"
	fi
	vm_stop "$dst"
}

one_case c1 1 64 false
one_case c2 2 64 true --anon
one_case c3 2 96 true --mem-split-mib 48
one_case c4 1 96 false --anon --mem-split-mib 32

# The check can fail: damage one stamped page of c1's image, restore it.
printf '\377' | dd of="$TMPD/c1.mem" bs=1 seek=$((0x400000 + 13)) conv=notrunc status=none
vm_start bad || bail "start"
api bad PUT /snapshot/load "{\"snapshot_path\":\"$TMPD/c1.vmstate\",\"mem_backend\":{\"backend_type\":\"File\",\"backend_path\":\"$TMPD/c1.mem\"},\"resume_vm\":true}"
check "damaged image: load" test "$status" = 204
check "damaged image: the guest reports verify FAIL" wait_lines bad "guest: verify FAIL" 1 30
diag "$(grep -m1 'verify FAIL' "$TMPD/bad.out")"
done_testing
