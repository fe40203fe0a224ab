#!/bin/sh
# Reliability (SPEC §4, §8): a VMM that answers an error, or never answers,
# between pause and resume; a VMM that is stopped (SIGSTOP) altogether; live
# mode forced on a VMM that cannot. Every time: mkdir fails with the fitting
# errno (EIO, ETIMEDOUT, ENOTSUP) within a bound, the log says why, no
# directory is left, and the VM runs afterwards (never left paused, never left
# write-protected: a later branch of the same VM restores with verify ok).
# The faults are injected by tests/mount/fault-proxy.pl, a proxy in front of
# a real minivm's API socket that forkfs attaches to.
. "$top_srcdir/tests/mount/lib-mount.sh"
require_prog curl
require_prog perl

ESOCK=$TMPD/e.sock
check "boot an external minivm (128 MiB, 2 vCPUs)" boot_external "$ESOCK" "$TMPD/e.log" 128 2 ||
	bail "cannot boot the external minivm"
E_PID=$EXT_PID
proxy() {	# proxy NAME MODE MATCH [MODE MATCH...]: a fault proxy on $TMPD/NAME.sock
	local name=$1; shift
	perl "$top_srcdir/tests/mount/fault-proxy.pl" "$TMPD/$name.sock" "$ESOCK" "$@" \
		2>>"$TMPD/proxy.log" &
	on_exit "kill $! \$(cat /proc/$!/task/*/children 2>/dev/null)"
	wait_for 10 test -S "$TMPD/$name.sock"
}
# The match is the branch's vmstate path (json-c escapes '/') in the body of
# the snapshot request inside the pause window (forkfs's capability probe,
# before any pause, uses paths under /dev/null/ and goes through).
check "start the error proxy" proxy err error 'branches\/b1\/vmstate'
check "start the hang proxy" proxy hang hang 'branches\/b2\/vmstate'
# A hung snapshot call, then a VMM that refuses the first six resumes: the
# two in the pause window, then four background tries.
check "start the slow-resume proxy" proxy slow hang 'branches\/b4\/vmstate' error6 '"state":"Resumed"'
# elapsed_s COMMAND...: run it, print nothing, set ELAPSED (seconds) and OUT.
timed() { local t0; t0=$(date +%s); OUT=$("$@" 2>&1); RC=$?; ELAPSED=$(($(date +%s) - t0)); }
attach() { start_sandbox "$1" "{\"attach\":{\"api_socket\":\"$2\"}}"; }

mount_forkfs

# -- an error answer inside the pause window
check "attach x1 through the error proxy" attach x1 "$TMPD/err.sock"
timed mkdir "$MNT/x1/branches/b1"
diag "mkdir b1 ($ELAPSED s): $OUT"
check "mkdir b1 fails with EIO" sh -c "[ $RC -ne 0 ] && echo '$OUT' | grep -q 'Input/output error'"
check "the log gives the VMM's reason" log_has x1 "mkdir branches/b1 failed: .*injected error"
check "no directory left" no_dir_left x1 b1
check "the proxy did inject it" grep -q "error: PUT /snapshot/create" "$TMPD/proxy.log"
check "the VM runs again (resumed)" [ "$(api_state "$ESOCK")" = Running ]
check "x1 is still running" [ "$(cat "$MNT/x1/state")" = running ]
check "stop x1 (detach)" sh -c "echo stop > '$MNT/x1/ctl'"

# -- no answer inside the pause window; another sandbox is not held up by it
check "boot o1, another sandbox (64 MiB, 1 vCPU)" start_sandbox o1 "$(boot_config 64 1)"
check "attach x2 through the hang proxy" attach x2 "$TMPD/hang.sock"
t0=$(date +%s)
mkdir "$MNT/x2/branches/b2" >"$TMPD/b2.out" 2>&1 &
b2_pid=$!
sleep 1
ms() { local t0 t1; t0=$(date +%s%N); "$@" || return 1; t1=$(date +%s%N); echo $(( (t1 - t0) / 1000000 )); }
o1_ms=$(ms mkdir "$MNT/o1/branches/q1")
o1_state=$(cat "$MNT/o1/state")
o1_ctl_ms=$(ms sh -c "echo pause > '$MNT/o1/ctl' && echo resume > '$MNT/o1/ctl'")
diag "while x2's mkdir hangs: o1's mkdir ${o1_ms} ms, pause+resume ${o1_ctl_ms} ms, state $o1_state"
check "meanwhile, o1's mkdir takes under 2 s" [ -n "$o1_ms" ] && [ "$o1_ms" -lt 2000 ]
check "... and its pause and resume too" [ -n "$o1_ctl_ms" ] && [ "$o1_ctl_ms" -lt 2000 ]
check "... and its state answers" [ "$o1_state" = running ]
check "x2's mkdir was still hanging then" kill -0 "$b2_pid"
wait "$b2_pid"
RC=$? OUT=$(cat "$TMPD/b2.out") ELAPSED=$(($(date +%s) - t0))
diag "mkdir b2 ($ELAPSED s): $OUT"
check "mkdir b2 fails with ETIMEDOUT" sh -c "[ $RC -ne 0 ] && echo '$OUT' | grep -q 'timed out'"
check "... within 20 s" [ "$ELAPSED" -le 20 ]
check "the log says why" log_has x2 "mkdir branches/b2 failed: PUT /snapshot/create VmstateOnly: timed out"
check "the proxy did hold it" grep -q "hang: PUT /snapshot/create" "$TMPD/proxy.log"
check "no directory left" no_dir_left x2 b2
check "the VM runs again (resumed)" [ "$(api_state "$ESOCK")" = Running ]
check "stop x2 (detach)" sh -c "echo stop > '$MNT/x2/ctl'"

# -- a hung snapshot call followed by a slow resume: forkfs keeps resuming
check "attach x4 through the slow-resume proxy" attach x4 "$TMPD/slow.sock"
timed mkdir "$MNT/x4/branches/b4"
diag "mkdir b4 ($ELAPSED s): $OUT"
check "mkdir b4 fails with ETIMEDOUT" sh -c "[ $RC -ne 0 ] && echo '$OUT' | grep -q 'timed out'"
check "... within 20 s" [ "$ELAPSED" -le 20 ]
check "state says the resume is pending" [ "$(cat "$MNT/x4/state")" = "paused (resume pending)" ]
check "the log says forkfs keeps trying" log_has x4 "mkdir branches/b4 failed: the VM could not be resumed (forkfs keeps trying"
check "a branch meanwhile is refused with EBUSY" sh -c "! mkdir '$MNT/x4/branches/b5' 2>'$TMPD/b5.err' && grep -q 'busy' '$TMPD/b5.err'"
vm_running() { [ "$(api_state "$ESOCK")" = Running ]; }
x4_running() { [ "$(cat "$MNT/x4/state")" = running ]; }
check "the VM ends up running" wait_for 30 vm_running
check "... and state says so" wait_for 10 x4_running
check "each failed try was logged" grep -q "resume pending: try 1 failed" "$FLOG"
check "the proxy refused six resumes" [ "$(grep -c 'error: PATCH /vm' "$TMPD/proxy.log")" -ge 6 ]
check "stop x4 (detach)" sh -c "echo stop > '$MNT/x4/ctl'"

# -- the VM was neither left paused nor write-protected: a real branch works
check "attach x3 directly" attach x3 "$ESOCK"
check "branch x3/b3" mkdir "$MNT/x3/branches/b3"
check "b3 becomes ready" wait_for 30 is_ready x3 b3
check "b3 restores and verifies on both vCPUs" restore_verifies r3 x3 b3 2
# Detach and attach again while b3 exists: forkfs must have let go of the
# VM's write-protect registration at "stop", or the VMM refuses a new one.
check "stop x3 (detach) while b3 exists" sh -c "echo stop > '$MNT/x3/ctl'"
check "start x3 again (attach again)" sh -c "echo start > '$MNT/x3/ctl'"
check "branch x3/b3b after the re-attach" mkdir "$MNT/x3/branches/b3b"
check "b3b becomes ready" wait_for 30 is_ready x3 b3b

# -- a VMM that does not answer at all (SIGSTOP)
check "boot s1 (128 MiB, 1 vCPU)" start_sandbox s1 "$(boot_config 128 1)"
S1_PID=$(vmm_pid s1)
kill -STOP "$S1_PID"
on_exit "kill -CONT $S1_PID"
timed mkdir "$MNT/s1/branches/b4"
kill -CONT "$S1_PID"
diag "mkdir b4 ($ELAPSED s): $OUT"
check "mkdir b4 of a stopped VMM fails with ETIMEDOUT" sh -c "[ $RC -ne 0 ] && echo '$OUT' | grep -q 'timed out'"
check "... within 20 s" [ "$ELAPSED" -le 20 ]
check "the log says why" log_has s1 "mkdir branches/b4 failed"
check "no directory left" no_dir_left s1 b4
check "after SIGCONT the VM is running, not paused" \
	wait_for 5 sh -c "[ \"\$(curl -s --max-time 2 --unix-socket '$(vmm_sock s1)' http://localhost/ | sed -n 's/.*\"state\":\"\([A-Za-z ]*\)\".*/\1/p')\" = Running ]"
check "s1 branches again" mkdir "$MNT/s1/branches/b5"
check "b5 becomes ready" wait_for 30 is_ready s1 b5
check "unmount exits 0" unmount_forkfs

# -- live mode forced on a VMM without the extensions
SSOCK=$TMPD/stock.sock
check "boot an external minivm --stock" boot_external "$SSOCK" "$TMPD/stock.log" 128 1 --stock
mount_forkfs mode=live
check "attach y1 to the stock VMM (mode=live)" attach y1 "$SSOCK"
timed mkdir "$MNT/y1/branches/b6"
diag "mkdir b6 ($ELAPSED s): $OUT"
check "mkdir b6 fails with ENOTSUP" sh -c "[ $RC -ne 0 ] && echo '$OUT' | grep -q 'not supported'"
check "the log says why" log_has y1 "mkdir branches/b6 failed: live mode forced"
check "no directory left" no_dir_left y1 b6
check "the stock VM still runs" [ "$(api_state "$SSOCK")" = Running ]
check "unmount exits 0" unmount_forkfs
check "no VMM left running" [ -z "$(live_vmm_pids)" ]
check "the external VMM is still Running" [ "$(api_state "$ESOCK")" = Running ]
[ "$_tap_failed" -eq 0 ] || { dump_logs; sed 's/^/# /' "$TMPD/proxy.log"; }
done_testing
