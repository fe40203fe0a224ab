#!/bin/sh
# tests/mount/wait.sh — branches/TAG/wait: a read that blocks until the copy
# ends and returns the final status. With a capped copy (64 MiB at 16 MiB/s,
# about 4 s): cat wait returns "ready" only once status says ready; a reader
# killed by SIGINT leaves forkfs healthy; rmdir of the branch answers a
# waiter with ENOENT; a settled branch answers at once; SIGTERM to forkfs
# (systemctl stop) answers a waiter with an error instead of hanging. (A
# plain unmount is EBUSY while the reader holds the file open, as on any
# file system.)
. "$top_srcdir/tests/mount/lib-mount.sh"

# incremental=off: every branch copies all 64 MiB (4 s), so each is still
# copying while it is waited for (an incremental one copies only what the
# guest wrote since the last: maybe less than a second's worth).
# The copy must take a while: the cap counts the bytes the background copy
# writes, and a guest sweeping all its memory would have its writes copy it
# first (faults never wait for the cap). So this guest writes all of its
# memory once, then only its first 4 MiB (wset_mib=4).
mount_forkfs copy_rate=16,incremental=off
check "boot s1 (64 MiB, 1 vCPU, wset 4 MiB)" start_sandbox s1 \
	"$(printf '{"boot-source":{"kernel_image_path":"%s","boot_args":"wset_mib=4"},"machine-config":{"vcpu_count":1,"mem_size_mib":64}}' "$GUEST_IMG")"
check "its guest has written all its memory once" wait_for 120 first_pass_done s1 1
check "mkdir branches/b1" mkdir "$MNT/s1/branches/b1"
check "b1 is copying" [ "$(status_state s1 b1)" = copying ]
t0=$(date +%s%N)
out=$(cat "$MNT/s1/branches/b1/wait")
t1=$(date +%s%N)
diag "cat wait returned after $(( (t1 - t0) / 1000000 )) ms: $(echo "$out" | head -n1)"
check "cat wait blocked until the copy ended and says ready" [ "$(echo "$out" | head -n1)" = ready ]
check "... status agrees" is_ready s1 b1
check "... it took a while (the copy is capped)" [ $(( (t1 - t0) / 1000000 )) -ge 1000 ]
check "... the text is status's" sh -c "[ \"\$(cat '$MNT/s1/branches/b1/wait')\" = \"\$(cat '$MNT/s1/branches/b1/status')\" ]"
t0=$(date +%s%N)
cat "$MNT/s1/branches/b1/wait" >/dev/null
check "a settled branch answers at once" [ $(( ($(date +%s%N) - t0) / 1000000 )) -lt 1000 ]

check "mkdir branches/b2" mkdir "$MNT/s1/branches/b2"
timeout -s INT 1 cat "$MNT/s1/branches/b2/wait" >/dev/null 2>&1
check "a reader interrupted by SIGINT returns (timeout's status 124)" [ $? -eq 124 ]
check "forkfs still answers: cat wait of b2 says ready" \
	sh -c "[ \"\$(head -n1 '$MNT/s1/branches/b2/wait')\" = ready ]"

check "mkdir branches/b3" mkdir "$MNT/s1/branches/b3"
cat "$MNT/s1/branches/b3/wait" >"$TMPD/b3.out" 2>"$TMPD/b3.err" &
reader=$!
sleep 0.5
check "rmdir b3 while a reader waits" rmdir "$MNT/s1/branches/b3"
check "... the reader ends" wait_for 5 sh -c "! kill -0 $reader 2>/dev/null"
wait "$reader"
rc=$?
check "... with an error (ENOENT)" sh -c "[ $rc -ne 0 ] && grep -q 'No such file' '$TMPD/b3.err'"

check "mkdir branches/b4" mkdir "$MNT/s1/branches/b4"
cat "$MNT/s1/branches/b4/wait" >/dev/null 2>&1 &
reader=$!
sleep 0.3
check "SIGTERM to forkfs while a reader waits" kill -TERM "$FORKFS_PID"
check "... the reader ends" wait_for 10 sh -c "! kill -0 $reader 2>/dev/null"
check "... forkfs exits" wait_for 20 sh -c "! kill -0 $FORKFS_PID 2>/dev/null"
wait "$FORKFS_PID"
check "... with status 0" [ $? -eq 0 ]
check "... and the mount is gone" sh -c "! grep -q ' $MNT fuse' /proc/mounts"
check "no VMM left running" [ -z "$(live_vmm_pids)" ]
[ "$_tap_failed" -eq 0 ] || dump_logs
done_testing
