# tests/mount/lib-mount.sh — sourced by the mount tests: a real forkfs on a
# real FUSE mount, minivm guests, and clean-up that leaves nothing behind even
# when a test fails (forkfs is killed, the mount is lazily unmounted, and every
# VMM forkfs logged as launched is killed).
. "$top_srcdir/tests/lib.sh"

require_root
require_fuse
require_guest
require_uffd
[ -x "$FORKFS" ] || skip_all "forkfs not built ($FORKFS)"
[ -x "$MINIVM" ] || skip_all "forkfs-minivm not built ($MINIVM)"
[ -r "$GUEST_IMG" ] || skip_all "guest image not built ($GUEST_IMG)"

MNT=$TMPD/mnt
STORE=$TMPD/store
FLOG=$TMPD/forkfs.log
FORKFS_PID=
mkdir -p "$MNT"

# PIDs of the VMMs forkfs launched, from the sandbox logs in the store.
vmm_pids() {
	cat "$STORE"/sandboxes/*/log 2>/dev/null |
		sed -n 's/.*launched VMM .*, pid \([0-9]*\),.*/\1/p' | sort -u
}
# Those still alive and still a minivm.
live_vmm_pids() {
	local p
	for p in $(vmm_pids); do
		grep -qa forkfs-minivm "/proc/$p/cmdline" 2>/dev/null && echo "$p"
	done
}
kill_strays() {
	[ -n "$FORKFS_PID" ] && kill -9 "$FORKFS_PID" 2>/dev/null
	fusermount3 -u -z "$MNT" 2>/dev/null
	for p in $(live_vmm_pids); do kill -9 "$p"; done
}
on_exit kill_strays

is_mounted() { grep -q " $MNT fuse" /proc/self/mounts; }

# mount_forkfs [EXTRA -o OPTIONS]; the VMM binary is $MOUNT_VMM (default $MINIVM).
MOUNT_VMM=$MINIVM
# It returns once forkfs says "mounted on": set up, seccomp filter included.
mounted_lines() { grep -c "^forkfs: mounted on " "$FLOG" 2>/dev/null; }
mounted_more_than() { [ "$(mounted_lines)" -gt "$1" ]; }
mount_forkfs() {
	local extra=${1:+,$1} n
	n=$(mounted_lines)
	"$FORKFS" -f -o "store=$STORE,vmm=$MOUNT_VMM$extra" "$MNT" >>"$FLOG" 2>&1 &
	FORKFS_PID=$!
	if ! wait_for 10 is_mounted || ! wait_for 10 mounted_more_than "${n:-0}"; then
		cat "$FLOG" | sed 's/^/# /'
		bail "forkfs did not mount"
	fi
}

# unmount_forkfs: fusermount3 -u, then forkfs must exit 0 within 20 s.
FORKFS_RC=
unmount_forkfs() {
	local i
	fusermount3 -u "$MNT" || return 1
	for i in $(seq 200); do
		kill -0 "$FORKFS_PID" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$FORKFS_PID" 2>/dev/null; then
		FORKFS_RC=timeout
		return 1
	fi
	wait "$FORKFS_PID"
	FORKFS_RC=$?
	FORKFS_PID=
	[ "$FORKFS_RC" -eq 0 ]
}

# forkfs_gone: no forkfs of this test's store runs (a daemonized one, mounted
# through mount(8), is not $FORKFS_PID).
forkfs_gone() { ! pgrep -f "forkfs.*store=$STORE" >/dev/null; }

# The run directory of the last forkfs, from its start-up line.
run_dir() { sed -n 's/.*run directory \(.*\))$/\1/p' "$FLOG" | tail -1; }

# boot_config MIB VCPUS
boot_config() {
	printf '{"boot-source":{"kernel_image_path":"%s"},"machine-config":{"vcpu_count":%s,"mem_size_mib":%s}}\n' \
		"$GUEST_IMG" "$2" "$1"
}

# status_state SANDBOX TAG: the first line of status.
status_state() { head -n1 "$MNT/$1/branches/$2/status" 2>/dev/null; }
status_key() { sed -n "s/^$3: //p" "$MNT/$1/branches/$2/status"; }
is_ready() { [ "$(status_state "$1" "$2")" = ready ]; }
is_done() { case "$(status_state "$1" "$2")" in ready | failed) return 0 ;; esac; return 1; }

# count of "guest: verify ok" lines per distinct vCPU in a sandbox log
verified_vcpus() { grep -o 'guest: verify ok vcpu=[0-9]*' "$MNT/$1/log" 2>/dev/null | sort -u | wc -l; }
has_verified() { [ "$(verified_vcpus "$1")" -ge "$2" ]; }

# first_pass_done NAME N: N vCPUs of NAME's guest have written all their pages
# (from then on, all of its memory is populated).
first_pass_done() { [ "$(grep -c 'guest: first pass done' "$MNT/$1/log" 2>/dev/null)" -ge "$2" ]; }

# start_sandbox NAME CONFIG-JSON: mkdir, config, start.
start_sandbox() {
	mkdir "$MNT/$1" && printf '%s\n' "$2" >"$MNT/$1/config.json" && echo start >"$MNT/$1/ctl"
}

# expect_errno MESSAGE-PART COMMAND...: the command fails and says MESSAGE-PART.
expect_fail() {
	local want="$1" out; shift
	if out=$("$@" 2>&1); then
		diag "unexpected success: $*"
		return 1
	fi
	case "$out" in *"$want"*) return 0 ;; esac
	diag "expected '$want', got: $out"
	return 1
}

dump_logs() {
	diag "---- forkfs stderr"
	sed 's/^/# /' "$FLOG" | tail -40
	for f in "$STORE"/sandboxes/*/log; do
		[ -f "$f" ] || continue
		diag "---- $f"
		tail -20 "$f" | sed 's/^/# /'
	done
}

# ---- helpers of the reliability tests ----

# vmm_pid SANDBOX: the pid of the VMM forkfs last launched for SANDBOX (store log).
vmm_pid() {
	sed -n 's/.*launched VMM .*, pid \([0-9]*\),.*/\1/p' "$STORE/sandboxes/$1/log" 2>/dev/null |
		tail -1
}
# vmm_sock SANDBOX: the API socket of that VMM (it outlives a killed forkfs).
vmm_sock() {
	sed -n 's/.*launched VMM .*, API socket \(.*\)$/\1/p' "$STORE/sandboxes/$1/log" 2>/dev/null |
		tail -1
}
# is_alive PID: running and not a zombie.
is_alive() {
	local st
	st=$(sed -n 's/^State:[[:space:]]*\([A-Z]\).*/\1/p' "/proc/$1/status" 2>/dev/null)
	[ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ]
}
is_gone() { ! is_alive "$1"; }

# Firecracker API over a socket with curl (bounded): api_call SOCK METHOD PATH [BODY]
api_call() {
	local sock=$1 method=$2 path=$3
	shift 3
	curl -sS --fail-with-body --max-time 5 --unix-socket "$sock" -H 'Content-Type: application/json' \
		-X "$method" "http://localhost$path" ${1:+-d "$1"}
}
# api_state SOCK: "Running", "Paused", "Not started" (empty if no answer).
api_state() { api_call "$1" GET / | sed -n 's/.*"state":"\([A-Za-z ]*\)".*/\1/p'; }

# boot_external SOCK LOG MIB VCPUS [MINIVM-OPTIONS...]: a minivm forkfs did not
# launch, booted through its API; sets EXT_PID and kills it at exit.
boot_external() {
	local sock=$1 log=$2 mib=$3 vcpus=$4
	shift 4
	"$MINIVM" --api-sock "$sock" "$@" >"$log" 2>&1 &
	EXT_PID=$!
	on_exit "kill -9 $EXT_PID"
	wait_for 10 test -S "$sock" || return 1
	api_call "$sock" PUT /boot-source "{\"kernel_image_path\":\"$GUEST_IMG\"}" &&
		api_call "$sock" PUT /machine-config "{\"vcpu_count\":$vcpus,\"mem_size_mib\":$mib}" &&
		api_call "$sock" PUT /actions '{"action_type":"InstanceStart"}' &&
		[ "$(api_state "$sock")" = Running ]
}

# restore_verifies NAME SRC-SANDBOX TAG VCPUS: a new sandbox restored from the
# branch prints "guest: verify ok" for every vCPU (and no FAIL) within 30 s.
restore_verifies() {
	start_sandbox "$1" "{\"restore\":{\"branch\":\"$2/$3\"}}" || return 1
	wait_for 30 has_verified "$1" "$4" || { diag "$1: $(verified_vcpus "$1") vCPUs verified"; return 1; }
	! grep -q 'verify FAIL' "$MNT/$1/log"
}

# no_dir_left SANDBOX TAG: neither the mount nor the store has the branch.
no_dir_left() { [ ! -e "$MNT/$1/branches/$2" ] && [ ! -e "$STORE/sandboxes/$1/branches/$2" ]; }

# log_has SANDBOX PATTERN: the sandbox's store log has a line matching PATTERN.
# Lines about a background copy's end are written from the loop just after
# status changes, so give the line a moment to appear.
log_has() {
	wait_for 5 grep -q -- "$2" "$STORE/sandboxes/$1/log" 2>/dev/null ||
		{ diag "no '$2' in the log of $1"; return 1; }
}

# ---- evidence of FUSE passthrough (passthrough.sh, reflink.sh): a file
# opened on fd 3 is read with forkfs stopped (SIGSTOP); only a read the
# kernel passes through to the store completes. A script using these says
# on_exit '[ -n "$FORKFS_PID" ] && kill -CONT "$FORKFS_PID"' and needs perl
# and timeout.
# The reader: fd 3 to stdout with read(2) alone (exit 2 on a read error).
# (POSIX::read returns "0 but true" at the end: compare as a number.)
READER='while (1) { my $n = POSIX::read(3, my $b, 1 << 20); defined $n or exit 2;
	$n == 0 and exit 0; syswrite(STDOUT, $b) == $n or exit 1 }'
is_stopped() { [ "$(sed -n 's/^State:[[:space:]]*\([A-Z]\).*/\1/p' "/proc/$1/status")" = T ]; }
# read_stopped SECS OUT: with forkfs stopped, read the open fd 3 into OUT for
# at most SECS seconds; the reader's exit status (137: killed, it hung).
# (A close does not need forkfs: branch files are opened without FLUSH.)
read_stopped() {
	local rc
	kill -STOP "$FORKFS_PID" && wait_for 5 is_stopped "$FORKFS_PID" || return 99
	# (--foreground: timeout kills the reader only, not itself too, which
	# would have the shell print "Killed")
	timeout --foreground -s KILL "$1" perl -MPOSIX -e "$READER" >"$2"
	rc=$?
	kill -CONT "$FORKFS_PID"
	return $rc
}
hung() { [ "$1" -eq 137 ] || [ "$1" -eq 124 ]; }
