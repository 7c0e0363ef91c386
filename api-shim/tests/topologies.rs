//! The shim on Redis Cluster (seed nodes) and through Sentinel, on local
//! processes: the connection code paths other than standalone.

mod common;

use std::process::{Command, Stdio};

use common::{
    bounded, free_port, header, module_path, redis_server_binary, three_checks, wait_until,
    InProcessShim, Procs, RedisProc, TempDir, OK_OK_DENIED,
};
use reqwest::StatusCode;

fn redis_cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli (is redis-tools installed?)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn policy(extra_top: &str, redis: &str) -> api_shim::config::Config {
    let text = format!(
        r#"listen = "127.0.0.1:0"
{extra_top}
[identity]
trusted_proxies = ["127.0.0.1"]
[policies.api]
identity_header = "X-User"
identity_kind = "user"
default_tier = "free"
[policies.api.tiers.free]
limits = [
  {{ name = "burst", algorithm = "tokenbucket", capacity = 2, rate = 0.001 }},
  {{ name = "hour", algorithm = "fixedwindow", limit = 100, window = 3600 }},
]
[raw]
enabled = true
key_prefix = "t:raw:"
[redis]
timeout_ms = {timeout_ms}
{redis}
"#,
        timeout_ms = common::TEST_REDIS_TIMEOUT_MS
    );
    api_shim::config::Config::from_toml(&text, |_| None).expect("config")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_of_three_masters_serves_multi_limit_policies_for_every_slot() {
    bounded(90, async {
        let dir = TempDir::new("cluster");
        let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let mut procs = Procs(vec![]);
        for p in &ports {
            let node_dir = dir.0.join(p.to_string());
            std::fs::create_dir_all(&node_dir).expect("node dir");
            let child = Command::new(redis_server_binary())
                .current_dir(&node_dir)
                .args([
                    "--port",
                    &p.to_string(),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                ])
                .args([
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                ])
                .arg("--loadmodule")
                .arg(module_path())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn cluster node");
            procs.0.push(child);
        }
        for p in &ports {
            wait_until("node PING", 10, || {
                redis_cli(*p, &["PING"]).contains("PONG")
            });
        }
        let addrs: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let out = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli --cluster create");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        for p in &ports {
            wait_until("cluster_state:ok", 20, || {
                redis_cli(*p, &["CLUSTER", "INFO"]).contains("cluster_state:ok")
            });
        }

        let seeds = ports
            .iter()
            .map(|p| format!("\"redis://127.0.0.1:{p}\""))
            .collect::<Vec<_>>()
            .join(", ");
        let shim = InProcessShim::start(policy("", &format!("cluster = [{seeds}]"))).await;
        let http = reqwest::Client::new();
        let r = http.get(shim.url("/ready")).send().await.expect("ready");
        assert_eq!(r.status(), StatusCode::OK);

        // 30 users land on all three masters; each gets exactly 2.
        for u in 0..30 {
            let statuses = three_checks(&shim, &format!("user-{u}")).await;
            assert_eq!(statuses, OK_OK_DENIED, "user {u}");
        }
        // Keys really are spread over the masters.
        let populated = ports
            .iter()
            .filter(|p| {
                redis_cli(**p, &["DBSIZE"])
                    .trim()
                    .parse::<u64>()
                    .unwrap_or(0)
                    > 0
            })
            .count();
        assert!(populated >= 2, "keys on {populated} masters");

        // Raw endpoint with a key owned by whichever node: routed, not MOVED.
        for k in ["a", "b", "c", "d"] {
            let r = http
                .post(shim.url(&format!("/v1/fixedwindow/{k}?limit=1&window=60")))
                .send()
                .await
                .expect("raw");
            assert_eq!(r.status(), StatusCode::OK, "key {k}");
            assert_eq!(header(&r, "x-ratelimit-remaining"), Some("0"));
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_names_the_master() {
    bounded(60, async {
        let master = RedisProc::start();
        let dir = TempDir::new("sentinel");
        let sport = free_port();
        let conf = dir.0.join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "port {sport}\nbind 127.0.0.1\ndir {}\nsentinel monitor mymaster 127.0.0.1 {} 1\n",
                dir.0.display(),
                master.port
            ),
        )
        .expect("sentinel.conf");
        let _sentinel = Procs(vec![Command::new(redis_server_binary())
            .arg(&conf)
            .arg("--sentinel")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn sentinel")]);
        wait_until("sentinel knows the master", 15, || {
            redis_cli(sport, &["SENTINEL", "get-master-addr-by-name", "mymaster"])
                .contains(&master.port.to_string())
        });
        let redis = format!(
            "[redis.sentinel]\nmaster = \"mymaster\"\nnodes = [\"redis://127.0.0.1:{sport}\"]"
        );
        let cfg = policy("", &redis);
        let shim = InProcessShim::start(cfg).await;
        let http = reqwest::Client::new();
        let r = http.get(shim.url("/ready")).send().await.expect("ready");
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(three_checks(&shim, "alice").await, OK_OK_DENIED);
        assert!(master
            .cmd(&["KEYS", "rl:{api:*"])
            .expect("KEYS")
            .contains("rl:{api:u:"));
    })
    .await;
}
