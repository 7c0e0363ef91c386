#!/usr/bin/env bash
# The whole test suite: installs prerequisites, builds the module, runs unit,
# property and integration tests (Redis 7.0 and Valkey, replicas, cluster,
# HTTP shim behind Nginx), then clippy and rustfmt checks.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cargo build --workspace
cargo test --workspace -- --test-threads "${TEST_THREADS:-2}"
cargo clippy --workspace --all-targets -- -D warnings
cargo fmt --all -- --check
