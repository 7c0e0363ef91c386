#!/usr/bin/env bash
# Builds the module (release) and starts Redis with it on 127.0.0.1:${PORT:-6379},
# then the HTTP shim on 127.0.0.1:${SHIM_PORT:-8080} if it is built. Both run in
# the background; `make stop` stops them. Logs and pid files go to
# ${RUN_DIR:-./run}/ (the README test runs the quick start in a scratch one).
set -euo pipefail
cd "$(dirname "$0")/.."
PORT=${PORT:-6379}
SHIM_PORT=${SHIM_PORT:-8080}
RUN_DIR=${RUN_DIR:-$PWD/run}
mkdir -p "$RUN_DIR"

cargo build --release -p redis-ratelimit
MODULE="$PWD/target/release/libredis_ratelimit.so"

if redis-cli -p "$PORT" ping >/dev/null 2>&1; then
    if redis-cli -p "$PORT" module list | grep -q ratelimit; then
        echo "Redis on port $PORT already has the module loaded"
    else
        echo "port $PORT is taken by a Redis without the module: stop it (e.g. 'sudo systemctl stop redis-server') or use PORT=6380 make run" >&2
        exit 1
    fi
else
    redis-server --port "$PORT" --bind 127.0.0.1 --daemonize yes \
        --pidfile "$RUN_DIR/redis.pid" --logfile "$RUN_DIR/redis.log" --dir "$RUN_DIR" \
        --loadmodule "$MODULE"
    for _ in $(seq 50); do redis-cli -p "$PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
    echo "Redis with the ratelimit module: redis-cli -p $PORT RL.TOKENBUCKET user:1 10 1 1"
fi

if [ -f api-shim/Cargo.toml ] && grep -q '^axum' api-shim/Cargo.toml; then
    cargo build --release -p api-shim
    SHIM_REDIS_URL="redis://127.0.0.1:$PORT/" SHIM_LISTEN="127.0.0.1:$SHIM_PORT" \
        nohup target/release/api-shim api-shim/config.example.toml >"$RUN_DIR/shim.log" 2>&1 &
    echo $! >"$RUN_DIR/shim.pid"
    echo "HTTP shim: curl -i -X POST http://127.0.0.1:$SHIM_PORT/v1/check/api -H 'X-API-Key: demo-pro-key-0001'"
fi
