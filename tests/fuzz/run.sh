#!/usr/bin/env bash
# Runs each cargo-fuzz target for a bounded time (CHITIN_FUZZ_SECONDS, default 60, each) from its
# seed corpus, with overflow checks and debug assertions on. An input that fails is left in
# tests/fuzz/artifacts/TARGET/ and the run fails: copy it to tests/fuzz/regressions/TARGET/, where
# `cargo test` (fuzzing::tests) replays it from then on.
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${CHITIN_FUZZ_SECONDS:-60}
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked --quiet
# libFuzzer's sanitizer flags are unstable: RUSTC_BOOTSTRAP lets the stable toolchain take them,
# as cross/build.sh does for -Zbuild-std.
export RUSTC_BOOTSTRAP=1
work=$(mktemp -d /tmp/chitin-fuzz.XXXXXX)
trap 'rm -rf "$work"' EXIT
if ! cargo fuzz build --fuzz-dir tests/fuzz --debug-assertions > "$work/build.log" 2>&1; then
  tail -n 40 "$work/build.log" >&2
  exit 1
fi
for t in config seccomp; do
  mkdir -p "$work/$t"
  args=(-max_total_time="$secs" -print_final_stats=1)
  [ -f "tests/fuzz/$t.dict" ] && args+=(-dict="tests/fuzz/$t.dict")
  if cargo fuzz run --fuzz-dir tests/fuzz --debug-assertions "$t" "$work/$t" "tests/fuzz/corpus/$t" \
    -- "${args[@]}" > "$work/$t.log" 2>&1; then
    awk -v t="$t" -v s="$secs" '/^stat::number_of_executed_units/ {runs=$2}
      /^stat::new_units_added/ {units=$2}
      END {if (runs == 0) {print "fuzz " t ": ran no input" > "/dev/stderr"; exit 1}
        printf "fuzz %s: %d inputs in %d s, %d new to the corpus, none failed\n", t, runs, s, units}' "$work/$t.log"
  else
    echo "fuzz $t: FAILED; the end of its output:" >&2
    grep -v '^"' "$work/$t.log" | tail -n 40 >&2
    exit 1
  fi
done
