#!/bin/bash
# bench-fanout.sh — what starting children from one branch costs (issue #8):
# for each size, boot a 1-vCPU guest with wset_mib=16, let it finish its
# first pass, branch it, stop it, drop the page cache, then start N children
# one after another, first the old way (a restore from the branch's files
# named in config.json: each child copies the image into a memfd of its own)
# (as many as fit in half the free memory) and then from the branch (each
# maps the branch's template privately). Per
# way: start -> running per child (the ctl write returns once the VM runs),
# p50 and max; wall time for all N (mkdir and config.json included); host
# memory added per child (drop in MemAvailable over N, 3 s after every child
# has verified its memory, so each has rewritten its working set) and the
# memory file's private bytes per child.
# Usage: bench-fanout.sh [N] [MiB...]   (root, /dev/fuse; "make bench-fanout")
. "$top_srcdir/tests/mount/lib-mount.sh"
N=${1:-16}
shift || true
SIZES=${*:-256 1024 4096}

secs() { date +%s.%N; }
ms() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.0f", (b - a) * 1000 }'; }
avail_kib() { sed -n 's/^MemAvailable: *\([0-9]*\) kB/\1/p' /proc/meminfo; }
pct() { sort -n | awk -v p="$1" '{ v[NR] = $1 } END { i = int(NR * p / 100 + 0.5); if (i < 1) i = 1; if (i > NR) i = NR; print v[i] }'; }

# fan WAY CONFIG LABEL [COUNT]: start COUNT (default N) children with CONFIG,
# print one table row.
fan() {
	local way=$1 cfg=$2 i t0 t1 w0 a0 a1 priv=0 times="" N=${4:-$N}
	sync; echo 3 >/proc/sys/vm/drop_caches
	a0=$(avail_kib)
	w0=$(secs)
	for i in $(seq "$N"); do
		mkdir "$MNT/$way$i" && printf '%s\n' "$cfg" >"$MNT/$way$i/config.json" || bail "child $i"
		t0=$(secs)
		echo start >"$MNT/$way$i/ctl" || bail "start of child $i: $(tail -n 3 "$MNT/$way$i/log")"
		t1=$(secs)
		[ "$(cat "$MNT/$way$i/state")" = running ] || bail "child $i is not running"
		times="$times$(ms "$t0" "$t1")
"
	done
	wall=$(ms "$w0" "$(secs)")
	# Each restored guest first checks all of its memory (reads only; 10 s
	# and more for 4 GiB on the emulated CPU), then rewrites its working set.
	for i in $(seq "$N"); do
		wait_for 300 has_verified "$way$i" 1 || diag "$way$i has not verified"
	done
	sleep 3
	a1=$(avail_kib)
	for i in $(seq "$N"); do
		priv=$((priv + $(sed -n 's/^private: //p' "$MNT/$way$i/memory")))
	done
	printf '%-9s %-26s %8s %8s %9s %14s %14s\n' "$SIZE MiB" "$3" \
		"$(echo -n "$times" | pct 50)" "$(echo -n "$times" | pct 100)" "$wall" \
		"$(( (a0 - a1) / 1024 / N ))" "$(( priv / 1048576 / N ))"
	for i in $(seq "$N"); do echo stop >"$MNT/$way$i/ctl"; rmdir "$MNT/$way$i"; done
}

mount_forkfs
echo "fan-out: $N children per branch, one after another; guests on $(guest_cpu)"
printf '%-9s %-26s %8s %8s %9s %14s %14s\n' size way "p50 ms" "max ms" "all ms" \
	"MiB/child" "private MiB"
for SIZE in $SIZES; do
	printf '{"boot-source":{"kernel_image_path":"%s","boot_args":"wset_mib=16"},"machine-config":{"vcpu_count":1,"mem_size_mib":%s}}\n' \
		"$GUEST_IMG" "$SIZE" >"$TMPD/boot.json"
	start_sandbox p "$(cat "$TMPD/boot.json")" || bail "boot $SIZE MiB"
	# the parent's first pass over its memory: only then is it all written
	wait_for 600 grep -q 'first pass done' "$MNT/p/log" || bail "no first pass in $SIZE MiB"
	mkdir "$MNT/p/branches/b" || bail "branch"
	wait_for 600 is_done p b && is_ready p b || bail "branch: $(cat "$MNT/p/branches/b/status")"
	echo stop >"$MNT/p/ctl"
	B=$STORE/sandboxes/p/branches/b
	# the old way, with as many children as fit in half the free memory
	nf=$(( $(avail_kib) / 2 / (SIZE * 1024) ))
	[ "$nf" -gt "$N" ] && nf=$N
	if [ "$nf" -ge 2 ]; then
		fan f "{\"restore\":{\"snapshot_path\":\"$B/vmstate\",\"mem_file_path\":\"$B/memory.bin\"}}" \
			"files, memfd each (N=$nf)" "$nf"
	else
		printf '%-9s %-26s skipped: 2 copies would not fit\n' "$SIZE MiB" "files, memfd each"
	fi
	fan t '{"restore":{"branch":"p/b"}}' "branch template (N=$N)"
	rmdir "$MNT/p/branches/b" && rmdir "$MNT/p" || bail "clean-up"
done
unmount_forkfs || diag "unmount failed"
ok "benchmark ran"
done_testing
