//! `/admin/mode`: the shared NORMAL/DEGRADED flag, behind a bearer token.
//!
//! The token is checked before the body is read, and the body is read with a
//! small limit: an unauthenticated caller cannot make the shim buffer anything.

use axum::body::to_bytes;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::state::{within, AppState};
use crate::backend::SystemMode;
use crate::error::ApiError;
use crate::identity::secret_eq;

/// Largest admin body read (a mode change is `{"mode":"DEGRADED"}`).
pub const MAX_ADMIN_BODY: usize = 1024;

/// The bearer token, scheme matched case-insensitively (RFC 9110 §11.1).
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

fn admin_auth(st: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let cfg = st.config();
    let Some(token) = cfg.admin_token.as_deref() else {
        return Err(ApiError::NotFound(
            "admin endpoints are disabled (no admin.token configured)".to_owned(),
        ));
    };
    let presented = bearer(headers)
        .ok_or_else(|| ApiError::Unauthorized("a bearer token is required".to_owned()))?;
    if secret_eq(presented.as_bytes(), token.as_bytes()) {
        Ok(())
    } else {
        Err(ApiError::Unauthorized("wrong token".to_owned()))
    }
}

/// `GET /admin/mode` (bearer token): the mode stored in Redis and when it last
/// changed (`changed_at`, Unix ms, or null).
pub async fn get_mode(
    State(st): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    admin_auth(&st, &headers)?;
    let (m, at) = within(st.config().redis_timeout, async {
        Ok((
            st.backend.get_mode().await?,
            st.backend.mode_changed_at().await?,
        ))
    })
    .await?;
    Ok(Json(json!({"mode": m.as_str(), "changed_at": at})).into_response())
}

/// `PUT|POST /admin/mode` (bearer token), body `{"mode":"NORMAL"|"DEGRADED"}`;
/// answers `previous`, `mode`, `changed` and `changed_at` (Unix ms).
pub async fn set_mode(State(st): State<AppState>, req: Request) -> Result<Response, ApiError> {
    admin_auth(&st, req.headers())?;
    let body = to_bytes(req.into_body(), MAX_ADMIN_BODY)
        .await
        .map_err(|_| {
            ApiError::BadRequest(format!(
                "body must be JSON of at most {MAX_ADMIN_BODY} bytes"
            ))
        })?;
    // Exactly the documented object: no other members.
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
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
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0);
    let change = within(st.config().redis_timeout, st.backend.set_mode(mode, now_ms)).await?;
    // This shim switches at once; the others within their cache time.
    st.mode.store(mode);
    tracing::info!(
        previous = change.previous.as_str(),
        mode = mode.as_str(),
        "system mode set"
    );
    Ok(Json(json!({
        "previous": change.previous.as_str(),
        "mode": mode.as_str(),
        "changed": change.previous != mode,
        // Unix ms of the last change (this one, or the earlier one when the
        // mode was already `mode`); null if it never changed through a shim.
        "changed_at": change.changed_at_ms,
    }))
    .into_response())
}
