//! The module suite's own helpers: the five-field reply, command lines,
//! error text, key snapshots, replication and AOF waits, and the server
//! matrix macro. Servers, ports and waits come from the test kit
//! (`rl-testkit`), which the shim's tests use too.

#![allow(dead_code)]

#[allow(unused_imports)] // each test binary uses its own part of it
pub use rl_testkit::{free_port, info_int, module_path, wait_until, Flavor, Server};
use std::time::Duration;

/// The five reply fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reply {
    pub allowed: i64,
    pub limit: i64,
    pub remaining: i64,
    pub retry_after_ms: i64,
    pub reset_after_ms: i64,
}

/// A command from one string of space-separated words.
pub fn cmd(line: &str) -> redis::Cmd {
    let mut cmd = redis::Cmd::new();
    for w in line.split_whitespace() {
        cmd.arg(w);
    }
    cmd
}

/// Runs a command given as one string of space-separated words.
pub fn call(c: &mut redis::Connection, line: &str) -> redis::RedisResult<Reply> {
    let v: Vec<i64> = cmd(line).query(c)?;
    assert_eq!(v.len(), 5, "reply of {line}: {v:?}");
    Ok(Reply {
        allowed: v[0],
        limit: v[1],
        remaining: v[2],
        retry_after_ms: v[3],
        reset_after_ms: v[4],
    })
}

pub fn ok(c: &mut redis::Connection, line: &str) -> Reply {
    call(c, line).unwrap_or_else(|e| panic!("{line}: {e}"))
}

/// The README's first example on a fresh key, `RL.TOKENBUCKET user:1 10 1 1`:
/// granted, 9 of 10 left, full again in one second.
pub fn readme_first_call(c: &mut redis::Connection) {
    let r = ok(c, "RL.TOKENBUCKET user:1 10 1 1");
    assert_eq!(
        (
            r.allowed,
            r.limit,
            r.remaining,
            r.retry_after_ms,
            r.reset_after_ms
        ),
        (1, 10, 9, 0, 1000)
    );
}

/// The error a command line gets.
pub fn err(c: &mut redis::Connection, line: &str) -> String {
    match cmd(line).query::<redis::Value>(c) {
        Ok(v) => panic!("{line} should fail, got {v:?}"),
        Err(e) => error_text(&e),
    }
}

/// "CODE message" of a server error, as the wire carries it.
pub fn error_text(e: &redis::RedisError) -> String {
    match (e.code(), e.detail()) {
        (Some(code), Some(detail)) => format!("{code} {detail}"),
        (Some(code), None) => code.to_string(),
        _ => e.to_string(),
    }
}

/// Everything that makes up a key's state: value bytes and absolute expiry.
pub fn snapshot(c: &mut redis::Connection, key: &str) -> (Vec<u8>, i64) {
    let dump: Vec<u8> = redis::cmd("DUMP").arg(key).query(c).expect("DUMP");
    let at: i64 = redis::cmd("PEXPIRETIME")
        .arg(key)
        .query(c)
        .expect("PEXPIRETIME");
    (dump, at)
}

/// Generates one test per server for each named `fn(Flavor)`: `redis`
/// (7.0.15), `redis74` (7.4.1), `redis74_stack` (7.4.1 with Redis Stack's
/// modules beside ours) and `valkey` (9.1). (The name stays from the days of
/// two servers; every test file uses it.)
#[macro_export]
macro_rules! on_both_servers {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[test]
                fn redis() {
                    super::$name($crate::common::Flavor::Redis)
                }
                #[test]
                fn redis74() {
                    super::$name($crate::common::Flavor::Redis74)
                }
                #[test]
                fn redis74_stack() {
                    super::$name($crate::common::Flavor::Redis74Stack)
                }
                #[test]
                fn valkey() {
                    super::$name($crate::common::Flavor::Valkey)
                }
            }
        )*
    };
}

/// Waits until a replica acknowledged everything the master `m` sent (a
/// loaded machine can need more than one `WAIT` timeout).
pub fn wait_for_replica(m: &mut redis::Connection) {
    wait_until("replica acknowledges", Duration::from_secs(60), || {
        let acked: i64 = redis::cmd("WAIT").arg(1).arg(5000).query(m).expect("WAIT");
        acked >= 1
    });
}

/// Rewrites the AOF (`BGREWRITEAOF`) and waits until the rewrite is done.
pub fn rewrite_aof(c: &mut redis::Connection) {
    let _: String = redis::cmd("BGREWRITEAOF").query(c).expect("BGREWRITEAOF");
    wait_for_rewrite(c);
}

/// Waits until no AOF rewrite is running or scheduled (one started by
/// `BGREWRITEAOF` or by `CONFIG SET appendonly yes`).
pub fn wait_for_rewrite(c: &mut redis::Connection) {
    wait_until("AOF rewrite", Duration::from_secs(20), || {
        let info: String = redis::cmd("INFO")
            .arg("persistence")
            .query(c)
            .unwrap_or_default();
        info.contains("aof_rewrite_in_progress:0") && info.contains("aof_rewrite_scheduled:0")
    });
}

/// Runs each command line, failing the test on an error reply.
pub fn run_lines(c: &mut redis::Connection, lines: &[&str]) {
    for line in lines {
        let _: redis::Value = cmd(line).query(c).unwrap_or_else(|e| panic!("{line}: {e}"));
    }
}
