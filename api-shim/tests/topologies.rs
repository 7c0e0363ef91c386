//! The shim on Redis Cluster (seed nodes) and through Sentinel, on local
//! processes: the connection code paths other than standalone.

mod common;

use std::time::Duration;

use common::{
    bounded, header, loopback_urls, nodes_with_keys, three_checks, user_policy, wait_until,
    InProcessShim, RedisProc, OK_OK_DENIED,
};
use reqwest::StatusCode;
use rl_testkit::{redis_cli, Cluster, Flavor, Sentinel};

/// Two requests per user beside an hourly limit that does not bind: a
/// multi-limit `RL.LIMITS` on every call.
const BURST_AND_HOUR: &str = concat!(
    r#"{ name = "burst", algorithm = "tokenbucket", capacity = 2, rate = 0.001 }, "#,
    r#"{ name = "hour", algorithm = "fixedwindow", limit = 100, window = 3600 }"#
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_of_three_masters_serves_multi_limit_policies_for_every_slot() {
    bounded(90, async {
        let cluster = Cluster::start(Flavor::Redis, 0, 15_000);
        let ports: Vec<u16> = cluster.nodes.iter().map(|n| n.port).collect();

        let seeds = loopback_urls("redis", &ports);
        let shim = InProcessShim::start(
            user_policy(BURST_AND_HOUR, &format!("cluster = [{seeds}]"), &[]).expect("config"),
        )
        .await;
        let http = reqwest::Client::new();
        let r = http.get(shim.url("/ready")).send().await.expect("ready");
        assert_eq!(r.status(), StatusCode::OK);

        // 30 users land on all three masters; each gets exactly 2.
        for u in 0..30 {
            let statuses = three_checks(&shim, &format!("user-{u}")).await;
            assert_eq!(statuses, OK_OK_DENIED, "user {u}");
        }
        // Keys really are spread over the masters.
        let populated = nodes_with_keys(&ports, &[]);
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
        let sentinel = Sentinel::start(master.port, 1, "");
        let sport = sentinel.port;
        wait_until("sentinel knows the master", Duration::from_secs(15), || {
            redis_cli(
                sport,
                &[],
                &["SENTINEL", "get-master-addr-by-name", "mymaster"],
            )
            .contains(&master.port.to_string())
        });
        let redis = format!(
            "[redis.sentinel]\nmaster = \"mymaster\"\nnodes = [\"redis://127.0.0.1:{sport}\"]"
        );
        let cfg = user_policy(BURST_AND_HOUR, &redis, &[]).expect("config");
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
