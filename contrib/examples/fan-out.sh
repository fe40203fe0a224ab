#!/bin/sh
# fan-out.sh — start N sandboxes from one branch, wait until each runs,
# report what each costs (its memory file: the children share the branch's
# template and hold only the pages they write), then stop and remove them.
#
#   fan-out.sh MOUNT SANDBOX/TAG N [PREFIX]
set -eu
[ $# -ge 3 ] || { echo "usage: $0 MOUNT SANDBOX/TAG N [PREFIX]" >&2; exit 2; }
mnt=$1 branch=$2 n=$3 prefix=${4:-child}

i=1
while [ "$i" -le "$n" ]; do
	mkdir "$mnt/$prefix$i"
	printf '{"restore":{"branch":"%s"}}\n' "$branch" >"$mnt/$prefix$i/config.json"
	# The write returns once the VM runs (or fails, with the reason in log).
	echo start >"$mnt/$prefix$i/ctl" || { tail -n 3 "$mnt/$prefix$i/log" >&2; exit 1; }
	i=$((i + 1))
done
sleep 1
printf '%-12s %-8s %12s %12s %12s\n' sandbox state total private shared
i=1
while [ "$i" -le "$n" ]; do
	m=$(cat "$mnt/$prefix$i/memory")
	printf '%-12s %-8s %12s %12s %12s\n' "$prefix$i" "$(cat "$mnt/$prefix$i/state")" \
		"$(echo "$m" | sed -n 's/^total: //p')" "$(echo "$m" | sed -n 's/^private: //p')" \
		"$(echo "$m" | sed -n 's/^shared: //p')"
	i=$((i + 1))
done
[ "${FANOUT_KEEP:-}" ] && exit 0	# leave them running
i=1
while [ "$i" -le "$n" ]; do
	echo stop >"$mnt/$prefix$i/ctl"
	rmdir "$mnt/$prefix$i"
	i=$((i + 1))
done
