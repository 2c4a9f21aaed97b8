#!/usr/bin/env bash
# Runs the integration tests on a pure cgroup v2 host: Debian's kernel booted under
# qemu-system-x86_64 (software emulation), from a busybox initramfs that carries chitin, the test
# binary and their libraries. Arguments filter the tests by name, as for the test binary.
# With --selinux first, the kernel runs SELinux (permissive) in place of AppArmor, with the test
# policy of tests/vm/selinux loaded.
set -euo pipefail
cd "$(dirname "$0")/../.."
selinux=
if [ "${1:-}" = --selinux ]; then selinux=1; shift; fi
need=()
command -v checkpolicy >/dev/null || need+=(checkpolicy)
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
command -v swtpm >/dev/null || need+=(swtpm)
compgen -G '/boot/vmlinuz-*' >/dev/null || need+=(linux-image-amd64)
command -v cpio >/dev/null || need+=(cpio)
command -v apparmor_parser >/dev/null || need+=(apparmor)
{ [ -x /bin/busybox ] && ! ldd /bin/busybox >/dev/null 2>&1; } || need+=(busybox-static)
source tests/apt.sh
[ ${#need[@]} -eq 0 ] || apt_install "${need[@]}"
kernel=$(ls /boot/vmlinuz-* | sort -V | tail -n 1)
kver=${kernel#/boot/vmlinuz-}

source tests/vm/test-binary.sh

work=$(mktemp -d /tmp/chitin-vm.XXXXXX)
trap 'rm -rf "$work"' EXIT
root=$work/root
mkdir -p "$root"/{bin,proc,sys,dev,tmp,run,etc,newroot,lib/modules}
cp /bin/busybox "$root/bin/busybox"
for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -sf busybox "$root/bin/$a"; done
cp target/debug/chitin "$root/bin/chitin"
cp target/debug/chitin-recvtty "$root/bin/chitin-recvtty"
cp "$testbin" "$root/bin/integration"
# runc, the oracle of the differential tests.
extra=()
if oracle=$(command -v runc); then
  cp "$oracle" "$root/bin/runc"
  extra+=("$oracle")
fi
# AppArmor's parser, for the tests that load a profile (Debian's kernel runs AppArmor).
if parser=$(command -v apparmor_parser); then
  cp "$parser" "$root/bin/apparmor_parser"
  extra+=("$parser")
fi
# iproute2's ip (busybox's makes no veth) and rdma, for the soft RoCE device and the netDevices
# tests. At /usr/sbin/ip, called by that path: busybox's shell runs its own applet for a bare
# `ip`, whatever PATH says.
mkdir -p "$root/usr/sbin"
cp /sbin/ip "$root/usr/sbin/ip"
cp /usr/bin/rdma "$root/bin/rdma"
extra+=(/sbin/ip /usr/bin/rdma)
# The binaries' shared libraries, at the paths their loader expects.
for lib in $(ldd target/debug/chitin "$testbin" "${extra[@]}" | awk '/=>/ {print $3} /^[ \t]*\/lib/ {print $1}' | sort -u); do
  mkdir -p "$root$(dirname "$lib")"
  cp -L "$lib" "$root$lib"
done
# tun and fuse, for the device tests, and VFIO's modules (in load order), for the edu device;
# Debian ships them as modules, maybe compressed.
# RDMA's modules, with soft RoCE (rdma_rxe), and veth for its interface; the bridge (a device
# that cannot change namespace) for the netDevices tests.
rdma_mods="configfs crc32_generic ib_core ib_uverbs udp_tunnel ip6_udp_tunnel rdma_rxe iw_cm ib_cm rdma_cm rdma_ucm ib_umad veth llc stp bridge"
for mod in tun fuse irqbypass vfio vfio_virqfd vfio_iommu_type1 vfio-pci-core vfio-pci $rdma_mods; do
  ko=$(find "/lib/modules/$kver" -name "$mod.ko*" | head -n 1)
  case "$ko" in
    *.xz) xz -dc "$ko" > "$root/lib/modules/$mod.ko" ;;
    *.zst) zstd -qdc "$ko" > "$root/lib/modules/$mod.ko" ;;
    ?*) cp "$ko" "$root/lib/modules/$mod.ko" ;;
  esac
done
# The seccomp tests' syscall probes, native and i386 (tests/probe/syscall.c).
sh tests/probe/build.sh "$root/bin/syscall-probe" native cc
sh tests/probe/build.sh "$root/bin/syscall-probe-compat" compat cc -m32
# The list of tests this run must run (CHITIN_MUST_RUN), with the others beside it.
mkdir -p "$root/etc/must-run"
cp tests/must-run/* "$root/etc/must-run/"
must=$(basename "${CHITIN_MUST_RUN:-}")
checkpolicy -U allow -o "$root/etc/selinux.policy" tests/vm/selinux/policy.conf >/dev/null
printf 'root:x:0:0:root:/root:/bin/sh\n' > "$root/etc/passwd"
printf 'root:x:0:\n' > "$root/etc/group"

# pivot_root cannot leave an initramfs: /init copies the tree to a tmpfs and switches to it.
cat > "$root/init" <<'INIT'
#!/bin/sh
mount -t proc proc /proc
mount -t tmpfs -o size=1500m root /newroot
for d in bin etc lib lib64 usr init2; do [ -e /$d ] && cp -a /$d /newroot/; done
mkdir -p /newroot/proc /newroot/sys /newroot/dev /newroot/tmp /newroot/run
umount /proc
exec switch_root /newroot /init2 "$@"
INIT
cat > "$root/init2" <<'INIT'
#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs tmp /tmp
mount -t tmpfs run /run
mount -t cgroup2 cgroup2 /sys/fs/cgroup
mount -t securityfs securityfs /sys/kernel/security 2>/dev/null
if [ -d /sys/fs/selinux ]; then
  mount -t selinuxfs selinuxfs /sys/fs/selinux
  cat /etc/selinux.policy > /sys/fs/selinux/load
  echo "selinux: test policy loaded ($?)"
fi
for m in tun fuse irqbypass vfio vfio_virqfd vfio_iommu_type1 vfio-pci-core vfio-pci RDMA_MODS; do
  insmod /lib/modules/$m.ko 2>/dev/null || echo "rdma: insmod $m failed: $(insmod /lib/modules/$m.ko 2>&1)"
done
# A soft RoCE device on a veth: a real RDMA device with a verbs node, for the RDMA test.
ip=/usr/sbin/ip
made=$( { $ip link add rxe-veth0 type veth peer name rxe-veth1 && $ip link set rxe-veth0 up &&
  $ip link set rxe-veth1 up && rdma link add rxe0 type rxe netdev rxe-veth0; } 2>&1 ) &&
  export CHITIN_RDMA_DEVICE=rxe-veth0
echo "rdma: $(ls /dev/infiniband 2>/dev/null | tr '\n' ' ')$made"
# QEMU's edu device (1234:11e8), behind the emulated IOMMU, on vfio-pci: a real IOMMU group.
echo 1234 11e8 > /sys/bus/pci/drivers/vfio-pci/new_id 2>/dev/null
echo "vfio: $(ls /sys/bus/pci/drivers/vfio-pci 2>/dev/null | grep -c :) bound, groups $(ls /dev/vfio 2>/dev/null | tr '\n' ' ')"
echo 8 > /proc/sys/vm/nr_hugepages
echo "cgroup-layout: $(cat /sys/fs/cgroup/cgroup.controllers)"
set -- $(cat /proc/cmdline)
filter=""
must=""
for a in "$@"; do
  case $a in
    chitin.filter=*) filter=$(echo "${a#chitin.filter=}" | tr , ' ') ;;
    chitin.must=?*) must=/etc/must-run/${a#chitin.must=} ;;
  esac
done
# Emulated, a soak cycle takes ~0.8 s: a short soak here (the host run does 200).
# The VM's TPM (QEMU's, on this run's swtpm) is the tests' to extend.
CHITIN_SYSCALL_PROBE=/bin/syscall-probe CHITIN_COMPAT_PROBE=SCMP_ARCH_X86:/bin/syscall-probe-compat \
CHITIN_KERNEL_TPM=1 CHITIN_MUST_RUN=$must CHITIN_SOAK_CYCLES=20 CHITIN_BIN=/bin/chitin CHITIN_RECVTTY=/bin/chitin-recvtty TMPDIR=/tmp /bin/integration $filter
echo "vm-exit=$?"
poweroff -f
INIT
chmod +x "$root/init" "$root/init2"
sed -i "s/RDMA_MODS/$rdma_mods/" "$root/init2"
(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) > "$work/initramfs.gz"

filter=$(IFS=,; echo "$*")
# SELinux and AppArmor exclude each other: the first named in lsm= runs.
lsm=${selinux:+lsm=landlock,lockdown,yama,integrity,selinux,bpf}
log=$work/console.log
# softlockup_panic: a guest kernel soft lockup (seen once in CI, not reproduced) ends the VM at
# once, its trace in the log, instead of waiting for the timeout.
# The guest's TPM: QEMU's TIS device, backed by a swtpm of this run's.
swtpm socket --tpm2 --tpmstate dir="$work" --ctrl type=unixio,path="$work/swtpm.sock" \
  --daemon --pid file="$work/swtpm.pid"
trap 'kill "$(cat "$work/swtpm.pid" 2>/dev/null)" 2>/dev/null || true; rm -rf "$work"' EXIT
# q35 with an emulated VT-d and QEMU's edu device: a PCI function in an IOMMU group of its own,
# for the VFIO test. Two NUMA nodes of one CPU and 1 GiB each, for the performance profiles.
timeout 1500 qemu-system-x86_64 -accel tcg -m 2048 -smp 2 -nographic -no-reboot \
  -object memory-backend-ram,id=mem0,size=1024M -object memory-backend-ram,id=mem1,size=1024M \
  -numa node,nodeid=0,cpus=0,memdev=mem0 -numa node,nodeid=1,cpus=1,memdev=mem1 \
  -machine q35 -device intel-iommu -device edu \
  -chardev socket,id=tpm,path="$work/swtpm.sock" -tpmdev emulator,id=tpm0,chardev=tpm \
  -device tpm-tis,tpmdev=tpm0 \
  -kernel "$kernel" -initrd "$work/initramfs.gz" \
  -append "console=ttyS0 quiet panic=-1 softlockup_panic=1 intel_iommu=on $lsm chitin.filter=$filter chitin.must=$must" | tee "$log" | grep -A"${CHITIN_VM_CONTEXT:-3}" -E '^(test |integration:|cgroup-layout:|selinux:|vfio:|rdma:|vm-exit=|thread |  left|  right|assertion)' || true
code=$(sed -n 's/^vm-exit=\([0-9]*\).*/\1/p' "$log" | tail -n 1)
if [ -z "$code" ]; then
  echo "the VM did not finish the tests; last lines:" >&2
  tail -n 30 "$log" >&2
  exit 1
fi
# Booted for SELinux, a policy that failed to load would make the label tests skip, not fail.
if [ -n "$selinux" ] && ! grep -aq 'selinux: test policy loaded (0)' "$log"; then
  echo "SELinux run: the test policy was not loaded" >&2
  exit 1
fi
exit "$code"
