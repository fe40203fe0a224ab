#!/bin/sh
# contrib/build-deb.sh — the Debian packages forkfs and forkfs-minivm, built
# from this checkout's committed HEAD (git archive, so the tree is clean) with
# dpkg-buildpackage, into OUT (default ./build/deb), then checked by lintian.
# Run as root on Debian 12 (it installs the build tools); about two minutes.
# The packages link Debian's libfuse3-3 (Build-Depends libfuse3-dev), never
# the private libfuse setup-deps.sh builds into /opt: a PKG_CONFIG_PATH
# pointing there is dropped. With Debian 12's libfuse 3.14 the packaged
# forkfs has FUSE passthrough off.
#   contrib/build-deb.sh [OUT]
set -eu
unset PKG_CONFIG_PATH
src=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$src/build/deb}
"$src/contrib/setup-deps.sh"
need=""
for p in debhelper dpkg-dev fakeroot lintian; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need="$need $p"
done
if [ -n "$need" ]; then
	apt-get update -qq
	# shellcheck disable=SC2086
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $need >/dev/null
fi
work=$(mktemp -d /tmp/forkfs-deb.XXXXXX)
trap 'rm -rf "$work"' EXIT
git -C "$src" archive --prefix=forkfs/ HEAD | tar -x -C "$work"
(cd "$work/forkfs" && dpkg-buildpackage -b -us -uc >"$work/build.log" 2>&1) ||
	{ tail -n 40 "$work/build.log"; exit 1; }
mkdir -p "$out"
cp "$work"/*.deb "$out"/
ls -l "$out"/*.deb
echo "lintian:"
lintian --no-tag-display-limit "$out"/*.deb || true
