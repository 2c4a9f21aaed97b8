#!/usr/bin/env bash
# Release binaries of chitin for x86_64, aarch64, ppc64le, s390x and sparc64, at cargo's usual
# target/<triple>/release/chitin. Static musl where Rust ships musl for the ISA, static glibc
# otherwise, linked with Debian's cross gcc; sparc64 builds its std with -Zbuild-std (rustup has
# no sparc64 std). Arguments: the ISAs to build (default: all five).
set -euo pipefail
cd "$(dirname "$0")/.."
source cross/targets.sh
isas=("$@")
[ ${#isas[@]} -gt 0 ] || isas=("${ALL_ISAS[@]}")
cross_setup "${isas[@]}"
for isa in "${isas[@]}"; do
  triple=${TRIPLE[$isa]}
  echo "== $isa ($triple)"
  if [ "$isa" = sparc64 ]; then
    # -Zbuild-std on the stable toolchain: RUSTC_BOOTSTRAP unlocks the flag.
    RUSTC_BOOTSTRAP=1 cargo build --release --quiet -p chitin --bin chitin --target "$triple" -Zbuild-std=std,panic_abort
  else
    cargo build --release --quiet -p chitin --bin chitin --target "$triple"
  fi
  file "target/$triple/release/chitin"
done
