//! Concurrency leases as SPEC.md describes them ("Concurrency leases"), on
//! real servers: `RL.ACQUIRE`, `RL.RELEASE`, `RL.RENEW` and `CONCURRENCY` in
//! `RL.LIMITS`; 200 concurrent holders under an independent counter; a killed
//! holder's slots coming back exactly at its ttl, on the master and on a
//! promoted replica; replica and AOF byte-identical after 20,000 random calls;
//! `MIGRATE`; `WRONGTYPE` both ways.

mod common;

use common::{err, snapshot, Flavor, Server};
use redis::Value;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// An `RL.ACQUIRE` reply (RESP2: five integers, the lease id, its expiry).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Acquired {
    allowed: i64,
    limit: i64,
    remaining: i64,
    retry_after_ms: i64,
    reset_after_ms: i64,
    lease: Option<String>,
    expires_at_ms: i64,
}

fn int(v: &Value) -> i64 {
    match v {
        Value::Int(i) => *i,
        other => panic!("not an integer: {other:?}"),
    }
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::Nil => None,
        Value::BulkString(b) => Some(String::from_utf8(b.clone()).expect("utf-8 id")),
        other => panic!("not a bulk string or nil: {other:?}"),
    }
}

fn parse_acquired(v: &[Value]) -> Acquired {
    assert_eq!(v.len(), 7, "{v:?}");
    Acquired {
        allowed: int(&v[0]),
        limit: int(&v[1]),
        remaining: int(&v[2]),
        retry_after_ms: int(&v[3]),
        reset_after_ms: int(&v[4]),
        lease: text(&v[5]),
        expires_at_ms: int(&v[6]),
    }
}

fn acquire(c: &mut redis::Connection, line: &str) -> Acquired {
    let v: Vec<Value> = common::cmd(line)
        .query(c)
        .unwrap_or_else(|e| panic!("{line}: {e}"));
    parse_acquired(&v)
}

fn int_reply(c: &mut redis::Connection, line: &str) -> i64 {
    common::cmd(line)
        .query(c)
        .unwrap_or_else(|e| panic!("{line}: {e}"))
}

/// Server time in ms.
fn server_ms(c: &mut redis::Connection) -> i64 {
    let (s, us): (i64, i64) = redis::cmd("TIME").query(c).expect("TIME");
    s * 1000 + us / 1000
}

/// The reply fields, the lease id, errors, idempotent release and renew.
fn acquire_release_renew_as_the_spec_says(f: Flavor) {
    let s = Server::start(f);
    let mut c = s.conn();
    let before = server_ms(&mut c);
    let a = acquire(&mut c, "RL.ACQUIRE gpu 2 10 ID job-1");
    let after = server_ms(&mut c);
    assert_eq!(
        (a.allowed, a.limit, a.remaining, a.retry_after_ms),
        (1, 2, 1, 0)
    );
    assert_eq!(a.reset_after_ms, 10_000);
    assert_eq!(a.lease.as_deref(), Some("job-1"));
    assert!(
        (before + 10_000..=after + 10_000).contains(&a.expires_at_ms),
        "{a:?}"
    );
    // The key lives exactly as long as its last lease.
    let (_, at) = snapshot(&mut c, "gpu");
    assert_eq!(at, a.expires_at_ms);

    // A made id: decimal text, unique per key.
    let b = acquire(&mut c, "RL.ACQUIRE gpu 2 20");
    let made = b.lease.clone().expect("granted");
    assert!(made.bytes().all(|d| d.is_ascii_digit()), "{made}");
    assert_eq!((b.allowed, b.remaining), (1, 0));
    assert_eq!(snapshot(&mut c, "gpu").1, b.expires_at_ms);

    // Full: denied, no lease, retry until the earliest lease expires.
    let d = acquire(&mut c, "RL.ACQUIRE gpu 2 10");
    assert_eq!(
        (d.allowed, d.remaining, d.lease.as_deref(), d.expires_at_ms),
        (0, 0, None, 0)
    );
    assert!((9_000..=10_000).contains(&d.retry_after_ms), "{d:?}");
    assert!((19_000..=20_000).contains(&d.reset_after_ms), "{d:?}");
    // More than the limit can ever hold: -1.
    assert_eq!(
        acquire(&mut c, "RL.ACQUIRE gpu 2 10 COST 3").retry_after_ms,
        -1
    );
    // A held id is refused, with the id in the message.
    let e = err(&mut c, "RL.ACQUIRE gpu 5 10 ID job-1");
    assert_eq!(
        e,
        "ERR lease 'job-1' is already held: renew it with RL.RENEW, or release it first"
    );

    // Renew: 1 when held; 0 for unknown ids.
    assert_eq!(int_reply(&mut c, "RL.RENEW gpu job-1 30"), 1);
    assert_eq!(int_reply(&mut c, "RL.RENEW gpu nope 30"), 0);
    assert_eq!(int_reply(&mut c, "RL.RENEW missing job-1 30"), 0);
    let (_, at) = snapshot(&mut c, "gpu");
    assert!(at > b.expires_at_ms, "renewed past the other lease: {at}");

    // Release: 1 once, then 0 (never an error), also on a missing key.
    assert_eq!(int_reply(&mut c, &format!("RL.RELEASE gpu {made}")), 1);
    assert_eq!(int_reply(&mut c, &format!("RL.RELEASE gpu {made}")), 0);
    assert_eq!(int_reply(&mut c, "RL.RELEASE missing x"), 0);
    let a = acquire(&mut c, "RL.ACQUIRE gpu 2 10");
    assert_eq!((a.allowed, a.remaining), (1, 0));

    // Expired leases are neither renewed nor released.
    acquire(&mut c, "RL.ACQUIRE short 1 0.05 ID x");
    std::thread::sleep(Duration::from_millis(80));
    assert_eq!(int_reply(&mut c, "RL.RENEW short x 10"), 0);
    assert_eq!(int_reply(&mut c, "RL.RELEASE short x"), 0);
    assert_eq!(acquire(&mut c, "RL.ACQUIRE short 1 0.05 ID x").allowed, 1);

    // Errors name what to fix.
    for (line, want) in [
        (
            "RL.ACQUIRE k",
            "ERR wrong number of arguments: usage RL.ACQUIRE key limit ttl [ID id] [COST n]",
        ),
        ("RL.ACQUIRE k 0 1", "ERR limit must be an integer from 1"),
        ("RL.ACQUIRE k 1 0", "ERR ttl must be from 0.001"),
        ("RL.ACQUIRE k 1 nan", "ERR ttl must be a positive decimal"),
        (
            "RL.ACQUIRE k 1 1 COST 0",
            "ERR cost must be an integer from 1",
        ),
        ("RL.ACQUIRE k 1 1 FOO 1", "ERR unknown option 'FOO'"),
        (
            "RL.ACQUIRE k 2000 1",
            "ERR limit 2000 is above ratelimit.max-leases (1024)",
        ),
        (
            "RL.RELEASE k",
            "ERR wrong number of arguments: usage RL.RELEASE key id",
        ),
        (
            "RL.RENEW k x",
            "ERR wrong number of arguments: usage RL.RENEW key id ttl",
        ),
        ("RL.RENEW k x 0", "ERR ttl must be"),
    ] {
        let e = err(&mut c, line);
        assert!(e.starts_with(want), "{line}: {e}");
    }
    let long = "i".repeat(65);
    let e = err(&mut c, &format!("RL.ACQUIRE k 1 1 ID {long}"));
    assert!(e.starts_with("ERR lease id must be 1 to 64 bytes"), "{e}");
    // The maximum is a config.
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("ratelimit.max-leases")
        .arg(2000)
        .query(&mut c)
        .expect("CONFIG SET");
    assert_eq!(acquire(&mut c, "RL.ACQUIRE k 2000 1").allowed, 1);

    // RESP3: a map with the same names plus lease and expires_at_ms.
    let mut r3 = s.conn_resp3();
    let v: Value = common::cmd("RL.ACQUIRE r3 1 10 ID a")
        .query(&mut r3)
        .expect("RESP3");
    let Value::Map(pairs) = v else {
        panic!("not a map: {v:?}")
    };
    let names: Vec<String> = pairs
        .iter()
        .map(|(k, _)| match k {
            Value::SimpleString(s) => s.clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        names,
        [
            "allowed",
            "limit",
            "remaining",
            "retry_after_ms",
            "reset_after_ms",
            "lease",
            "expires_at_ms"
        ]
    );
    assert_eq!(pairs[5].1, Value::BulkString(b"a".to_vec()));

    // INFO counts calls, grants and denials per command.
    let calls = common::info_int(&mut c, "ratelimit", "ratelimit_acquire_calls");
    let allowed = common::info_int(&mut c, "ratelimit", "ratelimit_acquire_allowed");
    let denied = common::info_int(&mut c, "ratelimit", "ratelimit_acquire_denied");
    assert_eq!(calls, allowed + denied);
    assert!(denied >= 2 && allowed >= 6, "{allowed} {denied}");
    assert!(common::info_int(&mut c, "ratelimit", "ratelimit_release_calls") >= 4);
    assert!(common::info_int(&mut c, "ratelimit", "ratelimit_renew_calls") >= 4);
}

/// `MEMORY USAGE` grows with the leases held and their ids.
fn memory_usage_is_truthful(f: Flavor) {
    let s = Server::start(f);
    let mut c = s.conn();
    let usage = |c: &mut redis::Connection| -> i64 {
        redis::cmd("MEMORY")
            .arg("USAGE")
            .arg("m")
            .query(c)
            .expect("MEMORY USAGE")
    };
    acquire(&mut c, "RL.ACQUIRE m 1000 600");
    let one = usage(&mut c);
    for _ in 0..99 {
        acquire(&mut c, "RL.ACQUIRE m 1000 600");
    }
    let hundred = usage(&mut c);
    // Each lease is at least its 32-byte entry and its id (16+ digits).
    assert!(hundred - one >= 99 * 48, "{one} -> {hundred}");
    assert!(hundred - one <= 99 * 200, "{one} -> {hundred}");
}

/// A key of another type refuses the lease commands, and a lease key
/// refuses other commands and other algorithms.
fn wrongtype_both_ways(f: Flavor) {
    let s = Server::start(f);
    let mut c = s.conn();
    let _: () = redis::cmd("SET")
        .arg("str")
        .arg("x")
        .query(&mut c)
        .expect("SET");
    for line in ["RL.ACQUIRE str 1 1", "RL.RELEASE str a", "RL.RENEW str a 1"] {
        assert!(err(&mut c, line).starts_with("WRONGTYPE"), "{line}");
    }
    acquire(&mut c, "RL.ACQUIRE lk 1 60");
    let e = err(&mut c, "GET lk");
    assert!(e.starts_with("WRONGTYPE"), "{e}");
    let e = err(&mut c, "RL.TOKENBUCKET lk 1 1 1");
    assert_eq!(
        e,
        "WRONGTYPE key holds RL.ACQUIRE state, not RL.TOKENBUCKET: use that command on it, or DEL the key"
    );
    let e = err(&mut c, "RL.LIMITS lk 1 FIXEDWINDOW 1 1");
    assert!(
        e.starts_with("WRONGTYPE key holds RL.ACQUIRE state, not RL.LIMITS"),
        "{e}"
    );
    let _: Vec<i64> = common::cmd("RL.TOKENBUCKET tb 1 1 1")
        .query(&mut c)
        .expect("tb");
    for line in ["RL.ACQUIRE tb 1 1", "RL.RELEASE tb a", "RL.RENEW tb a 1"] {
        let e = err(&mut c, line);
        assert!(
            e.starts_with("WRONGTYPE key holds RL.TOKENBUCKET state, not RL.ACQUIRE"),
            "{line}: {e}"
        );
    }
}

/// 200 clients acquire, work and release at once: an independent counter
/// of the holders never passes the limit, and every slot comes back.
fn two_hundred_clients_never_exceed_the_limit(f: Flavor) {
    let s = Server::start_with(f, &["--maxclients", "1000"]);
    let limit = 7;
    let holding = Arc::new(AtomicI64::new(0));
    let most = Arc::new(AtomicI64::new(0));
    let granted = Arc::new(AtomicI64::new(0));
    let url = s.url();
    let threads: Vec<_> = (0..200)
        .map(|i| {
            let (holding, most, granted, url) =
                (holding.clone(), most.clone(), granted.clone(), url.clone());
            std::thread::spawn(move || {
                let mut c = redis::Client::open(url)
                    .and_then(|c| c.get_connection())
                    .expect("connect");
                let mut done = 0;
                let deadline = Instant::now() + Duration::from_secs(60);
                while done < 5 && Instant::now() < deadline {
                    let id = format!("c{i}-{done}");
                    let a = acquire(&mut c, &format!("RL.ACQUIRE pool {limit} 30 ID {id}"));
                    if a.allowed == 0 {
                        std::thread::sleep(Duration::from_millis(1));
                        continue;
                    }
                    let now = holding.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(2));
                    holding.fetch_sub(1, Ordering::SeqCst);
                    assert_eq!(int_reply(&mut c, &format!("RL.RELEASE pool {id}")), 1);
                    granted.fetch_add(1, Ordering::SeqCst);
                    done += 1;
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("client thread");
    }
    let most = most.load(Ordering::SeqCst);
    assert!(most <= limit, "{most} holders at once, limit {limit}");
    assert!(most >= 2, "no concurrency reached ({most})");
    assert_eq!(
        granted.load(Ordering::SeqCst),
        1000,
        "not every client finished"
    );
    let mut c = s.conn();
    let a = acquire(&mut c, &format!("RL.ACQUIRE pool {limit} 30"));
    assert_eq!(a.remaining, limit - 1, "a slot did not come back: {a:?}");
}

/// Probes `RL.ACQUIRE key 1 …` between two `TIME`s (one pipeline, run in
/// order; not a transaction: Valkey answers `TIME` inside `MULTI` with the
/// transaction's start) until granted: every denial is before
/// `expires_at_ms` and the grant at or after it, to the millisecond.
fn slot_returns_exactly_at(c: &mut redis::Connection, key: &str, expires_at_ms: i64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (t1, v, t2): ((i64, i64), Vec<Value>, (i64, i64)) = redis::pipe()
            .cmd("TIME")
            .add_command(common::cmd(&format!("RL.ACQUIRE {key} 1 60")))
            .cmd("TIME")
            .query(c)
            .expect("probe");
        let (t1, t2) = (t1.0 * 1000 + t1.1 / 1000, t2.0 * 1000 + t2.1 / 1000);
        let a = parse_acquired(&v);
        if a.allowed == 1 {
            assert!(
                t2 >= expires_at_ms,
                "granted at {t2}, before the expiry {expires_at_ms}"
            );
            return;
        }
        assert!(
            t1 < expires_at_ms + 1,
            "denied at {t1}, after the expiry {expires_at_ms}"
        );
        // The wait it reports ends at the expiry.
        assert!(
            (t1..=t2 + 1).contains(&(expires_at_ms - a.retry_after_ms)),
            "retry {} from [{t1}, {t2}] misses {expires_at_ms}",
            a.retry_after_ms
        );
        assert!(Instant::now() < deadline, "the slot never came back");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A holder killed mid-work: its slot comes back at its ttl, on the master
/// and, after a failover, on the promoted replica.
fn a_killed_holders_slot_returns_at_its_ttl(f: Flavor) {
    let master = Server::start(f);
    let mut m = master.conn();
    // On the master: the holder's connection is killed.
    let holder = {
        let mut h = master.conn();
        let a = acquire(&mut h, "RL.ACQUIRE job 1 0.4");
        assert_eq!(a.allowed, 1);
        a
    };
    let _: Value = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("normal")
        .arg("SKIPME")
        .arg("yes")
        .query(&mut m)
        .expect("CLIENT KILL");
    slot_returns_exactly_at(&mut m, "job", holder.expires_at_ms);

    // On a replica promoted after the master died.
    let mut master = master;
    let replica = master.replica();
    let a = acquire(&mut m, "RL.ACQUIRE job2 1 1.5");
    common::wait_for_replica(&mut m);
    master.kill();
    let mut r = replica.conn();
    let _: () = redis::cmd("REPLICAOF")
        .arg("NO")
        .arg("ONE")
        .query(&mut r)
        .expect("promote");
    slot_returns_exactly_at(&mut r, "job2", a.expires_at_ms);
}

/// 20,000 random acquire/renew/release calls with random ttls: the replica
/// holds the master's bytes and expiries, and so does the master restarted
/// from its AOF (rewritten half way).
fn replica_and_aof_are_byte_identical_after_random_calls(f: Flavor) {
    let mut master = Server::start_with(f, &["--appendonly", "yes", "--appendfsync", "always"]);
    let replica = master.replica();
    let mut m = master.conn();
    let mut r = replica.conn();
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut batch = |m: &mut redis::Connection, n: usize| {
        let mut pipe = redis::pipe();
        for _ in 0..n {
            let key = format!("l:{}", next() % 50);
            let id = format!("j{}", next() % 12);
            // Ttls from 20 ms to 10 minutes: some expire during the run.
            let ttl = match next() % 3 {
                0 => format!("0.{:03}", 20 + next() % 980),
                1 => format!("{}", 1 + next() % 20),
                _ => format!("{}", 60 + next() % 540),
            };
            let line = match next() % 6 {
                0 | 1 => format!("RL.ACQUIRE {key} 6 {ttl} ID {id}"),
                2 => format!("RL.ACQUIRE {key} 6 {ttl} COST {}", 1 + next() % 3),
                3 => format!("RL.RENEW {key} {id} {ttl}"),
                _ => format!("RL.RELEASE {key} {id}"),
            };
            pipe.add_command(common::cmd(&line));
        }
        // An id held already is an error reply; the server runs the rest,
        // and the comparisons below tell whether anything went missing.
        let _ = pipe.query::<Vec<Value>>(m);
    };
    batch(&mut m, 10_000);
    common::rewrite_aof(&mut m);
    batch(&mut m, 10_000);
    common::wait_for_replica(&mut m);
    let keys: Vec<String> = redis::cmd("KEYS").arg("l:*").query(&mut m).expect("KEYS");
    assert!(keys.len() >= 40, "{} keys", keys.len());
    let before: Vec<(String, (Vec<u8>, i64))> = keys
        .iter()
        .map(|k| (k.clone(), snapshot(&mut m, k)))
        .collect();
    let mut compared = 0;
    for (key, (v, at)) in &before {
        let dump: Option<Vec<u8>> = redis::cmd("DUMP").arg(key).query(&mut r).expect("DUMP");
        if let Some(rv) = dump {
            assert_eq!(&rv, v, "{key}: replica value differs");
            assert_eq!(
                snapshot(&mut r, key).1,
                *at,
                "{key}: replica expiry differs"
            );
            compared += 1;
        }
    }
    assert!(
        compared >= 40,
        "only {compared} keys compared on the replica"
    );
    master.restart();
    let mut m = master.conn();
    let mut compared = 0;
    for (key, (v, at)) in &before {
        let dump: Option<Vec<u8>> = redis::cmd("DUMP").arg(key).query(&mut m).expect("DUMP");
        if let Some(av) = dump {
            assert_eq!(&av, v, "{key}: AOF replay differs");
            assert_eq!(snapshot(&mut m, key).1, *at, "{key}: AOF expiry differs");
            compared += 1;
        }
    }
    assert!(
        compared >= 40,
        "only {compared} keys compared after the AOF replay"
    );
}

/// `MIGRATE` carries the leases (ids, expiries, counter) to another server;
/// `DEBUG RELOAD` and `DUMP`/`RESTORE` keep them.
fn leases_move_with_migrate_and_survive_reload(f: Flavor) {
    let src = Server::start(f);
    let dst = Server::start(f);
    let mut s = src.conn();
    let a = acquire(&mut s, "RL.ACQUIRE mv 3 600 ID x");
    acquire(&mut s, "RL.ACQUIRE mv 3 600 COST 2");
    let (v0, at0) = snapshot(&mut s, "mv");
    let _: Value = redis::cmd("DEBUG")
        .arg("RELOAD")
        .query(&mut s)
        .expect("DEBUG RELOAD");
    assert_eq!(snapshot(&mut s, "mv"), (v0.clone(), at0));
    let _: () = redis::cmd("MIGRATE")
        .arg("127.0.0.1")
        .arg(dst.port)
        .arg("mv")
        .arg(0)
        .arg(5000)
        .query(&mut s)
        .expect("MIGRATE");
    let mut d = dst.conn();
    let (v1, at1) = snapshot(&mut d, "mv");
    assert_eq!(v1, v0);
    assert!((at0..=at0 + 1000).contains(&at1), "{at0} -> {at1}");
    assert_eq!(acquire(&mut d, "RL.ACQUIRE mv 3 600").allowed, 0);
    assert_eq!(int_reply(&mut d, "RL.RELEASE mv x"), 1);
    let b = acquire(&mut d, "RL.ACQUIRE mv 3 600");
    assert_eq!(b.allowed, 1);
    assert_ne!(b.lease, a.lease);
}

/// `CONCURRENCY limit ttl` in `RL.LIMITS`: one all-or-nothing decision with
/// the rate limits; the reply carries the lease id (an 8th element), which
/// `RL.RELEASE` frees. Calls without it keep their seven elements.
fn limits_with_concurrency(f: Flavor) {
    let s = Server::start(f);
    let mut c = s.conn();
    let line = "RL.LIMITS t 1 NAME rate FIXEDWINDOW 3 60 NAME inflight CONCURRENCY 2 30";
    let call =
        |c: &mut redis::Connection| -> Vec<Value> { common::cmd(line).query(c).expect(line) };
    let v = call(&mut c);
    assert_eq!(v.len(), 8, "{v:?}");
    assert_eq!(int(&v[0]), 1);
    let first = text(&v[7]).expect("a lease");
    let v = call(&mut c);
    let second = text(&v[7]).expect("a lease");
    assert_ne!(first, second);
    // Two in flight: denied by CONCURRENCY, and the rate limit keeps its unit.
    let v = call(&mut c);
    assert_eq!((int(&v[0]), int(&v[5]), text(&v[7])), (0, 1, None));
    assert_eq!(int_reply(&mut c, &format!("RL.RELEASE t {first}")), 1);
    assert_eq!(int_reply(&mut c, &format!("RL.RELEASE t {first}")), 0);
    // The rate limit had 1 left: granted, and now the rate limit binds.
    let v = call(&mut c);
    assert_eq!(int(&v[0]), 1);
    let third = text(&v[7]).expect("a lease");
    assert_eq!(int_reply(&mut c, &format!("RL.RENEW t {third} 60")), 1);
    assert_eq!(int_reply(&mut c, &format!("RL.RELEASE t {third}")), 1);
    let v = call(&mut c);
    assert_eq!((int(&v[0]), int(&v[5]), text(&v[7])), (0, 0, None));
    // Without CONCURRENCY: seven elements, as before.
    let v: Vec<Value> = common::cmd("RL.LIMITS u 1 FIXEDWINDOW 3 60")
        .query(&mut c)
        .expect("7");
    assert_eq!(v.len(), 7);
    // RESP3: a `lease` key.
    let mut r3 = s.conn_resp3();
    let v: Value = common::cmd("RL.LIMITS w 1 CONCURRENCY 1 30")
        .query(&mut r3)
        .expect("RESP3");
    let Value::Map(pairs) = v else {
        panic!("not a map: {v:?}")
    };
    assert!(
        matches!(pairs.last(), Some((Value::SimpleString(k), Value::BulkString(_))) if k == "lease")
    );
    // One CONCURRENCY per call; no refunds of slots.
    let e = err(&mut c, "RL.LIMITS x 1 CONCURRENCY 1 30 CONCURRENCY 2 30");
    assert!(e.contains("CONCURRENCY is given twice"), "{e}");
    let e = err(&mut c, "RL.LIMITS x -1 CONCURRENCY 1 30");
    assert!(e.contains("RL.RELEASE"), "{e}");
    let e = err(&mut c, "RL.LIMITS x 1 CONCURRENCY 5000 30");
    assert!(e.contains("ratelimit.max-leases"), "{e}");
    // A lease key is not an RL.LIMITS key, and the other way round for
    // RL.ACQUIRE; RL.RELEASE works on both.
    assert!(err(&mut c, "RL.ACQUIRE t 1 1").starts_with("WRONGTYPE"));
}

on_both_servers!(
    acquire_release_renew_as_the_spec_says,
    memory_usage_is_truthful,
    wrongtype_both_ways,
    two_hundred_clients_never_exceed_the_limit,
    a_killed_holders_slot_returns_at_its_ttl,
    replica_and_aof_are_byte_identical_after_random_calls,
    leases_move_with_migrate_and_survive_reload,
    limits_with_concurrency,
);
