#!/bin/sh
# Reliability (SPEC §4, §8): kill -9 of the VMM during a live copy.
# With minivm's default memfd memory forkfs still holds the guest memory
# (its own mapping of the memfd), so the branch completes and restores with
# "verify ok" on every vCPU. With --anon memory (process_vm_readv) nothing is
# left to read: the branch fails cleanly with a reason. Either way the copy
# never hangs and the sandbox becomes failed with a log line.
# The --anon VMM is launched by forkfs through a wrapper given as -o vmm=,
# since forkfs passes only --api-sock to the binary it launches.
. "$top_srcdir/tests/mount/lib-mount.sh"

# kill_during_copy SANDBOX TAG: mkdir the branch, then kill -9 its VMM at
# after one read of status; fails if the copy had already finished by then.
kill_during_copy() {
	local pid st
	pid=$(vmm_pid "$1")
	[ -n "$pid" ] || { diag "no VMM pid for $1"; return 1; }
	mkdir "$MNT/$1/branches/$2" || return 1
	st=$(cat "$MNT/$1/branches/$2/status")
	kill -9 "$pid"
	diag "$1/$2 just before the kill: $(echo "$st" | head -n1)," \
		"$(echo "$st" | sed -n 's/^bytes_copied: //p') bytes copied"
	[ "$(echo "$st" | head -n1)" = copying ]
}

# ---- memfd memory: the branch completes ----
mount_forkfs copy_rate=64
check "boot m1 (256 MiB, 2 vCPUs)" start_sandbox m1 "$(boot_config 256 2)"
sleep 0.5	# let the guest stamp pages on both vCPUs
pid=$(vmm_pid m1)
check "kill -9 of the VMM during the copy of b1" kill_during_copy m1 b1
check "the VMM is gone" wait_for 5 is_gone "$pid"
check "b1 finishes within 30 s" wait_for 30 is_done m1 b1
check "b1 is ready (forkfs still held the memfd)" is_ready m1 b1
check "the log says b1 is ready" log_has m1 "branch b1 ready:"
diag "b1: $(status_key m1 b1 error) pages_faulted $(status_key m1 b1 pages_faulted)"
check "sandbox m1 becomes failed" wait_for 5 sh -c "[ \"\$(cat '$MNT/m1/state')\" = failed ]"
check "the log says the VMM died of SIGKILL" log_has m1 "VMM pid $pid exited on signal 9"
check "a branch of the dead sandbox is refused" expect_fail "Invalid argument" mkdir "$MNT/m1/branches/b2"
check "... and leaves no directory" no_dir_left m1 b2
check "b1 memory.bin has the guest size" \
	[ "$(stat -c %s "$STORE/sandboxes/m1/branches/b1/memory.bin")" -eq $((256 << 20)) ]
check "b1 restores and verifies on both vCPUs" restore_verifies r1 m1 b1 2
check "unmount exits 0" unmount_forkfs
check "no VMM left running" [ -z "$(live_vmm_pids)" ]

# ---- anonymous memory: the branch fails cleanly ----
mount_forkfs "copy_rate=64,vmm_args=--anon"
check "boot a1 with --anon memory (128 MiB, 2 vCPUs)" start_sandbox a1 "$(boot_config 128 2)"
pid=$(vmm_pid a1)
check "a1's VMM really uses anonymous memory" \
	sh -c "! grep -q 'memfd:' /proc/$pid/maps"
sleep 0.5
t0=$(date +%s)
check "kill -9 of the --anon VMM during the copy of b1" kill_during_copy a1 b1
check "b1 finishes within 30 s (no hang)" wait_for 30 is_done a1 b1
diag "b1 finished after $(($(date +%s) - t0)) s: $(status_state a1 b1): $(status_key a1 b1 error)"
check "b1 is failed" [ "$(status_state a1 b1)" = failed ]
check "b1's error says the VMM's memory is gone" \
	sh -c "grep -q 'error: .*VMM exited' '$MNT/a1/branches/b1/status'"
check "the log says why b1 failed" log_has a1 "branch b1 failed: the VMM exited"
check "reading b1's memory.bin fails with EIO" expect_fail "Input/output error" \
	cat "$MNT/a1/branches/b1/memory.bin"
check "sandbox a1 becomes failed" wait_for 5 sh -c "[ \"\$(cat '$MNT/a1/state')\" = failed ]"
check "the log says the VMM died of SIGKILL" log_has a1 "VMM pid $pid exited on signal 9"
check "rmdir b1" rmdir "$MNT/a1/branches/b1"
check "b1 is gone from the mount and the store" no_dir_left a1 b1
check "rmdir a1" rmdir "$MNT/a1"
check "unmount exits 0" unmount_forkfs
check "no VMM left running" [ -z "$(live_vmm_pids)" ]
[ "$_tap_failed" -eq 0 ] || dump_logs
done_testing
