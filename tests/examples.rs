//! The client examples, run for real against Redis with the module, under
//! RESP2 and RESP3 (the module answers an array, or a map of the same
//! fields): `examples/python/client.py` (redis-py), `examples/node/client.js`
//! (node-redis, installed with `npm ci` from the pinned package-lock.json) and
//! the Rust client `api-shim/examples/client.rs` (the binary `cargo test`
//! builds). Each prints one line per decision; the tests read those lines.
//! Without Python's `redis` package, or without node >= 20 and npm, the test
//! says `skipped: why`.

mod common;

use common::{Flavor, Server};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// One printed decision: the label before the first `:` ("call 1", "retry",
/// "fixed window") and its `name=value` fields.
#[derive(Debug)]
struct Line {
    label: String,
    fields: HashMap<String, String>,
}

impl Line {
    fn allowed(&self) -> bool {
        match self.fields.get("allowed").map(|v| v.to_ascii_lowercase()) {
            Some(v) if v == "true" => true,
            Some(v) if v == "false" => false,
            other => panic!("{}: allowed is {other:?}", self.label),
        }
    }

    /// An integer field; a NaN or a missing field fails the test.
    fn int(&self, name: &str) -> i64 {
        let v = self
            .fields
            .get(name)
            .unwrap_or_else(|| panic!("{}: no {name} in {:?}", self.label, self.fields));
        v.parse()
            .unwrap_or_else(|_| panic!("{}: {name} = {v:?} is not an integer", self.label))
    }
}

/// The decision lines of an example's output (lines holding `allowed=`).
fn decisions(out: &str) -> Vec<Line> {
    out.lines()
        .filter(|l| l.contains("allowed="))
        .map(|l| {
            let (label, rest) = l.split_once(':').expect("label: fields");
            let fields = rest
                .split(|c: char| !(c.is_ascii_alphanumeric() || "_=-".contains(c)))
                .filter_map(|t| t.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            Line {
                label: label.trim().to_string(),
                fields,
            }
        })
        .collect()
}

/// Runs a command, failing the test (with its output) unless it succeeds.
fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// What every token-bucket example shows: `capacity` calls granted one by
/// one (a fresh key), then a denial with a wait of at most one refill, every
/// field an integer, the limit constant, waits only on denials.
fn check_token_bucket(out: &str, capacity: i64, refill_ms: i64) -> Vec<Line> {
    let lines = decisions(out);
    let bucket: Vec<&Line> = lines
        .iter()
        .filter(|l| l.label.starts_with("call") || l.label == "retry")
        .collect();
    assert!(bucket.len() > capacity as usize, "too few calls:\n{out}");
    for l in &bucket {
        assert_eq!(l.int("limit"), capacity, "{}:\n{out}", l.label);
        let retry = l.int("retry_after_ms");
        if l.allowed() {
            assert_eq!(retry, 0, "{}:\n{out}", l.label);
        } else {
            assert!(0 < retry && retry <= refill_ms, "{}:\n{out}", l.label);
        }
        assert!(l.int("reset_after_ms") >= 0, "{}:\n{out}", l.label);
    }
    for (i, l) in bucket.iter().take(capacity as usize).enumerate() {
        assert_eq!(l.label, format!("call {}", i + 1), "\n{out}");
        assert!(l.allowed(), "{}:\n{out}", l.label);
        assert_eq!(l.int("remaining"), capacity - 1 - i as i64, "\n{out}");
    }
    let next = bucket[capacity as usize];
    assert!(
        !next.allowed(),
        "call {} should be denied:\n{out}",
        capacity + 1
    );
    lines
}

/// The python and node examples: a bucket of 5 at 2/s, retries after the
/// advertised wait (which must then succeed), a fixed window and an APPROX
/// sliding window of 3 per 60 s on fresh keys.
fn check_full_example(out: &str) {
    let lines = check_token_bucket(out, 5, 500);
    let retries: Vec<&Line> = lines.iter().filter(|l| l.label == "retry").collect();
    assert!(!retries.is_empty(), "no retry after a denial:\n{out}");
    for r in retries {
        assert!(r.allowed(), "waiting retry_after_ms was not enough:\n{out}");
    }
    for label in ["fixed window", "sliding (approx)"] {
        let l = lines
            .iter()
            .find(|l| l.label == label)
            .unwrap_or_else(|| panic!("no {label} line:\n{out}"));
        assert!(l.allowed(), "{label}:\n{out}");
        assert_eq!(
            (l.int("limit"), l.int("remaining"), l.int("retry_after_ms")),
            (3, 2, 0),
            "{label}:\n{out}"
        );
        assert!(
            (1..=120_000).contains(&l.int("reset_after_ms")),
            "{label}:\n{out}"
        );
    }
}

fn python_has_redis() -> Result<(), String> {
    let out = Command::new("python3")
        .args(["-c", "import redis; print(redis.__version__)"])
        .output()
        .map_err(|e| format!("python3 cannot run: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(
            "python3 has no `redis` package (pip install -r examples/python/requirements.txt)"
                .into(),
        )
    }
}

#[test]
fn python_example_reads_resp2_and_resp3_replies() {
    if let Err(why) = python_has_redis() {
        println!("skipped: {why}");
        return;
    }
    let s = Server::start(Flavor::Redis);
    let script = repo().join("examples/python/client.py");
    for url in [
        // redis-py 8 speaks RESP3 unless told otherwise.
        format!("redis://127.0.0.1:{}/0?protocol=2", s.port),
        format!("redis://127.0.0.1:{}/0?protocol=3", s.port),
    ] {
        let out = run(Command::new("python3").arg(&script).arg(&url));
        check_full_example(&out);
    }
}

fn node_ready() -> Result<(), String> {
    let out = Command::new("node")
        .arg("--version")
        .output()
        .map_err(|e| format!("node cannot run: {e}"))?;
    let v = String::from_utf8_lossy(&out.stdout);
    let major: u32 = v
        .trim()
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .ok_or_else(|| format!("node --version says {v:?}"))?;
    if major < 20 {
        return Err(format!("node {} < 20 (node-redis 6 needs 20)", v.trim()));
    }
    Command::new("npm")
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|_| ())
        .ok_or_else(|| "npm cannot run".to_string())
}

#[test]
fn node_example_reads_resp2_and_resp3_replies() {
    if let Err(why) = node_ready() {
        println!("skipped: {why}");
        return;
    }
    let dir = repo().join("examples/node");
    run(Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(&dir));
    let s = Server::start(Flavor::Redis);
    let url = format!("redis://127.0.0.1:{}", s.port);
    for resp in ["2", "3"] {
        let out = run(Command::new("node")
            .arg(dir.join("client.js"))
            .arg(&url)
            .arg(resp));
        assert!(!out.contains("NaN"), "RESP{resp}:\n{out}");
        check_full_example(&out);
    }
}

/// `api-shim/examples/client.rs`, as built by `cargo test` next to this binary.
fn rust_client() -> PathBuf {
    let client = rl_testkit::profile_dir().join("examples/client");
    assert!(
        client.exists(),
        "{} missing: `cargo test --workspace` builds it (or `cargo build -p api-shim --examples`)",
        client.display()
    );
    client
}

#[test]
fn rust_example_reads_resp2_and_resp3_replies() {
    let client = rust_client();
    let s = Server::start(Flavor::Redis);
    for url in [
        format!("redis://127.0.0.1:{}/", s.port),
        format!("redis://127.0.0.1:{}/?protocol=resp3", s.port),
    ] {
        let out = run(Command::new(&client).arg(&url));
        // Capacity 3 at 0.5/s: three grants, then a wait of at most 2 s.
        let lines = check_token_bucket(&out, 3, 2000);
        assert_eq!(lines.len(), 4, "{out}");
    }
}
