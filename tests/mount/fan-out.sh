#!/bin/sh
# Fan-out: one ready branch seeds four sandboxes; every restored guest checks
# its memory against the branch point on every vCPU.
. "$top_srcdir/tests/mount/lib-mount.sh"

mount_forkfs
check "boot s1" start_sandbox s1 "$(boot_config 128 2)"
check "mkdir branches/b1" mkdir "$MNT/s1/branches/b1"
check "b1 becomes ready" wait_for 30 is_ready s1 b1
for i in 1 2 3 4; do
	check "restore r$i from s1/b1" start_sandbox r$i '{"restore":{"branch":"s1/b1"}}'
done
for i in 1 2 3 4; do
	check "r$i is running" [ "$(cat "$MNT/r$i/state")" = running ]
	check "r$i verifies its memory on both vCPUs" wait_for 30 has_verified r$i 2
done
check "five VMMs were running" [ "$(live_vmm_pids | wc -l)" -eq 5 ]
check "stop r1" bash -c "echo stop > '$MNT/r1/ctl'"
check "r1 is stopped" [ "$(cat "$MNT/r1/state")" = stopped ]
check "r1 can be removed" rmdir "$MNT/r1"
check "unmount exits 0" unmount_forkfs
check "no VMM left running" [ -z "$(live_vmm_pids)" ]
[ "$_tap_failed" -eq 0 ] || dump_logs
done_testing
