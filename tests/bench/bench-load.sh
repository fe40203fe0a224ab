#!/bin/bash
# bench-load.sh — load without starvation (issue #11 item 4): N sandboxes
# (default 32, each its own VMM, MiB each, default 128, 1 vCPU, the guest
# rewriting a WSET MiB working set after its first pass) are branched at the
# same moment (N "mkdir branches/b1" released together from one barrier)
# while M readers (default 32) cp ready branches (every sandbox's b0, taken
# and waited for before the load) to /dev/null in a loop. Meanwhile a probe
# times, every PROBE_MS (20) ms, from one more sandbox, "idle" (started, one
# branch b0 taken and ready before the load, nothing branched or read during
# it): a read of idle/branches/b0/status, of idle/state, a write of "pause"
# or "resume" (in turn) to idle/ctl, and, as controls, a read of
# /proc/version (no wake-up) and a one-byte round trip through a pipe to a
# child echoing it at the probe's nice ("wake-up": two wake-ups, the least
# any request to a daemon costs on a busy machine); each an open+read(+close)
# or open+write+close timed in-process (perl, CLOCK_MONOTONIC), so the figure
# is forkfs's latency, not fork/exec. The
# probe also runs BASE_SECS (5) s before the load: the "no load" row.
#
# Aggregate copy throughput: the b1s' bytes_stored summed, over the time from
# the barrier's release to the last b1 ready (each seen by a blocked read of
# its "wait" file, within 50 ms). Against it: the store's pwrite+fsync
# throughput in the same run, after the load, with nothing else running: N
# parallel "dd if=/dev/zero bs=1M count=MiB conv=fsync" into the store's
# directory (the same total, N writers like the N copies), first start to
# last end.
#
# Every b1 must reach ready with bytes_copied = bytes_stored; then the loaded
# VMMs are stopped and VERIFY (2) of the b1s, the first and the last, are
# restored into new sandboxes, whose guests check every page of their memory
# against the branch point ("guest: verify ok" for their vCPU).
#
# The b1s are full copies: forkfs is mounted with -o incremental=off unless
# FORKFS_OPTS says otherwise (an incremental b1 would store only the pages
# written since b0; bytes_stored then says what was copied, and the ratio
# still compares like with like).
#
# Usage: bench-load.sh [N] [M] [MiB]   (root, /dev/fuse; "make bench-load",
# BENCH_LOAD_ARGS="N M MiB"); also from the environment: N, M, MIB, WSET (8),
# PROBE_MS (20), BASE_SECS (5), PROBE_NICE (0: the probe's nice; -10 takes
# its own wake-up out of the figures, leaving forkfs's and the kernel's), VERIFY (2), FIRST_PASS (1: wait for every
# guest's first pass over its memory before b0), FORKFS_OPTS (incremental=off).
# M=0 measures the copies without readers. Needs about 3 x N x MiB of free
# space in TMPDIR (b0, b1, the dd files) and N+1 x MiB of memory for guests.
# Targets: aggregate/pwrite+fsync >= 0.8; p99 < 20 ms for status, state, ctl.
. "$top_srcdir/tests/mount/lib-mount.sh"
require_prog perl
N=${1:-${N:-32}}
M=${2:-${M:-32}}
MIB=${3:-${MIB:-128}}
WSET=${WSET:-8}
PROBE_MS=${PROBE_MS:-20}
BASE_SECS=${BASE_SECS:-5}
PROBE_NICE=${PROBE_NICE:-0}
VERIFY=${VERIFY:-2}
FIRST_PASS=${FIRST_PASS:-1}
FORKFS_OPTS=${FORKFS_OPTS-incremental=off}
[ "$VERIFY" -le "$N" ] || VERIFY=$N

now() { perl -MTime::HiRes=time -e 'printf "%.6f\n", time'; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
cfg() {
	printf '{"boot-source":{"kernel_image_path":"%s","boot_args":"wset_mib=%s"},"machine-config":{"vcpu_count":1,"mem_size_mib":%s}}\n' \
		"$GUEST_IMG" "$WSET" "$MIB"
}
SANDBOXES=$(seq -f 's%g' "$N")

# burst TAG OUT SANDBOX...: fork one child per sandbox; all block on one
# pipe until the parent closes it (the barrier), then mkdir
# SANDBOX/branches/TAG and read its "wait" file, which blocks until the copy
# has ended. Prints the release time; OUT gets one line per sandbox:
# "NAME t_mkdir t_mkdir_returned t_ended FIRST-LINE-OF-WAIT" (epoch seconds).
cat >"$TMPD/burst.pl" <<'EOF'
use strict; use warnings; use POSIX (); use Time::HiRes qw(time sleep);
my ($mnt, $tag, $out, @names) = @ARGV;
pipe(my $r, my $w) or die "pipe: $!";
my @pids;
for my $s (@names) {
	my $pid = fork // die "fork: $!";
	if (!$pid) {
		close $w; my $b; sysread($r, $b, 1);	# EOF when the parent closes
		my $t1 = time; my $ok = mkdir("$mnt/$s/branches/$tag"); my $e = "$!"; my $t2 = time;
		my $st = "mkdir-failed:$e";
		if ($ok) {
			if (open(my $f, '<', "$mnt/$s/branches/$tag/wait")) {
				my $txt = do { local $/; <$f> } // ''; ($st) = split /\n/, $txt; $st //= 'empty';
			} else { $st = "wait-failed:$!"; }
		}
		my $t3 = time;
		open(my $o, '>', "$out.$s") or POSIX::_exit(1);
		printf $o "%s %.6f %.6f %.6f %s\n", $s, $t1, $t2, $t3, $st; close $o;
		POSIX::_exit(0);
	}
	push @pids, $pid;
}
close $r;
sleep 0.3;	# every child is blocked in its read
printf "%.6f\n", time;
close $w;
waitpid($_, 0) for @pids;
EOF

# The probe: "t kind ms ok" lines until STOPFILE exists.
cat >"$TMPD/probe.pl" <<'EOF'
use strict; use warnings; use Time::HiRes qw(time sleep clock_gettime CLOCK_MONOTONIC);
my ($status, $state, $ctl, $stop, $every_ms, $out) = @ARGV;
open(my $o, '>', $out) or die "$out: $!";
$o->autoflush(1);
sub rd {
	my $t = clock_gettime(CLOCK_MONOTONIC); my $ok = 0;
	if (open(my $f, '<', $_[0])) { my ($b, $n); while (($n = sysread($f, $b, 65536))) {} $ok = defined $n; close $f; }
	return ((clock_gettime(CLOCK_MONOTONIC) - $t) * 1000, $ok);
}
sub wr {	# like the shell's "echo CMD > ctl": open O_TRUNC, one write, close
	my $t = clock_gettime(CLOCK_MONOTONIC); my $ok = 0;
	if (open(my $f, '>', $_[0])) { $ok = defined syswrite($f, $_[1]); $ok = close($f) && $ok; }
	return ((clock_gettime(CLOCK_MONOTONIC) - $t) * 1000, $ok);
}
# The wake-up control: a round trip through another process at our nice
# (one byte to an echoing child and back), two wake-ups as in any request to
# a daemon; what a request to forkfs costs above this is forkfs's.
pipe(my $er, my $ew) or die "pipe: $!"; pipe(my $br, my $bw) or die "pipe: $!";
my $echo = fork // die "fork: $!";
if (!$echo) { close $ew; close $br; my $c; syswrite($bw, $c, 1) while sysread($er, $c, 1); exit 0; }
close $er; close $bw;
sub echo_rt {
	my $t = clock_gettime(CLOCK_MONOTONIC); my $c;
	my $ok = syswrite($ew, 'x', 1) && sysread($br, $c, 1);
	return ((clock_gettime(CLOCK_MONOTONIC) - $t) * 1000, $ok ? 1 : 0);
}
my $cmd = 'pause';
until (-e $stop) {
	my $t = time;
	printf $o "%.6f status %.3f %d\n", $t, rd($status);
	printf $o "%.6f state %.3f %d\n", $t, rd($state);
	my ($ms, $ok) = wr($ctl, "$cmd\n");
	printf $o "%.6f ctl %.3f %d\n", $t, $ms, $ok;
	$cmd = $cmd eq 'pause' ? 'resume' : 'pause' if $ok;
	printf $o "%.6f proc-version %.3f %d\n", $t, rd('/proc/version');
	printf $o "%.6f wake-up %.3f %d\n", $t, echo_rt();
	sleep($every_ms / 1000);
}
close $ew; waitpid($echo, 0);
close $o;
EOF

# stats FILE KIND FROM TO: "p50 p99 max" in ms (nearest rank) of KIND's
# samples taken in [FROM, TO], then the count and the failures.
stats() {
	awk -v k="$2" -v a="$3" -v b="$4" '$2 == k && $1 >= a && $1 <= b { print $3, $4 }' "$1" |
		sort -n | awk '{ v[NR] = $1; if (!$2) f++ }
		function r(p,  i) { i = int(NR * p / 100 + 0.999999); if (i < 1) i = 1; return v[i] }
		END { if (!NR) { print "- - - 0 0"; exit }
		      printf "%.2f %.2f %.2f %d %d\n", r(50), r(99), v[NR], NR, f + 0 }'
}

MINIVMS_BEFORE=$(pgrep -c forkfs-minivm || true)
mount_forkfs "$FORKFS_OPTS"
diag "N=$N sandboxes of $MIB MiB (1 vCPU, wset_mib=$WSET), M=$M readers;" \
	"forkfs -o ${FORKFS_OPTS:-(defaults)}; $(sed -n 's/^forkfs: FUSE passthrough //p' "$FLOG" | tail -1 | sed 's/^/passthrough /')"
T=$(now)
for s in $SANDBOXES idle; do
	start_sandbox "$s" "$(cfg)" || bail "start $s: $(tail -n 3 "$MNT/$s/log" 2>/dev/null)"
done
diag "$((N + 1)) sandboxes started in $(elapsed "$T" "$(now)") s"
if [ "$FIRST_PASS" = 1 ]; then
	T=$(now)
	for s in $SANDBOXES idle; do
		wait_for 1800 first_pass_done "$s" 1 || bail "$s: no first pass"
	done
	diag "first passes done after $(elapsed "$T" "$(now)") s"
fi

# b0 of every sandbox (all at once too), the readers' files and idle's.
T=$(perl "$TMPD/burst.pl" "$MNT" b0 "$TMPD/b0" $SANDBOXES idle) || bail "b0 burst"
cat "$TMPD"/b0.* >"$TMPD/b0"
[ "$(awk '$5 == "ready"' "$TMPD/b0" | wc -l)" -eq $((N + 1)) ] ||
	bail "not every b0 became ready: $(awk '$5 != "ready"' "$TMPD/b0" | head -3)"
diag "$((N + 1)) b0 ready after $(awk -v t0="$T" '{ if ($4 > m) m = $4 } END { printf "%.1f", m - t0 }' "$TMPD/b0") s"

# ---- the load ----
PROBE_STOP=$TMPD/probe.stop
READ_STOP=$TMPD/read.stop
on_exit "touch '$PROBE_STOP' '$READ_STOP'"
nice -n "$PROBE_NICE" perl "$TMPD/probe.pl" "$MNT/idle/branches/b0/status" "$MNT/idle/state" "$MNT/idle/ctl" \
	"$PROBE_STOP" "$PROBE_MS" "$TMPD/probe" &
PROBE_PID=$!
on_exit "kill $PROBE_PID"
BASE0=$(now)
sleep "$BASE_SECS"
BASE1=$(now)
# reader J copies s((J-1) mod N + 1)/b0; one line in reads.J per whole copy
READERS=
for j in $(seq "$M"); do
	f="$MNT/s$(( (j - 1) % N + 1 ))/branches/b0/memory.bin"
	( while [ ! -e "$READ_STOP" ]; do
		if cp "$f" /dev/null; then echo ok; else echo fail; sleep 0.1; fi
	  done >"$TMPD/reads.$j" ) &
	READERS="$READERS $!"
done
on_exit "kill $READERS"
R0=$(now)
sleep 1	# the readers in full swing
T0=$(perl "$TMPD/burst.pl" "$MNT" b1 "$TMPD/b1" $SANDBOXES) || bail "b1 burst"
touch "$READ_STOP" "$PROBE_STOP"
R1=$(now)
wait $READERS $PROBE_PID	# not a bare wait: forkfs is a job of this shell too
cat "$TMPD"/b1.* >"$TMPD/b1"
T1=$(awk '{ if ($4 > m) m = $4 } END { printf "%.6f", m }' "$TMPD/b1")
COPY_S=$(elapsed "$T0" "$T1")

# ---- every b1 ready and complete ----
bytes=0 bad=0
for s in $SANDBOXES; do
	st=$(cat "$MNT/$s/branches/b1/status")
	stored=$(echo "$st" | sed -n 's/^bytes_stored: //p')
	copied=$(echo "$st" | sed -n 's/^bytes_copied: //p')
	if [ "$(echo "$st" | head -n1)" != ready ] || [ -z "$stored" ] || [ "$stored" != "$copied" ]; then
		diag "$s/b1: $(echo "$st" | tr '\n' ' ')"
		bad=$((bad + 1))
	fi
	bytes=$((bytes + ${stored:-0}))
done
MODE=$(sed -n 's/^mode: //p' "$MNT/s1/branches/b1/status")
check "all $N b1 branches ready, bytes_copied = bytes_stored" [ "$bad" -eq 0 ]
reads_ok=$(cat "$TMPD"/reads.* 2>/dev/null | grep -c "^ok$" || true)
reads_fail=$(cat "$TMPD"/reads.* 2>/dev/null | grep -c "^fail$" || true)
check "no reader's cp failed ($reads_ok whole copies)" [ "$reads_fail" -eq 0 ]
probe_fail=$(awk -v a="$BASE0" '$1 >= a && !$4' "$TMPD/probe" | wc -l)
check "no probe operation failed" [ "$probe_fail" -eq 0 ]

# ---- the store's pwrite+fsync: N parallel dd of MiB each, same total ----
sync
D0=$(now)
DDS=
for i in $(seq "$N"); do
	dd if=/dev/zero of="$STORE/dd.$i" bs=1M count="$MIB" conv=fsync status=none &
	DDS="$DDS $!"
done
wait $DDS
D1=$(now)
rm -f "$STORE"/dd.*
DD_S=$(elapsed "$D0" "$D1")
DD_BYTES=$((N * MIB * 1048576))

# ---- restores of a sample of the b1s ----
for s in $SANDBOXES idle; do (echo stop >"$MNT/$s/ctl") & done
all_stopped() {
	local s
	for s in $SANDBOXES idle; do [ "$(cat "$MNT/$s/state")" = stopped ] || return 1; done
}
wait_for 60 all_stopped || diag "not every sandbox stopped"
# verifies NAME: its guest (1 vCPU) said "verify ok", and nothing said FAIL
verifies() { has_verified "$1" 1 || grep -q 'verify FAIL' "$MNT/$1/log"; }
for k in $(seq "$VERIFY"); do
	i=$(( k == 1 ? 1 : (k == VERIFY ? N : k) ))
	T=$(now)
	start_sandbox "v$i" "{\"restore\":{\"branch\":\"s$i/b1\"}}" && wait_for 600 verifies "v$i"
	check "a sandbox restored from s$i/b1 verifies its memory ($(elapsed "$T" "$(now)") s)" \
		bash -c "grep -q 'guest: verify ok' '$MNT/v$i/log' && ! grep -q 'verify FAIL' '$MNT/v$i/log'"
	echo stop >"$MNT/v$i/ctl"
done

# ---- the table ----
mbps() { awk -v b="$1" -v t="$2" 'BEGIN { printf "%.0f", (t > 0 ? b / 1048576 / t : 0) }'; }
COPY_MBPS=$(mbps "$bytes" "$COPY_S")
DD_MBPS=$(mbps "$DD_BYTES" "$DD_S")
RD_MBPS=$(mbps $((reads_ok * MIB * 1048576)) "$(elapsed "$R0" "$R1")")
echo "load: $N sandboxes of $MIB MiB branched at once (mode $MODE), $M readers cp'ing ready" \
	"branches; guests on $(guest_cpu); probe every $PROBE_MS ms from the idle sandbox, at nice $PROBE_NICE"
echo "copy: $((bytes / 1048576)) MiB in $COPY_S s; pwrite+fsync: $N parallel dd, $((DD_BYTES / 1048576)) MiB in $DD_S s;" \
	"readers: $reads_ok whole copies, $RD_MBPS MB/s"
echo "mkdir b1 returned after (ms): $(awk '{ print ($3 - $2) * 1000 }' "$TMPD/b1" | sort -n |
	awk '{ v[NR] = $1 } END { printf "p50 %.0f, max %.0f", v[int((NR + 1) / 2)], v[NR] }');" \
	"b1 ready after (s): $(awk -v t0="$T0" '{ print $4 - t0 }' "$TMPD/b1" | sort -n |
	awk '{ v[NR] = $1 } END { printf "first %.2f, p50 %.2f, last %.2f", v[1], v[int((NR + 1) / 2)], v[NR] }')"
KINDS="status state ctl proc-version wake-up"
printf '%-8s %9s %7s %9s %10s %6s' phase sandboxes readers "copy MB/s" "fsync MB/s" ratio
for k in $KINDS; do printf ' | %-26s' "$k p50/p99/max ms"; done
echo
# row PHASE SANDBOXES READERS COPY FSYNC RATIO FROM TO
row() {
	local k from=$7 to=$8 phase=${1// /-}
	printf '%-8s %9s %7s %9s %10s %6s' "$1" "$2" "$3" "$4" "$5" "$6"
	for k in $KINDS; do
		# shellcheck disable=SC2046
		set -- $(stats "$TMPD/probe" "$k" "$from" "$to")
		printf ' | %-26s' "$1/$2/$3 (n=$4)"
		figure "load.$phase.$k.p99_ms" "$2"
	done
	echo
}
row "no load" 0 0 - - - "$BASE0" "$BASE1"
COPY_RATIO=$(awk -v a="$COPY_MBPS" -v b="$DD_MBPS" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')
row load "$N" "$M" "$COPY_MBPS" "$DD_MBPS" "$COPY_RATIO" "$T0" "$T1"
echo "targets: ratio >= 0.8; status, state, ctl p99 < 20 ms"
figure load.copy_ratio "$COPY_RATIO"
figure load.shape "$N/$M/$MIB"

check "unmount exits 0" unmount_forkfs
no_vmm_left() { [ -z "$(live_vmm_pids)" ]; }
check "no VMM of this run left" wait_for 10 no_vmm_left
diag "forkfs-minivm processes: $MINIVMS_BEFORE before, $(pgrep -c forkfs-minivm || true) after"
done_testing
