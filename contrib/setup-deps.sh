#!/bin/sh
# Installs what building and testing forkfs needs on Debian 12 (run as root).
# Used by the README's two commands and by .ci/run. Idempotent.
set -eu
PKGS="build-essential autoconf automake libtool pkg-config binutils
libfuse3-dev fuse3 libuv1-dev libjson-c-dev libseccomp-dev
mandoc curl git ca-certificates zstd"
missing=""
for p in $PKGS; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
	echo "setup-deps: installing:$missing"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	# shellcheck disable=SC2086
	apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
