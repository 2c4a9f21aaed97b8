#!/usr/bin/env bash
# Builds busybox for sparc64, whose Debian packages live in debian-ports, outside the main
# archive this machine reaches: Debian 12's own busybox source package, checked as apt checks it
# (InRelease against Debian's keyring, Sources.xz against the Release, each file against
# Sources), built static with Debian's static configuration and the sparc64 cross gcc. Prints
# the binary's path; cached under target/vm/.
set -euo pipefail
cd "$(dirname "$0")/../.."
need=()
command -v sparc64-linux-gnu-gcc >/dev/null || need+=(gcc-sparc64-linux-gnu)
command -v dpkg-source >/dev/null || need+=(dpkg-dev)
for t in gpgv curl make xz; do command -v $t >/dev/null || need+=("${t/xz/xz-utils}"); done
[ -e /usr/share/keyrings/debian-archive-keyring.gpg ] || need+=(debian-archive-keyring)
source tests/apt.sh
[ ${#need[@]} -eq 0 ] || apt_install "${need[@]}" >&2
dest=$PWD/target/vm/sparc64-busybox
if [ -x "$dest/busybox" ]; then echo "$dest/busybox"; exit 0; fi
source tests/debian-index.sh
mkdir -p target/vm
tmp=$(mktemp -d "$PWD/target/vm/.busybox.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
debian_index bookworm main/source/Sources.xz Sources.xz
entry=$(xz -dc Sources.xz | awk -v RS= '/^Package: busybox\n/')
dir=$(sed -n 's/^Directory: //p' <<<"$entry")
# The Checksums-Sha256 field: " SUM SIZE NAME" lines.
awk '/^Checksums-Sha256:/ {s = 1; next} /^[^ ]/ {s = 0} s {print $1 "  " $3}' <<<"$entry" > files.sha256
while read -r _ name; do curl -sSf -o "$name" "$debian_mirror/$dir/$name"; done < files.sha256
sha256sum -c --quiet files.sha256
dpkg-source --no-check -x ./*.dsc src >/dev/null
start=$(date +%s)
mkdir build
cp src/debian/config/pkg/static build/.config
make -C src -s O="$tmp/build" ARCH=sparc64 CROSS_COMPILE=sparc64-linux-gnu- oldconfig </dev/null >/dev/null
make -C src -s O="$tmp/build" ARCH=sparc64 CROSS_COMPILE=sparc64-linux-gnu- -j"$(nproc)" busybox >&2
echo "sparc64 busybox built in $(( $(date +%s) - start )) s" >&2
mkdir -p "$tmp/out"
cp build/busybox "$tmp/out/busybox"
rm -rf "$dest" && mv "$tmp/out" "$dest"
echo "$dest/busybox"
