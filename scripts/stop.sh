#!/usr/bin/env bash
# Stops what scripts/run.sh started.
cd "$(dirname "$0")/.."
RUN_DIR=${RUN_DIR:-$PWD/run}
for p in "$RUN_DIR/shim.pid" "$RUN_DIR/redis.pid"; do
    [ -f "$p" ] && kill "$(cat "$p")" 2>/dev/null && echo "stopped $(basename "$p" .pid)"
    rm -f "$p"
done
true
