//! Concurrency leases over HTTP against the in-memory backend: a policy
//! mixing a rate limit with a `concurrency` limit hands out leases
//! (`POST /v1/acquire/{policy}`: body `lease`, header `X-Lease-Id`), which
//! `DELETE /v1/leases/{policy}/{id}` frees; configuration errors name the
//! field. The module side (ttl expiry, replication) is tested in the
//! module's `tests/leases.rs`.

use std::net::SocketAddr;
use std::sync::Arc;

use api_shim::backend::fake::FakeBackend;
use api_shim::config::Config;
use api_shim::{app, AppState};
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

const POLICIES: &str = r#"
[policies.gpu]
identity_header = "X-API-Key"
default_tier = "free"
[policies.gpu.tiers.free]
limits = [
  { name = "rate", algorithm = "tokenbucket", capacity = 100, rate = 10 },
  { name = "inflight", algorithm = "concurrency", limit = 2, ttl = 30 },
]
[policies.plain]
default_tier = "free"
[policies.plain.tiers.free]
limits = [{ name = "rate", algorithm = "tokenbucket", capacity = 100, rate = 10 }]
"#;

fn state() -> (Arc<FakeBackend>, AppState) {
    let cfg = Config::from_toml(POLICIES, |_| None).expect("config");
    let fake = Arc::new(FakeBackend::new());
    let state = AppState::new(cfg, fake.clone()).expect("state");
    (fake, state)
}

async fn call(
    state: &AppState,
    method: &str,
    uri: &str,
    key: &str,
) -> (StatusCode, Option<String>, Value) {
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .header("X-API-Key", key)
        .body(Body::empty())
        .expect("request");
    let addr: SocketAddr = "203.0.113.7:40000".parse().expect("peer");
    req.extensions_mut().insert(ConnectInfo(addr));
    let resp = app(state.clone()).oneshot(req).await.expect("infallible");
    let status = resp.status();
    let lease = resp
        .headers()
        .get("x-lease-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    (
        status,
        lease,
        serde_json::from_str(&String::from_utf8_lossy(&bytes)).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn acquire_work_release() {
    let (fake, st) = state();
    let (s1, h1, b1) = call(&st, "POST", "/v1/acquire/gpu", "k").await;
    assert_eq!(s1, StatusCode::OK, "{b1}");
    let first = b1["lease"].as_str().expect("lease in the body").to_owned();
    assert_eq!(h1.as_deref(), Some(first.as_str()));
    let (s2, _, b2) = call(&st, "POST", "/v1/acquire/gpu", "k").await;
    assert_eq!(s2, StatusCode::OK, "{b2}");
    // Two held: the third is refused, with no lease.
    let (s3, h3, b3) = call(&st, "POST", "/v1/acquire/gpu", "k").await;
    assert_eq!(s3, StatusCode::TOO_MANY_REQUESTS, "{b3}");
    assert_eq!((h3, b3.get("lease")), (None, None));
    assert_eq!(b3["binding"], "inflight");
    // Release: true once, then false (idempotent).
    let uri = format!("/v1/leases/gpu/{first}");
    let (s, _, b) = call(&st, "DELETE", &uri, "k").await;
    assert_eq!(
        (s, b["released"].as_bool()),
        (StatusCode::OK, Some(true)),
        "{b}"
    );
    let (s, _, b) = call(&st, "DELETE", &uri, "k").await;
    assert_eq!(
        (s, b["released"].as_bool()),
        (StatusCode::OK, Some(false)),
        "{b}"
    );
    // Another caller cannot free it (another key).
    let (_, _, b) = call(&st, "DELETE", "/v1/leases/gpu/whatever", "other").await;
    assert_eq!(b["released"].as_bool(), Some(false));
    // A slot is free again.
    let (s, h, _) = call(&st, "POST", "/v1/acquire/gpu", "k").await;
    assert_eq!(s, StatusCode::OK);
    assert!(h.is_some());
    // The module saw one RL.LIMITS with CONCURRENCY and the releases.
    let sent = fake.decisions();
    assert!(sent
        .iter()
        .any(|c| c.command == "RL.LIMITS" && c.args.join(" ").contains("CONCURRENCY 2 30")));
    assert_eq!(sent.iter().filter(|c| c.command == "RL.RELEASE").count(), 3);
}

#[tokio::test]
async fn only_policies_with_a_concurrency_limit_hand_out_leases() {
    let (_, st) = state();
    let (s, _, b) = call(&st, "POST", "/v1/acquire/plain", "k").await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    assert!(
        b["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("no `concurrency` limit"),
        "{b}"
    );
    let (s, _, _) = call(&st, "POST", "/v1/acquire/nope", "k").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let long = "x".repeat(65);
    let (s, _, b) = call(&st, "DELETE", &format!("/v1/leases/gpu/{long}"), "k").await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    // /v1/check on a leasing policy reports the lease it took.
    let (s, h, b) = call(&st, "POST", "/v1/check/gpu", "k").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(h.as_deref(), b["lease"].as_str());
}

#[test]
fn concurrency_limits_are_checked_like_the_module_checks_them() {
    let tier = |limits: &str| {
        format!("[policies.p]\ndefault_tier = \"t\"\n[policies.p.tiers.t]\nlimits = [{limits}]\n")
    };
    for (limits, want) in [
        (
            r#"{ name = "c", algorithm = "concurrency", limit = 2 }"#,
            "ttl is required",
        ),
        (
            r#"{ name = "c", algorithm = "concurrency", ttl = 2 }"#,
            "limit is required",
        ),
        (
            r#"{ name = "c", algorithm = "concurrency", limit = 2, ttl = 0.0005 }"#,
            "ttl must be a whole number of milliseconds",
        ),
        (
            r#"{ name = "c", algorithm = "concurrency", limit = 2, ttl = 1, window = 1 }"#,
            "window does not apply",
        ),
        (
            r#"{ name = "t", algorithm = "tokenbucket", capacity = 1, rate = 1, ttl = 1 }"#,
            "ttl does not apply",
        ),
        (
            r#"{ name = "a", algorithm = "concurrency", limit = 2, ttl = 1 }, { name = "b", algorithm = "concurrency", limit = 2, ttl = 1 }"#,
            "one request holds at most one lease",
        ),
    ] {
        let e = Config::from_toml(&tier(limits), |_| None).expect_err(limits);
        assert!(e.to_string().contains(want), "{limits}: {e}");
    }
}
