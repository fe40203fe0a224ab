#!/bin/sh
# Reliability (SPEC §5, §8): unmount during a copy, with three kinds of
# sandbox up (booted, restored, attached). (An open file keeps the mount
# busy: fusermount3 -u then fails with EBUSY, as for any file system.) fusermount3 -u returns, forkfs exits 0 within 20 s,
# and nothing is left: no launched VMM, no run directory (API and handshake
# sockets), no mount; the attached VM is detached and keeps running. After a
# remount the interrupted branch is failed (cancelled or interrupted).
. "$top_srcdir/tests/mount/lib-mount.sh"
require_prog curl

ESOCK=$TMPD/e.sock
check "boot an external minivm to attach to" boot_external "$ESOCK" "$TMPD/e.log" 128 1 ||
	bail "cannot boot the external minivm"
# incremental=off: b1 copies all 256 MiB (4 s) like b0, so that it copies
# at unmount.
mount_forkfs copy_rate=64,incremental=off
check "boot u1 (256 MiB, 2 vCPUs)" start_sandbox u1 "$(boot_config 256 2)"
check "branch u1/b0" mkdir "$MNT/u1/branches/b0"
check "b0 becomes ready" wait_for 30 is_ready u1 b0
check "restore u2 from b0" start_sandbox u2 '{"restore":{"branch":"u1/b0"}}'
check "attach u3" start_sandbox u3 "{\"attach\":{\"api_socket\":\"$ESOCK\"}}"
check "branch u3/a1 (attached, copying at unmount too)" mkdir "$MNT/u3/branches/a1"
check "branch u1/b1" mkdir "$MNT/u1/branches/b1"
st=$(status_state u1 b1)
pids=$(live_vmm_pids)
rd=$(run_dir)
diag "b1 at unmount: $st; VMMs: $(echo $pids)"
check "b1 was copying at unmount" [ "$st" = copying ]
t0=$(date +%s)
check "fusermount3 -u; forkfs exits 0 within 20 s" unmount_forkfs
diag "forkfs exited $(($(date +%s) - t0)) s after the unmount (rc $FORKFS_RC)"
check "not mounted" sh -c "! grep -q ' $MNT fuse' /proc/self/mounts"
check "no launched VMM left (u1, u2)" [ -z "$(live_vmm_pids)" ]
for p in $pids; do check "VMM $p is gone" is_gone "$p"; done
check "run directory (sockets) removed" sh -c "[ -n '$rd' ] && [ ! -e '$rd' ]"
check "no forkfs process left" sh -c "! kill -0 $FORKFS_PID 2>/dev/null"
check "the attached VM keeps running" [ "$(api_state "$ESOCK")" = Running ]
check "u3's log says it was detached" log_has u3 "detached; the VM keeps running"

mount_forkfs
check "after remount b1 is failed" [ "$(status_state u1 b1)" = failed ]
err=$(status_key u1 b1 error)
diag "b1 error: $err"
check "b1's error is cancelled or interrupted" sh -c "[ '$err' = cancelled ] || [ '$err' = interrupted ]"
check "b0 is still ready" is_ready u1 b0
check "the attached VM branches again through a new forkfs" \
	sh -c "echo start > '$MNT/u3/ctl' && mkdir '$MNT/u3/branches/a2'"
check "a2 becomes ready" wait_for 30 is_ready u3 a2
check "unmount exits 0" unmount_forkfs
check "no VMM left running" [ -z "$(live_vmm_pids)" ]
[ "$_tap_failed" -eq 0 ] || dump_logs
done_testing
