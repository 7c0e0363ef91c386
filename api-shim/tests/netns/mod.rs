//! Redis Cluster and Sentinel groups with the module, one node per namespace
//! of a [`Lab`], and api-shim binaries beside them.
//!
//! Failure detection is short so a partition test fits in CI: cluster
//! `node-timeout` and Sentinel `down-after-milliseconds` 2 s, and, where the
//! setting is on, `min-replicas-to-write 1` with `min-replicas-max-lag 2`.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use std::time::Duration;

use rl_testkit::netns::{node_dir, redis_cli_at, role_at, Lab};
use rl_testkit::{field, module_path, wait_replicated, wait_sentinel_ready, wait_until, TempDir};

use crate::common::{redis_server_binary, wait_http};

/// `redis-cli` on a lab host.
pub fn cli(host: &str, port: u16, args: &[&str]) -> String {
    redis_cli_at(host, port, args)
}

/// The role of the Redis node on a lab host.
pub fn role(host: &str) -> String {
    role_at(host, REDIS_PORT)
}

pub const NODE_TIMEOUT_MS: u64 = 2_000;
pub const DOWN_AFTER_MS: u64 = 2_000;
pub const MAX_LAG_S: u64 = 2;
/// Where every Redis node, sentinel and shim listens inside its namespace.
pub const REDIS_PORT: u16 = 6379;
pub const SENTINEL_PORT: u16 = 26379;
pub const SHIM_PORT: u16 = 8080;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topology {
    /// Three masters with one replica each.
    Cluster,
    /// One master, two replicas, three sentinels (one beside each node).
    Sentinel,
}

/// A group of nodes in a lab, plus one namespace (the last) for a client-side
/// shim that holds no node.
pub struct Group {
    pub lab: Lab,
    pub topology: Topology,
    /// Namespaces holding a Redis node (and, under Sentinel, a sentinel).
    pub nodes: Vec<usize>,
    /// The namespace that holds no node.
    pub spare: usize,
    pub min_replicas: bool,
    pub dir: TempDir,
}

impl Group {
    /// Starts the group; `Err` when the lab cannot be made (see [`Lab::create`]).
    pub fn start(topology: Topology, min_replicas: bool) -> Result<Group, String> {
        let n = match topology {
            Topology::Cluster => 6,
            Topology::Sentinel => 3,
        };
        let lab = Lab::create(n + 1)?;
        let mut g = Group {
            lab,
            topology,
            nodes: (0..n).collect(),
            spare: n,
            min_replicas,
            dir: TempDir::new("partitions"),
        };
        match topology {
            Topology::Cluster => g.start_cluster(),
            Topology::Sentinel => g.start_sentinel(),
        }
        Ok(g)
    }

    fn redis(&mut self, i: usize, extra: &[&str]) {
        let dir = node_dir(&self.dir.0, &format!("redis-{i}"));
        let mut args: Vec<String> = [
            "--port",
            &REDIS_PORT.to_string(),
            "--bind",
            "0.0.0.0",
            "--protected-mode",
            "no",
            "--save",
            "",
            "--appendonly",
            "no",
            "--repl-diskless-sync-delay",
            "0",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.push("--dir".into());
        args.push(dir.display().to_string());
        args.push("--logfile".into());
        args.push(dir.join("redis.log").display().to_string());
        args.push("--loadmodule".into());
        args.push(module_path().display().to_string());
        if self.min_replicas {
            args.extend(
                [
                    "--min-replicas-to-write",
                    "1",
                    "--min-replicas-max-lag",
                    &MAX_LAG_S.to_string(),
                ]
                .map(String::from),
            );
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let log = dir.join("stdout.log");
        self.lab.spawn(i, &redis_server_binary(), &args, &[], &log);
        let admin = self.lab.ns[i].admin.clone();
        wait_until("PING", Duration::from_secs(10), || {
            cli(&admin, REDIS_PORT, &["PING"]).contains("PONG")
        });
    }

    fn start_cluster(&mut self) {
        let timeout = NODE_TIMEOUT_MS.to_string();
        for i in self.nodes.clone() {
            self.redis(
                i,
                &[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    &timeout,
                    "--cluster-replica-validity-factor",
                    "0",
                ],
            );
        }
        let addrs: Vec<String> = self
            .nodes
            .iter()
            .map(|&i| format!("{}:{REDIS_PORT}", self.lab.ns[i].addr))
            .collect();
        let out = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("redis-cli --cluster create");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        for &i in &self.nodes {
            let admin = &self.lab.ns[i].admin;
            wait_until("cluster_state:ok", Duration::from_secs(30), || {
                field(
                    &cli(admin, REDIS_PORT, &["CLUSTER", "INFO"]),
                    "cluster_state",
                )
                .as_deref()
                    == Some("ok")
            });
        }
        self.wait_replicas_linked();
    }

    /// Every replica linked to its master (so a failover has one to pick,
    /// and `min-replicas-to-write` lets the masters write).
    fn wait_replicas_linked(&self) {
        for &i in &self.nodes {
            let admin = &self.lab.ns[i].admin;
            if role(admin) == "slave" {
                wait_until("replica in sync", Duration::from_secs(20), || {
                    field(
                        &cli(admin, REDIS_PORT, &["INFO", "replication"]),
                        "master_link_status",
                    )
                    .as_deref()
                        == Some("up")
                });
            }
        }
    }

    fn start_sentinel(&mut self) {
        let master = self.lab.ns[0].addr.clone();
        let port = REDIS_PORT.to_string();
        self.redis(0, &[]);
        self.redis(1, &["--replicaof", &master, &port]);
        self.redis(2, &["--replicaof", &master, &port]);
        self.wait_replicas_linked();
        for i in self.nodes.clone() {
            let dir = node_dir(&self.dir.0, &format!("sentinel-{i}"));
            let conf = dir.join("sentinel.conf");
            std::fs::write(
                &conf,
                format!(
                    "port {SENTINEL_PORT}\nbind 0.0.0.0\nprotected-mode no\ndir {}\n\
                     logfile {}\n\
                     sentinel monitor mymaster {master} {REDIS_PORT} 2\n\
                     sentinel down-after-milliseconds mymaster {DOWN_AFTER_MS}\n\
                     sentinel failover-timeout mymaster 10000\n",
                    dir.display(),
                    dir.join("sentinel.log").display()
                ),
            )
            .expect("sentinel.conf");
            let args = [conf.display().to_string(), "--sentinel".into()];
            self.lab.spawn(
                i,
                &redis_server_binary(),
                &args,
                &[],
                &dir.join("stdout.log"),
            );
        }
        for &i in &self.nodes {
            let admin = &self.lab.ns[i].admin;
            wait_sentinel_ready(|args| cli(admin, SENTINEL_PORT, args));
        }
    }

    /// The `[redis]` connection lines of a shim's configuration.
    pub fn shim_redis(&self) -> String {
        let list = |port: u16| {
            self.nodes
                .iter()
                .map(|&i| format!("\"redis://{}:{port}\"", self.lab.ns[i].addr))
                .collect::<Vec<_>>()
                .join(", ")
        };
        match self.topology {
            Topology::Cluster => format!("cluster = [{}]", list(REDIS_PORT)),
            Topology::Sentinel => format!(
                "[redis.sentinel]\nmaster = \"mymaster\"\nnodes = [{}]",
                list(SENTINEL_PORT)
            ),
        }
    }

    /// Starts the api-shim binary in namespace `i` with `config` (TOML),
    /// listening on that namespace's test link; its base URL.
    pub fn start_shim(&mut self, i: usize, config: &str) -> String {
        let dir = node_dir(&self.dir.0, &format!("shim-{i}"));
        let path = dir.join("shim.toml");
        std::fs::write(&path, config).expect("shim config");
        let listen = format!("{}:{SHIM_PORT}", self.lab.ns[i].admin);
        self.lab.spawn(
            i,
            &PathBuf::from(env!("CARGO_BIN_EXE_api-shim")),
            &[path.display().to_string()],
            &[("SHIM_LISTEN", listen.clone()), ("RUST_LOG", "warn".into())],
            &dir.join("shim.log"),
        );
        let base = format!("http://{listen}");
        wait_http(&format!("{base}/health"));
        base
    }

    /// The namespace of the live master serving `slot` (Cluster).
    pub fn master_of_slot(&self, slot: u16) -> Option<usize> {
        self.nodes.iter().copied().find(|&i| {
            let admin = &self.lab.ns[i].admin;
            role(admin) == "master"
                && cli(admin, REDIS_PORT, &["CLUSTER", "NODES"])
                    .lines()
                    .filter(|l| l.contains("myself"))
                    .flat_map(|l| l.split_whitespace().skip(8).map(str::to_owned).collect::<Vec<_>>())
                    .any(|range| {
                        let (a, b) = range.split_once('-').unwrap_or((&range, &range));
                        matches!((a.parse::<u16>(), b.parse::<u16>()), (Ok(a), Ok(b)) if (a..=b).contains(&slot))
                    })
        })
    }

    /// Makes every write so far on `master` (namespace) reach `replicas`
    /// replicas (a write, then `WAIT` on the same connection).
    pub fn quiesce(&self, master: usize, probe_key: &str, replicas: u32) {
        wait_replicated(&self.lab.ns[master].admin, REDIS_PORT, probe_key, replicas);
    }

    /// Replicas each master has.
    pub fn replicas_per_master(&self) -> u32 {
        match self.topology {
            Topology::Cluster => 1,
            Topology::Sentinel => 2,
        }
    }
}
