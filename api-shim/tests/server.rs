//! The served process: header read timeout, configuration reload
//! on SIGHUP (hot reload), and a bad configuration refused at start-up.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{bounded, free_port, header, InProcessShim, RedisProc, ShimProc, TempDir};
use reqwest::StatusCode;

/// A client that never finishes its request header is dropped
/// after `http.header_read_timeout_ms`, not kept for 40 s+.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_sent_header_is_dropped_after_the_header_timeout() {
    bounded(60, async {
        // No Redis needed: the connection never gets to a handler.
        let port = free_port();
        let cfg = api_shim::config::Config::from_toml(
            &format!(
                "listen = \"127.0.0.1:0\"\n[http]\nheader_read_timeout_ms = 300\n[redis]\nurl = \"redis://127.0.0.1:{port}/\"\n"
            ),
            |_| None,
        )
        .expect("config");
        let shim = InProcessShim::start(cfg).await;
        let addr = shim.addr;
        let outcome = tokio::task::spawn_blocking(move || {
            let mut s = TcpStream::connect(addr).expect("connect");
            s.set_read_timeout(Some(Duration::from_secs(20)))
                .expect("timeout");
            s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
                .expect("write");
            let started = Instant::now();
            let mut buf = [0u8; 512];
            let n = s.read(&mut buf);
            (started.elapsed(), n.map_err(|e| e.kind()))
        })
        .await
        .expect("join");
        let (took, read) = outcome;
        // Closed (EOF or reset), long before the 20 s read timeout.
        assert!(
            matches!(read, Ok(_) | Err(std::io::ErrorKind::ConnectionReset)),
            "{read:?}"
        );
        assert!(took < Duration::from_secs(10), "kept for {took:?}");
        // A whole request on a fresh connection is served.
        let r = reqwest::get(shim.url("/health")).await.expect("health");
        assert_eq!(r.status(), StatusCode::OK);
    })
    .await;
}

fn policy(capacity: u32) -> String {
    format!(
        r#"
[policies.api]
default_tier = "free"
[policies.api.tiers.free]
limits = [{{ name = "burst", algorithm = "tokenbucket", capacity = {capacity}, rate = 0.01 }}]
"#
    )
}

async fn limit_of(http: &reqwest::Client, shim: &ShimProc) -> Option<String> {
    let r = http
        .post(format!(
            "http://127.0.0.1:{}/v1/check/api?cost=0",
            shim.port
        ))
        .send()
        .await
        .expect("send");
    header(&r, "x-ratelimit-limit").map(str::to_owned)
}

async fn reloads(http: &reqwest::Client, shim: &ShimProc, result: &str) -> u64 {
    let prefix = format!("shim_config_reloads_total{{result=\"{result}\"}} ");
    common::metric_sum(http, shim.port, &prefix).await
}

fn hup(shim: &ShimProc) {
    let ok = Command::new("kill")
        .args(["-HUP", &shim.pid().to_string()])
        .status()
        .expect("kill")
        .success();
    assert!(ok, "kill -HUP");
}

/// SIGHUP reloads a valid file; a bad one is refused, counted, and the last
/// good configuration keeps serving — without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_and_a_bad_file_keeps_the_last_good_config() {
    bounded(90, async {
        let redis = RedisProc::start();
        let shim = ShimProc::start(&redis.url(), &policy(3));
        let http = reqwest::Client::new();
        assert_eq!(limit_of(&http, &shim).await.as_deref(), Some("3"));

        std::fs::write(&shim.config_path, policy(7)).expect("rewrite");
        hup(&shim);
        let deadline = Instant::now() + Duration::from_secs(20);
        while limit_of(&http, &shim).await.as_deref() != Some("7") {
            assert!(Instant::now() < deadline, "no reload after SIGHUP");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(reloads(&http, &shim, "ok").await, 1);

        // Refused by the module's grammar: 3 decimals at most for a window.
        let bad = policy(9).replace(
            "algorithm = \"tokenbucket\", capacity = 9, rate = 0.01",
            "algorithm = \"fixedwindow\", limit = 9, window = 0.0005",
        );
        std::fs::write(&shim.config_path, bad).expect("rewrite");
        hup(&shim);
        let deadline = Instant::now() + Duration::from_secs(20);
        while reloads(&http, &shim, "error").await < 1 {
            assert!(Instant::now() < deadline, "bad reload not counted");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(limit_of(&http, &shim).await.as_deref(), Some("7"));
    })
    .await;
}

/// A configuration the module would refuse does not start; the
/// exit code is non-zero and stderr names the field.
#[test]
fn a_config_the_module_refuses_does_not_start() {
    let dir = TempDir::new("badcfg");
    for (body, field) in [
        (
            policy(3).replace(
                "capacity = 3, rate = 0.01",
                "capacity = 3, rate = 0.0000000001",
            ),
            "policies.api.tiers.free.limits[0].rate",
        ),
        (
            policy(3).replace(
                "algorithm = \"tokenbucket\", capacity = 3, rate = 0.01",
                "algorithm = \"sliding\", limit = 100000, window = 60",
            ),
            "policies.api.tiers.free.limits[0].limit",
        ),
    ] {
        let path = dir.0.join("bad.toml");
        std::fs::write(&path, body).expect("write");
        let out = Command::new(env!("CARGO_BIN_EXE_api-shim"))
            .arg(&path)
            // Nothing listens there: the default exact-max-log applies.
            .env(
                "SHIM_REDIS_URL",
                format!("redis://127.0.0.1:{}/", free_port()),
            )
            .env("RUST_LOG", "off")
            .output()
            .expect("run api-shim");
        assert_eq!(out.status.code(), Some(78), "EX_CONFIG");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(field), "{stderr}");
    }
}
