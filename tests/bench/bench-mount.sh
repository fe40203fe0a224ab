#!/bin/bash
# bench-mount.sh — SPEC §7 figures seen through the mount: cp of memory.bin
# through forkfs against reading the store file directly (both from a warm
# page cache, so the ratio measures FUSE, not the disk), a cp started right
# after mkdir (during the copy), and forkfs's peak memory.
# Direct and mounted reads alternate, best of BENCH_MOUNT_ROUNDS (5) each.
# Usage: bench-mount.sh [MiB]   (root, /dev/kvm, /dev/fuse; run from "make bench-mount")
# FORKFS_OPTS: more -o options for forkfs, e.g. FORKFS_OPTS=passthrough=off
# (the ready branch's reads then go through forkfs instead of FUSE passthrough).
. "$top_srcdir/tests/mount/lib-mount.sh"
MIB=${1:-1024}

secs() { date +%s.%N; }
mbps() { awk -v b="$1" -v t="$2" 'BEGIN { printf "%.0f", b / 1048576 / t }'; }
# read_once FILE [cold]: MB/s of one sequential read to /dev/null; "cold"
# drops the page cache first (forkfs then reads the disk too).
read_once() {
	local t0 t1
	[ "${2:-}" = cold ] && { sync; echo 3 >/proc/sys/vm/drop_caches; }
	t0=$(secs); dd if="$1" of=/dev/null bs=1M status=none; t1=$(secs)
	mbps $((MIB * 1048576)) "$(awk -v a="$t0" -v b="$t1" 'BEGIN{print b-a}')"
}
# read_pair DIRECT MOUNTED [cold]: "DIRECT_MBPS MOUNTED_MBPS", each the best
# of ROUNDS reads taken in turns, so that a machine whose load changes
# meanwhile weighs on both alike.
ROUNDS=${BENCH_MOUNT_ROUNDS:-5}
read_pair() {
	local bd=0 bm=0 i r
	for i in $(seq "$ROUNDS"); do
		r=$(read_once "$1" "${3:-}"); [ "$r" -gt "$bd" ] && bd=$r
		r=$(read_once "$2" "${3:-}"); [ "$r" -gt "$bm" ] && bm=$r
	done
	echo "$bd $bm"
}

mount_forkfs "${FORKFS_OPTS:-}"
wait_for 10 grep -q '^forkfs: FUSE passthrough' "$FLOG"
passthrough=$(sed -n 's/^forkfs: FUSE passthrough //p' "$FLOG" | tail -1)
start_sandbox s1 "$(boot_config "$MIB" 2)" || bail "start"
sleep 1
t0=$(secs)
mkdir "$MNT/s1/branches/b1" || bail "mkdir branch"
cp "$MNT/s1/branches/b1/memory.bin" "$TMPD/during.bin"
t1=$(secs)
wait_for 300 is_done s1 b1 || bail "branch did not finish"
is_ready s1 b1 || bail "branch failed: $(cat "$MNT/s1/branches/b1/status")"
t2=$(secs)
cmp -s "$TMPD/during.bin" "$STORE/sandboxes/s1/branches/b1/memory.bin" || bail "cp during the copy differs"
rm -f "$TMPD/during.bin"
# shellcheck disable=SC2046
set -- $(read_pair "$STORE/sandboxes/s1/branches/b1/memory.bin" "$MNT/s1/branches/b1/memory.bin" cold)
cdirect=$1 cfuse=$2
# shellcheck disable=SC2046
set -- $(read_pair "$STORE/sandboxes/s1/branches/b1/memory.bin" "$MNT/s1/branches/b1/memory.bin")
direct=$1 fuse=$2
hwm=$(sed -n 's/^VmHWM: *//p' "/proc/$FORKFS_PID/status")
anon=$(sed -n 's/^RssAnon: *//p' "/proc/$FORKFS_PID/status")
echo "guest $MIB MiB, 2 vCPUs, live branch; forkfs -o ${FORKFS_OPTS:-(defaults)}; FUSE passthrough $passthrough"
printf '%-44s %s\n' "cp memory.bin during the copy:" "$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.2f s", b-a}') (ready after $(awk -v a="$t0" -v b="$t2" 'BEGIN{printf "%.2f s", b-a}'))"
printf '%-44s %s MB/s\n' "read store file directly (cold cache):" "$cdirect"
printf '%-44s %s MB/s\n' "read through forkfs (cold cache):" "$cfuse"
printf '%-44s %s\n' "ratio forkfs/direct, cold:" "$(awk -v a="$cfuse" -v b="$cdirect" 'BEGIN{printf "%.2f", a/b}')"
printf '%-44s %s MB/s\n' "read store file directly (warm):" "$direct"
printf '%-44s %s MB/s\n' "read through forkfs (warm):" "$fuse"
printf '%-44s %s\n' "ratio forkfs/direct, warm:" "$(awk -v a="$fuse" -v b="$direct" 'BEGIN{printf "%.2f", a/b}')"
printf '%-44s %s / %s\n' "forkfs peak RSS (VmHWM) / private (RssAnon):" "$hwm" "$anon"
echo stop >"$MNT/s1/ctl"
unmount_forkfs || diag "unmount failed"
ok "benchmark ran"
done_testing
