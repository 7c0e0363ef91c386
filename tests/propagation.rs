//! A master with no AOF, no replica and no backlog skips building the
//! replication command (the server would drop it); everything that could
//! ever need a result turns replication on first, so a replica attaching
//! later (full and partial resynchronisation), an AOF enabled at run time
//! and a `BGREWRITEAOF` file all end up with exactly the master's state.

mod common;

use common::{ok, snapshot, wait_until, Flavor, Server};
use std::time::Duration;

/// Calls on every algorithm, over a few keys.
const WORKLOAD: &[&str] = &[
    "RL.TOKENBUCKET tb 10 0.5 3",
    "RL.TOKENBUCKET tb 10 0.5 2",
    "RL.TOKENBUCKET tb2 5000 1 7",
    "RL.FIXEDWINDOW fw 5 3600 2",
    "RL.FIXEDWINDOW fw 5 3600 1",
    "RL.SLIDING se 6 600 1",
    "RL.SLIDING se 6 600 2",
    "RL.SLIDING sa 6 600 4 APPROX",
    "CL.THROTTLE ct 5 10 60 2",
    "RL.TOKENBUCKET tb 10 0.5 -1",
    "RL.LIMITS li 1 NAME burst TOKENBUCKET 5 0.5 NAME day FIXEDWINDOW 100 86400 SLIDING 9 600",
];
const KEYS: [&str; 8] = ["tb", "tb2", "fw", "se", "sa", "ct", "li", "gone"];

fn run_workload(c: &mut redis::Connection) {
    common::run_lines(c, WORKLOAD);
}

fn snapshots(c: &mut redis::Connection) -> Vec<(Vec<u8>, i64)> {
    KEYS.iter()
        .map(|k| {
            let exists: i64 = redis::cmd("EXISTS").arg(k).query(c).expect("EXISTS");
            if exists == 0 {
                (Vec::new(), -2)
            } else {
                snapshot(c, k)
            }
        })
        .collect()
}

fn replicated(c: &mut redis::Connection) -> i64 {
    common::info_int(c, "ratelimit", "ratelimit_results_replicated")
}

/// Skipped writes still count for the `save` rules: one change per write,
/// none for a denial.
fn skipped_writes_still_count_as_changes(f: Flavor) {
    let server = Server::start(f);
    let mut c = server.conn();
    assert_eq!(
        replicated(&mut c),
        0,
        "an isolated master skips replication"
    );
    let before = common::info_int(&mut c, "persistence", "rdb_changes_since_last_save");
    for _ in 0..3 {
        assert_eq!(ok(&mut c, "RL.TOKENBUCKET d 10 1 1").allowed, 1);
    }
    assert_eq!(ok(&mut c, "RL.TOKENBUCKET d 10 1 100").allowed, 0);
    let after = common::info_int(&mut c, "persistence", "rdb_changes_since_last_save");
    assert_eq!(after - before, 3);
}

/// Writes made while skipping reach a replica through its full sync; once
/// a replica has been seen, every result is replicated, and a partial
/// resynchronisation after a dropped link carries the rest.
fn a_replica_attaching_later_ends_identical(f: Flavor) {
    let master = Server::start(f);
    let mut m = master.conn();
    assert_eq!(replicated(&mut m), 0);
    run_workload(&mut m);
    ok(&mut m, "RL.FIXEDWINDOW gone 5 1 1");
    let replica = master.replica();
    let mut r = replica.conn();
    assert_eq!(replicated(&mut m), 1, "a replica turns replication on");
    run_workload(&mut m);
    common::wait_for_replica(&mut m);
    assert_eq!(snapshots(&mut m), snapshots(&mut r), "after the full sync");

    // Drop the link; the replica comes back with PSYNC and gets the rest
    // from the backlog.
    let full = common::info_int(&mut m, "stats", "sync_full");
    let partial = common::info_int(&mut m, "stats", "sync_partial_ok");
    let _: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("replica")
        .query(&mut m)
        .expect("CLIENT KILL");
    run_workload(&mut m);
    wait_until("partial resync", Duration::from_secs(30), || {
        common::info_int(&mut m, "stats", "sync_partial_ok") > partial
    });
    run_workload(&mut m);
    common::wait_for_replica(&mut m);
    assert_eq!(
        common::info_int(&mut m, "stats", "sync_full"),
        full,
        "no second full sync"
    );
    assert_eq!(
        snapshots(&mut m),
        snapshots(&mut r),
        "after the partial resync"
    );
}

/// `CONFIG SET appendonly yes` forks a rewrite holding every skipped write;
/// every later result is logged: reloading the AOF gives the same states.
fn aof_enabled_at_run_time_keeps_every_result(f: Flavor) {
    let server = Server::start(f);
    let mut c = server.conn();
    assert_eq!(replicated(&mut c), 0);
    run_workload(&mut c);
    let _: String = redis::cmd("CONFIG")
        .arg("SET")
        .arg("appendonly")
        .arg("yes")
        .query(&mut c)
        .expect("CONFIG SET appendonly yes");
    common::wait_for_rewrite(&mut c);
    assert_eq!(replicated(&mut c), 1, "an AOF turns replication on");
    run_workload(&mut c);
    let before = snapshots(&mut c);
    let _: String = redis::cmd("DEBUG")
        .arg("LOADAOF")
        .query(&mut c)
        .expect("DEBUG LOADAOF");
    assert_eq!(snapshots(&mut c), before);
}

/// A `BGREWRITEAOF` on a server without AOF writes every skipped state; a
/// server started from that file holds exactly them.
fn bgrewriteaof_of_skipped_writes_loads_identical(f: Flavor) {
    let mut server = Server::start(f);
    let mut c = server.conn();
    assert_eq!(replicated(&mut c), 0);
    run_workload(&mut c);
    let before = snapshots(&mut c);
    common::rewrite_aof(&mut c);
    assert_eq!(replicated(&mut c), 1, "a fork turns replication on");
    drop(c);
    server.restart_with(&["--appendonly", "yes"]);
    let mut c = server.conn();
    assert_eq!(snapshots(&mut c), before);
}

on_both_servers!(
    skipped_writes_still_count_as_changes,
    a_replica_attaching_later_ends_identical,
    aof_enabled_at_run_time_keeps_every_result,
    bgrewriteaof_of_skipped_writes_loads_identical,
);
