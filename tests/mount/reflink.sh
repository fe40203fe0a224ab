#!/bin/sh
# tests/mount/reflink.sh — a store that shares extents (XFS with reflink, on
# a loop file): a ready incremental branch is flattened in the background
# into a full image whose pages share the parent's extents (forkfs(8),
# -o incremental=). Checked:
#   - forkfs finds that the store shares extents and says so;
#   - b2, incremental to b1, is ready with only its written pages stored,
#     then becomes a full layer (its pages.map names no parent) while the
#     store's used space grows by far less than the image: the pages it took
#     from b1 are shared, not copied;
#   - b2's image is unchanged by it: it reads the same through the mount
#     as its store file, its status keeps its parent and bytes_stored, and rmdir b1 then removes b1 outright (no hidden
#     layer is kept for b2), and a sandbox restored from b2 verifies every
#     page of its memory against the branch point;
#   - with FUSE passthrough on, the flattened b2's memory.bin reads with
#     forkfs stopped (it is one file now); an incremental branch on ext4
#     is composed and never is (passthrough.sh).
. "$top_srcdir/tests/mount/lib-mount.sh"
require_prog mkfs.xfs
require_prog perl
require_prog timeout
on_exit '[ -n "$FORKFS_PID" ] && kill -CONT "$FORKFS_PID"'

MIB=128
truncate -s 1G "$TMPD/xfs.img" || bail "cannot make the loop file"
mkfs.xfs -q -m reflink=1 "$TMPD/xfs.img" || bail "mkfs.xfs failed"
STORE=$TMPD/xfs-store
mkdir -p "$STORE"
mount -o loop "$TMPD/xfs.img" "$STORE" || bail "cannot mount the XFS loop file"
on_exit "umount -l '$STORE'"
chmod 0700 "$STORE"
used_kib() { sync; df -k --output=used "$STORE" | tail -1 | tr -d ' '; }
B=$STORE/sandboxes/s1/branches
# parent_id of a pages.map: the third 8-byte word of its header (layer.h)
# A guest that writes all its memory once, then only its first 8 MiB.
CONFIG=$(printf '{"boot-source":{"kernel_image_path":"%s","boot_args":"wset_mib=8"},"machine-config":{"vcpu_count":2,"mem_size_mib":%s}}' "$GUEST_IMG" "$MIB")
map_parent() { od -An -tu8 -j16 -N8 "$B/$1/pages.map" | tr -d ' '; }
is_flat() { [ "$(map_parent "$1")" = 0 ]; }

mount_forkfs
wait_for 10 grep -q '^forkfs: FUSE passthrough' "$FLOG"
case "$(grep '^forkfs: FUSE passthrough' "$FLOG" | tail -1)" in
*"passthrough on"*) pt=yes ;;
*) pt= ;;
esac
check "boot s1 ($MIB MiB, 2 vCPUs, working set 8 MiB)" start_sandbox s1 "$CONFIG"
check "its guests have written all their memory once" wait_for 120 first_pass_done s1 2
check "mkdir branches/b1 (a full branch: the first of its VMM)" mkdir "$MNT/s1/branches/b1"
check "b1 is ready" wait_for 120 is_ready s1 b1
sleep 0.5
used0=$(used_kib)
check "mkdir branches/b2" mkdir "$MNT/s1/branches/b2"
check "b2 is ready" wait_for 120 is_ready s1 b2
check "b2 is incremental to b1" \
	[ "$(status_key s1 b2 mode)/$(status_key s1 b2 parent)" = live-incremental/b1 ]
stored=$(status_key s1 b2 bytes_stored)
diag "b2 stored $((stored / 1048576)) MiB of its $MIB MiB"
check "b2 stored less than its whole image" [ "$stored" -lt $((MIB * 1048576)) ]
check "forkfs found that the store shares extents" \
	wait_for 30 grep -q "the store shares extents (reflinks)" "$FLOG"
check "b2 is flattened: its pages.map names no parent" wait_for 60 is_flat b2
used1=$(used_kib)
diag "store used: $used0 KiB before b2, $used1 KiB after b2 and its flattening"
check "the flattening shared b1's extents (used grew by less than half the image)" \
	[ $((used1 - used0)) -lt $((MIB * 1024 / 2)) ]
check "b2's store file is one dense image of the full size" \
	[ "$(stat -c %s "$B/b2/memory.bin")" -eq $((MIB * 1048576)) ]

# ---- the image did not change: through the mount, then without b1 ----
check "b2's memory.bin through the mount equals its store file" \
	cmp -s "$MNT/s1/branches/b2/memory.bin" "$B/b2/memory.bin"
if [ -n "$pt" ]; then
	exec 3<"$MNT/s1/branches/b2/memory.bin"
	read_stopped 20 "$TMPD/b2.stopped"
	rc=$?
	exec 3<&-
	check "with forkfs stopped, the flattened b2 reads completely (passed through)" [ "$rc" -eq 0 ]
	check "... byte for byte its store file" cmp -s "$TMPD/b2.stopped" "$B/b2/memory.bin"
	rm -f "$TMPD/b2.stopped"
else
	skip_one "FUSE passthrough is off: $(grep '^forkfs: FUSE passthrough' "$FLOG" | tail -1)"
fi
check "b2's status after it: still parent b1, bytes_stored unchanged (nothing was copied)" \
	[ "$(status_key s1 b2 parent)/$(status_key s1 b2 bytes_stored)" = "b1/$stored" ]
check "stop s1" sh -c "echo stop >'$MNT/s1/ctl'"
check "rmdir b1" rmdir "$MNT/s1/branches/b1"
check "b1 is gone from the store, no hidden layer kept" \
	sh -c "[ ! -e '$B/b1' ] && ! ls -a '$B' | grep -q '^\.layer-'"
check "a sandbox restored from b2 boots" start_sandbox r2 '{"restore":{"branch":"s1/b2"}}'
check "... and its guests verify every page against the branch point" \
	wait_for 300 has_verified r2 2
check "no guest reported a bad page" sh -c "! grep -q 'verify FAIL' '$MNT/r2/log'"
echo stop >"$MNT/r2/ctl"
check "unmount" unmount_forkfs
done_testing
