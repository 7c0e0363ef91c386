//! Raw endpoints, one per module command; the caller chooses key and limits.
//!
//! Off unless `raw.enabled = true`, never routed by the shipped Nginx config,
//! and every key is put under `raw.key_prefix`, which configuration
//! validation proves disjoint from the policy keys and the mode key. The
//! parameters go through the module's grammar (`rl_grammar`), the same type
//! configuration loading uses.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::response::Response;
use rl_grammar::{Quota, TokenBucketQuota, WindowQuota};
use serde_json::json;

use axum::http::StatusCode;

use super::check::{decision_response, fail_open};
use super::params::{grammar_error, path_param, Params, RawQuery};
use super::{reset_field, within, AppState};
use crate::backend::BackendError;
use crate::config::validated::{count, quota_err, sliding};
use crate::decision::Decision;
use crate::error::ApiError;

/// Longest key accepted on the raw endpoints, in bytes.
pub const MAX_KEY_BYTES: usize = 512;

#[derive(Clone, Copy)]
enum Kind {
    TokenBucket,
    FixedWindow,
    Sliding,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::TokenBucket => "tokenbucket",
            Kind::FixedWindow => "fixedwindow",
            Kind::Sliding => "sliding",
        }
    }

    fn known(self) -> &'static [&'static str] {
        match self {
            Kind::TokenBucket => &["capacity", "rate", "cost"],
            Kind::FixedWindow => &["limit", "window", "cost"],
            Kind::Sliding => &["limit", "window", "cost", "mode"],
        }
    }

    /// The quota, through the module's grammar, exact-max-log included.
    fn quota(self, p: &Params, max_log: u64) -> Result<Quota, ApiError> {
        let q = match self {
            Kind::TokenBucket => {
                let capacity =
                    count("capacity", p.required("capacity")?.as_bytes()).map_err(grammar_error)?;
                let rate = rl_grammar::parse_rate(p.required("rate")?.as_bytes())
                    .map_err(grammar_error)?;
                Quota::TokenBucket(
                    TokenBucketQuota::new(capacity, rate)
                        .map_err(|e| grammar_error(quota_err(e)))?,
                )
            }
            Kind::FixedWindow | Kind::Sliding => {
                let limit =
                    count("limit", p.required("limit")?.as_bytes()).map_err(grammar_error)?;
                let window = rl_grammar::parse_window_ms(p.required("window")?.as_bytes())
                    .map_err(grammar_error)?;
                let w = WindowQuota::new(limit, window).map_err(|e| grammar_error(quota_err(e)))?;
                match self {
                    Kind::FixedWindow => Quota::FixedWindow(w),
                    _ => sliding(w, p.get("mode").map(str::as_bytes)).map_err(grammar_error)?,
                }
            }
        };
        q.check_exact_log(max_log).map_err(grammar_error)?;
        Ok(q)
    }
}

/// `POST /v1/tokenbucket/{key}?capacity=&rate=&cost=`
pub async fn tokenbucket(
    State(st): State<AppState>,
    key: Result<Path<String>, PathRejection>,
    q: RawQuery,
) -> Result<Response, ApiError> {
    raw(st, Kind::TokenBucket, key, q).await
}

/// `POST /v1/fixedwindow/{key}?limit=&window=&cost=`
pub async fn fixedwindow(
    State(st): State<AppState>,
    key: Result<Path<String>, PathRejection>,
    q: RawQuery,
) -> Result<Response, ApiError> {
    raw(st, Kind::FixedWindow, key, q).await
}

/// `POST /v1/sliding/{key}?limit=&window=&cost=&mode=exact|approx`
pub async fn sliding_window(
    State(st): State<AppState>,
    key: Result<Path<String>, PathRejection>,
    q: RawQuery,
) -> Result<Response, ApiError> {
    raw(st, Kind::Sliding, key, q).await
}

async fn raw(
    st: AppState,
    kind: Kind,
    key: Result<Path<String>, PathRejection>,
    q: RawQuery,
) -> Result<Response, ApiError> {
    let cfg = st.config();
    if !cfg.raw_enabled {
        return Err(ApiError::NotFound("raw endpoints are disabled".to_owned()));
    }
    let key = path_param(key)?;
    if key.is_empty() {
        return Err(ApiError::BadRequest("key must not be empty".to_owned()));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(ApiError::BadRequest(format!(
            "key is {} bytes; at most {MAX_KEY_BYTES} are allowed",
            key.len()
        )));
    }
    let p = Params::new(q, kind.known())?;
    let quota = kind.quota(&p, cfg.exact_max_log)?;
    let cost = p.cost()?;
    let full_key = format!("{}{key}", cfg.raw_key_prefix);
    let started = std::time::Instant::now();
    let reply = within(
        cfg.redis_timeout,
        st.backend.single(&full_key, &quota, cost),
    )
    .await;
    st.metrics
        .redis_seconds
        .with_label_values(&["raw"])
        .observe(started.elapsed().as_secs_f64());
    let reply = match reply {
        Ok(r) => r,
        Err(BackendError::Unavailable(_)) if cfg.fail_open => {
            return Ok(fail_open(StatusCode::OK, [(kind.name(), &quota)]));
        }
        // The grammar accepted these parameters, so the module refused them
        // for a reason of the server: its exact-max-log changed since start-up
        // (the caller can adapt: pass the module's hint on in a 400), or the
        // module is not loaded at all (503). MODULE LIST tells which.
        Err(BackendError::Refused(m)) => {
            let loaded = within(cfg.redis_timeout, st.backend.readiness())
                .await
                .is_ok_and(|r| r.module_loaded);
            return Err(if loaded {
                ApiError::from(BackendError::Refused(m))
            } else {
                ApiError::Unavailable(m)
            });
        }
        Err(e) => return Err(e.into()),
    };
    let d = Decision::single(kind.name(), quota, reply);
    Ok(decision_response(
        &d,
        reset_field(&cfg),
        json!({ "key": key }),
    ))
}
