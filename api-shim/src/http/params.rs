//! Request inputs: the TCP peer, path segments and query parameters.
//!
//! Query strings are strict: an unknown parameter (a typo like `capactiy=`)
//! or a repeated one (`capacity=5&capacity=1000000`, which frameworks resolve
//! differently) is a 400, never a silent default or last-wins.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::extract::connect_info::{ConnectInfo, MockConnectInfo};
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{FromRequestParts, Path, Query};
use axum::http::request::Parts;

use crate::config::MAX_HEADER_INT;
use crate::error::ApiError;

/// The TCP peer's address, if the server was started with connect info.
pub struct Peer(pub IpAddr);

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

/// The raw query pairs, in order, duplicates kept (checked by [`Params::new`]).
pub type RawQuery = Result<Query<Vec<(String, String)>>, QueryRejection>;

/// Query parameters, each at most once, all of them known.
#[derive(Debug)]
pub struct Params(BTreeMap<String, String>);

impl Params {
    pub fn new(q: RawQuery, known: &[&str]) -> Result<Params, ApiError> {
        let Query(pairs) =
            q.map_err(|e| ApiError::BadRequest(format!("bad query string: {}", e.body_text())))?;
        let mut map = BTreeMap::new();
        for (k, v) in pairs {
            if !known.contains(&k.as_str()) {
                return Err(ApiError::BadRequest(format!(
                    "unknown parameter `{k}`; expected {}",
                    known.join(", ")
                )));
            }
            if map.contains_key(&k) {
                return Err(ApiError::BadRequest(format!(
                    "parameter `{k}` is given more than once"
                )));
            }
            map.insert(k, v);
        }
        Ok(Params(map))
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    pub fn required(&self, name: &str) -> Result<&str, ApiError> {
        self.get(name)
            .ok_or_else(|| ApiError::BadRequest(format!("`{name}` is required")))
    }

    /// `cost`: a whole number >= 0, default 1 (0 inspects without consuming),
    /// read by the module's cost grammar (so `+5` is refused and `5.0` taken,
    /// as the module does). Refunds (negative costs) are not exposed over HTTP.
    pub fn cost(&self) -> Result<u64, ApiError> {
        match self.get("cost") {
            None => Ok(1),
            Some(s) => match rl_grammar::parse_cost(s.as_bytes()).map(u64::try_from) {
                Ok(Ok(v)) if v <= MAX_HEADER_INT => Ok(v),
                _ => Err(ApiError::BadRequest(format!(
                    "`cost` must be a whole number from 0 to {MAX_HEADER_INT}, got `{s}`"
                ))),
            },
        }
    }
}

pub fn path_param(p: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    p.map(|Path(s)| s)
        .map_err(|e| ApiError::BadRequest(format!("bad path: {}", e.body_text())))
}

/// A grammar error as a 400: the module's words without its Redis code.
pub fn grammar_error(e: String) -> ApiError {
    ApiError::BadRequest(e.strip_prefix("ERR ").unwrap_or(&e).to_owned())
}
