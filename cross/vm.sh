#!/usr/bin/env bash
# Runs the integration tests on a real kernel of another ISA: the kernel booted under
# qemu-system-* in software emulation, from an initramfs of that ISA's busybox-static, the
# cross-built release chitin (cross/build.sh) and the integration test binary cross-built for
# it. Kernels and busybox come from Debian's packages of that architecture, downloaded and
# unpacked (not installed). Debian's main archive has neither for sparc64 (they are in
# debian-ports, which this machine cannot reach): its kernel is built from linux-source
# (cross/sparc64/kernel.sh), its busybox from Debian's source package (cross/sparc64/busybox.sh).
#
#   cross/vm.sh ISA [FILTER...]     ISA: aarch64, ppc64le, s390x, sparc64
#
# FILTER selects tests by name as for the test binary. CHITIN_MUST_RUN names the list (of
# tests/must-run/) of tests that must run; a listed test that skips fails the run. A VM that
# does not boot, or does not finish, fails the run. Prints the boot and test times.
set -euo pipefail
cd "$(dirname "$0")/.."
isa=${1:?usage: cross/vm.sh ISA [FILTER...]}
shift
source cross/targets.sh
source cross/vm-lib.sh
[ -n "${DEB_ARCH[$isa]:-}" ] || { echo "cross/vm.sh: no VM for $isa (one of: ${!DEB_ARCH[*]})" >&2; exit 2; }
cross_setup "$isa"
vm_setup "$isa"
triple=${TRIPLE[$isa]}
work=$(mktemp -d /tmp/chitin-vm-$isa.XXXXXX)
trap 'rm -rf "$work"' EXIT

# The kernel and its modules, and busybox, from Debian's packages of the ISA.
mkdir -p target/vm
if [ "$isa" = sparc64 ]; then
  kernel=$(bash cross/sparc64/kernel.sh)
  modules=
  busybox=$(bash cross/sparc64/busybox.sh)
else
  kpkg=$(deb_fetch "$isa" "$(kernel_package "$isa")")
  kernel=$(ls "$kpkg"/boot/vmlinu[xz]-* | head -n 1)
  modules=$(ls -d "$kpkg"/lib/modules/* | head -n 1)
  busybox=$(deb_fetch "$isa" busybox-static)/bin/busybox
fi

# chitin as released, and the test binary with its helper, for the ISA.
bin=target/$triple/release/chitin
[ -x "$bin" ] || bash cross/build.sh "$isa" >&2
build=(cargo test --no-run --quiet --message-format=json --target "$triple" --test integration)
[ "$isa" != sparc64 ] || build=(env RUSTC_BOOTSTRAP=1 "${build[@]}" -Zbuild-std=std,panic_unwind,test)
testbin=$("${build[@]}" | python3 -c '
import json, sys
exes = [m["executable"] for m in map(json.loads, sys.stdin)
        if m.get("reason") == "compiler-artifact" and m.get("executable") and m["profile"]["test"]]
print(exes[-1] if exes else "")')
[ -x "$testbin" ] || { echo "cross/vm.sh: no integration test binary for $triple" >&2; exit 1; }
recvtty=$(dirname "$(dirname "$testbin")")/chitin-recvtty

root=$work/root
mkdir -p "$root"/{bin,proc,sys,dev,tmp,run,etc/must-run,newroot,lib/modules}
cp "$busybox" "$root/bin/busybox"
# The applets as the ISA's busybox lists them (it runs here under QEMU user mode).
for a in $("${QEMU[$isa]}" "$busybox" --list); do [ "$a" = busybox ] || ln -sf busybox "$root/bin/$a"; done
cp "$bin" "$root/bin/chitin"
cp "$recvtty" "$root/bin/chitin-recvtty"
"${GCC[$isa]%gcc}strip" -o "$root/bin/integration" "$testbin"
# Modules the tests load where Debian builds them as modules (tun, fuse, veth, overlay).
if [ -n "$modules" ]; then
  for mod in tun fuse overlay veth llc stp bridge; do
    ko=$(find "$modules" -name "$mod.ko*" | head -n 1)
    case "$ko" in
      *.xz) xz -dc "$ko" > "$root/lib/modules/$mod.ko" ;;
      *.zst) zstd -qdc "$ko" > "$root/lib/modules/$mod.ko" ;;
      ?*) cp "$ko" "$root/lib/modules/$mod.ko" ;;
    esac
    [ -z "$ko" ] || echo "$mod" >> "$root/lib/modules/order"
  done
fi
# script(1), for the tests that need a real terminal, with the ISA's libc and loader (Debian's
# packages; none for sparc64, whose terminal tests skip).
if [ "$isa" != sparc64 ]; then
  libc=$(deb_fetch "$isa" libc6)
  cp -a "$libc/lib" "$root/"
  [ ! -d "$libc/lib64" ] || cp -a "$libc/lib64" "$root/"
  cp "$(deb_fetch "$isa" bsdutils)/usr/bin/script" "$root/bin/script"
fi
# The seccomp tests' syscall probe for the native ABI, and for the compat ABI where the kernel
# has one (freestanding: Debian has no libc for s390's 31 bits), with the compat ABI's busybox
# where Debian has one; the tests find them through /etc/test-env.
sh tests/probe/build.sh "$root/bin/syscall-probe" native "${GCC[$isa]}"
echo "export CHITIN_SYSCALL_PROBE=/bin/syscall-probe" > "$root/etc/test-env"
if [ -n "${COMPAT_GCC[$isa]:-}" ]; then
  # COMPAT_GCC may carry a flag (-m31): split on purpose.
  sh tests/probe/build.sh "$root/bin/syscall-probe-compat" compat ${COMPAT_GCC[$isa]}
  echo "export CHITIN_COMPAT_PROBE=${COMPAT_ABI[$isa]}:/bin/syscall-probe-compat" >> "$root/etc/test-env"
fi
if [ -n "${COMPAT_DEB_ARCH[$isa]:-}" ]; then
  cp "$(deb_fetch "${COMPAT_DEB_ARCH[$isa]}" busybox-static)/bin/busybox" "$root/bin/busybox-compat"
  echo "export CHITIN_COMPAT_BUSYBOX=/bin/busybox-compat" >> "$root/etc/test-env"
fi
cp tests/must-run/* "$root/etc/must-run/"
must=$(basename "${CHITIN_MUST_RUN:-}")
printf 'root:x:0:0:root:/root:/bin/sh\n' > "$root/etc/passwd"
printf 'root:x:0:\n' > "$root/etc/group"
vm_init "$root"
(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) > "$work/initramfs.gz"

filter=$(IFS=,; echo "$*")
# The whole console, kept for a look after the run.
log=$PWD/target/vm/console-$isa.log
start=$(date +%s)
# A whole suite takes about a minute and a half: 20 minutes is a VM that hangs.
timeout "${CHITIN_VM_TIMEOUT:-1200}" "${QEMU_SYSTEM[$isa]}" ${QEMU_MACHINE[$isa]} -nographic -no-reboot \
  -kernel "$kernel" -initrd "$work/initramfs.gz" \
  -append "console=${CONSOLE[$isa]} quiet panic=-1 chitin.filter=$filter chitin.must=$must" \
  | tee "$log" | grep --line-buffered -a -A"${CHITIN_VM_CONTEXT:-3}" -E '^(test |integration:|vm:|vm-exit=|thread |  left|  right|assertion)' || true
code=$(sed -n 's/^vm-exit=\([0-9]*\).*/\1/p' "$log" | tail -n 1)
if [ -z "$code" ]; then
  echo "cross/vm.sh: the $isa VM did not finish the tests; last lines:" >&2
  tail -n 30 "$log" >&2
  exit 1
fi
echo "cross/vm.sh: $isa: $(sed -n 's/^vm: booted in /booted in /p' "$log" | tail -n 1), the VM's whole run $(( $(date +%s) - start )) s, exit $code"
exit "$code"
