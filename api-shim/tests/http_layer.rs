//! HTTP-layer behaviour against the in-memory backend: statuses, headers,
//! problem bodies, identities, admin auth. No sockets, no Redis.

use std::net::SocketAddr;
use std::sync::Arc;

use api_shim::backend::{FakeBackend, FAKE_RETRY_MS};
use api_shim::config::Config;
use api_shim::{app, AppState};
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
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
[policies.api.tiers.pro]
limits = [{{ name = "second", algorithm = "tokenbucket", capacity = 50, rate = 50 }}]
[policies.strict]
identity_header = "X-API-Key"
default_tier = "pro"
reject_unknown_keys = true
[policies.strict.tiers.pro]
limits = [{{ name = "second", algorithm = "tokenbucket", capacity = 50, rate = 50 }}]
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
    assert_eq!(r.h("x-ratelimit-reset"), Some("60"));
    assert_eq!(r.h("retry-after"), None);
    assert_eq!(r.json["allowed"], true);
    assert_eq!(r.json["remaining"], 1);
    let batches = t.fake.batches.lock().expect("lock").clone();
    assert_eq!(batches.len(), 1);
    assert_eq!(batches[0][0].key, "user1");
    assert_eq!(batches[0][0].cost, 1);
}

#[tokio::test]
async fn over_limit_is_429_problem_with_retry_after_rounded_up() {
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
    assert_eq!(r.json["status"], 429);
    assert_eq!(r.json["title"], "Too Many Requests");
    assert_eq!(r.json["retry_after_ms"], 1001);
    assert!(r.json["detail"]
        .as_str()
        .is_some_and(|d| d.contains("fixedwindow")));
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

#[tokio::test]
async fn bad_input_is_400_with_a_clear_message() {
    let t = Harness::new(config(""));
    let long = "k".repeat(513);
    let ok = "k".repeat(512);
    let cases: Vec<(String, &str)> = vec![
        (format!("/v1/tokenbucket/{long}?capacity=1&rate=1"), "512"),
        (
            "/v1/tokenbucket/k?capacity=abc&rate=1".into(),
            "`capacity` must be a whole number",
        ),
        (
            "/v1/tokenbucket/k?capacity=0&rate=1".into(),
            "`capacity` must be at least 1",
        ),
        (
            "/v1/tokenbucket/k?capacity=1&rate=0".into(),
            "`rate` must be a finite number",
        ),
        (
            "/v1/tokenbucket/k?capacity=1&rate=inf".into(),
            "`rate` must be a finite number",
        ),
        (
            "/v1/tokenbucket/k?capacity=1&rate=NaN".into(),
            "`rate` must be a finite number",
        ),
        ("/v1/tokenbucket/k?capacity=1".into(), "`rate` is required"),
        (
            "/v1/tokenbucket/k?capacity=1&rate=1&cost=-1".into(),
            "`cost` must be a whole number",
        ),
        (
            "/v1/tokenbucket/k?capacity=99999999999999999999&rate=1".into(),
            "`capacity`",
        ),
        (
            "/v1/tokenbucket/k?capacty=1&rate=1".into(),
            "unknown parameter(s) capacty",
        ),
        (
            "/v1/sliding/k?limit=1&window=1&mode=fast".into(),
            "`mode` must be `exact` or `approx`",
        ),
        (
            "/v1/fixedwindow/k?limit=1&window=-5".into(),
            "`window` must be a finite number",
        ),
        (
            "/v1/check/api?cost=x".into(),
            "`cost` must be a whole number",
        ),
    ];
    for (uri, want) in cases {
        let r = t.call("POST", &uri, &[], PEER).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{uri}: {}", r.text);
        assert_eq!(r.h("content-type"), Some("application/problem+json"));
        let detail = r.json["detail"].as_str().unwrap_or_default();
        assert!(detail.contains(want), "{uri}: {detail}");
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
    assert_eq!(
        t.fake.batches.lock().expect("lock").len(),
        1,
        "bad input never reached Redis"
    );
}

#[tokio::test]
async fn policy_limits_go_in_one_round_trip_under_one_hash_tag() {
    let t = Harness::new(config(""));
    let r = t.call("POST", "/v1/check/api", &[], PEER).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let batches = t.fake.batches.lock().expect("lock").clone();
    assert_eq!(batches.len(), 1, "one pipeline per decision");
    let keys: Vec<&str> = batches[0].iter().map(|c| c.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            format!("rl:{{api:ip:{PEER}}}:free:n:second"),
            format!("rl:{{api:ip:{PEER}}}:free:n:day")
        ]
    );
    // day (2, 1 left) is more restrictive than second (3, 2 left).
    assert_eq!(r.h("ratelimit"), Some("\"free.day\";r=1;t=60"));
    assert_eq!(
        r.h("ratelimit-policy"),
        Some("\"free.second\";q=3;w=3, \"free.day\";q=2;w=86400")
    );
    assert_eq!(r.json["policy"], "api");
    assert_eq!(r.json["tier"], "free");
    assert_eq!(r.json["mode"], "NORMAL");

    assert_eq!(
        t.call("POST", "/v1/check/api", &[], PEER).await.status,
        StatusCode::OK
    );
    let r = t.call("POST", "/v1/check/api", &[], PEER).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.json["binding"], "free.day");
    assert_eq!(r.h("retry-after"), Some("2"));
}

#[tokio::test]
async fn api_keys_select_tiers_and_get_their_own_hashed_bucket() {
    let t = Harness::new(config(""));
    let r = t
        .call("POST", "/v1/check/api", &[("x-api-key", "pro-key")], PEER)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json["tier"], "pro");
    assert_eq!(r.h("x-ratelimit-limit"), Some("50"));
    let r = t
        .call("POST", "/v1/check/api", &[("x-api-key", "nobody")], PEER)
        .await;
    assert_eq!(r.json["tier"], "free", "unknown keys get the default tier");
    let batches = t.fake.batches.lock().expect("lock").clone();
    for b in &batches {
        for c in b {
            assert!(
                !c.key.contains("pro-key") && !c.key.contains("nobody"),
                "{}",
                c.key
            );
        }
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
    let batches = t.fake.batches.lock().expect("lock").clone();
    let last = &batches[batches.len() - 1][0].key;
    assert!(last.contains("{api:ip:198.51.100.2}"), "{last}");
}

#[tokio::test]
async fn admin_mode_needs_the_token_and_switches_to_degraded_limits() {
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
    let bearer = format!("Bearer {TOKEN}");
    let r = t
        .call_body(
            "PUT",
            "/admin/mode",
            &[("authorization", &bearer)],
            PEER,
            Body::from(r#"{"mode":"PANIC"}"#),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = t
        .call_body(
            "PUT",
            "/admin/mode",
            &[("authorization", &bearer)],
            PEER,
            body(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["mode"], "DEGRADED");
    let r = t
        .call("GET", "/admin/mode", &[("authorization", &bearer)], PEER)
        .await;
    assert_eq!(r.json["mode"], "DEGRADED");

    // Free tier now has one unit per second under a separate key.
    let r = t.call("POST", "/v1/check/api", &[], PEER).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json["mode"], "DEGRADED");
    assert_eq!(r.h("x-ratelimit-limit"), Some("1"));
    let r = t.call("POST", "/v1/check/api", &[], PEER).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    let batches = t.fake.batches.lock().expect("lock").clone();
    assert!(
        batches[0][0].key.ends_with(":free:d:second"),
        "{}",
        batches[0][0].key
    );
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
    assert_eq!(
        r.h("ratelimit-policy"),
        Some("\"free.second\";q=3;w=3, \"free.day\";q=2;w=86400")
    );
    let r = t.call("GET", "/v1/auth/api", &[], PEER).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn auth_endpoint_speaks_nginx_auth_request() {
    let t = Harness::new(config(""));
    for _ in 0..2 {
        let r = t.call("GET", "/v1/auth/api", &[], PEER).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT);
        assert!(r.h("x-ratelimit-remaining").is_some());
        assert_eq!(r.h("x-ratelimit-denied"), None);
    }
    let r = t.call("POST", "/v1/auth/api", &[], PEER).await;
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
            .contains("shim_decisions_total{endpoint=\"check\",outcome=\"allowed\"} 1"),
        "{}",
        m.text
    );
    assert!(m.text.contains("shim_redis_seconds_bucket"));
    let o = t.call("GET", "/openapi.json", &[], PEER).await;
    assert_eq!(o.status, StatusCode::OK);
    for path in [
        "/v1/tokenbucket/{key}",
        "/v1/fixedwindow/{key}",
        "/v1/sliding/{key}",
        "/v1/check/{policy}",
        "/v1/auth/{policy}",
        "/admin/mode",
        "/health",
        "/ready",
        "/metrics",
    ] {
        assert!(o.json["paths"][path].is_object(), "openapi lacks {path}");
    }
    let r = t
        .call("GET", "/v1/tokenbucket/k?capacity=1&rate=1", &[], PEER)
        .await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.h("content-type"), Some("application/problem+json"));
    let r = t.call("GET", "/nope", &[], PEER).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.h("content-type"), Some("application/problem+json"));
}

#[tokio::test]
async fn raw_endpoints_can_be_disabled() {
    let mut cfg = config("");
    cfg.raw_enabled = false;
    let t = Harness::new(cfg);
    let r = t
        .call("POST", "/v1/tokenbucket/k?capacity=1&rate=1", &[], PEER)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}
