//! The shim against a real `redis-server` with the module loaded: headers,
//! 429s, outage and recovery, and exact grants under concurrency.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{bounded, config, header, InProcessShim, RedisProc};
use reqwest::StatusCode;

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_requests_carry_headers_and_the_next_is_429_with_retry_after() {
    bounded(60, async {
        let redis = RedisProc::start();
        let shim = InProcessShim::start(config(&redis.url(), "")).await;
        let http = client();
        // 3 tokens, one every 100 s: the 4th call must wait ~100 s.
        let url = shim.url("/v1/tokenbucket/user:1?capacity=3&rate=0.01");
        for want_remaining in ["2", "1", "0"] {
            let r = http.post(&url).send().await.expect("send");
            assert_eq!(r.status(), StatusCode::OK);
            assert_eq!(header(&r, "x-ratelimit-limit"), Some("3"));
            assert_eq!(header(&r, "x-ratelimit-remaining"), Some(want_remaining));
            assert_eq!(
                header(&r, "ratelimit-policy"),
                Some("\"tokenbucket\";q=3;w=300")
            );
            assert!(header(&r, "ratelimit").is_some_and(|v| v.starts_with("\"tokenbucket\";r=")));
            assert!(header(&r, "x-ratelimit-reset").is_some());
        }
        let r = http.post(&url).send().await.expect("send");
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(header(&r, "content-type"), Some("application/problem+json"));
        let retry: i64 = header(&r, "retry-after")
            .and_then(|v| v.parse().ok())
            .expect("Retry-After is whole seconds");
        let body: serde_json::Value = r.json().await.expect("json");
        let retry_ms = body["retry_after_ms"].as_i64().expect("retry_after_ms");
        assert!(retry_ms > 99_000 && retry_ms <= 100_000, "{retry_ms}");
        assert_eq!(retry, (retry_ms + 999) / 1000, "rounded up, never down");

        // The key is the one the module sees, usable from redis-cli.
        let ty = redis.cmd(&["TYPE", "t:raw:user:1"]).expect("TYPE");
        assert_ne!(ty, "none", "the limiter key exists under the caller's name");

        // cost 0 inspects: no token is taken, the answer is still a decision.
        let r = http
            .post(shim.url("/v1/fixedwindow/fw?limit=2&window=3600&cost=0"))
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(header(&r, "x-ratelimit-remaining"), Some("2"));

        // Wrong algorithm on an existing key: 409, without the module's text.
        let r = http
            .post(shim.url("/v1/sliding/user:1?limit=5&window=1"))
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), StatusCode::CONFLICT);

        let r = http.get(shim.url("/ready")).send().await.expect("send");
        assert_eq!(r.status(), StatusCode::OK);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_checks_several_limits_on_one_slot() {
    bounded(60, async {
        let redis = RedisProc::start();
        let extra = r#"
[identity]
trusted_proxies = ["127.0.0.1"]
[policies.api]
identity_header = "X-User"
identity_kind = "user"
default_tier = "free"
[policies.api.tiers.free]
limits = [
  { name = "burst", algorithm = "tokenbucket", capacity = 5, rate = 0.001 },
  { name = "hour", algorithm = "sliding", limit = 3, window = 3600 },
]
"#;
        let shim = InProcessShim::start(config(&redis.url(), extra)).await;
        let http = client();
        let url = shim.url("/v1/check/api");
        let mut statuses = vec![];
        for _ in 0..4 {
            let r = http
                .post(&url)
                .header("x-user", "alice")
                .send()
                .await
                .expect("send");
            statuses.push(r.status());
            if r.status() == StatusCode::TOO_MANY_REQUESTS {
                assert_eq!(
                    header(&r, "x-ratelimit-limit"),
                    Some("3"),
                    "the sliding limit binds"
                );
                assert!(header(&r, "retry-after").is_some());
            }
        }
        assert_eq!(
            statuses,
            [
                StatusCode::OK,
                StatusCode::OK,
                StatusCode::OK,
                StatusCode::TOO_MANY_REQUESTS
            ]
        );
        // One key per identity holds every limit (RL.LIMITS).
        let keys = redis.cmd(&["KEYS", "rl:{api:*"]).expect("KEYS");
        assert!(keys.contains("\"rl:{api:u:"), "{keys}");
        assert_eq!(redis.cmd(&["DBSIZE"]).expect("DBSIZE"), "int(1)", "one key");
        // All or nothing: the denied 4th request took nothing from "burst"
        // (5 - 3 = 2 left), so a denial by the hour never burns the burst.
        let r = http
            .post(format!("{url}?cost=0"))
            .header("x-user", "alice")
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), StatusCode::OK, "cost 0 inspects");
        assert!(
            header(&r, "ratelimit").is_some_and(|v| v.starts_with("\"burst\";r=2;")),
            "{:?}",
            header(&r, "ratelimit")
        );
        let body: serde_json::Value = r.json().await.expect("json");
        assert_eq!(body["limits"][0]["name"], "burst");
        assert_eq!(body["limits"][0]["remaining"], 2, "{body}");
        assert_eq!(body["limits"][1]["remaining"], 0, "{body}");
    })
    .await;
}

/// The module's real `WRONGTYPE` replies are classified by code
/// (409), its real `ERR` replies reach the caller as 400 with its own words.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn module_errors_are_classified_by_their_code() {
    bounded(60, async {
        let redis = RedisProc::start();
        let extra = r#"
[policies.api]
default_tier = "free"
[policies.api.tiers.free]
limits = [{ name = "burst", algorithm = "tokenbucket", capacity = 5, rate = 1 }]
"#;
        let shim = InProcessShim::start(config(&redis.url(), extra)).await;
        let http = client();
        // Another algorithm's state under the key: the module says WRONGTYPE.
        let tb = shim.url("/v1/tokenbucket/k?capacity=5&rate=1");
        assert_eq!(
            http.post(&tb).send().await.expect("send").status(),
            StatusCode::OK
        );
        let r = http
            .post(shim.url("/v1/fixedwindow/k?limit=5&window=1"))
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), StatusCode::CONFLICT);
        // Another Redis type under the key.
        redis.cmd(&["SET", "t:raw:s", "x"]).expect("SET");
        let r = http
            .post(shim.url("/v1/sliding/s?limit=5&window=1"))
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), StatusCode::CONFLICT);
        // A single command's state under a policy key: RL.LIMITS says WRONGTYPE.
        redis
            .cmd(&["RL.TOKENBUCKET", "rl:{api:ip:127.0.0.1}", "5", "1", "1"])
            .expect("plant");
        let r = http
            .post(shim.url("/v1/check/api"))
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), StatusCode::CONFLICT);
        // The server's exact-max-log shrank after start-up: the module's own
        // refusal (ERR) is passed on as a 400 with its hint.
        redis
            .cmd(&["CONFIG", "SET", "ratelimit.exact-max-log", "10"])
            .expect("CONFIG SET");
        let r = http
            .post(shim.url("/v1/sliding/e?limit=100&window=60"))
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        let body: serde_json::Value = r.json().await.expect("json");
        let detail = body["detail"].as_str().unwrap_or_default();
        assert!(
            detail.contains("exact-max-log") && !detail.starts_with("ERR"),
            "{detail}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_gives_503_then_recovers_without_restarting_the_shim() {
    bounded(90, async {
        let mut redis = RedisProc::start();
        let shim = InProcessShim::start(config(&redis.url(), "")).await;
        let http = client();
        let url = shim.url("/v1/tokenbucket/k?capacity=100&rate=1");
        assert_eq!(
            http.post(&url).send().await.expect("send").status(),
            StatusCode::OK
        );

        redis.kill();
        let started = Instant::now();
        let r = http.post(&url).send().await.expect("send");
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(header(&r, "content-type"), Some("application/problem+json"));
        let text = r.text().await.expect("body");
        assert!(
            !text.contains("refused") && !text.contains("127.0.0.1"),
            "leaks: {text}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "503 must come fast"
        );
        // Still 503, still fast, on repeated tries.
        for _ in 0..3 {
            let t = Instant::now();
            let r = http.post(&url).send().await.expect("send");
            assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
            assert!(t.elapsed() < Duration::from_secs(2));
        }
        let r = http.get(shim.url("/ready")).send().await.expect("send");
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);

        redis.restart();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let r = http.post(&url).send().await.expect("send");
            if r.status() == StatusCode::OK {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "no recovery: still {}",
                r.status()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let r = http.get(shim.url("/ready")).send().await.expect("send");
        assert_eq!(r.status(), StatusCode::OK);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_open_lets_requests_through_while_redis_is_down() {
    bounded(60, async {
        let mut redis = RedisProc::start();
        let shim = InProcessShim::start(config(&redis.url(), "fail_open = true\n")).await;
        let http = client();
        let url = shim.url("/v1/tokenbucket/k?capacity=1&rate=0.001");
        assert_eq!(
            http.post(&url).send().await.expect("send").status(),
            StatusCode::OK
        );
        assert_eq!(
            http.post(&url).send().await.expect("send").status(),
            StatusCode::TOO_MANY_REQUESTS,
            "fail-open does not weaken limits while Redis is up"
        );
        redis.kill();
        let r = http.post(&url).send().await.expect("send");
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(header(&r, "x-ratelimit-fail-open"), Some("1"));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_without_the_module_is_not_ready_and_answers_503() {
    bounded(60, async {
        let redis = RedisProc::start_on(common::free_port(), false);
        let shim = InProcessShim::start(config(&redis.url(), "")).await;
        let http = client();
        let r = http.get(shim.url("/ready")).send().await.expect("send");
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body = r.text().await.expect("body");
        assert!(body.contains("module is not loaded"), "{body}");
        let r = http
            .post(shim.url("/v1/tokenbucket/k?capacity=1&rate=1"))
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    })
    .await;
}

/// Sends `total` POSTs to `url` from `conns` concurrent connections; counts 200s
/// and 429s (anything else fails the test).
async fn hammer(urls: Vec<String>, conns: usize, headers: Vec<(String, String)>) -> (usize, usize) {
    let http = client();
    let ok = Arc::new(AtomicUsize::new(0));
    let limited = Arc::new(AtomicUsize::new(0));
    let queue = Arc::new(tokio::sync::Mutex::new(urls));
    let mut tasks = vec![];
    for _ in 0..conns {
        let (http, ok, limited, queue, headers) = (
            http.clone(),
            ok.clone(),
            limited.clone(),
            queue.clone(),
            headers.clone(),
        );
        tasks.push(tokio::spawn(async move {
            loop {
                let Some(url) = queue.lock().await.pop() else {
                    break;
                };
                let mut req = http.post(&url);
                for (k, v) in &headers {
                    req = req.header(k, v);
                }
                let r = req.send().await.expect("send");
                match r.status() {
                    StatusCode::OK => ok.fetch_add(1, Ordering::Relaxed),
                    StatusCode::TOO_MANY_REQUESTS => limited.fetch_add(1, Ordering::Relaxed),
                    other => panic!("unexpected {other}"),
                };
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    (ok.load(Ordering::Relaxed), limited.load(Ordering::Relaxed))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_user_hammered_by_200_connections_gets_exactly_the_capacity() {
    bounded(120, async {
        let redis = RedisProc::start();
        let shim = InProcessShim::start(config(&redis.url(), "")).await;
        // A refill of one token per 10^4 s cannot add a token during the test.
        let url = shim.url("/v1/tokenbucket/hot-user?capacity=100&rate=0.0001");
        let (ok, limited) = hammer(vec![url; 2_000], 200, vec![]).await;
        assert_eq!(ok, 100);
        assert_eq!(limited, 1_900);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_users_each_get_exactly_their_capacity() {
    bounded(150, async {
        let redis = RedisProc::start();
        let extra = r#"
[identity]
trusted_proxies = ["127.0.0.1"]
[policies.api]
default_tier = "free"
identity_header = "X-User"
identity_kind = "user"
[policies.api.tiers.free]
limits = [{ name = "burst", algorithm = "tokenbucket", capacity = 5, rate = 0.0001 }]
"#;
        let shim = InProcessShim::start(config(&redis.url(), extra)).await;
        let http = client();
        let url = shim.url("/v1/check/api");
        let ok = Arc::new(AtomicUsize::new(0));
        let per_user_ok = Arc::new(std::sync::Mutex::new(vec![0usize; 1_000]));
        let mut tasks = vec![];
        // 100 workers, each owning 10 users, interleaving their 20 requests.
        for w in 0..100usize {
            let (http, url, ok, per_user_ok) =
                (http.clone(), url.clone(), ok.clone(), per_user_ok.clone());
            tasks.push(tokio::spawn(async move {
                for round in 0..20 {
                    for u in (w * 10)..(w * 10 + 10) {
                        let r = http
                            .post(&url)
                            .header("x-user", format!("user-{u}"))
                            .send()
                            .await
                            .expect("send");
                        match r.status() {
                            StatusCode::OK => {
                                ok.fetch_add(1, Ordering::Relaxed);
                                per_user_ok.lock().expect("lock")[u] += 1;
                            }
                            StatusCode::TOO_MANY_REQUESTS => {}
                            other => panic!("user {u} round {round}: {other}"),
                        }
                    }
                }
            }));
        }
        for t in tasks {
            t.await.expect("task");
        }
        assert_eq!(ok.load(Ordering::Relaxed), 5_000);
        let per_user = per_user_ok.lock().expect("lock").clone();
        assert!(per_user.iter().all(|&n| n == 5), "{per_user:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn degraded_mode_set_on_one_shim_reaches_the_others_through_redis() {
    bounded(60, async {
        let redis = RedisProc::start();
        let extra = r#"
mode_cache_ms = 200
[admin]
token = "integration-admin-token"
[policies.api]
default_tier = "free"
[policies.api.tiers.free]
limits = [{ name = "burst", algorithm = "tokenbucket", capacity = 10, rate = 0.001 }]
degraded_limits = [{ name = "burst", algorithm = "tokenbucket", capacity = 1, rate = 0.001 }]
"#;
        let a = InProcessShim::start(config(&redis.url(), extra)).await;
        let b = InProcessShim::start(config(&redis.url(), extra)).await;
        let http = client();
        let r = http
            .post(b.url("/v1/check/api"))
            .send()
            .await
            .expect("send");
        assert_eq!(header(&r, "x-ratelimit-limit"), Some("10"));

        let r = http
            .put(a.url("/admin/mode"))
            .bearer_auth("integration-admin-token")
            .body(r#"{"mode":"DEGRADED"}"#)
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(
            redis.cmd(&["GET", "ratelimit:shim:mode"]).expect("GET"),
            "DEGRADED"
        );

        tokio::time::sleep(Duration::from_millis(300)).await;
        let r = http
            .post(b.url("/v1/check/api"))
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(
            header(&r, "x-ratelimit-limit"),
            Some("1"),
            "b follows a's switch"
        );
        let r = http
            .post(b.url("/v1/check/api"))
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    })
    .await;
}
