# Shared by bench/run.sh and bench/profile.sh (sourced, not run).
# Before sourcing, set TOOL (the message prefix, e.g. "bench").

die() {
    echo "$TOOL: $*" >&2
    exit 1
}

# Server on core 0, client on core 1, when there are two cores to pin to.
SERVER_PIN=()
CLIENT_PIN=()
PINNING="none (taskset missing or fewer than 2 cores)"
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
    SERVER_PIN=(taskset -c 0)
    CLIENT_PIN=(taskset -c 1)
    PINNING="server taskset -c 0, client taskset -c 1"
fi

# A scratch directory and the server started in it, both gone on exit.
WORK=$(mktemp -d "${TMPDIR:-/tmp}/rl-$TOOL.XXXXXX")
SERVER_PID=""
REPLICA_PID=""
cleanup() {
    local pid
    for pid in "$SERVER_PID" "$REPLICA_PID"; do
        if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
            kill "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
        fi
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port_in_use() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# A free loopback port from a random base.
free_port() {
    local p=$((20000 + RANDOM % 20000)) i
    for i in $(seq 100); do
        if ! port_in_use "$p"; then
            echo "$p"
            return 0
        fi
        p=$((p + 1))
    done
    die "no free port found"
}

# build_module PATH ENV_NAME: builds the release module unless BENCH_BUILD=0
# or the module path was given in ENV_NAME, then checks it exists.
build_module() {
    local module=$1 env_name=$2
    if [ "${BENCH_BUILD:-1}" = 1 ] && [ -z "${!env_name:-}" ]; then
        command -v cargo >/dev/null || die "cargo is missing: install Rust, or set BENCH_BUILD=0 with a built module"
        echo "$TOOL: building the module (cargo build --release -p redis-ratelimit)" >&2
        cargo build --release -p redis-ratelimit >&2
    fi
    [ -f "$module" ] || die "module not found at $module: run 'cargo build --release -p redis-ratelimit' (or set $env_name)"
}
