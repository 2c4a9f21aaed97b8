#!/usr/bin/env bash
# Fetches the dockerd of Debian 13 (trixie), whose Engine API (1.45) carries annotations to the
# runtime, unlike Debian 12's 20.10 (1.41): the tests that pass CDI requests through Docker use
# it. Each step is checked as apt would check it: the suite's InRelease against Debian's keyring,
# Packages.xz against the Release, the package against Packages. Unpacked under target/, never
# installed; prints the path of dockerd.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=$PWD/target/dockerd-trixie
if [ -x "$dest/root/usr/sbin/dockerd" ]; then echo "$dest/root/usr/sbin/dockerd"; exit 0; fi
source tests/debian-index.sh
# Beside its destination, so that the last step is a rename.
mkdir -p target
tmp=$(mktemp -d "$PWD/target/.dockerd-trixie.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
debian_index trixie main/binary-amd64/Packages.xz Packages.xz
entry=$(xz -dc Packages.xz | awk -v RS= '/^Package: docker.io\n/')
file=$(sed -n 's/^Filename: //p' <<<"$entry")
sum=$(sed -n 's/^SHA256: //p' <<<"$entry")
curl -sSf -o docker.deb "$debian_mirror/$file"
echo "$sum  docker.deb" | sha256sum -c --quiet -
# Unpacked beside, then renamed: an interrupted run leaves no partial tree to be trusted later.
mkdir "$tmp/dest"
dpkg-deb -x docker.deb "$tmp/dest/root"
rm -rf "$dest" && mv "$tmp/dest" "$dest"
echo "$dest/root/usr/sbin/dockerd"
