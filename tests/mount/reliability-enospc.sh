#!/bin/sh
# Reliability (SPEC §8): a full store. The store is a 64 MiB tmpfs and the
# guest has 128 MiB, so the copy of memory.bin runs out of space. The branch
# must end "failed" with an ENOSPC reason (or mkdir fail with ENOSPC and leave
# nothing behind), the guest must not notice (still running, pause and resume
# work, its pages are not left write-protected: a later branch into the freed
# space is taken), and rmdir gives the space back.
. "$top_srcdir/tests/mount/lib-mount.sh"

STORE=$TMPD/small-store
mkdir -p "$STORE"
mount -t tmpfs -o size=64m,mode=0700 forkfs-test "$STORE" || bail "cannot mount a tmpfs store"
on_exit "umount -l '$STORE'"
used_kib() { df -k --output=used "$STORE" | tail -1 | tr -d ' '; }

mount_forkfs
check "boot f1 (128 MiB, 2 vCPUs) on a 64 MiB store" start_sandbox f1 "$(boot_config 128 2)"
sleep 0.3
if out=$(mkdir "$MNT/f1/branches/b1" 2>&1); then
	ok "mkdir b1 succeeded; the copy must fail"
	check "b1 ends within 30 s" wait_for 30 is_done f1 b1
	diag "b1: $(status_state f1 b1): $(status_key f1 b1 error)"
	check "b1 is failed" [ "$(status_state f1 b1)" = failed ]
	check "b1's error names ENOSPC" sh -c "grep -q '^error: .*ENOSPC' '$MNT/f1/branches/b1/status'"
	check "reading b1's memory.bin fails with EIO" expect_fail "Input/output error" \
		cat "$MNT/f1/branches/b1/memory.bin"
	check "the sandbox log says why b1 failed" log_has f1 "b1.*ENOSPC"
	check "the failure is persisted (branch.state says ENOSPC)" \
		grep -q "^error: .*ENOSPC" "$STORE/sandboxes/f1/branches/b1/branch.state"
	check "a failed branch cannot seed a sandbox (EINVAL)" expect_fail "Invalid argument" \
		start_sandbox x1 '{"restore":{"branch":"f1/b1"}}'
	check "... and the log says why" log_has x1 "f1/b1 failed: store full"
	check "rmdir x1" rmdir "$MNT/x1"
else
	diag "mkdir b1: $out"
	case "$out" in *"No space left"*) ok "mkdir b1 failed with ENOSPC" ;; *) not_ok "mkdir b1 failed with ENOSPC" ;; esac
	check "... and left nothing behind" no_dir_left f1 b1
fi
check "the guest is unaffected: f1 running" [ "$(cat "$MNT/f1/state")" = running ]
check "the VMM answers: Running" [ "$(api_state "$(vmm_sock f1)")" = Running ]
check "pause works" sh -c "echo pause > '$MNT/f1/ctl' && [ \"\$(cat '$MNT/f1/state')\" = paused ]"
check "resume works" sh -c "echo resume > '$MNT/f1/ctl' && [ \"\$(cat '$MNT/f1/state')\" = running ]"
check "rmdir b1" rmdir "$MNT/f1/branches/b1"
check "b1 is gone from the mount and the store" no_dir_left f1 b1
diag "store use after rmdir: $(used_kib) KiB"
check "rmdir gave the space back (< 1 MiB used)" [ "$(used_kib)" -lt 1024 ]
check "the log says b1 was removed" log_has f1 "branch b1 removed"

# The guest's pages were released: a second branch is taken (and fails the
# same way, but only because of the space) and the guest still runs.
check "a second branch b2 is taken" mkdir "$MNT/f1/branches/b2"
check "b2 ends within 30 s" wait_for 30 is_done f1 b2
check "f1 still running after b2" [ "$(api_state "$(vmm_sock f1)")" = Running ]
check "rmdir b2" rmdir "$MNT/f1/branches/b2"
check "unmount exits 0" unmount_forkfs
check "no VMM left running" [ -z "$(live_vmm_pids)" ]
[ "$_tap_failed" -eq 0 ] || dump_logs
done_testing
