//! Operations: liveness, readiness, metrics and the API description.

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::state::{within, AppState};
use crate::error::{problem, ApiError, ErrorCause};

/// `GET /health`: the process is up (no Redis call).
pub async fn health() -> Response {
    Json(json!({"status": "ok"})).into_response()
}

/// `GET /ready`: Redis answers PING and the module is loaded.
pub async fn ready(State(st): State<AppState>) -> Result<Response, ApiError> {
    let r = within(st.config().redis_timeout, st.backend.readiness()).await;
    Ok(match r {
        Ok(r) if r.module_loaded => {
            // The mode this shim applies (its cache, refreshed as decisions do).
            let mode = st.mode.get(st.backend.as_ref()).await;
            Json(json!({"status": "ready", "mode": mode.as_str()})).into_response()
        }
        Ok(_) => problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "about:blank",
            "redis is reachable but the ratelimit module is not loaded",
            json!({}),
            HeaderMap::new(),
        ),
        Err(e) => {
            let mut resp = problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "about:blank",
                "redis is unreachable",
                json!({}),
                HeaderMap::new(),
            );
            resp.extensions_mut().insert(ErrorCause(e.to_string()));
            resp
        }
    })
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics(State(st): State<AppState>) -> Result<Response, ApiError> {
    let text = st
        .metrics
        .render()
        .map_err(|e| ApiError::Internal(format!("metrics encoding: {e}")))?;
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        )],
        text,
    )
        .into_response())
}

/// The OpenAPI document; `tests/openapi.rs` proves it matches the router.
pub const OPENAPI: &str = include_str!("../../openapi.json");

/// `GET /openapi.json`
pub async fn openapi() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        OPENAPI,
    )
        .into_response()
}
