#!/usr/bin/env bash
# Replaces the pinned tables with those of Debian's linux-source-MAJOR.MINOR package (for example
# `update.sh 6.12`), then prints their checksums for SOURCE.md. Run the generator afterwards.
set -euo pipefail
ver=${1:?usage: update.sh MAJOR.MINOR}
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && apt-get download "linux-source-$ver" >/dev/null)
src=linux-source-$ver
dpkg-deb --fsys-tarfile "$work"/linux-source-*.deb | tar -xO "./usr/src/$src.tar.xz" | xz -dc \
  | tar -x -C "$work" "$src/arch/x86/entry/syscalls/syscall_64.tbl" "$src/arch/x86/entry/syscalls/syscall_32.tbl" \
      "$src/scripts/syscall.tbl" "$src/arch/arm/tools/syscall.tbl" "$src/arch/arm/include/uapi/asm/unistd.h" \
      "$src/arch/powerpc/kernel/syscalls/syscall.tbl" "$src/arch/s390/kernel/syscalls/syscall.tbl" \
      "$src/arch/sparc/kernel/syscalls/syscall.tbl"
out=$here/linux-$ver
mkdir -p "$out"
cp "$work/$src/arch/x86/entry/syscalls/syscall_64.tbl" "$out/x86_64.tbl"
cp "$work/$src/arch/x86/entry/syscalls/syscall_32.tbl" "$out/i386.tbl"
cp "$work/$src/scripts/syscall.tbl" "$out/generic.tbl"
cp "$work/$src/arch/arm/tools/syscall.tbl" "$out/arm.tbl"
cp "$work/$src/arch/arm/include/uapi/asm/unistd.h" "$out/arm-unistd.h"
cp "$work/$src/arch/powerpc/kernel/syscalls/syscall.tbl" "$out/powerpc.tbl"
cp "$work/$src/arch/s390/kernel/syscalls/syscall.tbl" "$out/s390.tbl"
cp "$work/$src/arch/sparc/kernel/syscalls/syscall.tbl" "$out/sparc.tbl"
(cd "$out" && sha256sum ./*)
