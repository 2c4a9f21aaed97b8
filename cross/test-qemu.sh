#!/usr/bin/env bash
# Runs each ISA's build under QEMU user mode: the arch crate's unit tests, the seccomp compiler's
# tests (and the shipped profiles'), and `chitin --version` and `chitin features` of the release
# binary that cross/build.sh made. QEMU user mode refuses seccomp(2) to its guests, so features
# must report seccomp as disabled there. Arguments: the ISAs (default: all five).
set -euo pipefail
cd "$(dirname "$0")/.."
source cross/targets.sh
isas=("$@")
[ ${#isas[@]} -gt 0 ] || isas=("${ALL_ISAS[@]}")
cross_setup "${isas[@]}"
passed=0 failed=0
check() {
  local what=$1; shift
  if "$@"; then passed=$((passed + 1)); echo "ok: $what"; else failed=$((failed + 1)); echo "FAILED: $what"; fi
}
# Runs a test harness; a run in which no test passed fails (a filter that matches nothing, or the
# wrong target, would otherwise pass).
some_passed() {
  local out
  if ! out=$("$@" 2>&1); then echo "$out" | tail -n 20; return 1; fi
  echo "$out" | grep -E '^test result' | tail -n 1
  grep -qE 'test result: ok\. [1-9][0-9]* passed' <<<"$out"
}
# The test harness among the artifacts cargo lists (JSON build messages).
test_exe() {
  python3 -c '
import json, sys
exes = [m["executable"] for m in map(json.loads, sys.stdin)
        if m.get("reason") == "compiler-artifact" and m.get("executable") and m["profile"]["test"]]
print(exes[-1] if exes else "")'
}
for isa in "${isas[@]}"; do
  triple=${TRIPLE[$isa]}
  run=(${QEMU[$isa]})
  bin=target/$triple/release/chitin
  [ -x "$bin" ] || bash cross/build.sh "$isa" >/dev/null
  echo "== $isa ($triple) under ${run[*]:-the host}"
  check "$isa: file names the ISA" sh -c "file '$bin' | grep -q '$(case $isa in x86_64) echo x86-64;; aarch64) echo aarch64;; ppc64le) echo '64-bit LSB.*PowerPC';; s390x) echo 'IBM S/390';; sparc64) echo 'SPARC V9';; esac)'"
  check "$isa: chitin --version" sh -c "${run[*]} '$bin' --version | grep -q '^chitin version'"
  features=$("${run[@]}" "$bin" features)
  check "$isa: chitin features" python3 -c "
import json, sys
f = json.loads(sys.argv[1])
assert f['ociVersionMax'] == '1.2.0'
sc = f['linux']['seccomp']
native = {'x86_64': 'SCMP_ARCH_X86_64', 'aarch64': 'SCMP_ARCH_AARCH64', 'ppc64le': 'SCMP_ARCH_PPC64LE', 's390x': 'SCMP_ARCH_S390X', 'sparc64': 'SCMP_ARCH_SPARC64'}[sys.argv[2]]
emulated = sys.argv[3] != ''
assert sc['enabled'] == (not emulated) or sys.argv[2] == 'x86_64', sc
assert not sc['enabled'] or native in sc['archs'], sc
" "$features" "$isa" "${run[*]}"
  build=(cargo test --no-run --quiet --message-format=json --target "$triple")
  if [ "$isa" = sparc64 ]; then
    build=(env RUSTC_BOOTSTRAP=1 "${build[@]}" -Zbuild-std=std,panic_unwind,test)
  fi
  exe=$("${build[@]}" -p chitin-arch --lib 2>/dev/null | test_exe)
  # generated_tables_are_current runs cargo itself: it runs on the host.
  check "$isa: arch unit tests" some_passed "${run[@]}" "$exe" --skip generated_tables_are_current -q
  exe=$("${build[@]}" -p chitin --lib 2>/dev/null | test_exe)
  # The D-Bus wire format in each byte order (s390x's is big-endian).
  check "$isa: seccomp compiler, profile, eBPF device program and D-Bus tests" some_passed "${run[@]}" "$exe" seccomp:: profiles:: cgroup::bpf_devices:: dbus:: cgroup::systemd:: -q
done
echo
echo "cross: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
