//! Native, atomic rate limiting for Redis and Valkey.
//!
//! `limiter` holds the algorithms as pure code; `redis` is the thin glue that
//! parses arguments, stores state in a custom data type, reads the clock and
//! replicates results. This file only registers them with the server.

pub mod limiter;
pub mod redis;
