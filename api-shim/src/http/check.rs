//! Policy decisions: `POST /v1/check/{policy}` (200/429) and
//! `/v1/auth/{policy}` for Nginx `auth_request` (any method; 204/403+marker).
//!
//! One decision is [`resolve`] (pure), the cached mode, and ONE `RL.LIMITS`
//! call carrying every named limit of the tier, all within `redis.timeout_ms`.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::params::{path_param, Params, Peer, RawQuery};
use super::state::{reset_field, within, AppState, DecisionInfo};
use crate::backend::{BackendError, SystemMode};
use crate::config::{Config, LimitCall};
use crate::decision::{
    policy_header, Decision, ResetField, RATELIMIT_POLICY, X_LEASE_ID, X_RATELIMIT_DENIED,
    X_RATELIMIT_ERROR, X_RATELIMIT_FAIL_OPEN, X_RATELIMIT_TIER, X_SYSTEM_HEALTH,
};
use crate::error::{problem, ApiError, Outcome, QUOTA_EXCEEDED};
use crate::identity::{resolve, Facts};

fn limits_json(d: &Decision) -> serde_json::Value {
    d.items
        .iter()
        .map(|c| {
            json!({
                "name": c.name,
                "shadow": c.shadow,
                "allowed": c.reply.allowed,
                "limit": c.reply.limit,
                "remaining": c.reply.remaining.max(0),
                "retry_after_ms": c.reply.retry_after_ms,
                "reset_after_ms": c.reply.reset_after_ms,
            })
        })
        .collect()
}

/// 200 with the decision as JSON, or 429 problem+json (`quota-exceeded`).
pub fn decision_response(d: &Decision, reset: ResetField, extra: serde_json::Value) -> Response {
    let headers = d.headers(reset);
    let Some(b) = d.binding() else {
        return ApiError::Internal("decision without limits".into()).into_response();
    };
    let mut body = json!({
        "allowed": d.allowed,
        "limit": b.reply.limit,
        "remaining": b.reply.remaining.max(0),
        "retry_after_ms": if d.allowed { 0 } else { b.reply.retry_after_ms },
        // Whole seconds, rounded up: the Retry-After value (-1: never).
        "retry_after": if d.allowed { 0 } else { d.retry_after_secs().unwrap_or(-1) },
        "reset_after_ms": b.reply.reset_after_ms,
        "binding": b.name,
        "limits": limits_json(d),
    });
    if let (Some(o), serde_json::Value::Object(e)) = (body.as_object_mut(), extra) {
        o.extend(e);
    }
    if let (Some(o), Some(lease)) = (body.as_object_mut(), &d.lease) {
        o.insert("lease".into(), json!(lease));
    }
    let mut headers = headers;
    if let Some(v) = d
        .lease
        .as_deref()
        .and_then(|l| HeaderValue::from_str(l).ok())
    {
        headers.insert(X_LEASE_ID, v);
    }
    let mut resp = if d.allowed {
        (StatusCode::OK, headers, Json(body)).into_response()
    } else {
        if let Some(o) = body.as_object_mut() {
            o.insert("violated-policies".into(), json!(d.violated()));
        }
        let detail = if d.never() {
            format!(
                "the cost exceeds limit `{}`; this request can never be granted",
                b.name
            )
        } else {
            format!("limit `{}` exceeded; retry later", b.name)
        };
        problem(
            StatusCode::TOO_MANY_REQUESTS,
            QUOTA_EXCEEDED,
            &detail,
            body,
            headers,
        )
    };
    resp.extensions_mut()
        .insert(Outcome(if d.allowed { "allowed" } else { "denied" }));
    resp
}

/// What a policy request came to.
pub(super) enum Verdict {
    Decided(Decision),
    /// Redis is down and `fail_open = true`.
    FailOpen,
}

/// A decided (or failed-open) policy request with the facts its headers need.
pub(super) struct Decided<'c> {
    pub(super) verdict: Verdict,
    pub(super) policy: &'c str,
    pub(super) tier: &'c str,
    pub(super) mode: SystemMode,
    calls: &'c [LimitCall],
    /// The hashed identity (for the decision log).
    identity: String,
}

impl Decided<'_> {
    /// `X-RateLimit-Tier` and `X-System-Health` on every policy decision.
    pub(super) fn tag(&self, mut resp: Response) -> Response {
        let binding = match &self.verdict {
            Verdict::Decided(d) => d.binding().map(|b| b.name.clone()),
            Verdict::FailOpen => None,
        };
        resp.extensions_mut().insert(DecisionInfo {
            policy: self.policy.to_owned(),
            tier: self.tier.to_owned(),
            mode: self.mode.as_str(),
            binding,
            identity: self.identity.clone(),
        });
        if let Ok(v) = HeaderValue::from_str(self.tier) {
            resp.headers_mut().insert(X_RATELIMIT_TIER, v);
        }
        resp.headers_mut().insert(
            X_SYSTEM_HEALTH,
            HeaderValue::from_static(self.mode.as_str()),
        );
        resp
    }

    fn fail_open(&self, status: StatusCode) -> Response {
        fail_open(
            status,
            self.calls.iter().map(|c| (c.name.as_str(), c.quota())),
        )
    }
}

/// Redis is down and `fail_open = true`: allowed, marked, and the policy in
/// force (from configuration) still announced.
pub fn fail_open<'a>(
    status: StatusCode,
    limits: impl IntoIterator<Item = (&'a str, &'a rl_grammar::Quota)>,
) -> Response {
    let mut h = HeaderMap::new();
    h.insert(RATELIMIT_POLICY, policy_header(limits));
    h.insert(X_RATELIMIT_FAIL_OPEN, HeaderValue::from_static("1"));
    let body = if status == StatusCode::NO_CONTENT {
        String::new()
    } else {
        json!({"allowed": true, "fail_open": true}).to_string()
    };
    let mut resp = (status, h, body).into_response();
    if status != StatusCode::NO_CONTENT {
        resp.headers_mut().insert(
            axum::http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
    }
    resp.extensions_mut().insert(Outcome("fail_open"));
    resp
}

/// What a policy request is for.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Purpose {
    /// A decision: takes `?cost=` (default 1).
    Decide,
    /// `GET /v1/status/{policy}`: every limit with cost 0, which the module
    /// answers without writing anything (SPEC §1).
    Status,
}

/// Resolve, read the mode, one `RL.LIMITS`; all Redis work within the budget.
pub(super) async fn decide<'c>(
    st: &AppState,
    cfg: &'c Config,
    policy: &str,
    peer: Peer,
    headers: &HeaderMap,
    q: RawQuery,
    purpose: Purpose,
) -> Result<Decided<'c>, ApiError> {
    // The policy's identity parameter is the only one besides `cost`.
    let id_param = cfg
        .policies
        .get(policy)
        .and_then(|p| p.identity_query.as_deref());
    let mut known = Vec::with_capacity(2);
    if purpose == Purpose::Decide {
        known.push("cost");
    }
    known.extend(id_param);
    let p = Params::new(q, &known)?;
    let cost = match purpose {
        Purpose::Decide => p.cost()?,
        Purpose::Status => 0,
    };
    let r = resolve(
        cfg,
        policy,
        &Facts {
            peer: peer.0,
            headers,
            query: id_param.and_then(|n| p.get(n)),
        },
    )?;
    let started = std::time::Instant::now();
    let outcome = within(cfg.redis_timeout, async {
        let mode = st.mode.get(st.backend.as_ref()).await;
        let calls = r.tier.calls(mode);
        let reply = st.backend.limits(&r.key, cost, calls).await?;
        Ok((mode, reply))
    })
    .await;
    st.metrics
        .redis_seconds
        .with_label_values(&["limits"])
        .observe(started.elapsed().as_secs_f64());
    let (mode, verdict) = match outcome {
        Ok((mode, reply)) => {
            let d = Decision::from_limits(r.tier.calls(mode), reply).ok_or_else(|| {
                ApiError::Internal("RL.LIMITS reply does not match the calls".into())
            })?;
            (mode, Verdict::Decided(d))
        }
        Err(BackendError::Unavailable(m)) => {
            if !cfg.fail_open {
                return Err(ApiError::Unavailable(m));
            }
            (st.mode.last(), Verdict::FailOpen)
        }
        Err(BackendError::WrongType(m)) => return Err(ApiError::Conflict(m)),
        // The calls came from a configuration the grammar accepted, so a
        // refusal means the module is missing or disagrees: our problem.
        Err(BackendError::Refused(m)) => return Err(ApiError::Unavailable(m)),
        Err(BackendError::Protocol(m)) => return Err(ApiError::Internal(m)),
    };
    if let Verdict::Decided(d) = &verdict {
        for i in d.shadow_denials() {
            st.metrics
                .shadow_denials
                .with_label_values(&[&r.policy.name, &i.name])
                .inc();
        }
    }
    Ok(Decided {
        verdict,
        policy: &r.policy.name,
        tier: &r.tier.name,
        mode,
        calls: r.tier.calls(mode),
        identity: r.identity,
    })
}

/// `POST /v1/check/{policy}[?cost=]`: identity from the policy's header or the
/// client address; answers 200 or 429.
pub async fn check(
    State(st): State<AppState>,
    peer: Peer,
    policy: Result<Path<String>, PathRejection>,
    q: RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let cfg = st.config();
    let policy = path_param(policy)?;
    let d = decide(&st, &cfg, &policy, peer, &headers, q, Purpose::Decide).await?;
    Ok(match &d.verdict {
        Verdict::Decided(dec) => d.tag(decision_response(
            dec,
            reset_field(&cfg),
            json!({"policy": d.policy, "tier": d.tier, "mode": d.mode.as_str()}),
        )),
        Verdict::FailOpen => d.tag(d.fail_open(StatusCode::OK)),
    })
}

/// `/v1/auth/{policy}` (any method) for Nginx `auth_request`: 204 when
/// allowed; 403 with `X-RateLimit-Denied: 1` when limited; 403 with
/// `X-RateLimit-Error: unavailable|bad_request|error` when the decision failed (Nginx
/// treats any other status as its own 500, losing the difference); 401 when an
/// API key is required or unknown (Nginx passes 401 through).
pub async fn auth(
    State(st): State<AppState>,
    peer: Peer,
    policy: Result<Path<String>, PathRejection>,
    q: RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let cfg = st.config();
    let decided = match path_param(policy) {
        Ok(policy) => decide(&st, &cfg, &policy, peer, &headers, q, Purpose::Decide).await,
        Err(e) => Err(e),
    };
    let d = match decided {
        Ok(d) => d,
        Err(e @ ApiError::Unauthorized(_)) => return Err(e),
        Err(e) => {
            // Nginx turns each marker back into its status (503, 400, 500).
            let marker = match e {
                ApiError::Unavailable(_) => "unavailable",
                ApiError::BadRequest(_) => "bad_request",
                _ => "error",
            };
            // A 403 whose problem body says 403; the error's extensions
            // (outcome, cause) stay for the edge.
            let mut resp = e.into_response_as(StatusCode::FORBIDDEN);
            resp.headers_mut()
                .insert(X_RATELIMIT_ERROR, HeaderValue::from_static(marker));
            return Ok(resp);
        }
    };
    Ok(match &d.verdict {
        Verdict::Decided(dec) => {
            let mut h = dec.headers(reset_field(&cfg));
            let (status, outcome) = if dec.allowed {
                (StatusCode::NO_CONTENT, "allowed")
            } else {
                h.insert(X_RATELIMIT_DENIED, HeaderValue::from_static("1"));
                (StatusCode::FORBIDDEN, "denied")
            };
            let mut resp = (status, h).into_response();
            resp.extensions_mut().insert(Outcome(outcome));
            d.tag(resp)
        }
        Verdict::FailOpen => d.tag(d.fail_open(StatusCode::NO_CONTENT)),
    })
}
