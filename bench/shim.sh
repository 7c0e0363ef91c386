#!/usr/bin/env bash
# Load measurement of the HTTP shim against a bare axum hello-world.
# Starts Redis with the module, the shim (release) and api-shim/examples/hello.rs
# (release) on free 127.0.0.1 ports, runs `wrk -t2 -c50 -d10s` against each
# (the shim with POSTs spread over 1000 token-bucket keys that never run dry),
# prints req/s and p50/p99 for both, and stops everything it started.
#   bash bench/shim.sh            (DURATION=10s CONNS=50 THREADS=2 to change)
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10s}
CONNS=${CONNS:-50}
THREADS=${THREADS:-2}
TARGET=${CARGO_TARGET_DIR:-$PWD/target}

for tool in wrk redis-server redis-cli cargo; do
    command -v "$tool" >/dev/null || { echo "missing: $tool" >&2; exit 1; }
done

echo "building (release)…" >&2
cargo build --release -q -p api-shim --bin api-shim --example hello
MODULE=${RL_MODULE:-$TARGET/release/libredis_ratelimit.so}
if [ ! -f "$MODULE" ]; then
    cargo build --release -q -p redis-ratelimit
fi

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

WORK=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

wait_up() { # url
    for _ in $(seq 100); do
        curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
        sleep 0.1
    done
    echo "did not come up: $1" >&2; exit 1
}

REDIS_PORT=$(free_port)
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
    --loadmodule "$MODULE" >"$WORK/redis.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.05; done

SHIM_PORT=$(free_port)
SHIM_LISTEN="127.0.0.1:$SHIM_PORT" SHIM_REDIS_URL="redis://127.0.0.1:$REDIS_PORT/" RUST_LOG=warn \
    "$TARGET/release/api-shim" >"$WORK/shim.log" 2>&1 &
pids+=($!)
wait_up "http://127.0.0.1:$SHIM_PORT/ready"

HELLO_PORT=$(free_port)
"$TARGET/release/examples/hello" "127.0.0.1:$HELLO_PORT" >"$WORK/hello.log" 2>&1 &
pids+=($!)
wait_up "http://127.0.0.1:$HELLO_PORT/"

cat >"$WORK/post.lua" <<'LUA'
-- POST to the token-bucket endpoint, cycling over 1000 keys; the bucket is
-- large enough that every call is allowed (the common, full-cost path).
local n = 0
request = function()
    n = n + 1
    local path = "/v1/tokenbucket/bench:" .. (n % 1000) .. "?capacity=100000000&rate=100000000&cost=1"
    return wrk.format("POST", path)
end
response = function(status, headers, body)
    if status ~= 200 then
        io.stderr:write("unexpected status " .. status .. "\n")
    end
end
LUA

run() { # name, out, wrk args...
    local name=$1 out=$2; shift 2
    echo "wrk $name…" >&2
    wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency "$@" >"$out"
}
summary() { # name, file
    local rps p50 p99 non2xx
    rps=$(awk '/^Requests\/sec:/ {print $2}' "$2")
    p50=$(awk '$1 == "50%" {print $2}' "$2")
    p99=$(awk '$1 == "99%" {print $2}' "$2")
    non2xx=$(awk '/Non-2xx/ {print $5}' "$2")
    printf '%-28s %12s %10s %10s %s\n' "$1" "$rps" "$p50" "$p99" "${non2xx:+(non-2xx: $non2xx)}"
}

run "shim POST /v1/tokenbucket" "$WORK/shim.txt" -s "$WORK/post.lua" "http://127.0.0.1:$SHIM_PORT"
run "hello GET /" "$WORK/hello.txt" "http://127.0.0.1:$HELLO_PORT/"

echo
echo "wrk -t$THREADS -c$CONNS -d$DURATION on $(nproc) cores (wrk shares the machine)"
printf '%-28s %12s %10s %10s\n' "target" "req/s" "p50" "p99"
summary "api-shim (RL.TOKENBUCKET)" "$WORK/shim.txt"
summary "axum hello-world" "$WORK/hello.txt"
