#!/bin/bash
# tests/mount/lifecycle.sh — sandbox life-cycle corners found in review:
# a ctl written through an fd opened before rmdir must not start anything
# (it once launched a VMM nobody stopped, and unmount hung); removed sandboxes
# must not leak (each once kept its log fd); a failed start leaves "failed".
. "$top_srcdir/tests/mount/lib-mount.sh"

fd_count() { ls "/proc/$FORKFS_PID/fd" | wc -l; }

mount_forkfs

# ---- ctl through an fd opened before rmdir ----
check "mkdir z1" mkdir "$MNT/z1"
boot_config 64 1 >"$MNT/z1/config.json"
exec 3>"$MNT/z1/ctl"
check "rmdir z1 while its ctl is open" rmdir "$MNT/z1"
if echo start >&3 2>"$TMPD/ctl.err"; then
	not_ok "start through the stale ctl fd fails"
else
	ok "start through the stale ctl fd fails ($(cat "$TMPD/ctl.err" | sed 's/.*: //'))"
fi
exec 3>&-
check "no VMM was launched for the removed sandbox" [ -z "$(live_vmm_pids)" ]

# ---- removed sandboxes do not leak ----
before=$(fd_count)
for i in $(seq 30); do
	mkdir "$MNT/leak$i" && printf '{"attach":{"api_socket":"/nonexistent.sock"}}' >"$MNT/leak$i/config.json" &&
		rmdir "$MNT/leak$i" || break
done
after=$(fd_count)
diag "forkfs fds: $before before 30 mkdir/rmdir, $after after"
check "30 sandboxes created and removed leave no fds behind" [ "$after" -le $((before + 2)) ]

# ---- a failed start is "failed" ----
check "mkdir bad" mkdir "$MNT/bad"
printf '{"boot-source":{"kernel_image_path":"%s"},"machine-config":{"vcpu_count":1,"mem_size_mib":64}}\n' \
	"$TMPD/no-such-kernel" >"$MNT/bad/config.json"
if echo start >"$MNT/bad/ctl" 2>"$TMPD/start.err"; then
	not_ok "start with a missing kernel fails"
else
	ok "start with a missing kernel fails ($(sed 's/.*: //' "$TMPD/start.err"))"
fi
# The jail (on by default) has forkfs open the kernel itself: ENOENT, and no VMM.
check "... with ENOENT" grep -q "No such file or directory" "$TMPD/start.err"
check "state reads failed right after" [ "$(cat "$MNT/bad/state")" = failed ]
sleep 0.5
check "... and still failed once the VMM is gone" [ "$(cat "$MNT/bad/state")" = failed ]
check "the log says why" log_has bad "start failed: jail: kernel $TMPD/no-such-kernel: No such file"
check "no VMM was launched for it" bash -c "! grep -q 'launched VMM' '$STORE/sandboxes/bad/log'"

# ---- a store inside the mount point is refused at start-up ----
mkdir -p "$TMPD/m2"
if timeout 10 "$FORKFS" -f -o "store=$TMPD/m2/store,vmm=$MINIVM" "$TMPD/m2" 2>"$TMPD/m2.err"; then
	not_ok "a store inside the mount point is refused"
	fusermount3 -u -z "$TMPD/m2"
else
	check "a store inside the mount point is refused" grep -q "must not be inside" "$TMPD/m2.err"
fi

t0=$(date +%s)
check "unmount exits 0" unmount_forkfs
check "... promptly" [ $(( $(date +%s) - t0 )) -le 10 ]
check "no VMM left running" [ -z "$(live_vmm_pids)" ]

# ---- a VMM whose output outlives it ----
# A wrapper's background child inherits the VMM's stdout and stderr; after the
# VMM exits forkfs stops waiting for their EOF, and unmount still finishes.
cat >"$TMPD/vmm-wrap" <<EOF
#!/bin/sh
sleep 120 &
echo \$! >"$TMPD/held.pid"
exec "$MINIVM" "\$@"
EOF
chmod +x "$TMPD/vmm-wrap"
on_exit 'kill -9 $(cat "$TMPD/held.pid")'
MOUNT_VMM=$TMPD/vmm-wrap
mount_forkfs jail=off	# a script using host paths: not for a jail
check "boot w1 through the wrapper" start_sandbox w1 "$(boot_config 64 1)"
check "its child holds the output pipes" kill -0 "$(cat "$TMPD/held.pid")"
check "stop w1" bash -c "echo stop > '$MNT/w1/ctl'"
check "w1 is stopped" [ "$(cat "$MNT/w1/state")" = stopped ]
check "the log says the output is still held" log_has w1 "output is still held open"
t0=$(date +%s)
check "unmount exits 0 although the pipes are still open" unmount_forkfs
check "... promptly" [ $(( $(date +%s) - t0 )) -le 10 ]
[ "$_tap_failed" -eq 0 ] || dump_logs
done_testing
