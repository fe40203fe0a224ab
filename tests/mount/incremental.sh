#!/bin/sh
# tests/mount/incremental.sh — incremental branches. A guest with a bounded
# working set (wset_mib) is branched five times: the first branch is a full
# live one, each later one is live-incremental to the one before and stores
# about the working set, not the whole memory; every branch restores and the
# guest verifies its memory on every vCPU (b4 through an export: its composed
# memory.bin copied with cp through the mount and imported as files, so the
# composed FUSE read is checked byte for byte against what the guest wrote). Middle branches are removed in a
# scrambled order, then the full base: the others still verify, and the store
# folds the hidden layers away. Tracking lost (forkfs kill -9 and remount, a
# VMM restarted) gives a full branch that verifies; -o incremental=off and
# anonymous guest memory give full branches. Branches taken while earlier
# ones still copy overlap them (see below).
. "$top_srcdir/tests/mount/lib-mount.sh"

MIB=$((1024 * 1024))
# cfg MEM_MIB VCPUS WSET_MIB
cfg() {
	printf '{"boot-source":{"kernel_image_path":"%s","boot_args":"wset_mib=%s"},"machine-config":{"vcpu_count":%s,"mem_size_mib":%s}}\n' \
		"$GUEST_IMG" "$3" "$2" "$1"
}
# branch_ready SANDBOX TAG: mkdir, then ready within 60 s.
branch_ready() { mkdir "$MNT/$1/branches/$2" && wait_for 60 is_ready "$1" "$2"; }
# verifies NEW SANDBOX TAG: a sandbox restored from the branch verifies on 2 vCPUs.
verifies() {
	restore_verifies "$1" "$2" "$3" 2 || return 1
	echo stop >"$MNT/$1/ctl"
	wait_for 20 sh -c "[ \"\$(cat '$MNT/$1/state')\" = stopped ]"
}

mount_forkfs "allow_path=$TMPD"	# the exported image (mode 0400) is restored below
check "boot s1 (128 MiB, 2 vCPUs, working set 8 MiB)" start_sandbox s1 "$(cfg 128 2 8)"
check "the guest has written every page once" wait_for 120 first_pass_done s1 2

for i in 1 2 3 4 5; do
	check "branch b$i ready" branch_ready s1 b$i
	diag "b$i: $(tr '\n' ' ' <"$MNT/s1/branches/b$i/status")"
	sleep 1
done
check "b1: mode live, parent none" \
	[ "$(status_key s1 b1 mode)/$(status_key s1 b1 parent)" = live/none ]
check "b1 stores the whole memory" [ "$(status_key s1 b1 bytes_stored)" -eq $((128 * MIB)) ]
for i in 2 3 4 5; do
	check "b$i: mode live-incremental, parent b$((i - 1))" \
		[ "$(status_key s1 b$i mode)/$(status_key s1 b$i parent)" = live-incremental/b$((i - 1)) ]
	stored=$(status_key s1 b$i bytes_stored)
	check "b$i stores what the guest wrote since b$((i - 1)): $((stored / 1024)) KiB (< 32 MiB)" \
		[ "$stored" -gt 0 ] && [ "$stored" -lt $((32 * MIB)) ]
	check "b$i copied what it stores" [ "$(status_key s1 b$i bytes_copied)" -eq "$stored" ]
	check "b$i reports forkfs's part of the pause ($(status_key s1 b$i arm_us) us) and the write faults tracking took ($(status_key s1 b$i tracked_faults))" \
		[ "$(status_key s1 b$i arm_us)" -gt 0 ] && [ "$(status_key s1 b$i tracked_faults)" -gt 0 ]
	check "b$i: memory.bin is the dense size" [ "$(stat -c %s "$MNT/s1/branches/b$i/memory.bin")" -eq $((128 * MIB)) ]
done
used=$(du -sk "$STORE/sandboxes/s1/branches" | cut -f1)
check "five branches of 128 MiB take $((used / 1024)) MiB of store (< 200)" [ "$used" -lt $((200 * 1024)) ]

for i in 1 2 3 5; do
	check "b$i restores and verifies" verifies r$i s1 b$i
done

# Export b4 through the mount and import it as plain files.
mkdir "$TMPD/exp"
check "cp -r of b4 through the mount" cp "$MNT/s1/branches/b4/vmstate" "$MNT/s1/branches/b4/memory.bin" "$TMPD/exp/"
check "the exported memory.bin is dense-sized" [ "$(stat -c %s "$TMPD/exp/memory.bin")" -eq $((128 * MIB)) ]
check "the exported image restores and verifies" start_sandbox x4 \
	"{\"restore\":{\"snapshot_path\":\"$TMPD/exp/vmstate\",\"mem_file_path\":\"$TMPD/exp/memory.bin\"}}"
check "... on both vCPUs" wait_for 30 has_verified x4 2
check "... without a FAIL" sh -c "! grep -q 'verify FAIL' '$MNT/x4/log'"
echo stop >"$MNT/x4/ctl"

# Remove middle branches in a scrambled order, then the full base.
check "rmdir b4" rmdir "$MNT/s1/branches/b4"
check "rmdir b2" rmdir "$MNT/s1/branches/b2"
check "rmdir b1 (the full base)" rmdir "$MNT/s1/branches/b1"
check "the removed branches are gone from the mount" \
	sh -c "! ls '$MNT/s1/branches' | grep -qx 'b[124]'"
check "b3 still verifies" verifies r3b s1 b3
check "b5 still verifies" verifies r5b s1 b5
# b5 was rebased onto b1 when its chain grew past 4 layers; b2 has one
# child (b3) and is folded into it; b1 stays, hidden, while b3 and b5 both
# need it (folding it would store it twice).
check "the compactor folds b2 away; only b1's pages stay hidden" \
	wait_for 60 sh -c "[ \$(ls -a '$STORE/sandboxes/s1/branches' | grep -c '^\.layer-') -le 1 ]"
check "b3 verifies after the folds" verifies r3c s1 b3
check "b5 verifies after the folds" verifies r5c s1 b5
# rmdir b3: b1's pages now have one user, b5, and are folded into it (about
# 120 MiB to copy); forkfs is killed during that fold. Whatever the moment,
# b5 stays readable; the remount's compaction finishes the job. Tracking is
# lost too: the VMM started after the remount is a new one.
check "rmdir b3" rmdir "$MNT/s1/branches/b3"
sleep 0.2
kill -9 "$FORKFS_PID"
wait "$FORKFS_PID" 2>/dev/null
FORKFS_PID=
fusermount3 -u "$MNT" 2>/dev/null || umount -l "$MNT"
kill_strays
mount_forkfs
check "after kill -9 during the fold and a remount, b5 is ready" is_ready s1 b5
check "... and restores and verifies" verifies r5d s1 b5
check "b1's pages end up folded into b5, its last user" \
	wait_for 60 sh -c "[ \$(ls -a '$STORE/sandboxes/s1/branches' | grep -c '^\.layer-') -eq 0 ]"
check "b5 verifies after that fold" verifies r5e s1 b5
check "s1 starts again" sh -c "echo start >'$MNT/s1/ctl'"
check "... its guest runs" wait_for 120 first_pass_done s1 4
check "branch b6 ready" branch_ready s1 b6
check "b6 is a full live branch (tracking was lost)" \
	[ "$(status_key s1 b6 mode)/$(status_key s1 b6 parent)" = live/none ]
check "branch b7 ready" branch_ready s1 b7
check "b7 is incremental to b6" \
	[ "$(status_key s1 b7 mode)/$(status_key s1 b7 parent)" = live-incremental/b6 ]
check "b7 restores and verifies" verifies r7 s1 b7
check "rmdir b6 (b7's parent) while b7 lives" rmdir "$MNT/s1/branches/b6"
check "b7 verifies after its parent is gone" verifies r7b s1 b7
check "the next branch after removing the tip's parent chain is still sound: b8 ready" branch_ready s1 b8
check "b8 is incremental to b7" [ "$(status_key s1 b8 parent)" = b7 ]
check "rmdir b8 (the tip)" rmdir "$MNT/s1/branches/b8"
check "branch b9 ready" branch_ready s1 b9
check "b9 is full: its would-be parent was removed" [ "$(status_key s1 b9 mode)" = live ]
check "b9 restores and verifies" verifies r9 s1 b9
echo stop >"$MNT/s1/ctl"
check "unmount" unmount_forkfs

# Branches taken while earlier ones still copy (capped at 8 MiB/s: e1's
# 128 MiB take 16 s, the window the checks below run in; slow builds
# (sanitizers) need it, and e2, e3 and x1 copy one after another when e1
# holds one of two slots, -o copies): each mkdir returns at once,
# incremental to the one before, and stays "copying" until its parent is ready. A child's
# memory.bin read meanwhile (its pages through its parent's running copy)
# equals the one read once ready. rmdir of a parent that still copies,
# with a child that relies on it, completes the parent and keeps its pages
# (hidden), instead of cancelling it. All verify.
mount_forkfs copy_rate=8
check "boot s3 (128 MiB, 2 vCPUs, working set 8 MiB)" start_sandbox s3 "$(cfg 128 2 8)"
check "s3's guest runs" wait_for 120 first_pass_done s3 2
check "mkdir e1" mkdir "$MNT/s3/branches/e1"
check "e1 is copying" [ "$(status_state s3 e1)" = copying ]
t0=$(date +%s%N)
check "mkdir e2 while e1 copies succeeds" mkdir "$MNT/s3/branches/e2"
diag "mkdir e2 took $(( ($(date +%s%N) - t0) / 1000000 )) ms (e1 alone copies for 16 s)"
check "mkdir e2 returned while e1 still copies" [ "$(status_state s3 e1)" = copying ]
check "e2 is incremental to e1" \
	[ "$(status_key s3 e2 mode)/$(status_key s3 e2 parent)" = live-incremental/e1 ]
check "mkdir e3 while e1 and e2 copy" mkdir "$MNT/s3/branches/e3"
check "e3 is incremental to e2" [ "$(status_key s3 e3 parent)" = e2 ]
check "e2 is not ready before its parent" [ "$(status_state s3 e2)" = copying ]
# x1, incremental to e3, copies its own pages at once, then waits for its
# parents; rmdir of it meanwhile cancels that wait at once.
check "mkdir x1 while e1 still copies" mkdir "$MNT/s3/branches/x1"
check "x1 is incremental to e3" [ "$(status_key s3 x1 parent)" = e3 ]
check "x1's own pages are copied; it waits for its parents" wait_for 10 sh -c \
	"[ \"\$(sed -n 's/^bytes_copied: //p' '$MNT/s3/branches/x1/status')\" = \"\$(sed -n 's/^bytes_stored: //p' '$MNT/s3/branches/x1/status')\" ]"
check "... and stays copying" [ "$(status_state s3 x1)" = copying ]
t0=$(date +%s%N)
check "rmdir x1 while it waits" rmdir "$MNT/s3/branches/x1"
took=$(( ($(date +%s%N) - t0) / 1000000 ))
check "... returns at once (${took} ms), not after e1's copy" [ "$took" -lt 3000 ]
check "... while e1 still copies" [ "$(status_state s3 e1)" = copying ]
check "... and says it cancelled x1's copy" grep -q "rmdir branches/x1: cancelling the copy" "$MNT/s3/log"
# 16 MiB of e3 read while e1 copies (its pages through e1's copy); not all
# of it: that would complete e1, and e2 must still copy at its rmdir.
check "read 16 MiB of e3's memory.bin while e1 still copies" \
	dd if="$MNT/s3/branches/e3/memory.bin" of="$TMPD/e3-early.bin" bs=1M skip=32 count=16 status=none
check "e2 still copies (e1 does)" [ "$(status_state s3 e2)/$(status_state s3 e1)" = copying/copying ]
check "rmdir e2 (copying, e3 relies on it)" rmdir "$MNT/s3/branches/e2"
check "the log says e2's copy was completed, not cancelled" \
	grep -q "rmdir branches/e2: completing the copy first" "$MNT/s3/log"
check "e1 is ready once e2 was removed" is_ready s3 e1
check "e3 becomes ready" wait_for 60 is_ready s3 e3
check "e3's memory.bin read while copying equals the ready one" sh -c \
	"dd if='$MNT/s3/branches/e3/memory.bin' bs=1M skip=32 count=16 status=none | cmp - '$TMPD/e3-early.bin'"
rm -f "$TMPD/e3-early.bin"
check "e1 restores and verifies" verifies q1 s3 e1
check "e3 restores and verifies" verifies q3 s3 e3
# The VMM restarted in the same forkfs (stop, start): a new VMM, whose writes
# nobody tracked, so its first branch is full.
echo stop >"$MNT/s3/ctl"
check "s3 stopped" wait_for 20 sh -c "[ \"\$(cat '$MNT/s3/state')\" = stopped ]"
check "s3 starts again (a new VMM)" sh -c "echo start >'$MNT/s3/ctl'"
check "... its guest runs" wait_for 120 first_pass_done s3 4
check "branch e4 ready" branch_ready s3 e4
check "e4 is a full live branch (a new VMM: nothing tracked)" \
	[ "$(status_key s3 e4 mode)/$(status_key s3 e4 parent)" = live/none ]
check "e4 restores and verifies" verifies q4 s3 e4
echo stop >"$MNT/s3/ctl"
check "unmount" unmount_forkfs

# incremental=off
mount_forkfs incremental=off
check "boot s2 with incremental=off" start_sandbox s2 "$(cfg 64 2 4)"
check "s2's guest runs" wait_for 120 first_pass_done s2 2
check "branch c1 ready" branch_ready s2 c1
check "branch c2 ready" branch_ready s2 c2
check "c2 is a full live branch" [ "$(status_key s2 c2 mode)/$(status_key s2 c2 parent)" = live/none ]
echo stop >"$MNT/s2/ctl"
check "unmount" unmount_forkfs

# Anonymous guest memory: a balloon could zap pages and writes would escape.
mount_forkfs "vmm_args=--anon"
check "boot a1 (--anon)" start_sandbox a1 "$(cfg 64 2 4)"
check "a1's guest runs" wait_for 120 first_pass_done a1 2
check "branch d1 ready" branch_ready a1 d1
check "branch d2 ready" branch_ready a1 d2
check "d2 is a full live branch (anonymous memory)" [ "$(status_key a1 d2 mode)" = live ]
check "d2 restores and verifies" verifies ra a1 d2
echo stop >"$MNT/a1/ctl"
check "unmount" unmount_forkfs
done_testing
