#!/usr/bin/env bash
# Every test of chitin on a fresh Debian machine, as root: installs what the tests use (busybox
# for the rootfs, runc to compare with, Docker, containerd and Podman as clients), runs the unit
# tests, the fuzz targets for a bounded time and the integration tests on this host, then the
# integration tests again on pure cgroup v2 in a QEMU VM (tests/vm/run-v2.sh), the SELinux
# tests in a second boot of it with SELinux, and the systemd cgroup driver's tests under a real
# systemd (tests/vm/run-systemd.sh, on cgroup v2 and in systemd's hybrid mode).
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
{ [ -x /bin/busybox ] && ! ldd /bin/busybox >/dev/null 2>&1; } || need+=(busybox-static)
command -v runc >/dev/null || need+=(runc)
# libseccomp is the oracle of the seccomp compiler's differential tests.
pkg-config --exists libseccomp 2>/dev/null || need+=(libseccomp-dev pkg-config)
# The clients that drive chitin in the tests, and a terminal for the interactive ones.
command -v dockerd >/dev/null || need+=(docker.io)
command -v ctr >/dev/null || need+=(containerd)
command -v podman >/dev/null || need+=(podman)
command -v tmux >/dev/null || need+=(tmux)
# strace injects SIGKILL at each step of a create (reliability::killed_at_each_stage_of_create).
command -v strace >/dev/null || need+=(strace)
# A software TPM for the measurement tests, and tpm2-tools to read its PCRs independently.
command -v swtpm >/dev/null || need+=(swtpm)
command -v tpm2_pcrread >/dev/null || need+=(tpm2-tools)
# curl, for the Engine API and to fetch a dockerd that passes annotations (below).
command -v curl >/dev/null || need+=(curl)
# ip (veth pairs for the netDevices tests), unshare and nsenter (their network namespace).
command -v ip >/dev/null || need+=(iproute2)
command -v nsenter >/dev/null || need+=(util-linux)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
# Debian 12's dockerd (20.10) passes no annotations to the runtime; Debian 13's does. A fetch
# that fails leaves the Docker CDI test without one: it skips, which its list makes a failure.
CHITIN_NEWER_DOCKERD=$(bash tests/fetch-dockerd.sh) || CHITIN_NEWER_DOCKERD=
export CHITIN_NEWER_DOCKERD
# Each run names the tests it must run (tests/must-run/): a listed test that skips fails it. A
# filter given here runs just those tests, with no list.
filtered=$#
must_run() { [ "$filtered" -gt 0 ] || echo "$PWD/tests/must-run/$1"; }
CHITIN_MUST_RUN=$(must_run host) cargo test --workspace --all-targets -- "$@"
# The fuzz targets, a minute each (CHITIN_FUZZ_SECONDS); failing inputs become regression tests.
bash tests/fuzz/run.sh
# The client scenarios again with runc as the runtime: they pass with the reference runtime too.
CHITIN_MUST_RUN=$(must_run clients-runc) CHITIN_CLIENT_RUNTIME=runc cargo test --test integration -- docker:: docker_userns:: ctr:: podman::
# A cgroup v1-only host: the same host with its unified hierarchy hidden in a private mount
# namespace, for the tests that touch cgroups.
if mountpoint -q /sys/fs/cgroup/unified; then
  unshare -m --propagation private sh -c \
    "umount /sys/fs/cgroup/unified && CHITIN_MUST_RUN=$(must_run host-v1) exec cargo test --test integration -- cgroups:: lifecycle:: differential::"
else
  echo "cgroup v1-only run skipped: this host has no separate unified hierarchy to hide"
fi
# The same integration tests on a pure cgroup v2 kernel, in a VM (CHITIN_SKIP_VM=1 skips it).
if [ "${CHITIN_SKIP_VM:-0}" = 1 ]; then
  echo "cgroup v2 VM run skipped: CHITIN_SKIP_VM=1"
else
  CHITIN_MUST_RUN=$(must_run vm-v2) bash tests/vm/run-v2.sh "$@"
  # SELinux and AppArmor exclude each other: the SELinux tests in a second boot.
  CHITIN_MUST_RUN=$(must_run vm-selinux) bash tests/vm/run-v2.sh --selinux selinux::
  # A real systemd as pid 1, on cgroup v2 and in its hybrid mode: the systemd cgroup driver, and
  # the clients in their systemd cgroup mode (with runc too, as the control).
  CHITIN_MUST_RUN=$(must_run vm-systemd) bash tests/vm/run-systemd.sh systemd:: differential::under_systemd docker:: ctr:: podman:: rootless::
  CHITIN_MUST_RUN=$(must_run vm-systemd-hybrid) bash tests/vm/run-systemd.sh --hybrid systemd:: differential::under_systemd docker:: ctr:: podman::
  CHITIN_MUST_RUN=$(must_run vm-systemd-runc) CHITIN_CLIENT_RUNTIME=runc bash tests/vm/run-systemd.sh docker:: ctr:: podman::
fi
