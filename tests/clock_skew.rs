//! A failover onto a replica whose clock is skewed ±2 s from the old
//! master's (Valkey 9.1, the replica under `faketime`; Redis 7.0's jemalloc
//! deadlocks under faketime).
//!
//! A caller spends a whole limit on the master; the grant reaches the replica
//! (`WAIT`), which is then promoted. The caller keeps asking the new master
//! (one unit every 25 ms). Its clock disagrees with the times in the state it
//! took over, so the time rule (src/limiter/time_rule.rs) must hold on a real
//! server: no caller is locked out longer than its limiter's full reset after
//! the failover (every `retry_after_ms` fits in it too), and until the state
//! would have been full again on an unskewed clock the new master grants at
//! most one full limit beyond what the algorithm allows there.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{call, free_port, module_path, ok, wait_for_replica, wait_until, Flavor, Server};

/// Each limiter: its command (without cost), its limit, its full reset (ms)
/// and how many units an unskewed clock grants between the exhausting call
/// and that reset.
struct Case {
    name: &'static str,
    command: &'static str,
    limit: i64,
    reset_ms: u64,
    unskewed: i64,
}

const CASES: [Case; 4] = [
    // Refills one unit a second: five within its five-second reset.
    Case {
        name: "tokenbucket",
        command: "RL.TOKENBUCKET skew:tb 5 1",
        limit: 5,
        reset_ms: 5_000,
        unskewed: 5,
    },
    // One window boundary falls within one window.
    Case {
        name: "fixedwindow",
        command: "RL.FIXEDWINDOW skew:fw 5 3",
        limit: 5,
        reset_ms: 3_000,
        unskewed: 5,
    },
    // Nothing until the exhausting call leaves the window.
    Case {
        name: "sliding exact",
        command: "RL.SLIDING skew:sx 5 3",
        limit: 5,
        reset_ms: 3_000,
        unskewed: 0,
    },
    // The weighted previous window frees units gradually over two windows.
    Case {
        name: "sliding approx",
        command: "RL.SLIDING skew:sa 5 3",
        limit: 5,
        reset_ms: 6_000,
        unskewed: 5,
    },
];

/// Slack for a loaded machine between a unit becoming available and the
/// next poll seeing it.
const SLACK: Duration = Duration::from_millis(500);
const POLL: Duration = Duration::from_millis(25);

/// A Valkey replica of `master_port` whose clock runs `skew` (e.g. `+2`,
/// `-2` seconds) from the machine's; killed on drop.
struct SkewedReplica {
    child: Child,
    port: u16,
    dir: std::path::PathBuf,
}

impl SkewedReplica {
    fn start(master_port: u16, skew: &str) -> SkewedReplica {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("rl-skew-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("replica dir");
        let child = Command::new("faketime")
            .args(["-f", skew])
            .arg(Flavor::Valkey.binary())
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--protected-mode", "no"])
            .args(["--replicaof", "127.0.0.1", &master_port.to_string()])
            .arg("--dir")
            .arg(&dir)
            .arg("--loadmodule")
            .arg(module_path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("faketime (is faketime installed?)");
        let r = SkewedReplica { child, port, dir };
        wait_until("skewed replica in sync", Duration::from_secs(20), || {
            r.conn()
                .and_then(|mut c| {
                    redis::cmd("INFO")
                        .arg("replication")
                        .query::<String>(&mut c)
                })
                .is_ok_and(|i| i.contains("master_link_status:up"))
        });
        r
    }

    fn conn(&self) -> redis::RedisResult<redis::Connection> {
        redis::Client::open(format!("redis://127.0.0.1:{}/", self.port))?
            .get_connection_with_timeout(Duration::from_secs(2))
    }

    /// Its clock minus the machine's, in ms.
    fn offset_ms(&self) -> i64 {
        let (s, us): (i64, i64) = redis::cmd("TIME")
            .query(&mut self.conn().expect("replica"))
            .expect("TIME");
        let here = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_millis() as i64;
        s * 1_000 + us / 1_000 - here
    }
}

impl Drop for SkewedReplica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(Path::new(&self.dir));
    }
}

/// What the caller saw on the new master for one limiter.
#[derive(Default)]
struct Seen {
    /// From the promotion to the first grant.
    lockout: Option<Duration>,
    /// Grants from the exhausting call until its unskewed full reset.
    granted: i64,
    longest_retry_ms: i64,
}

impl Seen {
    /// One call of one unit at `at` on the new master.
    fn ask(
        &mut self,
        conn: &mut redis::Connection,
        c: &Case,
        at: Instant,
        promoted_at: Instant,
        count: bool,
    ) {
        let r =
            call(conn, &format!("{} 1", c.command)).unwrap_or_else(|e| panic!("{}: {e}", c.name));
        if r.allowed == 1 {
            self.granted += i64::from(count);
            self.lockout.get_or_insert(at.duration_since(promoted_at));
        } else {
            self.longest_retry_ms = self.longest_retry_ms.max(r.retry_after_ms);
        }
    }
}

fn failover_with_skew(skew: &str) {
    let master = Server::start(Flavor::Valkey);
    let replica = SkewedReplica::start(master.port, skew);
    let offset = replica.offset_ms();
    let mut m = master.conn();
    // The whole limit spent on the master, on the replica before the failover.
    let spent_at = Instant::now();
    for c in &CASES {
        let r = ok(&mut m, &format!("{} {}", c.command, c.limit));
        assert_eq!(r.allowed, 1, "{}: the first call", c.name);
    }
    wait_for_replica(&mut m);
    let mut new = replica.conn().expect("replica");
    let _: () = redis::cmd("REPLICAOF")
        .arg("NO")
        .arg("ONE")
        .query(&mut new)
        .expect("promote");
    let promoted_at = Instant::now();
    drop(master);

    let mut seen: Vec<Seen> = CASES.iter().map(|_| Seen::default()).collect();
    // Until each limiter's unskewed reset every grant counts; after it, only
    // a caller still locked out keeps asking (up to its reset after the
    // failover, plus slack).
    let longest_reset = CASES.iter().map(|c| c.reset_ms).max().unwrap_or(0);
    let end = promoted_at + Duration::from_millis(longest_reset) + SLACK;
    while Instant::now() < end {
        for (c, s) in CASES.iter().zip(seen.iter_mut()) {
            let at = Instant::now();
            let counting = at < spent_at + Duration::from_millis(c.reset_ms);
            let locked_out =
                s.lockout.is_none() && at < promoted_at + Duration::from_millis(c.reset_ms) + SLACK;
            if counting || locked_out {
                s.ask(&mut new, c, at, promoted_at, counting);
            }
        }
        std::thread::sleep(POLL);
    }
    for (c, s) in CASES.iter().zip(&seen) {
        let who = format!("clock {skew} s ({offset} ms measured) / {}", c.name);
        let lockout = s.lockout.unwrap_or_else(|| {
            panic!(
                "{who}: locked out longer than its reset of {} ms",
                c.reset_ms
            )
        });
        println!(
            "| {skew} s | {} | limit {} | reset {} ms | locked out {} ms after the failover | longest retry_after {} ms | granted {} before the unskewed reset (unskewed: {}) |",
            c.name,
            c.limit,
            c.reset_ms,
            lockout.as_millis(),
            s.longest_retry_ms,
            s.granted,
            c.unskewed
        );
        assert!(
            lockout <= Duration::from_millis(c.reset_ms) + SLACK,
            "{who}: locked out {lockout:?}"
        );
        assert!(
            s.longest_retry_ms <= c.reset_ms as i64,
            "{who}: retry_after_ms {} beyond the reset",
            s.longest_retry_ms
        );
        assert!(
            s.granted <= c.unskewed + c.limit,
            "{who}: {} granted, more than one limit beyond the unskewed {}",
            s.granted,
            c.unskewed
        );
    }
}

#[test]
fn a_replica_two_seconds_ahead_locks_no_one_out_and_grants_at_most_one_limit_extra() {
    failover_with_skew("+2");
}

#[test]
fn a_replica_two_seconds_behind_locks_no_one_out_and_grants_at_most_one_limit_extra() {
    failover_with_skew("-2");
}
