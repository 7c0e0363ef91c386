#!/usr/bin/env bash
# Profiles the server side of RL.TOKENBUCKET (and the other commands) with
# callgrind, against native INCR as the yardstick:
#
#   bash bench/profile.sh                          # RL.TOKENBUCKET, then INCR, 200,000 calls each
#   PROFILE_N=20000 bash bench/profile.sh          # quicker
#   PROFILE_WORKLOADS="tokenbucket fixedwindow incr" bash bench/profile.sh
#
# For each workload: starts redis-server (module loaded) under
# `valgrind --tool=callgrind --instr-atstart=no`, switches collection on once
# the server answers PING (startup is not counted), sends PROFILE_N calls with
# `redis-benchmark -c 50 -P 16 --threads 1 -r 100000` (random 12-byte keys),
# switches collection off, shuts the server down, and prints
# `callgrind_annotate --inclusive=yes | head -40`. Then a summary: instructions
# (Ir) per call, for the whole server (event loop, socket reads and writes,
# parsing, the command) and inside the command's handler.
#
# Workloads: incr tokenbucket fixedwindow sliding-exact sliding-approx throttle
#            limits-1 limits-2 limits-4 (RL.LIMITS with 1, 2 and 4 limits) lua-tokenbucket
#            cell (redis-cell's CL.THROTTLE, the direct peer: needs REDIS_CELL_SO)
# The peer: REDIS_CELL_SO=/path/to/libredis_cell.so, built from redis-cell's
#   public source outside this repository (cargo build --release there). Its
#   server loads only redis-cell (both modules define CL.THROTTLE). Without it
#   the cell workload is skipped with a line saying so. The summary gives each
#   command's whole-server instructions per call as a ratio to INCR and to
#   redis-cell's CL.THROTTLE, measured in the same run.
# Setups (PROFILE_SETUPS, default "plain"; "plain aof replica" for all three):
#   plain    no AOF, no replica (the module then skips building the replication
#            command, which the server would drop: see README "Guarantees")
#   aof      --appendonly yes --appendfsync everysec
#   replica  a replica (not profiled, same module) attached and in sync first
#   Ratios compare commands within one setup.
# Environment: PROFILE_N (default 200000), PROFILE_WORKLOADS (default
#   "tokenbucket cell incr"), PROFILE_MODULE (default target/release/libredis_ratelimit.so),
#   PROFILE_KEEP=dir (keep the callgrind.out.* files there), BENCH_BUILD=0
#   (skip cargo build).
# Function names in the module come from its symbol table (release builds keep
# it); for line-level annotation build with debug line tables, e.g.
#   CARGO_PROFILE_RELEASE_DEBUG=line-tables-only CARGO_TARGET_DIR=target/profile \
#       cargo build --release -p redis-ratelimit
#   PROFILE_MODULE=target/profile/release/libredis_ratelimit.so bash bench/profile.sh
set -euo pipefail
export LC_ALL=C

cd "$(dirname "$0")/.."
ROOT=$PWD
N=${PROFILE_N:-200000}
WORKLOADS=${PROFILE_WORKLOADS:-tokenbucket cell incr}
CELL_SO=${REDIS_CELL_SO:-}
SETUPS=${PROFILE_SETUPS:-plain}
for setup in $SETUPS; do
    case "$setup" in plain | aof | replica) ;; *) die "unknown setup '$setup' (plain aof replica)" ;; esac
done
MODULE=${PROFILE_MODULE:-$ROOT/target/release/libredis_ratelimit.so}
RANGE=100000

TOOL=profile
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
for tool in redis-server redis-cli redis-benchmark valgrind callgrind_annotate callgrind_control; do
    command -v "$tool" >/dev/null ||
        die "$tool is missing (Debian: apt-get install redis-server redis-tools valgrind)"
done
case "$N" in '' | *[!0-9]*) die "PROFILE_N must be a positive integer, got '$N'" ;; esac

build_module "$MODULE" PROFILE_MODULE

# workload -> "label|commandstats name|handler function|command..."
# The handler is where the command's own work starts: RedisModuleCommandDispatcher
# for module commands (it wraps the Rust handler), the C command function for
# native ones, evalShaCommand for Lua.
workload() {
    case "$1" in
        incr) echo "INCR|incr|incrCommand|INCR __rand_int__" ;;
        tokenbucket) echo "RL.TOKENBUCKET|rl.tokenbucket|RedisModuleCommandDispatcher|RL.TOKENBUCKET __rand_int__ 1000000 0.01 1" ;;
        fixedwindow) echo "RL.FIXEDWINDOW|rl.fixedwindow|RedisModuleCommandDispatcher|RL.FIXEDWINDOW __rand_int__ 1000000 3600 1" ;;
        sliding-exact) echo "RL.SLIDING EXACT|rl.sliding|RedisModuleCommandDispatcher|RL.SLIDING __rand_int__ 1000 3600 1 EXACT" ;;
        sliding-approx) echo "RL.SLIDING APPROX|rl.sliding|RedisModuleCommandDispatcher|RL.SLIDING __rand_int__ 1000000 3600 1 APPROX" ;;
        throttle) echo "CL.THROTTLE|cl.throttle|RedisModuleCommandDispatcher|CL.THROTTLE __rand_int__ 999999 1 100 1" ;;
        limits-1) echo "RL.LIMITS, 1 limit|rl.limits|RedisModuleCommandDispatcher|RL.LIMITS __rand_int__ 1 TOKENBUCKET 1000000 0.01" ;;
        limits-2) echo "RL.LIMITS, 2 limits|rl.limits|RedisModuleCommandDispatcher|RL.LIMITS __rand_int__ 1 NAME burst TOKENBUCKET 1000000 0.01 NAME day FIXEDWINDOW 1000000 86400" ;;
        limits-4) echo "RL.LIMITS, 4 limits|rl.limits|RedisModuleCommandDispatcher|RL.LIMITS __rand_int__ 1 NAME burst TOKENBUCKET 1000000 0.01 NAME day FIXEDWINDOW 1000000 86400 NAME min SLIDING 1000000 60 APPROX NAME hour FIXEDWINDOW 1000000 3600" ;;
        lua-tokenbucket) echo "Lua token bucket|evalsha|evalShaCommand|EVALSHA @TB 1 __rand_int__ 1000000 0.01 1" ;;
        cell) echo "redis-cell CL.THROTTLE (peer)|cl.throttle|RedisModuleCommandDispatcher|CL.THROTTLE __rand_int__ 999999 1 100 1" ;;
        *) die "unknown workload '$1' (incr tokenbucket fixedwindow sliding-exact sliding-approx throttle limits-1 limits-2 limits-4 lua-tokenbucket cell)" ;;
    esac
}
for w in $WORKLOADS; do workload "$w" >/dev/null; done
if [ -n "$CELL_SO" ] && [ ! -f "$CELL_SO" ]; then
    die "REDIS_CELL_SO=$CELL_SO does not exist"
fi

# Inclusive Ir of one function from callgrind_annotate --inclusive=yes output.
incl_ir() { # annotate-output function
    awk -v f="$2" '{
        for (i = 1; i <= NF; i++) if ($i ~ ("(^|[^:]):" f "$")) { gsub(",", "", $1); print $1; exit }
    }' "$1"
}

# The function table of a callgrind_annotate output, with Ir per call added
# and object paths cut to their base name.
top_functions() { # file count calls
    awk -v n="$2" -v calls="$3" '
        /file:function/ { table = 1; getline; next }
        table && NF >= 3 && n > 0 {
            ir = $1; gsub(",", "", ir)
            pct = ""; if (match($0, /\( *[0-9.]+%\)/)) { pct = substr($0, RSTART + 1, RLENGTH - 2); gsub(/ /, "", pct) }
            fn = $0; sub(/^ *[0-9,]+ +\( *[0-9.]+%\) +/, "", fn)
            sub(/^\?\?\?:/, "", fn)
            if (match(fn, /\[[^]]*\]$/)) {
                obj = substr(fn, RSTART + 1, RLENGTH - 2); sub(/.*\//, "", obj)
                if (obj == "redis-check-rdb") obj = "redis-server" # Debian: redis-server is a symlink to it
                fn = substr(fn, 1, RSTART - 1) "[" obj "]"
            }
            printf "%14s %7s %9.0f  %s\n", $1, pct, ir / calls, fn
            n--
        }' "$1"
}

SUMMARY=()
profile_one() {
    local w=$1 setup=$2 spec label stat handler cmd
    spec=$(workload "$w")
    IFS='|' read -r label stat handler cmd <<<"$spec"
    local port out ann module=$MODULE loaded=ratelimit
    if [ "$w" = cell ]; then
        if [ -z "$CELL_SO" ]; then
            echo "profile: skipped: redis-cell rows (set REDIS_CELL_SO=/path/to/libredis_cell.so, built from its public source)" >&2
            return 0
        fi
        module=$CELL_SO
        loaded=redis-cell
    fi
    port=$(free_port)
    out=$WORK/callgrind.out.$w.$setup
    ann=$WORK/annotate.$w.$setup
    local persist=(--appendonly no)
    [ "$setup" = aof ] && persist=(--appendonly yes --appendfsync everysec)
    # A directory per run: an AOF one server wrote must not reach the next.
    local data=$WORK/data.$w.$setup
    mkdir -p "$data"
    echo "profile: $label: starting redis-server under callgrind on port $port" >&2
    "${SERVER_PIN[@]}" valgrind --tool=callgrind --instr-atstart=no \
        --callgrind-out-file="$out" --log-file="$WORK/valgrind.$w.log" \
        redis-server --port "$port" --bind 127.0.0.1 --save '' "${persist[@]}" \
        --repl-diskless-sync-delay 0 \
        --dir "$data" --logfile "$data/redis.log" --loadmodule "$module" &
    SERVER_PID=$!
    local i ready=0
    for i in $(seq 300); do
        kill -0 "$SERVER_PID" 2>/dev/null || break
        if [ "$(redis-cli -p "$port" ping 2>/dev/null)" = PONG ]; then
            ready=1
            break
        fi
        sleep 0.2
    done
    [ "$ready" = 1 ] || die "redis-server under valgrind did not start; $(tail -3 "$WORK/valgrind.$w.log" "$data/redis.log" 2>/dev/null)"
    redis-cli -p "$port" module list | grep -q "$loaded" || die "module $loaded not loaded"
    local rport=""
    if [ "$setup" = replica ]; then
        rport=$(free_port)
        mkdir -p "$data/replica"
        redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no \
            --dir "$data/replica" --logfile "$data/replica/redis.log" --loadmodule "$module" \
            --replicaof 127.0.0.1 "$port" &
        REPLICA_PID=$!
        for i in $(seq 300); do
            redis-cli -p "$rport" info replication 2>/dev/null | grep -q master_link_status:up && break
            sleep 0.2
        done
        redis-cli -p "$rport" info replication | grep -q master_link_status:up ||
            die "replica did not sync; $(tail -3 "$data/replica/redis.log")"
    fi

    local args
    read -ra args <<<"$cmd"
    if [ "${args[0]}" = EVALSHA ]; then
        local sha
        sha=$(redis-cli -p "$port" -x script load <"$ROOT/bench/token_bucket.lua" | tr -d '\r')
        args[1]=$sha
    fi
    # One call outside the collection, to fail early on an error reply.
    local probe=("${args[@]}") reply
    for i in "${!probe[@]}"; do probe[i]=${probe[i]//__rand_int__/probe0000000}; done
    reply=$(redis-cli -p "$port" "${probe[@]}" 2>&1)
    case "$reply" in ERR* | WRONGTYPE* | NOSCRIPT*) die "$label replied an error: $reply" ;; esac
    redis-cli -p "$port" flushall >/dev/null
    redis-cli -p "$port" config resetstat >/dev/null

    callgrind_control -i on "$SERVER_PID" >/dev/null
    echo "profile: $label: $N calls (redis-benchmark -c 50 -P 16 --threads 1 -r $RANGE)" >&2
    "${CLIENT_PIN[@]}" redis-benchmark -p "$port" -c 50 -P 16 --threads 1 -r "$RANGE" -n "$N" -q "${args[@]}" \
        >"$WORK/bench.$w" 2>&1 || die "redis-benchmark failed: $(tail -3 "$WORK/bench.$w")"
    callgrind_control -i off "$SERVER_PID" >/dev/null

    local line calls
    line=$(redis-cli -p "$port" info commandstats | tr -d '\r' | grep -i "^cmdstat_$stat:" || true)
    calls=$(sed -nE 's/.*[:,]calls=([0-9]+).*/\1/p' <<<"$line")
    [ -n "$calls" ] && [ "$calls" -ge "$N" ] || die "$label: expected $N calls, commandstats says: ${line:-nothing}"
    grep -q 'failed_calls=0' <<<"$line" || die "$label: failed calls: $line"
    if [ -n "$rport" ]; then
        # The replica got every write (and the module agrees on both sides).
        local acked
        acked=$(redis-cli -p "$port" wait 1 10000 | tr -d '\r')
        [ "$acked" = 1 ] || die "$label: the replica did not acknowledge the run"
        redis-cli -p "$rport" shutdown nosave >/dev/null 2>&1 || true
        wait "$REPLICA_PID" 2>/dev/null || true
        REPLICA_PID=""
    fi
    redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
    [ -s "$out" ] || die "no callgrind output for $label; $(tail -3 "$WORK/valgrind.$w.log")"

    callgrind_annotate --inclusive=yes --threshold=100 "$out" >"$ann" 2>/dev/null ||
        die "callgrind_annotate failed on $out"
    callgrind_annotate --threshold=100 "$out" >"$ann.self" 2>/dev/null || true
    echo
    echo "=== $label ($setup): callgrind_annotate --inclusive=yes: top 40 functions, $calls calls ==="
    printf "%14s %7s %9s  %s\n" "Ir" "%" "Ir/call" "function [object]"
    top_functions "$ann" 40 "$calls"
    echo
    echo "=== $label ($setup): callgrind_annotate (self cost): top 20 functions ==="
    printf "%14s %7s %9s  %s\n" "Ir" "%" "Ir/call" "function [object]"
    top_functions "$ann.self" 20 "$calls"

    local total pc call hd
    total=$(awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1; exit }' "$ann")
    pc=$(incl_ir "$ann" processCommand)
    call=$(incl_ir "$ann" call)
    hd=$(incl_ir "$ann" "$handler")
    SUMMARY+=("$label|$calls|$total|$pc|$call|$hd|$handler|$w|$setup")
    if [ -n "${PROFILE_KEEP:-}" ]; then
        mkdir -p "$PROFILE_KEEP"
        cp "$out" "$PROFILE_KEEP/"
    fi
}

for setup in $SETUPS; do
    for w in $WORKLOADS; do profile_one "$w" "$setup"; done
done

per() { awk -v a="$1" -v n="$2" 'BEGIN { if (a != "" && n > 0) printf "%.0f", a / n; else print "-" }'; }
echo
echo "=== instructions (Ir) per call, collection limited to the redis-benchmark run ==="
echo
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b != "" && b != "-" && b > 0) printf "%.2f", a / b; else print "-" }'; }
echo "| setup | command | calls | whole server Ir/call | × INCR | × redis-cell | processCommand Ir/call | call() Ir/call | handler Ir/call | handler |"
echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---|"
CELL_SEEN=""
for setup in $SETUPS; do
    # Whole-server Ir per call of the yardsticks in this setup, for the ratios.
    INCR_PER="" CELL_PER=""
    for row in "${SUMMARY[@]}"; do
        IFS='|' read -r label calls total pc call hd handler w s <<<"$row"
        [ "$s" = "$setup" ] || continue
        [ "$w" = incr ] && INCR_PER=$(per "$total" "$calls")
        [ "$w" = cell ] && CELL_PER=$(per "$total" "$calls") && CELL_SEEN=1
    done
    for row in "${SUMMARY[@]}"; do
        IFS='|' read -r label calls total pc call hd handler w s <<<"$row"
        [ "$s" = "$setup" ] || continue
        whole=$(per "$total" "$calls")
        echo "| $setup | $label | $calls | $whole | $(ratio "$whole" "$INCR_PER") | $(ratio "$whole" "$CELL_PER") | $(per "$pc" "$calls") | $(per "$call" "$calls") | $(per "$hd" "$calls") | \`$handler\` |"
    done
done
[ -n "$CELL_SEEN" ] || echo "(no redis-cell column: REDIS_CELL_SO not set or the cell workload not run)"
echo
echo "whole server = everything the server ran while redis-benchmark ran (event loop, reads, parsing, replies, expiry cron);"
echo "processCommand = lookup, checks and call(); call() = the command plus stats and propagation; handler = the command itself."
