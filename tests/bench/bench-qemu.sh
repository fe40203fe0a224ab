#!/bin/bash
# bench-qemu.sh — SPEC §7's side-by-side: QEMU's own live snapshot
# (migrate with the background-snapshot capability, which write-protects guest
# RAM with userfaultfd as forkfs does) of a guest of the same size that keeps
# writing its memory (qemu-guest.S). Prints one markdown table whose columns
# match bench-branch's: pause window, time to a complete image on disk, and
# image bytes per second. forkfs's own figures come from "make bench".
# Usage: bench-qemu.sh [-n snapshots] [-d store-dir] [MiB...]
#   (root; KVM if /dev/kvm, else TCG; $GUEST = qemu-guest.elf; run from "make bench-qemu")
# Without qemu-system-x86_64 it says so and exits 0; it never installs it.
set -u
N=3
DIR=/var/tmp
while getopts n:d: o; do
	case $o in
	n) N=$OPTARG ;;
	d) DIR=$OPTARG ;;
	*) echo "usage: $0 [-n snapshots] [-d store-dir] [MiB...]" >&2; exit 2 ;;
	esac
done
shift $((OPTIND - 1))
SIZES=${*:-256 1024 4096}
GUEST=${GUEST:-$(dirname "$0")/qemu-guest.elf}
QEMU=$(command -v qemu-system-x86_64) || {
	echo "bench-qemu: qemu-system-x86_64 is not installed (apt-get install qemu-system-x86); skipped"
	exit 0
}
PY=$(command -v /usr/bin/python3 python3 | head -n1)
[ -n "$PY" ] || { echo "bench-qemu: python3 is needed to speak QMP; skipped"; exit 0; }
[ -r "$GUEST" ] || { echo "bench-qemu: no guest $GUEST" >&2; exit 1; }
# KVM where there is one; else QEMU's own emulator (TCG), as forkfs-minivm
# falls back to its emulated CPU: the snapshot's pause and copy are QEMU's
# either way, only the guest's write rate differs.
ACCEL=kvm
[ -w /dev/kvm ] || ACCEL=tcg

TMPD=$(mktemp -d /tmp/bench-qemu.XXXXXX)
QPID=
cleanup() {
	[ -n "$QPID" ] && kill "$QPID" 2>/dev/null && wait "$QPID" 2>/dev/null
	rm -rf "$TMPD"
	rm -f "$DIR"/bench-qemu.$$.snap "$DIR"/bench-qemu.$$.snap.t
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

# The QMP side, for one guest: N snapshots back to back into SNAP. For each it
# prints: QEMU's downtime (ms), setup-time (ms), total-time (ms); the pause
# seen as STOP -> RESUME events (µs, QEMU's timestamps); migrate sent ->
# MIGRATION completed event (ms); -> image written and fsynced (ms); the
# image's bytes; RAM pages saved as zero ("duplicate").
qmp_snapshots() {
	"$PY" - "$TMPD/qmp" "$1" "$N" <<'EOF'
import json, os, socket, sys, time
sock, snap, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
s = socket.socket(socket.AF_UNIX)
s.connect(sock)
f = s.makefile("rw")
events = []

def ts(m):
	return m["timestamp"]["seconds"] + m["timestamp"]["microseconds"] / 1e6

def cmd(name, **args):
	f.write(json.dumps({"execute": name, "arguments": args}) + "\n")
	f.flush()
	while True:
		m = json.loads(f.readline())
		if "event" in m:
			events.append(m)
		elif "error" in m:
			sys.exit("bench-qemu: %s: %s" % (name, m["error"]["desc"]))
		elif "return" in m:
			return m["return"]

json.loads(f.readline())		# the greeting
cmd("qmp_capabilities")
cmd("migrate-set-capabilities", capabilities=[
	{"capability": "background-snapshot", "state": True},
	{"capability": "events", "state": True}])
for i in range(n):
	for p in (snap, snap + ".t"):
		if os.path.exists(p):
			os.unlink(p)
	events.clear()
	t0 = time.time()
	# The image is complete when cat has written it and sync has fsynced it.
	cmd("migrate", uri="exec:cat > %s && sync %s && date +%%s.%%N > %s.t" % (snap, snap, snap))
	while True:
		st = cmd("query-migrate")
		if st.get("status") in ("completed", "failed", "cancelled"):
			t_poll = time.time()
			break
		time.sleep(0.01)
	if st["status"] != "completed":
		sys.exit("bench-qemu: snapshot %s: %s" % (st["status"], st.get("error-desc", "")))
	while not os.path.exists(snap + ".t") or os.path.getsize(snap + ".t") == 0:
		time.sleep(0.01)
	with open(snap + ".t") as t:
		t_disk = float(t.read())
	for _ in range(100):		# read events still in flight
		if any(e["event"] == "MIGRATION" and e["data"]["status"] == "completed" for e in events):
			break
		time.sleep(0.01)
		cmd("query-status")
	stop = [ts(e) for e in events if e["event"] == "STOP"]
	resume = [ts(e) for e in events if e["event"] == "RESUME"]
	done = [ts(e) for e in events if e["event"] == "MIGRATION" and e["data"]["status"] == "completed"]
	pause_us = (resume[0] - stop[0]) * 1e6 if stop and resume else -1
	if not done:		# no event: the poll's time, 10 ms coarser
		print("bench-qemu: no MIGRATION completed event; events: %s" % events, file=sys.stderr)
		done = [t_poll]
	print("%d %d %d %.0f %.0f %.0f %d %d" % (st["downtime"], st["setup-time"], st["total-time"],
		pause_us, (done[0] - t0) * 1e3, (t_disk - t0) * 1e3,
		os.path.getsize(snap), st["ram"]["duplicate"]), flush=True)
cmd("quit")
EOF
}

# p50 and max of a column of numbers on stdin: "p50 max".
p50max() { sort -n | awk '{ v[NR] = $1 } END { i = int((NR + 1) / 2); print v[i], v[NR] }'; }

echo "bench-qemu: raw, per snapshot: MiB downtime-ms setup-ms total-ms stop-resume-µs completed-ms on-disk-ms image-bytes zero-pages" >&2
ROWS=
for mib in $SIZES; do
	SNAP=$DIR/bench-qemu.$$.snap
	rm -f "$TMPD/qmp" "$TMPD/debugcon"
	"$QEMU" -accel "$ACCEL" -machine pc -m "$mib" -smp 1 -nographic -nodefaults \
		-kernel "$GUEST" -debugcon "file:$TMPD/debugcon" \
		-qmp "unix:$TMPD/qmp,server=on,wait=off" 2>"$TMPD/qemu.err" &
	QPID=$!
	# Snapshot only once the guest has written every page (its first '.'),
	# then let it write for one more second.
	for _ in $(seq 1200); do
		grep -q '\.' "$TMPD/debugcon" 2>/dev/null && break
		kill -0 "$QPID" 2>/dev/null || break
		sleep 0.1
	done
	grep -q '\.' "$TMPD/debugcon" 2>/dev/null || {
		echo "bench-qemu: the $mib MiB guest did not start writing:" >&2
		cat "$TMPD/qemu.err" >&2
		exit 1
	}
	sleep 1
	passes0=$(tr -cd . <"$TMPD/debugcon" | wc -c)
	t0=$(date +%s.%N)
	qmp_snapshots "$SNAP" >"$TMPD/runs" || exit 1
	t1=$(date +%s.%N)
	passes1=$(tr -cd . <"$TMPD/debugcon" | wc -c)
	wait "$QPID" 2>/dev/null
	QPID=
	rm -f "$SNAP" "$SNAP.t"
	sed "s/^/bench-qemu: $mib MiB: /" "$TMPD/runs" >&2
	col() { awk -v c="$1" '{ print $c }' "$TMPD/runs" | p50max; }
	read -r down50 downmax < <(col 1)
	read -r pause50 pausemax < <(col 4)
	read -r done50 donemax < <(col 5)
	read -r disk50 diskmax < <(col 6)
	read -r bytes50 _ < <(col 7)
	read -r zero50 _ < <(col 8)
	# Pages the guest wrote per second over the whole series (snapshots included).
	rate=$(awk -v p=$((passes1 - passes0)) -v mib="$mib" -v a="$t0" -v b="$t1" \
		'BEGIN { printf "%.0f", p * (mib - 2) * 256 / (b - a) }')
	[ -z "${BENCH_FIGURES:-}" ] || printf 'qemu.%s.pause_p50_us %s\nqemu.%s.ondisk_ms %s\n' \
		"$mib" "$pause50" "$mib" "$disk50" >>"$BENCH_FIGURES"
	ROWS+=$(awk -v mib="$mib" -v n="$(wc -l <"$TMPD/runs")" -v d50="$down50" -v dmax="$downmax" \
		-v p50="$pause50" -v pmax="$pausemax" -v c50="$done50" -v cmax="$donemax" \
		-v k50="$disk50" -v kmax="$diskmax" -v b="$bytes50" -v z="$zero50" -v r="$rate" 'BEGIN {
		size = mib >= 1024 ? (mib / 1024) " GiB" : mib " MiB"
		printf "| %s | %d | %d ms | %d ms | %d µs | %d µs | %d ms | %d ms | %d ms | %d ms | %.0f MiB | %.0f MB/s | %d | ~%d |\n",
			size, n, d50, dmax, p50, pmax, c50, cmax, k50, kmax, b / 1048576,
			b / 1e6 / (k50 / 1000), z, r }')$'\n'
done
echo "QEMU $("$QEMU" --version | sed -n '1s/.*version \([^ ]*\).*/\1/p') background-snapshot, guest qemu-guest.elf (1 vCPU), accel $ACCEL, store $DIR"
echo
echo "| guest | n | downtime p50 | downtime max | STOP→RESUME p50 | STOP→RESUME max | completed p50 | completed max | on disk p50 | on disk max | image | image / on disk p50 | zero pages | guest page writes/s |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
printf '%s' "$ROWS"
