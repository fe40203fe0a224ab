#!/bin/sh
# tests/mount/copies.sh — -o copies=N: at most N background copies at once,
# across sandboxes. With one slot and a capped copy (32 MiB at 8 MiB/s, about
# 4 s): s1's branch copies; s2's, taken next, waits its turn ("queued: yes")
# and still answers reads of memory.bin meanwhile; s3's, taken while both
# run, is cancelled by rmdir while it waits, at once, leaving nothing behind
# and its guest running; s2's copies once s1's is ready, and a sandbox
# restored from it verifies its memory; a branch taken later gets the slot.
. "$top_srcdir/tests/mount/lib-mount.sh"

# The guests write all their memory once, then only their first 4 MiB: the
# cap counts what the background copy writes, so it then holds the slot.
cfg=$(printf '{"boot-source":{"kernel_image_path":"%s","boot_args":"wset_mib=4"},"machine-config":{"vcpu_count":1,"mem_size_mib":32}}' "$GUEST_IMG")
queued() { [ "$(status_key "$1" "$2" queued)" = "$3" ]; }

mount_forkfs copy_rate=8,copies=1
check "forkfs says how many copies run at once" grep -q "at most 1 background copies at once" "$FLOG"
for s in s1 s2 s3; do
	check "boot $s (32 MiB, 1 vCPU, wset 4 MiB)" start_sandbox $s "$cfg"
done
for s in s1 s2 s3; do
	check "$s's guest has written all its memory once" wait_for 120 first_pass_done $s 1
done
check "mkdir s1/branches/a" mkdir "$MNT/s1/branches/a"
check "s1/a is copying, its turn (queued: no)" sh -c "[ \"\$(head -n1 '$MNT/s1/branches/a/status')\" = copying ] && grep -qx 'queued: no' '$MNT/s1/branches/a/status'"
check "mkdir s2/branches/a" mkdir "$MNT/s2/branches/a"
check "s2/a waits its turn (queued: yes)" wait_for 5 queued s2 a yes
check "... a read of its memory.bin is answered meanwhile" \
	sh -c "dd if='$MNT/s2/branches/a/memory.bin' of=/dev/null bs=1M count=2 skip=20 2>/dev/null"
check "mkdir s3/branches/a" mkdir "$MNT/s3/branches/a"
check "s3/a waits too" wait_for 5 queued s3 a yes
t0=$(date +%s%N)
check "rmdir s3/branches/a while it waits" rmdir "$MNT/s3/branches/a"
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
diag "rmdir of a waiting branch took $ms ms"
check "... at once (under 2 s)" [ "$ms" -lt 2000 ]
check "... nothing of it is left" no_dir_left s3 a
check "... s3 runs on" sh -c "[ \"\$(cat '$MNT/s3/state')\" = running ]"
check "s2/a still waits behind s1/a" queued s2 a yes
check "s1/a becomes ready" wait_for 60 is_ready s1 a
check "s2/a gets its turn and becomes ready" wait_for 60 is_ready s2 a
check "... with every byte" sh -c "[ \"\$(status_key s2 a bytes_copied)\" = \"\$(status_key s2 a bytes_total)\" ]"
check "... no queued line once ready" sh -c "! grep -q '^queued:' '$MNT/s2/branches/a/status'"
check "mkdir s3/branches/b" mkdir "$MNT/s3/branches/b"
check "s3/b gets the free slot and becomes ready" wait_for 60 is_ready s3 b
for s in s1 s2 s3; do echo stop >"$MNT/$s/ctl"; done
check "a sandbox restored from s2/a verifies its memory" restore_verifies r2 s2 a 1
echo stop >"$MNT/r2/ctl"
check "unmount exits 0" unmount_forkfs
check "no VMM left running" [ -z "$(live_vmm_pids)" ]
[ "$_tap_failed" -eq 0 ] || dump_logs
done_testing
