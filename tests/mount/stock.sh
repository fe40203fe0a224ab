#!/bin/bash
# tests/mount/stock.sh — forkfs against a VMM without the forkd extensions
# (forkfs-minivm --stock answers exactly as stock Firecracker 1.12 does):
# branches are taken in full mode (pause, Full snapshot, resume); a restore
# from a branch maps the branch's template privately (no "shared", which
# stock rejects, is needed), and one from files named in config.json maps the
# image file privately. Every branch is restored and must verify on every vCPU.
. "$top_srcdir/tests/mount/lib-mount.sh"

mount_forkfs "vmm_args=--stock"

check "boot s1 on a stock VMM (128 MiB, 2 vCPUs)" start_sandbox s1 "$(boot_config 128 2)"
sleep 0.3
check "mkdir branches/b1" mkdir "$MNT/s1/branches/b1"
check "b1 is ready when mkdir returns (full mode)" is_ready s1 b1
check "b1's mode is full" [ "$(status_key s1 b1 mode)" = full ]
check "the VM runs again" [ "$(cat "$MNT/s1/state")" = running ]
sum_before=$(sha256sum <"$STORE/sandboxes/s1/branches/b1/memory.bin")
check "b1 restores and verifies on both vCPUs" restore_verifies r1 s1 b1 2
pid=$(vmm_pid r1)
check "the restored VMM maps the branch's template privately, not shared" \
	sh -c "grep 'memfd:forkfs-template' /proc/$pid/maps | grep -q ' r..p ' &&
	       ! grep 'memfd:forkfs-template' /proc/$pid/maps | grep -q ' r..s '"
check "the log says so" log_has r1 "mapped privately from the branch's template"
check "a second restore of b1 verifies too (fan-out)" restore_verifies r2 s1 b1 2
B=$STORE/sandboxes/s1/branches/b1
check "a restore from b1's files named in config.json verifies" sh -c "
	mkdir '$MNT/r3' && printf '%s\n' '{\"restore\":{\"snapshot_path\":\"$B/vmstate\",\"mem_file_path\":\"$B/memory.bin\"}}' >'$MNT/r3/config.json' &&
	echo start >'$MNT/r3/ctl'" 
check "... its guest verifies" wait_for 30 has_verified r3 2
pid=$(vmm_pid r3)
# (in its jail, the image file is bound as /memory)
check "... its VMM maps the image file privately, not shared" \
	sh -c "grep -E '(branches/b1/memory.bin| /memory)\$' /proc/$pid/maps | grep -q ' r..p ' &&
	       ! grep -E '(branches/b1/memory.bin| /memory)\$' /proc/$pid/maps | grep -q ' r..s '"
check "... and the log says why" log_has r3 "lacks the forkd extensions"
check "the image in the store is unchanged by the running restored guests" \
	[ "$(sha256sum <"$STORE/sandboxes/s1/branches/b1/memory.bin")" = "$sum_before" ]
check "stop the restored sandboxes" sh -c 'echo stop > "$0/r1/ctl" && echo stop > "$0/r2/ctl" && echo stop > "$0/r3/ctl"' "$MNT"
check "unmount exits 0" unmount_forkfs
check "no VMM left running" [ -z "$(live_vmm_pids)" ]
[ "$_tap_failed" -eq 0 ] || dump_logs
done_testing
