//! `GET /v1/status/{policy}`: the caller's state under a policy, without
//! consuming anything.
//!
//! The same resolution as a decision (identity, tier, mode) and ONE
//! `RL.LIMITS` call with cost 0: the module answers it without writing,
//! dirtying or replicating anything (SPEC §1), so a status read never creates
//! a key, never changes one and never extends a TTL. Always 200 while Redis
//! answers, exhausted or not; the headers are a decision's.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::check::{decide, Purpose, Verdict};
use super::params::{path_param, Peer, RawQuery};
use super::state::{reset_field, AppState};
use crate::error::{ApiError, Outcome};

/// `GET /v1/status/{policy}`: 200 with every limit's state; never 429.
pub async fn status(
    State(st): State<AppState>,
    peer: Peer,
    policy: Result<Path<String>, PathRejection>,
    q: RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let cfg = st.config();
    let policy = path_param(policy)?;
    let d = decide(&st, &cfg, &policy, peer, &headers, q, Purpose::Status).await?;
    let dec = match &d.verdict {
        Verdict::Decided(dec) => dec,
        // There is no state to show without Redis, fail-open or not.
        Verdict::FailOpen => {
            return Err(ApiError::Unavailable(
                "status read while redis is unavailable".into(),
            ))
        }
    };
    let Some(b) = dec.binding() else {
        return Err(ApiError::Internal("decision without limits".into()));
    };
    let body = json!({
        "policy": d.policy,
        "tier": d.tier,
        "mode": d.mode.as_str(),
        "binding": b.name,
        "limit": b.reply.limit,
        "remaining": b.reply.remaining.max(0),
        "reset_after_ms": b.reply.reset_after_ms,
        "limits": dec.items.iter().map(|i| json!({
            "name": i.name,
            "shadow": i.shadow,
            "limit": i.reply.limit,
            "remaining": i.reply.remaining.max(0),
            "reset_after_ms": i.reply.reset_after_ms,
        })).collect::<Vec<_>>(),
    });
    let mut resp = (StatusCode::OK, dec.headers(reset_field(&cfg)), Json(body)).into_response();
    resp.extensions_mut().insert(Outcome("read"));
    Ok(d.tag(resp))
}
