//! HTTP-layer behaviour against the in-memory backend: statuses, headers,
//! problem bodies, identities, admin auth, the decision budget. No sockets,
//! no Redis. Regression tests are named after the behaviour they pin.

use std::net::SocketAddr;
use std::sync::Arc;

use api_shim::backend::fake::{FakeBackend, FAKE_RETRY_MS};
use api_shim::config::Config;
use api_shim::{app, AppState};
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tower::ServiceExt;

const TOKEN: &str = "0123456789abcdef-admin";

fn config(extra: &str) -> Config {
    let text = format!(
        r#"
[admin]
token = "{TOKEN}"
[identity]
trusted_proxies = ["10.0.0.0/8"]
[api_keys]
"pro-key" = "pro"
[policies.api]
identity_header = "X-API-Key"
default_tier = "free"
[policies.api.tiers.free]
limits = [
  {{ name = "second", algorithm = "tokenbucket", capacity = 3, rate = 1 }},
  {{ name = "day", algorithm = "fixedwindow", limit = 2, window = 86400 }},
]
degraded_limits = [{{ name = "second", algorithm = "tokenbucket", capacity = 1, rate = 1 }}]
[policies.burst]
identity_header = "X-API-Key"
default_tier = "free"
[policies.burst.tiers.free]
limits = [{{ name = "burst", algorithm = "tokenbucket", capacity = 10, rate = 0.001 }}]
[policies.api.tiers.pro]
limits = [{{ name = "second", algorithm = "tokenbucket", capacity = 50, rate = 50 }}]
[policies.strict]
identity_header = "X-API-Key"
default_tier = "pro"
reject_unknown_keys = true
[policies.strict.tiers.pro]
limits = [{{ name = "second", algorithm = "tokenbucket", capacity = 50, rate = 50 }}]
[raw]
enabled = true
key_prefix = "raw:"
{extra}
"#
    );
    Config::from_toml(&text, |_| None).expect("test config is valid")
}

struct Harness {
    fake: Arc<FakeBackend>,
    state: AppState,
}

impl Harness {
    fn new(cfg: Config) -> Harness {
        let fake = Arc::new(FakeBackend::new());
        let state = AppState::new(cfg, fake.clone()).expect("state");
        Harness { fake, state }
    }

    async fn call(&self, method: &str, uri: &str, headers: &[(&str, &str)], peer: &str) -> Resp {
        self.call_body(method, uri, headers, peer, Body::empty())
            .await
    }

    async fn call_body(
        &self,
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
        peer: &str,
        body: Body,
    ) -> Resp {
        let mut req = Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let mut req = req.body(body).expect("request");
        let addr: SocketAddr = format!("{peer}:40000").parse().expect("peer");
        req.extensions_mut().insert(ConnectInfo(addr));
        let resp = app(self.state.clone())
            .oneshot(req)
            .await
            .expect("infallible");
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await.expect("body").to_bytes();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Resp {
            status,
            headers,
            text,
            json,
        }
    }
}

struct Resp {
    status: StatusCode,
    headers: HeaderMap,
    text: String,
    json: Value,
}

impl Resp {
    fn h(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

const PEER: &str = "203.0.113.7";

fn bearer() -> String {
    format!("Bearer {TOKEN}")
}

#[tokio::test]
async fn allowed_raw_call_carries_all_rate_limit_headers() {
    let t = Harness::new(config(""));
    let r = t
        .call("POST", "/v1/tokenbucket/user1?capacity=2&rate=1", &[], PEER)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.h("ratelimit-policy"), Some("\"tokenbucket\";q=2;w=2"));
    // FAKE_RESET_MS = 59_500 -> 60 s, rounded up.
    assert_eq!(r.h("ratelimit"), Some("\"tokenbucket\";r=1;t=60"));
    assert_eq!(r.h("x-ratelimit-limit"), Some("2"));
    assert_eq!(r.h("x-ratelimit-remaining"), Some("1"));
    // X-RateLimit-Reset: a Unix time by default, 60 s from now.
    let reset: u64 = r
        .h("x-ratelimit-reset")
        .and_then(|v| v.parse().ok())
        .expect("Unix seconds");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    assert!((now + 59..=now + 61).contains(&reset), "{reset} vs {now}");
    assert_eq!(r.h("retry-after"), None);
    assert_eq!(r.json["allowed"], true);
    assert_eq!(r.json["remaining"], 1);
    let sent = t.fake.decisions();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].command, "RL.TOKENBUCKET");
    assert_eq!(sent[0].key, "raw:user1");
    assert_eq!(sent[0].args, ["2", "1", "1"]);
}

#[tokio::test]
async fn over_limit_is_429_quota_exceeded_with_retry_after_rounded_up() {
    let t = Harness::new(config(""));
    let uri = "/v1/fixedwindow/k?limit=1&window=60";
    assert_eq!(t.call("POST", uri, &[], PEER).await.status, StatusCode::OK);
    let r = t.call("POST", uri, &[], PEER).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.h("content-type"), Some("application/problem+json"));
    // 1001 ms must become 2 s, never 1.
    assert_eq!(FAKE_RETRY_MS, 1001);
    assert_eq!(r.h("retry-after"), Some("2"));
    assert_eq!(r.h("x-ratelimit-remaining"), Some("0"));
    assert_eq!(
        r.json["type"],
        "https://iana.org/assignments/http-problem-types#quota-exceeded"
    );
    assert_eq!(
        r.json["violated-policies"],
        serde_json::json!(["fixedwindow"])
    );
    assert_eq!(r.json["status"], 429);
    assert_eq!(r.json["title"], "Too Many Requests");
    assert_eq!(r.json["retry_after_ms"], 1001);
}

#[tokio::test]
async fn cost_above_the_limit_is_denied_without_retry_after() {
    let t = Harness::new(config(""));
    let r = t
        .call(
            "POST",
            "/v1/sliding/k?limit=2&window=1&cost=3&mode=approx",
            &[],
            PEER,
        )
        .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.h("retry-after"), None);
    assert_eq!(r.json["retry_after_ms"], -1);
    assert!(r.json["detail"]
        .as_str()
        .is_some_and(|d| d.contains("never")));
}

/// Raw parameters go through the module's grammar, a
/// repeated parameter is refused, counts fit structured-field integers.
#[tokio::test]
async fn bad_input_is_400_with_a_clear_message() {
    let t = Harness::new(config(""));
    let long = "k".repeat(513);
    let ok = "k".repeat(512);
    let cases: Vec<(String, &str)> = vec![
        (format!("/v1/tokenbucket/{long}?capacity=1&rate=1"), "512"),
        ("/v1/tokenbucket/k?capacity=abc&rate=1".into(), "capacity"),
        ("/v1/tokenbucket/k?capacity=0&rate=1".into(), "capacity"),
        ("/v1/tokenbucket/k?capacity=1&rate=0".into(), "rate"),
        ("/v1/tokenbucket/k?capacity=1&rate=inf".into(), "rate"),
        ("/v1/tokenbucket/k?capacity=1&rate=NaN".into(), "rate"),
        (
            "/v1/tokenbucket/k?capacity=1&rate=0.0000000001".into(),
            "rate",
        ),
        ("/v1/fixedwindow/k?limit=1&window=0.0005".into(), "window"),
        (
            "/v1/sliding/k?limit=100000&window=60".into(),
            "exact-max-log",
        ),
        ("/v1/tokenbucket/k?capacity=1".into(), "`rate` is required"),
        (
            "/v1/tokenbucket/k?capacity=1&rate=1&cost=-1".into(),
            "`cost` must be a whole number",
        ),
        (
            "/v1/tokenbucket/k?capacity=9223372036854775807&rate=1".into(),
            "999999999999999",
        ),
        (
            "/v1/tokenbucket/k?capacity=5&capacity=1000000&rate=1".into(),
            "`capacity` is given more than once",
        ),
        (
            "/v1/tokenbucket/k?capacty=1&rate=1".into(),
            "unknown parameter `capacty`",
        ),
        ("/v1/sliding/k?limit=1&window=1&mode=fast".into(), "mode"),
        ("/v1/fixedwindow/k?limit=1&window=-5".into(), "window"),
        (
            "/v1/check/api?cost=x".into(),
            "`cost` must be a whole number",
        ),
        ("/v1/check/api?cost=1&cost=0".into(), "more than once"),
    ];
    for (uri, want) in cases {
        let r = t.call("POST", &uri, &[], PEER).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{uri}: {}", r.text);
        assert_eq!(r.h("content-type"), Some("application/problem+json"));
        let detail = r.json["detail"].as_str().unwrap_or_default();
        assert!(detail.contains(want), "{uri}: {detail}");
        assert!(!detail.starts_with("ERR"), "{uri}: {detail}");
    }
    let r = t
        .call(
            "POST",
            &format!("/v1/tokenbucket/{ok}?capacity=1&rate=1"),
            &[],
            PEER,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "a 512-byte key is allowed");
    assert_eq!(t.fake.decisions().len(), 1, "bad input never reached Redis");
}

/// A policy decision is ONE `RL.LIMITS` call with every limit named.
#[tokio::test]
async fn policy_limits_go_in_one_limits_call_on_one_key() {
    let t = Harness::new(config(""));
    let r = t.call("POST", "/v1/check/api", &[], PEER).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let sent = t.fake.decisions();
    assert_eq!(sent.len(), 1, "one command per decision");
    assert_eq!(sent[0].command, "RL.LIMITS");
    assert_eq!(sent[0].key, format!("rl:{{api:ip:{PEER}}}"));
    assert_eq!(
        sent[0].args,
        [
            "1",
            "NAME",
            "second",
            "TOKENBUCKET",
            "3",
            "1",
            "NAME",
            "day",
            "FIXEDWINDOW",
            "2",
            "86400"
        ]
    );
    // Both fields list every limit; day (2, 1 left) binds.
    assert_eq!(
        r.h("ratelimit-policy"),
        Some("\"second\";q=3;w=3, \"day\";q=2;w=86400")
    );
    assert_eq!(
        r.h("ratelimit"),
        Some("\"second\";r=2;t=60, \"day\";r=1;t=60")
    );
    assert_eq!(r.h("x-ratelimit-remaining"), Some("1"));
    assert_eq!(r.h("x-ratelimit-tier"), Some("free"));
    assert_eq!(r.h("x-system-health"), Some("NORMAL"));
    assert_eq!(r.json["policy"], "api");
    assert_eq!(r.json["tier"], "free");
    assert_eq!(r.json["mode"], "NORMAL");

    assert_eq!(
        t.call("POST", "/v1/check/api", &[], PEER).await.status,
        StatusCode::OK
    );
    let r = t.call("POST", "/v1/check/api", &[], PEER).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.json["binding"], "day");
    assert_eq!(r.json["violated-policies"], serde_json::json!(["day"]));
    assert_eq!(r.h("retry-after"), Some("2"));
    assert_eq!(r.h("x-ratelimit-tier"), Some("free"));
    // All or nothing: the denial by `day` did not take from `second`.
    let r = t.call("POST", "/v1/check/api?cost=0", &[], PEER).await;
    let second = r.json["limits"][0]["remaining"].as_i64();
    assert_eq!(second, Some(1), "{}", r.text);
}

#[tokio::test]
async fn api_keys_select_tiers_and_get_their_own_hashed_bucket() {
    let t = Harness::new(config(""));
    let r = t
        .call("POST", "/v1/check/api", &[("x-api-key", "pro-key")], PEER)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json["tier"], "pro");
    assert_eq!(r.h("x-ratelimit-tier"), Some("pro"));
    assert_eq!(r.h("x-ratelimit-limit"), Some("50"));
    let r = t
        .call("POST", "/v1/check/api", &[("x-api-key", "nobody")], PEER)
        .await;
    assert_eq!(r.json["tier"], "free", "unknown keys get the default tier");
    for c in t.fake.decisions() {
        assert!(
            !c.key.contains("pro-key") && !c.key.contains("nobody"),
            "{}",
            c.key
        );
    }
    // With reject_unknown_keys an unknown or missing key is refused.
    let r = t
        .call("POST", "/v1/check/strict", &[("x-api-key", "nobody")], PEER)
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = t.call("POST", "/v1/check/strict", &[], PEER).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = t
        .call(
            "POST",
            "/v1/check/strict",
            &[("x-api-key", "pro-key")],
            PEER,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = t.call("POST", "/v1/check/nope", &[], PEER).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

/// 30 requests from one client, each with a fresh unknown API key,
/// get exactly the burst of 10 — unknown keys count as the client address.
#[tokio::test]
async fn a_fresh_unknown_api_key_per_request_gains_nothing() {
    let t = Harness::new(config(""));
    let mut allowed = 0;
    for i in 0..30 {
        let key = format!("rotating-key-{i}");
        let r = t
            .call("POST", "/v1/check/burst", &[("x-api-key", &key)], PEER)
            .await;
        match r.status {
            StatusCode::OK => allowed += 1,
            StatusCode::TOO_MANY_REQUESTS => {}
            other => panic!("unexpected {other}: {}", r.text),
        }
    }
    assert_eq!(allowed, 10);
    let keys: std::collections::HashSet<String> =
        t.fake.decisions().into_iter().map(|c| c.key).collect();
    assert_eq!(keys.len(), 1, "{keys:?}");
}

/// `identity_kind = "user"`: every value is its own identity, but only when a
/// trusted proxy sends it.
#[tokio::test]
async fn user_ids_are_believed_only_from_trusted_proxies() {
    let t = Harness::new(config(
        r#"
[policies.users]
identity_header = "user_id"
identity_kind = "user"
default_tier = "free"
[policies.users.tiers.free]
limits = [{ name = "burst", algorithm = "tokenbucket", capacity = 1, rate = 0.001 }]
"#,
    ));
    for user in ["alice", "bob"] {
        let r = t
            .call("POST", "/v1/check/users", &[("user_id", user)], "10.0.0.5")
            .await;
        assert_eq!(r.status, StatusCode::OK, "{user} has its own bucket");
    }
    // From an untrusted peer the value is ignored: the address counts.
    let r = t
        .call("POST", "/v1/check/users", &[("user_id", "carol")], PEER)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = t
        .call("POST", "/v1/check/users", &[("user_id", "dave")], PEER)
        .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    let keys: Vec<String> = t.fake.decisions().into_iter().map(|c| c.key).collect();
    assert!(keys[0].starts_with("rl:{users:u:"), "{keys:?}");
    assert_eq!(keys[2], format!("rl:{{users:ip:{PEER}}}"));
}

#[tokio::test]
async fn forwarded_for_is_only_believed_from_trusted_proxies() {
    let t = Harness::new(config(""));
    // Untrusted peer: a new X-Forwarded-For per request gains nothing.
    for i in 0..2 {
        let xff = format!("198.51.100.{i}");
        let r = t
            .call("POST", "/v1/check/api", &[("x-forwarded-for", &xff)], PEER)
            .await;
        assert_eq!(r.status, StatusCode::OK);
    }
    let r = t
        .call(
            "POST",
            "/v1/check/api",
            &[("x-forwarded-for", "198.51.100.9")],
            PEER,
        )
        .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    // Trusted proxy: each forwarded client has its own bucket.
    for i in 0..3 {
        let xff = format!("198.51.100.{i}");
        let r = t
            .call(
                "POST",
                "/v1/check/api",
                &[("x-forwarded-for", &xff)],
                "10.1.2.3",
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "client {i}");
    }
    let sent = t.fake.decisions();
    let last = &sent[sent.len() - 1].key;
    assert_eq!(last, "rl:{api:ip:198.51.100.2}");
}

/// DEGRADED overrides limits by name on the same key, so a caller
/// throttled in NORMAL stays throttled after the switch.
#[tokio::test]
async fn switching_to_degraded_keeps_every_state() {
    let t = Harness::new(config(""));
    for _ in 0..2 {
        assert_eq!(
            t.call("POST", "/v1/check/api", &[], PEER).await.status,
            StatusCode::OK
        );
    }
    assert_eq!(
        t.call("POST", "/v1/check/api", &[], PEER).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    let r = t
        .call_body(
            "PUT",
            "/admin/mode",
            &[("authorization", &bearer())],
            PEER,
            Body::from(r#"{"mode":"DEGRADED"}"#),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = t.call("POST", "/v1/check/api", &[], PEER).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "no fresh budget");
    assert_eq!(r.h("x-system-health"), Some("DEGRADED"));
    assert_eq!(r.json["mode"], "DEGRADED");
    let sent = t.fake.decisions();
    let limits: Vec<&Vec<String>> = sent
        .iter()
        .filter(|c| c.command == "RL.LIMITS")
        .map(|c| &c.args)
        .collect();
    let last = limits[limits.len() - 1];
    assert_eq!(
        last,
        &[
            "1",
            "NAME",
            "second",
            "TOKENBUCKET",
            "1",
            "1",
            "NAME",
            "day",
            "FIXEDWINDOW",
            "2",
            "86400"
        ]
    );
    let keys: std::collections::HashSet<&str> = sent
        .iter()
        .filter(|c| c.command == "RL.LIMITS")
        .map(|c| c.key.as_str())
        .collect();
    assert_eq!(keys.len(), 1, "one key across modes: {keys:?}");
}

/// A `shadow` limit is reported (headers, body, metrics), never denies; a name
/// only in `degraded_limits` goes as SHADOW in NORMAL.
#[tokio::test]
async fn shadow_limits_report_without_denying() {
    let t = Harness::new(config(
        r#"
[policies.watch]
default_tier = "free"
[policies.watch.tiers.free]
limits = [
  { name = "burst", algorithm = "tokenbucket", capacity = 5, rate = 0.001 },
  { name = "trial", algorithm = "fixedwindow", limit = 1, window = 60, shadow = true },
]
degraded_limits = [{ name = "minute", algorithm = "fixedwindow", limit = 2, window = 60 }]
"#,
    ));
    for i in 0..4 {
        let r = t.call("POST", "/v1/check/watch", &[], PEER).await;
        assert_eq!(r.status, StatusCode::OK, "request {i}: {}", r.text);
        assert_eq!(
            r.h("ratelimit-policy"),
            Some("\"burst\";q=5;w=5000, \"trial\";q=1;w=60, \"minute\";q=2;w=60")
        );
    }
    let sent = t.fake.decisions();
    assert_eq!(
        sent[0].args,
        [
            "1",
            "NAME",
            "burst",
            "TOKENBUCKET",
            "5",
            "0.001",
            "NAME",
            "trial",
            "FIXEDWINDOW",
            "1",
            "60",
            "SHADOW",
            "NAME",
            "minute",
            "FIXEDWINDOW",
            "2",
            "60",
            "SHADOW"
        ]
    );
    let m = t.call("GET", "/metrics", &[], PEER).await;
    assert!(
        m.text
            .contains("shim_shadow_denials_total{limit=\"trial\",policy=\"watch\"} 3"),
        "{}",
        m.text
    );
}

#[tokio::test]
async fn admin_mode_needs_the_token() {
    let t = Harness::new(config(""));
    let body = || Body::from(r#"{"mode":"DEGRADED"}"#);
    let r = t.call_body("PUT", "/admin/mode", &[], PEER, body()).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.h("www-authenticate"), Some("Bearer"));
    let r = t
        .call_body(
            "PUT",
            "/admin/mode",
            &[("authorization", "Bearer wrong-token-0000000")],
            PEER,
            body(),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(!r.text.contains(TOKEN));
    let r = t
        .call_body(
            "PUT",
            "/admin/mode",
            &[("authorization", &bearer())],
            PEER,
            Body::from(r#"{"mode":"PANIC"}"#),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    // The scheme is case-insensitive (RFC 9110).
    let lower = format!("bearer {TOKEN}");
    let r = t
        .call_body(
            "POST",
            "/admin/mode",
            &[("authorization", &lower)],
            PEER,
            body(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["mode"], "DEGRADED");
    let r = t
        .call("GET", "/admin/mode", &[("authorization", &bearer())], PEER)
        .await;
    assert_eq!(r.json["mode"], "DEGRADED");
}

/// The admin body is not read before the token is checked.
#[tokio::test]
async fn admin_body_is_not_read_without_the_token() {
    let t = Harness::new(config(""));
    let polled = Arc::new(AtomicBool::new(false));
    let flag = polled.clone();
    let stream = futures_util::stream::poll_fn(move |_| {
        flag.store(true, Ordering::SeqCst);
        std::task::Poll::Ready(Some(Ok::<_, std::io::Error>(axum::body::Bytes::from(
            vec![b' '; 65536],
        ))))
    });
    let r = t
        .call_body("PUT", "/admin/mode", &[], PEER, Body::from_stream(stream))
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(!polled.load(Ordering::SeqCst), "the body was read");
    // With the token, an oversized body is refused after 1 KiB, not buffered.
    let stream = futures_util::stream::repeat_with(|| {
        Ok::<_, std::io::Error>(axum::body::Bytes::from(vec![b' '; 65536]))
    });
    let r = t
        .call_body(
            "PUT",
            "/admin/mode",
            &[("authorization", &bearer())],
            PEER,
            Body::from_stream(stream),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn admin_is_disabled_without_a_token() {
    let mut cfg = config("");
    cfg.admin_token = None;
    let t = Harness::new(cfg);
    let r = t
        .call_body(
            "PUT",
            "/admin/mode",
            &[("authorization", "Bearer x")],
            PEER,
            Body::from(r#"{"mode":"NORMAL"}"#),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn outage_is_503_or_allowed_when_fail_open_and_recovers() {
    let t = Harness::new(config(""));
    t.fake.set_down(true);
    let r = t
        .call("POST", "/v1/tokenbucket/k?capacity=1&rate=1", &[], PEER)
        .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.h("content-type"), Some("application/problem+json"));
    assert!(
        !r.text.contains("fake outage"),
        "internal detail leaked: {}",
        r.text
    );
    let r = t.call("GET", "/v1/auth/api", &[], PEER).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.h("x-ratelimit-error"), Some("unavailable"));
    let r = t.call("GET", "/ready", &[], PEER).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        t.call("GET", "/health", &[], PEER).await.status,
        StatusCode::OK
    );
    t.fake.set_down(false);
    let r = t
        .call("POST", "/v1/tokenbucket/k?capacity=1&rate=1", &[], PEER)
        .await;
    assert_eq!(r.status, StatusCode::OK);

    let mut cfg = config("");
    cfg.fail_open = true;
    let t = Harness::new(cfg);
    t.fake.set_down(true);
    let r = t.call("POST", "/v1/check/api", &[], PEER).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.h("x-ratelimit-fail-open"), Some("1"));
    assert_eq!(r.h("x-ratelimit-tier"), Some("free"));
    assert_eq!(r.h("x-system-health"), Some("NORMAL"));
    assert_eq!(
        r.h("ratelimit-policy"),
        Some("\"second\";q=3;w=3, \"day\";q=2;w=86400")
    );
    let r = t.call("GET", "/v1/auth/api", &[], PEER).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(r.h("x-ratelimit-fail-open"), Some("1"));
}

/// A hung Redis (SIGSTOP) is answered within ONE `timeout_ms` for
/// the whole decision — mode read and `RL.LIMITS` share the budget. Virtual
/// time makes this exact and independent of machine load.
#[tokio::test(start_paused = true)]
async fn a_hung_redis_is_answered_within_one_timeout() {
    let mut cfg = config("");
    cfg.mode_cache = Duration::ZERO; // the mode is read on every decision
    let budget = cfg.redis_timeout;
    let t = Harness::new(cfg);
    t.fake.set_hang(true);
    let started = tokio::time::Instant::now();
    let r = t.call("POST", "/v1/check/api", &[], PEER).await;
    let took = started.elapsed();
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text);
    assert!(
        took >= budget && took < budget + Duration::from_millis(5),
        "{took:?} vs {budget:?}"
    );
    let started = tokio::time::Instant::now();
    let r = t.call("GET", "/v1/auth/api", &[], PEER).await;
    assert_eq!(r.h("x-ratelimit-error"), Some("unavailable"));
    assert!(started.elapsed() < budget + Duration::from_millis(5));
}

#[tokio::test]
async fn auth_endpoint_speaks_nginx_auth_request() {
    let t = Harness::new(config(""));
    for _ in 0..2 {
        let r = t.call("GET", "/v1/auth/api", &[], PEER).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT);
        assert!(r.h("x-ratelimit-remaining").is_some());
        assert_eq!(r.h("x-ratelimit-tier"), Some("free"));
        assert_eq!(r.h("x-system-health"), Some("NORMAL"));
        assert_eq!(r.h("x-ratelimit-denied"), None);
    }
    let r = t.call("DELETE", "/v1/auth/api", &[], PEER).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.h("x-ratelimit-denied"), Some("1"));
    assert_eq!(r.h("retry-after"), Some("2"));
    assert_eq!(r.h("x-ratelimit-remaining"), Some("0"));
    let r = t.call("GET", "/v1/auth/strict", &[], PEER).await;
    assert_eq!(
        r.status,
        StatusCode::UNAUTHORIZED,
        "passed through by nginx"
    );
    let m = t.call("GET", "/metrics", &[], PEER).await;
    assert!(
        m.text
            .contains("shim_decisions_total{endpoint=\"auth\",mode=\"NORMAL\",outcome=\"allowed\",policy=\"api\",tier=\"free\"} 2"),
        "{}",
        m.text
    );
    assert!(m
        .text
        .contains("shim_decisions_total{endpoint=\"auth\",mode=\"NORMAL\",outcome=\"denied\",policy=\"api\",tier=\"free\"} 1"));
}

/// Issue 22: a failed auth decision is a 403 whose problem body says 403
/// (not the cause's 404), and a method no document lists is a 405 with
/// `Allow`, never a decision.
#[tokio::test]
async fn auth_failures_say_403_and_unlisted_methods_get_405() {
    let t = Harness::new(config(""));
    let r = t.call("GET", "/v1/auth/no-such-policy", &[], PEER).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.h("x-ratelimit-error"), Some("error"));
    assert_eq!(r.json["status"], 403, "{}", r.text);
    assert!(
        r.text.contains("no-such-policy"),
        "the cause stays in detail: {}",
        r.text
    );
    let r = t.call("TRACE", "/v1/auth/api", &[], PEER).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    let allow = r.h("allow").unwrap_or_default();
    for m in ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"] {
        assert!(allow.contains(m), "Allow: {allow}");
    }
    assert_eq!(r.json["status"], 405, "{}", r.text);
}

#[tokio::test]
async fn operations_endpoints() {
    let t = Harness::new(config(""));
    assert_eq!(
        t.call("GET", "/ready", &[], PEER).await.status,
        StatusCode::OK
    );
    t.call("POST", "/v1/check/api", &[], PEER).await;
    let m = t.call("GET", "/metrics", &[], PEER).await;
    assert_eq!(m.status, StatusCode::OK);
    assert!(
        m.text
            .contains("shim_decisions_total{endpoint=\"check\",mode=\"NORMAL\",outcome=\"allowed\",policy=\"api\",tier=\"free\"} 1"),
        "{}",
        m.text
    );
    assert!(m.text.contains("shim_redis_seconds_bucket"));
    let r = t
        .call("DELETE", "/v1/tokenbucket/k?capacity=1&rate=1", &[], PEER)
        .await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.h("content-type"), Some("application/problem+json"));
    let r = t.call("GET", "/nope", &[], PEER).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.h("content-type"), Some("application/problem+json"));
}

/// Raw endpoints are off unless enabled, and when enabled a key
/// aimed at a policy key lands under the raw prefix instead.
#[tokio::test]
async fn raw_keys_never_reach_policy_keys() {
    let mut cfg = config("");
    cfg.raw_enabled = false;
    let t = Harness::new(cfg);
    let r = t
        .call("POST", "/v1/tokenbucket/k?capacity=1&rate=1", &[], PEER)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    let t = Harness::new(config(""));
    let victim = format!("rl:%7Bapi:ip:{PEER}%7D");
    let r = t
        .call(
            "POST",
            &format!("/v1/sliding/{victim}?limit=5&window=600&cost=4"),
            &[],
            PEER,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let sent = t.fake.decisions();
    assert_eq!(sent[0].key, format!("raw:rl:{{api:ip:{PEER}}}"));
    // The victim's own budget is untouched.
    let r = t.call("POST", "/v1/check/api", &[], PEER).await;
    assert_eq!(r.json["limits"][0]["remaining"], 2, "{}", r.text);
}

/// Hot reload: a valid file replaces the running configuration; a bad one is
/// refused, counted, and the last good one keeps serving.
#[tokio::test]
async fn reload_swaps_a_valid_config_and_keeps_the_old_on_error() {
    let dir = std::env::temp_dir().join(format!("shim-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("shim.toml");
    let policy = |cap: u32| {
        format!(
            "api_keys_file = \"keys.json\"\n[policies.api]\nidentity_header = \"X-API-Key\"\ndefault_tier = \"free\"\n[policies.api.tiers.free]\nlimits = [{{ name = \"burst\", algorithm = \"tokenbucket\", capacity = {cap}, rate = 1 }}]\n[policies.api.tiers.gold]\nlimits = [{{ name = \"burst\", algorithm = \"tokenbucket\", capacity = 99, rate = 1 }}]\n"
        )
    };
    std::fs::write(dir.join("keys.json"), "{}").expect("keys");
    std::fs::write(&path, policy(3)).expect("write");
    let loader = api_shim::config::Loader::new(Some(path.clone()), |_| None);
    let t = Harness::new(loader.load(4096).expect("first config"));
    let r = t
        .call(
            "POST",
            "/v1/check/api",
            &[("x-api-key", "new-key-0001")],
            PEER,
        )
        .await;
    assert_eq!(r.h("x-ratelimit-limit"), Some("3"));
    assert_eq!(r.h("x-ratelimit-tier"), Some("free"));

    std::fs::write(&path, policy(7)).expect("write");
    std::fs::write(dir.join("keys.json"), r#"{"new-key-0001": "gold"}"#).expect("keys");
    t.state.reload(&loader).expect("valid reload");
    let r = t.call("POST", "/v1/check/api", &[], PEER).await;
    assert_eq!(r.h("x-ratelimit-limit"), Some("7"));
    let r = t
        .call(
            "POST",
            "/v1/check/api",
            &[("x-api-key", "new-key-0001")],
            PEER,
        )
        .await;
    assert_eq!(
        r.h("x-ratelimit-tier"),
        Some("gold"),
        "the key file reloads too"
    );

    std::fs::write(
        &path,
        policy(7).replace("rate = 1 }", "rate = 0.0000000001 }"),
    )
    .expect("write");
    let e = t.state.reload(&loader).expect_err("bad reload");
    assert!(e.to_string().contains("policies.api.tiers"), "{e}");
    let r = t.call("POST", "/v1/check/api", &[], PEER).await;
    assert_eq!(
        r.h("x-ratelimit-limit"),
        Some("7"),
        "the last good config serves"
    );
    let m = t.call("GET", "/metrics", &[], PEER).await;
    assert!(
        m.text
            .contains("shim_config_reloads_total{result=\"error\"} 1"),
        "{}",
        m.text
    );
    assert!(m
        .text
        .contains("shim_config_reloads_total{result=\"ok\"} 1"));
    let _ = std::fs::remove_dir_all(&dir);
}
