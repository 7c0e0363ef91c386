//! Reliability on real servers: a clock that ran ahead, forged states, ACLs
//! (docs/commands.md, "Correctness across nodes, restarts and time").

mod common;
#[path = "common/payload.rs"]
mod payload;

use common::{error_text, ok, Flavor, Server};
use payload::{
    approx_body, dump_of, exact_body, fixed_window_body, limits, single, token_bucket_body,
};

const YEAR_MS: u64 = 365 * 24 * 3_600 * 1_000;
/// 10000-01-01T00:00:00Z: the decoder's horizon.
const HORIZON_MS: u64 = 253_402_300_800_000;

/// The server's clock, in ms.
fn server_ms(c: &mut redis::Connection) -> u64 {
    let (s, us): (u64, u64) = redis::cmd("TIME").query(c).expect("TIME");
    s * 1_000 + us / 1_000
}

/// A `DUMP` of a limiter key of this server, to build payloads on.
fn template(c: &mut redis::Connection) -> Vec<u8> {
    ok(c, "RL.TOKENBUCKET template 10 1 1");
    redis::cmd("DUMP").arg("template").query(c).expect("DUMP")
}

fn restore(
    c: &mut redis::Connection,
    key: &str,
    ttl_ms: u64,
    payload: &[u8],
) -> Result<(), String> {
    redis::cmd("RESTORE")
        .arg(key)
        .arg(ttl_ms)
        .arg(payload)
        .query::<()>(c)
        .map_err(|e| error_text(&e))
}

/// The five leading fields of any limiter reply (`RL.LIMITS` adds two).
fn fields(c: &mut redis::Connection, line: &str) -> common::Reply {
    let v: Vec<redis::Value> = common::cmd(line)
        .query(c)
        .unwrap_or_else(|e| panic!("{line}: {e}"));
    let n: Vec<i64> = v
        .iter()
        .take(5)
        .map(|x| match x {
            redis::Value::Int(i) => *i,
            other => panic!("{line}: {other:?}"),
        })
        .collect();
    common::Reply {
        allowed: n[0],
        limit: n[1],
        remaining: n[2],
        retry_after_ms: n[3],
        reset_after_ms: n[4],
    }
}

fn pttl(c: &mut redis::Connection, key: &str) -> i64 {
    redis::cmd("PTTL").arg(key).query(c).expect("PTTL")
}

/// Finding 1: limiters touched while the clock was a year ahead (here: their
/// states restored as that clock left them, with a year-long TTL), then used
/// with the real clock. Every algorithm and `RL.LIMITS` still counts what was
/// used, but waits at most its full reset, and the key's TTL follows.
fn a_clock_that_ran_a_year_ahead_locks_no_one_out(f: Flavor) {
    let s = Server::start(f);
    let mut c = s.conn();
    let tpl = template(&mut c);
    let ahead = server_ms(&mut c) + YEAR_MS;
    let aligned = ahead - ahead % 10_000;
    // (call, state as the clock a year ahead left it, full reset in ms)
    let cases: [(&str, Vec<u8>, i64); 5] = [
        (
            "RL.TOKENBUCKET tb 5 0.5 1",
            single(token_bucket_body(0, ahead)),
            10_000,
        ),
        (
            "RL.FIXEDWINDOW fw 5 10 1",
            single(fixed_window_body(aligned, 5)),
            10_000,
        ),
        (
            "RL.SLIDING se 5 10 1",
            single(exact_body(&[(ahead - 5, 2), (ahead, 3)], false)),
            10_000,
        ),
        (
            "RL.SLIDING sa 5 10 1 APPROX",
            single(approx_body(aligned, 0, 5)),
            20_000,
        ),
        (
            "RL.LIMITS li 1 TOKENBUCKET 5 0.5 SLIDING 5 10",
            limits(&[token_bucket_body(0, ahead), exact_body(&[(ahead, 5)], true)]),
            10_000,
        ),
    ];
    for (line, state, full) in cases {
        let key = line.split_whitespace().nth(1).expect("key");
        restore(&mut c, key, YEAR_MS, &dump_of(&tpl, &state))
            .unwrap_or_else(|e| panic!("{line}: a state ahead of the clock loads: {e}"));
        assert!(
            pttl(&mut c, key) > full,
            "{line}: restored with a year to live"
        );
        let r = fields(&mut c, line);
        assert_eq!(r.allowed, 0, "{line}: what was used ahead still counts");
        assert!(
            r.retry_after_ms > 0 && r.retry_after_ms <= full,
            "{line}: waits {} ms, more than its full reset {full}",
            r.retry_after_ms
        );
        assert!(r.reset_after_ms <= full, "{line}: {r:?}");
        let ttl = pttl(&mut c, key);
        assert!(
            ttl > 0 && ttl <= full,
            "{line}: the key lives {ttl} ms, more than its full reset {full}"
        );
        // The settled state is what the next call sees: still no longer.
        let again = fields(&mut c, line);
        assert!(again.retry_after_ms <= full, "{line}: {again:?}");
    }
}

/// A replica gets the settled state and TTL, not the year-ahead one.
fn a_settled_state_reaches_the_replica(f: Flavor) {
    let s = Server::start(f);
    let r = s.replica();
    let mut c = s.conn();
    let tpl = template(&mut c);
    let ahead = server_ms(&mut c) + YEAR_MS;
    let state = dump_of(&tpl, &single(token_bucket_body(0, ahead)));
    restore(&mut c, "tb", YEAR_MS, &state).expect("loads");
    let d = ok(&mut c, "RL.TOKENBUCKET tb 5 0.5 1");
    assert!(d.retry_after_ms <= 10_000, "{d:?}");
    common::wait_for_replica(&mut c);
    let mut rc = r.conn();
    assert_eq!(
        common::snapshot(&mut c, "tb"),
        common::snapshot(&mut rc, "tb")
    );
    assert!(pttl(&mut rc, "tb") <= 10_000);
}

/// Finding 3: an `EXACT` log at 2^64 - 2 and 2^64 - 1 ms granted 200 calls
/// of 200 with a limit of 10. Such states, and every time past the year
/// 10000, are refused on `RESTORE` (the RDB path); states merely ahead load.
fn forged_states_beyond_the_horizon_are_refused(f: Flavor) {
    let s = Server::start(f);
    let mut c = s.conn();
    let tpl = template(&mut c);
    let now = server_ms(&mut c);
    let forged = [
        single(exact_body(&[(u64::MAX - 1, 1), (u64::MAX, 1)], false)),
        single(exact_body(&[(HORIZON_MS + 1, 1)], false)),
        single(token_bucket_body(1, HORIZON_MS + 1)),
        single(fixed_window_body(HORIZON_MS + 1, 1)),
        single(approx_body(HORIZON_MS + 1, 1, 1)),
        limits(&[exact_body(&[(u64::MAX, 1)], true)]),
        // More units than any limit can hold.
        single(fixed_window_body(now, u64::MAX)),
    ];
    for state in &forged {
        let e = restore(&mut c, "forged", 0, &dump_of(&tpl, state))
            .expect_err("a forged state is refused");
        assert!(e.starts_with("ERR"), "{e}");
        let n: i64 = redis::cmd("EXISTS")
            .arg("forged")
            .query(&mut c)
            .expect("EXISTS");
        assert_eq!(n, 0);
    }
    // At the horizon itself, and far ahead of the clock: loads, and counts.
    restore(
        &mut c,
        "far",
        0,
        &dump_of(&tpl, &single(exact_body(&[(HORIZON_MS, 10)], false))),
    )
    .expect("a state at the horizon loads");
    for _ in 0..20 {
        let r = ok(&mut c, "RL.SLIDING far 10 1 1");
        assert_eq!(r.allowed, 0, "{r:?}");
        assert!(r.retry_after_ms <= 1_000, "{r:?}");
    }
}

/// The categories a server lists for a command (`COMMAND INFO`, field 7).
fn categories(c: &mut redis::Connection, command: &str) -> Vec<String> {
    let info: Vec<redis::Value> = redis::cmd("COMMAND")
        .arg("INFO")
        .arg(command)
        .query(c)
        .expect("COMMAND INFO");
    let Some(redis::Value::Array(fields)) = info.first() else {
        panic!("{command}: no COMMAND INFO: {info:?}");
    };
    match fields.get(6) {
        Some(redis::Value::Array(cats)) | Some(redis::Value::Set(cats)) => cats
            .iter()
            .map(|v| match v {
                redis::Value::SimpleString(s) => s.clone(),
                redis::Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
                other => format!("{other:?}"),
            })
            .collect(),
        other => panic!("{command}: categories {other:?}"),
    }
}

const LIMITER_COMMANDS: [&str; 5] = [
    "RL.TOKENBUCKET k1 5 1 1",
    "RL.FIXEDWINDOW k2 5 1 1",
    "RL.SLIDING k3 5 1 1",
    "RL.LIMITS k4 1 TOKENBUCKET 5 1",
    "CL.THROTTLE k5 5 10 60 1",
];

/// Runs every limiter command as `user` and returns the errors.
fn errors_as(s: &Server, user: &str) -> Vec<String> {
    let mut c = s.conn();
    redis::cmd("AUTH")
        .arg(user)
        .arg("pw")
        .query::<()>(&mut c)
        .expect("AUTH");
    LIMITER_COMMANDS
        .iter()
        .map(
            |line| match common::cmd(line).query::<redis::Value>(&mut c) {
                Ok(v) => format!("allowed: {v:?}"),
                Err(e) => error_text(&e),
            },
        )
        .collect()
}

/// Finding 4: where the server has the API (Valkey 8/9, Redis >= 7.2) every
/// command is in `@write`, so `-@write` refuses them; everywhere, the rule the
/// README gives for Redis 7.0 refuses them.
fn acl_rules_refuse_the_limiter_commands(f: Flavor) {
    let s = Server::start(f);
    let mut c = s.conn();
    let readme_rule = "+@all -@write -rl.tokenbucket -rl.fixedwindow -rl.sliding -rl.limits -cl.throttle -rl.setstate";
    let mut setuser = redis::cmd("ACL");
    setuser
        .arg("SETUSER")
        .arg("ops")
        .arg("on")
        .arg(">pw")
        .arg("~*");
    for rule in readme_rule.split_whitespace() {
        setuser.arg(rule);
    }
    setuser.query::<()>(&mut c).expect("ACL SETUSER");
    for e in errors_as(&s, "ops") {
        assert!(e.starts_with("NOPERM"), "{e}");
    }

    // Granting from nothing, as the README shows: only what is named.
    let mut app = redis::cmd("ACL");
    for w in "SETUSER app on >pw ~k* -@all +rl.tokenbucket +rl.limits".split_whitespace() {
        app.arg(w);
    }
    app.query::<()>(&mut c).expect("ACL SETUSER");
    let errors = errors_as(&s, "app");
    for (line, e) in LIMITER_COMMANDS.iter().zip(&errors) {
        let allowed = line.starts_with("RL.TOKENBUCKET") || line.starts_with("RL.LIMITS");
        assert_eq!(e.starts_with("allowed"), allowed, "{line}: {e}");
        if !allowed {
            assert!(e.starts_with("NOPERM"), "{line}: {e}");
        }
    }

    let cats = categories(&mut c, "rl.tokenbucket");
    if f == Flavor::Valkey {
        assert!(cats.iter().any(|c| c == "@write"), "{cats:?}");
    }
    if cats.iter().any(|c| c == "@write") {
        for name in [
            "rl.fixedwindow",
            "rl.sliding",
            "rl.limits",
            "cl.throttle",
            "rl.setstate",
        ] {
            assert!(
                categories(&mut c, name).contains(&"@write".to_string()),
                "{name}"
            );
        }
        redis::cmd("ACL")
            .arg("SETUSER")
            .arg("reader")
            .arg("on")
            .arg(">pw")
            .arg("~*")
            .arg("+@all")
            .arg("-@write")
            .query::<()>(&mut c)
            .expect("ACL SETUSER");
        for e in errors_as(&s, "reader") {
            assert!(e.starts_with("NOPERM"), "{e}");
        }
    }
}

fn throttle(c: &mut redis::Connection, line: &str) -> [i64; 5] {
    let v: Vec<i64> = common::cmd(line)
        .query(c)
        .unwrap_or_else(|e| panic!("{line}: {e}"));
    v.try_into().expect("five fields")
}

fn key_type(c: &mut redis::Connection, key: &str) -> String {
    redis::cmd("TYPE").arg(key).query(c).expect("TYPE")
}

/// Finding 5: keys redis-cell left (a string holding its GCRA time in ns,
/// with a TTL) are read by our `CL.THROTTLE`, which continues with the same
/// remaining count and converts the key on its next write; a replica follows.
fn redis_cell_keys_are_continued_and_converted(f: Flavor) {
    let s = Server::start(f);
    let replica = s.replica();
    let mut c = s.conn();
    let now_ns = server_ms(&mut c) * 1_000_000;
    // `CL.THROTTLE key 15 30 60`: 16 tokens, one every 2 s. redis-cell
    // stores tat = now + 7.9 s: 16 - 3.95 tokens, so 12 remain (and stay so
    // for the next 1.9 s; the times below hold for 0.9 s of delay).
    let set = |c: &mut redis::Connection, key: &str, ahead_ms: u64| {
        redis::cmd("SET")
            .arg(key)
            .arg((now_ns + ahead_ms * 1_000_000).to_string())
            .arg("PX")
            .arg(ahead_ms)
            .query::<()>(c)
            .expect("SET");
    };
    set(&mut c, "cell", 7_900);
    assert_eq!(
        throttle(&mut c, "CL.THROTTLE cell 15 30 60 0"),
        [0, 16, 12, -1, 8]
    );
    assert_eq!(
        key_type(&mut c, "cell"),
        "string",
        "an inspection writes nothing"
    );
    assert_eq!(
        throttle(&mut c, "CL.THROTTLE cell 15 30 60 1"),
        [0, 16, 11, -1, 10]
    );
    assert_eq!(key_type(&mut c, "cell"), "ratelimit", "converted on write");
    let ttl = pttl(&mut c, "cell");
    assert!((9_000..=9_900).contains(&ttl), "PTTL {ttl}");
    assert_eq!(
        throttle(&mut c, "CL.THROTTLE cell 15 30 60 1"),
        [0, 16, 10, -1, 12]
    );

    // A full redis-cell bucket: denied, nothing written, its TTL kept.
    set(&mut c, "full", 32_000);
    assert_eq!(
        throttle(&mut c, "CL.THROTTLE full 15 30 60 1"),
        [1, 16, 0, 2, 32]
    );
    assert_eq!(key_type(&mut c, "full"), "string");

    // Other strings, and the RL.* commands, still get WRONGTYPE.
    redis::cmd("SET")
        .arg("junk")
        .arg("12ab")
        .query::<()>(&mut c)
        .expect("SET");
    for line in [
        "CL.THROTTLE junk 15 30 60 1",
        "RL.TOKENBUCKET cell2 16 0.5 1",
    ] {
        if line.contains("cell2") {
            set(&mut c, "cell2", 7_900);
        }
        let e = common::err(&mut c, line);
        assert!(e.starts_with("WRONGTYPE"), "{line}: {e}");
    }

    common::wait_for_replica(&mut c);
    let mut rc = replica.conn();
    assert_eq!(key_type(&mut rc, "cell"), "ratelimit");
    assert_eq!(
        common::snapshot(&mut c, "cell"),
        common::snapshot(&mut rc, "cell")
    );
}

/// Finding 2: a grant on a long `EXACT` log reaches replicas and the AOF as
/// a delta (`RL.EXACTADD`), not the whole log, and both still hold exactly
/// the master's log, through trims, merges, refunds (sent whole), AOF replay
/// and an AOF rewrite.
fn long_exact_logs_replicate_as_deltas(f: Flavor) {
    // A plain AOF shows the deltas as commands; RediSearch (loaded with
    // Redis Stack's modules) refuses to start without the RDB preamble.
    let preamble = if f == Flavor::Redis74Stack {
        "yes"
    } else {
        "no"
    };
    let mut s = Server::start_with(
        f,
        &[
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--aof-use-rdb-preamble",
            preamble,
        ],
    );
    let r = s.replica();
    let mut c = s.conn();
    let tpl = template(&mut c);
    let now = server_ms(&mut c);
    // 2,000 entries 30 ms apart in a 60 s window, the newest 1 ms ago:
    // entries keep leaving as calls arrive, and the log stays long.
    let entries: Vec<(u64, u64)> = (0..2_000).map(|i| (now - 60_000 + 30 * i, 1)).collect();
    let state = single(exact_body(&entries, false));
    restore(&mut c, "long", 0, &dump_of(&tpl, &state)).expect("loads");
    ok(&mut c, "RL.SLIDING long 4000 60 1");
    let before = common::info_int(&mut c, "replication", "master_repl_offset");
    for i in 0..300 {
        assert_eq!(ok(&mut c, "RL.SLIDING long 4000 60 1").allowed, 1);
        if i % 30 == 0 {
            std::thread::sleep(std::time::Duration::from_millis(3));
        }
    }
    let bytes = common::info_int(&mut c, "replication", "master_repl_offset") - before;
    assert!(bytes / 300 <= 300, "{bytes} B replicated for 300 grants");
    // Refunds (sent whole) and grants mixed.
    for i in 0..100 {
        let cost = if i % 10 == 9 { -2 } else { 1 };
        assert_eq!(
            ok(&mut c, &format!("RL.SLIDING long 4000 60 {cost}")).allowed,
            1
        );
    }
    common::wait_for_replica(&mut c);
    let mut rc = r.conn();
    let master = common::snapshot(&mut c, "long");
    assert_eq!(master, common::snapshot(&mut rc, "long"), "replica");
    let used = 4_000 - ok(&mut c, "RL.SLIDING long 4000 60 0").remaining;
    assert!(used > 1_500, "a long log: {used} units");

    // An ordinary client cannot send a delta.
    let e = common::err(&mut c, "RL.EXACTADD long 1 2 1 1 1 99999999999999");
    assert!(e.starts_with("ERR RL.EXACTADD is internal"), "{e}");

    drop(rc);
    drop(r);
    s.restart();
    let mut c = s.conn();
    assert_eq!(common::snapshot(&mut c, "long"), master, "AOF replay");
    common::rewrite_aof(&mut c);
    s.restart();
    let mut c = s.conn();
    assert_eq!(common::snapshot(&mut c, "long"), master, "rewritten AOF");
}

on_both_servers!(
    long_exact_logs_replicate_as_deltas,
    redis_cell_keys_are_continued_and_converted,
    a_clock_that_ran_a_year_ahead_locks_no_one_out,
    a_settled_state_reaches_the_replica,
    forged_states_beyond_the_horizon_are_refused,
    acl_rules_refuse_the_limiter_commands,
);
