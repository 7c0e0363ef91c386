//! Routes and handlers. [`app`] builds the whole service so tests can drive it
//! with `tower::ServiceExt::oneshot`, without a socket.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::connect_info::{ConnectInfo, MockConnectInfo};
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Json, Router};
use serde_json::json;

use crate::backend::{Algorithm, Backend, Call, Reply, SystemMode};
use crate::config::{check_count, check_positive, parse_sliding_mode, Config, Policy, MAX_COUNT};
use crate::decision::{
    policy_item, Checked, Decision, RATELIMIT_POLICY, X_RATELIMIT_DENIED, X_RATELIMIT_ERROR,
    X_RATELIMIT_FAIL_OPEN,
};
use crate::error::{problem, ApiError};
use crate::identity::{client_ip, hashed, secret_eq};
use crate::metrics::Metrics;

/// Longest key accepted on the raw endpoints, in bytes.
pub const MAX_KEY_BYTES: usize = 512;

/// Everything a handler needs; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub cfg: Arc<Config>,
    pub backend: Arc<dyn Backend>,
    pub metrics: Arc<Metrics>,
    mode: Arc<ModeCache>,
}

impl AppState {
    pub fn new(cfg: Config, backend: Arc<dyn Backend>) -> Result<AppState, prometheus::Error> {
        let mode = Arc::new(ModeCache::new(cfg.mode_cache));
        Ok(AppState {
            cfg: Arc::new(cfg),
            backend,
            metrics: Arc::new(Metrics::new()?),
            mode,
        })
    }
}

/// The shared NORMAL/DEGRADED flag, cached for `mode_cache_ms`.
///
/// Reading it from Redis on every decision would double the round trips, and
/// it cannot ride in the decision's pipeline because it decides which limits
/// go there. So each shim keeps a copy for a short time (default 1 s); one
/// request refreshes it while the others use the copy. With `mode_cache_ms = 0`
/// it is read on every decision.
struct ModeCache {
    ttl: Duration,
    current: std::sync::RwLock<(SystemMode, Option<Instant>)>,
    refreshing: tokio::sync::Mutex<()>,
}

impl ModeCache {
    fn new(ttl: Duration) -> Self {
        ModeCache {
            ttl,
            current: std::sync::RwLock::new((SystemMode::Normal, None)),
            refreshing: tokio::sync::Mutex::new(()),
        }
    }

    fn snapshot(&self) -> (SystemMode, Option<Instant>) {
        self.current
            .read()
            .map(|g| *g)
            .unwrap_or((SystemMode::Normal, None))
    }

    fn store(&self, mode: SystemMode) {
        if let Ok(mut g) = self.current.write() {
            *g = (mode, Some(Instant::now()));
        }
    }

    async fn get(&self, backend: &dyn Backend) -> SystemMode {
        let (mode, at) = self.snapshot();
        let fresh = at.is_some_and(|t| t.elapsed() < self.ttl);
        if fresh {
            return mode;
        }
        // Only one request refreshes; the rest go on with the last known value.
        let Ok(_guard) = self.refreshing.try_lock() else {
            return mode;
        };
        match backend.get_mode().await {
            Ok(m) => {
                self.store(m);
                m
            }
            Err(e) => {
                // Keep the last known mode; the decision itself will report
                // the outage if Redis is really gone.
                tracing::debug!(error = %e, "cannot refresh system mode");
                self.store(mode);
                mode
            }
        }
    }
}

/// Builds the service.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/v1/tokenbucket/{key}", post(raw_tokenbucket))
        .route("/v1/fixedwindow/{key}", post(raw_fixedwindow))
        .route("/v1/sliding/{key}", post(raw_sliding))
        .route("/v1/check/{policy}", post(check))
        // auth_request subrequests keep the original method, so accept any.
        .route("/v1/auth/{policy}", any(auth))
        .route(
            "/admin/mode",
            get(admin_get_mode).put(admin_set_mode).post(admin_set_mode),
        )
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .fallback(|| async { ApiError::NotFound("no such endpoint".to_owned()) })
        .method_not_allowed_fallback(|| async {
            problem(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed on this endpoint (decisions are POST)",
                json!({}),
                HeaderMap::new(),
            )
        })
        .with_state(state)
}

// ---------------------------------------------------------------- extractors

/// The TCP peer's address, if the server was started with connect info.
struct Peer(IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let ip = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip())
            .or_else(|| {
                parts
                    .extensions
                    .get::<MockConnectInfo<SocketAddr>>()
                    .map(|c| c.0.ip())
            })
            // Without connect info (in-process tests) all callers share one
            // address, which is the conservative choice.
            .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        Ok(Peer(ip))
    }
}

type Params = HashMap<String, String>;

fn query(q: Result<Query<Params>, QueryRejection>) -> Result<Params, ApiError> {
    q.map(|Query(p)| p)
        .map_err(|e| ApiError::BadRequest(format!("bad query string: {}", e.body_text())))
}

fn path_param(p: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    p.map(|Path(s)| s)
        .map_err(|e| ApiError::BadRequest(format!("bad path: {}", e.body_text())))
}

/// Refuses parameters we do not know: a typo like `capactiy=` should fail
/// loudly, not fall back to a default.
fn only_known(p: &Params, known: &[&str]) -> Result<(), ApiError> {
    let mut unknown: Vec<&str> = p
        .keys()
        .map(String::as_str)
        .filter(|k| !known.contains(k))
        .collect();
    unknown.sort_unstable();
    match unknown.first() {
        None => Ok(()),
        Some(_) => Err(ApiError::BadRequest(format!(
            "unknown parameter(s) {}; expected {}",
            unknown.join(", "),
            known.join(", ")
        ))),
    }
}

fn count_param(p: &Params, name: &str) -> Result<u64, ApiError> {
    let s = p
        .get(name)
        .ok_or_else(|| ApiError::BadRequest(format!("`{name}` is required")))?;
    let v: u64 = s
        .parse()
        .map_err(|_| ApiError::BadRequest(format!("`{name}` must be a whole number, got `{s}`")))?;
    check_count(&format!("`{name}`"), v).map_err(ApiError::BadRequest)
}

fn decimal_param(p: &Params, name: &str) -> Result<f64, ApiError> {
    let s = p
        .get(name)
        .ok_or_else(|| ApiError::BadRequest(format!("`{name}` is required")))?;
    let v: f64 = s
        .parse()
        .map_err(|_| ApiError::BadRequest(format!("`{name}` must be a number, got `{s}`")))?;
    check_positive(&format!("`{name}`"), v).map_err(ApiError::BadRequest)
}

/// `cost` defaults to 1; 0 inspects without consuming.
fn cost_param(p: &Params) -> Result<u64, ApiError> {
    match p.get("cost") {
        None => Ok(1),
        Some(s) => {
            let v: u64 = s.parse().map_err(|_| {
                ApiError::BadRequest(format!("`cost` must be a whole number >= 0, got `{s}`"))
            })?;
            if v > MAX_COUNT {
                Err(ApiError::BadRequest(format!(
                    "`cost` must be at most {MAX_COUNT}"
                )))
            } else {
                Ok(v)
            }
        }
    }
}

fn check_key(key: &str) -> Result<(), ApiError> {
    if key.len() > MAX_KEY_BYTES {
        Err(ApiError::BadRequest(format!(
            "key is {} bytes; at most {MAX_KEY_BYTES} are allowed",
            key.len()
        )))
    } else if key.is_empty() {
        Err(ApiError::BadRequest("key must not be empty".to_owned()))
    } else {
        Ok(())
    }
}

// ---------------------------------------------------------------- raw endpoints

#[derive(Clone, Copy)]
enum RawKind {
    TokenBucket,
    FixedWindow,
    Sliding,
}

/// `POST /v1/tokenbucket/{key}?capacity=&rate=&cost=`
async fn raw_tokenbucket(
    State(st): State<AppState>,
    key: Result<Path<String>, PathRejection>,
    q: Result<Query<Params>, QueryRejection>,
) -> Response {
    raw(st, RawKind::TokenBucket, key, q).await
}

/// `POST /v1/fixedwindow/{key}?limit=&window=&cost=`
async fn raw_fixedwindow(
    State(st): State<AppState>,
    key: Result<Path<String>, PathRejection>,
    q: Result<Query<Params>, QueryRejection>,
) -> Response {
    raw(st, RawKind::FixedWindow, key, q).await
}

/// `POST /v1/sliding/{key}?limit=&window=&cost=&mode=exact|approx`
async fn raw_sliding(
    State(st): State<AppState>,
    key: Result<Path<String>, PathRejection>,
    q: Result<Query<Params>, QueryRejection>,
) -> Response {
    raw(st, RawKind::Sliding, key, q).await
}

fn raw_algorithm(kind: RawKind, p: &Params) -> Result<(&'static str, Algorithm), ApiError> {
    Ok(match kind {
        RawKind::TokenBucket => {
            only_known(p, &["capacity", "rate", "cost"])?;
            (
                "tokenbucket",
                Algorithm::TokenBucket {
                    capacity: count_param(p, "capacity")?,
                    rate: decimal_param(p, "rate")?,
                },
            )
        }
        RawKind::FixedWindow => {
            only_known(p, &["limit", "window", "cost"])?;
            (
                "fixedwindow",
                Algorithm::FixedWindow {
                    limit: count_param(p, "limit")?,
                    window: decimal_param(p, "window")?,
                },
            )
        }
        RawKind::Sliding => {
            only_known(p, &["limit", "window", "cost", "mode"])?;
            let mode = match p.get("mode") {
                None => crate::backend::SlidingMode::Exact,
                Some(m) => parse_sliding_mode("`mode`", m).map_err(ApiError::BadRequest)?,
            };
            (
                "sliding",
                Algorithm::Sliding {
                    limit: count_param(p, "limit")?,
                    window: decimal_param(p, "window")?,
                    mode,
                },
            )
        }
    })
}

async fn raw(
    st: AppState,
    kind: RawKind,
    key: Result<Path<String>, PathRejection>,
    q: Result<Query<Params>, QueryRejection>,
) -> Response {
    let result = async {
        if !st.cfg.raw_enabled {
            return Err(ApiError::NotFound("raw endpoints are disabled".to_owned()));
        }
        let key = path_param(key)?;
        check_key(&key)?;
        let p = query(q)?;
        let (name, algorithm) = raw_algorithm(kind, &p)?;
        let cost = cost_param(&p)?;
        let call = Call {
            key: format!("{}{key}", st.cfg.raw_key_prefix),
            algorithm: algorithm.clone(),
            cost,
        };
        let limits = [(name.to_owned(), algorithm)];
        decide(&st, "raw", vec![call], &limits).await
    }
    .await;
    match result {
        Ok(Outcome::Decided(d)) => st_respond(&st, "raw", &d, json!({})),
        Ok(Outcome::FailOpen(policy)) => fail_open_response(&st, "raw", policy),
        Err(e) => error_response(&st, "raw", e),
    }
}

// ---------------------------------------------------------------- policy endpoints

/// What a policy request resolved to.
struct Resolved<'a> {
    policy: &'a Policy,
    tier: String,
    identity: String,
    mode: SystemMode,
    cost: u64,
}

async fn resolve<'a>(
    st: &'a AppState,
    policy: &str,
    peer: IpAddr,
    headers: &HeaderMap,
    p: &Params,
) -> Result<Resolved<'a>, ApiError> {
    let policy = st
        .cfg
        .policies
        .get(policy)
        .ok_or_else(|| ApiError::NotFound(format!("unknown policy `{policy}`")))?;
    only_known(p, &["cost"])?;
    let cost = cost_param(p)?;

    let header_value = policy
        .identity_header
        .as_ref()
        .and_then(|h| headers.get(h))
        .map(HeaderValue::as_bytes)
        .filter(|v| !v.is_empty());
    let (identity, tier) = match header_value {
        Some(v) => {
            let known_tier = std::str::from_utf8(v)
                .ok()
                .and_then(|k| st.cfg.api_keys.get(k))
                .filter(|t| policy.tiers.contains_key(*t));
            let tier = match known_tier {
                Some(t) => t.clone(),
                None if policy.reject_unknown_keys => {
                    return Err(ApiError::Unauthorized("unknown API key".to_owned()))
                }
                None => policy.default_tier.clone(),
            };
            (format!("h:{}", hashed(v)), tier)
        }
        None => {
            if policy.reject_unknown_keys {
                return Err(ApiError::Unauthorized("an API key is required".to_owned()));
            }
            let ip = client_ip(peer, headers, &st.cfg.trusted_proxies);
            (format!("ip:{ip}"), policy.default_tier.clone())
        }
    };
    let mode = st.mode.get(st.backend.as_ref()).await;
    Ok(Resolved {
        policy,
        tier,
        identity,
        mode,
        cost,
    })
}

enum Outcome {
    Decided(Decision),
    /// Redis is down and `fail_open = true`: the policy header to send.
    FailOpen(HeaderValue),
}

/// Evaluates a policy: builds one call per limit, all under the hash tag
/// `{policy:identity}` so they live in one cluster slot, and sends them in one
/// pipeline.
async fn decide_policy(
    st: &AppState,
    endpoint: &str,
    r: &Resolved<'_>,
) -> Result<Outcome, ApiError> {
    let tier = r.policy.tiers.get(&r.tier).ok_or(ApiError::Internal)?;
    // DEGRADED limits get their own keys: the same name may use another
    // algorithm there, and one key cannot hold two algorithms. A tier without
    // DEGRADED limits keeps its NORMAL keys, so switching gives nobody a fresh
    // bucket.
    let (limits, mode_tag) = match (r.mode, &tier.degraded) {
        (SystemMode::Degraded, Some(d)) => (d, "d"),
        _ => (&tier.normal, "n"),
    };
    let calls = limits
        .iter()
        .map(|l| Call {
            key: format!(
                "{}{{{}:{}}}:{}:{mode_tag}:{}",
                st.cfg.key_prefix, r.policy.name, r.identity, r.tier, l.name
            ),
            algorithm: l.algorithm.clone(),
            cost: r.cost,
        })
        .collect();
    let named = limits
        .iter()
        .map(|l| (format!("{}.{}", r.tier, l.name), l.algorithm.clone()))
        .collect::<Vec<_>>();
    decide(st, endpoint, calls, &named).await
}

/// One round trip; fail-open handling.
async fn decide(
    st: &AppState,
    endpoint: &str,
    calls: Vec<Call>,
    limits: &[(String, Algorithm)],
) -> Result<Outcome, ApiError> {
    let started = Instant::now();
    let result = st.backend.run(&calls).await;
    st.metrics
        .redis_seconds
        .with_label_values(&[endpoint])
        .observe(started.elapsed().as_secs_f64());
    let replies: Vec<Reply> = match result {
        Ok(r) => r,
        Err(e) => {
            let err = ApiError::from(e);
            if st.cfg.fail_open && matches!(err, ApiError::Unavailable) {
                let items = limits
                    .iter()
                    .map(|(n, a)| policy_item(n, a))
                    .collect::<Vec<_>>()
                    .join(", ");
                return Ok(Outcome::FailOpen(
                    HeaderValue::from_str(&items).unwrap_or(HeaderValue::from_static("")),
                ));
            }
            return Err(err);
        }
    };
    if replies.len() != limits.len() {
        tracing::error!(
            expected = limits.len(),
            got = replies.len(),
            "reply count mismatch"
        );
        return Err(ApiError::Internal);
    }
    let items = limits
        .iter()
        .zip(replies)
        .map(|((name, algorithm), reply)| Checked {
            name: name.clone(),
            algorithm: algorithm.clone(),
            reply,
        })
        .collect();
    Ok(Outcome::Decided(Decision::combine(items)))
}

fn limits_json(d: &Decision) -> serde_json::Value {
    d.items
        .iter()
        .map(|c| {
            json!({
                "name": c.name,
                "allowed": c.reply.allowed,
                "limit": c.reply.limit,
                "remaining": c.reply.remaining,
                "retry_after_ms": c.reply.retry_after_ms,
                "reset_after_ms": c.reply.reset_after_ms,
            })
        })
        .collect()
}

/// 200 with the decision as JSON, or 429 problem+json.
fn st_respond(st: &AppState, endpoint: &str, d: &Decision, extra: serde_json::Value) -> Response {
    let headers = d.headers();
    let Some(b) = d.binding() else {
        return error_response(st, endpoint, ApiError::Internal);
    };
    let mut body = json!({
        "allowed": d.allowed,
        "limit": b.reply.limit,
        "remaining": b.reply.remaining.max(0),
        "retry_after_ms": if d.allowed { 0 } else { b.reply.retry_after_ms },
        "reset_after_ms": b.reply.reset_after_ms,
        "binding": b.name,
        "limits": limits_json(d),
    });
    if let (Some(o), serde_json::Value::Object(e)) = (body.as_object_mut(), extra) {
        o.extend(e);
    }
    if d.allowed {
        st.metrics.decision(endpoint, "allowed");
        (StatusCode::OK, headers, Json(body)).into_response()
    } else {
        st.metrics.decision(endpoint, "denied");
        let detail = if d.never() {
            format!(
                "the cost exceeds limit `{}`; this request can never be granted",
                b.name
            )
        } else {
            format!("limit `{}` exceeded; retry later", b.name)
        };
        problem(StatusCode::TOO_MANY_REQUESTS, &detail, body, headers)
    }
}

fn fail_open_response(st: &AppState, endpoint: &str, policy: HeaderValue) -> Response {
    st.metrics.decision(endpoint, "fail_open");
    let mut h = HeaderMap::new();
    h.insert(RATELIMIT_POLICY, policy);
    h.insert(X_RATELIMIT_FAIL_OPEN, HeaderValue::from_static("1"));
    let status = if endpoint == "auth" {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::OK
    };
    (status, h, Json(json!({"allowed": true, "fail_open": true}))).into_response()
}

fn error_response(st: &AppState, endpoint: &str, e: ApiError) -> Response {
    st.metrics.decision(endpoint, e.label());
    e.into_response()
}

/// `POST /v1/check/{policy}[?cost=]`: identity from the policy's header or the
/// client address; answers 200 or 429.
async fn check(
    State(st): State<AppState>,
    Peer(peer): Peer,
    policy: Result<Path<String>, PathRejection>,
    q: Result<Query<Params>, QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let result = async {
        let policy = path_param(policy)?;
        let p = query(q)?;
        let r = resolve(&st, &policy, peer, &headers, &p).await?;
        let outcome = decide_policy(&st, "check", &r).await?;
        Ok::<_, ApiError>((outcome, r.policy.name.clone(), r.tier, r.mode))
    }
    .await;
    match result {
        Ok((Outcome::Decided(d), policy, tier, mode)) => st_respond(
            &st,
            "check",
            &d,
            json!({"policy": policy, "tier": tier, "mode": mode.as_str()}),
        ),
        Ok((Outcome::FailOpen(h), ..)) => fail_open_response(&st, "check", h),
        Err(e) => error_response(&st, "check", e),
    }
}

/// `GET|POST /v1/auth/{policy}` for Nginx `auth_request`: 204 when allowed;
/// 403 with `X-RateLimit-Denied: 1` when limited; 403 with
/// `X-RateLimit-Error: unavailable|error` when the decision failed (Nginx
/// treats any other status as its own 500, losing the difference); 401 when an
/// API key is required or unknown (Nginx passes 401 through).
async fn auth(
    State(st): State<AppState>,
    Peer(peer): Peer,
    policy: Result<Path<String>, PathRejection>,
    q: Result<Query<Params>, QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let result = async {
        let policy = path_param(policy)?;
        let p = query(q)?;
        let r = resolve(&st, &policy, peer, &headers, &p).await?;
        decide_policy(&st, "auth", &r).await
    }
    .await;
    match result {
        Ok(Outcome::Decided(d)) => {
            let mut h = d.headers();
            if d.allowed {
                st.metrics.decision("auth", "allowed");
                (StatusCode::NO_CONTENT, h).into_response()
            } else {
                st.metrics.decision("auth", "denied");
                h.insert(X_RATELIMIT_DENIED, HeaderValue::from_static("1"));
                (StatusCode::FORBIDDEN, h).into_response()
            }
        }
        Ok(Outcome::FailOpen(h)) => fail_open_response(&st, "auth", h),
        Err(e @ ApiError::Unauthorized(_)) => error_response(&st, "auth", e),
        Err(e) => {
            st.metrics.decision("auth", e.label());
            let marker = if matches!(e, ApiError::Unavailable) {
                "unavailable"
            } else {
                tracing::warn!(error = %e, "auth_request decision failed");
                "error"
            };
            let mut h = HeaderMap::new();
            h.insert(X_RATELIMIT_ERROR, HeaderValue::from_static(marker));
            (StatusCode::FORBIDDEN, h).into_response()
        }
    }
}

// ---------------------------------------------------------------- admin

fn admin_auth(st: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(token) = st.cfg.admin_token.as_deref() else {
        return Err(ApiError::NotFound(
            "admin endpoints are disabled (no admin.token configured)".to_owned(),
        ));
    };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| ApiError::Unauthorized("a bearer token is required".to_owned()))?;
    if secret_eq(presented.trim().as_bytes(), token.as_bytes()) {
        Ok(())
    } else {
        tracing::warn!("admin request with a wrong token");
        Err(ApiError::Unauthorized("wrong token".to_owned()))
    }
}

/// `GET /admin/mode` (bearer token): the mode stored in Redis.
async fn admin_get_mode(State(st): State<AppState>, headers: HeaderMap) -> Response {
    let r = async {
        admin_auth(&st, &headers)?;
        let m = st.backend.get_mode().await?;
        Ok::<_, ApiError>(Json(json!({"mode": m.as_str()})))
    }
    .await;
    r.into_response()
}

/// `PUT|POST /admin/mode` (bearer token), body `{"mode":"NORMAL"|"DEGRADED"}`.
async fn admin_set_mode(State(st): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let r = async {
        admin_auth(&st, &headers)?;
        #[derive(serde::Deserialize)]
        struct Body {
            mode: String,
        }
        let b: Body = serde_json::from_slice(&body).map_err(|_| {
            ApiError::BadRequest(
                r#"body must be {"mode": "NORMAL"} or {"mode": "DEGRADED"}"#.to_owned(),
            )
        })?;
        let mode = match b.mode.to_ascii_uppercase().as_str() {
            "NORMAL" => SystemMode::Normal,
            "DEGRADED" => SystemMode::Degraded,
            _ => {
                return Err(ApiError::BadRequest(format!(
                    "mode must be NORMAL or DEGRADED, got `{}`",
                    b.mode
                )))
            }
        };
        st.backend.set_mode(mode).await?;
        // This shim switches at once; the others within their cache time.
        st.mode.store(mode);
        tracing::info!(mode = mode.as_str(), "system mode changed");
        Ok::<_, ApiError>(Json(json!({"mode": mode.as_str()})))
    }
    .await;
    r.into_response()
}

// ---------------------------------------------------------------- operations

/// `GET /health`: the process is up (no Redis call).
async fn health() -> Response {
    Json(json!({"status": "ok"})).into_response()
}

/// `GET /ready`: Redis answers PING and the module is loaded.
async fn ready(State(st): State<AppState>) -> Response {
    match st.backend.readiness().await {
        Ok(r) if r.module_loaded => Json(json!({"status": "ready"})).into_response(),
        Ok(_) => problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "redis is reachable but the ratelimit module is not loaded",
            json!({}),
            HeaderMap::new(),
        ),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "redis is unreachable",
                json!({}),
                HeaderMap::new(),
            )
        }
    }
}

/// `GET /metrics`: Prometheus text format.
async fn metrics(State(st): State<AppState>) -> Response {
    match st.metrics.render() {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4"),
            )],
            text,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "metrics encoding failed");
            ApiError::Internal.into_response()
        }
    }
}

/// The hand-written OpenAPI document, kept next to the code it describes.
pub const OPENAPI: &str = include_str!("../openapi.json");

/// `GET /openapi.json`
async fn openapi() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        OPENAPI,
    )
        .into_response()
}
