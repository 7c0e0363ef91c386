//! `RL.LIMITS` and refunds as docs/commands.md describes them ("Several limits at
//! once, all or nothing" and the `cost` paragraph), on a real server.
//! Durability (replica, reload, RDB, AOF, DUMP/RESTORE, MIGRATE) is covered
//! with the other commands in `durability.rs` and `cluster.rs`, whose
//! workloads include `RL.LIMITS` and refunds.

mod common;

use common::{err, ok, Flavor, Server};
use std::time::Duration;

/// One limit's five fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Fields {
    allowed: i64,
    limit: i64,
    remaining: i64,
    retry_after_ms: i64,
    reset_after_ms: i64,
}

/// An `RL.LIMITS` reply (RESP2: seven elements).
#[derive(Debug)]
struct Limits {
    top: Fields,
    binding: usize,
    limits: Vec<Fields>,
}

fn fields(v: &[redis::Value]) -> Fields {
    let n: Vec<i64> = v
        .iter()
        .map(|x| match x {
            redis::Value::Int(i) => *i,
            other => panic!("not an integer: {other:?}"),
        })
        .collect();
    assert_eq!(n.len(), 5, "{v:?}");
    Fields {
        allowed: n[0],
        limit: n[1],
        remaining: n[2],
        retry_after_ms: n[3],
        reset_after_ms: n[4],
    }
}

fn try_limits(c: &mut redis::Connection, line: &str) -> redis::RedisResult<Limits> {
    let v: Vec<redis::Value> = common::cmd(line).query(c)?;
    assert_eq!(v.len(), 7, "{line}: {v:?}");
    let binding = match &v[5] {
        redis::Value::Int(i) => usize::try_from(*i).expect("binding >= 0"),
        other => panic!("binding: {other:?}"),
    };
    let limits = match &v[6] {
        redis::Value::Array(items) => items
            .iter()
            .map(|l| match l {
                redis::Value::Array(f) => fields(f),
                other => panic!("limit: {other:?}"),
            })
            .collect(),
        other => panic!("limits: {other:?}"),
    };
    Ok(Limits {
        top: fields(&v[..5]),
        binding,
        limits,
    })
}

fn limits(c: &mut redis::Connection, line: &str) -> Limits {
    try_limits(c, line).unwrap_or_else(|e| panic!("{line}: {e}"))
}

fn dump(c: &mut redis::Connection, key: &str) -> Option<Vec<u8>> {
    redis::cmd("DUMP").arg(key).query(c).expect("DUMP")
}

fn dirty(c: &mut redis::Connection) -> i64 {
    common::info_int(c, "persistence", "rdb_changes_since_last_save")
}

/// The README's burst + day: a denial by the burst consumes nothing, so the
/// day keeps every unit the denied calls asked for.
fn a_denial_by_the_burst_never_burns_the_day(f: Flavor) {
    let s = Server::start(f);
    let mut c = s.conn();
    let line = "RL.LIMITS u:1 1 NAME burst TOKENBUCKET 2 0.001 NAME day TOKENBUCKET 5 0.000001";
    for left in [1, 0] {
        let r = limits(&mut c, line);
        assert_eq!(r.top.allowed, 1);
        assert_eq!(r.binding, 0, "the burst has fewer left");
        assert_eq!((r.top.limit, r.top.remaining), (2, left));
        assert_eq!(r.limits[1].remaining, 3 + left);
    }
    let before = (dump(&mut c, "u:1"), dirty(&mut c));
    for _ in 0..10 {
        let r = limits(&mut c, line);
        assert_eq!(r.top.allowed, 0);
        assert_eq!(r.binding, 0);
        assert!(r.top.retry_after_ms > 0 && r.top.retry_after_ms <= 1_000_000);
        assert_eq!(r.limits[0].allowed, 0);
        // The day would have granted; it reports its untouched state.
        assert_eq!(r.limits[1].allowed, 1);
        assert_eq!(r.limits[1].remaining, 3);
    }
    assert_eq!(
        (dump(&mut c, "u:1"), dirty(&mut c)),
        before,
        "a denied call wrote or dirtied something"
    );
}

fn binding_follows_the_spec(f: Flavor) {
    let s = Server::start(f);
    let mut c = s.conn();
    // Allowed: the fewest remaining.
    let r = limits(
        &mut c,
        "RL.LIMITS b:1 1 TOKENBUCKET 10 0.001 TOKENBUCKET 5 0.001",
    );
    assert_eq!((r.binding, r.top.limit, r.top.remaining), (1, 5, 4));
    // Ties on remaining: the later reset (the slower refill).
    let r = limits(&mut c, "RL.LIMITS b:2 1 TOKENBUCKET 5 1 TOKENBUCKET 5 0.1");
    assert_eq!(r.binding, 1);
    assert_eq!(r.top.reset_after_ms, 10_000);
    assert_eq!(r.limits[0].reset_after_ms, 1_000);
    // Denied: the longest wait.
    let line = "RL.LIMITS b:3 1 TOKENBUCKET 1 1 TOKENBUCKET 1 0.1";
    assert_eq!(limits(&mut c, line).top.allowed, 1);
    let r = limits(&mut c, line);
    assert_eq!((r.top.allowed, r.binding), (0, 1));
    assert!(r.top.retry_after_ms > 9_000 && r.top.retry_after_ms <= 10_000);
    assert!(r.limits[0].retry_after_ms <= 1_000);
    // "Never" beats any wait.
    let r = limits(
        &mut c,
        "RL.LIMITS b:3 1 TOKENBUCKET 1 0.1 TOKENBUCKET 1 1 FIXEDWINDOW 3 60 COST 5",
    );
    assert_eq!((r.top.allowed, r.binding, r.top.retry_after_ms), (0, 2, -1));
    // The TTL is the longest reset.
    let r = limits(
        &mut c,
        "RL.LIMITS b:4 1 TOKENBUCKET 10 1 TOKENBUCKET 10 0.01",
    );
    assert_eq!(r.top.reset_after_ms, 100_000);
    let pttl: i64 = redis::cmd("PTTL").arg("b:4").query(&mut c).expect("PTTL");
    assert!((99_000..=100_000).contains(&pttl), "PTTL {pttl}");
}

/// Negative costs on every command: always allowed, never above full.
fn refunds_on_every_command(f: Flavor) {
    let s = Server::start(f);
    let mut c = s.conn();
    for (take, give, over) in [
        (
            "RL.TOKENBUCKET r:tb 10 0.000001 7",
            "RL.TOKENBUCKET r:tb 10 0.000001 -3",
            "RL.TOKENBUCKET r:tb 10 0.000001 -100",
        ),
        (
            "RL.FIXEDWINDOW r:fw 10 1000000 7",
            "RL.FIXEDWINDOW r:fw 10 1000000 -3",
            "RL.FIXEDWINDOW r:fw 10 1000000 -100",
        ),
        (
            "RL.SLIDING r:se 10 1000 7",
            "RL.SLIDING r:se 10 1000 -3",
            "RL.SLIDING r:se 10 1000 -100",
        ),
        (
            "RL.SLIDING r:sa 10 1000000 7 APPROX",
            "RL.SLIDING r:sa 10 1000000 -3 APPROX",
            "RL.SLIDING r:sa 10 1000000 -100 APPROX",
        ),
    ] {
        assert_eq!(ok(&mut c, take).remaining, 3, "{take}");
        let r = ok(&mut c, give);
        assert_eq!((r.allowed, r.remaining), (1, 6), "{give}");
        let r = ok(&mut c, over);
        assert_eq!((r.allowed, r.remaining), (1, 10), "{over}: above full");
        assert_eq!(r.reset_after_ms, 0, "{over}: full again");
    }
    // CL.THROTTLE's quantity: a bucket of max_burst + 1 = 5.
    let take: Vec<i64> = common::cmd("CL.THROTTLE r:ct 4 1 100000 3")
        .query(&mut c)
        .expect("take");
    assert_eq!(take[2], 2);
    let give: Vec<i64> = common::cmd("CL.THROTTLE r:ct 4 1 100000 -2")
        .query(&mut c)
        .expect("refund");
    assert_eq!((give[0], give[2]), (0, 4));
    // A refund is written and replicated like a grant: it dirties the
    // dataset.
    let before = dirty(&mut c);
    ok(&mut c, "RL.TOKENBUCKET r:tb 10 0.000001 5");
    ok(&mut c, "RL.TOKENBUCKET r:tb 10 0.000001 -1");
    assert_eq!(dirty(&mut c), before + 2);
}

/// An LLM endpoint: requests and tokens per minute, reserve the maximum
/// tokens up front, then refund what the answer did not use.
fn llm_reserve_then_refund(f: Flavor) {
    let s = Server::start(f);
    let mut c = s.conn();
    let reserve = "RL.LIMITS llm:alice 1 NAME rpm SLIDING 60 60 NAME tpm TOKENBUCKET 10000 0.000001 COST 4000";
    let r = limits(&mut c, reserve);
    assert_eq!(r.top.allowed, 1);
    assert_eq!((r.limits[0].remaining, r.limits[1].remaining), (59, 6000));
    // The answer used 1,500 tokens: give 2,500 back, no request counted.
    let refund = "RL.LIMITS llm:alice 0 NAME rpm SLIDING 60 60 NAME tpm TOKENBUCKET 10000 0.000001 COST -2500";
    let r = limits(&mut c, refund);
    assert_eq!(r.top.allowed, 1);
    assert_eq!((r.limits[0].remaining, r.limits[1].remaining), (59, 8500));
    // Two more reservations fit, the third does not — and burns no request.
    assert_eq!(limits(&mut c, reserve).top.allowed, 1);
    assert_eq!(limits(&mut c, reserve).top.allowed, 1);
    let r = limits(&mut c, reserve);
    assert_eq!((r.top.allowed, r.binding), (0, 1));
    assert_eq!(r.limits[0].remaining, 57);
    assert_eq!(r.limits[1].remaining, 500);
    // A call whose costs are all <= 0 is always granted.
    let r = limits(
        &mut c,
        "RL.LIMITS llm:alice -1 NAME rpm SLIDING 60 60 NAME tpm TOKENBUCKET 10000 0.000001 COST -100",
    );
    assert_eq!(r.top.allowed, 1);
    assert_eq!((r.limits[0].remaining, r.limits[1].remaining), (58, 600));
}

fn shadow_limits_observe_and_never_deny(f: Flavor) {
    let s = Server::start(f);
    let mut c = s.conn();
    let line = "RL.LIMITS sh:1 3 TOKENBUCKET 100 0.000001 NAME new TOKENBUCKET 5 0.000001 SHADOW";
    let r = limits(&mut c, line);
    assert_eq!((r.top.allowed, r.binding), (1, 0));
    assert_eq!(r.limits[1].remaining, 2);
    // The shadow would deny: the call is granted, the shadow says so and is
    // consumed to empty, never below.
    let r = limits(&mut c, line);
    assert_eq!(r.top.allowed, 1);
    assert_eq!(r.top.retry_after_ms, 0);
    assert_eq!(r.limits[1].allowed, 0);
    assert!(r.limits[1].retry_after_ms > 0);
    assert_eq!(r.limits[1].remaining, 0);
    assert_eq!(r.limits[0].remaining, 94);
    let r = limits(&mut c, line);
    assert_eq!((r.top.allowed, r.limits[1].remaining), (1, 0));
    // One token refunded to the shadow is one token there: it never went
    // below empty.
    let r = limits(
        &mut c,
        "RL.LIMITS sh:1 0 TOKENBUCKET 100 0.000001 NAME new TOKENBUCKET 5 0.000001 SHADOW COST -1",
    );
    assert_eq!(r.limits[1].remaining, 1);
    // Every limit shadow: granted, and binding names the one that would
    // have bound.
    let all = "RL.LIMITS sh:2 2 TOKENBUCKET 10 0.000001 SHADOW FIXEDWINDOW 3 1000000 SHADOW";
    assert_eq!(limits(&mut c, all).binding, 1);
    let r = limits(&mut c, all);
    assert_eq!((r.top.allowed, r.binding), (1, 1));
    assert_eq!(r.limits[1].allowed, 0);
}

fn limits_are_matched_by_name_then_position(f: Flavor) {
    let s = Server::start(f);
    let mut c = s.conn();
    // By name: order does not matter.
    limits(
        &mut c,
        "RL.LIMITS m:1 2 NAME a TOKENBUCKET 5 0.000001 NAME b FIXEDWINDOW 5 1000000",
    );
    let r = limits(
        &mut c,
        "RL.LIMITS m:1 0 NAME b FIXEDWINDOW 5 1000000 NAME a TOKENBUCKET 5 0.000001",
    );
    assert_eq!((r.limits[0].remaining, r.limits[1].remaining), (3, 3));
    // A lower capacity behaves as for RL.TOKENBUCKET: tokens above it drop.
    let r = limits(
        &mut c,
        "RL.LIMITS m:1 0 NAME b FIXEDWINDOW 5 1000000 NAME a TOKENBUCKET 2 0.000001",
    );
    assert_eq!(r.limits[1].remaining, 2);
    // A changed algorithm starts fresh (EXACT <-> APPROX too)...
    let r = limits(
        &mut c,
        "RL.LIMITS m:1 0 NAME b SLIDING 5 1000 NAME a TOKENBUCKET 5 0.000001",
    );
    assert_eq!(r.limits[0].remaining, 5);
    // ...but a call of cost 0 writes nothing, so the stored state is intact.
    let r = limits(
        &mut c,
        "RL.LIMITS m:1 0 NAME b FIXEDWINDOW 5 1000000 NAME a TOKENBUCKET 5 0.000001",
    );
    assert_eq!(r.limits[0].remaining, 3);
    // A write drops the limits the call does not name.
    limits(&mut c, "RL.LIMITS m:1 1 NAME a TOKENBUCKET 5 0.000001");
    let r = limits(
        &mut c,
        "RL.LIMITS m:1 0 NAME b FIXEDWINDOW 5 1000000 NAME a TOKENBUCKET 5 0.000001",
    );
    assert_eq!((r.limits[0].remaining, r.limits[1].remaining), (5, 2));
    // Unnamed limits match by position: swapping them starts both fresh.
    limits(
        &mut c,
        "RL.LIMITS m:2 1 SLIDING 5 1000 EXACT SLIDING 5 1000 APPROX",
    );
    let r = limits(
        &mut c,
        "RL.LIMITS m:2 1 SLIDING 5 1000 APPROX SLIDING 5 1000 EXACT",
    );
    assert_eq!((r.limits[0].remaining, r.limits[1].remaining), (4, 4));
    let r = limits(
        &mut c,
        "RL.LIMITS m:2 0 SLIDING 5 1000 APPROX SLIDING 5 1000 EXACT",
    );
    assert_eq!((r.limits[0].remaining, r.limits[1].remaining), (4, 4));
}

fn single_commands_and_limits_do_not_share_keys(f: Flavor) {
    let s = Server::start(f);
    let mut c = s.conn();
    ok(&mut c, "RL.TOKENBUCKET w:1 5 1 1");
    let e = err(&mut c, "RL.LIMITS w:1 1 TOKENBUCKET 5 1");
    assert!(
        e.starts_with("WRONGTYPE") && e.contains("RL.TOKENBUCKET") && e.contains("RL.LIMITS"),
        "{e}"
    );
    limits(&mut c, "RL.LIMITS w:2 1 TOKENBUCKET 5 1");
    for line in [
        "RL.TOKENBUCKET w:2 5 1 1",
        "RL.FIXEDWINDOW w:2 5 1 1",
        "RL.SLIDING w:2 5 1 1",
        "CL.THROTTLE w:2 5 1 1",
    ] {
        let e = err(&mut c, line);
        assert!(
            e.starts_with("WRONGTYPE") && e.contains("RL.LIMITS"),
            "{line}: {e}"
        );
    }
    let _: () = redis::cmd("SET")
        .arg("w:3")
        .arg("x")
        .query(&mut c)
        .expect("SET");
    assert!(err(&mut c, "RL.LIMITS w:3 1 TOKENBUCKET 5 1").starts_with("WRONGTYPE"));
}

/// Malformed lines: a clear error, and nothing written.
fn bad_limits_lines_are_refused_and_change_nothing(f: Flavor) {
    let s = Server::start(f);
    let mut c = s.conn();
    limits(&mut c, "RL.LIMITS bad:1 1 NAME a TOKENBUCKET 5 1");
    let before = dump(&mut c, "bad:1");
    let specs_1000 = " FIXEDWINDOW 1 1".repeat(1_000);
    let specs_17 = " FIXEDWINDOW 1 1".repeat(17);
    let long_name = "n".repeat(65);
    let cases: Vec<(String, &str)> = vec![
        ("RL.LIMITS".into(), "wrong number of arguments"),
        ("RL.LIMITS bad:1".into(), "wrong number of arguments"),
        ("RL.LIMITS bad:1 1".into(), "wrong number of arguments"),
        ("RL.LIMITS bad:1 x TOKENBUCKET 5 1".into(), "ERR cost"),
        ("RL.LIMITS bad:1 1.5 TOKENBUCKET 5 1".into(), "ERR cost"),
        (
            "RL.LIMITS bad:1 -9223372036854775808 TOKENBUCKET 5 1".into(),
            "ERR cost",
        ),
        ("RL.LIMITS bad:1 1 TOKENBUCKET".into(), "TOKENBUCKET needs"),
        (
            "RL.LIMITS bad:1 1 TOKENBUCKET 5".into(),
            "TOKENBUCKET needs",
        ),
        (
            "RL.LIMITS bad:1 1 FIXEDWINDOW 5".into(),
            "FIXEDWINDOW needs",
        ),
        ("RL.LIMITS bad:1 1 SLIDING 5".into(), "SLIDING needs"),
        ("RL.LIMITS bad:1 1 LEAKYBUCKET 5 1".into(), "unknown limit"),
        ("RL.LIMITS bad:1 1 NAME".into(), "NAME needs a name"),
        ("RL.LIMITS bad:1 1 NAME a".into(), "must be followed"),
        (
            format!("RL.LIMITS bad:1 1 NAME {long_name} TOKENBUCKET 5 1"),
            "NAME must be 1 to 64 bytes",
        ),
        (
            "RL.LIMITS bad:1 1 NAME a TOKENBUCKET 5 1 NAME a FIXEDWINDOW 5 1".into(),
            "used twice",
        ),
        (
            "RL.LIMITS bad:1 1 TOKENBUCKET 5 1 COST".into(),
            "COST needs",
        ),
        (
            "RL.LIMITS bad:1 1 TOKENBUCKET 5 1 COST many".into(),
            "cost must be",
        ),
        (
            "RL.LIMITS bad:1 1 TOKENBUCKET 5 1 COST 1 COST 2".into(),
            "COST is given twice",
        ),
        (
            "RL.LIMITS bad:1 1 TOKENBUCKET 5 1 SHADOW SHADOW".into(),
            "SHADOW is given twice",
        ),
        (
            "RL.LIMITS bad:1 1 TOKENBUCKET 0 1".into(),
            "capacity must be",
        ),
        ("RL.LIMITS bad:1 1 TOKENBUCKET 5 -1".into(), "rate must be"),
        ("RL.LIMITS bad:1 1 TOKENBUCKET 5 nan".into(), "rate must be"),
        (
            "RL.LIMITS bad:1 1 FIXEDWINDOW 5 inf".into(),
            "window must be",
        ),
        (
            "RL.LIMITS bad:1 1 FIXEDWINDOW 5 0.0005".into(),
            "window must be",
        ),
        ("RL.LIMITS bad:1 1 SLIDING 5 1 FAST".into(), "unknown limit"),
        (
            "RL.LIMITS bad:1 1 SLIDING 100000 600".into(),
            "exact-max-log",
        ),
        (
            format!("RL.LIMITS bad:1 1{specs_17}"),
            "at most 16 in one RL.LIMITS call",
        ),
        (
            format!("RL.LIMITS bad:1 1{specs_1000}"),
            "at most 16 in one RL.LIMITS call",
        ),
        (
            "RL.LIMITS bad:1 1 TOKENBUCKET 5 1 EXACT".into(),
            "unknown limit",
        ),
        (
            "RL.LIMITS bad:1 1 TOKENBUCKET 9223372036854775808 1".into(),
            "capacity must be",
        ),
    ];
    assert!(cases.len() >= 25);
    for (line, want) in &cases {
        let e = err(&mut c, line);
        assert!(e.starts_with("ERR "), "{line}: {e}");
        assert!(e.contains(want), "{line}: {e}");
        assert!(e.len() < 400, "{line}: error echoes too much");
        assert_eq!(dump(&mut c, "bad:1"), before, "{line} changed the key");
    }
    let n: i64 = redis::cmd("DBSIZE").query(&mut c).expect("DBSIZE");
    assert_eq!(n, 1, "an error created a key");
}

fn resp3_reply_is_a_map(f: Flavor) {
    let s = Server::start(f);
    let mut c = s.conn_resp3();
    let v: redis::Value = common::cmd("RL.LIMITS m3 1 NAME a TOKENBUCKET 5 1 FIXEDWINDOW 9 60")
        .query(&mut c)
        .expect("RL.LIMITS");
    let redis::Value::Map(top) = v else {
        panic!("not a map: {v:?}")
    };
    let key = |k: &redis::Value| match k {
        redis::Value::SimpleString(s) => s.clone(),
        redis::Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        other => panic!("key {other:?}"),
    };
    let names: Vec<String> = top.iter().map(|(k, _)| key(k)).collect();
    assert_eq!(
        names,
        [
            "allowed",
            "limit",
            "remaining",
            "retry_after_ms",
            "reset_after_ms",
            "binding",
            "limits"
        ]
    );
    let redis::Value::Array(per) = &top[6].1 else {
        panic!("limits: {:?}", top[6].1)
    };
    assert_eq!(per.len(), 2);
    for l in per {
        let redis::Value::Map(m) = l else {
            panic!("limit: {l:?}")
        };
        assert_eq!(key(&m[2].0), "remaining");
    }
    assert_eq!(top[2].1, redis::Value::Int(4));
}

/// 200 clients at once: exactly the tightest limit's units are granted, and
/// the looser limit lost nothing to the denials.
fn concurrent_clients_are_all_or_nothing(f: Flavor) {
    let s = Server::start(f);
    let line =
        "RL.LIMITS hot 1 NAME burst TOKENBUCKET 150 0.000001 NAME day TOKENBUCKET 1000 0.000001";
    let granted: i64 = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..200)
            .map(|_| {
                scope.spawn(|| {
                    let mut c = s.conn();
                    (0..3)
                        .map(|_| {
                            try_limits(&mut c, line)
                                .expect("RL.LIMITS under load")
                                .top
                                .allowed
                        })
                        .sum::<i64>()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("client")).sum()
    });
    assert_eq!(granted, 150);
    let mut c = s.conn();
    let r = limits(
        &mut c,
        "RL.LIMITS hot 0 NAME burst TOKENBUCKET 150 0.000001 NAME day TOKENBUCKET 1000 0.000001",
    );
    assert_eq!((r.limits[0].remaining, r.limits[1].remaining), (0, 850));
}

fn info_counts_limits_calls(f: Flavor) {
    let s = Server::start(f);
    let mut c = s.conn();
    limits(&mut c, "RL.LIMITS i 1 TOKENBUCKET 1 0.001");
    limits(&mut c, "RL.LIMITS i 1 TOKENBUCKET 1 0.001");
    let info: String = redis::cmd("INFO")
        .arg("ratelimit")
        .query(&mut c)
        .expect("INFO");
    for want in [
        "ratelimit_limits_calls:2",
        "ratelimit_limits_allowed:1",
        "ratelimit_limits_denied:1",
    ] {
        assert!(info.contains(want), "{want} not in {info}");
    }
    // Idle keys vanish: a refilled limiter's key expires.
    limits(&mut c, "RL.LIMITS gone 1 TOKENBUCKET 10 100");
    common::wait_until("key expiry", Duration::from_secs(5), || {
        let n: i64 = redis::cmd("EXISTS")
            .arg("gone")
            .query(&mut c)
            .expect("EXISTS");
        n == 0
    });
}

on_both_servers!(
    a_denial_by_the_burst_never_burns_the_day,
    binding_follows_the_spec,
    refunds_on_every_command,
    llm_reserve_then_refund,
    shadow_limits_observe_and_never_deny,
    limits_are_matched_by_name_then_position,
    single_commands_and_limits_do_not_share_keys,
    bad_limits_lines_are_refused_and_change_nothing,
    resp3_reply_is_a_map,
    concurrent_clients_are_all_or_nothing,
    info_counts_limits_calls,
);
