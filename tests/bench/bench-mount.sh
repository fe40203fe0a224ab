#!/bin/bash
# bench-mount.sh — SPEC §7 figures seen through the mount: cp of memory.bin
# through forkfs against reading the store file directly (both from a warm
# page cache, so the ratio measures FUSE, not the disk), a cp started right
# after mkdir (during the copy), and forkfs's peak memory.
# Direct and mounted reads alternate, best of BENCH_MOUNT_ROUNDS (5) each.
# Usage: bench-mount.sh [MiB]   (root, /dev/kvm, /dev/fuse; run from "make bench-mount")
# FORKFS_OPTS: more -o options for forkfs, e.g. FORKFS_OPTS=passthrough=off
# (the ready branch's reads then go through forkfs instead of FUSE passthrough).
# Then the same for b2, a second branch, incremental to b1 (the guest writes
# an 8 MiB working set after its first pass): composed of two layers on a
# store that cannot share extents, flattened into one file on one that can.
# BENCH_MOUNT_STORE=DIR puts the store there (e.g. an XFS mount, reflink=1).
. "$top_srcdir/tests/mount/lib-mount.sh"
MIB=${1:-1024}
[ -n "${BENCH_MOUNT_STORE:-}" ] && STORE=$BENCH_MOUNT_STORE/forkfs-bench-store.$$ &&
	mkdir -m 0700 "$STORE" && on_exit "rm -rf '$STORE'"

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
CONFIG=$(printf '{"boot-source":{"kernel_image_path":"%s","boot_args":"wset_mib=8"},"machine-config":{"vcpu_count":2,"mem_size_mib":%s}}' "$GUEST_IMG" "$MIB")
start_sandbox s1 "$CONFIG" || bail "start"
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
# b2: incremental to b1; flattened (one file) where the store shares extents
wait_for 300 first_pass_done s1 2 || diag "the guest's first pass did not end"
mkdir "$MNT/s1/branches/b2" || bail "mkdir b2"
wait_for 300 is_done s1 b2 && is_ready s1 b2 || bail "b2 failed: $(cat "$MNT/s1/branches/b2/status")"
b2_flat() { [ "$(od -An -tu8 -j16 -N8 "$STORE/sandboxes/s1/branches/b2/pages.map" | tr -d ' ')" = 0 ]; }
if grep -q "the store shares extents" "$FLOG" || wait_for 5 grep -q "the store shares extents" "$FLOG"; then
	wait_for 60 b2_flat || diag "b2 was not flattened"
fi
b2_layers=$(b2_flat && echo "one file (flattened)" || echo "two layers")
# shellcheck disable=SC2046
set -- $(read_pair "$STORE/sandboxes/s1/branches/b1/memory.bin" "$MNT/s1/branches/b2/memory.bin" cold)
icdirect=$1 icfuse=$2
# shellcheck disable=SC2046
set -- $(read_pair "$STORE/sandboxes/s1/branches/b1/memory.bin" "$MNT/s1/branches/b2/memory.bin")
idirect=$1 ifuse=$2
hwm=$(awk '$1 == "VmHWM:" { print $2 }' "/proc/$FORKFS_PID/status")	# kB
anon=$(awk '$1 == "RssAnon:" { print $2 }' "/proc/$FORKFS_PID/status")
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
cold=$(ratio "$cfuse" "$cdirect") warm=$(ratio "$fuse" "$direct")
icold=$(ratio "$icfuse" "$icdirect") iwarm=$(ratio "$ifuse" "$idirect")
echo "guest $MIB MiB, 2 vCPUs, live branch; forkfs -o ${FORKFS_OPTS:-(defaults)}; FUSE passthrough $passthrough"
printf '%-44s %s\n' "cp memory.bin during the copy:" "$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.2f s", b-a}') (ready after $(awk -v a="$t0" -v b="$t2" 'BEGIN{printf "%.2f s", b-a}'))"
printf '%-44s %s MB/s\n' "read store file directly (cold cache):" "$cdirect"
printf '%-44s %s MB/s\n' "read through forkfs (cold cache):" "$cfuse"
printf '%-44s %s\n' "ratio forkfs/direct, cold:" "$cold"
printf '%-44s %s MB/s\n' "read store file directly (warm):" "$direct"
printf '%-44s %s MB/s\n' "read through forkfs (warm):" "$fuse"
printf '%-44s %s\n' "ratio forkfs/direct, warm:" "$warm"
echo "b2, incremental to b1, stored $(($(status_key s1 b2 bytes_stored) / 1048576)) MiB; its image: $b2_layers; store on $(stat -f -c %T "$STORE")"
printf '%-44s %s\n' "b2 ratio forkfs/direct (b1's file), cold:" "$icold ($icfuse / $icdirect MB/s)"
printf '%-44s %s\n' "b2 ratio forkfs/direct (b1's file), warm:" "$iwarm ($ifuse / $idirect MB/s)"
printf '%-44s %s kB / %s kB\n' "forkfs peak RSS (VmHWM) / private (RssAnon):" "$hwm" "$anon"
figure cp.cold "$cold"
figure cp.warm "$warm"
figure cp.b2.cold "$icold"
figure cp.b2.warm "$iwarm"
figure forkfs.vmhwm_kib "$hwm"
echo stop >"$MNT/s1/ctl"
unmount_forkfs || diag "unmount failed"
ok "benchmark ran"
done_testing
