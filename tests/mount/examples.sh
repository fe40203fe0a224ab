#!/bin/sh
# tests/mount/examples.sh — the scripts of contrib/examples/, run as a user
# would: periodic checkpoints with retention (a branch a running sandbox was
# started from is kept), fan-out from one branch with the memory report, and
# export to a tar.zst then import on a second mount with its own store (a
# second host); every restored guest verifies its memory.
. "$top_srcdir/tests/mount/lib-mount.sh"
require_prog zstd
EX=$top_srcdir/contrib/examples
ckpts() { ls "$MNT/s1/branches" | grep '^ckpt-' | sort; }

mount_forkfs
check "boot s1 (64 MiB, 1 vCPU)" start_sandbox s1 "$(boot_config 64 1)"

# ---- checkpoints.sh ----
check "checkpoints.sh: 4 checkpoints 0.3 s apart, keep 2" \
	sh -c "'$EX/checkpoints.sh' '$MNT' s1 0.3 2 4 >'$TMPD/ck1.out'"
sed 's/^/# /' "$TMPD/ck1.out"
check "... 4 were taken" [ "$(grep -c '^branched' "$TMPD/ck1.out")" -eq 4 ]
check "... the last 2 are left" sh -c "[ \"\$(ls '$MNT/s1/branches' | grep -c '^ckpt-')\" -eq 2 ] &&
	ls '$MNT/s1/branches' | grep -q -- '-4\$' && ls '$MNT/s1/branches' | grep -q -- '-3\$'"
newest=$(ckpts | tail -n 1)
check "every branch becomes ready" wait_for 60 is_ready s1 "$newest"
check "r1 starts from the newest checkpoint" \
	start_sandbox r1 "{\"restore\":{\"branch\":\"s1/$newest\"}}"
check "... and verifies" wait_for 30 has_verified r1 1
check "checkpoints.sh again: 2 more, keep 1" \
	sh -c "'$EX/checkpoints.sh' '$MNT' s1 0.3 1 2 >'$TMPD/ck2.out'"
sed 's/^/# /' "$TMPD/ck2.out"
check "... r1's source branch was kept (in use)" [ -d "$MNT/s1/branches/$newest" ]
check "... the script said why" grep -q "kept $newest: .*refused" "$TMPD/ck2.out"
check "... the others are pruned to the newest" [ "$(ckpts | wc -l)" -eq 2 ]

# ---- fan-out.sh ----
last=$(ckpts | tail -n 1)
wait_for 60 is_ready s1 "$last"
check "fan-out.sh: 3 children of s1/$last" \
	sh -c "FANOUT_KEEP=1 '$EX/fan-out.sh' '$MNT' 's1/$last' 3 c >'$TMPD/fan.out'"
sed 's/^/# /' "$TMPD/fan.out"
check "... the report has 3 running children" [ "$(grep -c '^c[0-9].* running ' "$TMPD/fan.out")" -eq 3 ]
for i in 1 2 3; do
	check "... c$i verifies" wait_for 30 has_verified c$i 1
done
check "... c1 shares template pages" [ "$(sed -n 's/^shared: //p' "$MNT/c1/memory")" -gt 0 ]
check "fan-out.sh without FANOUT_KEEP stops and removes its children" \
	sh -c "'$EX/fan-out.sh' '$MNT' 's1/$last' 2 d >/dev/null && [ ! -e '$MNT/d1' ] && [ ! -e '$MNT/d2' ]"

# ---- export.sh, then import.sh on a second "host" ----
check "export.sh s1/$last" "$EX/export.sh" "$MNT" "s1/$last" "$TMPD/b.tar.zst"
check "... a zstd tar of vmstate and memory.bin" \
	sh -c "tar --zstd -tf '$TMPD/b.tar.zst' | sort | tr '\n' ' ' | grep -q 'branch/memory.bin branch/vmstate'"
for s in r1 c1 c2 c3; do echo stop >"$MNT/$s/ctl"; done
echo stop >"$MNT/s1/ctl"
check "unmount the first host" unmount_forkfs
STORE=$TMPD/store2
mkdir -m 0700 "$STORE"
mount_forkfs "allow_path=$TMPD"	# the unpacked branch files are readable by root only
check "import.sh on a second mount with its own store" \
	"$EX/import.sh" "$MNT" imported "$TMPD/b.tar.zst" "$TMPD/unpacked"
check "... the imported sandbox runs" [ "$(cat "$MNT/imported/state")" = running ]
check "... and its guest verifies" wait_for 30 has_verified imported 1
check "no verify failure anywhere" sh -c "! grep -q 'verify FAIL' '$MNT/imported/log' '$TMPD'/store/sandboxes/*/log"
echo stop >"$MNT/imported/ctl"
check "unmount exits 0" unmount_forkfs
check "no VMM left running" [ -z "$(live_vmm_pids)" ]
[ "$_tap_failed" -eq 0 ] || dump_logs
done_testing
