//! The serde mirror of the TOML file: every field as written, nothing checked.
//! [`super::validated`] turns it into types that cannot hold invalid values.

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub listen: Option<String>,
    pub fail_open: Option<bool>,
    pub mode_cache_ms: Option<u64>,
    pub key_prefix: Option<String>,
    /// Re-read the configuration every this many ms (0 or unset: only on SIGHUP).
    pub reload_interval_ms: Option<u64>,
    /// API keys kept in their own file (JSON or TOML object `key = "tier"`),
    /// relative to the configuration file.
    pub api_keys_file: Option<String>,
    #[serde(default)]
    pub http: RawHttp,
    #[serde(default)]
    pub redis: RawRedis,
    #[serde(default)]
    pub raw: RawRawEndpoints,
    #[serde(default)]
    pub admin: RawAdmin,
    #[serde(default)]
    pub identity: RawIdentity,
    #[serde(default)]
    pub observability: RawObservability,
    #[serde(default)]
    pub api_keys: BTreeMap<String, String>,
    #[serde(default)]
    pub policies: BTreeMap<String, RawPolicy>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttp {
    /// A client must send a request's whole header within this (ms).
    pub header_read_timeout_ms: Option<u64>,
    /// `X-RateLimit-Reset`: `unix` (default) or `delta`.
    pub x_ratelimit_reset: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawObservability {
    /// One log line per decision at this level: `info` (default), `debug`, `off`.
    pub decision_log: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRedis {
    pub url: Option<String>,
    pub cluster: Option<Vec<String>>,
    pub sentinel: Option<RawSentinel>,
    pub timeout_ms: Option<u64>,
    pub mode_key: Option<String>,
    /// PEM file of the CA(s) that signed the servers' certificates
    /// (`rediss://`), relative to the configuration file.
    pub tls_ca_file: Option<String>,
    /// ACL user of the data nodes (standalone, cluster, Sentinel's master).
    pub username: Option<String>,
    /// File holding the data nodes' password, relative to the configuration file.
    pub password_file: Option<String>,
    /// From `SHIM_REDIS_PASSWORD`; never read from the TOML file.
    #[serde(skip)]
    pub password_env: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSentinel {
    pub master: String,
    pub nodes: Vec<String>,
    /// ACL user of the sentinels themselves.
    pub username: Option<String>,
    /// File holding the sentinels' own password.
    pub password_file: Option<String>,
    /// From `SHIM_SENTINEL_PASSWORD`; never read from the TOML file.
    #[serde(skip)]
    pub password_env: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRawEndpoints {
    pub enabled: Option<bool>,
    pub key_prefix: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    pub token: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIdentity {
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    pub identity_header: Option<String>,
    /// `api_key` (default) or `user`.
    pub identity_kind: Option<String>,
    pub default_tier: String,
    #[serde(default)]
    pub reject_unknown_keys: bool,
    /// The identity from this query parameter instead of a header.
    pub identity_query: Option<String>,
    /// A request without an identity is refused (400).
    #[serde(default)]
    pub require_identity: bool,
    /// The tier of callers counted by their address (default: default_tier).
    pub anonymous_tier: Option<String>,
    pub tiers: BTreeMap<String, RawTier>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTier {
    pub limits: Vec<RawLimit>,
    pub degraded_limits: Option<Vec<RawLimit>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimit {
    pub name: String,
    pub algorithm: String,
    pub capacity: Option<Number>,
    pub rate: Option<Number>,
    pub limit: Option<Number>,
    pub window: Option<Number>,
    pub mode: Option<String>,
    /// A `concurrency` limit's lease lifetime in seconds.
    pub ttl: Option<Number>,
    #[serde(default)]
    pub shadow: bool,
}

/// A TOML number (or a quoted decimal). It reaches the module's grammar as
/// its decimal text, so `window = 0.0005` is refused exactly as `RL.*` would.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Number {
    Int(i64),
    Float(f64),
    Text(String),
}

impl Number {
    /// The text a Redis client would send. Rust's `Display` for `f64` never
    /// uses an exponent, and prints `2.0` as `2`.
    pub fn text(&self) -> String {
        match self {
            Number::Int(i) => i.to_string(),
            Number::Float(f) => format!("{f}"),
            Number::Text(s) => s.clone(),
        }
    }
}
