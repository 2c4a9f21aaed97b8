#!/usr/bin/env bash
# The full soak: 2,000 create/start/delete cycles (CI runs 200 as part of the integration tests),
# with no growth allowed in fds, mounts, cgroups or state directories, and a bound on the kernel's
# unreclaimable memory. CHITIN_SOAK_CYCLES overrides the count.
set -euo pipefail
cd "$(dirname "$0")/.."
CHITIN_SOAK_CYCLES=${CHITIN_SOAK_CYCLES:-2000} cargo test --test integration -- reliability::soak
