#!/bin/sh
# Reliability (SPEC §5, §8): kill -9 of forkfs during a live copy.
# The VMMs forkfs launched run in their own sessions, so they survive it: a
# booted one and a restored one (whose guest memory is forkfs's memfd, already
# mapped by the VMM) keep running and answer their API. Closing the dead
# forkfs's uffd released the write protection: a fresh forkfs attaches to the
# orphan, branches it twice (the guest kept writing in between) and the branch
# restores with "verify ok" on every vCPU. The dead mount is cleaned with
# fusermount3 -u; after a remount the interrupted branch is failed
# ("interrupted"), the finished one ready. What survives the dead forkfs is
# not its to clean up: the orphaned VMMs and its run directory (their API
# sockets) stay until someone removes them; this test does, at the end.
. "$top_srcdir/tests/mount/lib-mount.sh"
require_prog curl

# incremental=off: b1 copies all 256 MiB (4 s) like b0, so that forkfs is
# killed during its copy. The VMMs are jailed (the default): the orphan
# attached to below is a jailed one.
mount_forkfs copy_rate=64,incremental=off
check "boot k1 (256 MiB, 2 vCPUs)" start_sandbox k1 "$(boot_config 256 2)"
check "branch k1/b0" mkdir "$MNT/k1/branches/b0"
check "b0 becomes ready" wait_for 30 is_ready k1 b0
check "restore r0 from b0" start_sandbox r0 '{"restore":{"branch":"k1/b0"}}'
K1_PID=$(vmm_pid k1) K1_SOCK=$(vmm_sock k1)
R0_PID=$(vmm_pid r0) R0_SOCK=$(vmm_sock r0)
OLD_RUN=$(run_dir)
on_exit "kill -9 $K1_PID $R0_PID; rm -rf '$OLD_RUN'"

check "branch k1/b1" mkdir "$MNT/k1/branches/b1"
st=$(status_state k1 b1)
kill -9 "$FORKFS_PID"
wait "$FORKFS_PID" 2>/dev/null
FORKFS_PID=
diag "b1 just before forkfs was killed: $st"
check "forkfs was killed during the copy of b1" [ "$st" = copying ]

check "the dead mount answers ENOTCONN" expect_fail "not connected" stat "$MNT/k1"
check "fusermount3 -u cleans the dead mount" fusermount3 -u "$MNT"
check "not mounted any more" sh -c "! grep -q ' $MNT fuse' /proc/self/mounts"

check "k1's VMM survived forkfs" is_alive "$K1_PID"
check "r0's VMM (restored from forkfs's memfd) survived too" is_alive "$R0_PID"
check "k1's API still answers: Running" [ "$(api_state "$K1_SOCK")" = Running ]
check "r0's API still answers: Running" [ "$(api_state "$R0_SOCK")" = Running ]
check "k1 pauses" api_call "$K1_SOCK" PATCH /vm '{"state":"Paused"}'
check "k1 is Paused" [ "$(api_state "$K1_SOCK")" = Paused ]
check "k1 resumes" api_call "$K1_SOCK" PATCH /vm '{"state":"Resumed"}'
check "k1 is Running" [ "$(api_state "$K1_SOCK")" = Running ]

mount_forkfs
check "after remount k1 is stopped" [ "$(cat "$MNT/k1/state")" = stopped ]
check "b0 is ready" is_ready k1 b0
check "b1 is failed" [ "$(status_state k1 b1)" = failed ]
check "b1's error is interrupted" [ "$(status_key k1 b1 error)" = interrupted ]

check "attach k2 to the orphaned VMM of k1" \
	start_sandbox k2 "{\"attach\":{\"api_socket\":\"$K1_SOCK\"}}"
check "k2 is running" [ "$(cat "$MNT/k2/state")" = running ]
check "branch k2/c1 (a new uffd: the old registration is gone)" mkdir "$MNT/k2/branches/c1"
check "c1 becomes ready" wait_for 30 is_ready k2 c1
sleep 0.3
check "branch k2/c2" mkdir "$MNT/k2/branches/c2"
check "c2 becomes ready" wait_for 30 is_ready k2 c2
check "the guest kept writing between c1 and c2" \
	sh -c "! cmp -s '$STORE/sandboxes/k2/branches/c1/memory.bin' '$STORE/sandboxes/k2/branches/c2/memory.bin'"
check "c2 restores and verifies on both vCPUs" restore_verifies r2 k2 c2 2
check "rmdir the interrupted b1" rmdir "$MNT/k1/branches/b1"
check "b1 is gone" no_dir_left k1 b1

check "unmount exits 0" unmount_forkfs
check "the attached orphan was left running" [ "$(api_state "$K1_SOCK")" = Running ]
check "no VMM of this forkfs left running (r2 stopped)" is_gone "$(vmm_pid r2)"
kill -9 "$K1_PID" "$R0_PID"
check "the orphans are gone once killed" wait_for 5 sh -c "! kill -0 $K1_PID 2>/dev/null && ! kill -0 $R0_PID 2>/dev/null"
diag "the dead forkfs left its run directory $OLD_RUN: $(ls "$OLD_RUN" 2>/dev/null | tr '\n' ' ')"
[ "$_tap_failed" -eq 0 ] || dump_logs
done_testing
