#!/bin/sh
# Builds the syscall probe (syscall.c beside this script), static:
#
#   build.sh OUT native|compat CC [CC ARGS...]
#
# native links libc; compat is freestanding (-DFREESTANDING, no libc, no start files), for a
# compat ABI: i386 (cc -m32), arm (arm-linux-gnueabihf-gcc), s390 (s390x-linux-gnu-gcc -m31).
set -eu
out=$1 kind=$2
shift 2
case $kind in
  native) set -- "$@" ;;
  compat) set -- "$@" -DFREESTANDING -nostdlib -ffreestanding -fno-pie -no-pie -fno-stack-protector ;;
  *) echo "build.sh: native or compat, not $kind" >&2; exit 2 ;;
esac
exec "$@" -static -O2 -Wall -Werror -o "$out" "$(dirname "$0")/syscall.c"
