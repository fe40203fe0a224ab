#!/bin/sh
# tests/mount/overlap.sh — a branch every second on a large guest (issue #9:
# 4 GiB, working set 50 MiB, 2 vCPUs): each mkdir after the first returns
# within the second although the first branch's full copy takes far longer
# (copy_rate caps it at 256 MiB/s: 16 s), every later branch
# is incremental to the one before, all become ready, and every branch
# restores and the guest verifies its whole memory on every vCPU. Then the
# branches are removed (middle ones first) and the store holds nothing more.
# OVERLAP_MIB, OVERLAP_N override the size and the count.
. "$top_srcdir/tests/mount/lib-mount.sh"

MEM=${OVERLAP_MIB:-4096}
N=${OVERLAP_N:-8}
cfg() {
	printf '{"boot-source":{"kernel_image_path":"%s","boot_args":"wset_mib=50"},"machine-config":{"vcpu_count":2,"mem_size_mib":%s}}\n' \
		"$GUEST_IMG" "$MEM"
}
now_ms() { echo $(($(date +%s%N) / 1000000)); }
# verifies NEW TAG: a sandbox restored from s1's branch verifies on both
# vCPUs (its whole memory: 60 s for a large guest), then stops and goes.
verifies() {
	start_sandbox "$1" "{\"restore\":{\"branch\":\"s1/$2\"}}" || return 1
	wait_for 120 has_verified "$1" 2 || { diag "$1: $(verified_vcpus "$1") vCPUs verified"; return 1; }
	! grep -q 'verify FAIL' "$MNT/$1/log" || return 1
	echo stop >"$MNT/$1/ctl"
	wait_for 30 sh -c "[ \"\$(cat '$MNT/$1/state')\" = stopped ]" && rmdir "$MNT/$1"
}

# The background copy capped at 256 MiB/s: the first branch's copy lasts
# 16 s at 4 GiB whatever this machine's disk does, so the branches overlap.
mount_forkfs copy_rate=256
check "boot s1 ($MEM MiB, 2 vCPUs, working set 50 MiB)" start_sandbox s1 "$(cfg)"
check "the guest has written every page once" wait_for 600 first_pass_done s1 2

slow=0
for i in $(seq "$N"); do
	t0=$(now_ms)
	mkdir "$MNT/s1/branches/b$i" || bail "mkdir b$i"
	took=$(($(now_ms) - t0))
	diag "b$i: mkdir ${took} ms; $(tr '\n' ' ' <"$MNT/s1/branches/b$i/status")"
	# b1 is full: its mkdir pre-arms all of memory first, and no copy
	# runs yet. The later ones are what must not wait for b1's copy.
	if [ "$i" -gt 1 ] && [ "$took" -ge 1000 ]; then
		slow=$((slow + 1))
	elif [ "$i" -lt "$N" ] && [ "$took" -lt 1000 ]; then
		sleep "0.$(printf '%03d' $((1000 - took)))"
	fi
done
b1_then=$(status_state s1 b1)
check "every mkdir after b1's returned within its second ($slow did not)" [ "$slow" -eq 0 ]
check "b1 was still copying when b$N was taken" [ "$b1_then" = copying ]
for i in $(seq 2 "$N"); do
	check "b$i is incremental to b$((i - 1))" \
		[ "$(status_key s1 b$i mode)/$(status_key s1 b$i parent)" = live-incremental/b$((i - 1)) ]
done
for i in $(seq "$N"); do
	check "b$i becomes ready" wait_for 300 is_ready s1 b$i
done
for i in $(seq "$N"); do
	diag "b$i: ready after $(status_key s1 b$i elapsed_ms) ms, stores $(($(status_key s1 b$i bytes_stored) / 1048576)) MiB"
done
for i in $(seq "$N"); do
	check "b$i restores and verifies" verifies r$i b$i
done
echo stop >"$MNT/s1/ctl"
for i in $(seq 2 "$N") 1; do
	check "rmdir b$i" rmdir "$MNT/s1/branches/b$i"
done
check "the store keeps no layer" wait_for 30 sh -c "[ -z \"\$(ls -A '$STORE/sandboxes/s1/branches')\" ]"
check "unmount" unmount_forkfs
done_testing
