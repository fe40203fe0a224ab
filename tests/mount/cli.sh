#!/bin/sh
# The command line: --help and the man page list the same -o options, --version,
# and every bad option value is refused with a clear message before anything
# is mounted; a good copy_rate mounts.
. "$top_srcdir/tests/mount/lib-mount.sh"

MAN=$top_srcdir/man/forkfs.8
help_opts=$("$FORKFS" --help 2>&1 | sed -n 's/^ *-o \([a-z_]*\)=.*/\1/p' | sort -u | tr '\n' ' ')
man_opts=$(sed -n 's/^\.It Fl o Cm \([a-z_]*\)= .*/\1/p' "$MAN" | sort -u | tr '\n' ' ')
diag "--help: $help_opts"
diag "forkfs.8: $man_opts"
check "--help exits 0 and shows the usage" sh -c "'$FORKFS' --help | grep -q '^usage: .*MOUNTPOINT'"
check "--help lists forkfs's -o options" [ -n "$help_opts" ]
check "forkfs.8 documents exactly the options --help lists" [ "$help_opts" = "$man_opts" ]
check "--version prints forkfs's version" sh -c "'$FORKFS' --version 2>&1 | grep -q '^forkfs [0-9]'"
check "no mount point: a usage error" expect_fail "no mount point" "$FORKFS" -o "store=$STORE"
check "a mount point that does not exist is refused" \
	expect_fail "bad mount point" "$FORKFS" -f -o "store=$STORE" "$TMPD/no-such-dir"
# Exit status 2, as for every usage error (a sanitizer build exits 23 on a leak).
check "... with exit status 2" sh -c "'$FORKFS' -f -o 'store=$STORE' '$TMPD/no-such-dir' 2>/dev/null;
	[ \$? -eq 2 ]"

# bad OPTION MESSAGE: refused, with the message, and nothing mounted.
bad() {
	expect_fail "$2" "$FORKFS" -f -o "store=$STORE,vmm=$MINIVM,$1" "$MNT" && ! is_mounted
}
check "-o mode=fast is refused" bad mode=fast "mode= takes auto, live or full"
check "-o branch_mode=0200 (no owner read) is refused" bad branch_mode=0200 "branch_mode= takes"
check "-o branch_mode=9 (not octal) is refused" bad branch_mode=9 "branch_mode= takes"
check "-o branch_mode=04755 (beyond 0666) is refused" bad branch_mode=04755 "branch_mode= takes"
check "-o copy_rate=fast is refused" bad copy_rate=fast "copy_rate= takes"
check "-o copy_rate=-1 is refused" bad copy_rate=-1 "copy_rate= takes"
check "-o copies=many is refused" bad copies=many "copies= takes"
check "-o copies=5000 is refused" bad copies=5000 "copies= takes"
check "-o incremental=maybe is refused" bad incremental=maybe "incremental= takes on or off"
check "-o passthrough=maybe is refused" bad passthrough=maybe "passthrough= takes on or off"
check "-o seccomp=maybe is refused" bad seccomp=maybe "seccomp= takes"
check "-o log_max=big is refused" bad log_max=big "log_max= takes"
check "-o jail=maybe is refused" bad jail=maybe "jail= takes on or off"
check "-o jail_ids=5 (no count) is refused" bad jail_ids=5 "jail_ids= takes FIRST:COUNT"
check "-o jail_ids=0:10 (root) is refused" bad jail_ids=0:10 "jail_ids= takes FIRST:COUNT"
check "-o allow_path= of a missing directory is refused" bad "allow_path=$TMPD/none" "is not a directory"
check "a store inside the mount point is refused" \
	expect_fail "store" "$FORKFS" -f -o "store=$MNT/store,vmm=$MINIVM" "$MNT"

# Started with a low soft RLIMIT_NOFILE, which forkfs raises to the hard one.
nofile_soft=$(ulimit -Sn)
ulimit -Sn 512
mount_forkfs copy_rate=256,branch_mode=0440,copies=3
ulimit -Sn "$nofile_soft"
check "copy_rate=256,branch_mode=0440,copies=3 mounts" is_mounted
check "forkfs says the copy rate is capped" grep -q "at 256 MiB/s at most" "$FLOG"
check "forkfs says at most 3 copies run at once" grep -q "at most 3 background copies at once" "$FLOG"
# Open files cost fds: forkfs runs with its hard RLIMIT_NOFILE as the soft one.
nofile() { sed -n 's/^Max open files *\([0-9a-z]*\) *\([0-9a-z]*\).*/\1 \2/p' "/proc/$1/limits"; }
soft_is_hard() { set -- $(nofile "$1"); [ -n "$1" ] && [ "$1" != 512 ] && [ "$1" = "$2" ]; }
diag "RLIMIT_NOFILE of forkfs (soft hard): $(nofile "$FORKFS_PID")"
check "forkfs raised its soft RLIMIT_NOFILE to the hard one" soft_is_hard "$FORKFS_PID"
check "unmount exits 0" unmount_forkfs

# ---- systemd's readiness notification (Type=notify) ----
# A datagram socket stands for systemd's: forkfs sends READY=1 once mounted,
# and its VMMs do not inherit NOTIFY_SOCKET.
perl -MIO::Socket::UNIX -e '
	my $s = IO::Socket::UNIX->new(Type => SOCK_DGRAM, Local => $ARGV[0]) or die "bind: $!";
	my $m = ""; local $SIG{ALRM} = sub { exit 1 }; alarm 20;
	$s->recv($m, 4096); open(my $f, ">", $ARGV[1]); print $f $m; close $f' \
	"$TMPD/notify.sock" "$TMPD/notify.msg" &
notify_pid=$!
wait_for 5 test -S "$TMPD/notify.sock"
NOTIFY_SOCKET=$TMPD/notify.sock mount_forkfs
check "forkfs sent READY=1 to NOTIFY_SOCKET" sh -c "wait $notify_pid 2>/dev/null; grep -q '^READY=1\$' '$TMPD/notify.msg'"
sed 's/^/# /' "$TMPD/notify.msg"; echo
check "... with its pid as MAINPID" grep -q "^MAINPID=$FORKFS_PID\$" "$TMPD/notify.msg"
check "boot s9 to look at its VMM's environment" start_sandbox s9 "$(boot_config 16 1)"
check "the VMM did not inherit NOTIFY_SOCKET" sh -c "! tr '\\0' '\\n' </proc/$(vmm_pid s9)/environ | grep -q NOTIFY_SOCKET"
echo stop >"$MNT/s9/ctl"
check "unmount exits 0" unmount_forkfs

# ---- the mount(8) form: "forkfs SOURCE MOUNTPOINT -o OPTS" ----
# mount.fuse3 runs it so for "mount -t fuse.forkfs SOURCE DIR" (with forkfs in
# its PATH, /usr/sbin and friends) and fstab; "-t fuse PROG#SOURCE" names the
# program, so this test needs nothing installed.
blocks() { stat -f -c '%b %S' "$1"; }
check "mount -t fuse 'FORKFS#forkfs' DIR -o store=,vmm= (mount.fuse3)" \
	mount -t fuse "$FORKFS#forkfs" "$MNT" -o "store=$STORE,vmm=$MINIVM"
check "/proc/mounts: source forkfs, type fuse.forkfs" grep -q "^forkfs $MNT fuse.forkfs " /proc/mounts
diag "$(grep " $MNT fuse" /proc/mounts)"
check "statfs (df) reports the store's file system" [ "$(blocks "$MNT")" = "$(blocks "$STORE")" ]
check "the daemonized forkfs serves the mount" sh -c "mkdir '$MNT/m1' && [ \"\$(cat '$MNT/m1/state')\" = created ]"
check "umount" umount "$MNT"
check "... and forkfs exits" wait_for 20 forkfs_gone
check "two arguments: the first names the file system (mysrc)" sh -c "
	'$FORKFS' mysrc '$MNT' -o 'store=$STORE,vmm=$MINIVM' &&
	grep -q '^mysrc $MNT fuse.forkfs ' /proc/mounts"
check "umount" umount "$MNT"
check "... and forkfs exits" wait_for 20 forkfs_gone

[ "$_tap_failed" -eq 0 ] || dump_logs
done_testing
