#!/bin/sh
# The forkfs demo, from nothing (Debian 12, root): install packages, build,
# then tell the main story with forkfs-minivm as the VMM:
#   mount forkfs, start a sandbox, branch it while its guest writes memory,
#   watch status fill, cp -r the branch out, start a new sandbox from the
#   branch and show the restored guest checking its own memory, unmount.
set -eu
src=$(cd "$(dirname "$0")/.." && pwd)
BUILD_DIR=${BUILD_DIR:-$src/build}
export BUILD_DIR
"$src/contrib/build.sh"

B=$BUILD_DIR
FORKFS=$B/fusefs/forkfs
MINIVM=$B/contrib/minivm/forkfs-minivm
GUEST=$B/contrib/minivm/guest.img
W=$(mktemp -d /tmp/forkfs-demo.XXXXXX)
M=$W/mnt
mkdir -p "$M" "$W/export"
mkdir -m 0700 "$W/store"	# a store only its owner can write to

cleanup() {
	if mountpoint -q "$M" 2>/dev/null; then fusermount3 -u "$M" 2>/dev/null || umount -l "$M"; fi
	[ -n "${FPID:-}" ] && { kill "$FPID" 2>/dev/null; wait "$FPID" 2>/dev/null; }
	rm -rf "$W"
}
trap cleanup EXIT INT TERM

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; sh -c "$*"; }

say "Mount forkfs (store $W/store, VMM forkfs-minivm)"
printf '$ %s\n' "forkfs -f -o store=$W/store,vmm=$MINIVM $M &"
"$FORKFS" -f -o "store=$W/store,vmm=$MINIVM" "$M" 2>"$W/forkfs.log" &
FPID=$!
for _ in $(seq 100); do mountpoint -q "$M" && break; sleep 0.05; done
mountpoint -q "$M" || { cat "$W/forkfs.log"; echo "demo: mount failed"; exit 1; }

say "Create a sandbox: 2 vCPUs, 512 MiB, the bundled self-checking guest"
run "mkdir $M/agent1"
cat >"$W/vm.json" <<EOF
{"boot-source": {"kernel_image_path": "$GUEST"},
 "machine-config": {"vcpu_count": 2, "mem_size_mib": 512}}
EOF
run "cp $W/vm.json $M/agent1/config.json"
run "echo start > $M/agent1/ctl"
run "cat $M/agent1/state"
sleep 1

say "Branch it while the guest writes (mkdir returns after the pause window)"
run "time mkdir $M/agent1/branches/before-tool-call"
run "ls -l $M/agent1/branches/before-tool-call"
for _ in 1 2 3; do run "cat $M/agent1/branches/before-tool-call/status"; sleep 0.1; done
for _ in $(seq 600); do
	head -n1 "$M/agent1/branches/before-tool-call/status" | grep -q copying || break
	sleep 0.1
done
run "cat $M/agent1/branches/before-tool-call/status"
head -n1 "$M/agent1/branches/before-tool-call/status" | grep -qx ready || { echo "demo: branch not ready"; exit 1; }

say "Export it with cp -r"
run "cp -r $M/agent1/branches/before-tool-call $W/export/"
run "ls -l $W/export/before-tool-call"

say "Start a new sandbox from the branch; its guest verifies its own memory"
run "mkdir $M/agent2"
run "echo '{\"restore\": {\"branch\": \"agent1/before-tool-call\"}}' > $M/agent2/config.json"
run "echo start > $M/agent2/ctl"
for _ in $(seq 600); do
	[ "$(grep -c 'guest: verify' "$M/agent2/log" 2>/dev/null)" -ge 2 ] && break
	sleep 0.1
done
run "grep 'guest: verify' $M/agent2/log"
ok=$(grep -c 'guest: verify ok' "$M/agent2/log" || true)

say "Stop both and unmount"
run "echo stop > $M/agent2/ctl; echo stop > $M/agent1/ctl"
run "fusermount3 -u $M"
wait "$FPID" 2>/dev/null || true
FPID=
if [ "$ok" -ge 2 ]; then
	say "Demo OK: the restored guest found its memory exactly as it was at the pause"
else
	echo "demo: the restored guest did not report verify ok on every vCPU"
	exit 1
fi
