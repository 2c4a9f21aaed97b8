# Sourced by cross/vm.sh (after cross/targets.sh): each ISA's machine under qemu-system-*, its
# Debian packages, and the initramfs's init.
source tests/apt.sh
declare -A DEB_ARCH=([aarch64]=arm64 [ppc64le]=ppc64el [s390x]=s390x [sparc64]=sparc64 [armhf]=armhf)
# The compat ABI of each kernel that has one (Debian's ppc64el kernel has none, sparc64's no
# seccomp filter), the compiler of its probe, and Debian's architecture for its busybox.
declare -A COMPAT_ABI=([aarch64]=SCMP_ARCH_ARM [s390x]=SCMP_ARCH_S390)
declare -A COMPAT_GCC=([aarch64]=arm-linux-gnueabihf-gcc [s390x]="s390x-linux-gnu-gcc -m31")
declare -A COMPAT_DEB_ARCH=([aarch64]=armhf)
declare -A KERNEL_FLAVOUR=([aarch64]=arm64 [ppc64le]=powerpc64le [s390x]=s390x)
declare -A QEMU_SYSTEM=(
  [aarch64]=qemu-system-aarch64
  [ppc64le]=qemu-system-ppc64
  [s390x]=qemu-system-s390x
  [sparc64]=qemu-system-sparc64
)
# aarch64's max cpu with QEMU's own pointer authentication, not the architected QARMA (which
# takes most of the emulated time: boot 14 s against 3 s). pseries under TCG: the Spectre
# mitigations QEMU cannot emulate are declared absent, or it refuses to start. s390x on QEMU 7.2's
# max cpu crashed now and then (protection and translation faults in text pages, in 3 runs of
# 8), on its qemu cpu in none of 5. sun4u has one cpu.
declare -A QEMU_MACHINE=(
  [aarch64]="-M virt -cpu max,pauth-impdef=on -smp 2 -m 2048"
  [ppc64le]="-M pseries,cap-cfpc=broken,cap-sbbc=broken,cap-ibs=broken,cap-ccf-assist=off -cpu power9 -smp 2 -m 2048"
  [s390x]="-M s390-ccw-virtio -cpu qemu -smp 2 -m 2048"
  [sparc64]="-M sun4u -m 1536"
)
declare -A CONSOLE=([aarch64]=ttyAMA0 [ppc64le]=hvc0 [s390x]=ttysclp0 [sparc64]=ttyS0)
declare -A QEMU_PACKAGE=(
  [aarch64]=qemu-system-arm
  [ppc64le]=qemu-system-ppc
  [s390x]=qemu-system-misc
  [sparc64]=qemu-system-sparc
)

vm_setup() {
  local isa=$1 pkgs=()
  command -v "${QEMU_SYSTEM[$isa]}" >/dev/null || pkgs+=("${QEMU_PACKAGE[$isa]}")
  command -v cpio >/dev/null || pkgs+=(cpio)
  command -v python3 >/dev/null || pkgs+=(python3)
  [ "$isa" != aarch64 ] || command -v arm-linux-gnueabihf-gcc >/dev/null || pkgs+=(gcc-arm-linux-gnueabihf)
  [ ${#pkgs[@]} -eq 0 ] || apt_install "${pkgs[@]}"
}

# The kernel package that Debian's meta-package for the ISA names now.
kernel_package() {
  local meta=linux-image-${KERNEL_FLAVOUR[$1]}:${DEB_ARCH[$1]}
  deb_known "$1" "$meta"
  apt-cache depends "$meta" | sed -n 's/^ *Depends: \(linux-image-[^:]*\).*/\1/p' | head -n 1
}

# Makes apt know the ISA's packages (dpkg --add-architecture; nothing of it is installed).
deb_known() {
  local arch=${DEB_ARCH[$1]}
  apt-cache show "$2" >/dev/null 2>&1 && return
  dpkg --print-foreign-architectures | grep -qx "$arch" || dpkg --add-architecture "$arch"
  apt-get update -qq
}

# Downloads package $2 of ISA $1 and unpacks it under target/vm/debs/ (kept between runs);
# prints the directory it is unpacked in.
deb_fetch() {
  local arch=${DEB_ARCH[$1]} dir deb ver
  dir=$PWD/target/vm/debs/$arch
  deb_known "$1" "$2:$arch"
  mkdir -p "$dir"
  # The candidate's file, as apt names it (an epoch's colon as %3a); downloaded once.
  ver=$(apt-cache policy "$2:$arch" | sed -n 's/^ *Candidate: //p')
  deb=${2}_${ver/:/%3a}_$arch.deb
  [ -f "$dir/$deb" ] || (cd "$dir" && apt-get download -q "$2:$arch" >&2) ||
    { echo "cross/vm.sh: could not download $2:$arch" >&2; return 1; }
  if [ ! -d "$dir/${deb%.deb}" ]; then
    dpkg-deb -x "$dir/$deb" "$dir/${deb%.deb}.part" && mv "$dir/${deb%.deb}.part" "$dir/${deb%.deb}"
  fi
  echo "$dir/${deb%.deb}"
}

# The initramfs's init: pivot_root cannot leave an initramfs, so /init copies the tree to a
# tmpfs and switches to it; /init2 mounts what a host has (cgroup2 alone at /sys/fs/cgroup),
# loads the modules and runs the tests with the filter and list from the kernel command line.
vm_init() {
  cat > "$1/init" <<'INIT'
#!/bin/sh
mount -t proc proc /proc
mount -t tmpfs -o size=1200m root /newroot
for d in bin etc lib lib64 init2; do [ ! -e /$d ] || cp -a /$d /newroot/; done
mkdir -p /newroot/proc /newroot/sys /newroot/dev /newroot/tmp /newroot/run
umount /proc
exec switch_root /newroot /init2 "$@"
INIT
  cat > "$1/init2" <<'INIT'
#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mkdir -p /dev/pts
mount -t devpts devpts /dev/pts
mount -t tmpfs tmp /tmp
mount -t tmpfs run /run
mount -t cgroup2 cgroup2 /sys/fs/cgroup
# Loopback, with 127.0.0.1 (Debian's kernels bring it up themselves, for IP autoconfiguration).
ip link set lo up
# In dependency order (bridge after llc and stp).
for m in $(cat /lib/modules/order 2>/dev/null); do insmod /lib/modules/$m.ko || echo "vm: insmod $m failed"; done
# A line of its own: the console may still be in the middle of a kernel message.
echo
echo "vm: booted in $(cut -d' ' -f1 /proc/uptime) s, $(uname -m) $(uname -r), cgroup2 controllers: $(cat /sys/fs/cgroup/cgroup.controllers), seccomp filter: $(grep -q '^Seccomp_filters:' /proc/self/status && echo yes || echo no)"
filter=""
must=""
for a in $(cat /proc/cmdline); do
  case $a in
    chitin.filter=*) filter=$(echo "${a#chitin.filter=}" | tr , ' ') ;;
    chitin.must=?*) must=/etc/must-run/${a#chitin.must=} ;;
  esac
done
. /etc/test-env
t0=$(cut -d. -f1 /proc/uptime)
CHITIN_MUST_RUN=$must CHITIN_SOAK_CYCLES=5 CHITIN_BIN=/bin/chitin CHITIN_RECVTTY=/bin/chitin-recvtty TMPDIR=/tmp /bin/integration $filter
code=$?
echo "vm: tests took $(( $(cut -d. -f1 /proc/uptime) - t0 )) s"
echo "vm-exit=$code"
poweroff -f
INIT
  chmod +x "$1/init" "$1/init2"
}
