#!/usr/bin/env bash
# Renders local.conf.template into PREFIX/nginx.conf.
# Usage: render-local.sh PREFIX LISTEN APP_ADDR SHIM_ADDR [SHIM_ADDR...]
#   WORKERS=1 CONN_PER_CLIENT=100 (environment, optional)
# Example:
#   docker/nginx/render-local.sh /tmp/rl-nginx 127.0.0.1:8088 127.0.0.1:9000 127.0.0.1:8080 127.0.0.1:8081
#   nginx -p /tmp/rl-nginx -c /tmp/rl-nginx/nginx.conf -e /tmp/rl-nginx/error.log -g 'daemon off;'
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
[ $# -ge 4 ] || { sed -n '2,7p' "$0"; exit 2; }
prefix="$1"; listen="$2"; app="$3"; shift 3
workers="${WORKERS:-1}"
conns="${CONN_PER_CLIENT:-100}"
servers=""
for s in "$@"; do servers="${servers}server ${s} max_fails=1 fail_timeout=2s;"; done
mkdir -p "$prefix"
sed -e "s#@PREFIX@#${prefix}#g" \
    -e "s#@LISTEN@#${listen}#g" \
    -e "s#@APP_SERVER@#${app}#g" \
    -e "s#@SHIM_SERVERS@#${servers}#g" \
    -e "s#@LOCATIONS@#${here}/ratelimit.locations.conf#g" \
    -e "s#@WORKERS@#${workers}#g" \
    -e "s#@CONN_PER_CLIENT@#${conns}#g" \
    "$here/local.conf.template" >"$prefix/nginx.conf"
echo "$prefix/nginx.conf"
