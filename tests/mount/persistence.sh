#!/bin/sh
# Lifetime: rmdir during a copy cancels it and the guest keeps running; unmount
# during a copy exits cleanly with no strays; after a remount sandboxes are
# stopped, ready branches ready and the interrupted one failed.
. "$top_srcdir/tests/mount/lib-mount.sh"

# Capped copies (4 s for 256 MiB) are still running at rmdir and unmount;
# incremental=off, so that later branches copy all of it too.
mount_forkfs copy_rate=64,incremental=off
S=$MNT/p1
check "boot p1 (256 MiB)" start_sandbox p1 "$(boot_config 256 2)"
check "mkdir branches/b1" mkdir "$S/branches/b1"
check "b1 becomes ready" wait_for 30 is_ready p1 b1

check "mkdir branches/b2" mkdir "$S/branches/b2"
st=$(status_state p1 b2)
diag "b2 right after mkdir: $st"
check "b2 was copying" [ "$st" = copying ]
check "rmdir b2 during its copy" rmdir "$S/branches/b2"
check "b2 is gone" sh -c "[ ! -e '$S/branches/b2' ] && [ ! -e '$STORE/sandboxes/p1/branches/b2' ]"
check "log says the copy was cancelled" grep -q "branches/b2: cancelling the copy" "$S/log"
check "the guest keeps running" [ "$(cat "$S/state")" = running ]
check "pause still works" bash -c "echo pause > '$S/ctl' && [ \"\$(cat '$S/state')\" = paused ]"
check "resume still works" bash -c "echo resume > '$S/ctl' && [ \"\$(cat '$S/state')\" = running ]"
check "a new branch after the cancel works" mkdir "$S/branches/b4"
check "b4 becomes ready" wait_for 30 is_ready p1 b4

check "mkdir branches/b3" mkdir "$S/branches/b3"
st=$(status_state p1 b3)
check "b3 is copying at unmount" [ "$st" = copying ]
rd=$(run_dir)
check "unmount during the copy exits 0" unmount_forkfs
check "not mounted" sh -c "! grep -q ' $MNT fuse' /proc/self/mounts"
check "no VMM left running" [ -z "$(live_vmm_pids)" ]
check "run directory removed" sh -c "[ -n '$rd' ] && [ ! -e '$rd' ]"

mount_forkfs
check "p1 is back, stopped" [ "$(cat "$S/state")" = stopped ]
check "b1 is back, ready" is_ready p1 b1
check "b1 memory.bin through the mount equals the store" \
	cmp "$S/branches/b1/memory.bin" "$STORE/sandboxes/p1/branches/b1/memory.bin"
check "b3, interrupted, is failed" [ "$(status_state p1 b3)" = failed ]
check "b3's error says cancelled (at unmount)" [ "$(status_key p1 b3 error)" = cancelled ]
check "config.json survived" grep -q kernel_image_path "$S/config.json"
check "p1 starts again" bash -c "echo start > '$S/ctl'"
check "rmdir b3" rmdir "$S/branches/b3"
check "unmount exits 0" unmount_forkfs
check "no VMM left running" [ -z "$(live_vmm_pids)" ]
[ "$_tap_failed" -eq 0 ] || dump_logs
done_testing
