#!/bin/bash
# bench-incremental.sh — what a chain of branches costs (issue #9): boot a
# 2-vCPU guest of MiB (default 1024) with a working set of WSET MiB (default
# 50, minivm's wset_mib), let it finish its first pass, then take N branches
# (default 10) GAP seconds apart, each waited for until ready; once with
# incremental branches (the default) and once with -o incremental=off. Per
# branch: the pause and forkfs's own part of it (arm_us), the write faults
# the guest took per second since the previous branch (tracked_faults: the
# cost of tracking), time to ready, bytes copied and stored, pages copied
# first for the guest; at the end the store's size. Beside each incremental branch: the time to pwrite+fsync
# its stored bytes into the same file system (dd conv=fsync) and the ratio.
# Last: reading the last branch's memory.bin through the mount, composed from
# its layers, against reading the first (dense) one (see read_ms).
# Usage: bench-incremental.sh [MiB] [N] [WSET] [GAP]  (root, /dev/fuse;
# "make bench-incremental")
. "$top_srcdir/tests/mount/lib-mount.sh"
SIZE=${1:-1024}
N=${2:-10}
WSET=${3:-50}
GAP=${4:-3}

secs() { date +%s.%N; }
ms() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.0f", (b - a) * 1000 }'; }
cfg() {
	printf '{"boot-source":{"kernel_image_path":"%s","boot_args":"wset_mib=%s"},"machine-config":{"vcpu_count":2,"mem_size_mib":%s}}\n' \
		"$GUEST_IMG" "$WSET" "$SIZE"
}
# fsync_ms BYTES: pwrite+fsync of BYTES into the store's file system.
fsync_ms() {
	local t0 t1
	t0=$(secs)
	dd if=/dev/zero of="$STORE/dd.tmp" bs=1M count=$(( ($1 + 1048575) / 1048576 )) conv=fsync 2>/dev/null
	t1=$(secs)
	rm -f "$STORE/dd.tmp"
	ms "$t0" "$t1"
}
# read_ms FILE: read FILE through the mount with O_DIRECT (past the FUSE page
# cache, so every byte goes through forkfs), the store's files already in
# the page cache: what forkfs's read path costs, not this VM's disk, whose
# cold reads vary by 5x from one run to the next here.
read_ms() {
	local t0
	cat "$STORE"/sandboxes/s1/branches/*/memory.bin >/dev/null 2>&1
	cat "$STORE"/sandboxes/s1/branches/.layer-*/memory.bin >/dev/null 2>&1
	t0=$(secs)
	dd if="$1" of=/dev/null bs=1M iflag=direct 2>/dev/null
	ms "$t0" "$(secs)"
}

# chain OPTS LABEL: one run; prints the per-branch rows, sets TOTAL_KIB.
chain() {
	local i st pause ready copied stored faulted ref ratio arm tf t_prev t_now rate
	mount_forkfs "$1"
	start_sandbox s1 "$(cfg)" || bail "boot"
	wait_for 600 first_pass_done s1 2 || bail "the guest's first pass did not end"
	t_prev=
	for i in $(seq "$N"); do
		t_now=$(secs)
		mkdir "$MNT/s1/branches/b$i" || bail "mkdir b$i"
		wait_for 600 is_ready s1 "b$i" || bail "b$i not ready"
		st=$(cat "$MNT/s1/branches/b$i/status")
		pause=$(echo "$st" | sed -n 's/^pause_us: //p')
		ready=$(echo "$st" | sed -n 's/^elapsed_ms: //p')
		copied=$(echo "$st" | sed -n 's/^bytes_copied: //p')
		stored=$(echo "$st" | sed -n 's/^bytes_stored: //p')
		faulted=$(echo "$st" | sed -n 's/^pages_faulted: //p')
		arm=$(echo "$st" | sed -n 's/^arm_us: //p')
		tf=$(echo "$st" | sed -n 's/^tracked_faults: //p')
		# write faults per second since the previous branch's mkdir
		rate=-
		[ -n "$t_prev" ] && rate=$(awk -v n="$tf" -v a="$t_prev" -v b="$t_now" \
			'BEGIN { printf "%.0f", n / (b - a) }')
		t_prev=$t_now
		ref=$(fsync_ms "$stored")
		ratio=$(awk -v a="$ready" -v b="$ref" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')
		[ "$i" -gt 1 ] && [ "$2" = incremental ] && { READY_MS="$READY_MS $ready"; FSYNC_MS="$FSYNC_MS $ref"; }
		printf '%-16s %3s %-17s %8s %6s %8s %9s %6s %6s %8s %8s %6s\n' "$2" "$i" \
			"$(echo "$st" | sed -n 's/^mode: //p')" "$pause" "$arm" "$rate" "$ready" \
			"$((copied / 1048576))" "$((stored / 1048576))" "$faulted" "$ref" "$ratio"
		sleep "$GAP"
	done
	TOTAL_KIB=$(du -sk "$STORE/sandboxes/s1/branches" | cut -f1)
	if [ "$2" = incremental ]; then
		# Three times each, alternating; the last pair is reported.
		for i in 1 2 3; do
			READ_FIRST=$(read_ms "$MNT/s1/branches/b1/memory.bin")
			READ_LAST=$(read_ms "$MNT/s1/branches/b$N/memory.bin")
		done
	fi
	echo stop >"$MNT/s1/ctl"
	for i in $(seq "$N"); do rmdir "$MNT/s1/branches/b$i"; done
	rmdir "$MNT/s1"
	unmount_forkfs || bail "unmount"
}

# median LIST: the median of numbers (the lower of the middle two).
median() { echo "$@" | tr ' ' '\n' | grep . | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
sum() { echo "$@" | tr ' ' '\n' | awk '{ s += $1 } END { print s }'; }
READY_MS=
FSYNC_MS=
echo "incremental branches: $SIZE MiB guest, 2 vCPUs, working set $WSET MiB, $N branches" \
	"$GAP s apart; guests on $(guest_cpu)"
printf '%-16s %3s %-17s %8s %6s %8s %9s %6s %6s %8s %8s %6s\n' run branch mode "pause us" \
	"arm us" faults/s "ready ms" copied stored faulted "fsync ms" ratio
echo "(copied, stored: MiB; faults/s: write faults since the previous mkdir per second;" \
	"faulted: pages copied first for the guest)"
chain "" incremental
INC_KIB=$TOTAL_KIB
chain incremental=off incremental=off
echo
echo "store after $N branches: incremental $((INC_KIB / 1024)) MiB, incremental=off" \
	"$((TOTAL_KIB / 1024)) MiB"
rm=$(median $READY_MS)
fm=$(median $FSYNC_MS)
echo "incremental branches 2-$N: time to ready median $rm ms, pwrite+fsync of their bytes median" \
	"$fm ms, ratio $(awk -v a="$rm" -v b="$fm" 'BEGIN { printf "%.2f", a / b }'); sums" \
	"$(sum $READY_MS) ms and $(sum $FSYNC_MS) ms"
echo "read through the mount (O_DIRECT, store files cached): b$N (composed) $READ_LAST ms, b1 (dense)" \
	"$READ_FIRST ms, ratio $(awk -v a="$READ_LAST" -v b="$READ_FIRST" 'BEGIN { printf "%.2f", b / a }')"
done_testing
