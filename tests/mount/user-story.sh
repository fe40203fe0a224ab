#!/bin/sh
# The user story end to end (SPEC §2): sandbox, start, live branch while the
# guest writes, status copying -> ready, du grows, cp during the copy equals
# the final image, cp -r export, restore into a new sandbox that verifies its
# memory on every vCPU, clean unmount.
. "$top_srcdir/tests/mount/lib-mount.sh"

# A capped copy (2 s for 256 MiB) is still running when status, du and cp
# look at it; cp then gets the ranges not yet copied on demand.
mount_forkfs copy_rate=128
S=$MNT/s1
check "mkdir sandbox" mkdir "$S"
check "state is created" [ "$(cat "$S/state")" = created ]
check "config.json written" bash -c "printf '%s\n' '$(boot_config 256 2)' > '$S/config.json'"
check "start" bash -c "echo start > '$S/ctl'"
check "state is running" [ "$(cat "$S/state")" = running ]
check "config.json read-only while running" expect_fail "busy" bash -c "echo '{}' > '$S/config.json'"

check "mkdir branches/b1" mkdir "$S/branches/b1"
first=$(status_state s1 b1)
du1=$(du -k "$S/branches/b1/memory.bin" | cut -f1)
check "memory.bin has full size from the start" \
	[ "$(stat -c %s "$S/branches/b1/memory.bin")" -eq $((256 * 1024 * 1024)) ]
check "cp memory.bin during the copy" cp "$S/branches/b1/memory.bin" "$TMPD/during.bin"
diag "status right after mkdir: $first; du then: ${du1} KiB"
check "status was copying right after mkdir" [ "$first" = copying ]
wait_for 30 is_ready s1 b1
du2=$(du -k "$S/branches/b1/memory.bin" | cut -f1)
check "status becomes ready" is_ready s1 b1
diag "du at ready: ${du2} KiB"
check "du of memory.bin grew during the copy" [ "$du2" -gt "$du1" ]
for k in mode progress bytes_total bytes_copied pages_faulted pause_us elapsed_ms; do
	check "status has $k" [ -n "$(status_key s1 b1 $k)" ]
done
check "progress 100 when ready" [ "$(status_key s1 b1 progress)" = 100 ]
check "bytes_total is the guest size" [ "$(status_key s1 b1 bytes_total)" = $((256 * 1024 * 1024)) ]
diag "pause_us $(status_key s1 b1 pause_us), pages_faulted $(status_key s1 b1 pages_faulted), mode $(status_key s1 b1 mode)"
check "cp during the copy equals the final memory.bin" cmp "$TMPD/during.bin" "$S/branches/b1/memory.bin"
check "memory.bin through the mount equals the store file" \
	cmp "$S/branches/b1/memory.bin" "$STORE/sandboxes/s1/branches/b1/memory.bin"
check "branch files are mode 0400" [ "$(stat -c %a "$S/branches/b1/memory.bin")" = 400 ]
check "cp -r the branch out" cp -r "$S/branches/b1" "$TMPD/export"
check "exported vmstate equals" cmp "$TMPD/export/vmstate" "$S/branches/b1/vmstate"
check "exported memory.bin equals" cmp "$TMPD/export/memory.bin" "$TMPD/during.bin"
check "exported status says ready" [ "$(head -n1 "$TMPD/export/status")" = ready ]

check "restore sandbox from the branch" start_sandbox r1 '{"restore":{"branch":"s1/b1"}}'
check "restored sandbox is running" [ "$(cat "$MNT/r1/state")" = running ]
check "restored guest verifies its memory on both vCPUs" wait_for 30 has_verified r1 2
check "no verify failure" bash -c "! grep -q 'verify FAIL\|verify fail' '$MNT/r1/log'"

pids=$(live_vmm_pids)
check "two VMMs were running" [ "$(echo $pids | wc -w)" -eq 2 ]
rd=$(run_dir)
check "unmount exits 0" unmount_forkfs
check "not mounted any more" bash -c "! grep -q ' $MNT fuse' /proc/self/mounts"
check "no VMM left running" [ -z "$(live_vmm_pids)" ]
check "run directory removed" bash -c "[ -n '$rd' ] && [ ! -e '$rd' ]"
[ "$_tap_failed" -eq 0 ] || dump_logs
done_testing
