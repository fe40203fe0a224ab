#!/bin/sh
# checkpoints.sh — periodic checkpoints with retention: branch a running
# sandbox every INTERVAL seconds, COUNT times (0: until stopped), keep the last
# KEEP branches and delete older ones. A branch that running sandboxes were
# started from cannot be deleted (rmdir says EBUSY): it is kept and retried
# on the next round. One branch of a sandbox copies at a time (a mkdir
# meanwhile first completes the previous copy), so each round waits for the
# previous checkpoint's copy, to branch on time. After the first, checkpoints
# are incremental: each stores what the guest wrote since the one before.
# Branches are named ckpt-YYYYmmdd-HHMMSS-N.
#
#   checkpoints.sh MOUNT SANDBOX INTERVAL KEEP [COUNT]
set -eu
[ $# -ge 4 ] || { echo "usage: $0 MOUNT SANDBOX INTERVAL KEEP [COUNT]" >&2; exit 2; }
mnt=$1 sb=$2 interval=$3 keep=$4 count=${5:-0}
dir=$mnt/$sb/branches
n=0
last=""

# why WHAT: the sandbox log's last line about WHAT, without its timestamp
# (other lines, such as a copy ending, may have been logged since).
why() { grep -F -- "$1" "$mnt/$sb/log" | tail -n 1 | sed 's/^[^ ]* [^ ]* //'; }

prune() {
	# oldest first: the names sort by time
	ls "$dir" | grep '^ckpt-' | sort | head -n "-$keep" | while read -r old; do
		if rmdir "$dir/$old" 2>/dev/null; then
			echo "deleted $old"
		else
			echo "kept $old: $(why "rmdir branches/$old")"
		fi
	done
}

while [ "$count" -eq 0 ] || [ "$n" -lt "$count" ]; do
	n=$((n + 1))
	tag=ckpt-$(date +%Y%m%d-%H%M%S)-$n
	# the previous copy must end first: "wait" blocks until it has
	[ -n "$last" ] && cat "$dir/$last/wait" >/dev/null 2>&1 || true
	# mkdir returns once the VM runs again (about a millisecond of pause);
	# the copy goes on in the background.
	if mkdir "$dir/$tag"; then
		echo "branched $tag ($(head -n 1 "$dir/$tag/status"))"
		last=$tag
	else
		echo "skipped $tag: $(why "mkdir branches/$tag")"
	fi
	prune
	[ "$count" -ne 0 ] && [ "$n" -ge "$count" ] && break
	sleep "$interval"
done
