#!/bin/bash
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
# tests/minivm/load-fail.sh — a failed PUT /snapshot/load answers 400 and
# then ends the process, as Firecracker does; a load refused before it
# starts (parse error, boot resource configured) does not.
. "$top_srcdir/tests/lib.sh"
. "$top_srcdir/tests/minivm/lib-minivm.sh"

gone() { ! vm_alive "$1"; }

vm_start f1 || bail "start"
api f1 PUT /snapshot/load "{\"snapshot_path\":\"$TMPD/missing.vmstate\",\"mem_backend\":{\"backend_type\":\"File\",\"backend_path\":\"$TMPD/missing.mem\",\"shared\":true}}"
check "missing vmstate: 400" test "$status" = 400
case "$body" in
'{"fault_message":"Load snapshot error: '*) ok "missing vmstate: Load snapshot error message" ;;
*) not_ok "missing vmstate: Load snapshot error message"; diag "$body" ;;
esac
check "missing vmstate: the process ended" wait_for 5 gone f1
wait "$(vm_pid f1)"; rc=$?
check "missing vmstate: non-zero exit status ($rc)" test "$rc" -ne 0

# A garbage vmstate, through the deprecated mem_file_path (Deprecation header).
head -c 4096 /dev/urandom >"$TMPD/junk.vmstate"
head -c 1048576 /dev/zero >"$TMPD/junk.mem"
vm_start f2 || bail "start"
resp=$(curl -sS -i --unix-socket "$TMPD/f2.sock" -X PUT -H 'Content-Type: application/json' \
	--data-binary "{\"snapshot_path\":\"$TMPD/junk.vmstate\",\"mem_file_path\":\"$TMPD/junk.mem\"}" \
	http://localhost/snapshot/load 2>&1)
check "garbage vmstate: 400" grep -q '^HTTP/1.1 400 ' <<<"$(head -1 <<<"$resp")"
check "mem_file_path: Deprecation: true" grep -q '^Deprecation: true' <<<"$resp"
check "garbage vmstate: the process ended" wait_for 5 gone f2

# Refusals that come before a load starts are not fatal.
vm_start f3 || bail "start"
api f3 PUT /snapshot/load '{"snapshot_path":"a","mem_backend":{"backend_type":"Uffd","backend_path":"/x"}}'
check "Uffd backend: 400" test "$status" = 400
api f3 PUT /snapshot/load '{"snapshot_path":"a"}'
check "parse error: 400" test "$status" = 400
sleep 0.2
check "refused loads leave the process running" vm_alive f3
api f3 GET /
check "and it still answers" test "$status" = 200
done_testing
