#!/usr/bin/env bash
# Every test of chitin on a fresh Debian machine, as root: installs what the tests use (busybox
# for the rootfs, runc to compare with), then runs the unit and integration tests.
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
{ [ -x /bin/busybox ] && ! ldd /bin/busybox >/dev/null 2>&1; } || need+=(busybox-static)
command -v runc >/dev/null || need+=(runc)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
cargo test --all-targets -- "$@"
