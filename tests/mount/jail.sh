#!/bin/bash
# tests/mount/jail.sh — the jail of the VMMs forkfs launches (forkfs(8),
# SECURITY), seen from outside and from inside: the VMM runs as a uid of its
# own without capabilities, in its own root holding only its files, in new
# PID/IPC/UTS/network namespaces and its own cgroup with a memory limit; it
# cannot open a host file or write its root. A live branch of a jailed VMM and
# a restore from it (jailed too) verify. config.json's files are checked by
# forkfs: /etc/shadow, a symbolic link to it, a FIFO, a directory, a writable
# drive outside -o allow_path are refused at once, with the reason in the log,
# and no VMM is launched for them.
. "$top_srcdir/tests/mount/lib-mount.sh"
command -v nsenter >/dev/null || skip_all "nsenter (util-linux) missing"

mount_forkfs
fpid1=$FORKFS_PID
check "boot s1 (64 MiB, 2 vCPUs) in a jail" start_sandbox s1 "$(boot_config 64 2)"
pid=$(vmm_pid s1)
check "the log says how it is jailed" log_has s1 "jail: root .*, uid [0-9]*, cgroup forkfs-"
uid=$(sed -n 's/.*jail: root .*, uid \([0-9]*\),.*/\1/p' "$STORE/sandboxes/s1/log" | tail -1)
diag "VMM pid $pid, jail uid $uid"
st() { sed -n "s/^$1:[[:space:]]*//p" "/proc/$pid/status"; }
check "the VMM runs as its jail's uid (all four ids)" [ "$(st Uid | tr -s '\t ' ' ')" = "$uid $uid $uid $uid" ]
check "... and gid" [ "$(st Gid | tr -s '\t ' ' ')" = "$uid $uid $uid $uid" ]
check "... with no supplementary groups" [ -z "$(st Groups | tr -d ' \t')" ]
check "... no capabilities" [ "$(st CapEff)" = 0000000000000000 ] && [ "$(st CapPrm)" = 0000000000000000 ]
check "... and no_new_privs" [ "$(st NoNewPrivs)" = 1 ]
check "it is pid 1 of its own PID namespace" [ "$(st NSpid | awk '{print $NF}')" = 1 ]
for ns in mnt pid ipc uts net; do
	check "its $ns namespace is not ours" [ "$(readlink "/proc/$pid/ns/$ns")" != "$(readlink "/proc/self/ns/$ns")" ]
done
check "its root holds its kernel, not the host's /etc" \
	sh -c "[ -f /proc/$pid/root/kernel ] && [ ! -e /proc/$pid/root/etc ] && [ ! -e /proc/$pid/root/tmp ]"
check "no core dumps" grep -q "^Max core file size *0 *0" "/proc/$pid/limits"
cg=$(grep -m1 -E '(^0::|memory)' "/proc/$pid/cgroup" | cut -d: -f3)
diag "its cgroup: $cg"
# A machine whose cgroups forkfs cannot use gets a jail without one (and a
# line in the log): this machine's are checked, others' are not.
if grep -q "jail: without a cgroup" "$STORE/sandboxes/s1/log"; then
	diag "$(grep -o 'jail: without a cgroup.*' "$STORE/sandboxes/s1/log" | head -1)"
	skip_one "no usable cgroup hierarchy here: its own cgroup"
	skip_one "no usable cgroup hierarchy here: its memory limit"
else
	check "it is in a cgroup of its own" sh -c "echo '$cg' | grep -q '/forkfs-[0-9]*-[0-9]*$'"
	limit=$(cat "/sys/fs/cgroup/memory$cg/memory.limit_in_bytes" 2>/dev/null || cat "/sys/fs/cgroup$cg/memory.max")
	check "... whose memory limit is the guest's size and a margin (336 MiB)" [ "$limit" = $((336 << 20)) ]
fi

# From inside: its namespaces, its uid.
inside() { nsenter -t "$pid" -m -p -i -u -n -S "$uid" -G "$uid" "$@"; }
check "inside, the VMM's kernel file is readable (an idmapped bind)" inside sh -c 'head -c 4 /kernel >/dev/null'
check "inside, a host file cannot be opened" sh -c "! inside cat /etc/hostname 2>/dev/null"
check "inside, the root is read-only" sh -c "! inside sh -c ': > /x' 2>/dev/null"
check "inside, the kernel cannot be written" sh -c "! inside sh -c ': >> /kernel' 2>/dev/null"
check "inside, /run is the VMM's (its API socket)" inside test -S /run/api.sock
check "inside, the hostname is not the host's" [ "$(inside hostname)" = forkfs-vmm ]

# A second sandbox: another uid.
check "boot s2" start_sandbox s2 "$(boot_config 64 1)"
uid2=$(sed -n 's/.*jail: root .*, uid \([0-9]*\),.*/\1/p' "$STORE/sandboxes/s2/log" | tail -1)
check "s2's VMM has another uid ($uid2)" [ -n "$uid2" ] && [ "$uid2" != "$uid" ]

# Branch and restore with the jail on.
sleep 0.3
check "mkdir s1/branches/b1 (live, jailed VMM)" mkdir "$MNT/s1/branches/b1"
check "b1 is a live branch" [ "$(status_key s1 b1 mode)" = live ]
check "b1 becomes ready" wait_for 60 is_ready s1 b1
check "no snapshot file is left in the jail's directory" [ -z "$(ls -A "$STORE/sandboxes/s1/.snapshots")" ]
check "b1's vmstate belongs to forkfs again" [ "$(stat -c %u "$STORE/sandboxes/s1/branches/b1/vmstate")" = 0 ]
check "b1 restores (jailed) and verifies on both vCPUs" restore_verifies r1 s1 b1 2
rpid=$(vmm_pid r1)
check "the restored VMM is jailed too" [ "$(sed -n 's/^Uid:[[:space:]]*\([0-9]*\).*/\1/p' "/proc/$rpid/status")" != 0 ]
check "a second restore of b1 verifies (fan-out, jailed)" restore_verifies r2 s1 b1 2

# config.json's files, checked by forkfs.
mkfifo "$TMPD/fifo"
ln -s /etc/shadow "$TMPD/shadow-link"
mkdir "$TMPD/adir"
cp "$GUEST_IMG" "$TMPD/kernel-rw"
chmod 0644 "$TMPD/kernel-rw"
refused() {	# refused NAME CONFIG LOG-PART
	local t0 t1
	mkdir "$MNT/$1" && printf '%s\n' "$2" >"$MNT/$1/config.json" || return 1
	t0=$(date +%s%N)
	if echo start >"$MNT/$1/ctl" 2>/dev/null; then diag "$1 started"; return 1; fi
	t1=$(date +%s%N)
	[ $(( (t1 - t0) / 1000000 )) -lt 5000 ] || { diag "$1: refusal took $(( (t1 - t0) / 1000000 )) ms"; return 1; }
	log_has "$1" "start failed: .*$3" || return 1
	! grep -q "launched VMM" "$STORE/sandboxes/$1/log"
}
restore_cfg() { printf '{"restore":{"snapshot_path":"%s","mem_file_path":"%s"}}' "$1" "$2"; }
kernel_cfg() { printf '{"boot-source":{"kernel_image_path":"%s"},"machine-config":{"vcpu_count":1,"mem_size_mib":64}}' "$1"; }
B=$STORE/sandboxes/s1/branches/b1
check "mem_file_path=/etc/shadow is refused" refused x1 "$(restore_cfg "$B/vmstate" /etc/shadow)" \
	"memory image /etc/shadow: not allowed"
check "... and a symbolic link to it" refused x2 "$(restore_cfg "$B/vmstate" "$TMPD/shadow-link")" \
	"memory image $TMPD/shadow-link: not allowed"
check "a FIFO is refused, without blocking" refused x3 "$(restore_cfg "$B/vmstate" "$TMPD/fifo")" \
	"is not a regular file"
check "a directory is refused" refused x4 "$(restore_cfg "$B/vmstate" "$TMPD/adir")" "is not a regular file"
check "kernel_image_path=/etc/shadow is refused" refused x5 "$(kernel_cfg /etc/shadow)" "kernel /etc/shadow: not allowed"
check "a writable drive outside allow_path is refused" refused x6 \
	"{\"boot-source\":{\"kernel_image_path\":\"$GUEST_IMG\"},\"drives\":[{\"drive_id\":\"d\",\"is_root_device\":false,\"path_on_host\":\"$TMPD/kernel-rw\"}]}" \
	"drive d $TMPD/kernel-rw: not allowed"
check "a read-only drive everyone may read is accepted" sh -c "
	mkdir '$MNT/x7' && printf '%s\n' '{\"boot-source\":{\"kernel_image_path\":\"$GUEST_IMG\"},\"machine-config\":{\"vcpu_count\":1,\"mem_size_mib\":64},\"drives\":[{\"drive_id\":\"d\",\"is_root_device\":false,\"is_read_only\":true,\"path_on_host\":\"$TMPD/kernel-rw\"}]}' >'$MNT/x7/config.json' &&
	echo start >'$MNT/x7/ctl'"
check "... and bound read-only into its jail" sh -c "[ -f /proc/$(vmm_pid x7)/root/drive-d ]"
check "unmount exits 0" unmount_forkfs

# -o allow_path: the writable drive is accepted there.
mount_forkfs "allow_path=$TMPD"
fpid2=$FORKFS_PID
check "with allow_path, the writable drive is accepted" sh -c "echo start >'$MNT/x6/ctl'"
xpid=$(vmm_pid x6)
check "... and writable by the jailed VMM" nsenter -t "$xpid" -m -S "$(sed -n 's/^Uid:[[:space:]]*\([0-9]*\).*/\1/p' "/proc/$xpid/status")" \
	-G "$(sed -n 's/^Gid:[[:space:]]*\([0-9]*\).*/\1/p' "/proc/$xpid/status")" sh -c ': >> /drive-d'
check "... which left the host file owned by root" [ "$(stat -c %u "$TMPD/kernel-rw")" = 0 ]
check "unmount exits 0" unmount_forkfs
cgs() { ls -d /sys/fs/cgroup/*/forkfs-"$1"-* /sys/fs/cgroup/memory"$(dirname "$cg")"/forkfs-"$1"-* \
	/sys/fs/cgroup"$(dirname "$cg")"/forkfs-"$1"-* 2>/dev/null; }
# A wrapper script as VMM: refused at start with the reason.
printf '#!/bin/sh\nexec "%s" "$@"\n' "$MINIVM" >"$TMPD/vmm-script"
chmod +x "$TMPD/vmm-script"
mount_forkfs "vmm=$TMPD/vmm-script"
fpid3=$FORKFS_PID
check "a script as VMM cannot start in a jail" expect_fail "Input/output error" \
	start_sandbox w1 "$(boot_config 64 1)"
check "... and the log says why" log_has w1 "jail: .*vmm-script is a script, which cannot run in a jail"
check "unmount exits 0" unmount_forkfs
check "the jails' cgroups are gone" [ -z "$(cgs "$fpid1")$(cgs "$fpid2")$(cgs "$fpid3")" ]
check "no VMM left running" [ -z "$(live_vmm_pids)" ]
[ "$_tap_failed" -eq 0 ] || dump_logs
done_testing
