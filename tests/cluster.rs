//! A real 3-master/3-replica Redis Cluster on loopback ports: keys on every
//! master, `redis-cli -c` routing, CROSSSLOT and hash tags, failover with
//! `WAIT`, and resharding with `MIGRATE`.

mod common;

use common::{error_text, module_path, wait_until, Flavor};
use rl_testkit::{node_id, Cluster};
use std::process::Command;
use std::time::{Duration, Instant};

fn keyslot(c: &mut redis::Connection, key: &str) -> i64 {
    redis::cmd("CLUSTER")
        .arg("KEYSLOT")
        .arg(key)
        .query(c)
        .expect("KEYSLOT")
}

fn tb(key: &str, cost: u64) -> redis::Cmd {
    let mut c = redis::cmd("RL.TOKENBUCKET");
    c.arg(key).arg(3).arg("0.0001").arg(cost);
    c
}

/// 10,000 limiter keys spread across all masters get exact decisions.
fn keys_on_every_master_get_exact_decisions(f: Flavor) {
    let cluster = Cluster::start(f, 1, 1500);
    let mut c = cluster.client();
    let keys: Vec<String> = (0..10_000).map(|i| format!("user:{i}")).collect();
    let mut allowed = 0;
    let mut denied = 0;
    for round in 0..4 {
        for chunk in keys.chunks(500) {
            let mut pipe = redis::cluster::cluster_pipe();
            for k in chunk {
                pipe.add_command(tb(k, 1));
            }
            let replies: Vec<Vec<i64>> = pipe.query(&mut c).expect("cluster pipeline");
            for r in replies {
                assert_eq!(r[1], 3);
                if r[0] == 1 {
                    allowed += 1;
                    assert_eq!(r[2], 2 - round);
                } else {
                    denied += 1;
                    assert!(round == 3 && r[3] > 0, "round {round}: {r:?}");
                }
            }
        }
    }
    assert_eq!((allowed, denied), (30_000, 10_000));
    let masters = cluster.masters();
    assert_eq!(masters.len(), 3);
    let mut total = 0;
    for m in masters {
        let n: i64 = redis::cmd("DBSIZE").query(&mut m.conn()).expect("DBSIZE");
        assert!(n > 2_000, "a master holds only {n} keys");
        total += n;
    }
    assert_eq!(total, 10_000);

    // redis-cli -c follows MOVED for RL.* like any keyed command.
    let any = &cluster.nodes[0];
    for key in ["user:1", "user:2", "user:3", "alpha", "omega"] {
        let out = Command::new("redis-cli")
            .args([
                "-c",
                "-p",
                &any.port.to_string(),
                "RL.FIXEDWINDOW",
                &format!("cli:{key}"),
                "5",
                "60",
                "1",
            ])
            .output()
            .expect("redis-cli -c");
        let text = String::from_utf8_lossy(&out.stdout);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(&lines[..3], &["1", "5", "4"], "redis-cli -c {key}: {text}");
    }

    // Hash tags keep a user's limits in one slot; different slots in one
    // transaction are refused with CROSSSLOT.
    let mut node = any.conn();
    assert_eq!(
        keyslot(&mut node, "{user:42}:sec"),
        keyslot(&mut node, "{user:42}:day")
    );
    let slot = keyslot(&mut node, "{user:42}:sec");
    let mut owner = cluster.owner(slot).expect("an owner for the slot").conn();
    let both: Vec<Vec<i64>> = redis::pipe()
        .atomic()
        .add_command(tb("{user:42}:sec", 1))
        .add_command(tb("{user:42}:day", 1))
        .query(&mut owner)
        .expect("same-slot transaction");
    assert_eq!(both.len(), 2);
    let e = redis::cmd("EVAL")
        .arg("redis.call('RL.TOKENBUCKET', KEYS[1], 3, 1, 1); return redis.call('RL.TOKENBUCKET', KEYS[2], 3, 1, 1)")
        .arg(2)
        .arg("{user:42}:sec")
        .arg("{user:7}:sec")
        .query::<redis::Value>(&mut owner)
        .expect_err("keys of two slots");
    let text = error_text(&e);
    assert!(
        text.starts_with("CROSSSLOT") || text.starts_with("MOVED"),
        "{text}"
    );
}

/// Kill a master after `WAIT 1`: its replica takes over and the limiter
/// continues where it was.
fn failover_keeps_limits(f: Flavor) {
    let mut cluster = Cluster::start(f, 1, 1500);
    let key = "{tenant:9}:api";
    let slot = keyslot(&mut cluster.nodes[0].conn(), key);
    let owner_port = cluster.owner(slot).expect("an owner for the slot").port;
    let before = {
        let mut m = cluster
            .nodes
            .iter()
            .find(|n| n.port == owner_port)
            .expect("owner")
            .conn();
        for _ in 0..3 {
            let _: Vec<i64> = tb(key, 1).query(&mut m).expect("take");
        }
        let denied: Vec<i64> = tb(key, 1).query(&mut m).expect("denied");
        assert_eq!(denied[0], 0);
        let _: Vec<i64> = redis::cmd("RL.SLIDING")
            .arg("{tenant:9}:win")
            .arg(5)
            .arg(600)
            .arg(2)
            .query(&mut m)
            .expect("sliding");
        let lease: Vec<redis::Value> = redis::cmd("RL.ACQUIRE")
            .arg("{tenant:9}:jobs")
            .arg(1)
            .arg(600)
            .arg("ID")
            .arg("job-1")
            .query(&mut m)
            .expect("acquire");
        assert_eq!(lease[0], redis::Value::Int(1));
        let acked: i64 = redis::cmd("WAIT")
            .arg(1)
            .arg(5000)
            .query(&mut m)
            .expect("WAIT");
        assert!(acked >= 1, "no replica acknowledged");
        common::snapshot(&mut m, key)
    };
    let killed_at = Instant::now();
    cluster
        .nodes
        .iter_mut()
        .find(|n| n.port == owner_port)
        .expect("owner")
        .kill();
    wait_until(
        "a replica to take over the slot",
        Duration::from_secs(60),
        || {
            cluster.masters().len() == 3
                && cluster.owner(slot).is_some_and(|m| m.port != owner_port)
        },
    );
    let new_owner = cluster.owner(slot).expect("an owner for the slot");
    let mut m = new_owner.conn();
    let recovered = killed_at.elapsed();
    eprintln!("failover: slot {slot} served again after {recovered:?}");
    assert_eq!(
        common::snapshot(&mut m, key).0,
        before.0,
        "state lost in failover"
    );
    let r: Vec<i64> = tb(key, 1).query(&mut m).expect("after failover");
    assert_eq!(
        (r[0], r[2]),
        (0, 0),
        "a denied user got a fresh bucket: {r:?}"
    );
    let s: Vec<i64> = redis::cmd("RL.SLIDING")
        .arg("{tenant:9}:win")
        .arg(5)
        .arg(600)
        .arg(0)
        .query(&mut m)
        .expect("sliding");
    assert_eq!(s[2], 3, "sliding window count lost: {s:?}");
    // The lease survived the failover: the slot is still taken, and the
    // holder can release it on the new master.
    let again: Vec<redis::Value> = redis::cmd("RL.ACQUIRE")
        .arg("{tenant:9}:jobs")
        .arg(1)
        .arg(600)
        .query(&mut m)
        .expect("acquire after failover");
    assert_eq!(
        again[0],
        redis::Value::Int(0),
        "a held lease was lost: {again:?}"
    );
    let released: i64 = redis::cmd("RL.RELEASE")
        .arg("{tenant:9}:jobs")
        .arg("job-1")
        .query(&mut m)
        .expect("release after failover");
    assert_eq!(released, 1);
}

/// Moving a slot with MIGRATE carries state and TTL intact.
fn resharding_moves_state_intact(f: Flavor) {
    let cluster = Cluster::start(f, 1, 1500);
    let keys = [
        "{shop:1}:tb",
        "{shop:1}:fw",
        "{shop:1}:se",
        "{shop:1}:sa",
        "{shop:1}:li",
        "{shop:1}:le",
    ];
    let slot = keyslot(&mut cluster.nodes[0].conn(), keys[0]);
    let src = cluster.owner(slot).expect("an owner for the slot");
    let dst = cluster
        .masters()
        .into_iter()
        .find(|m| m.port != src.port)
        .expect("another master");
    let mut s = src.conn();
    let _: Vec<i64> = tb(keys[0], 2).query(&mut s).expect("tb");
    let _: Vec<i64> = redis::cmd("RL.FIXEDWINDOW")
        .arg(keys[1])
        .arg(5)
        .arg(3600)
        .arg(2)
        .query(&mut s)
        .expect("fw");
    let _: Vec<i64> = redis::cmd("RL.SLIDING")
        .arg(keys[2])
        .arg(5)
        .arg(600)
        .arg(2)
        .query(&mut s)
        .expect("se");
    let _: Vec<i64> = redis::cmd("RL.SLIDING")
        .arg(keys[3])
        .arg(5)
        .arg(600)
        .arg(2)
        .arg("APPROX")
        .query(&mut s)
        .expect("sa");
    let _: redis::Value = redis::cmd("RL.LIMITS")
        .arg(keys[4])
        .arg(2)
        .arg("NAME")
        .arg("burst")
        .arg(&["TOKENBUCKET", "5", "0.01", "SLIDING", "9", "600"][..])
        .query(&mut s)
        .expect("li");
    let _: redis::Value = redis::cmd("RL.ACQUIRE")
        .arg(keys[5])
        .arg(1)
        .arg(600)
        .arg("ID")
        .arg("job-1")
        .query(&mut s)
        .expect("le");
    let before: Vec<_> = keys.iter().map(|k| common::snapshot(&mut s, k)).collect();

    let (src_id, dst_id) = (node_id(src.port), node_id(dst.port));
    let mut d = dst.conn();
    let _: () = redis::cmd("CLUSTER")
        .arg("SETSLOT")
        .arg(slot)
        .arg("IMPORTING")
        .arg(&src_id)
        .query(&mut d)
        .expect("IMPORTING");
    let _: () = redis::cmd("CLUSTER")
        .arg("SETSLOT")
        .arg(slot)
        .arg("MIGRATING")
        .arg(&dst_id)
        .query(&mut s)
        .expect("MIGRATING");
    let in_slot: Vec<String> = redis::cmd("CLUSTER")
        .arg("GETKEYSINSLOT")
        .arg(slot)
        .arg(100)
        .query(&mut s)
        .expect("GETKEYSINSLOT");
    assert_eq!(in_slot.len(), keys.len());
    let migrate_started = Instant::now();
    let _: () = redis::cmd("MIGRATE")
        .arg("127.0.0.1")
        .arg(dst.port)
        .arg("")
        .arg(0)
        .arg(5000)
        .arg("KEYS")
        .arg(&in_slot)
        .query(&mut s)
        .expect("MIGRATE");
    // Upper bound of the clock time between the source reading its clock and
    // the target reading its own (plus a millisecond of rounding).
    let migrate_ms = migrate_started.elapsed().as_millis() as i64 + 1;
    for m in cluster.masters() {
        let _: () = redis::cmd("CLUSTER")
            .arg("SETSLOT")
            .arg(slot)
            .arg("NODE")
            .arg(&dst_id)
            .query(&mut m.conn())
            .expect("SETSLOT NODE");
    }
    let after: Vec<_> = keys.iter().map(|k| common::snapshot(&mut d, k)).collect();
    for ((key, (v0, at0)), (v1, at1)) in keys.iter().zip(&before).zip(&after) {
        assert_eq!(v1, v0, "{key}: state changed in the move");
        // MIGRATE sends the TTL relative (RESTORE key ttl ...), so the target's
        // absolute expiry lands later by the time the move took, never more.
        assert!(
            (0..=migrate_ms).contains(&(at1 - at0)),
            "{key}: expiry {at0} became {at1} (MIGRATE took < {migrate_ms} ms)"
        );
    }
    // The cluster client follows the move and the limits continue.
    let mut c = cluster.client();
    let r: Vec<i64> = tb(keys[0], 0).query(&mut c).expect("after move");
    assert_eq!(r[2], 1);
    // The lease moved with its key: still held, and releasable there.
    let released: i64 = redis::cmd("RL.RELEASE")
        .arg(keys[5])
        .arg("job-1")
        .query(&mut c)
        .expect("release after move");
    assert_eq!(released, 1);
}

on_both_servers!(
    keys_on_every_master_get_exact_decisions,
    failover_keeps_limits,
    resharding_moves_state_intact
);

#[test]
fn module_is_built() {
    assert!(module_path().exists());
}
