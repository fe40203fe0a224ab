#!/bin/sh
# Fan-out: one ready branch seeds four sandboxes; every restored guest checks
# its memory against the branch point on every vCPU. A branch still copying
# seeds one too: start completes its image first.
. "$top_srcdir/tests/mount/lib-mount.sh"

# Capped copies (4 s for 128 MiB), so that b2 is still copying at its restore.
mount_forkfs copy_rate=32
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

check "mkdir branches/b2" mkdir "$MNT/s1/branches/b2"
check "restore r5 from s1/b2 while b2 is copying" bash -c "
	[ \"\$(head -n1 '$MNT/s1/branches/b2/status')\" = copying ] &&
	mkdir '$MNT/r5' && echo '{\"restore\":{\"branch\":\"s1/b2\"}}' > '$MNT/r5/config.json' &&
	echo start > '$MNT/r5/ctl'"
check "the log says b2's image was completed first" log_has r5 "b2 is still copying"
check "r5 is running" [ "$(cat "$MNT/r5/state")" = running ]
check "r5 verifies its memory on both vCPUs" wait_for 30 has_verified r5 2
check "no verify failure in r5" bash -c "! grep -q 'verify FAIL' '$MNT/r5/log'"
check "b2 becomes ready" wait_for 30 is_ready s1 b2
check "stop r1" bash -c "echo stop > '$MNT/r1/ctl'"
check "r1 is stopped" [ "$(cat "$MNT/r1/state")" = stopped ]
check "r1 can be removed" rmdir "$MNT/r1"
check "unmount exits 0" unmount_forkfs
check "no VMM left running" [ -z "$(live_vmm_pids)" ]
[ "$_tap_failed" -eq 0 ] || dump_logs
done_testing
