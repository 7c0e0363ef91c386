//! The route table, [`app`], and the edge middleware.
//!
//! [`route_table`] is the one list of routes: [`app`] is built from it and the
//! OpenAPI test compares it with `openapi.json`, so neither can drift.

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{delete, get, post, MethodRouter};
use axum::Router;
use serde_json::json;

use super::state::{AppState, DecisionInfo};
use super::{admin, check, docs, leases, ops, raw, status};
use crate::config::DecisionLog;
use crate::error::{problem, ApiError, ErrorCause, Outcome};

/// Every route: path and its method router.
pub fn route_table() -> Vec<(&'static str, MethodRouter<AppState>)> {
    vec![
        // Decisions answer GET as well as POST: the seed systems' clients
        // call GET (their limited endpoints are GETs).
        (
            "/v1/tokenbucket/{key}",
            get(raw::tokenbucket).post(raw::tokenbucket),
        ),
        (
            "/v1/fixedwindow/{key}",
            get(raw::fixedwindow).post(raw::fixedwindow),
        ),
        (
            "/v1/sliding/{key}",
            get(raw::sliding_window).post(raw::sliding_window),
        ),
        ("/v1/check/{policy}", get(check::check).post(check::check)),
        ("/v1/status/{policy}", get(status::status)),
        ("/v1/acquire/{policy}", post(leases::acquire)),
        ("/v1/leases/{policy}/{id}", delete(leases::release)),
        // auth_request subrequests keep the original method unless the
        // proxy sets one (the shipped Nginx config sends GET): the standard
        // methods an application serves are accepted; others (TRACE,
        // CONNECT, extensions) answer 405 with `Allow`, as the document says.
        (
            "/v1/auth/{policy}",
            get(check::auth)
                .post(check::auth)
                .put(check::auth)
                .delete(check::auth)
                .patch(check::auth)
                .head(check::auth)
                .options(check::auth),
        ),
        (
            "/admin/mode",
            get(admin::get_mode)
                .put(admin::set_mode)
                .post(admin::set_mode),
        ),
        ("/health", get(ops::health)),
        ("/ready", get(ops::ready)),
        ("/metrics", get(ops::metrics)),
        ("/openapi.json", get(ops::openapi)),
        ("/docs", get(docs::redirect)),
        ("/docs/", get(docs::index)),
        ("/docs/{file}", get(docs::asset)),
    ]
}

/// The decision endpoint a matched route belongs to (metrics label).
fn endpoint(path: &str) -> Option<&'static str> {
    match path {
        "/v1/check/{policy}" => Some("check"),
        "/v1/acquire/{policy}" => Some("acquire"),
        "/v1/leases/{policy}/{id}" => Some("release"),
        "/v1/auth/{policy}" => Some("auth"),
        "/v1/status/{policy}" => Some("status"),
        "/v1/tokenbucket/{key}" | "/v1/fixedwindow/{key}" | "/v1/sliding/{key}" => Some("raw"),
        _ => None,
    }
}

/// The edge: counts decisions by endpoint, outcome, policy, tier and mode,
/// writes the one log line per decision, and logs the internal cause of an
/// error answer (which is never sent).
async fn edge(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let ep = req
        .extensions()
        .get::<MatchedPath>()
        .and_then(|m| endpoint(m.as_str()));
    let started = std::time::Instant::now();
    let mut resp = next.run(req).await;
    let cause = resp.extensions_mut().remove::<ErrorCause>();
    let outcome = resp.extensions_mut().remove::<Outcome>();
    let info = resp.extensions_mut().remove::<DecisionInfo>();
    if let Some(ErrorCause(c)) = &cause {
        let status = resp.status().as_u16();
        let endpoint = ep.unwrap_or("other");
        if resp.status().is_server_error() || status == 403 {
            tracing::warn!(endpoint, status, cause = %c, "request failed");
        } else {
            tracing::info!(endpoint, status, cause = %c, "request refused");
        }
    }
    if let (Some(ep), Some(Outcome(o))) = (ep, outcome) {
        let (policy, tier, mode) = info.as_ref().map_or(("", "", ""), |i| {
            (i.policy.as_str(), i.tier.as_str(), i.mode)
        });
        st.metrics.decision(ep, o, policy, tier, mode);
        decision_log(
            st.config().decision_log,
            ep,
            o,
            resp.status().as_u16(),
            info.as_ref(),
            started.elapsed(),
        );
    }
    resp
}

/// One structured line per decision: endpoint, outcome, status, policy,
/// tier, mode, binding limit, hashed identity and latency. Nothing in it
/// comes from the request verbatim (API keys are hashed), so no secret
/// reaches the logs.
fn decision_log(
    level: DecisionLog,
    endpoint: &str,
    outcome: &str,
    status: u16,
    info: Option<&DecisionInfo>,
    latency: std::time::Duration,
) {
    let policy = info.map_or("", |i| i.policy.as_str());
    let tier = info.map_or("", |i| i.tier.as_str());
    let mode = info.map_or("", |i| i.mode);
    let binding = info.and_then(|i| i.binding.as_deref()).unwrap_or("");
    let identity = info.map_or("", |i| i.identity.as_str());
    let latency_ms = latency.as_secs_f64() * 1000.0;
    macro_rules! line {
        ($level:expr) => {
            tracing::event!(
                target: "api_shim::decision",
                $level,
                endpoint,
                outcome,
                status,
                policy,
                tier,
                mode,
                binding,
                identity,
                latency_ms,
                "decision"
            )
        };
    }
    match level {
        DecisionLog::Off => {}
        DecisionLog::Debug => line!(tracing::Level::DEBUG),
        DecisionLog::Info => line!(tracing::Level::INFO),
    }
}

/// Builds the service.
pub fn app(state: AppState) -> Router {
    let mut r = Router::new();
    for (path, method) in route_table() {
        r = r.route(path, method);
    }
    r.fallback(|| async { ApiError::NotFound("no such endpoint".to_owned()) })
        .method_not_allowed_fallback(|| async {
            problem(
                StatusCode::METHOD_NOT_ALLOWED,
                "about:blank",
                "method not allowed on this endpoint (see /openapi.json)",
                json!({}),
                HeaderMap::new(),
            )
        })
        .layer(middleware::from_fn_with_state(state.clone(), edge))
        .with_state(state)
}
