//! The OpenAPI document is a contract the real shim keeps: schemathesis
//! (`st`, PyPI, pinned by scripts/install-deps.sh) generates requests from
//! `/openapi.json` of the `api-shim` binary, run against a real Redis with
//! the module and a configuration with real policies, tiers and API keys,
//! and applies every check (`--checks all`: status codes and headers
//! declared, bodies matching their schemas, undeclared methods answering 405
//! with `Allow`, schema-valid requests accepted, invalid ones refused) plus
//! ours (`tests/schemathesis/st_hooks.py`: a problem body's `status` is the
//! HTTP status). It must end with no failure, no error and no warning
//! (a warning means some operation was never really reached).

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::{RedisProc, ShimProc};

const ADMIN_TOKEN: &str = "0123456789abcdef-contract-admin";

/// The policies the document's examples name (`api`, `demo-pro-key-0001`),
/// and `jobs`, a policy with a `concurrency` limit for the lease endpoints.
fn config() -> String {
    format!(
        r#"
[raw]
enabled = true
key_prefix = "raw:"
[admin]
token = "{ADMIN_TOKEN}"
[identity]
trusted_proxies = ["127.0.0.1"]
[api_keys]
"demo-pro-key-0001" = "pro"
[policies.api]
identity_header = "X-API-Key"
default_tier = "free"
[policies.api.tiers.free]
limits = [
  {{ name = "burst", algorithm = "tokenbucket", capacity = 10, rate = 1 }},
  {{ name = "day", algorithm = "fixedwindow", limit = 1000, window = 86400 }},
]
degraded_limits = [{{ name = "burst", algorithm = "tokenbucket", capacity = 2, rate = 0.2 }}]
[policies.api.tiers.pro]
limits = [
  {{ name = "burst", algorithm = "tokenbucket", capacity = 100, rate = 20 }},
  {{ name = "minute", algorithm = "sliding", limit = 600, window = 60, mode = "approx" }},
]
[policies.jobs]
identity_header = "X-API-Key"
default_tier = "free"
[policies.jobs.tiers.free]
limits = [
  {{ name = "rate", algorithm = "tokenbucket", capacity = 100000, rate = 1000 }},
  {{ name = "inflight", algorithm = "concurrency", limit = 1000, ttl = 1 }},
]
"#
    )
}

fn st_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/schemathesis")
}

/// How many operations (path and method) the document declares.
fn operations() -> usize {
    let doc: serde_json::Value =
        serde_json::from_str(api_shim::http::ops::OPENAPI).expect("openapi.json is JSON");
    doc["paths"]
        .as_object()
        .expect("paths")
        .values()
        .filter_map(|p| p.as_object())
        .map(|p| p.keys().filter(|k| *k != "parameters").count())
        .sum()
}

#[test]
fn schemathesis_finds_nothing_to_report() {
    if Command::new("st").arg("--version").output().is_err() {
        println!(
            "skipped: st (schemathesis) is not installed; scripts/install-deps.sh installs it"
        );
        return;
    }
    let redis = RedisProc::start();
    let shim = ShimProc::start(&redis.url(), &config());
    let base = format!("http://127.0.0.1:{}", shim.port);
    let out = Command::new("st")
        .arg("--config-file")
        .arg(st_dir().join("schemathesis.toml"))
        .args(["run", &format!("{base}/openapi.json"), "--checks", "all"])
        // A few minutes on a loaded debug build: 25 generated cases per
        // operation and phase on top of the examples and coverage cases.
        .args(["--max-examples", "25"])
        .args(["--header", &format!("Authorization: Bearer {ADMIN_TOKEN}")])
        .args(["--request-timeout", "30"])
        .env("PYTHONPATH", st_dir())
        .env("SCHEMATHESIS_HOOKS", "st_hooks")
        .env("NO_COLOR", "1")
        // st keeps a cache in its working directory: not in the repository.
        .current_dir(std::env::temp_dir())
        .output()
        .expect("run st");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let summary = said
        .lines()
        .skip_while(|l| !l.contains("SUMMARY"))
        .collect::<Vec<_>>()
        .join("\n");
    println!("{summary}");
    assert!(out.status.success(), "schemathesis failed:\n{said}");
    assert!(!said.contains("WARNINGS"), "schemathesis warned:\n{said}");
    assert!(!said.contains("Errors:"), "schemathesis errored:\n{said}");
    // st leaves out the operation that serves the document it loaded.
    let ops = operations() - 1;
    assert!(
        said.contains(&format!("Selected: {ops}/{ops}"))
            && said.contains(&format!("Tested: {ops}")),
        "not every one of the document's {ops} operations was tested:\n{said}"
    );
}
