#!/usr/bin/env bash
# The whole test suite: installs prerequisites, checks formatting and lints,
# builds the module, then runs every test binary (unit, property and
# integration tests on Redis 7.0.15, Redis 7.4.1, Redis 7.4.1 with Redis
# Stack's modules, and Valkey 9.1; replicas, a 3+3 cluster, the HTTP shim
# behind Nginx, the examples and the READMEs' marked shell blocks), even after
# one fails, and closes with a summary:
#
#   binaries: B ran, F failed, D did not run (of E)
#   total: P passed, F failed, S skipped
#
# A test that cannot run here (something it needs is absent) prints a line
# `skipped: why` and passes; it is counted as skipped, not passed. A binary
# that "did not run" was built but never reported a result (it crashed, or
# cargo stopped before it). Exits non-zero when any test failed or any binary
# failed or did not run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
# No file may import a file that imports it back (in any crate).
python3 scripts/check-circles.py
cargo build --workspace

log=$(mktemp)
bins=$(mktemp)
trap 'rm -f "$log" "$bins"' EXIT
# Every test binary cargo will run, by file name (doc-tests are added as they run).
cargo test --workspace --no-run --message-format=json 2>/dev/null \
    | python3 -c '
import json, os, sys
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m.get("profile", {}).get("test") and m.get("executable"):
        print(os.path.basename(m["executable"]))
' | sort -u >"$bins"

set +e
cargo test --workspace --no-fail-fast -- --test-threads "${TEST_THREADS:-2}" --show-output 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e

# Binaries: "Running <src> (<path>)" or "Doc-tests <crate>" opens one; its
# "test result:" line closes it. Tests: "---- <name> stdout ----" opens a
# test's captured output; a "skipped:" line in it makes that test skipped.
awk -v expected="$bins" '
    BEGIN { while ((getline b < expected) > 0) { want[b] = 1; nwant++ } }
    function close_test() { name = "" }
    # Only passing tests can be skipped ones: libtest prints their output
    # under "successes:", a failing test'"'"'s under "failures:".
    /^ *Running / {
        path = $0; sub(/.*\(/, "", path); sub(/\).*/, "", path)
        n = split(path, parts, "/"); cur = parts[n]
        if (!(cur in want)) { want[cur] = 1; nwant++ }
        section = ""; close_test(); next
    }
    /^ *Doc-tests / {
        cur = "doc-tests " $2; section = ""
        if (!(cur in want)) { want[cur] = 1; nwant++ }
        close_test(); next
    }
    /^---- .* stdout ----$/ { name = $0; sub(/^---- /, "", name); sub(/ stdout ----$/, "", name); next }
    /^skipped:/ && name != "" && section == "successes" {
        key = cur "::" name
        if (!(key in skipped)) { skipped[key] = $0; nskip++ }
        next
    }
    /^(successes|failures):$/ { section = substr($0, 1, length($0) - 1); close_test(); next }
    /^test result:/ {
        for (i = 1; i <= NF; i++) {
            if ($(i+1) ~ /^passed/) p += $i
            if ($(i+1) ~ /^failed/) { f += $i; bf = $i }
        }
        ran[cur] = 1; nran++
        if (bf > 0 || $3 == "FAILED.") { failed_bin[cur] = 1; nfailbin++ }
        bf = 0; close_test(); next
    }
    END {
        print ""
        for (k in skipped) { s = skipped[k]; sub(/^skipped: */, "", s); printf "skipped: %s (%s)\n", k, s }
        for (b in want) if (!(b in ran)) { printf "did not run: %s\n", b; nmiss++ }
        for (b in failed_bin) printf "failed: %s\n", b
        printf "binaries: %d ran, %d failed, %d did not run (of %d)\n", nran, nfailbin, nmiss, nwant
        printf "total: %d passed, %d failed, %d skipped\n", p - nskip, f, nskip
        exit (f > 0 || nfailbin > 0 || nmiss > 0) ? 1 : 0
    }
' "$log" || status=1
exit "$status"
