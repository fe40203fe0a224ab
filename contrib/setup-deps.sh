#!/bin/sh
# Installs what building and testing forkfs needs on Debian 12 (run as root).
# Used by the README's two commands and by .ci/run. Idempotent.
#
# Then a private libfuse with FUSE passthrough (>= 3.16; Debian 12 has 3.14):
# Debian 13's fuse3 source package, fetched through a deb-src-only trixie
# entry (no trixie binary package can be installed from it) and built with
# meson into FORKFS_LIBFUSE_PREFIX (default /opt/forkfs/libfuse): only the
# library, its headers and fuse3.pc, nothing else on the system changes
# (Debian's libfuse3-3 and fusermount3 stay). contrib/build.sh builds against
# it when PREFIX/lib/pkgconfig/fuse3.pc exists. If that step fails (no
# network to trixie's sources) it says so and forkfs builds with Debian 12's
# libfuse, passthrough off. FORKFS_LIBFUSE=no skips it (and build.sh then
# uses Debian's libfuse).
set -eu
PKGS="build-essential autoconf automake libtool pkg-config binutils
libfuse3-dev fuse3 libuv1-dev libjson-c-dev libseccomp-dev
mandoc curl git ca-certificates zstd
meson ninja-build dpkg-dev xfsprogs"
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

prefix=${FORKFS_LIBFUSE_PREFIX:-/opt/forkfs/libfuse}
[ "${FORKFS_LIBFUSE:-yes}" = no ] && exit 0
[ -f "$prefix/lib/pkgconfig/fuse3.pc" ] && exit 0

# Fetch and build in a subshell: any failure there is reported, not fatal.
src_list=/etc/apt/sources.list.d/forkfs-trixie-src.sources
work=$(mktemp -d /tmp/forkfs-libfuse.XXXXXX)
trap 'rm -rf "$work"' EXIT
if (
	set -e
	if [ ! -f "$src_list" ]; then
		cat >"$src_list" <<-EOF
		# forkfs (contrib/setup-deps.sh): Debian 13's fuse3 source, for a private
		# libfuse with FUSE passthrough. Sources only: no binary packages.
		Types: deb-src
		URIs: http://deb.debian.org/debian
		Suites: trixie
		Components: main
		Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
		EOF
	fi
	# Only this list is refreshed; the others are left as they are.
	apt-get update -qq -o Dir::Etc::SourceList="$src_list" -o Dir::Etc::SourceParts=- \
		-o APT::Get::List-Cleanup=0 -o Acquire::http::Timeout=20
	cd "$work"
	chown _apt "$work" 2>/dev/null || true	# apt downloads as _apt
	apt-get source -qq --download-only fuse3/trixie >/dev/null
	# With Debian's patches: the library Debian 13 ships. apt checked the
	# files against trixie's signed index; dpkg-source cannot check the
	# uploader's signature without debian-keyring, and says so.
	dpkg-source -x ./fuse3_*.dsc src >dpkg-source.log 2>&1 ||
		{ tail -n 20 dpkg-source.log; exit 1; }
	cd src
	meson setup build --prefix="$prefix" --libdir=lib -Dexamples=false -Dutils=false \
		-Dtests=false -Ddisable-mtab=true -Dudevrulesdir="$prefix/udev" \
		-Dinitscriptdir= >meson.log 2>&1 || { tail -n 20 meson.log; exit 1; }
	ninja -C build install >ninja.log 2>&1 || { tail -n 20 ninja.log; exit 1; }
	[ -f "$prefix/lib/pkgconfig/fuse3.pc" ]
); then
	echo "setup-deps: libfuse $(PKG_CONFIG_PATH=$prefix/lib/pkgconfig pkg-config --modversion fuse3) (FUSE passthrough) in $prefix"
else
	echo "setup-deps: could not build Debian 13's libfuse into $prefix; forkfs builds with Debian 12's libfuse $(pkg-config --modversion fuse3), FUSE passthrough off"
fi
exit 0
