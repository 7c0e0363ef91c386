//! Redis Sentinel on loopback: one sentinel process, and the group the
//! failover tests use (a master, two replicas, three sentinels).

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::basics::{field, free_port, redis_cli, wait_until, Procs, TempDir};
use crate::server::{Flavor, Server};

/// A sentinel watching `mymaster`, killed on drop.
pub struct Sentinel {
    pub port: u16,
    _proc: Procs,
    _dir: TempDir,
}

impl Sentinel {
    /// Starts a sentinel that monitors the master on `master_port` as
    /// `mymaster` with `quorum`; `extra_conf` adds lines to its
    /// configuration. Waits until it answers PING.
    pub fn start(master_port: u16, quorum: u32, extra_conf: &str) -> Sentinel {
        let port = free_port();
        let dir = TempDir::new("sentinel");
        let conf = dir.0.join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\ndir {}\n\
                 sentinel monitor mymaster 127.0.0.1 {master_port} {quorum}\n{extra_conf}",
                dir.0.display()
            ),
        )
        .expect("sentinel.conf");
        let child = Command::new(Flavor::Redis.binary())
            .current_dir(&dir.0)
            .arg(&conf)
            .arg("--sentinel")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn sentinel");
        let s = Sentinel {
            port,
            _proc: Procs(vec![child]),
            _dir: dir,
        };
        wait_until("sentinel PING", Duration::from_secs(10), || {
            redis_cli(port, &[], &["PING"]).contains("PONG")
        });
        s
    }
}

/// The port of the master the sentinel on `sentinel_port` names as
/// `mymaster` (0 when it names none). It takes a bare port so that closures
/// running on another thread can ask while the [`Sentinel`] stays with its
/// group.
pub fn sentinel_master_port(sentinel_port: u16) -> u16 {
    redis_cli(
        sentinel_port,
        &[],
        &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", "mymaster"],
    )
    .lines()
    .nth(1)
    .and_then(|p| p.trim().parse().ok())
    .unwrap_or(0)
}

/// A master, two replicas and three sentinels (quorum 2, down after 1 s).
pub struct SentinelGroup {
    /// The first master, then its replicas.
    pub nodes: Vec<Server>,
    pub sentinels: Vec<Sentinel>,
}

impl SentinelGroup {
    /// Starts the group and waits until every sentinel sees both replicas
    /// and the other two sentinels, and both replicas are eligible for
    /// promotion.
    pub fn start() -> SentinelGroup {
        let master = Server::start(Flavor::Redis);
        let replicas: Vec<Server> = (0..2).map(|_| master.replica()).collect();
        let sentinels: Vec<Sentinel> = (0..3)
            .map(|_| {
                Sentinel::start(
                    master.port,
                    2,
                    "sentinel down-after-milliseconds mymaster 1000\n\
                     sentinel failover-timeout mymaster 10000\n",
                )
            })
            .collect();
        for s in &sentinels {
            wait_until("sentinels see the group", Duration::from_secs(30), || {
                let m = redis_cli(s.port, &[], &["SENTINEL", "MASTER", "mymaster"]);
                field(&m, "num-slaves").as_deref() == Some("2")
                    && field(&m, "num-other-sentinels").as_deref() == Some("2")
            });
            // Both replicas eligible for promotion (linked and reported),
            // else `SENTINEL FAILOVER` answers NOGOODSLAVE.
            wait_until("replicas eligible", Duration::from_secs(30), || {
                let r = redis_cli(s.port, &[], &["SENTINEL", "REPLICAS", "mymaster"]);
                let lines: Vec<&str> = r.lines().map(str::trim).collect();
                let linked = lines
                    .windows(2)
                    .filter(|w| w[0] == "master-link-status" && w[1] == "ok")
                    .count();
                linked == 2 && !r.contains("disconnected") && !r.contains("s_down")
            });
        }
        let mut nodes = vec![master];
        nodes.extend(replicas);
        SentinelGroup { nodes, sentinels }
    }
}
