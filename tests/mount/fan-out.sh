#!/bin/sh
# Fan-out: one ready branch seeds four sandboxes; every restored guest checks
# its memory against the branch point on every vCPU. The children map one
# template of the branch privately (one memfd inode, rw-p in every VMM's
# maps); their writes never reach it (a child started after they wrote still
# verifies); a child is branched live while it writes and a sandbox restored
# from that branch verifies; rmdir of the branch is EBUSY while children run.
# A branch still copying seeds one too: start completes its image first.
# Then the same with an --anon parent whose memory has two regions.
. "$top_srcdir/tests/mount/lib-mount.sh"

# template_maps SANDBOX: "PERMS INODE" of the template mappings of its VMM.
template_maps() {
	grep 'memfd:forkfs-template' "/proc/$(vmm_pid "$1")/maps" 2>/dev/null |
		awk '{ print $2, $5 }' | sort -u
}
# maps_template_privately SANDBOX...: each maps the template, privately, and
# all of them the same one.
maps_template_privately() {
	local first="" m
	for s in "$@"; do
		m=$(template_maps "$s")
		[ -n "$m" ] || { diag "$s: no template mapping"; return 1; }
		case "$m" in *-p\ *) ;; *) diag "$s: not private: $m"; return 1 ;; esac
		[ "$(echo "$m" | awk '{print $2}' | sort -u | wc -l)" -eq 1 ] || return 1
		[ -z "$first" ] && first=$m
		[ "$m" = "$first" ] || { diag "$s maps $m, not $first"; return 1; }
	done
}
# mem_key SANDBOX KEY: a value of the sandbox's memory file.
mem_key() { sed -n "s/^$2: //p" "$MNT/$1/memory"; }
# memory_adds_up SANDBOX: three numbers, private + shared = total > 0.
memory_adds_up() {
	local m t p s
	m=$(cat "$MNT/$1/memory")	# one read: the numbers move while the guest runs
	t=$(echo "$m" | sed -n 's/^total: //p') p=$(echo "$m" | sed -n 's/^private: //p')
	s=$(echo "$m" | sed -n 's/^shared: //p')
	diag "$1 memory: total $t private $p shared $s"
	[ -n "$t" ] && [ "$t" -gt 0 ] && [ $((p + s)) -eq "$t" ]
}
# start_and_verify NAME CONFIG VCPUS
start_and_verify() { start_sandbox "$1" "$2" && wait_for 30 has_verified "$1" "$3"; }
# live_child_branch PARENT CHILD TAG NEW VCPUS: branch the running child
# live, restore NEW from that branch, the guest verifies.
live_child_branch() {
	mkdir "$MNT/$2/branches/$3" && wait_for 60 is_ready "$2" "$3" &&
		start_and_verify "$4" "{\"restore\":{\"branch\":\"$2/$3\"}}" "$5" &&
		! grep -q 'verify FAIL' "$MNT/$4/log"
}

# Capped copies (4 s for 128 MiB), so that b2 is still copying at its restore
# (incremental=off: b2 copies all of it too).
mount_forkfs copy_rate=32,incremental=off
check "boot s1" start_sandbox s1 "$(boot_config 128 2)"
check "mkdir branches/b1" mkdir "$MNT/s1/branches/b1"
check "b1 becomes ready" wait_for 60 is_ready s1 b1
for i in 1 2 3 4; do
	check "restore r$i from s1/b1" start_sandbox r$i '{"restore":{"branch":"s1/b1"}}'
done
for i in 1 2 3 4; do
	check "r$i is running" [ "$(cat "$MNT/r$i/state")" = running ]
	check "r$i verifies its memory on both vCPUs" wait_for 30 has_verified r$i 2
done
check "five VMMs were running" [ "$(live_vmm_pids | wc -l)" -eq 5 ]
check "r1..r4 map one template of b1 privately" maps_template_privately r1 r2 r3 r4
check "the log says r1 maps the template" log_has r1 "mapped privately from the branch's template"
check "r1's memory file adds up" memory_adds_up r1
check "... and r1 still shares template pages" [ "$(mem_key r1 shared)" -gt 0 ]
check "s1 (booted) shares nothing" [ "$(mem_key s1 shared)" -eq 0 ]
check "rmdir of b1 while its children run: EBUSY" \
	bash -c "rmdir '$MNT/s1/branches/b1' 2>&1 | grep -q 'Device or resource busy'"
check "... with the reason in s1's log" log_has s1 "rmdir branches/b1 refused"
check "... and b1 is still there" is_ready s1 b1
check "a child (r2) branched live while it writes restores and verifies" \
	live_child_branch s1 r2 c1 rc1 2
check "the children's writes never reached the template: r6 from b1 verifies" \
	start_and_verify r6 '{"restore":{"branch":"s1/b1"}}' 2
check "r6 maps the same template" maps_template_privately r1 r6
check "no verify failure in r1..r4, r6" bash -c "! grep -q 'verify FAIL' $MNT/r[1-46]/log"

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
for i in 2 3 4 6; do
	check "stop r$i" bash -c "echo stop > '$MNT/r$i/ctl'"
done
check "rmdir of b1 once its children stopped" rmdir "$MNT/s1/branches/b1"

# Four starts at once from a branch no one has started from: one fills the
# template, the others wait for it (on the loop), all map the same one.
check "mkdir branches/b3, ready" sh -c "mkdir '$MNT/s1/branches/b3' && cat '$MNT/s1/branches/b3/wait' | head -n1 | grep -q ready"
for i in 1 2 3 4; do
	mkdir "$MNT/q$i" && printf '{"restore":{"branch":"s1/b3"}}\n' >"$MNT/q$i/config.json"
done
pids=""
for i in 1 2 3 4; do
	(echo start >"$MNT/q$i/ctl") &
	pids="$pids $!"
done
wait $pids	# not a bare wait: forkfs is a background job of this shell too
for i in 1 2 3 4; do
	check "q$i (started concurrently) runs and verifies" wait_for 30 has_verified q$i 2
done
check "q1..q4 map one template privately" maps_template_privately q1 q2 q3 q4
for i in 1 2 3 4; do echo stop >"$MNT/q$i/ctl"; done
check "a stopped sandbox's memory file says 0" [ "$(mem_key r2 total)" -eq 0 ]
check "unmount exits 0" unmount_forkfs
check "no VMM left running" [ -z "$(live_vmm_pids)" ]

# ---- an --anon parent with two regions (96 MiB, split at 64) ----
mount_forkfs "vmm_args=--anon --mem-split-mib 64"
check "boot a1 (--anon, 96 MiB in two regions, 2 vCPUs)" start_sandbox a1 "$(boot_config 96 2)"
check "a1's VMM uses anonymous memory" bash -c "! grep -q memfd /proc/$(vmm_pid a1)/maps"
check "mkdir a1/branches/b1" mkdir "$MNT/a1/branches/b1"
check "b1 becomes ready" wait_for 60 is_ready a1 b1
for i in 1 2; do
	check "restore k$i from a1/b1" start_sandbox k$i '{"restore":{"branch":"a1/b1"}}'
	check "k$i verifies its memory on both vCPUs" wait_for 30 has_verified k$i 2
done
check "k1, k2 map one template privately, in both regions" bash -c "
	[ \"\$(grep -c 'memfd:forkfs-template' /proc/$(vmm_pid k1)/maps)\" -ge 2 ]" 
check "... the same one" maps_template_privately k1 k2
check "a child (k1) of the anon parent branched live restores and verifies" \
	live_child_branch a1 k1 c1 kc1 2
check "no verify failure" bash -c "! grep -q 'verify FAIL' $MNT/k[12]/log $MNT/kc1/log"
check "unmount exits 0" unmount_forkfs
check "no VMM left running" [ -z "$(live_vmm_pids)" ]
[ "$_tap_failed" -eq 0 ] || dump_logs
done_testing
