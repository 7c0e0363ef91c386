//! State survives replication, reload, restart from RDB and AOF, DUMP/RESTORE,
//! COPY and RENAME; damaged payloads are refused, never crash the server.

mod common;
#[path = "common/payload.rs"]
mod payload;

use payload::crc64;

use common::{err, ok, snapshot, Flavor, Server};
use std::time::Duration;

/// A few calls on each algorithm, leaving keys in varied states.
const WORKLOAD: &[&str] = &[
    "RL.TOKENBUCKET tb 10 0.5 3",
    "RL.TOKENBUCKET tb 10 0.5 4",
    "RL.TOKENBUCKET tb 10 0.5 9",
    "RL.FIXEDWINDOW fw 5 3600 2",
    "RL.FIXEDWINDOW fw 5 3600 1",
    "RL.SLIDING se 6 600 1",
    "RL.SLIDING se 6 600 2",
    "RL.SLIDING se 6 600 1",
    "RL.SLIDING sa 6 600 4 APPROX",
    "RL.SLIDING sa 6 600 1 APPROX",
    "CL.THROTTLE ct 5 10 60 2",
    "RL.TOKENBUCKET tb 10 0.5 -2",
    "RL.SLIDING se 6 600 -1",
    "RL.LIMITS li 1 NAME burst TOKENBUCKET 5 0.5 NAME day FIXEDWINDOW 100 86400 SLIDING 9 600",
    "RL.LIMITS li 2 NAME burst TOKENBUCKET 5 0.5 NAME day FIXEDWINDOW 100 86400 SLIDING 9 600",
    "RL.LIMITS li -1 NAME burst TOKENBUCKET 5 0.5 NAME day FIXEDWINDOW 100 86400 SLIDING 9 600",
    "RL.LIMITS la 3 SLIDING 9 600 APPROX SHADOW NAME m FIXEDWINDOW 4 60 COST 1",
];
const KEYS: [&str; 7] = ["tb", "fw", "se", "sa", "ct", "li", "la"];

fn run_workload(c: &mut redis::Connection) {
    common::run_lines(c, WORKLOAD);
}

fn snapshots(c: &mut redis::Connection) -> Vec<(Vec<u8>, i64)> {
    KEYS.iter().map(|k| snapshot(c, k)).collect()
}

fn repl_offset(c: &mut redis::Connection) -> i64 {
    common::info_int(c, "replication", "master_repl_offset")
}

/// The replica holds exactly the master's state (value and absolute expiry),
/// and denied calls and `cost 0` send replicas nothing.
fn replica_holds_exactly_the_masters_state(f: Flavor) {
    let master = Server::start(f);
    let replica = master.replica();
    let mut m = master.conn();
    let mut r = replica.conn();
    run_workload(&mut m);
    common::wait_for_replica(&mut m);
    for key in KEYS {
        let (mv, mat) = snapshot(&mut m, key);
        let (rv, rat) = snapshot(&mut r, key);
        assert_eq!(mv, rv, "{key}: replica value differs");
        let d1: Vec<String> = redis::cmd("DEBUG")
            .arg("DIGEST-VALUE")
            .arg(key)
            .query(&mut m)
            .expect("digest");
        let d2: Vec<String> = redis::cmd("DEBUG")
            .arg("DIGEST-VALUE")
            .arg(key)
            .query(&mut r)
            .expect("digest");
        assert_eq!(d1, d2, "{key}");
        assert_eq!(mat, rat, "{key}: replica expiry differs");
    }
    // Denied calls and inspections replicate nothing.
    let before = repl_offset(&mut m);
    ok(&mut m, "RL.TOKENBUCKET tb 10 0.5 9");
    ok(&mut m, "RL.TOKENBUCKET tb 10 0.5 0");
    ok(&mut m, "RL.SLIDING se 6 600 0");
    ok(&mut m, "RL.FIXEDWINDOW fw 5 3600 0");
    let _: redis::Value = common::cmd("RL.LIMITS li 0 NAME burst TOKENBUCKET 5 0.5")
        .query(&mut m)
        .expect("cost 0");
    let _: redis::Value = common::cmd("RL.LIMITS li 1 NAME burst TOKENBUCKET 5 0.5 COST 9")
        .query(&mut m)
        .expect("denied");
    assert_eq!(
        repl_offset(&mut m),
        before,
        "denied or cost-0 calls were replicated"
    );
    // Ordinary clients cannot forge state on the replica either.
    let e = err(&mut r, "RL.SETSTATE tb x");
    assert!(
        e.starts_with("READONLY") || e.starts_with("ERR RL.SETSTATE is internal"),
        "{e}"
    );
}

/// Many random calls across all algorithms: replica state equals the master's.
fn replica_matches_after_many_random_calls(f: Flavor) {
    let master = Server::start(f);
    let replica = master.replica();
    let mut m = master.conn();
    let mut r = replica.conn();
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let n = 100_000;
    let mut pipe = redis::pipe();
    for _ in 0..n {
        let key = format!("r:{}", next() % 100);
        // Costs from -1 to 4: one call in six a refund.
        let cost = (next() % 6) as i64 - 1;
        // Short windows and fast refills on some keys (time moves them
        // during the run), long ones on others so that enough keys outlive a
        // replica catching up on a loaded machine.
        let line = match next() % 8 {
            0 => format!("RL.TOKENBUCKET {key}:tb 8 0.5 {cost}"),
            1 => format!("RL.TOKENBUCKET {key}:tl 8 0.01 {cost}"),
            2 => format!("RL.FIXEDWINDOW {key}:fw 8 120 {cost}"),
            3 => format!("RL.SLIDING {key}:se 8 5 {cost}"),
            4 => format!("RL.SLIDING {key}:sl 8 120 {cost}"),
            5 => format!("RL.SLIDING {key}:sa 8 60 {cost} APPROX"),
            6 => format!(
                "RL.LIMITS {key}:li {cost} NAME b TOKENBUCKET 4 2 NAME m SLIDING 8 120 COST 1 FIXEDWINDOW 30 10"
            ),
            _ => format!(
                "RL.LIMITS {key}:li {cost} NAME m SLIDING 8 120 SLIDING 6 3 APPROX SHADOW"
            ),
        };
        pipe.add_command(common::cmd(&line)).ignore();
    }
    let _: () = pipe.query(&mut m).expect("pipeline");
    common::wait_for_replica(&mut m);
    let keys: Vec<String> = redis::cmd("KEYS").arg("r:*").query(&mut m).expect("KEYS");
    assert!(!keys.is_empty());
    let mut compared = 0;
    for key in &keys {
        let a: Option<Vec<u8>> = redis::cmd("DUMP").arg(key).query(&mut m).expect("DUMP");
        let b: Option<Vec<u8>> = redis::cmd("DUMP").arg(key).query(&mut r).expect("DUMP");
        // A key may expire on the master between the two reads; when both
        // exist they must be equal.
        if let (Some(a), Some(b)) = (a, b) {
            assert_eq!(a, b, "{key}");
            compared += 1;
        }
    }
    assert!(compared >= 100, "only {compared} keys compared");
}

fn state_survives_debug_reload(f: Flavor) {
    let s = Server::start(f);
    let mut c = s.conn();
    run_workload(&mut c);
    let before = snapshots(&mut c);
    let _: () = redis::cmd("DEBUG")
        .arg("RELOAD")
        .query(&mut c)
        .expect("DEBUG RELOAD");
    assert_eq!(snapshots(&mut c), before);
    // Decisions continue from the stored state: 3+4 of 10 tokens were
    // taken and 2 refunded.
    let r = ok(&mut c, "RL.TOKENBUCKET tb 10 0.5 0");
    assert!(r.remaining <= 6, "{r:?}");
}

fn state_survives_restart_from_rdb(f: Flavor) {
    let mut s = Server::start(f);
    let mut c = s.conn();
    run_workload(&mut c);
    let before = snapshots(&mut c);
    let _: () = redis::cmd("SAVE").query(&mut c).expect("SAVE");
    s.restart();
    let mut c = s.conn();
    assert_eq!(snapshots(&mut c), before);
}

/// AOF without and with the RDB preamble, before and after a rewrite.
fn state_survives_restart_from_aof(f: Flavor) {
    // RediSearch refuses to load unless an AOF has the RDB preamble, so with
    // Redis Stack's modules only that layout exists.
    let preambles: &[&str] = if f == Flavor::Redis74Stack {
        &["yes"]
    } else {
        &["no", "yes"]
    };
    for &preamble in preambles {
        let mut s = Server::start_with(
            f,
            &[
                "--appendonly",
                "yes",
                "--aof-use-rdb-preamble",
                preamble,
                "--appendfsync",
                "always",
            ],
        );
        let mut c = s.conn();
        run_workload(&mut c);
        let before = snapshots(&mut c);
        s.restart();
        let mut c = s.conn();
        assert_eq!(snapshots(&mut c), before, "AOF replay, preamble {preamble}");

        common::rewrite_aof(&mut c);
        s.restart();
        let mut c = s.conn();
        assert_eq!(
            snapshots(&mut c),
            before,
            "rewritten AOF, preamble {preamble}"
        );
    }
}

fn dump_restore_copy_and_rename_keep_state(f: Flavor) {
    let s = Server::start(f);
    let mut c = s.conn();
    run_workload(&mut c);
    for key in KEYS {
        let (value, at) = snapshot(&mut c, key);
        let copy = format!("{key}:restored");
        let _: () = redis::cmd("RESTORE")
            .arg(&copy)
            .arg(at)
            .arg(&value)
            .arg("ABSTTL")
            .query(&mut c)
            .expect("RESTORE");
        assert_eq!(snapshot(&mut c, &copy), (value.clone(), at), "{key}");
        let dup = format!("{key}:copy");
        let _: i64 = redis::cmd("COPY")
            .arg(key)
            .arg(&dup)
            .query(&mut c)
            .expect("COPY");
        assert_eq!(snapshot(&mut c, &dup), (value.clone(), at), "{key}");
        let moved = format!("{key}:moved");
        let _: () = redis::cmd("RENAME")
            .arg(key)
            .arg(&moved)
            .query(&mut c)
            .expect("RENAME");
        assert_eq!(snapshot(&mut c, &moved), (value, at), "{key}");
        let usage: i64 = redis::cmd("MEMORY")
            .arg("USAGE")
            .arg(&moved)
            .query(&mut c)
            .expect("MEMORY USAGE");
        assert!(usage > 0);
    }
    // The copy is independent of the original.
    ok(&mut c, "RL.TOKENBUCKET tb:copy 10 0.5 1");
    assert_ne!(
        snapshot(&mut c, "tb:copy").0,
        snapshot(&mut c, "tb:moved").0
    );
}

/// Re-signs a DUMP payload whose body was edited.
fn resign(mut payload: Vec<u8>) -> Vec<u8> {
    let n = payload.len() - 8;
    payload.truncate(n);
    let crc = crc64(&payload);
    payload.extend_from_slice(&crc.to_le_bytes());
    payload
}

/// A payload from a newer build (unknown encoding), a damaged state and a
/// truncated one are refused with an error; the server lives on.
fn damaged_restore_payloads_are_refused(f: Flavor) {
    assert_eq!(crc64(b"123456789"), 0xe9c6_d914_c4b8_d9ca);
    let s = Server::start(f);
    let mut c = s.conn();
    ok(&mut c, "RL.TOKENBUCKET tb 10 0.5 3");
    let (good, _) = snapshot(&mut c, "tb");
    // [7 = module type][0x81 + 8-byte module id, encver in the low bits]
    // [5 = string opcode][length][state: format, tag, ...][0 = EOF][version][crc]
    assert_eq!(good[0], 7, "module value");
    assert_eq!(good[1], 0x81);
    assert_eq!(good[9] & 0x03, 1, "encoding version 1");
    assert_eq!(good[10], 5);
    let len = usize::from(good[11]);
    assert_eq!(good[12], 1, "state format 1");

    let restore = |c: &mut redis::Connection, key: &str, payload: &[u8]| -> Result<(), String> {
        redis::cmd("RESTORE")
            .arg(key)
            .arg(0)
            .arg(payload)
            .query::<()>(c)
            .map_err(|e| common::error_text(&e))
    };
    restore(&mut c, "ok", &good).expect("the untouched payload restores");

    let mut newer_encver = good.clone();
    newer_encver[9] = (newer_encver[9] & !0x03) | 2;
    let mut newer_format = good.clone();
    newer_format[12] = 3;
    let mut unknown_algo = good.clone();
    unknown_algo[13] = 77;
    let mut truncated = good[..12 + len - 1].to_vec();
    truncated[11] -= 1;
    truncated.extend_from_slice(&good[12 + len..]);
    let mut flipped = good.clone();
    flipped[14] ^= 0xff;
    for (name, payload) in [
        ("newer encoding version", resign(newer_encver)),
        ("newer state format", resign(newer_format)),
        ("unknown algorithm", resign(unknown_algo)),
        ("truncated state", resign(truncated)),
        ("bad checksum", flipped),
        ("cut payload", good[..good.len() - 12].to_vec()),
    ] {
        let e = restore(&mut c, "bad", &payload).expect_err(name);
        assert!(e.starts_with("ERR"), "{name}: {e}");
        let n: i64 = redis::cmd("EXISTS")
            .arg("bad")
            .query(&mut c)
            .expect("EXISTS");
        assert_eq!(n, 0, "{name}");
    }
    let pong: String = redis::cmd("PING").query(&mut c).expect("alive");
    assert_eq!(pong, "PONG");
}

/// An RDB file whose limiter values carry an encoding version from the
/// future: the server refuses to load it, logs why, and exits (after its
/// own RDB check) rather than aborting or serving a guessed state.
fn rdb_with_unknown_encoding_is_refused(f: Flavor) {
    let mut s = Server::start(f);
    let mut c = s.conn();
    ok(&mut c, "RL.TOKENBUCKET tb 10 0.5 3");
    let (dump, _) = snapshot(&mut c, "tb");
    let _: () = redis::cmd("SAVE").query(&mut c).expect("SAVE");
    s.kill();
    let path = s.dir.join("dump.rdb");
    let mut rdb = std::fs::read(&path).expect("dump.rdb");
    // The module id as DUMP shows it: 0x81 and 8 bytes, encver in the low bits.
    let id = &dump[1..10];
    let at = rdb
        .windows(id.len())
        .position(|w| w == id)
        .expect("module id in the RDB");
    rdb[at + 8] = (rdb[at + 8] & !0x03) | 2;
    std::fs::write(&path, resign(rdb)).expect("write RDB");

    let mut child = std::process::Command::new(f.binary())
        .args([
            "--port",
            &common::free_port().to_string(),
            "--bind",
            "127.0.0.1",
        ])
        .arg("--dir")
        .arg(&s.dir)
        .arg("--logfile")
        .arg(s.dir.join("reload.log"))
        .args(f.other_modules())
        .arg("--loadmodule")
        .arg(common::module_path())
        .spawn()
        .expect("start server");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break st;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("the server loaded an RDB with an unknown encoding");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), None, "server crashed: {status:?}");
    let log = std::fs::read_to_string(s.dir.join("reload.log")).unwrap_or_default();
    assert!(
        log.contains("refusing state with unknown encoding version 2"),
        "{log}"
    );
}

/// `tests/fixtures/format-1.rdb` was saved by Redis 7.0.15 with the module
/// as it was before `RL.LIMITS` (commit 6eeb05a, state format 1), after:
///
/// ```text
/// RL.TOKENBUCKET v1:tb 10 0.000000001 3      RL.SLIDING v1:se 5 1000000000 2
/// RL.FIXEDWINDOW v1:fw 5 1000000000 2        RL.SLIDING v1:sa 5 1000000000 2 APPROX
/// ```
///
/// (limiters whose keys live for years: the fixed window's key expires in
/// 2033, regenerate the file with the old build before then). Today's module
/// loads it and the limits continue where they were.
fn an_rdb_saved_before_rl_limits_still_loads(f: Flavor) {
    let mut s = Server::start(f);
    s.kill();
    let fixture =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/format-1.rdb");
    std::fs::copy(&fixture, s.dir.join("dump.rdb")).expect("copy the fixture");
    s.restart();
    let mut c = s.conn();
    for (line, remaining) in [
        ("RL.TOKENBUCKET v1:tb 10 0.000000001 0", 7),
        ("RL.FIXEDWINDOW v1:fw 5 1000000000 0", 3),
        ("RL.SLIDING v1:se 5 1000000000 0", 3),
        ("RL.SLIDING v1:sa 5 1000000000 0 APPROX", 3),
    ] {
        assert_eq!(ok(&mut c, line).remaining, remaining, "{line}");
    }
    // Single-algorithm keys are still written in format 1, so a DUMP of them
    // is what the old build wrote.
    let (dump, _) = snapshot(&mut c, "v1:fw");
    assert_eq!(dump[12], 1, "state format 1");
    assert_eq!(
        ok(&mut c, "RL.FIXEDWINDOW v1:fw 5 1000000000 1").remaining,
        2
    );
    assert_eq!(ok(&mut c, "RL.SLIDING v1:se 5 1000000000 1").remaining, 2);
}

on_both_servers!(
    an_rdb_saved_before_rl_limits_still_loads,
    replica_holds_exactly_the_masters_state,
    replica_matches_after_many_random_calls,
    state_survives_debug_reload,
    state_survives_restart_from_rdb,
    state_survives_restart_from_aof,
    dump_restore_copy_and_rename_keep_state,
    damaged_restore_payloads_are_refused,
    rdb_with_unknown_encoding_is_refused,
);
