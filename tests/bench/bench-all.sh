#!/bin/bash
# bench-all.sh — "make bench": every figure SPEC §7 and issue #11 ask for, in
# one table with its target and whether this run met it. It runs the
# benchmarks that measure them one after another (never two at once: the
# machine has two cores), each with its whole output kept in a log:
#
#   bench-branch   pause window p50/p99 and forkfs's own part of it (arm),
#                  time to ready against pwrite+fsync, per guest size
#   bench-engine   guest write-fault latency p50/p99/p99.9 during a copy
#                  (the copy engine alone, a 1 GiB memfd, 2 writer threads)
#   bench-mount    cp memory.bin through the mount against the store file,
#                  cold and warm, for a whole branch (b1) and an incremental
#                  one (b2); forkfs's peak memory
#   bench-load     N sandboxes branched at once under M readers: aggregate
#                  copy throughput against pwrite+fsync, and the p99 of
#                  status/state/ctl of an idle sandbox meanwhile
#   bench-qemu     QEMU's background-snapshot on guests of the same sizes
#                  (skipped without qemu-system-x86_64)
#
# Each benchmark appends "key value" lines to $BENCH_FIGURES
# (tests/bench/figures.h, lib.sh's figure()); this script only reads them.
# Environment (defaults in brackets):
#   BENCH_STORE [/var/tmp]  where images are written (its file system decides
#                           the pwrite+fsync baseline and reflinks)
#   BENCH_SIZES [256,1024,4096]  BENCH_N [5]  guest sizes and branches per size
#   BENCH_MOUNT_MIB [1024]  BENCH_LOAD_ARGS ["16 16 128"]  (issue #11's load
#                           is "32 32 128", about 20 minutes here)
#   BENCH_ONLY              a subset, e.g. "branch mount"
#   BENCH_LOG_DIR [$BENCH_STORE/forkfs-bench.DATE]
# Run from "make bench" (needs root, /dev/fuse, /dev/userfaultfd). Exits 0
# when every benchmark ran, whether or not targets were met; 1 otherwise.
set -u
: "${MAKE:=make}"
STORE=${BENCH_STORE:-/var/tmp}
SIZES=${BENCH_SIZES:-256,1024,4096}
N=${BENCH_N:-5}
MOUNT_MIB=${BENCH_MOUNT_MIB:-1024}
LOAD_ARGS=${BENCH_LOAD_ARGS:-16 16 128}
ONLY=${BENCH_ONLY:-branch engine mount load qemu}
LOGD=${BENCH_LOG_DIR:-$STORE/forkfs-bench.$(date +%Y%m%d-%H%M%S)}
mkdir -p "$LOGD" || exit 1
export BENCH_FIGURES=$LOGD/figures
: >"$BENCH_FIGURES"
FAILED=

# run NAME COMMAND...: one benchmark, its output into LOG/NAME.log.
run() {
	local name=$1 t0=$SECONDS
	shift
	case " $ONLY " in *" $name "*) ;; *) return 0 ;; esac
	echo "bench: $name ... (log $LOGD/$name.log)"
	if "$@" >"$LOGD/$name.log" 2>&1; then
		echo "bench: $name done in $((SECONDS - t0)) s"
	else
		echo "bench: $name FAILED after $((SECONDS - t0)) s; its log ends:"
		tail -n 15 "$LOGD/$name.log" | sed 's/^/    /'
		FAILED+=" $name"
	fi
}

run branch $MAKE -s --no-print-directory bench-branch BENCH_ARGS="-s $SIZES -n $N -d $STORE"
run engine $MAKE -s --no-print-directory bench-engine BENCH_ENGINE_ARGS="-d $STORE -r 3 1024"
run mount env BENCH_MOUNT_STORE="$STORE" \
	$MAKE -s --no-print-directory bench-mount BENCH_MOUNT_MIB="$MOUNT_MIB"
run load env TMPDIR="$STORE" $MAKE -s --no-print-directory bench-load BENCH_LOAD_ARGS="$LOAD_ARGS"
run qemu $MAKE -s --no-print-directory bench-qemu BENCH_QEMU_ARGS="-n 3 -d $STORE ${SIZES//,/ }"

# ---- the table ----
fig() { awk -v k="$1" '$1 == k { v = $2 } END { if (v != "") print v }' "$BENCH_FIGURES"; }
# row LABEL KEY UNIT [OP LIMIT TARGET-TEXT]: OP is <= or >=; none: for context.
row() {
	local v met=- target=${6:-}
	v=$(fig "$2")
	if [ -z "$v" ]; then
		v="not measured"
		[ -z "${4:-}" ] || met="?"
	else
		[ -z "${4:-}" ] || met=$(awk -v v="$v" -v l="$5" -v op="$4" \
			'BEGIN { print ((op == "<=" ? v <= l : v >= l) ? "yes" : "**no**") }')
		v="$v $3"
	fi
	printf '| %s | %s | %s | %s |\n' "$1" "$v" "$target" "$met"
}
# A figure computed from two others (a ratio): put it among the figures.
derive() {
	local a b
	a=$(fig "$2") b=$(fig "$3")
	[ -n "$a" ] && [ -n "$b" ] && awk -v a="$a" -v b="$b" -v k="$1" \
		'BEGIN { if (b > 0) printf "%s %.2f\n", k, a / b }' >>"$BENCH_FIGURES"
}
sizes=${SIZES//,/ }
first=${sizes%% *}
last=${sizes##* }
derive live.growth "live.$last.pause_p99_us" "live.$first.pause_p99_us"
for s in $sizes; do
	derive "qemu.$s.pause_ratio" "qemu.$s.pause_p50_us" "live.$s.pause_p50_us"
	derive "qemu.$s.ready_ratio" "qemu.$s.ondisk_ms" "live.$s.ready_ms"
done
guests=KVM
[ -w /dev/kvm ] || guests="minivm's emulated CPU (no /dev/kvm)"

echo
echo "forkfs benchmarks: $(date -u '+%Y-%m-%d %H:%M UTC'), $(uname -r), $(nproc) CPUs," \
	"guests on $guests, store $STORE ($(findmnt -n -o FSTYPE --target "$STORE")); logs in $LOGD"
echo
echo "| figure | measured | target | met |"
echo "|---|---|---|---|"
for s in $sizes; do
	row "pause p50, $s MiB" "live.$s.pause_p50_us" µs
	row "pause p99, $s MiB" "live.$s.pause_p99_us" µs "<=" 1000 "≤ 1000 µs"
done
row "pause p99 growth, $first → $last MiB" live.growth × "<=" 2 "not growing (≤ 2 ×)"
for s in $sizes; do
	row "forkfs's own part of the pause (arm) p99, $s MiB" "live.$s.arm_p99_us" µs "<=" 300 "≤ 300 µs"
done
row "pause p50, full mode (not live), $first MiB" "full.$first.pause_p50_us" µs
for s in $sizes; do
	row "time to ready / pwrite+fsync, $s MiB" "live.$s.ready_ratio" × "<=" 1.15 "≤ 1.15"
done
row "fault latency p50 (engine, 1 GiB, 2 writers)" fault.memfd.prearm.1024.p50_us µs
row "fault latency p99" fault.memfd.prearm.1024.p99_us µs "<=" 100 "≤ 100 µs (stretch 50)"
row "fault latency p99.9" fault.memfd.prearm.1024.p999_us µs
row "cp memory.bin via mount / store file, cold" cp.cold × ">=" 0.95 "≥ 0.95"
row "cp memory.bin via mount / store file, warm" cp.warm × ">=" 0.95 "≥ 0.95"
row "the same, incremental branch b2, cold" cp.b2.cold ×
row "the same, incremental branch b2, warm" cp.b2.warm ×
row "forkfs peak RSS during bench-mount ($MOUNT_MIB MiB guest)" forkfs.vmhwm_kib KiB
row "load $(fig load.shape) (N/M/MiB): copy / pwrite+fsync" load.copy_ratio × ">=" 0.8 "≥ 0.8"
for k in status state ctl; do
	row "load: $k of an idle sandbox, p99" "load.load.$k.p99_ms" ms "<=" 20 "≤ 20 ms"
done
row "load: wake-up control (pipe round trip), p99" load.load.wake-up.p99_ms ms
for s in $sizes; do
	row "QEMU background-snapshot pause / forkfs's, p50, $s MiB" "qemu.$s.pause_ratio" ×
	row "QEMU image on disk / forkfs ready, $s MiB" "qemu.$s.ready_ratio" ×
done
if [ -n "$FAILED" ]; then
	echo
	echo "bench: failed:$FAILED (logs in $LOGD)"
	exit 1
fi
