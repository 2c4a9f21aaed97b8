# Sourced by the VM scripts: builds chitin and the integration tests for this host and sets
# $testbin to the test harness (cargo also lists the chitin binary it needs, in no fixed order).
cargo build --quiet
testbin=$(cargo test --test integration --no-run --message-format=json 2>/dev/null | python3 -c '
import json, sys
exes = [m["executable"] for m in map(json.loads, sys.stdin)
        if m.get("reason") == "compiler-artifact" and m.get("executable") and m["profile"]["test"]]
print(exes[-1] if exes else "")')
[ -x "$testbin" ] || { echo "no integration test binary" >&2; exit 1; }
