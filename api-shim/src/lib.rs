//! `api-shim`: a small, stateless HTTP front for the Redis rate-limiting
//! module. Run several behind Nginx; all state lives in Redis.
//!
//! - [`http::app`] builds the axum router from an [`http::AppState`].
//! - [`backend::Backend`] is the only way to Redis; [`redis_backend`] is the
//!   real one, [`backend::fake::FakeBackend`] an in-memory one for tests (feature
//!   `test-util`).
//! - [`config::Config`] is the validated TOML file; limits go through the
//!   module's own grammar (`rl_grammar`).
//! - [`identity::resolve`] turns a request into policy, tier, key and the
//!   named calls of its one `RL.LIMITS`; [`decision`] turns the reply into
//!   headers.

// The request path must never panic: a panic would drop the connection with
// no answer. Tests may unwrap.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod backend;
pub mod config;
mod connection;
pub mod decision;
pub mod error;
pub mod http;
pub mod identity;
pub mod metrics;
pub mod model;
pub mod redis_backend;
pub mod sentinel;
pub mod server;

pub use http::{app, AppState};
