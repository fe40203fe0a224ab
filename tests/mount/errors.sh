#!/bin/sh
# Errors (SPEC §3, §8): bad names, bad and oversized config.json, writes to
# read-only files, ctl nonsense, EEXIST, concurrent mkdir of one tag (exactly
# one wins), mkdir branch on a stopped sandbox, ENOTEMPTY; every failure
# leaves a reason in the log and no directory behind.
. "$top_srcdir/tests/mount/lib-mount.sh"

mount_forkfs
S=$MNT/e1
L=$S/log
logs() { grep -c "$1" "$L"; }
has_log() { grep -q "$1" "$L" || { diag "no '$1' in $L"; return 1; }; }

check "mkdir with a space is EINVAL" expect_fail "Invalid argument" mkdir "$MNT/bad name"
check "mkdir of a dot name is EINVAL" expect_fail "Invalid argument" mkdir "$MNT/.hidden"
long=$(printf 'a%.0s' $(seq 65))
check "mkdir of a 65-byte name is EINVAL" expect_fail "Invalid argument" mkdir "$MNT/$long"
check "the 64-byte name is fine" mkdir "$MNT/$(printf 'b%.0s' $(seq 64))"
check "no directory left by the bad names" [ "$(ls "$MNT" | wc -l)" -eq 1 ]
check "no store directory left by the bad names" [ "$(ls "$STORE/sandboxes" | wc -l)" -eq 1 ]
check "creating a file in the root is refused" expect_fail "not permitted" touch "$MNT/file"
check "a symlink is refused with EPERM" expect_fail "not permitted" ln -s x "$MNT/link"

check "mkdir sandbox" mkdir "$S"
check "second mkdir of the sandbox is EEXIST" expect_fail "File exists" mkdir "$S"
check "start without config.json is EINVAL" expect_fail "Invalid argument" bash -c "echo start > '$S/ctl'"
check "... and says why in log" has_log "config.json is empty"

check "config.json syntax error is EINVAL" expect_fail "Invalid argument" bash -c "printf '{bad' > '$S/config.json'"
check "... logged" has_log "config.json rejected: not JSON"
check "JSON of no known form is EINVAL" expect_fail "Invalid argument" bash -c "echo '{\"foo\":1}' > '$S/config.json'"
check "... logged" has_log 'unknown key "foo"'
check "a JSON array is EINVAL" expect_fail "Invalid argument" bash -c "echo '[1]' > '$S/config.json'"
check "restore with a bad branch name is EINVAL" expect_fail "Invalid argument" \
	bash -c "echo '{\"restore\":{\"branch\":\"../x\"}}' > '$S/config.json'"
check "attach with a relative socket is EINVAL" expect_fail "Invalid argument" \
	bash -c "echo '{\"attach\":{\"api_socket\":\"x.sock\"}}' > '$S/config.json'"
{ printf '{"boot-source":{"kernel_image_path":"'; head -c 1100000 /dev/zero | tr '\0' a; printf '"}}'; } >"$TMPD/big.json"
check "oversized config.json is EFBIG" expect_fail "File too large" cp "$TMPD/big.json" "$S/config.json"
check "... logged" has_log "config.json: larger than"
check "config.json still empty after the failures" [ ! -s "$S/config.json" ]

check "writing state is refused" expect_fail "Permission denied" bash -c "echo x > '$S/state'"
check "writing log is refused" expect_fail "Permission denied" bash -c "echo x > '$L'"
check "reading ctl is refused" expect_fail "Permission denied" cat "$S/ctl"
check "removing a sandbox file is refused" expect_fail "not permitted" rm -f "$S/state"
check "ctl nonsense is EINVAL" expect_fail "Invalid argument" bash -c "echo frobnicate > '$S/ctl'"
check "... logged" has_log 'unknown command "frobnicate"'
check "two commands in one write are EINVAL" expect_fail "Invalid argument" bash -c "printf 'start\nstop\n' > '$S/ctl'"
check "pause before start is EINVAL" expect_fail "Invalid argument" bash -c "echo pause > '$S/ctl'"
check "... logged" has_log "pause refused: the sandbox is created"

check "mkdir branch on a sandbox that is not running is EINVAL" \
	expect_fail "Invalid argument" mkdir "$S/branches/b0"
check "... logged" has_log "mkdir branches/b0 refused: the sandbox is created"
check "... no directory left" [ -z "$(ls "$S/branches")" ]
check "... no store directory left" [ -z "$(ls "$STORE/sandboxes/e1/branches")" ]

check "valid config.json" bash -c "printf '%s\n' '$(boot_config 128 1)' > '$S/config.json'"
check "start" bash -c "echo start > '$S/ctl'"
check "start twice is EINVAL" expect_fail "Invalid argument" bash -c "echo start > '$S/ctl'"
check "mkdir branch with a bad tag is EINVAL" expect_fail "Invalid argument" mkdir "$S/branches/-x"
check "mkdir branches/b1" mkdir "$S/branches/b1"
check "second mkdir of b1 is EEXIST" expect_fail "File exists" mkdir "$S/branches/b1"
check "writing memory.bin is refused" expect_fail "Permission denied" \
	bash -c "echo x > '$S/branches/b1/memory.bin'"
check "writing status is refused" expect_fail "Permission denied" \
	bash -c "echo x > '$S/branches/b1/status'"
check "b1 becomes ready" wait_for 30 is_ready e1 b1

# Concurrent mkdir of one tag: exactly one wins, the other gets EEXIST.
racers=
for i in 1 2 3; do
	(mkdir "$S/branches/race" 2>"$TMPD/race.$i"; echo $? >"$TMPD/race.$i.rc") &
	racers="$racers $!"
done
wait $racers
wins=$(cat "$TMPD"/race.*.rc | grep -c '^0$')
check "concurrent mkdir of one tag: exactly one wins" [ "$wins" -eq 1 ]
check "the others got EEXIST" [ "$(cat "$TMPD"/race.? | grep -c 'File exists')" -eq 2 ]
wait_for 30 is_done e1 race

check "rmdir of a sandbox with branches is ENOTEMPTY" expect_fail "not empty" rmdir "$S"
check "... logged" has_log "rmdir refused: the sandbox still has branches"
check "rmdir of a missing branch is ENOENT" expect_fail "No such file" rmdir "$S/branches/nope"
check "rmdir branches/b1" rmdir "$S/branches/b1"
check "rmdir branches/race" rmdir "$S/branches/race"
check "store branch directories gone (a hidden layer too, once the compactor ran)" \
	wait_for 30 sh -c "[ -z \"\$(ls -A '$STORE/sandboxes/e1/branches')\" ]"
check "rmdir of the running sandbox stops and removes it" rmdir "$S"
check "sandbox gone from the mount" [ ! -e "$S" ]
check "sandbox gone from the store" [ ! -e "$STORE/sandboxes/e1" ]
check "its VMM is gone" [ -z "$(live_vmm_pids)" ]
check "unmount exits 0" unmount_forkfs
[ "$_tap_failed" -eq 0 ] || dump_logs
done_testing
