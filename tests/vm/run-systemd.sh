#!/usr/bin/env bash
# Runs the integration tests under a real systemd as pid 1: Debian's kernel booted under
# qemu-system-x86_64 (software emulation) on a Debian 12 userland made by mmdebstrap, with systemd,
# dbus, Docker, containerd and Podman, cached as an ext4 image under target/vm/systemd/ (or
# $CHITIN_VM_CACHE). chitin and the test binary come in on a second disk made per run. Arguments
# filter the tests by name, as for the test binary. With --hybrid first, systemd mounts the hybrid
# hierarchy (v1 controllers, cgroup2 at /sys/fs/cgroup/unified) in place of pure cgroup v2.
# CHITIN_CLIENT_RUNTIME, if set, passes on to the tests (the clients' runtime: runc as the control).
set -euo pipefail
cd "$(dirname "$0")/../.."
unified=1 mode=systemd
if [ "${1:-}" = --hybrid ]; then unified=0 mode=systemd-hybrid; shift; fi
need=()
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
command -v mmdebstrap >/dev/null || need+=(mmdebstrap)
command -v mke2fs >/dev/null || need+=(e2fsprogs)
command -v cpio >/dev/null || need+=(cpio)
command -v modprobe >/dev/null || need+=(kmod)
compgen -G '/boot/vmlinuz-*-amd64' >/dev/null || need+=(linux-image-amd64)
{ [ -x /bin/busybox ] && ! ldd /bin/busybox >/dev/null 2>&1; } || need+=(busybox-static)
source tests/apt.sh
[ ${#need[@]} -eq 0 ] || apt_install "${need[@]}"
kernel=$(ls /boot/vmlinuz-*-amd64 | sort -V | tail -n 1)
kver=${kernel#/boot/vmlinuz-}

# The userland. Docker, containerd and Podman are there for the runs that drive them (systemd
# cgroup driver); busybox-static for the tests' rootfs (tests/rootfs.sh); apparmor for Docker's
# default profile and the AppArmor tests (Debian's kernel runs AppArmor); tmux and curl for the
# client tests (a terminal, the Engine API).
pkgs=(systemd systemd-sysv dbus udev iproute2 kmod procps util-linux busybox-static apparmor
  iptables docker.io containerd runc podman crun conmon catatonit uidmap dbus-user-session tmux curl)
mm_opts=(--variant=minbase --mode=root --aptopt='Acquire::Languages "none"'
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*'
  --dpkgopt='path-exclude=/usr/share/locale/*')
mirrors=("deb http://deb.debian.org/debian bookworm main"
  "deb http://deb.debian.org/debian bookworm-updates main"
  "deb http://deb.debian.org/debian-security bookworm-security main")

# Applied to the unpacked tree before it becomes the image.
customize() {
  local d=$1
  echo chitin-vm > "$d/etc/hostname"
  printf '127.0.0.1 localhost\n127.0.1.1 chitin-vm\n' > "$d/etc/hosts"
  # A machine-id of its own: an empty one makes each boot (of a snapshot: every boot) a first boot,
  # whose preset-all would enable docker and containerd again.
  od -An -N16 -tx1 /dev/urandom | tr -d ' \n' > "$d/etc/machine-id"
  sed -i 's/^root:[^:]*:/root::/' "$d/etc/shadow"
  mkdir -p "$d/opt/chitin"
  # The initramfs mounts the root read-write; the second disk holds chitin and the tests.
  printf '%s\n' '/dev/vda / ext4 rw 0 0' '/dev/vdb /opt/chitin ext4 ro,nofail 0 0' \
    'tmpfs /tmp tmpfs mode=1777,size=1500m 0 0' > "$d/etc/fstab"
  # Type=exec, not oneshot: a oneshot still starting would keep the system "starting".
  cat > "$d/etc/systemd/system/chitin-tests.service" <<'UNIT'
[Unit]
Description=chitin integration tests
Wants=dbus.service
After=multi-user.target basic.target dbus.service
RequiresMountsFor=/opt/chitin /tmp
ConditionPathExists=/opt/chitin/run.sh

[Service]
Type=exec
ExecStart=/opt/chitin/run.sh
Environment=HOME=/root
# As from a shell: the tests' processes and containers get SIGPIPE's default.
IgnoreSIGPIPE=no
StandardOutput=tty
StandardError=inherit
TTYPath=/dev/ttyS0

[Install]
WantedBy=multi-user.target
UNIT
  chroot "$d" systemctl -q enable chitin-tests.service
  # Started by the tests that use them, not at boot; the timers would only disturb a run.
  chroot "$d" systemctl -q disable docker.service docker.socket containerd.service \
    podman.service podman.socket podman-restart.service podman-auto-update.service \
    podman-auto-update.timer apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer \
    e2scrub_all.timer e2scrub_reap.service fstrim.timer
  # agetty's vhangup on ttyS0 would cut the tests' output there.
  chroot "$d" systemctl -q mask serial-getty@ttyS0.service
  mkdir -p "$d/lib/modules"
  cp -a "/lib/modules/$kver" "$d/lib/modules/"
}

cache=${CHITIN_VM_CACHE:-target/vm/systemd}
key=$(printf '%s\n' "$kver" "${pkgs[*]}" "${mm_opts[*]}" "${mirrors[*]}" "$(declare -f customize)" |
  sha256sum | cut -c1-16)
img=$cache/bookworm-$key.ext4
if [ ! -f "$img" ]; then
  echo "vm: building $img" >&2
  t0=$SECONDS
  mkdir -p "$cache"
  rm -rf "$cache"/bookworm-* "$cache/build"
  mmdebstrap -q "${mm_opts[@]}" --include="$(IFS=,; echo "${pkgs[*]}")" bookworm "$cache/build" \
    "${mirrors[@]}"
  customize "$cache/build"
  # Room to spare for what the guest writes (to a snapshot: the image stays as built).
  size=$(( $(du -sm "$cache/build" | cut -f1) + 1024 ))
  truncate -s "${size}M" "$img.part"
  mke2fs -q -t ext4 -L chitin-root -d "$cache/build" "$img.part"
  rm -rf "$cache/build"
  mv "$img.part" "$img"
  echo "vm: image built in $((SECONDS - t0)) s, $(du -sh --apparent-size "$img" | cut -f1) ($(du -sh "$img" | cut -f1) used)" >&2
fi

source tests/vm/test-binary.sh

work=$(mktemp -d /tmp/chitin-vm.XXXXXX)
trap 'rm -rf "$work"' EXIT
# The second disk: chitin, the tests, the must-run lists and the guest's side of the run.
opt=$work/opt
mkdir -p "$opt/must-run"
cp target/debug/chitin target/debug/chitin-recvtty "$opt/"
cp "$testbin" "$opt/integration"
cp tests/must-run/* "$opt/must-run/"
must=$(basename "${CHITIN_MUST_RUN:-}")
cat > "$opt/run.sh" <<'RUN'
#!/bin/sh
# chitin-tests.service: shows that systemd runs the system, then runs the tests with the filter
# and list from the kernel command line.
echo
echo "vm: booted in $(cut -d' ' -f1 /proc/uptime) s, pid 1 is $(readlink /proc/1/exe) ($(systemctl --version | head -n 1))"
echo "vm: system $(systemctl is-system-running --wait) at $(cut -d' ' -f1 /proc/uptime) s"
systemctl --failed --plain --no-legend | sed 's/^/vm: failed unit: /'
# systemd's manager on the system bus, as a cgroup driver reaches it.
echo "vm: dbus $(systemctl is-active dbus.service), $(busctl list --no-legend | wc -l) bus names, systemd's Version on the bus: $(busctl get-property org.freedesktop.systemd1 /org/freedesktop/systemd1 org.freedesktop.systemd1.Manager Version 2>&1)"
ctl=$(cat /sys/fs/cgroup/cgroup.controllers 2>/dev/null || cat /sys/fs/cgroup/unified/cgroup.controllers)
echo "vm: /sys/fs/cgroup is $(stat -fc %T /sys/fs/cgroup), cgroup2 controllers: ${ctl:-none}"
grep cgroup /proc/self/mounts | awk '{print "vm: mount", $2, $3, $4}'
sed 's/^/vm: self-cgroup /' /proc/self/cgroup
filter=""
must=""
for a in $(cat /proc/cmdline); do
  case $a in
    chitin.filter=*) filter=$(echo "${a#chitin.filter=}" | tr , ' ') ;;
    chitin.must=?*) must=/opt/chitin/must-run/${a#chitin.must=} ;;
    chitin.client_runtime=?*) export CHITIN_CLIENT_RUNTIME=${a#chitin.client_runtime=} ;;
  esac
done
cd /tmp
t0=$(cut -d. -f1 /proc/uptime)
# Emulated, a soak cycle takes ~0.8 s: a short soak here (the host run does 200).
# A throwaway machine: the rootless tests may add a user and subordinate ids.
CHITIN_VM_USERS=1 CHITIN_MUST_RUN=$must CHITIN_SOAK_CYCLES=20 CHITIN_BIN=/opt/chitin/chitin \
  CHITIN_RECVTTY=/opt/chitin/chitin-recvtty TMPDIR=/tmp /opt/chitin/integration $filter 2>&1
code=$?
echo "vm: tests took $(( $(cut -d. -f1 /proc/uptime) - t0 )) s"
echo "vm-exit=$code"
sync
poweroff -f
RUN
chmod +x "$opt/run.sh"
truncate -s "$(( $(du -sm "$opt" | cut -f1) + 64 ))M" "$work/opt.ext4"
mke2fs -q -t ext4 -L chitin -d "$opt" "$work/opt.ext4"

# The initramfs: busybox and the modules that reach the root (virtio's PCI and block drivers,
# ext4: Debian builds them as modules), in the order modprobe gives; crc32c-intel fails under
# TCG (no SSE4.2) and crc32c_generic serves instead.
root=$work/initramfs
mkdir -p "$root"/{bin,proc,sys,dev,newroot,lib/modules}
cp /bin/busybox "$root/bin/busybox"
for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -sf busybox "$root/bin/$a"; done
modprobe -S "$kver" -a --show-depends virtio_pci virtio_blk crc32c_generic ext4 |
  awk '$1 == "insmod" && !seen[$2]++ {print $2}' | while read -r ko; do
  cp "$ko" "$root/lib/modules/"
  basename "$ko" >> "$root/lib/modules/order"
done
cat > "$root/init" <<'INIT'
#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in $(cat /lib/modules/order); do insmod /lib/modules/$m 2>/dev/null; done
i=0
while [ ! -b /dev/vda ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
mount -t ext4 -o rw /dev/vda /newroot || { echo "vm: cannot mount the root"; poweroff -f; }
for d in dev proc sys; do mount --move /$d /newroot/$d; done
exec switch_root /newroot /sbin/init
INIT
chmod +x "$root/init"
(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) > "$work/initramfs.gz"

filter=$(IFS=,; echo "$*")
mkdir -p target/vm
log=target/vm/console-$mode.log
timeout "${CHITIN_VM_TIMEOUT:-1500}" qemu-system-x86_64 -accel tcg -machine q35 -m 3072 -smp 2 \
  -nodefaults -nographic -serial mon:stdio -no-reboot -device virtio-rng-pci \
  -drive file="$img",format=raw,if=virtio,snapshot=on \
  -drive file="$work/opt.ext4",format=raw,if=virtio,readonly=on \
  -kernel "$kernel" -initrd "$work/initramfs.gz" \
  -append "console=ttyS0 loglevel=4 panic=-1 systemd.unified_cgroup_hierarchy=$unified chitin.filter=$filter chitin.must=$must chitin.client_runtime=${CHITIN_CLIENT_RUNTIME:-}" |
  tee "$log" | grep -a -A"${CHITIN_VM_CONTEXT:-3}" -E '^(test |integration:|vm:|vm-exit=|thread |  left|  right|assertion)' || true
code=$(sed -n 's/^vm-exit=\([0-9]*\).*/\1/p' "$log" | tail -n 1)
if [ -z "$code" ]; then
  echo "the VM did not finish the tests; last lines:" >&2
  tail -n 30 "$log" >&2
  exit 1
fi
# Booted for hybrid, a systemd that mounted pure v2 all the same would test the wrong layout.
if [ "$unified" = 0 ] && ! grep -aq '^vm: /sys/fs/cgroup is tmpfs' "$log"; then
  echo "hybrid run: /sys/fs/cgroup is not the hybrid layout" >&2
  exit 1
fi
exit "$code"
