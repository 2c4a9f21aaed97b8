#!/usr/bin/env bash
# chitin's main job on a fresh Debian machine, as root: build chitin, make a busybox bundle,
# and run a container that reports what it sees from inside.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! [ -x /bin/busybox ] || ldd /bin/busybox >/dev/null 2>&1; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq busybox-static >/dev/null
fi
cargo build --release --quiet
chitin=$PWD/target/release/chitin
bundle=$(mktemp -d /tmp/chitin-demo.XXXXXX)
trap 'rm -rf "$bundle"' EXIT
bash tests/rootfs.sh "$bundle/rootfs"
cd "$bundle"
"$chitin" spec
# Not a terminal, and a script instead of an interactive shell.
sed -i 's/"terminal": true/"terminal": false/; s/^\(\s*\)"sh"$/\1"sh", "-c", "echo hello from $(hostname), pid $$; id; grep Cap \/proc\/self\/status; ls \/dev"/' config.json
"$chitin" run "demo-$$"
