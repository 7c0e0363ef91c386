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
use super::state::{reset_field, within, AppState};
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

/// Every door of the shim takes a value exactly when the module's grammar
/// does: the raw endpoints' query string and a limit in the TOML file,
/// compared with the parsers `RL.*` runs on its arguments. The shim adds one
/// bound of its own (counts must fit a structured header field), so the
/// module's verdict is compared within that bound.
#[cfg(test)]
mod same_verdict {
    use axum::extract::Query;
    use proptest::prelude::*;

    use super::{Kind, Params};
    use crate::config::raw::{Number, RawLimit};
    use crate::config::validated::build_limit;
    use crate::config::MAX_HEADER_INT;

    const MAX_LOG: u64 = rl_grammar::EXACT_MAX_LOG_DEFAULT;

    fn http(kind: Kind, pairs: &[(&str, &str)]) -> bool {
        let q = Query(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        Params::new(Ok(q), kind.known())
            .and_then(|p| kind.quota(&p, MAX_LOG))
            .is_ok()
    }

    fn toml(algorithm: &str, fields: &[(&str, &str)]) -> bool {
        let get = |name: &str| {
            fields
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| Number::Text(v.to_string()))
        };
        let raw = RawLimit {
            name: "l".into(),
            algorithm: algorithm.into(),
            capacity: get("capacity"),
            rate: get("rate"),
            limit: get("limit"),
            window: get("window"),
            mode: None,
            ttl: get("ttl"),
            shadow: false,
        };
        build_limit("limits[0]", &raw, MAX_LOG).is_ok()
    }

    fn module_count(s: &str) -> bool {
        rl_grammar::parse_count("limit", s.as_bytes(), 1).is_ok_and(|v| v <= MAX_HEADER_INT)
    }

    fn module_window(s: &str) -> bool {
        rl_grammar::parse_window_ms(s.as_bytes()).is_ok()
    }

    fn module_rate(s: &str) -> bool {
        rl_grammar::parse_rate(s.as_bytes()).is_ok()
    }

    fn value() -> impl Strategy<Value = String> {
        prop_oneof![
            "[-+0-9.eE a-z]{0,6}",
            "[+-]?[0-9]{1,20}(\\.[0-9]{0,12})?",
            Just("999999999999999".to_owned()),
            Just("1000000000000000".to_owned()),
            Just("0.0005".to_owned()),
            Just("5.0".to_owned()),
            Just("+5".to_owned()),
        ]
    }

    proptest! {
        #[test]
        fn window_and_limit(v in value()) {
            let window = [("limit", "1"), ("window", v.as_str())];
            let limit = [("limit", v.as_str()), ("window", "1")];
            prop_assert_eq!(http(Kind::FixedWindow, &window), module_window(&v));
            prop_assert_eq!(toml("fixedwindow", &window), module_window(&v));
            prop_assert_eq!(http(Kind::FixedWindow, &limit), module_count(&v));
            prop_assert_eq!(toml("fixedwindow", &limit), module_count(&v));
        }

        #[test]
        fn capacity_and_rate(v in value()) {
            let rate = [("capacity", "1"), ("rate", v.as_str())];
            let capacity = [("capacity", v.as_str()), ("rate", "1")];
            prop_assert_eq!(http(Kind::TokenBucket, &rate), module_rate(&v));
            prop_assert_eq!(toml("tokenbucket", &rate), module_rate(&v));
            prop_assert_eq!(http(Kind::TokenBucket, &capacity), module_count(&v));
            prop_assert_eq!(toml("tokenbucket", &capacity), module_count(&v));
        }

        #[test]
        fn cost(v in value()) {
            let q = Query(vec![("cost".to_owned(), v.clone())]);
            let shim = Params::new(Ok(q), &["cost"]).and_then(|p| p.cost()).is_ok();
            let module = rl_grammar::parse_cost(v.as_bytes())
                .is_ok_and(|c| (0..=MAX_HEADER_INT as i64).contains(&c));
            prop_assert_eq!(shim, module);
        }
    }
}
