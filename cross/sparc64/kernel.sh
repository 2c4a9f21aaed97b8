#!/usr/bin/env bash
# Builds the sparc64 kernel that cross/vm.sh boots (Debian's main archive has none): Debian's
# linux-source, allnoconfig plus cross/sparc64/kernel.config, with Debian's sparc64 cross gcc.
# Prints the image's path. Cached under target/vm/ (about 3 minutes to build on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/../.."
need=()
command -v sparc64-linux-gnu-gcc >/dev/null || need+=(gcc-sparc64-linux-gnu)
compgen -G '/usr/src/linux-source-*.tar.xz' >/dev/null || need+=(linux-source)
for t in bc flex bison make; do command -v $t >/dev/null || need+=($t); done
command -v xz >/dev/null || need+=(xz-utils)
source tests/apt.sh
[ ${#need[@]} -eq 0 ] || apt_install "${need[@]}" >&2
src=$(ls /usr/src/linux-source-*.tar.xz | sort -V | tail -n 1)
# A new fragment or a new linux-source (its name and size) builds anew.
key=$( { cat cross/sparc64/kernel.config; basename "$src"; stat -c %s "$src"; } | sha256sum | cut -c1-16)
out=$PWD/target/vm/sparc64-kernel-$key
if [ ! -f "$out/vmlinux" ]; then
  start=$(date +%s)
  build=$PWD/target/vm/sparc64-build
  rm -rf "$build" && mkdir -p "$build"
  tar -C "$build" -xf "$src" --strip-components=1
  make=(make -C "$build" -s ARCH=sparc CROSS_COMPILE=sparc64-linux-gnu- -j"$(nproc)")
  KCONFIG_ALLCONFIG=$PWD/cross/sparc64/kernel.config "${make[@]}" allnoconfig >&2
  # What the fragment asked and did not get (a dependency missing) would boot a kernel that
  # cannot run the tests: say so.
  missing=$(grep -E '^CONFIG_[A-Z0-9_]+=y' cross/sparc64/kernel.config | while read -r l; do
    grep -qx "$l" "$build/.config" || echo "${l%=y}"; done)
  [ -z "$missing" ] || { echo "sparc64 kernel: not set by allnoconfig: $missing" >&2; exit 1; }
  "${make[@]}" vmlinux >&2
  mkdir -p "$out"
  cp "$build/vmlinux" "$out/vmlinux"
  sparc64-linux-gnu-strip "$out/vmlinux"
  echo "sparc64 kernel built in $(( $(date +%s) - start )) s" >&2
  rm -rf "$build"
fi
echo "$out/vmlinux"
