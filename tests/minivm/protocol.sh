#!/bin/bash
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
# tests/minivm/protocol.sh — forkfs-minivm speaks Firecracker 1.12's API to
# the letter (docs/firecracker-protocol.md §0, §1, §2, §6): raw framing,
# keep-alive, strict bodies and serde-style errors, the pre-/post-boot rules
# and their messages, POST and unknown paths, --stock. The post-boot half
# needs root (guests run on KVM or the emulated CPU); it also reports the PATCH /vm round trip.
. "$top_srcdir/tests/lib.sh"
. "$top_srcdir/tests/minivm/lib-minivm.sh"

CRLF=$'\r\n'
HDR="Server: Firecracker API${CRLF}Connection: keep-alive${CRLF}"
json_resp() { # STATUS BODY [EXTRA HEADERS]
	printf 'HTTP/1.1 %s \r\n%s%sContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s' \
		"$1" "$HDR" "${3:-}" "${#2}" "$2"
}
resp_204() { printf 'HTTP/1.1 204 \r\n%s%s\r\n' "$HDR" "${1:-}"; }
req() { # METHOD PATH [BODY]
	if [ $# -ge 3 ]; then
		printf '%s %s HTTP/1.1\r\nHost: localhost\r\nAccept: */*\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s' \
			"$1" "$2" "${#3}" "$3"
	else
		printf '%s %s HTTP/1.1\r\nHost: localhost\r\nAccept: */*\r\n\r\n' "$1" "$2"
	fi
}
same_bytes() { # DESC WANT GOT
	if [ "$2" = "$3" ]; then ok "$1"; else
		not_ok "$1"; diag "want: $(printf %s "$2" | od -c | head -8)"
		diag "got:  $(printf %s "$3" | od -c | head -8)"; fi
}
P="An error occurred when deserializing the json body of a request: "

# ---- framing, on a fresh (fork-mode) minivm ------------------------------
vm_start a || bail "minivm did not start"
INFO='{"id":"anonymous-instance","state":"Not started","vmm_version":"1.12.0","app_name":"Firecracker"}'
got=$(req GET / | raw a 1)
same_bytes "GET /: 200, no reason phrase, header order, field order" "$(json_resp 200 "$INFO")" "$got"

MC='{"vcpu_count":1,"mem_size_mib":128,"smt":false,"track_dirty_pages":false,"huge_pages":"None"}'
got=$( { req GET /machine-config; req PATCH /machine-config '{"mem_size_mib":64}';
	req PUT /machine-config '{"vcpu_count":2,"mem_size_mib":64,"cpu_template":"None"}';
	req GET /version; } | raw a 4)
want=$(json_resp 200 "$MC"; resp_204; resp_204 "Deprecation: true$CRLF"
	json_resp 200 '{"firecracker_version":"1.12.0"}')
same_bytes "keep-alive: four requests on one connection; 204 without Content-Length; Deprecation header" "$want" "$got"

got=$(printf 'POST /actions HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}' | raw a 1)
ERR='{ "error": "Invalid HTTP Method: Unsupported HTTP method.'$'\n''All previous unanswered requests will be dropped." }'
same_bytes "POST: 400 with micro_http's non-JSON error body" "$(json_resp 400 "$ERR")" "$got"
got=$( { printf 'PUT / HTTP/1.1\r\nContent-Length: 60000\r\n\r\n'; } | raw a 1)
case "$got" in
*"Request payload with size 60000 is larger than the limit of 51200 allowed by server."*) ok "oversized body refused" ;;
*) not_ok "oversized body refused"; diag "$got" ;;
esac
check "connection still usable after a parse error" sh -c "$(declare -f req); req GET / | '$MINIVM_HTTP' '$TMPD/a.sock' | grep -q '^HTTP/1.1 200 '"

# ---- routing and empty/forbidden bodies ----------------------------------
expect_api "unknown path: 400 naming the first segment" 400 "$(fault 'Invalid request method and/or path: PUT nope.')" a PUT /nope/deeper '{}'
expect_api "GET unknown path" 400 "$(fault 'Invalid request method and/or path: GET vm.')" a GET /vm
expect_api "PUT without body" 400 "$(fault 'Empty PUT request.')" a PUT /actions
expect_api "PATCH without body" 400 "$(fault 'Empty PATCH request.')" a PATCH /vm
got=$(req GET / '{}' | raw a 1)
same_bytes "GET with a body" "$(json_resp 400 "$(fault 'GET request cannot have a body.')")" "$got"
expect_api "snapshot without operation" 400 "$(fault 'Missing snapshot operation type.')" a PUT /snapshot '{}'
expect_api "snapshot/other" 400 "$(fault 'Invalid request method and/or path: PUT /snapshot/other.')" a PUT /snapshot/other '{}'

# ---- strict bodies --------------------------------------------------------
expect_api "unknown field in machine-config" 400 "$(fault "${P}unknown field \`x\`, expected one of \`vcpu_count\`, \`mem_size_mib\`, \`smt\`, \`cpu_template\`, \`track_dirty_pages\`, \`huge_pages\` at line 1 column 4.")" a PUT /machine-config '{"x":1}'
expect_api "machine-config: missing field" 400 "$(fault "${P}missing field \`mem_size_mib\` at line 1 column 16.")" a PUT /machine-config '{"vcpu_count":1}'
expect_api "machine-config: wrong type" 400 "$(fault "${P}invalid type: string \\\"1\\\", expected u8 at line 1 column 17.")" a PUT /machine-config '{"vcpu_count":"1","mem_size_mib":64}'
expect_api "machine-config: 0 vCPUs" 400 "$(fault 'The vCPU number is invalid! The vCPU number can only be 1 or an even number when SMT is enabled.')" a PUT /machine-config '{"vcpu_count":0,"mem_size_mib":64}'
expect_api "actions: swagger-era payload key refused" 400 "$(fault "${P}unknown field \`payload\`, expected \`action_type\` at line 1 column 40.")" a PUT /actions '{"action_type":"InstanceStart","payload":1}'
expect_api "vm: unknown state" 400 "$(fault "${P}unknown variant \`Stopped\`, expected \`Paused\` or \`Resumed\` at line 1 column 18.")" a PATCH /vm '{"state":"Stopped"}'
expect_api "create: version refused" 400 "$(fault "${P}unknown field \`version\`, expected one of \`snapshot_type\`, \`snapshot_path\`, \`mem_file_path\` at line 1 column 10.")" a PUT /snapshot/create '{"version":"1.0","snapshot_path":"a","mem_file_path":"b"}'
expect_api "load: track_dirty_pages refused (1.13 name)" 400 "$(fault "${P}unknown field \`track_dirty_pages\`, expected one of \`snapshot_path\`, \`mem_file_path\`, \`mem_backend\`, \`enable_diff_snapshots\`, \`resume_vm\`, \`network_overrides\` at line 1 column 40.")" a PUT /snapshot/load '{"snapshot_path":"a","track_dirty_pages":true}'
expect_api "load: both mem fields" 400 "$(fault "${P}too many fields: either \`mem_backend\` or \`mem_file_path\` exclusively is required.")" a PUT /snapshot/load '{"snapshot_path":"a","mem_file_path":"b","mem_backend":{"backend_type":"File","backend_path":"b"}}'
expect_api "load: no mem field" 400 "$(fault "${P}missing field: either \`mem_backend\` or \`mem_file_path\` is required.")" a PUT /snapshot/load '{"snapshot_path":"a"}'
expect_api "drive: bad id" 400 "$(fault 'API Resource IDs can only contain alphanumeric characters and underscores.')" a PUT /drives/a-b '{"drive_id":"a-b","is_root_device":true}'
expect_api "drive: id mismatch" 400 "$(fault 'The id from the path does not match the id from the body!')" a PUT /drives/rootfs '{"drive_id":"root","is_root_device":true}'

# ---- pre-boot rules -------------------------------------------------------
expect_api "PATCH /vm before boot" 400 "$(fault 'The requested operation is not supported before starting the microVM.')" a PATCH /vm '{"state":"Paused"}'
expect_api "create before boot" 400 "$(fault 'The requested operation is not supported before starting the microVM.')" a PUT /snapshot/create '{"snapshot_path":"a","mem_file_path":"b"}'
expect_api "/uffd/wp before boot" 400 "$(fault 'The requested operation is not supported before starting the microVM.')" a PUT /uffd/wp '{"socket":"/nonexistent"}'
expect_api "InstanceStart without kernel" 400 "$(fault 'Start microVM error: Cannot start microvm without kernel configuration.')" a PUT /actions '{"action_type":"InstanceStart"}'
expect_api "drive accepted and recorded" 204 "" a PUT /drives/rootfs '{"drive_id":"rootfs","is_root_device":true,"path_on_host":"/x","is_read_only":false}'
expect_api "load after a boot resource" 400 "$(fault 'Load snapshot error: Loading a microVM snapshot not allowed after configuring boot-specific resources.')" a PUT /snapshot/load '{"snapshot_path":"a","mem_backend":{"backend_type":"File","backend_path":"b","shared":true}}'
check "that refused load did not end the process" vm_alive a

# ---- --stock: the fork's extensions answer as stock Firecracker -----------
vm_start s --stock --id stock1 || bail "minivm --stock did not start"
expect_api "--stock: --id shows in GET /" 200 '{"id":"stock1","state":"Not started","vmm_version":"1.12.0","app_name":"Firecracker"}' s GET /
expect_api "--stock: PUT /uffd/wp is an unknown path" 400 "$(fault 'Invalid request method and/or path: PUT uffd.')" s PUT /uffd/wp '{"socket":"/x"}'
expect_api "--stock: VmstateOnly is an unknown variant" 400 "$(fault "${P}unknown variant \`VmstateOnly\`, expected \`Diff\` or \`Full\` at line 1 column 30.")" s PUT /snapshot/create '{"snapshot_type":"VmstateOnly","snapshot_path":"a","mem_file_path":"b"}'
expect_api "--stock: shared is an unknown field" 400 "$(fault "${P}unknown field \`shared\`, expected \`backend_path\` or \`backend_type\` at line 1 column 85.")" s PUT /snapshot/load '{"snapshot_path":"a","mem_backend":{"backend_type":"File","backend_path":"b","shared":true}}'
check "--stock minivm still alive" vm_alive s

# ---- post-boot rules (a guest on KVM or the emulated CPU) ------------------------------------------------
if [ "$(id -u)" -ne 0 ] || [ ! -f "$GUEST_IMG" ]; then
	[ -n "${CI:-}" ] && bail "post-boot checks need root and guest.img under CI"
	diag "skipping post-boot checks: need root and $GUEST_IMG"
	done_testing
fi
vm_start b || bail "minivm did not start"
vm_boot b 1 64 || bail "boot failed: $(cat "$TMPD/b.err")"
expect_api "state Running after InstanceStart" 200 '{"id":"anonymous-instance","state":"Running","vmm_version":"1.12.0","app_name":"Firecracker"}' b GET /
AFTER="$(fault 'The requested operation is not supported after starting the microVM.')"
expect_api "machine-config after boot" 400 "$AFTER" b PUT /machine-config '{"vcpu_count":1,"mem_size_mib":64}'
expect_api "InstanceStart again" 400 "$AFTER" b PUT /actions '{"action_type":"InstanceStart"}'
expect_api "load after boot" 400 "$AFTER" b PUT /snapshot/load '{"snapshot_path":"a","mem_file_path":"b"}'
expect_api "Diff without dirty tracking" 400 "$(fault 'The requested operation is not supported: Diff snapshots are not allowed on uVMs with dirty page tracking disabled.')" b PUT /snapshot/create "{\"snapshot_type\":\"Diff\",\"snapshot_path\":\"$TMPD/d.vmstate\",\"mem_file_path\":\"$TMPD/d.mem\"}"
expect_api "create while running" 400 "$(fault 'Create snapshot error: Cannot save the microVM state: Operation not allowed: save/restore unavailable while running')" b PUT /snapshot/create "{\"snapshot_path\":\"$TMPD/r.vmstate\",\"mem_file_path\":\"$TMPD/r.mem\"}"
check "create while running wrote nothing" test ! -e "$TMPD/r.vmstate" -a ! -e "$TMPD/r.mem"
expect_api "pause" 204 "" b PATCH /vm '{"state":"Paused"}'
expect_api "pause again (idempotent)" 204 "" b PATCH /vm '{"state":"Paused"}'
expect_api "state Paused" 200 '{"id":"anonymous-instance","state":"Paused","vmm_version":"1.12.0","app_name":"Firecracker"}' b GET /
expect_api "VmstateOnly with the /dev/null/ placeholder" 204 "" b PUT /snapshot/create "{\"snapshot_path\":\"$TMPD/v.vmstate\",\"mem_file_path\":\"/dev/null/never-opened\",\"snapshot_type\":\"VmstateOnly\"}"
check "VmstateOnly wrote a vmstate" test -s "$TMPD/v.vmstate"
expect_api "VmstateOnly never opens mem_file_path" 204 "" b PUT /snapshot/create "{\"snapshot_path\":\"$TMPD/v2.vmstate\",\"mem_file_path\":\"$TMPD/must-not-exist\",\"snapshot_type\":\"VmstateOnly\"}"
check "mem_file_path was not created" test ! -e "$TMPD/must-not-exist"
expect_api "resume" 204 "" b PATCH /vm '{"state":"Resumed"}'
expect_api "resume again (idempotent)" 204 "" b PATCH /vm '{"state":"Resumed"}'
expect_api "/uffd/wp: nobody listening" 400 "$(fault 'Setup WP uffd error: Failed to connect to listener UDS: No such file or directory (os error 2)')" b PUT /uffd/wp "{\"socket\":\"$TMPD/nobody.sock\"}"
expect_api "/uffd/wp: other keys refused" 400 "$(fault "${P}unknown field \`mode\`, expected \`socket\` at line 1 column 21.")" b PUT /uffd/wp '{"socket":"/x","mode":1}'
expect_api "/uffd/other" 400 "$(fault 'Invalid request method and/or path: PUT uffd.')" b PUT /uffd/other '{"socket":"/x"}'
bench=$("$MINIVM_HTTP" "$TMPD/b.sock" --bench-pause 100)
check "PATCH /vm pause/resume round trips" test -n "$bench"
diag "PATCH /vm round trip (1 vCPU, 64 MiB, seccomp on): $bench"
check "the guest is still running after all that" vm_alive b
done_testing
