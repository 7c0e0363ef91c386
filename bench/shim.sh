#!/usr/bin/env bash
# Load measurement of the HTTP shim, all in one run on this machine:
#   1. axum hello-world (api-shim/examples/hello.rs), direct;
#   2. a plain Nginx reverse proxy to that hello-world;
#   3. the shipped Nginx config (docker/nginx/local.conf.template +
#      ratelimit.locations.conf): every request is first decided by a shim
#      through auth_request, with a two-limit policy (token bucket + fixed
#      window, one RL.LIMITS per decision), then proxied to the same
#      hello-world.
# Both Nginx configs run with the same worker settings (NGINX_WORKERS, 1 by
# default, worker_connections 4096, keepalive to upstreams). wrk sends GETs
# from CONNS connections. Prints req/s, p50 and p99 per target, the ratio
# 3 / 2, the Redis round trips per decision (commands counted by
# INFO commandstats divided by the decisions counted by the shim), and where
# the CPU time goes during each run (per process, from /proc; wrk itself is
# the rest of the machine).
# Everything runs on 127.0.0.1 ports picked at random and is stopped at exit.
#   bash bench/shim.sh     (DURATION=10s CONNS=200 THREADS=2 NGINX_WORKERS=1
#                           ROUNDS=3 SHIM_THREADS=<tokio workers>)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

DURATION=${DURATION:-10s}
CONNS=${CONNS:-200}
THREADS=${THREADS:-2}
NGINX_WORKERS=${NGINX_WORKERS:-1}
NGINX=${NGINX:-/usr/sbin/nginx}
TARGET=${CARGO_TARGET_DIR:-$PWD/target}

for tool in wrk redis-server redis-cli cargo curl python3 "$NGINX"; do
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
    --pidfile "$WORK/redis.pid" --loadmodule "$MODULE" >"$WORK/redis.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.05; done

# Two limits that never deny during the run: the cost of a grant, not of a 429.
# The decision budget is raised from the 250 ms default: CONNS connections on
# a few shared cores queue longer than that at times, and a fail-closed 503
# would measure the overload, not the path.
cat >"$WORK/shim.toml" <<TOML
[redis]
timeout_ms = 1000
[identity]
trusted_proxies = ["127.0.0.1"]
[policies.api]
default_tier = "free"
[policies.api.tiers.free]
limits = [
  { name = "burst", algorithm = "tokenbucket", capacity = 100000000000, rate = 100000000 },
  { name = "day", algorithm = "fixedwindow", limit = 100000000000, window = 86400 },
]
TOML
SHIM_PORT=$(free_port)
# SHIM_THREADS: the shim's tokio worker threads (default: one per core).
SHIM_LISTEN="127.0.0.1:$SHIM_PORT" SHIM_REDIS_URL="redis://127.0.0.1:$REDIS_PORT/" RUST_LOG=warn \
    env ${SHIM_THREADS:+TOKIO_WORKER_THREADS=$SHIM_THREADS} "$TARGET/release/api-shim" "$WORK/shim.toml" >"$WORK/shim.log" 2>&1 &
SHIM_PID=$!
pids+=($!)
wait_up "http://127.0.0.1:$SHIM_PORT/ready"

HELLO_PORT=$(free_port)
"$TARGET/release/examples/hello" "127.0.0.1:$HELLO_PORT" >"$WORK/hello.log" 2>&1 &
HELLO_PID=$!
pids+=($!)
wait_up "http://127.0.0.1:$HELLO_PORT/"

# The shipped config, rendered as documented. One client address opens all
# CONNS connections, so the per-client connection limit is raised for it.
SHIPPED_PORT=$(free_port)
WORKERS=$NGINX_WORKERS CONN_PER_CLIENT=$((CONNS * 2)) \
    docker/nginx/render-local.sh "$WORK/shipped" "127.0.0.1:$SHIPPED_PORT" \
    "127.0.0.1:$HELLO_PORT" "127.0.0.1:$SHIM_PORT" >/dev/null
sed -i "s#access_log $WORK/shipped/access.log;#access_log off;#" "$WORK/shipped/nginx.conf"
"$NGINX" -p "$WORK/shipped" -c "$WORK/shipped/nginx.conf" -e "$WORK/shipped/error.log" -g 'daemon off;' &
pids+=($!)

# A plain proxy with the same worker settings and upstream keep-alive.
PLAIN_PORT=$(free_port)
mkdir -p "$WORK/plain"
cat >"$WORK/plain/nginx.conf" <<NGINX
worker_processes $NGINX_WORKERS;
pid $WORK/plain/nginx.pid;
error_log $WORK/plain/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $WORK/plain/client_body;
    proxy_temp_path $WORK/plain/proxy;
    fastcgi_temp_path $WORK/plain/fastcgi;
    uwsgi_temp_path $WORK/plain/uwsgi;
    scgi_temp_path $WORK/plain/scgi;
    upstream app { server 127.0.0.1:$HELLO_PORT; keepalive 64; }
    server {
        listen 127.0.0.1:$PLAIN_PORT;
        location / {
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
NGINX
"$NGINX" -p "$WORK/plain" -c "$WORK/plain/nginx.conf" -e "$WORK/plain/error.log" -g 'daemon off;' &
pids+=($!)
wait_up "http://127.0.0.1:$PLAIN_PORT/api/hello"
wait_up "http://127.0.0.1:$SHIPPED_PORT/api/hello"
SHIPPED_MASTER=$(cat "$WORK/shipped/nginx.pid")
PLAIN_MASTER=$(cat "$WORK/plain/nginx.pid")
PROCS=("redis:$(cat "$WORK/redis.pid")" "shim:$SHIM_PID" "hello:$HELLO_PID")
for w in $(pgrep -P "$SHIPPED_MASTER"); do PROCS+=("nginx(shipped)#$w:$w"); done
for w in $(pgrep -P "$PLAIN_MASTER"); do PROCS+=("nginx(plain)#$w:$w"); done

# CPU time (user + system, clock ticks) of a process and its threads.
ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
# Where the time goes: CPU seconds per component during one wrk run.

cpu_snapshot() {
    local out="" p
    for p in "${PROCS[@]}"; do out="$out ${p%%:*}:$(ticks "${p#*:}")"; done
    echo "$out"
}
cpu_report() { # before, after, requests
    local hz; hz=$(getconf CLK_TCK)
    python3 - "$1" "$2" "$3" "$hz" <<'PY'
import sys
before = dict(x.split(":") for x in sys.argv[1].split())
after = dict(x.split(":") for x in sys.argv[2].split())
reqs, hz = float(sys.argv[3]), float(sys.argv[4])
tot = {}
for k in after:
    name = k.split("#")[0]
    tot[name] = tot.get(name, 0) + (int(after[k]) - int(before.get(k, 0))) / hz
parts = ", ".join(f"{n} {s:.1f} s ({s / reqs * 1e6:.0f} us/req)" for n, s in sorted(tot.items(), key=lambda x: -x[1]))
print(f"  CPU: {parts}")
PY
}
run() { # name, out, url
    echo "wrk $1…" >&2
    local before; before=$(cpu_snapshot)
    wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency "$3" >"$2"
    local reqs; reqs=$(awk '/requests in/ {print $1}' "$2")
    cpu_report "$before" "$(cpu_snapshot)" "$reqs" >"$2.cpu"
}
summary() { # name, file
    local rps p50 p99 non2xx
    rps=$(awk '/^Requests\/sec:/ {print $2}' "$2")
    p50=$(awk '$1 == "50%" {print $2}' "$2")
    p99=$(awk '$1 == "99%" {print $2}' "$2")
    non2xx=$(awk '/Non-2xx/ {print $5}' "$2")
    printf '%-52s %10s %9s %9s %s\n' "$1" "$rps" "$p50" "$p99" "${non2xx:+(non-2xx: $non2xx)}"
}
redis_calls() { # every command but INFO itself
    redis-cli -p "$REDIS_PORT" info commandstats |
        awk -F'[:=,]' '/^cmdstat_/ && $1 != "cmdstat_info" {s += $3} END {print s + 0}'
}
decisions() {
    curl -fsS "http://127.0.0.1:$SHIM_PORT/metrics" |
        awk '/^shim_decisions_total\{endpoint="auth"/ {s += $2} END {print s + 0}'
}

rps_of() { awk '/^Requests\/sec:/ {print $2}' "$1"; }

# The machine is shared, so load from elsewhere shifts any single run:
# plain and shipped alternate for ROUNDS rounds and the median ratio counts.
ROUNDS=${ROUNDS:-3}
run "axum hello-world" "$WORK/hello.txt" "http://127.0.0.1:$HELLO_PORT/api/hello"
calls0=$(redis_calls); dec0=$(decisions)
ratios=()
for r in $(seq "$ROUNDS"); do
    run "plain nginx ($r/$ROUNDS)" "$WORK/plain-$r.txt" "http://127.0.0.1:$PLAIN_PORT/api/hello"
    run "shipped nginx ($r/$ROUNDS)" "$WORK/shipped-$r.txt" "http://127.0.0.1:$SHIPPED_PORT/api/hello"
    ratios+=("$(awk -v a="$(rps_of "$WORK/shipped-$r.txt")" -v b="$(rps_of "$WORK/plain-$r.txt")" 'BEGIN {printf "%.2f", a / b}')")
done
calls1=$(redis_calls); dec1=$(decisions)

echo
echo "wrk -t$THREADS -c$CONNS -d$DURATION, nginx worker_processes $NGINX_WORKERS, $(nproc) cores shared by everything, $ROUNDS rounds"
printf '%-52s %10s %9s %9s\n' "target (GET /api/hello)" "req/s" "p50" "p99"
summary "axum hello-world, direct" "$WORK/hello.txt"
cat "$WORK/hello.txt.cpu"
for r in $(seq "$ROUNDS"); do
    summary "plain Nginx proxy -> hello ($r)" "$WORK/plain-$r.txt"
    cat "$WORK/plain-$r.txt.cpu"
    summary "shipped Nginx: auth_request, 2 limits -> hello ($r)" "$WORK/shipped-$r.txt"
    cat "$WORK/shipped-$r.txt.cpu"
done
echo "shipped / plain per round: ${ratios[*]}; median $(printf '%s\n' "${ratios[@]}" | sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}')x"
echo "shim decisions by outcome: $(curl -fsS "http://127.0.0.1:$SHIM_PORT/metrics" |
    sed -n 's/^shim_decisions_total{endpoint="auth",outcome="\([a-z_]*\)"} \([0-9]*\)/\1=\2/p' | tr '\n' ' ')"
awk -v c="$((calls1 - calls0))" -v d="$((dec1 - dec0))" \
    'BEGIN {if (d > 0) printf "Redis round trips per decision: %.3f (%d commands, %d decisions)\n", c / d, c, d}'
