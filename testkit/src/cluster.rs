//! Redis Cluster on loopback: three masters (with or without a replica
//! each) joined by `redis-cli --cluster create`.

use std::process::Command;
use std::time::Duration;

use redis::cluster::{ClusterClient, ClusterConnection};

use crate::basics::{cluster_port, field, info, redis_cli, wait_until};
use crate::server::{Flavor, Server};

/// Three masters with `replicas` replicas each, module loaded on every node.
pub struct Cluster {
    pub nodes: Vec<Server>,
}

impl Cluster {
    /// Starts `3 * (1 + replicas)` nodes, creates the cluster and waits
    /// until every node says `cluster_state:ok` and every replica is linked
    /// to its master (so a failover has one to pick). `node_timeout_ms` is
    /// `cluster-node-timeout`: how soon a silent node counts as failed.
    pub fn start(flavor: Flavor, replicas: usize, node_timeout_ms: u64) -> Cluster {
        let timeout = node_timeout_ms.to_string();
        let nodes: Vec<Server> = (0..3 * (1 + replicas))
            .map(|_| {
                Server::start_on(
                    flavor,
                    cluster_port(),
                    &[
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        "nodes.conf",
                        "--cluster-node-timeout",
                        &timeout,
                        // Any replica may be promoted, however long it was cut off.
                        "--cluster-replica-validity-factor",
                        "0",
                    ],
                )
            })
            .collect();
        let ports: Vec<u16> = nodes.iter().map(|n| n.port).collect();
        create_cluster(&ports, replicas, &[]);
        let c = Cluster { nodes };
        wait_until("replicas in sync", Duration::from_secs(30), || {
            c.nodes.iter().all(|n| {
                let info = n
                    .try_conn()
                    .map(|mut c| info(&mut c, "replication"))
                    .unwrap_or_default();
                info.contains("role:master") || info.contains("master_link_status:up")
            })
        });
        c
    }

    /// The URLs of the live nodes.
    pub fn urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|n| n.is_running())
            .map(|n| n.url())
            .collect()
    }

    /// A cluster connection through every live node.
    pub fn client(&self) -> ClusterConnection {
        ClusterClient::builder(self.urls())
            .retries(10)
            .build()
            .and_then(|c| c.get_connection())
            .expect("cluster connection")
    }

    /// The live masters.
    pub fn masters(&self) -> Vec<&Server> {
        self.nodes
            .iter()
            .filter(|n| {
                n.is_running()
                    && n.try_conn()
                        .map(|mut c| info(&mut c, "replication").contains("role:master"))
                        .unwrap_or(false)
            })
            .collect()
    }

    /// The live master that serves `slot`, by its own account.
    pub fn owner(&self, slot: i64) -> Option<&Server> {
        self.masters().into_iter().find(|m| {
            let nodes = redis_cli(m.port, &[], &["CLUSTER", "NODES"]);
            owns(&nodes, slot)
        })
    }

    /// The live replica of the master at `master_port`.
    pub fn replica_of(&self, master_port: u16) -> Option<&Server> {
        let id = node_id(master_port);
        self.nodes
            .iter()
            .filter(|n| n.is_running() && n.port != master_port)
            .find(|n| {
                redis_cli(n.port, &[], &["CLUSTER", "NODES"])
                    .lines()
                    .any(|l| {
                        l.contains("myself") && l.split_whitespace().nth(3) == Some(id.as_str())
                    })
            })
    }
}

/// The `CLUSTER MYID` of the node at `port`.
pub fn node_id(port: u16) -> String {
    redis_cli(port, &[], &["CLUSTER", "MYID"]).trim().to_owned()
}

/// Whether the `myself` line of `CLUSTER NODES` lists `slot`.
fn owns(nodes: &str, slot: i64) -> bool {
    nodes
        .lines()
        .find(|l| l.contains("myself"))
        .map(|l| {
            l.split_whitespace().skip(8).any(|range| {
                let mut it = range.splitn(2, '-');
                let lo = it.next().and_then(|s| s.parse::<i64>().ok());
                let hi = it.next().and_then(|s| s.parse::<i64>().ok()).or(lo);
                matches!((lo, hi), (Some(lo), Some(hi)) if lo <= slot && slot <= hi)
            })
        })
        .unwrap_or(false)
}

/// Joins the nodes on `ports` into a cluster with `replicas` replicas per
/// master (`redis-cli --cluster create`, with `cli_extra` for TLS or a
/// password) and waits until each says `cluster_state:ok`.
pub fn create_cluster(ports: &[u16], replicas: usize, cli_extra: &[String]) {
    let addrs: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let out = Command::new("redis-cli")
        .arg("--no-auth-warning")
        .args(cli_extra)
        .args(["--cluster", "create"])
        .args(&addrs)
        .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
        .output()
        .expect("redis-cli --cluster create");
    assert!(
        out.status.success(),
        "cluster create: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for p in ports {
        wait_until("cluster_state:ok", Duration::from_secs(30), || {
            field(
                &redis_cli(*p, cli_extra, &["CLUSTER", "INFO"]),
                "cluster_state",
            )
            .as_deref()
                == Some("ok")
        });
    }
}
