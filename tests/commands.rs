//! The commands as docs/commands.md describes them, on a real server, for every
//! algorithm, on Redis 7.0 and Valkey.

mod common;

use common::{call, err, ok, readme_first_call, Flavor, Server};
use std::collections::HashMap;

/// One algorithm, called with a given limit and cost. Windows and rates are
/// chosen so nothing refills during a test.
struct Algo {
    name: &'static str,
    line: fn(key: &str, limit: u64, cost: u64) -> String,
}

const ALGOS: [Algo; 4] = [
    Algo {
        name: "tokenbucket",
        line: |k, n, c| format!("RL.TOKENBUCKET {k} {n} 0.000001 {c}"),
    },
    Algo {
        name: "fixedwindow",
        line: |k, n, c| format!("RL.FIXEDWINDOW {k} {n} 1000000 {c}"),
    },
    Algo {
        name: "sliding-exact",
        line: |k, n, c| format!("RL.SLIDING {k} {n} 1000000 {c}"),
    },
    Algo {
        name: "sliding-approx",
        line: |k, n, c| format!("RL.SLIDING {k} {n} 1000000 {c} APPROX"),
    },
];

fn readme_example(f: Flavor) {
    let s = Server::start(f);
    let mut c = s.conn();
    readme_first_call(&mut c);
    let t: String = redis::cmd("TYPE")
        .arg("user:1")
        .query(&mut c)
        .expect("TYPE");
    assert_eq!(t, "ratelimit");
}

fn each_algorithm_grants_exactly_its_limit(f: Flavor) {
    let s = Server::start(f);
    let mut c = s.conn();
    for a in &ALGOS {
        let key = format!("k:{}", a.name);
        for left in (0..5).rev() {
            let r = ok(&mut c, &(a.line)(&key, 5, 1));
            assert_eq!(
                (r.allowed, r.limit, r.remaining, r.retry_after_ms),
                (1, 5, left, 0),
                "{}",
                a.name
            );
            assert!(r.reset_after_ms > 0, "{}", a.name);
        }
        let r = ok(&mut c, &(a.line)(&key, 5, 1));
        assert_eq!((r.allowed, r.remaining), (0, 0), "{}", a.name);
        assert!(r.retry_after_ms > 0, "{}: {r:?}", a.name);
        // The key's TTL is its reset time.
        let pttl: i64 = redis::cmd("PTTL").arg(&key).query(&mut c).expect("PTTL");
        assert!(
            pttl > 0 && pttl <= r.reset_after_ms && r.reset_after_ms - pttl < 1_000,
            "{}: pttl {pttl} vs {r:?}",
            a.name
        );
        // A cost above the limit can never be granted.
        let r = ok(&mut c, &(a.line)(&format!("{key}:big"), 5, 6));
        assert_eq!(
            (r.allowed, r.retry_after_ms, r.remaining),
            (0, -1, 5),
            "{}",
            a.name
        );
    }
}

fn cost_zero_inspects_without_writing(f: Flavor) {
    let s = Server::start(f);
    let mut c = s.conn();
    for a in &ALGOS {
        let fresh = format!("fresh:{}", a.name);
        let r = ok(&mut c, &(a.line)(&fresh, 3, 0));
        assert_eq!(
            (r.allowed, r.remaining, r.reset_after_ms),
            (1, 3, 0),
            "{}",
            a.name
        );
        let exists: i64 = redis::cmd("EXISTS")
            .arg(&fresh)
            .query(&mut c)
            .expect("EXISTS");
        assert_eq!(exists, 0, "{}: cost 0 created a key", a.name);

        let key = format!("used:{}", a.name);
        ok(&mut c, &(a.line)(&key, 3, 2));
        let before = common::snapshot(&mut c, &key);
        let dirty = changes(&mut c);
        let r = ok(&mut c, &(a.line)(&key, 3, 0));
        assert_eq!((r.allowed, r.remaining), (1, 1), "{}", a.name);
        let r = ok(&mut c, &(a.line)(&key, 3, 2));
        assert_eq!(r.allowed, 0, "{}", a.name);
        assert_eq!(
            changes(&mut c),
            dirty,
            "{}: inspect or denial dirtied the dataset",
            a.name
        );
        assert_eq!(common::snapshot(&mut c, &key), before, "{}", a.name);
    }
}

fn changes(c: &mut redis::Connection) -> String {
    let info: String = redis::cmd("INFO")
        .arg("persistence")
        .query(c)
        .expect("INFO");
    info.lines()
        .find(|l| l.starts_with("rdb_changes_since_last_save:"))
        .expect("rdb_changes_since_last_save")
        .to_string()
}

/// Every bad input gets a clear error, and loses nothing.
fn bad_input_gets_a_clear_error(f: Flavor) {
    let s = Server::start(f);
    let mut c = s.conn();
    ok(&mut c, "RL.TOKENBUCKET tb 10 1 3");
    let before = common::snapshot(&mut c, "tb");
    let big = "1".repeat(1 << 20);
    let table: Vec<(String, &str)> = vec![
        ("RL.TOKENBUCKET".into(), "ERR wrong number of arguments"),
        ("RL.TOKENBUCKET tb".into(), "ERR wrong number of arguments"),
        ("RL.TOKENBUCKET tb 10 1".into(), "ERR wrong number of arguments: usage RL.TOKENBUCKET key capacity rate cost"),
        ("RL.TOKENBUCKET tb 10 1 1 1".into(), "ERR wrong number of arguments"),
        ("RL.TOKENBUCKET tb abc 1 1".into(), "ERR capacity must be an integer from 1 to 9223372036854775807, got 'abc'"),
        ("RL.TOKENBUCKET tb 0 1 1".into(), "ERR capacity must be an integer from 1"),
        ("RL.TOKENBUCKET tb -5 1 1".into(), "ERR capacity must be"),
        ("RL.TOKENBUCKET tb 1.5 1 1".into(), "ERR capacity must be"),
        ("RL.TOKENBUCKET tb 18446744073709551616 1 1".into(), "ERR capacity must be"),
        ("RL.TOKENBUCKET tb 9223372036854775808 1 1".into(), "ERR capacity must be"),
        ("RL.TOKENBUCKET tb 10 0 1".into(), "ERR rate must be greater than 0"),
        ("RL.TOKENBUCKET tb 10 nan 1".into(), "ERR rate must be a positive decimal"),
        ("RL.TOKENBUCKET tb 10 NaN 1".into(), "ERR rate must be a positive decimal"),
        ("RL.TOKENBUCKET tb 10 inf 1".into(), "ERR rate must be a positive decimal"),
        ("RL.TOKENBUCKET tb 10 -inf 1".into(), "ERR rate must be a positive decimal"),
        ("RL.TOKENBUCKET tb 10 1e309 1".into(), "ERR rate must be a positive decimal"),
        ("RL.TOKENBUCKET tb 10 -0 1".into(), "ERR rate must be a positive decimal"),
        ("RL.TOKENBUCKET tb 10 0.0000000001 1".into(), "ERR rate has more than 9 decimal places"),
        ("RL.TOKENBUCKET tb 10 99999999999 1".into(), "ERR rate is too large"),
        ("RL.TOKENBUCKET tb 10 1 --1".into(), "ERR cost must be an integer from -9223372036854775807 to 9223372036854775807 (negative: a refund)"),
        ("RL.TOKENBUCKET tb 10 1 -9223372036854775808".into(), "ERR cost must be an integer from -9223372036854775807"),
        ("RL.TOKENBUCKET tb 10 1 -0.5".into(), "ERR cost must be"),
        ("RL.TOKENBUCKET tb 10 1 0.5".into(), "ERR cost must be"),
        (format!("RL.TOKENBUCKET tb 10 1 {big}"), "ERR cost must be an integer from -9223372036854775807 to 9223372036854775807 (negative: a refund), got '11111111111111111111111111111111...'"),
        ("RL.FIXEDWINDOW fw 10 0 1".into(), "ERR window must be from 0.001 to 1000000000 seconds"),
        ("RL.FIXEDWINDOW fw 10 0.0001 1".into(), "ERR window must be a whole number of milliseconds"),
        ("RL.FIXEDWINDOW fw 10 1000000001 1".into(), "ERR window must be from 0.001"),
        ("RL.FIXEDWINDOW fw 0 1 1".into(), "ERR limit must be an integer from 1"),
        ("RL.FIXEDWINDOW fw 10 1".into(), "ERR wrong number of arguments: usage RL.FIXEDWINDOW key limit window cost"),
        ("RL.SLIDING sw 10 1 1 FAST".into(), "ERR unknown option 'FAST': expected EXACT or APPROX"),
        ("RL.SLIDING sw 10 1 1 EXACT extra".into(), "ERR wrong number of arguments: usage RL.SLIDING"),
        ("RL.SLIDING sw 10 inf 1".into(), "ERR window must be a positive decimal number of seconds"),
        ("RL.SLIDING sw 100000 3600 1".into(), "ERR RL.SLIDING EXACT with limit 100000 could keep 100000 log entries, above ratelimit.exact-max-log (4096): use APPROX"),
        ("CL.THROTTLE ct 15 30".into(), "ERR wrong number of arguments: usage CL.THROTTLE"),
        ("CL.THROTTLE ct 15 0 60".into(), "ERR count must be an integer from 1"),
        ("CL.THROTTLE ct 15 30 0".into(), "ERR period must be an integer from 1"),
        ("CL.THROTTLE ct 9223372036854775807 1 1".into(), "ERR max_burst must be"),
        ("RL.SETSTATE tb x".into(), "ERR RL.SETSTATE is internal"),
    ];
    for (line, want) in &table {
        let got = err(&mut c, line);
        assert!(
            got.starts_with(want),
            "{}: got {got:?}, want {want:?}",
            &line[..line.len().min(60)]
        );
        assert!(got.len() < 300, "error too long: {} bytes", got.len());
    }
    // An empty-string argument.
    let e = redis::cmd("RL.TOKENBUCKET")
        .arg("tb")
        .arg("")
        .arg("1")
        .arg("1")
        .query::<redis::Value>(&mut c)
        .expect_err("empty");
    assert!(common::error_text(&e).starts_with("ERR capacity must be"));
    // Nothing was lost or changed, and the server is alive.
    assert_eq!(common::snapshot(&mut c, "tb"), before);
    for k in ["fw", "sw", "ct"] {
        let n: i64 = redis::cmd("EXISTS").arg(k).query(&mut c).expect("EXISTS");
        assert_eq!(n, 0, "{k} created by a failed call");
    }
}

fn wrong_types_are_refused_not_crashed(f: Flavor) {
    let s = Server::start(f);
    let mut c = s.conn();
    let _: () = redis::cmd("SET")
        .arg("str")
        .arg("keep")
        .query(&mut c)
        .expect("SET");
    let _: () = redis::cmd("LPUSH")
        .arg("list")
        .arg("x")
        .query(&mut c)
        .expect("LPUSH");
    for a in &ALGOS {
        for key in ["str", "list"] {
            let e = err(&mut c, &(a.line)(key, 5, 1));
            assert!(
                e.starts_with("WRONGTYPE Operation against a key holding the wrong kind of value"),
                "{}: {e}",
                a.name
            );
        }
    }
    let e = err(&mut c, "CL.THROTTLE str 1 1 1");
    assert!(e.starts_with("WRONGTYPE"), "{e}");
    let v: String = redis::cmd("GET").arg("str").query(&mut c).expect("GET");
    assert_eq!(v, "keep");
    // Another algorithm's state.
    ok(&mut c, "RL.TOKENBUCKET tb 5 1 1");
    assert_eq!(
        err(&mut c, "RL.FIXEDWINDOW tb 5 1 1"),
        "WRONGTYPE key holds RL.TOKENBUCKET state, not RL.FIXEDWINDOW: use that command on it, or DEL the key"
    );
    ok(&mut c, "RL.SLIDING sw 5 1 1");
    assert!(err(&mut c, "RL.SLIDING sw 5 1 1 APPROX")
        .starts_with("WRONGTYPE key holds RL.SLIDING EXACT state, not RL.SLIDING APPROX"));
    // CL.THROTTLE shares the token bucket's state.
    let v: Vec<i64> = redis::cmd("CL.THROTTLE")
        .arg("tb")
        .arg(4)
        .arg(1)
        .arg(1)
        .query(&mut c)
        .expect("CL.THROTTLE");
    assert_eq!(v[0], 0);
}

/// 200 clients hammering one key get exactly the allowed number.
fn concurrent_clients_get_exactly_the_limit(f: Flavor) {
    let s = Server::start(f);
    for a in &ALGOS {
        let key = format!("hot:{}", a.name);
        let line = (a.line)(&key, 100, 1);
        let handles: Vec<_> = (0..200)
            .map(|_| {
                let mut c = s.conn();
                let line = line.clone();
                std::thread::spawn(move || {
                    (0..5).filter(|_| ok(&mut c, &line).allowed == 1).count()
                })
            })
            .collect();
        let granted: usize = handles
            .into_iter()
            .map(|h| h.join().expect("client thread"))
            .sum();
        assert_eq!(granted, 100, "{}", a.name);
    }
}

fn resp3_replies_are_maps(f: Flavor) {
    let s = Server::start(f);
    let mut c = s.conn_resp3();
    let v: redis::Value = redis::cmd("RL.TOKENBUCKET")
        .arg("k")
        .arg(10)
        .arg(1)
        .arg(1)
        .query(&mut c)
        .expect("call");
    let redis::Value::Map(pairs) = v else {
        panic!("RESP3 reply is not a map: {v:?}")
    };
    let m: HashMap<String, i64> = pairs
        .into_iter()
        .map(|(k, v)| {
            (
                redis::from_redis_value(k).expect("name"),
                redis::from_redis_value(v).expect("integer"),
            )
        })
        .collect();
    let want: HashMap<String, i64> = [
        ("allowed", 1),
        ("limit", 10),
        ("remaining", 9),
        ("retry_after_ms", 0),
        ("reset_after_ms", 1000),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(m, want);
}

fn info_counts_calls_allowed_and_denied(f: Flavor) {
    let s = Server::start(f);
    let mut c = s.conn();
    ok(&mut c, "RL.TOKENBUCKET k 1 0.001 1");
    ok(&mut c, "RL.TOKENBUCKET k 1 0.001 1");
    ok(&mut c, "RL.SLIDING s 1 10 1 APPROX");
    let _ = err(&mut c, "RL.TOKENBUCKET k x 1 1");
    let info: String = redis::cmd("INFO")
        .arg("ratelimit")
        .query(&mut c)
        .expect("INFO");
    for field in [
        "ratelimit_tokenbucket_calls:2",
        "ratelimit_tokenbucket_allowed:1",
        "ratelimit_tokenbucket_denied:1",
        "ratelimit_sliding_calls:1",
        "ratelimit_fixedwindow_calls:0",
    ] {
        assert!(info.contains(field), "missing {field} in {info}");
    }
}

fn throttle_speaks_redis_cell(f: Flavor) {
    let s = Server::start(f);
    let mut c = s.conn();
    let t = |c: &mut redis::Connection, q: u64| -> Vec<i64> {
        redis::cmd("CL.THROTTLE")
            .arg("user123")
            .arg(15)
            .arg(30)
            .arg(60)
            .arg(q)
            .query(c)
            .expect("CL.THROTTLE")
    };
    // [limited, limit, remaining, retry_after_s, reset_after_s]
    assert_eq!(t(&mut c, 1), vec![0, 16, 15, -1, 2]);
    let v = t(&mut c, 15);
    assert_eq!(&v[..4], &[0, 16, 0, -1]);
    assert_eq!(v[4], 32);
    let v = t(&mut c, 1);
    assert_eq!(&v[..4], &[1, 16, 0, 2]);
    assert_eq!(t(&mut c, 17)[3], -1);
}

fn exact_log_size_is_configurable(f: Flavor) {
    let s = Server::start(f);
    let mut c = s.conn();
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("ratelimit.exact-max-log")
        .arg(10)
        .query(&mut c)
        .expect("CONFIG SET");
    let e = err(&mut c, "RL.SLIDING k 11 60 1");
    assert!(
        e.contains("ratelimit.exact-max-log (10): use APPROX"),
        "{e}"
    );
    assert_eq!(ok(&mut c, "RL.SLIDING k 10 60 1").allowed, 1);
    assert_eq!(ok(&mut c, "RL.SLIDING a 11 60 1 APPROX").allowed, 1);
    // A window shorter than the limit bounds the log too: 5 ms, 5 entries.
    assert_eq!(ok(&mut c, "RL.SLIDING w 1000 0.005 1").allowed, 1);
}

fn changing_parameters_takes_effect(f: Flavor) {
    let s = Server::start(f);
    let mut c = s.conn();
    ok(&mut c, "RL.TOKENBUCKET k 10 0.001 4");
    // A lower capacity drops the tokens above it.
    let r = ok(&mut c, "RL.TOKENBUCKET k 3 0.001 0");
    assert_eq!((r.limit, r.remaining), (3, 3));
    // A higher one keeps what is there and refills toward it.
    let r = ok(&mut c, "RL.TOKENBUCKET k 100 0.001 0");
    assert_eq!((r.limit, r.remaining), (100, 6));
    ok(&mut c, "RL.FIXEDWINDOW f 10 1000000 4");
    let r = ok(&mut c, "RL.FIXEDWINDOW f 5 1000000 1");
    assert_eq!((r.allowed, r.remaining), (1, 0));
    let r = ok(&mut c, "RL.FIXEDWINDOW f 20 1000000 0");
    assert_eq!(r.remaining, 15);
}

fn small_windows_refill_for_real(f: Flavor) {
    let s = Server::start(f);
    let mut c = s.conn();
    for line in [
        "RL.TOKENBUCKET k 2 20 2",
        "RL.FIXEDWINDOW f 2 0.1 2",
        "RL.SLIDING s 2 0.1 2",
        "RL.SLIDING a 2 0.1 2 APPROX",
    ] {
        // A window may roll between two calls; the next call is then denied.
        let r = (0..10)
            .map(|_| ok(&mut c, line))
            .find(|r| r.allowed == 0)
            .unwrap_or_else(|| panic!("{line} never denied"));
        std::thread::sleep(std::time::Duration::from_millis(r.retry_after_ms as u64));
        // Waiting exactly retry_after_ms must be enough.
        let again = call(&mut c, line).expect("call");
        assert_eq!(
            again.allowed, 1,
            "{line} after {}ms: {again:?}",
            r.retry_after_ms
        );
    }
    // Idle keys vanish once full again.
    std::thread::sleep(std::time::Duration::from_millis(250));
    for k in ["k", "f", "s", "a"] {
        let n: i64 = redis::cmd("EXISTS").arg(k).query(&mut c).expect("EXISTS");
        assert_eq!(n, 0, "{k} outlived its reset time");
    }
}

/// ACL users can be kept away from the limiter commands: by name on every
/// server, and through `-@write` where module commands carry ACL categories
/// (Redis 7.2+ and Valkey; Redis 7.0 gives module commands no category from
/// their `write` flag, so there `-@write` does not cover them). A user allowed
/// everything can call them all.
fn acl_can_deny_every_command(f: Flavor) {
    let s = Server::start(f);
    let mut admin = s.conn();
    for rule in [
        "ACL SETUSER named on >named-pass ~* +@all -rl.tokenbucket -rl.fixedwindow -rl.sliding -cl.throttle",
        "ACL SETUSER reader on >reader-pass ~* +@all -@write",
        "ACL SETUSER writer on >writer-pass ~* +@all",
    ] {
        let _: () = common::cmd(rule)
            .query(&mut admin)
            .unwrap_or_else(|e| panic!("{rule}: {e}"));
    }
    let login = |user: &str| {
        let url = format!("redis://{user}:{user}-pass@127.0.0.1:{}/", s.port);
        redis::Client::open(url)
            .and_then(|c| c.get_connection())
            .expect("login")
    };
    let lines = [
        "RL.TOKENBUCKET acl:tb 10 1 1",
        "RL.FIXEDWINDOW acl:fw 10 60 1",
        "RL.SLIDING acl:se 10 60 1",
        "RL.SLIDING acl:sa 10 60 1 APPROX",
        "CL.THROTTLE acl:cl 10 1 1",
    ];
    let mut denied = vec![login("named")];
    if f != Flavor::Redis {
        denied.push(login("reader"));
    }
    for c in &mut denied {
        for line in lines {
            let e = err(c, line);
            assert!(e.starts_with("NOPERM"), "{line}: {e}");
        }
    }
    let mut writer = login("writer");
    for line in lines {
        let v: Vec<i64> = common::cmd(line)
            .query(&mut writer)
            .unwrap_or_else(|e| panic!("{line} as writer: {e}"));
        assert_eq!(v.len(), 5, "{line}: {v:?}");
    }
}

on_both_servers!(
    readme_example,
    acl_can_deny_every_command,
    each_algorithm_grants_exactly_its_limit,
    cost_zero_inspects_without_writing,
    bad_input_gets_a_clear_error,
    wrong_types_are_refused_not_crashed,
    concurrent_clients_get_exactly_the_limit,
    resp3_replies_are_maps,
    info_counts_calls_allowed_and_denied,
    throttle_speaks_redis_cell,
    exact_log_size_is_configurable,
    changing_parameters_takes_effect,
    small_windows_refill_for_real,
);
