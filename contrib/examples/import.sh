#!/bin/sh
# import.sh — start a sandbox from an exported branch (export.sh) on this
# host: unpack it into DIR and start a new sandbox NAME from its files. The
# files are readable by their owner only, so forkfs must be mounted with
# -o allow_path= naming DIR or a directory above it (forkfs(8), SECURITY
# CONSIDERATIONS).
#
#   import.sh MOUNT NAME ARCHIVE.tar.zst DIR
set -eu
[ $# -eq 4 ] || { echo "usage: $0 MOUNT NAME ARCHIVE.tar.zst DIR" >&2; exit 2; }
mnt=$1 name=$2 archive=$3 dir=$4
mkdir -p "$dir"
tar --zstd -xf "$archive" -C "$dir"
dir=$(cd "$dir/branch" && pwd)
mkdir "$mnt/$name"
printf '{"restore":{"snapshot_path":"%s/vmstate","mem_file_path":"%s/memory.bin"}}\n' \
	"$dir" "$dir" >"$mnt/$name/config.json"
echo start >"$mnt/$name/ctl" || { tail -n 3 "$mnt/$name/log" >&2; exit 1; }
echo "started $name from $archive: $(cat "$mnt/$name/state")"
