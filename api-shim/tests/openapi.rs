//! `openapi.json` and the router cannot drift: every routed path and method
//! is documented, every documented path and method is routed (probed through
//! the real router), and every `$ref` resolves.

use std::collections::BTreeSet;
use std::sync::Arc;

use api_shim::backend::fake::FakeBackend;
use api_shim::config::Config;
use api_shim::http::ops::OPENAPI;
use api_shim::http::route_table;
use api_shim::{app, AppState};
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use serde_json::Value;
use tower::ServiceExt;

const PROBED: [&str; 6] = ["get", "post", "put", "delete", "patch", "options"];

fn doc() -> Value {
    serde_json::from_str(OPENAPI).expect("openapi.json is JSON")
}

fn state() -> AppState {
    let cfg = Config::from_toml(
        r#"
[admin]
token = "0123456789abcdef-admin"
[raw]
enabled = true
[policies.api]
default_tier = "free"
[policies.api.tiers.free]
limits = [{ name = "burst", algorithm = "tokenbucket", capacity = 100, rate = 1 }]
"#,
        |_| None,
    )
    .expect("config");
    AppState::new(cfg, Arc::new(FakeBackend::new())).expect("state")
}

/// Is `method path` routed? A 405 (or the fallback's 404 problem) says no.
async fn routed(state: &AppState, method: &str, path: &str) -> bool {
    let uri = path
        .replace("{key}", "k")
        .replace("{policy}", "api")
        .replace("{id}", "lease-1")
        .replace("{file}", "index.html");
    let req = Request::builder()
        .method(Method::from_bytes(method.to_ascii_uppercase().as_bytes()).expect("method"))
        .uri(uri)
        .body(Body::empty())
        .expect("request");
    let resp = app(state.clone()).oneshot(req).await.expect("infallible");
    if resp.status() == StatusCode::METHOD_NOT_ALLOWED {
        return false;
    }
    let status = resp.status();
    let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .expect("body");
    !(status == StatusCode::NOT_FOUND
        && String::from_utf8_lossy(&body).contains("no such endpoint"))
}

#[tokio::test]
async fn every_route_is_documented_and_every_documented_route_is_served() {
    let d = doc();
    let paths = d["paths"].as_object().expect("paths");
    let documented: BTreeSet<&str> = paths.keys().map(String::as_str).collect();
    let routes: BTreeSet<&str> = route_table().into_iter().map(|(p, _)| p).collect();
    assert_eq!(documented, routes, "openapi.json paths vs the router");

    let state = state();
    for (path, ops) in paths {
        for method in PROBED {
            let is_documented = ops.get(method).is_some();
            let is_routed = routed(&state, method, path).await;
            assert_eq!(
                is_documented, is_routed,
                "{method} {path}: documented={is_documented}, routed={is_routed}"
            );
        }
    }
}

fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                if k == "$ref" {
                    if let Some(s) = v.as_str() {
                        out.push(s);
                    }
                }
                refs(v, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

#[test]
fn every_reference_resolves_and_admin_auth_identity_and_shim_headers_are_described() {
    let d = doc();
    let mut all = vec![];
    refs(&d, &mut all);
    assert!(!all.is_empty());
    for r in all {
        let pointer = r.strip_prefix('#').expect("local ref");
        assert!(d.pointer(pointer).is_some(), "dangling {r}");
    }
    // The mode's POST and its 503/409, DELETE on auth, the identity
    // parameter and the shim's own headers, each documented.
    assert!(d.pointer("/paths/~1admin~1mode/post").is_some());
    assert!(d
        .pointer("/paths/~1admin~1mode/get/responses/503")
        .is_some());
    assert!(d
        .pointer("/paths/~1admin~1mode/get/responses/409")
        .is_some());
    assert!(d.pointer("/paths/~1v1~1auth~1{policy}/delete").is_some());
    assert!(d.pointer("/components/parameters/identity").is_some());
    assert!(d
        .pointer("/components/headers/X-RateLimit-Fail-Open")
        .is_some());
    assert!(d.pointer("/components/headers/X-RateLimit-Tier").is_some());
    assert!(d.pointer("/components/headers/X-System-Health").is_some());
}
