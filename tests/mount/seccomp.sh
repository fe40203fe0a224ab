#!/bin/sh
# forkfs's seccomp allow-list (SPEC §8): the daemon and every one of its
# threads run under it (Seccomp: 2) through a start / branch / restore cycle
# and are never killed; the spawner and the VMMs it launches do not inherit it
# (a wrapper records the VMM's own status before it becomes minivm, and minivm
# then holds exactly its own one filter); -o seccomp=off gives Seccomp: 0,
# -o seccomp=log loads a filter too, and a bad value is refused.
. "$top_srcdir/tests/mount/lib-mount.sh"

# field PID NAME: a line of /proc/PID/status, value only.
field() { sed -n "s/^$2:[[:space:]]*//p" "/proc/$1/status" 2>/dev/null; }

# all_threads PID SECCOMP MIN: every thread of PID shows Seccomp: SECCOMP,
# and there are at least MIN threads.
all_threads() {
	local n=0 t s
	for t in /proc/"$1"/task/*; do
		s=$(sed -n 's/^Seccomp:[[:space:]]*//p' "$t/status" 2>/dev/null)
		[ -n "$s" ] || continue	# the thread ended meanwhile
		n=$((n + 1))
		if [ "$s" != "$2" ]; then
			diag "thread ${t##*/} of $1: Seccomp: $s"
			return 1
		fi
	done
	diag "pid $1: $n threads, each with Seccomp: $2"
	[ "$n" -ge "$3" ]
}

# The spawner: the child of forkfs named forkfs-spawner. (Not awk over
# /proc/*/stat: mawk gives up on the first process that ends meanwhile.)
spawner_pid() {
	local f l
	for f in /proc/[0-9]*/stat; do
		l=$(cat "$f" 2>/dev/null) || continue
		case "$l" in
		*" (forkfs-spawner) "?" $FORKFS_PID "*) f=${f#/proc/}; echo "${f%/stat}" ;;
		esac
	done
}

# A VMM that writes down its own seccomp state as the spawner started it,
# then becomes minivm (same pid, so forkfs's log names it).
cat >"$TMPD/vmm-wrap" <<EOF
#!/bin/sh
while read -r k v; do
	case \$k in Seccomp:|Seccomp_filters:|NoNewPrivs:) echo "\$k \$v" ;; esac
done </proc/\$\$/status >"$TMPD/vmm-status.\$\$"
exec "$MINIVM" "\$@"
EOF
chmod +x "$TMPD/vmm-wrap"
recorded() { grep -qx "$2" "$TMPD/vmm-status.$1" 2>/dev/null; }

mount_forkfs "vmm=$TMPD/vmm-wrap,jail=off"	# a wrapper script: no jail (jail.sh covers jailed VMMs)
check "forkfs is under a filter once mounted (Seccomp: 2)" [ "$(field "$FORKFS_PID" Seccomp)" = 2 ]
check "exactly one filter" [ "$(field "$FORKFS_PID" Seccomp_filters)" = 1 ]
sp=$(spawner_pid)
diag "forkfs pid $FORKFS_PID, spawner pid ${sp:-none}"
check "the spawner runs" [ -n "$sp" ]
check "the spawner is not under the filter (Seccomp: 0)" [ "$(field "${sp:-0}" Seccomp)" = 0 ]
check "the spawner has no NoNewPrivs" [ "$(field "${sp:-0}" NoNewPrivs)" = 0 ]

check "boot s1" start_sandbox s1 "$(boot_config 64 1)"
check "mkdir branches/b1" mkdir "$MNT/s1/branches/b1"
check "b1 becomes ready" wait_for 30 is_ready s1 b1
check "restore r1 from s1/b1" start_sandbox r1 '{"restore":{"branch":"s1/b1"}}'
check "r1 verifies its memory" wait_for 30 has_verified r1 1
check "forkfs survived the cycle" kill -0 "$FORKFS_PID"
check "every forkfs thread is under the filter" all_threads "$FORKFS_PID" 2 2
# fault_filters PID: Seccomp_filters of its forkfs-fault threads (one per VMM branched live).
fault_filters() {
	local t
	for t in /proc/"$1"/task/*; do
		[ "$(cat "$t/comm" 2>/dev/null)" = forkfs-fault ] &&
			sed -n 's/^Seccomp_filters:[[:space:]]*//p' "$t/status"
	done
}
diag "fault threads' filters: $(fault_filters "$FORKFS_PID" | tr '\n' ' ')"
check "s1's fault thread has a second filter of its own" \
	sh -c "[ -n \"\$1\" ] && ! echo \"\$1\" | grep -qv '^2\$'" _ "$(fault_filters "$FORKFS_PID")"
check "... and forkfs's main thread still one" [ "$(field "$FORKFS_PID" Seccomp_filters)" = 1 ]

pids=$(vmm_pids)
diag "VMM pids: $(echo $pids)"
check "two VMMs were launched" [ "$(echo $pids | wc -w)" -eq 2 ]
for p in $pids; do
	check "VMM $p started without a filter (Seccomp: 0)" recorded "$p" "Seccomp: 0"
	check "VMM $p started without NoNewPrivs" recorded "$p" "NoNewPrivs: 0"
	check "VMM $p holds only minivm's own filter" [ "$(field "$p" Seccomp_filters)" = 1 ]
done
check "stop r1" bash -c "echo stop > '$MNT/r1/ctl'"
check "r1 is stopped" [ "$(cat "$MNT/r1/state")" = stopped ]
check "r1's exit status came from the spawner" \
	grep -q "VMM pid [0-9]* exited \(on signal\|with status\) [0-9]* (stop)" "$MNT/r1/log"
check "unmount exits 0" unmount_forkfs
check "the spawner is gone (reaped)" [ ! -e "/proc/${sp:-0}" ]
check "no VMM left running" [ -z "$(live_vmm_pids)" ]
check "no exit status was unknown" bash -c "! grep -q 'status unknown' '$STORE'/sandboxes/*/log"

# The other modes.
mount_forkfs "seccomp=off"
check "-o seccomp=off: Seccomp: 0" [ "$(field "$FORKFS_PID" Seccomp)" = 0 ]
check "-o seccomp=off: unmount exits 0" unmount_forkfs
mount_forkfs "seccomp=log"
check "-o seccomp=log: Seccomp: 2" [ "$(field "$FORKFS_PID" Seccomp)" = 2 ]
check "-o seccomp=log: unmount exits 0" unmount_forkfs
check "-o seccomp=bogus is refused" expect_fail "seccomp= takes" \
	"$FORKFS" -f -o "store=$STORE,seccomp=bogus" "$MNT"
check "and leaves nothing mounted" bash -c "! grep -q ' $MNT fuse' /proc/self/mounts"

[ "$_tap_failed" -eq 0 ] || dump_logs
done_testing
