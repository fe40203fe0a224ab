#!/bin/bash
# contrib/demo-minivm.sh — forkfs-minivm on its own: boot a guest (2 vCPUs,
# 256 MiB) that keeps writing its memory, pause it, take a Full snapshot,
# restore it in a fresh minivm process and show the guest's own verdict.
# Run as root after a build; BUILD_DIR defaults to ./build.
set -u
BUILD_DIR=${BUILD_DIR:-./build}
MINIVM=$BUILD_DIR/contrib/minivm/forkfs-minivm
GUEST=$(cd "$BUILD_DIR" && pwd)/contrib/minivm/guest.img
[ -x "$MINIVM" ] && [ -f "$GUEST" ] || { echo "demo: build first (no $MINIVM or $GUEST)" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || { echo "demo: run as root" >&2; exit 1; }
[ -w /dev/kvm ] || echo "demo: no usable /dev/kvm: the guest runs on the emulated CPU"

WORK=$(mktemp -d /tmp/minivm-demo.XXXXXX)
PIDS=""
cleanup() { for p in $PIDS; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done; rm -rf "$WORK"; }
trap cleanup EXIT

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
# call SOCK METHOD PATH BODY: show the curl command, run it, show the answer.
call() {
	echo "\$ curl --unix-socket $1 -X $2 http://localhost$3 -d '$4'"
	curl -sS --unix-socket "$1" -X "$2" -H 'Content-Type: application/json' \
		-d "$4" -w '  -> HTTP %{http_code}\n' "http://localhost$3" || exit 1
}
start() { # NAME: a minivm with its console in $WORK/NAME.console
	rm -f "$WORK/$1.sock"
	"$MINIVM" --api-sock "$WORK/$1.sock" >"$WORK/$1.console" 2>"$WORK/$1.log" &
	PIDS="$PIDS $!"
	for _ in $(seq 50); do [ -S "$WORK/$1.sock" ] && return; sleep 0.1; done
	echo "demo: minivm did not start: $(cat "$WORK/$1.log")" >&2; exit 1
}

say "1. Start forkfs-minivm and boot its guest: 2 vCPUs, 256 MiB"
start source
S=$WORK/source.sock
call "$S" PUT /boot-source "{\"kernel_image_path\":\"$GUEST\"}"
call "$S" PUT /machine-config '{"vcpu_count":2,"mem_size_mib":256}'
call "$S" PUT /actions '{"action_type":"InstanceStart"}'
sleep 1
echo "guest console:"; sed 's/^/    /' "$WORK/source.console"

say "2. The guest stamps its pages continuously; pause it and take a Full snapshot"
call "$S" PATCH /vm '{"state":"Paused"}'
call "$S" PUT /snapshot/create "{\"snapshot_path\":\"$WORK/vmstate\",\"mem_file_path\":\"$WORK/memory.bin\",\"snapshot_type\":\"Full\"}"
ls -l "$WORK/vmstate" "$WORK/memory.bin" | sed 's/^/    /'
kill "$(echo $PIDS | awk '{print $1}')"

say "3. Restore into a fresh minivm process (shared mapping), resume"
start restored
R=$WORK/restored.sock
call "$R" PUT /snapshot/load "{\"snapshot_path\":\"$WORK/vmstate\",\"mem_backend\":{\"backend_type\":\"File\",\"backend_path\":\"$WORK/memory.bin\",\"shared\":true},\"resume_vm\":true}"
for _ in $(seq 100); do
	[ "$(grep -c 'guest: verify' "$WORK/restored.console")" -ge 2 ] && break
	sleep 0.2
done

say "4. The restored guest checks every page against the counters in its registers"
grep 'guest: verify' "$WORK/restored.console" | sed 's/^/    /'
if [ "$(grep -c 'guest: verify ok' "$WORK/restored.console")" -ge 2 ] &&
   ! grep -q 'verify FAIL' "$WORK/restored.console"; then
	echo; echo "demo: OK: both vCPUs verified their memory after the restore"
	exit 0
fi
echo; echo "demo: FAILED: no 'verify ok' from every vCPU" >&2
exit 1
