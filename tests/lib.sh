# tests/lib.sh — sourced by every shell test. TAP output, prerequisites, and
# clean-up. A missing prerequisite skips the test (exit 77) except under CI,
# where it fails: CI machines are supposed to have root, /dev/fuse and
# /dev/userfaultfd. Guests need no /dev/kvm: forkfs-minivm runs them on its
# emulated CPU where KVM is missing (require_guest says which ran).
set -u

: "${top_srcdir:=$(cd "$(dirname "$0")/.." && pwd)}"
: "${top_builddir:=$top_srcdir}"
: "${MINIVM:=$top_builddir/contrib/minivm/forkfs-minivm}"
: "${GUEST_IMG:=$top_builddir/contrib/minivm/guest.img}"
: "${FORKFS:=$top_builddir/fusefs/forkfs}"

_tap_n=0
_tap_failed=0
_cleanup_cmds=""

ok() { _tap_n=$((_tap_n + 1)); echo "ok $_tap_n - $*"; }
not_ok() { _tap_n=$((_tap_n + 1)); _tap_failed=$((_tap_failed + 1)); echo "not ok $_tap_n - $*"; }
diag() { echo "# $*"; }
skip_one() { _tap_n=$((_tap_n + 1)); echo "ok $_tap_n # SKIP $*"; }
# check DESCRIPTION COMMAND...: one TAP line from a command's success.
check() {
	local desc="$1"; shift
	if "$@"; then ok "$desc"; else not_ok "$desc"; fi
}
# Finish: print the plan and exit 1 if anything failed.
done_testing() {
	echo "1..$_tap_n"
	[ "$_tap_failed" -eq 0 ] || exit 1
	exit 0
}
# figure KEY VALUE: a benchmark's headline figure for bench-all.sh, one line
# appended to $BENCH_FIGURES when that is set (tests/bench/figures.h).
figure() { [ -z "${BENCH_FIGURES:-}" ] || echo "$1 $2" >>"$BENCH_FIGURES"; }
# A fatal problem: report it and stop (clean-up still runs).
bail() { not_ok "$*"; echo "1..$_tap_n"; exit 1; }

skip_all() {
	if [ -n "${CI:-}" ]; then
		echo "not ok 1 - prerequisite missing under CI: $*"
		echo "1..1"
		exit 1
	fi
	echo "1..0 # SKIP $*"
	exit 77
}

require_root() { [ "$(id -u)" -eq 0 ] || skip_all "needs root"; }
# Guests run on KVM where /dev/kvm works, else on minivm's emulated CPU
# (--cpu auto); FORKFS_MINIVM_CPU=emulated forces the latter.
guest_cpu() {
	case "${FORKFS_MINIVM_CPU:-auto}" in
	emulated) echo "the emulated CPU (FORKFS_MINIVM_CPU)" ;;
	*) if [ -r /dev/kvm ] && [ -w /dev/kvm ]; then echo "KVM"
	   else echo "the emulated CPU (no usable /dev/kvm)"; fi ;;
	esac
}
require_guest() { diag "guests run on $(guest_cpu)"; }
require_fuse() {
	[ -c /dev/fuse ] || skip_all "needs /dev/fuse"
	command -v fusermount3 >/dev/null || skip_all "needs fusermount3"
}
require_uffd() { [ -c /dev/userfaultfd ] || skip_all "needs /dev/userfaultfd"; }
require_prog() { command -v "$1" >/dev/null || skip_all "needs $1"; }

# Clean-up commands run in reverse order at exit, whatever happens.
on_exit() { _cleanup_cmds="$*; $_cleanup_cmds"; }
_run_cleanup() { eval "$_cleanup_cmds" >/dev/null 2>&1 || true; }
trap _run_cleanup EXIT

# A private scratch directory, removed at exit.
TMPD=$(mktemp -d "${TMPDIR:-/tmp}/forkfs-test.XXXXXX")
on_exit "rm -rf '$TMPD'"

# wait_for SECONDS COMMAND...: poll until the command succeeds.
wait_for() {
	local t="$1"; shift
	local end=$(( $(date +%s) + t ))
	while ! "$@"; do
		[ "$(date +%s)" -lt "$end" ] || return 1
		sleep 0.05
	done
}
