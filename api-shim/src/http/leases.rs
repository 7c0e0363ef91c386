//! Concurrency leases: `POST /v1/acquire/{policy}` decides like
//! `/v1/check/{policy}` and, when granted, holds a lease of the policy's
//! `concurrency` limit (its id in the body's `lease` and in `X-Lease-Id`);
//! `DELETE /v1/leases/{policy}/{id}` frees it. The life cycle: acquire, do
//! the work, release; a holder that crashes gives its slot back when the
//! limit's `ttl` passes.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use rl_grammar::Quota;
use serde_json::json;

use super::check::check;
use super::params::{Params, Peer, RawQuery};
use super::state::{within, AppState};
use crate::backend::{BackendError, SystemMode};
use crate::config::Config;
use crate::error::{ApiError, Outcome};
use crate::identity::{resolve, Facts};

/// Whether any tier of `policy` has a `concurrency` limit, in either mode.
fn hands_out_leases(cfg: &Config, policy: &str) -> bool {
    cfg.policies.get(policy).is_some_and(|p| {
        p.tiers.values().any(|t| {
            [SystemMode::Normal, SystemMode::Degraded]
                .into_iter()
                .flat_map(|m| t.calls(m))
                .any(|c| matches!(c.quota(), Quota::Concurrency(_)))
        })
    })
}

/// `POST /v1/acquire/{policy}[?cost=]`: 200 with `lease`, or 429.
pub async fn acquire(
    st: State<AppState>,
    peer: Peer,
    policy: Result<Path<String>, PathRejection>,
    q: RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let name = super::params::path_param(policy)?;
    let cfg = st.config();
    if cfg.policies.contains_key(&name) && !hands_out_leases(&cfg, &name) {
        return Err(ApiError::BadRequest(format!(
            "policy `{name}` has no `concurrency` limit, so it holds no leases: use /v1/check/{name}"
        )));
    }
    check(st, peer, Ok(Path(name)), q, headers).await
}

/// `DELETE /v1/leases/{policy}/{id}`: frees the lease of the caller (the same
/// identity as when it was acquired). 200 `{"released": true}`, or
/// `{"released": false}` when it was unknown, released or expired: releasing
/// is idempotent.
pub async fn release(
    State(st): State<AppState>,
    peer: Peer,
    path: Result<Path<(String, String)>, PathRejection>,
    q: RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Path((policy, id)) =
        path.map_err(|e| ApiError::BadRequest(format!("bad path: {}", e.body_text())))?;
    rl_grammar::parse_lease_id(id.as_bytes()).map_err(|e| {
        let e = String::from(e);
        ApiError::BadRequest(e.strip_prefix("ERR ").unwrap_or(&e).to_owned())
    })?;
    let cfg = st.config();
    let id_param = cfg
        .policies
        .get(&policy)
        .and_then(|p| p.identity_query.as_deref());
    let p = Params::new(q, id_param.as_slice())?;
    let r = resolve(
        &cfg,
        &policy,
        &Facts {
            peer: peer.0,
            headers: &headers,
            query: id_param.and_then(|n| p.get(n)),
        },
    )?;
    let released = match within(cfg.redis_timeout, st.backend.release(&r.key, &id)).await {
        Ok(b) => b,
        Err(BackendError::Unavailable(m) | BackendError::Refused(m)) => {
            return Err(ApiError::Unavailable(m))
        }
        Err(BackendError::WrongType(m)) => return Err(ApiError::Conflict(m)),
        Err(BackendError::Protocol(m)) => return Err(ApiError::Internal(m)),
    };
    let mut resp = (
        StatusCode::OK,
        Json(json!({"released": released, "lease": id, "policy": r.policy.name})),
    )
        .into_response();
    resp.extensions_mut().insert(Outcome("released"));
    Ok(resp)
}
