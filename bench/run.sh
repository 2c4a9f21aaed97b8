#!/usr/bin/env bash
# Times `run` of a container whose process is /bin/true, for chitin, runc and crun in the same
# hyperfine run, and writes the table to bench/latest.md. As root, on a busybox bundle.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v hyperfine >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq hyperfine >/dev/null; }
cargo build --release --quiet
chitin=$PWD/target/release/chitin
work=$(mktemp -d /tmp/chitin-bench.XXXXXX)
trap 'umount "$work/chitin-ro" 2>/dev/null; rm -rf "$work"' EXIT
bash tests/rootfs.sh "$work/rootfs"
(cd "$work" && "$chitin" spec)
# 1.0.2: the newest version every peer here accepts (crun 1.8 refuses 1.2.0).
sed -i 's/"terminal": true/"terminal": false/; s/^\(\s*\)"sh"$/\1"true"/; s/"ociVersion": "[^"]*"/"ociVersion": "1.0.2"/' "$work/config.json"
# From a writable disk chitin re-executes itself once through a read-only bind of its binary
# (CVE-2019-5736, src/selfexe.rs); installed on a read-only mount it does not need to.
touch "$work/chitin-ro"
mount --bind "$chitin" "$work/chitin-ro"
mount -o remount,bind,ro "$work/chitin-ro"
cmds=(-n chitin "$chitin --root $work/st-chitin run -b $work bench"
  -n "chitin, read-only install" "$work/chitin-ro --root $work/st-chitin run -b $work bench")
notes=()
for peer in runc crun; do
  if ! command -v $peer >/dev/null; then
    notes+=("$peer: not installed")
  elif ! err=$($peer --root "$work/st-$peer" run -b "$work" probe 2>&1); then
    notes+=("$peer: cannot run on this host: ${err%%$'\n'*}")
  else
    cmds+=(-n "$peer" "$peer --root $work/st-$peer run -b $work bench")
  fi
done
hyperfine -N --warmup 5 --runs "${RUNS:-100}" --export-markdown "$work/table.md" "${cmds[@]}"
{
  echo "# create+start+wait+delete of /bin/true ($(uname -r), $(nproc) cores, $(date -u +%F))"
  echo
  cat "$work/table.md"
  for n in "${notes[@]}"; do echo; echo "- $n"; done
  echo
  echo "## Compiling Docker's default seccomp profile (x86_64, x86, x32)"
  echo
  cargo test --release --quiet --lib compile_speed_against_libseccomp -- --nocapture 2>/dev/null \
    | sed -n 's/^seccomp-compile /- /p'
} > bench/latest.md
cat bench/latest.md
# The compile figure comes from a unit test: a filter that finds no test would drop it silently.
grep -q '^- docker-default' bench/latest.md || { echo "bench: no seccomp compile figure" >&2; exit 1; }
