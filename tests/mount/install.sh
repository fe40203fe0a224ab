#!/bin/sh
# tests/mount/install.sh — "make install" into a DESTDIR, then the installed
# forkfs, mounted through mount.fuse3 (-t fuse PROG#SOURCE, as fstab's
# fuse.forkfs would run it from the standard path), finds the installed
# forkfs-minivm beside it without -o vmm=, and boots the installed guest
# image; the installed man pages are there.
. "$top_srcdir/tests/mount/lib-mount.sh"

DEST=$TMPD/dest
on_exit "umount -l '$MNT' 2>/dev/null"
check "make install DESTDIR=..." sh -c "make -s -C '$top_builddir' install DESTDIR='$DEST' >'$TMPD/install.log' 2>&1" ||
	diag "$(tail -n 20 "$TMPD/install.log")"
sbin_forkfs=$(find "$DEST" -path '*/sbin/forkfs' -type f | head -n1)
bin_minivm=$(find "$DEST" -path '*/bin/forkfs-minivm' -type f | head -n1)
guest=$(find "$DEST" -path '*/forkfs/guest.img' -type f | head -n1)
check "forkfs is in sbin" [ -x "$sbin_forkfs" ]
# A libfuse outside the default directories (contrib/setup-deps.sh's) is
# found through the rpath configure adds.
check "... and finds its libraries ($(ldd "$sbin_forkfs" 2>/dev/null | sed -n 's/^[[:space:]]*\(libfuse3[^ ]*\) => \([^ ]*\).*/\1 => \2/p'))" \
	sh -c "ldd '$sbin_forkfs' >/dev/null && ! ldd '$sbin_forkfs' | grep -q 'not found'"
check "forkfs-minivm is in bin beside it" [ "$(dirname "$(dirname "$bin_minivm")")" = "$(dirname "$(dirname "$sbin_forkfs")")" ]
check "the guest image is in the package's lib directory" [ -s "$guest" ]
check "man pages forkfs(8) and forkfs-minivm(1)" sh -c "
	[ -s \"\$(find '$DEST' -path '*/man8/forkfs.8' | head -n1)\" ] &&
	[ -s \"\$(find '$DEST' -path '*/man1/forkfs-minivm.1' | head -n1)\" ]"

unit=$(find "$DEST" -path '*/systemd/system/forkfs@.service' -type f | head -n1)
check "the systemd unit forkfs@.service is installed" [ -s "$unit" ]
check "... its ExecStart is the installed forkfs" grep -q "^ExecStart=${sbin_forkfs#"$DEST"} -f " "$unit"
if command -v systemd-analyze >/dev/null; then
	# verify wants the binaries and the man page it names: the DESTDIR ones.
	sed "s|^ExecStart=[^ ]*|ExecStart=$sbin_forkfs|" "$unit" >"$TMPD/forkfs@test.service"
	check "systemd-analyze verify forkfs@test.service" sh -c "
		cd '$TMPD' && MANPATH='$(dirname "$(dirname "$(find "$DEST" -path '*/man8/forkfs.8' | head -n1)")")' \
		systemd-analyze verify '$TMPD/forkfs@test.service' >'$TMPD/verify.out' 2>&1 &&
		[ ! -s '$TMPD/verify.out' ]" || diag "$(cat "$TMPD/verify.out")"
else
	diag "no systemd-analyze: the unit is not verified"
fi

check "mount through mount.fuse3, no -o vmm=" \
	env -u FORKFS_MINIVM mount -t fuse "$sbin_forkfs#forkfs" "$MNT" -o "store=$STORE"
check "boot the installed guest with the installed VMM" start_sandbox s1 "$(GUEST_IMG=$guest boot_config 64 1)"
check "s1 is running" [ "$(cat "$MNT/s1/state")" = running ]
check "the VMM is the installed forkfs-minivm" log_has s1 "launched VMM $(dirname "$sbin_forkfs")/../bin/forkfs-minivm"
check "the guest runs (its boot line)" log_has s1 "guest: boot vcpu=0"
check "stop s1" sh -c "echo stop > '$MNT/s1/ctl'"
check "umount" umount "$MNT"
check "... and forkfs exits" wait_for 20 forkfs_gone

# An fstab line (the installed forkfs named with "PROG#SOURCE", since the
# DESTDIR is not in mount's path): mount MOUNTPOINT finds it there.
printf '%s#forkfs %s fuse store=%s,noauto 0 0\n' "$sbin_forkfs" "$MNT" "$STORE" >"$TMPD/fstab"
check "mount -T FSTAB MOUNTPOINT (an fstab line)" env -u FORKFS_MINIVM mount -T "$TMPD/fstab" "$MNT"
check "... mounted as forkfs, fuse.forkfs" grep -q "^forkfs $MNT fuse.forkfs " /proc/mounts
check "... s1 is still there (the store)" [ "$(cat "$MNT/s1/state")" = stopped ]
# Daemonized, with a store to load (which asks for a compaction pass before
# the fork): the store's maintenance thread runs in the daemon, started after
# the fork (a thread alive across fork() would be gone in the child).
check "start s1 again" sh -c "echo start > '$MNT/s1/ctl'"
check "branch s1 twice (the second one incremental)" sh -c "
	mkdir '$MNT/s1/branches/i1' && cat '$MNT/s1/branches/i1/wait' >/dev/null &&
	mkdir '$MNT/s1/branches/i2' && cat '$MNT/s1/branches/i2/wait' >/dev/null &&
	grep -qx 'mode: live-incremental' '$MNT/s1/branches/i2/status'"
check "rmdir i1, the parent of i2" rmdir "$MNT/s1/branches/i1"
check "... the daemon folds the hidden layer it leaves into i2" \
	wait_for 30 sh -c "! ls -a '$STORE/sandboxes/s1/branches' | grep -q '^\.layer-'"
check "... its compactor thread exists" sh -c "grep -qx forkfs-compact /proc/\$(pgrep -f 'forkfs.*store=$STORE' | head -1)/task/*/comm"
check "rmdir i2" rmdir "$MNT/s1/branches/i2"
check "stop s1" sh -c "echo stop > '$MNT/s1/ctl'"
check "umount" umount "$MNT"
check "... and forkfs exits" wait_for 20 forkfs_gone
[ "$_tap_failed" -eq 0 ] || dump_logs
done_testing
