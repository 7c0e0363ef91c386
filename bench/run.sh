#!/usr/bin/env bash
# Benchmarks the ratelimit module against native commands and the Lua
# scripts people use today, in one run, on its own redis-server:
#
#   bash bench/run.sh                 # full run (make bench); ~5-6 minutes
#   BENCH_QUICK=1 bash bench/run.sh   # quick smoke run, seconds, numbers are noisy
#
# Measures (see bench/README.md):
#   1. requests/s with redis-benchmark -c 50 -P 16 --threads 1 [-r 100000] -n N
#   2. server-side usec_per_call from INFO commandstats (EVALSHA for Lua)
#   3. both as ratios to native INCR measured in the same run
#   4. used_memory per key (delta after FLUSHALL / keys) for every algorithm
# and prints a Markdown report, also written to bench/results.md
# (bench/results-quick.md for BENCH_QUICK=1, so a quick run never overwrites
# a full one).
#
# Environment:
#   BENCH_QUICK=1    small N and key counts (defaults below)
#   BENCH_N          requests per throughput measurement (default 2000000; quick 100000)
#   BENCH_KEYS       keys for the memory measurements (default 1000000; quick 20000);
#                    10-entry logs use BENCH_KEYS/10 keys, 100-entry logs BENCH_KEYS/100
#   BENCH_RANGE      -r for random keys (default 100000)
#   BENCH_BUILD=0    do not run cargo build first
#   BENCH_MODULE     module path (default target/release/libredis_ratelimit.so)
#   BENCH_OUT        report path (default bench/results.md / bench/results-quick.md)
#   BENCH_ONLY       throughput | memory: run only that part
#   REDIS_CELL_SO    the direct peer: path to redis-cell's libredis_cell.so, built
#                    from its public source outside this repository; adds
#                    "redis-cell CL.THROTTLE (peer)" rows (throughput and memory),
#                    measured on a second redis-server that loads only redis-cell
#                    (both modules define CL.THROTTLE). Unset: those rows are
#                    skipped, with a line saying so.
set -euo pipefail
export LC_ALL=C

cd "$(dirname "$0")/.."
ROOT=$PWD
BENCH_DIR=$ROOT/bench

QUICK=${BENCH_QUICK:-0}
if [ "$QUICK" = 1 ]; then
    N=${BENCH_N:-100000}
    KEYS=${BENCH_KEYS:-20000}
    OUT=${BENCH_OUT:-$BENCH_DIR/results-quick.md}
else
    N=${BENCH_N:-2000000}
    KEYS=${BENCH_KEYS:-1000000}
    OUT=${BENCH_OUT:-$BENCH_DIR/results.md}
fi
RANGE=${BENCH_RANGE:-100000}
ONLY=${BENCH_ONLY:-}
MODULE=${BENCH_MODULE:-$ROOT/target/release/libredis_ratelimit.so}
CLIENTS=50
PIPELINE=16

TOOL=bench
# shellcheck source=bench/lib.sh
. "$BENCH_DIR/lib.sh"

for tool in redis-server redis-cli redis-benchmark awk; do
    command -v "$tool" >/dev/null ||
        die "$tool is missing (Debian: apt-get install redis-server redis-tools; or run 'make deps')"
done
case "$N" in '' | *[!0-9]*) die "BENCH_N must be a positive integer, got '$N'" ;; esac
case "$KEYS" in '' | *[!0-9]*) die "BENCH_KEYS must be a positive integer, got '$KEYS'" ;; esac
[ "$KEYS" -ge 100 ] || die "BENCH_KEYS must be at least 100 (100-entry logs use BENCH_KEYS/100 keys)"
[ "$KEYS" -le 99999999 ] || die "BENCH_KEYS must be below 100,000,000 (12-byte key names key:NNNNNNNN)"

build_module "$MODULE" BENCH_MODULE
CELL_SO=${REDIS_CELL_SO:-}
[ -z "$CELL_SO" ] || [ -f "$CELL_SO" ] || die "REDIS_CELL_SO=$CELL_SO does not exist"

# start_server MODULE: redis-server with MODULE on the first free port from a
# random base (retries on a lost race for the port); sets PORT and SERVER_PID.
start_server() {
    local module=$1
    local base=$((20000 + RANDOM % 20000)) p attempt
    for attempt in $(seq 0 49); do
        p=$((base + attempt))
        port_in_use "$p" && continue
        "${SERVER_PIN[@]}" redis-server --port "$p" --bind 127.0.0.1 \
            --save '' --appendonly no --dir "$WORK" --logfile "$WORK/redis.log" \
            --loadmodule "$module" &
        SERVER_PID=$!
        local i
        for i in $(seq 100); do
            if ! kill -0 "$SERVER_PID" 2>/dev/null; then
                break
            fi
            if [ "$(redis-cli -p "$p" ping 2>/dev/null)" = PONG ]; then
                PORT=$p
                return 0
            fi
            sleep 0.1
        done
        if kill -0 "$SERVER_PID" 2>/dev/null; then
            kill "$SERVER_PID" 2>/dev/null || true
            wait "$SERVER_PID" 2>/dev/null || true
            SERVER_PID=""
            die "redis-server on port $p did not answer PING within 10 s; log: $(tail -5 "$WORK/redis.log" 2>/dev/null)"
        fi
        wait "$SERVER_PID" 2>/dev/null || true
        SERVER_PID=""
        if grep -q "Address already in use" "$WORK/redis.log" 2>/dev/null; then
            : >"$WORK/redis.log"
            continue
        fi
        die "redis-server exited at startup (module load failed?); log: $(tail -2 "$WORK/redis.log" 2>/dev/null)"
    done
    die "no free port found in $base-$((base + 49))"
}

PORT=""
CELL_PORT=""
CELL_PID=""
if [ -n "$CELL_SO" ]; then
    start_server "$CELL_SO"
    CELL_PORT=$PORT
    CELL_PID=$SERVER_PID
    redis-cli -p "$CELL_PORT" module list | grep -q redis-cell || die "redis-cell is not loaded from $CELL_SO"
    trap 'kill "$CELL_PID" 2>/dev/null || true; cleanup' EXIT
else
    echo "bench: skipped: redis-cell rows (set REDIS_CELL_SO=/path/to/libredis_cell.so, built from its public source)" >&2
fi
start_server "$MODULE"
cli() { redis-cli -p "$PORT" "$@"; }

# on_cell CMD...: runs a measurement against the redis-cell server.
on_cell() {
    [ -n "$CELL_PORT" ] || return 0
    local main=$PORT
    PORT=$CELL_PORT
    "$@"
    PORT=$main
}
cli module list | grep -q ratelimit || die "the module is not loaded (MODULE LIST has no 'ratelimit')"

info_field() { # section field
    cli info "$1" | tr -d '\r' | awk -F: -v f="$2" '$1 == f { print $2 }'
}
REDIS_VERSION=$(info_field server redis_version)
echo "bench: redis-server $REDIS_VERSION on 127.0.0.1:$PORT, module $MODULE" >&2

load_script() {
    local sha
    sha=$(redis-cli -p "$PORT" -x script load <"$BENCH_DIR/$1" | tr -d '\r')
    [[ "$sha" =~ ^[0-9a-f]{40}$ ]] || die "SCRIPT LOAD bench/$1 failed: $sha"
    echo "$sha"
}
SHA_TB=$(load_script token_bucket.lua)
SHA_FW=$(load_script fixed_window.lua)
SHA_SL=$(load_script sliding_log.lua)

# Sends one call and fails on an error reply, so redis-benchmark never
# measures a stream of errors.
smoke() {
    local out
    out=$(cli "$@" 2>&1) || die "'$*' failed: $out"
    case "$out" in
        ERR* | WRONGTYPE* | NOSCRIPT* | *"unknown command"* | "(error)"*) die "'$*' replied an error: $out" ;;
    esac
}

# ---------------------------------------------------------------- throughput

TP_ROWS=()   # label|command shown|rps|p50|usec_per_call|allowed%|group
RPS_INCR_RAND=""
USEC_INCR_RAND=""
RPS_INCR_HOT=""
USEC_INCR_HOT=""

rl_counters() { # name -> "allowed denied"
    local info
    info=$(cli info ratelimit | tr -d '\r')
    echo "$(awk -F: -v f="ratelimit_$1_allowed" '$1 == f { print $2 }' <<<"$info")" \
        "$(awk -F: -v f="ratelimit_$1_denied" '$1 == f { print $2 }' <<<"$info")"
}

# measure GROUP LABEL STATNAME RLCOUNTER SHOWN -- command args...
#   GROUP rand (uses -r) or hot; STATNAME the commandstats name (lowercase);
#   RLCOUNTER the INFO ratelimit counter name or '-'; SHOWN the command as
#   printed in the report.
measure() {
    local group=$1 label=$2 stat=$3 counter=$4 shown=$5
    shift 6
    local smoke_args=("$@")
    local i
    for i in "${!smoke_args[@]}"; do
        smoke_args[i]=${smoke_args[i]//__rand_int__/smoketest000}
    done
    cli flushall >/dev/null
    smoke "${smoke_args[@]}"
    cli flushall >/dev/null
    cli config resetstat >/dev/null
    local before_a=0 before_d=0
    if [ "$counter" != - ]; then read -r before_a before_d < <(rl_counters "$counter"); fi

    local r=()
    if [ "$group" = rand ]; then r=(-r "$RANGE"); fi
    echo "bench: [$group] $label: redis-benchmark -n $N $*" >&2
    local out
    out=$("${CLIENT_PIN[@]}" redis-benchmark -p "$PORT" -c "$CLIENTS" -P "$PIPELINE" --threads 1 \
        "${r[@]}" -n "$N" -q "$@" 2>&1 | tr '\r' '\n') || die "redis-benchmark failed for $label: $(tail -3 <<<"$out")"
    local rps p50
    rps=$(grep -oE '[0-9.]+ requests per second' <<<"$out" | tail -1 | awk '{ print $1 }')
    p50=$(grep -oE 'p50=[0-9.]+' <<<"$out" | tail -1 | cut -d= -f2)
    [ -n "$rps" ] || die "no requests/s in redis-benchmark output for $label: $(tail -3 <<<"$out")"

    local line calls usec failed rejected
    line=$(cli info commandstats | tr -d '\r' | grep -i "^cmdstat_$stat:" || true)
    [ -n "$line" ] || die "no cmdstat_$stat in INFO commandstats after $label (command not executed?)"
    calls=$(sed -E 's/.*[:,]calls=([0-9]+).*/\1/' <<<"$line")
    usec=$(sed -E 's/.*usec_per_call=([0-9.]+).*/\1/' <<<"$line")
    failed=$(sed -nE 's/.*failed_calls=([0-9]+).*/\1/p' <<<"$line")
    rejected=$(sed -nE 's/.*rejected_calls=([0-9]+).*/\1/p' <<<"$line")
    [ "${failed:-0}" = 0 ] && [ "${rejected:-0}" = 0 ] ||
        die "$label: $failed failed and $rejected rejected calls: $line"
    [ "$calls" -ge "$N" ] || die "$label: only $calls calls reached the server, expected $N"

    local allowed=-
    if [ "$counter" != - ]; then
        local after_a after_d
        read -r after_a after_d < <(rl_counters "$counter")
        allowed=$(awk -v a=$((after_a - before_a)) -v d=$((after_d - before_d)) \
            'BEGIN { if (a + d > 0) printf "%.1f%%", 100 * a / (a + d); else print "-" }')
    fi
    if [ "$stat" = incr ] && [ "$group" = rand ]; then RPS_INCR_RAND=$rps; USEC_INCR_RAND=$usec; fi
    if [ "$stat" = incr ] && [ "$group" = hot ]; then RPS_INCR_HOT=$rps; USEC_INCR_HOT=$usec; fi
    TP_ROWS+=("$label|$shown|$rps|$p50|$usec|$allowed|$group")
}

HOT=hot:00000001 # 12 bytes, like the __rand_int__ keys

run_throughput() {
    # Random keys: __rand_int__ becomes a 12-digit number below -r, so every
    # key name is 12 bytes. Parameters: limits far above what a key gets in
    # one run (all calls allowed) and TTLs far longer than the run (refill
    # 0.01/s, windows of an hour), so after its first call every key is
    # updated in place, as INCR's are: no expiry churn in any row.
    measure rand "INCR (native)" incr - "INCR __rand_int__" -- \
        INCR __rand_int__
    measure rand "SET (native)" set - "SET __rand_int__ xxx" -- \
        SET __rand_int__ xxx
    measure rand "RL.TOKENBUCKET" rl.tokenbucket tokenbucket "RL.TOKENBUCKET __rand_int__ 1000000 0.01 1" -- \
        RL.TOKENBUCKET __rand_int__ 1000000 0.01 1
    measure rand "RL.FIXEDWINDOW" rl.fixedwindow fixedwindow "RL.FIXEDWINDOW __rand_int__ 1000000 3600 1" -- \
        RL.FIXEDWINDOW __rand_int__ 1000000 3600 1
    measure rand "RL.SLIDING EXACT" rl.sliding sliding "RL.SLIDING __rand_int__ 1000 3600 1 EXACT" -- \
        RL.SLIDING __rand_int__ 1000 3600 1 EXACT
    measure rand "RL.SLIDING APPROX" rl.sliding sliding "RL.SLIDING __rand_int__ 1000000 3600 1 APPROX" -- \
        RL.SLIDING __rand_int__ 1000000 3600 1 APPROX
    measure rand "CL.THROTTLE" cl.throttle throttle "CL.THROTTLE __rand_int__ 999999 1 100 1" -- \
        CL.THROTTLE __rand_int__ 999999 1 100 1
    on_cell measure rand "redis-cell CL.THROTTLE (peer)" cl.throttle - "CL.THROTTLE __rand_int__ 999999 1 100 1" -- \
        CL.THROTTLE __rand_int__ 999999 1 100 1
    measure rand "RL.LIMITS, 2 limits" rl.limits limits "RL.LIMITS __rand_int__ 1 NAME burst TOKENBUCKET 1000000 0.01 NAME day FIXEDWINDOW 1000000 86400" -- \
        RL.LIMITS __rand_int__ 1 NAME burst TOKENBUCKET 1000000 0.01 NAME day FIXEDWINDOW 1000000 86400
    measure rand "Lua token bucket" evalsha - "EVALSHA <token_bucket.lua> 1 __rand_int__ 1000000 0.01 1" -- \
        EVALSHA "$SHA_TB" 1 __rand_int__ 1000000 0.01 1
    measure rand "Lua fixed window" evalsha - "EVALSHA <fixed_window.lua> 1 __rand_int__ 1000000 3600 1" -- \
        EVALSHA "$SHA_FW" 1 __rand_int__ 1000000 3600 1
    measure rand "Lua sliding log" evalsha - "EVALSHA <sliding_log.lua> 1 __rand_int__ 1000 3600000 1" -- \
        EVALSHA "$SHA_SL" 1 __rand_int__ 1000 3600000 1

    # One hot key.
    measure hot "INCR (native)" incr - "INCR $HOT" -- \
        INCR "$HOT"
    measure hot "RL.TOKENBUCKET" rl.tokenbucket tokenbucket "RL.TOKENBUCKET $HOT 100000000 1 1" -- \
        RL.TOKENBUCKET "$HOT" 100000000 1 1
    measure hot "RL.TOKENBUCKET, mostly denied" rl.tokenbucket tokenbucket "RL.TOKENBUCKET $HOT 100 100 1" -- \
        RL.TOKENBUCKET "$HOT" 100 100 1
    measure hot "Lua token bucket" evalsha - "EVALSHA <token_bucket.lua> 1 $HOT 100000000 1 1" -- \
        EVALSHA "$SHA_TB" 1 "$HOT" 100000000 1 1
}

# -------------------------------------------------------------------- memory

MEM_ROWS=() # label|keys|entries|bytes/key|floor bytes/key|sample MEMORY USAGE|sample DUMP bytes|fill
declare -A FLOOR

# Writes RESP for every key key:00000001..key:NNNNNNNN (12 bytes): each
# '|'-separated command of the template, with {k} replaced by the key.
gen_resp() { # keys template
    awk -v n="$1" -v tmpl="$2" 'BEGIN {
        m = split(tmpl, cmds, "|")
        for (c = 1; c <= m; c++) {
            na[c] = split(cmds[c], tmp, " ")
            for (j = 1; j <= na[c]; j++) a[c, j] = tmp[j]
        }
        for (i = 1; i <= n; i++) {
            k = sprintf("key:%08d", i)
            for (c = 1; c <= m; c++) {
                printf "*%d\r\n", na[c]
                for (j = 1; j <= na[c]; j++) {
                    s = a[c, j]
                    if (s == "{k}") s = k
                    printf "$%d\r\n%s\r\n", length(s), s
                }
            }
        }
    }'
}

# used_memory once it stops moving: a fill can end in the middle of an
# incremental rehash, when the old hash table (8 bytes a bucket) is still
# allocated; serverCron finishes it within a few 100 ms cycles.
settled_used_memory() {
    local prev cur i
    prev=$(info_field memory used_memory)
    for i in $(seq 50); do
        sleep 0.25
        cur=$(info_field memory used_memory)
        if [ "$cur" = "$prev" ]; then
            echo "$cur"
            return 0
        fi
        prev=$cur
    done
    echo "bench: used_memory still moving after 12 s; using the last value" >&2
    echo "$cur"
}

pipe_fill() { # keys template
    local out
    out=$(gen_resp "$1" "$2" | redis-cli -p "$PORT" --pipe 2>&1) || die "redis-cli --pipe failed for '$2': $out"
    grep -q "errors: 0," <<<"$out" || die "redis-cli --pipe got errors for '$2': $(tail -2 <<<"$out")"
}

# mem LABEL KEYS ROUNDS TEMPLATE: fills KEYS keys, calling TEMPLATE ROUNDS
# times per key, each round a separate pass after the previous one has been
# answered (so one key's calls land in different milliseconds: EXACT logs
# merge the grants of one millisecond).
mem() {
    local label=$1 keys=$2 rounds=$3 tmpl=$4 r
    cli flushall >/dev/null
    local before after dbsize
    before=$(settled_used_memory)
    echo "bench: memory $label: $keys keys x $rounds call(s)" >&2
    for ((r = 0; r < rounds; r++)); do
        pipe_fill "$keys" "$tmpl"
        if [ "$rounds" -gt 1 ]; then sleep 0.003; fi
    done
    after=$(settled_used_memory)
    dbsize=$(cli dbsize)
    [ "$dbsize" = "$keys" ] || die "memory $label: DBSIZE $dbsize, expected $keys (keys expired or not created)"
    local pttl usage dump
    pttl=$(cli pttl key:00000001)
    [ "$pttl" -gt 0 ] || die "memory $label: key:00000001 has no TTL (PTTL $pttl)"
    usage=$(cli memory usage key:00000001 samples 0)
    dump=$(cli eval "return string.len(redis.call('DUMP', KEYS[1]))" 1 key:00000001)
    local per
    per=$(awk -v a="$after" -v b="$before" -v k="$keys" 'BEGIN { printf "%.1f", (a - b) / k }')
    if [ "$label" = floor ]; then
        FLOOR[$keys]=$per
        if [ "$keys" != "$KEYS" ]; then return 0; fi
        label="INCR + PEXPIRE string (floor)"
    fi
    MEM_ROWS+=("$label|$keys|$rounds|$per|${FLOOR[$keys]:-}|$usage|$dump|$tmpl")
}

run_memory() {
    local k1=$KEYS k10=$((KEYS / 10)) k100=$((KEYS / 100))
    # Parameters keep every key alive through the fill (TTLs of 100 s and
    # more; the fixed window is aligned to 1,000,000 s, the check on DBSIZE
    # catches the rare run that straddles its end).
    local floor="INCR {k}|PEXPIRE {k} 1000000"
    mem floor "$k1" 1 "$floor"
    mem floor "$k10" 1 "$floor"
    mem floor "$k100" 1 "$floor"
    mem "RL.TOKENBUCKET" "$k1" 1 "RL.TOKENBUCKET {k} 1000 0.01 1"
    # A second call a few ms later refills a fraction of a milli-token at
    # 0.01/s: the level no longer fits the 8-byte form (the 16-byte one).
    mem "RL.TOKENBUCKET, refilled to a fraction" "$k1" 2 "RL.TOKENBUCKET {k} 1000 0.01 1"
    mem "RL.FIXEDWINDOW" "$k1" 1 "RL.FIXEDWINDOW {k} 1000 1000000 1"
    on_cell mem "redis-cell CL.THROTTLE (peer)" "$k1" 1 "CL.THROTTLE {k} 999 1 100 1"
    mem "RL.SLIDING APPROX" "$k1" 1 "RL.SLIDING {k} 1000 3600 1 APPROX"
    mem "RL.LIMITS, 1 limit (token bucket)" "$k1" 1 "RL.LIMITS {k} 1 TOKENBUCKET 1000 0.01"
    mem "RL.LIMITS, 2 limits (token bucket + fixed window)" "$k1" 1 "RL.LIMITS {k} 1 NAME burst TOKENBUCKET 1000 0.01 NAME day FIXEDWINDOW 1000 1000000"
    mem "RL.LIMITS, 4 limits (+ APPROX + fixed window)" "$k1" 1 "RL.LIMITS {k} 1 NAME burst TOKENBUCKET 1000 0.01 NAME day FIXEDWINDOW 1000 1000000 NAME min SLIDING 1000 3600 APPROX NAME hour FIXEDWINDOW 1000 1000000"
    mem "RL.SLIDING EXACT, 1 entry" "$k1" 1 "RL.SLIDING {k} 1000 3600 1 EXACT"
    mem "RL.SLIDING EXACT, 10 entries" "$k10" 10 "RL.SLIDING {k} 1000 3600 1 EXACT"
    mem "RL.SLIDING EXACT, 100 entries" "$k100" 100 "RL.SLIDING {k} 1000 3600 1 EXACT"
    mem "Lua token bucket (hash + TTL)" "$k1" 1 "EVALSHA $SHA_TB 1 {k} 1000 0.01 1"
    mem "Lua fixed window (INCR + EXPIRE)" "$k1" 1 "EVALSHA $SHA_FW 1 {k} 1000 3600 1"
    mem "Lua sliding log, 1 entry (zset + TTL)" "$k1" 1 "EVALSHA $SHA_SL 1 {k} 1000 3600000 1"
    mem "Lua sliding log, 10 entries" "$k10" 10 "EVALSHA $SHA_SL 1 {k} 1000 3600000 1"
    mem "Lua sliding log, 100 entries" "$k100" 100 "EVALSHA $SHA_SL 1 {k} 1000 3600000 1"
}

T0=$(date +%s)
[ "$ONLY" = memory ] || run_throughput
[ "$ONLY" = throughput ] || run_memory
ELAPSED=$(($(date +%s) - T0))

# -------------------------------------------------------------------- report

cmdline="bash bench/run.sh"
for v in BENCH_QUICK BENCH_N BENCH_KEYS BENCH_RANGE BENCH_ONLY BENCH_MODULE REDIS_CELL_SO; do
    if [ -n "${!v:-}" ]; then cmdline="$v=${!v} $cmdline"; fi
done
cpu=$(awk -F: '/^model name/ { sub(/^ +/, "", $2); print $2; exit }' /proc/cpuinfo 2>/dev/null || true)
commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ -n "$(git -C "$ROOT" status --porcelain --untracked-files=no 2>/dev/null)" ]; then commit="$commit (uncommitted changes)"; fi

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0 && a != "") printf "%.2f", a / b; else print "-" }'; }
fmt_int() { awk -v a="$1" 'BEGIN { s = sprintf("%.0f", a); o = ""; while (length(s) > 3) { o = "," substr(s, length(s) - 2) o; s = substr(s, 1, length(s) - 3) }; print s o }'; }

report() {
    echo "# redis-ratelimit benchmark"
    echo
    if [ "$QUICK" = 1 ]; then
        echo "> **Quick run** (BENCH_QUICK=1): small N and key counts; the numbers are indicative only."
        echo
    fi
    echo "| | |"
    echo "|---|---|"
    echo "| date | $(date -u '+%Y-%m-%d %H:%M UTC') |"
    echo "| machine | $(nproc) cores (nproc), ${cpu:-unknown CPU}, $(uname -sr), load average at end $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null) |"
    echo "| Redis | $REDIS_VERSION ($(command -v redis-server)), \`--save '' --appendonly no\`, module loaded |"
    echo "| peer | ${CELL_SO:-not measured (REDIS_CELL_SO unset)} |"
    echo "| module | $(basename "$MODULE"), commit $commit |"
    echo "| command | \`$cmdline\` ($ELAPSED s) |"
    echo "| client | \`redis-benchmark -c $CLIENTS -P $PIPELINE --threads 1 -r $RANGE -n $N -q <command>\` (hot-key rows: no \`-r\`); $PINNING |"
    echo
    if [ "$ONLY" != memory ]; then
        echo "## Throughput and server cost"
        echo
        echo "Random keys: \`__rand_int__\` = 12-digit key names among $RANGE keys; each row starts from FLUSHALL and CONFIG RESETSTAT."
        echo "\`× INCR\` divides by native INCR of the same group (random keys, or the hot key) in this run;"
        echo "\`µs/call\` is \`usec_per_call\` from INFO commandstats (for Lua: EVALSHA, which includes the calls the script makes)."
        echo
        echo "| keys | workload | command | req/s | × INCR | p50 ms | server µs/call | µs ÷ INCR | allowed |"
        echo "|---|---|---|---:|---:|---:|---:|---:|---:|"
        local row label shown rps p50 usec allowed group ri ui
        for row in "${TP_ROWS[@]}"; do
            IFS='|' read -r label shown rps p50 usec allowed group <<<"$row"
            if [ "$group" = rand ]; then ri=$RPS_INCR_RAND; ui=$USEC_INCR_RAND; else ri=$RPS_INCR_HOT; ui=$USEC_INCR_HOT; fi
            echo "| $group | $label | \`$shown\` | $(fmt_int "$rps") | $(ratio "$rps" "$ri") | ${p50:--} | $usec | $(ratio "$usec" "$ui") | $allowed |"
        done
        echo
    fi
    if [ "$ONLY" != throughput ]; then
        echo "## Memory per key"
        echo
        echo "\`used_memory\` after filling minus \`used_memory\` after FLUSHALL, divided by the number of keys (12-byte names \`key:00000001\`…),"
        echo "so it includes the key, its dict and expires entries and their share of the hash tables. \`floor\` is INCR + PEXPIRE"
        echo "(a TTL'd integer string) measured at the same key count. N-entry logs: the command called N times per key,"
        echo "in N passes over all keys, each pass answered before the next starts (distinct milliseconds, so EXACT logs hold N entries;"
        echo "the Lua log gets N zset members). \`MEMORY USAGE\` (what the server reports) and the \`DUMP\` payload length"
        echo "(RDB encoding, LZF-compressed above 20 bytes: what RDB, replicas and MIGRATE carry) are for one sample key."
        echo
        echo "| structure | keys | calls/key | bytes/key | floor bytes/key | over floor | × floor | MEMORY USAGE | DUMP bytes | fill command |"
        echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"
        local row label keys rounds per floor usage dump tmpl over
        for row in "${MEM_ROWS[@]}"; do
            IFS='|' read -r label keys rounds per floor usage dump tmpl <<<"$row"
            over=$(awk -v a="$per" -v b="$floor" 'BEGIN { printf "%+.1f", a - b }')
            tmpl=${tmpl//$SHA_TB/<token_bucket.lua>}
            tmpl=${tmpl//$SHA_FW/<fixed_window.lua>}
            tmpl=${tmpl//$SHA_SL/<sliding_log.lua>}
            tmpl=${tmpl//\{k\}/key}
            echo "| $label | $(fmt_int "$keys") | $rounds | $per | $floor | $over | $(ratio "$per" "$floor") | $usage | $dump | \`${tmpl//|/; }\` |"
        done
        echo
    fi
}

report | tee "$OUT"
echo "bench: report written to ${OUT#"$ROOT"/}" >&2
