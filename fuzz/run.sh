#!/usr/bin/env bash
# Runs every fuzz target for a bounded time, then prints a summary.
#
#   bash fuzz/run.sh                       # or: make fuzz
#   FUZZ_SECONDS=600 bash fuzz/run.sh      # longer runs
#   FUZZ_TARGETS="apply" bash fuzz/run.sh  # some targets only
#
# Environment:
#   FUZZ_SECONDS    seconds per target (libFuzzer -max_total_time), default 60
#   FUZZ_TARGETS    space-separated targets, default "args state_decode apply"
#   FUZZ_SANITIZER  address (default; falls back to none if it does not
#                   build), or none
#   FUZZ_NICE       niceness of the build and the runs, default 10
#
# Works on stable Rust: cargo-fuzz needs nightly flags, so RUSTC_BOOTSTRAP=1
# is set here. New corpus entries go to fuzz/corpus/<target>/ (untracked);
# fuzz/seeds/<target>/ (committed) is read, never written. Crash inputs land
# in fuzz/artifacts/<target>/, logs in fuzz/target/logs/.
# Exits 1 if any target crashed, 2 if something else failed (build, run).
set -uo pipefail

FUZZ_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$FUZZ_DIR")"
cd "$ROOT"

FUZZ_SECONDS="${FUZZ_SECONDS:-60}"
FUZZ_TARGETS="${FUZZ_TARGETS:-args state_decode apply}"
FUZZ_SANITIZER="${FUZZ_SANITIZER:-address}"
FUZZ_NICE="${FUZZ_NICE:-10}"
export RUSTC_BOOTSTRAP=1

log() { printf '==> %s\n' "$*" >&2; }

if ! cargo fuzz --version >/dev/null 2>&1; then
    log "installing cargo-fuzz"
    cargo install --locked cargo-fuzz || {
        log "could not install cargo-fuzz"
        exit 2
    }
fi

LOG_DIR="$FUZZ_DIR/target/logs"
mkdir -p "$LOG_DIR"

# cargo fuzz SUBCOMMAND [ARGS...]; --fuzz-dir must come before any "--".
fuzz() {
    local sub="$1"
    shift
    nice -n "$FUZZ_NICE" cargo fuzz "$sub" --fuzz-dir "$FUZZ_DIR" "$@"
}

# The address sanitizer needs its runtime from the toolchain; without it,
# fuzz without a sanitizer (the code under test is safe Rust: panics,
# overflows and failed assertions are what we look for).
log "building fuzz targets (sanitizer: $FUZZ_SANITIZER)"
if ! fuzz build -s "$FUZZ_SANITIZER" >"$LOG_DIR/build.log" 2>&1; then
    if [ "$FUZZ_SANITIZER" != none ]; then
        log "build with -s $FUZZ_SANITIZER failed (see $LOG_DIR/build.log); retrying with -s none"
        FUZZ_SANITIZER=none
        if ! fuzz build -s none >"$LOG_DIR/build.log" 2>&1; then
            tail -n 30 "$LOG_DIR/build.log" >&2
            log "build failed"
            exit 2
        fi
    else
        tail -n 30 "$LOG_DIR/build.log" >&2
        log "build failed"
        exit 2
    fi
fi

# Executions from a libFuzzer log: "Done N runs in ...", else the
# "#N DONE" line, else the last "#N ..." status line (a crashed run).
executions() {
    local n
    n=$(grep -aoE '^Done [0-9]+ runs' "$1" | tail -n 1 | awk '{print $2}')
    [ -n "$n" ] || n=$(grep -aoE '^#[0-9]+[[:space:]]+DONE' "$1" | tail -n 1 | tr -dc 0-9)
    [ -n "$n" ] || n=$(grep -aoE '^#[0-9]+' "$1" | tail -n 1 | tr -dc 0-9)
    printf '%s' "${n:-?}"
}

crashed=0
failed=0
summary=()
for t in $FUZZ_TARGETS; do
    corpus="$FUZZ_DIR/corpus/$t"
    seeds="$FUZZ_DIR/seeds/$t"
    mkdir -p "$corpus" "$FUZZ_DIR/artifacts/$t"
    dirs=("$corpus")
    [ -d "$seeds" ] && dirs+=("$seeds")
    tlog="$LOG_DIR/$t.log"
    log "fuzzing $t for ${FUZZ_SECONDS}s (log: $tlog)"
    fuzz run -s "$FUZZ_SANITIZER" "$t" "${dirs[@]}" -- \
        -max_total_time="$FUZZ_SECONDS" -timeout=10 -print_final_stats=1 \
        >"$tlog" 2>&1
    rc=$?
    runs=$(executions "$tlog")
    artifact=$(grep -aoE 'Test unit written to [^ ]+' "$tlog" | tail -n 1 | awk '{print $5}')
    if [ -n "$artifact" ]; then
        crashed=1
        summary+=("$(printf '%-14s %12s runs  CRASH  %s' "$t" "$runs" "$artifact")")
        log "$t: crash, input saved to $artifact"
        echo "--- input (hex) ---" >&2
        od -An -v -tx1 "$artifact" | tr -d ' \n' | fold -w 64 >&2
        echo >&2
        echo "--- message ---" >&2
        grep -aE -A 3 "panicked at|ERROR: (AddressSanitizer|libFuzzer)" "$tlog" | head -n 20 >&2
        echo "--- reproduce ---" >&2
        echo "RUSTC_BOOTSTRAP=1 cargo fuzz run -s $FUZZ_SANITIZER $t $artifact" >&2
    elif [ "$rc" -ne 0 ]; then
        failed=1
        summary+=("$(printf '%-14s %12s runs  ERROR (exit %s, see %s)' "$t" "$runs" "$rc" "$tlog")")
        tail -n 20 "$tlog" >&2
    else
        summary+=("$(printf '%-14s %12s runs  ok' "$t" "$runs")")
    fi
done

echo
echo "fuzz summary (${FUZZ_SECONDS}s per target, sanitizer: $FUZZ_SANITIZER)"
printf '%s\n' "${summary[@]}"
if [ "$crashed" -ne 0 ]; then
    exit 1
fi
if [ "$failed" -ne 0 ]; then
    exit 2
fi
