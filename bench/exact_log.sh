#!/usr/bin/env bash
# EXACT log cost by length (issue 13): server time per call and AOF bytes per
# granted call (what replicas receive too) for logs of 100, 1,000 and 4,096
# entries, on its own redis-server with appendonly on:
#
#   bash bench/exact_log.sh            # builds the release module first
#   BENCH_BUILD=0 BENCH_MODULE=path bash bench/exact_log.sh
#
# The measuring client is bench/exact_log.py (see there).
set -euo pipefail
export LC_ALL=C

cd "$(dirname "$0")/.."
ROOT=$PWD
MODULE=${BENCH_MODULE:-$ROOT/target/release/libredis_ratelimit.so}
TOOL=exact-log
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"

build_module "$MODULE" BENCH_MODULE
PORT=$((20000 + RANDOM % 20000))
while port_in_use "$PORT"; do PORT=$((PORT + 1)); done
"${SERVER_PIN[@]}" redis-server --port "$PORT" --bind 127.0.0.1 --dir "$WORK" --save '' \
    --appendonly yes --appendfsync no --loadmodule "$MODULE" exact-max-log 1000000 \
    --logfile "$WORK/server.log" &
SERVER_PID=$!
for _ in $(seq 100); do
    redis-cli -p "$PORT" ping >/dev/null 2>&1 && break
    sleep 0.05
done
echo "exact-log: $(date -u +%FT%TZ), $(redis-server --version | cut -d' ' -f3), module $MODULE" >&2
"${CLIENT_PIN[@]}" python3 "$ROOT/bench/exact_log.py" "$PORT" "$@"
