# tests/minivm/lib-minivm.sh — sourced by the minivm shell tests after
# tests/lib.sh: start minivm processes, call their API, wait for guest lines.
: "${MINIVM_HTTP:=$top_builddir/tests/minivm/minivm-http}"
: "${WP_COPY:=$top_builddir/tests/minivm/wp-copy}"

# vm_start NAME [MINIVM ARGS...]: API on $TMPD/NAME.sock, guest console in
# $TMPD/NAME.out, log in $TMPD/NAME.err, pid in $TMPD/NAME.pid.
vm_start() {
	local name="$1"; shift
	rm -f "$TMPD/$name.sock"
	"$MINIVM" --api-sock "$TMPD/$name.sock" "$@" >"$TMPD/$name.out" 2>"$TMPD/$name.err" &
	echo $! >"$TMPD/$name.pid"
	on_exit "kill -9 $! 2>/dev/null; wait $! 2>/dev/null"
	wait_for 5 test -S "$TMPD/$name.sock" || { diag "$(cat "$TMPD/$name.err")"; return 1; }
}
vm_pid() { cat "$TMPD/$1.pid"; }
vm_alive() { kill -0 "$(vm_pid "$1")" 2>/dev/null; }
vm_stop() {
	local pid; pid=$(vm_pid "$1")
	kill "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
	return 0
}

# api NAME METHOD PATH [BODY]: sets $status and $body (curl, Accept: */*).
api() {
	local out
	local -a data=()
	[ $# -ge 4 ] && data=(-H 'Content-Type: application/json' --data-binary "$4")
	out=$(curl -sS --max-time 30 --unix-socket "$TMPD/$1.sock" -X "$2" "${data[@]}" \
		-w '\n%{http_code}' "http://localhost$3" 2>&1)
	status=${out##*$'\n'}
	body=${out%$'\n'*}
	[ "$body" = "$status" ] && body=""
	return 0
}

# expect_api DESC STATUS BODY NAME METHOD PATH [BODY]: one TAP line.
expect_api() {
	local desc="$1" want_status="$2" want_body="$3"; shift 3
	api "$@"
	if [ "$status" = "$want_status" ] && [ "$body" = "$want_body" ]; then
		ok "$desc"
	else
		not_ok "$desc"
		diag "want: $want_status $want_body"
		diag "got:  $status $body"
	fi
}

fault() { printf '{"fault_message":"%s"}' "$1"; }

# raw NAME N: send stdin over one connection, print the N responses' bytes.
raw() { "$MINIVM_HTTP" "$TMPD/$1.sock" -n "$2"; }

# count_lines NAME PATTERN: guest console lines matching.
count_lines() { grep -c -- "$2" "$TMPD/$1.out" 2>/dev/null; true; }
# wait_lines NAME PATTERN N [SECONDS]
has_lines() { [ "$(grep -c -- "$2" "$TMPD/$1.out" 2>/dev/null)" -ge "$3" ] 2>/dev/null; }
wait_lines() { wait_for "${4:-30}" has_lines "$1" "$2" "$3"; }

# vm_boot NAME VCPUS MEM_MIB: configure and start; waits for each vCPU's boot line.
vm_boot() {
	api "$1" PUT /boot-source "{\"kernel_image_path\":\"$GUEST_IMG\"}"
	[ "$status" = 204 ] || { diag "boot-source: $status $body"; return 1; }
	api "$1" PUT /machine-config "{\"vcpu_count\":$2,\"mem_size_mib\":$3}"
	[ "$status" = 204 ] || { diag "machine-config: $status $body"; return 1; }
	api "$1" PUT /actions '{"action_type":"InstanceStart"}'
	[ "$status" = 204 ] || { diag "InstanceStart: $status $body"; return 1; }
	wait_lines "$1" "guest: boot vcpu=" "$2" 30 || { diag "no boot lines"; return 1; }
}
