#!/bin/sh
# Attach mode: forkfs drives a minivm started outside it (booted with curl),
# branches it, and "stop" detaches, leaving the VM running. Detaching lets go
# of the write-protect uffd: right after "stop" returns, or, when a copy is
# still running, by the time it says ready, the VM can be attached and
# branched again (UFFDIO_REGISTER fails with EBUSY while the old uffd lives).
. "$top_srcdir/tests/mount/lib-mount.sh"
require_prog curl

SOCK=$TMPD/ext.sock
"$MINIVM" --api-sock "$SOCK" >"$TMPD/ext.log" 2>&1 &
EXT=$!
on_exit "kill -9 $EXT"
wait_for 10 test -S "$SOCK" || bail "external minivm did not create its socket"
api() { curl -sS --max-time 5 --unix-socket "$SOCK" -H 'Content-Type: application/json' "$@"; }
api -X PUT http://localhost/boot-source -d "{\"kernel_image_path\":\"$GUEST_IMG\"}" &&
	api -X PUT http://localhost/machine-config -d '{"vcpu_count":1,"mem_size_mib":128}' &&
	api -X PUT http://localhost/actions -d '{"action_type":"InstanceStart"}' ||
	bail "cannot boot the external minivm"
vm_state() { api http://localhost/ | sed -n 's/.*"state":"\([A-Za-z ]*\)".*/\1/p'; }

# Capped copies (4 s for 128 MiB) are still running at "stop";
# incremental=off, so that later branches copy all of it too.
mount_forkfs copy_rate=32,incremental=off
A=$MNT/a1
check "mkdir + attach config" bash -c "mkdir '$A' && echo '{\"attach\":{\"api_socket\":\"$SOCK\"}}' > '$A/config.json'"
check "start attaches" bash -c "echo start > '$A/ctl'"
check "state is running" [ "$(cat "$A/state")" = running ]
check "no VMM launched by forkfs" [ -z "$(vmm_pids)" ]
check "mkdir branches/b1" mkdir "$A/branches/b1"
check "b1 becomes ready" wait_for 30 is_ready a1 b1
check "memory.bin is the guest size" [ "$(stat -c %s "$A/branches/b1/memory.bin")" -eq $((128 << 20)) ]
check "pause" bash -c "echo pause > '$A/ctl'"
check "the VM is paused" [ "$(vm_state)" = Paused ]
check "resume" bash -c "echo resume > '$A/ctl'"
check "stop detaches" bash -c "echo stop > '$A/ctl'"
check "state is stopped" [ "$(cat "$A/state")" = stopped ]
check "log says detached" grep -q "detached; the VM keeps running" "$A/log"
check "the external VMM still runs" kill -0 "$EXT"
check "its API still answers Running" [ "$(vm_state)" = Running ]
check "start again attaches again" bash -c "echo start > '$A/ctl'"
check "branch b2 right after the re-attach" mkdir "$A/branches/b2"
check "b2 becomes ready" wait_for 30 is_ready a1 b2

check "mkdir branches/b3" mkdir "$A/branches/b3"
check "stop while b3 is copying" bash -c "[ \"\$(head -n1 '$A/branches/b3/status')\" = copying ] &&
	echo stop > '$A/ctl'"
check "b3 still completes" wait_for 30 is_ready a1 b3
check "start again once b3 is ready" bash -c "echo start > '$A/ctl'"
check "branch b4 at once" mkdir "$A/branches/b4"
check "b4 becomes ready" wait_for 30 is_ready a1 b4
check "mkdir branches/b5" mkdir "$A/branches/b5"
check "stop while b5 is copying" bash -c "[ \"\$(head -n1 '$A/branches/b5/status')\" = copying ] &&
	echo stop > '$A/ctl'"
check "rmdir b5 during its detached copy returns" timeout 20 rmdir "$A/branches/b5"
check "b5 is gone" [ ! -e "$A/branches/b5" ]
check "start again after b5's cancel" bash -c "echo start > '$A/ctl'"
check "branch b6 at once" mkdir "$A/branches/b6"
check "b6 becomes ready" wait_for 30 is_ready a1 b6
check "restore r3 from b3, copied while detached" start_sandbox r3 '{"restore":{"branch":"a1/b3"}}'
check "r3's guest verifies its memory" wait_for 30 has_verified r3 1
check "no verify failure" bash -c "! grep -q 'verify FAIL' '$MNT/r3/log'"
check "unmount exits 0" unmount_forkfs
check "unmount left the attached VM running" [ "$(vm_state)" = Running ]
[ "$_tap_failed" -eq 0 ] || dump_logs
done_testing
