#!/bin/sh
# export.sh — pack a branch for another host: wait until it is ready, copy it
# out of the mount with cp -r (memory.bin and vmstate are plain files) and
# pack it with tar --zstd.
#
#   export.sh MOUNT SANDBOX/TAG ARCHIVE.tar.zst
set -eu
[ $# -eq 3 ] || { echo "usage: $0 MOUNT SANDBOX/TAG ARCHIVE.tar.zst" >&2; exit 2; }
mnt=$1 branch=$2 archive=$3
src=$mnt/${branch%%/*}/branches/${branch#*/}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# A copying branch can be read already (reads wait for the pages they need);
# waiting for ready first keeps the cp at disk speed. "wait" blocks until the
# copy has ended and then says how.
[ "$(head -n 1 "$src/wait")" = ready ] || { cat "$src/status" >&2; exit 1; }
cp -r "$src" "$work/branch"
tar --zstd -cf "$archive" -C "$work" branch/vmstate branch/memory.bin
echo "exported $branch to $archive ($(du -h "$archive" | cut -f1))"
