#!/bin/sh
# tests/mount/passthrough.sh — FUSE passthrough of finished branches (forkfs(8),
# -o passthrough=). The evidence that a read was passed through is that it
# does not need forkfs: a file is opened, forkfs is stopped (SIGSTOP), and a
# reader that makes no other call than read(2) on that fd (no fstat: a
# GETATTR would need forkfs too) either completes or hangs.
#   - a branch still copying is never passed through: with forkfs stopped, a
#     read of its memory.bin hangs; its content is right once forkfs runs;
#   - a file opened during the copy and still open after it ends keeps the
#     inode on forkfs's path: a second open then works too (no EIO from the
#     kernel's one-mode-per-inode rule), and both read the store's bytes;
#   - a ready branch's memory.bin and vmstate, never read through the mount
#     before (nothing in the page cache), read completely with forkfs
#     stopped, byte for byte the store files; two opens at once share it;
#   - with -o passthrough=off the same read hangs until forkfs runs again.
# Where forkfs was built without passthrough (libfuse < 3.16), or the kernel
# or the lack of CAP_SYS_ADMIN keeps it off, forkfs says why at mount, the
# passthrough checks are skipped and the rest still runs
# (FORKFS_EXPECT_PASSTHROUGH=1 makes "off" a failure instead; so does CI
# when the build has passthrough: then only a kernel without it, or a
# forkfs that failed to use it, would keep it off, and CI runs on a machine
# whose kernel has it).
. "$top_srcdir/tests/mount/lib-mount.sh"
require_prog perl
require_prog timeout
on_exit '[ -n "$FORKFS_PID" ] && kill -CONT "$FORKFS_PID"'

passthrough_line() { grep "^forkfs: FUSE passthrough" "$FLOG" | tail -1; }
has_passthrough_line() { [ "$(grep -c '^forkfs: FUSE passthrough' "$FLOG")" -ge "$1" ]; }

B=$STORE/sandboxes/s1/branches
# A 64 MiB guest that writes all its memory once, then only its first 4 MiB:
# a capped copy (16 MiB/s) of a full branch then takes about 4 s.
CONFIG=$(printf '{"boot-source":{"kernel_image_path":"%s","boot_args":"wset_mib=4"},"machine-config":{"vcpu_count":1,"mem_size_mib":64}}' "$GUEST_IMG")

mount_forkfs copy_rate=16,incremental=off
check "forkfs says at mount whether FUSE passthrough is in use" wait_for 10 has_passthrough_line 1
line=$(passthrough_line)
diag "$line"
case "$line" in
*"passthrough on"*) pt=yes ;;
*) pt= ;;
esac
if [ -n "${CI:-}" ] && grep -q '^#define HAVE_FUSE_PASSTHROUGH 1' "$top_builddir/config.h"; then
	FORKFS_EXPECT_PASSTHROUGH=1
fi
if [ -n "${FORKFS_EXPECT_PASSTHROUGH:-}" ]; then
	check "FUSE passthrough is on (expected: CI with a build that has it, or FORKFS_EXPECT_PASSTHROUGH)" [ -n "$pt" ]
fi
check "boot s1 (64 MiB, 1 vCPU, wset 4 MiB)" start_sandbox s1 "$CONFIG"
check "its guest has written all its memory once" wait_for 120 first_pass_done s1 1

# ---- a branch still copying: never passed through ----
check "mkdir branches/b1" mkdir "$MNT/s1/branches/b1"
exec 3<"$MNT/s1/branches/b1/memory.bin"
check "b1 is copying, its memory.bin open" [ "$(status_state s1 b1)" = copying ]
read_stopped 2 "$TMPD/b1.stopped"
rc=$?
check "with forkfs stopped, a read of the copying b1 hangs (reads go through forkfs)" hung "$rc"
check "... and nothing was read" [ ! -s "$TMPD/b1.stopped" ]
check "cat b1/wait: ready" sh -c "[ \"\$(head -n1 '$MNT/s1/branches/b1/wait')\" = ready ]"
check "the fd opened during the copy reads the store's memory.bin" cmp -s "$B/b1/memory.bin" - <&3
exec 4<"$MNT/s1/branches/b1/memory.bin"
check "a second open after ready, the first still open, reads it too (no EIO)" \
	cmp -s "$B/b1/memory.bin" - <&4
exec 3<&- 4<&-
check "b1's memory.bin, opened again once closed, is the store's" \
	cmp -s "$B/b1/memory.bin" "$MNT/s1/branches/b1/memory.bin"
check "b1's vmstate is the store's" cmp -s "$B/b1/vmstate" "$MNT/s1/branches/b1/vmstate"

# ---- a ready branch never read through the mount: passed through ----
check "mkdir branches/b2" mkdir "$MNT/s1/branches/b2"
check "cat b2/wait: ready" sh -c "[ \"\$(head -n1 '$MNT/s1/branches/b2/wait')\" = ready ]"
check "echo stop > ctl (the guest no longer writes)" sh -c "echo stop >'$MNT/s1/ctl'"
if [ -n "$pt" ]; then
	exec 3<"$MNT/s1/branches/b2/memory.bin" 5<"$MNT/s1/branches/b2/memory.bin"
	read_stopped 30 "$TMPD/b2.bin"
	rc=$?
	check "with forkfs stopped, b2's memory.bin (never read before) reads to its end" [ "$rc" -eq 0 ]
	check "... byte for byte the store file" cmp -s "$B/b2/memory.bin" "$TMPD/b2.bin"
	exec 3<&5 5<&-
	rm -f "$TMPD/b2.bin"
	read_stopped 30 "$TMPD/b2.bin"
	rc=$?
	check "... a second open at the same time too (one backing file per inode)" \
		sh -c "[ $rc -eq 0 ] && cmp -s '$B/b2/memory.bin' '$TMPD/b2.bin'"
	exec 3<&-
	exec 3<"$MNT/s1/branches/b2/vmstate"
	read_stopped 30 "$TMPD/b2.vmstate"
	rc=$?
	check "with forkfs stopped, b2's vmstate reads to its end, the store's bytes" \
		sh -c "[ $rc -eq 0 ] && cmp -s '$B/b2/vmstate' '$TMPD/b2.vmstate'"
	exec 3<&-
	check "closed and opened again, b2's memory.bin is still the store's" \
		cmp -s "$B/b2/memory.bin" "$MNT/s1/branches/b2/memory.bin"
else
	for what in "b2's memory.bin reads with forkfs stopped" "... byte for byte" \
		"... a second open at the same time" "b2's vmstate reads with forkfs stopped"; do
		skip_one "$what: FUSE passthrough is off (${line#*: })"
	done
	check "b2's memory.bin is the store's" cmp -s "$B/b2/memory.bin" "$MNT/s1/branches/b2/memory.bin"
fi
check "forkfs is alive and answers" sh -c "kill -0 $FORKFS_PID && cat '$MNT/s1/state' >/dev/null"
check "unmount exits 0" unmount_forkfs

# ---- -o passthrough=off: reads go through forkfs again ----
mount_forkfs passthrough=off
check "forkfs says passthrough is off, and why" wait_for 10 has_passthrough_line 2
diag "$(passthrough_line)"
check "... -o passthrough=off (or a reason it was off anyway)" \
	sh -c "grep '^forkfs: FUSE passthrough' '$FLOG' | tail -1 | grep -q 'passthrough off: '"
exec 3<"$MNT/s1/branches/b2/memory.bin"
read_stopped 2 "$TMPD/off.bin"
rc=$?
check "with forkfs stopped, a read of b2's memory.bin hangs" hung "$rc"
check "... and returns the store's bytes once forkfs runs" cmp -s "$B/b2/memory.bin" - <&3
exec 3<&-
check "b2's vmstate is the store's" cmp -s "$B/b2/vmstate" "$MNT/s1/branches/b2/vmstate"
check "unmount exits 0" unmount_forkfs
check "no VMM left running" [ -z "$(live_vmm_pids)" ]
[ "$_tap_failed" -eq 0 ] || dump_logs
done_testing
