# Sourced by the scripts that install what they need from Debian.
#
#   apt_install PKG...
#
# A qemu-utils newer than Debian 12's (a backport some machines have) breaks Debian 12's
# qemu-system-common: where a qemu-system package is asked for, Debian 12's qemu-utils comes too.
apt_install() {
  local pin=()
  if [[ " $* " == *" qemu-system-"* ]] &&
    dpkg --compare-versions "$(dpkg-query -W -f '${Version}' qemu-utils 2>/dev/null || echo 0)" ge 1:8; then
    pin=(--allow-downgrades qemu-utils/bookworm)
  fi
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pin[@]}" "$@" >/dev/null
}
