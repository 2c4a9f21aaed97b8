# Shared by cross/build.sh and cross/test-qemu.sh: the five ISAs, their Rust targets, linkers
# and QEMU user emulators, and the set-up they need on a Debian machine.
ALL_ISAS=(x86_64 aarch64 ppc64le s390x sparc64)
declare -A TRIPLE=(
  [x86_64]=x86_64-unknown-linux-musl
  [aarch64]=aarch64-unknown-linux-musl
  [ppc64le]=powerpc64le-unknown-linux-gnu
  [s390x]=s390x-unknown-linux-gnu
  [sparc64]=sparc64-unknown-linux-gnu
)
declare -A GCC=(
  [aarch64]=aarch64-linux-gnu-gcc
  [ppc64le]=powerpc64le-linux-gnu-gcc
  [s390x]=s390x-linux-gnu-gcc
  [sparc64]=sparc64-linux-gnu-gcc
)
declare -A QEMU=(
  [x86_64]=""
  [aarch64]=qemu-aarch64-static
  [ppc64le]=qemu-ppc64le-static
  [s390x]=qemu-s390x-static
  [sparc64]=qemu-sparc64-static
)

cross_setup() {
  local pkgs=() isa
  for isa in "$@"; do
    [ -n "${GCC[$isa]:-}" ] && ! command -v "${GCC[$isa]}" >/dev/null && pkgs+=("gcc-${GCC[$isa]%-gcc}")
  done
  command -v qemu-s390x-static >/dev/null || pkgs+=(qemu-user-static)
  command -v file >/dev/null || pkgs+=(file)
  # libseccomp for s390x: the differential tests' oracle for the big-endian ABIs.
  if [[ " $* " == *" s390x "* ]] && [ ! -e /usr/lib/s390x-linux-gnu/libseccomp.a ]; then
    dpkg --add-architecture s390x
    pkgs+=(libseccomp-dev:s390x)
  fi
  if [ ${#pkgs[@]} -gt 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}" >/dev/null
  fi
  export LIBSECCOMP_LINK_TYPE=static LIBSECCOMP_LIB_PATH=/usr/lib/s390x-linux-gnu
  for isa in "$@"; do
    local triple=${TRIPLE[$isa]} var
    var=$(echo "$triple" | tr 'a-z-' 'A-Z_')
    if [ "$isa" = sparc64 ]; then
      rustup component add rust-src >/dev/null 2>&1
    else
      rustup target add "$triple" >/dev/null 2>&1
    fi
    [ -n "${GCC[$isa]:-}" ] && export "CARGO_TARGET_${var}_LINKER=${GCC[$isa]}"
    # glibc targets link statically: QEMU user mode hangs on dynamically linked glibc
    # programs that start threads (test harnesses do).
    case "$triple" in
      *-gnu) export "CARGO_TARGET_${var}_RUSTFLAGS=-C target-feature=+crt-static" ;;
    esac
  done
}
