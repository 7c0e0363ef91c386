//! Configuration: one TOML file plus a few `SHIM_*` environment overrides.
//!
//! The file is parsed into `Raw*` structs that mirror the TOML, then checked
//! and turned into [`Config`], whose values cannot be invalid. Every error
//! names the offending field (`policies.api.tiers.free.limits[0].rate …`) so a
//! bad deployment stops at start-up with a message an operator can act on.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use axum::http::HeaderName;
use ipnet::IpNet;
use serde::Deserialize;

use crate::backend::{Algorithm, SlidingMode};

/// A start-up error; the message names the field.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(pub String);

fn err<T>(msg: impl Into<String>) -> Result<T, ConfigError> {
    Err(ConfigError(msg.into()))
}

/// How to reach Redis.
#[derive(Debug, Clone, PartialEq)]
pub enum RedisTarget {
    Standalone(String),
    Cluster(Vec<String>),
    Sentinel { master: String, nodes: Vec<String> },
}

/// One named limit of a tier.
#[derive(Debug, Clone, PartialEq)]
pub struct Limit {
    pub name: String,
    pub algorithm: Algorithm,
}

/// Limits for one tier, per system mode.
#[derive(Debug, Clone, PartialEq)]
pub struct Tier {
    pub normal: Vec<Limit>,
    /// `None` when the file defines no `degraded_limits`: the tier then keeps
    /// its normal limits *and keys* in DEGRADED mode, so a mode switch does
    /// not hand out fresh buckets.
    pub degraded: Option<Vec<Limit>>,
}

/// A policy served by `POST /v1/check/{policy}` and `/v1/auth/{policy}`.
#[derive(Debug, Clone)]
pub struct Policy {
    pub name: String,
    /// Identity header; `None` means "client address".
    pub identity_header: Option<HeaderName>,
    pub default_tier: String,
    pub reject_unknown_keys: bool,
    pub tiers: HashMap<String, Tier>,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub redis: RedisTarget,
    /// Per-command response/connect timeout: an outage must turn into a 503
    /// within this, not after TCP's minutes-long retries.
    pub redis_timeout: Duration,
    pub fail_open: bool,
    /// How long a shim trusts its copy of the NORMAL/DEGRADED flag.
    pub mode_cache: Duration,
    pub mode_key: String,
    pub raw_enabled: bool,
    pub raw_key_prefix: String,
    pub key_prefix: String,
    pub admin_token: Option<String>,
    pub trusted_proxies: Vec<IpNet>,
    pub api_keys: HashMap<String, String>,
    pub policies: HashMap<String, Policy>,
}

// ---------------------------------------------------------------- raw TOML

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: Option<String>,
    fail_open: Option<bool>,
    mode_cache_ms: Option<u64>,
    key_prefix: Option<String>,
    #[serde(default)]
    redis: RawRedis,
    #[serde(default)]
    raw: RawRawEndpoints,
    #[serde(default)]
    admin: RawAdmin,
    #[serde(default)]
    identity: RawIdentity,
    #[serde(default)]
    api_keys: BTreeMap<String, String>,
    #[serde(default)]
    policies: BTreeMap<String, RawPolicy>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRedis {
    url: Option<String>,
    cluster: Option<Vec<String>>,
    sentinel: Option<RawSentinel>,
    timeout_ms: Option<u64>,
    mode_key: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSentinel {
    master: String,
    nodes: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRawEndpoints {
    enabled: Option<bool>,
    key_prefix: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    token: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIdentity {
    #[serde(default)]
    trusted_proxies: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    identity_header: Option<String>,
    default_tier: String,
    #[serde(default)]
    reject_unknown_keys: bool,
    tiers: BTreeMap<String, RawTier>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTier {
    limits: Vec<RawLimit>,
    degraded_limits: Option<Vec<RawLimit>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimit {
    name: String,
    algorithm: String,
    capacity: Option<u64>,
    rate: Option<f64>,
    limit: Option<u64>,
    window: Option<f64>,
    mode: Option<String>,
}

// ---------------------------------------------------------------- validation helpers shared with the HTTP layer

/// Largest count we pass on: the module works in signed 64-bit integers.
pub const MAX_COUNT: u64 = i64::MAX as u64;

/// Checks a count (capacity/limit): 1..=i64::MAX.
pub fn check_count(field: &str, v: u64) -> Result<u64, String> {
    if v == 0 {
        Err(format!("{field} must be at least 1"))
    } else if v > MAX_COUNT {
        Err(format!("{field} must be at most {MAX_COUNT}"))
    } else {
        Ok(v)
    }
}

/// Checks a rate or window: finite and > 0.
pub fn check_positive(field: &str, v: f64) -> Result<f64, String> {
    if v.is_finite() && v > 0.0 {
        Ok(v)
    } else {
        Err(format!("{field} must be a finite number greater than 0"))
    }
}

/// Parses a sliding mode literal (case-insensitive).
pub fn parse_sliding_mode(field: &str, s: &str) -> Result<SlidingMode, String> {
    if s.eq_ignore_ascii_case("exact") {
        Ok(SlidingMode::Exact)
    } else if s.eq_ignore_ascii_case("approx") {
        Ok(SlidingMode::Approx)
    } else {
        Err(format!("{field} must be `exact` or `approx`, got `{s}`"))
    }
}

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
}

fn build_limit(path: &str, raw: &RawLimit) -> Result<Limit, ConfigError> {
    if !is_name(&raw.name) {
        return err(format!(
            "{path}.name must be 1-64 characters of [A-Za-z0-9_.-], got `{}`",
            raw.name
        ));
    }
    let need_u = |field: &str, v: Option<u64>| -> Result<u64, ConfigError> {
        let v = v.ok_or_else(|| {
            ConfigError(format!(
                "{path}.{field} is required for `{}`",
                raw.algorithm
            ))
        })?;
        check_count(&format!("{path}.{field}"), v).map_err(ConfigError)
    };
    let need_f = |field: &str, v: Option<f64>| -> Result<f64, ConfigError> {
        let v = v.ok_or_else(|| {
            ConfigError(format!(
                "{path}.{field} is required for `{}`",
                raw.algorithm
            ))
        })?;
        check_positive(&format!("{path}.{field}"), v).map_err(ConfigError)
    };
    let forbid = |field: &str, present: bool| -> Result<(), ConfigError> {
        if present {
            err(format!(
                "{path}.{field} does not apply to `{}`",
                raw.algorithm
            ))
        } else {
            Ok(())
        }
    };
    let algorithm = match raw.algorithm.as_str() {
        "tokenbucket" => {
            forbid("limit", raw.limit.is_some())?;
            forbid("window", raw.window.is_some())?;
            forbid("mode", raw.mode.is_some())?;
            Algorithm::TokenBucket {
                capacity: need_u("capacity", raw.capacity)?,
                rate: need_f("rate", raw.rate)?,
            }
        }
        "fixedwindow" | "sliding" => {
            forbid("capacity", raw.capacity.is_some())?;
            forbid("rate", raw.rate.is_some())?;
            let limit = need_u("limit", raw.limit)?;
            let window = need_f("window", raw.window)?;
            if raw.algorithm == "fixedwindow" {
                forbid("mode", raw.mode.is_some())?;
                Algorithm::FixedWindow { limit, window }
            } else {
                let mode = match &raw.mode {
                    Some(m) => {
                        parse_sliding_mode(&format!("{path}.mode"), m).map_err(ConfigError)?
                    }
                    None => SlidingMode::Exact,
                };
                Algorithm::Sliding {
                    limit,
                    window,
                    mode,
                }
            }
        }
        other => {
            return err(format!(
                "{path}.algorithm must be `tokenbucket`, `fixedwindow` or `sliding`, got `{other}`"
            ))
        }
    };
    Ok(Limit {
        name: raw.name.clone(),
        algorithm,
    })
}

fn build_limits(path: &str, raws: &[RawLimit]) -> Result<Vec<Limit>, ConfigError> {
    if raws.is_empty() {
        return err(format!("{path} must define at least one limit"));
    }
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::with_capacity(raws.len());
    for (i, raw) in raws.iter().enumerate() {
        let l = build_limit(&format!("{path}[{i}]"), raw)?;
        if !seen.insert(l.name.clone()) {
            return err(format!("{path}[{i}].name `{}` is used twice", l.name));
        }
        out.push(l);
    }
    Ok(out)
}

fn parse_net(path: &str, s: &str) -> Result<IpNet, ConfigError> {
    if let Ok(net) = s.parse::<IpNet>() {
        return Ok(net);
    }
    match s.parse::<IpAddr>() {
        Ok(ip) => Ok(IpNet::from(ip)),
        Err(_) => err(format!(
            "{path}: `{s}` is neither an IP address nor a CIDR block"
        )),
    }
}

fn check_redis_url(path: &str, url: &str) -> Result<(), ConfigError> {
    if url.starts_with("redis://") || url.starts_with("rediss://") || url.starts_with("unix://") {
        Ok(())
    } else {
        err(format!(
            "{path}: `{url}` must start with redis://, rediss:// or unix://"
        ))
    }
}

/// Environment variables the shim reads (besides `SHIM_CONFIG`).
pub const ENV_OVERRIDES: &[&str] = &[
    "SHIM_LISTEN",
    "SHIM_REDIS_URL",
    "SHIM_REDIS_CLUSTER",
    "SHIM_ADMIN_TOKEN",
    "SHIM_FAIL_OPEN",
];

impl Config {
    /// Reads the file at `path` (or starts from defaults when `None`) and applies
    /// environment overrides read through `env`.
    pub fn load(
        path: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let text = match path {
            Some(p) => std::fs::read_to_string(p)
                .map_err(|e| ConfigError(format!("cannot read {}: {e}", p.display())))?,
            None => String::new(),
        };
        Self::from_toml(&text, env)
    }

    /// Parses TOML text and applies environment overrides.
    pub fn from_toml(
        text: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        // toml's message already carries the line, column and key path.
        let mut raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError(e.to_string()))?;
        // An empty variable counts as unset: Compose and systemd often pass
        // `VAR=` for "not configured".
        let env = |k: &str| env(k).filter(|v| !v.trim().is_empty());

        if let Some(v) = env("SHIM_LISTEN") {
            raw.listen = Some(v);
        }
        if let Some(v) = env("SHIM_REDIS_URL") {
            raw.redis.url = Some(v);
            raw.redis.cluster = None;
            raw.redis.sentinel = None;
        }
        if let Some(v) = env("SHIM_REDIS_CLUSTER") {
            raw.redis.url = None;
            raw.redis.sentinel = None;
            raw.redis.cluster = Some(
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect(),
            );
        }
        if let Some(v) = env("SHIM_ADMIN_TOKEN") {
            raw.admin.token = Some(v);
        }
        if let Some(v) = env("SHIM_FAIL_OPEN") {
            raw.fail_open = Some(match v.as_str() {
                "1" | "true" | "yes" => true,
                "0" | "false" | "no" => false,
                _ => return err(format!("SHIM_FAIL_OPEN must be true or false, got `{v}`")),
            });
        }
        Self::validate(raw)
    }

    fn validate(raw: RawConfig) -> Result<Config, ConfigError> {
        let listen_s = raw.listen.unwrap_or_else(|| "127.0.0.1:8080".to_owned());
        let listen: SocketAddr = listen_s.parse().map_err(|_| {
            ConfigError(format!(
                "listen: `{listen_s}` is not an address like 0.0.0.0:8080"
            ))
        })?;

        let redis = match (raw.redis.url, raw.redis.cluster, raw.redis.sentinel) {
            (Some(url), None, None) => {
                check_redis_url("redis.url", &url)?;
                RedisTarget::Standalone(url)
            }
            (None, Some(nodes), None) => {
                if nodes.is_empty() {
                    return err("redis.cluster must list at least one seed node");
                }
                for (i, n) in nodes.iter().enumerate() {
                    check_redis_url(&format!("redis.cluster[{i}]"), n)?;
                }
                RedisTarget::Cluster(nodes)
            }
            (None, None, Some(s)) => {
                if s.master.is_empty() {
                    return err("redis.sentinel.master must not be empty");
                }
                if s.nodes.is_empty() {
                    return err("redis.sentinel.nodes must list at least one sentinel");
                }
                for (i, n) in s.nodes.iter().enumerate() {
                    check_redis_url(&format!("redis.sentinel.nodes[{i}]"), n)?;
                }
                RedisTarget::Sentinel {
                    master: s.master,
                    nodes: s.nodes,
                }
            }
            (None, None, None) => RedisTarget::Standalone("redis://127.0.0.1:6379".to_owned()),
            _ => return err("redis: set only one of `url`, `cluster`, `sentinel`"),
        };

        let timeout_ms = raw.redis.timeout_ms.unwrap_or(250);
        if !(1..=60_000).contains(&timeout_ms) {
            return err("redis.timeout_ms must be between 1 and 60000");
        }
        let mode_cache_ms = raw.mode_cache_ms.unwrap_or(1_000);
        if mode_cache_ms > 60_000 {
            return err("mode_cache_ms must be at most 60000");
        }

        let trusted_proxies = raw
            .identity
            .trusted_proxies
            .iter()
            .enumerate()
            .map(|(i, s)| parse_net(&format!("identity.trusted_proxies[{i}]"), s))
            .collect::<Result<Vec<_>, _>>()?;

        if let Some(t) = &raw.admin.token {
            // A short token is guessable; refuse rather than run with it.
            if t.len() < 16 {
                return err(
                    "admin.token must be at least 16 characters (or unset to disable /admin)",
                );
            }
        }

        let mut policies = HashMap::new();
        for (pname, rp) in &raw.policies {
            let path = format!("policies.{pname}");
            if !is_name(pname) {
                return err(format!("{path}: policy names must be [A-Za-z0-9_.-]"));
            }
            let identity_header = match &rp.identity_header {
                Some(h) => Some(HeaderName::try_from(h.as_str()).map_err(|_| {
                    ConfigError(format!(
                        "{path}.identity_header: `{h}` is not a header name"
                    ))
                })?),
                None => None,
            };
            if rp.tiers.is_empty() {
                return err(format!("{path}.tiers must define at least one tier"));
            }
            let mut tiers = HashMap::new();
            for (tname, rt) in &rp.tiers {
                let tpath = format!("{path}.tiers.{tname}");
                if !is_name(tname) {
                    return err(format!("{tpath}: tier names must be [A-Za-z0-9_.-]"));
                }
                let normal = build_limits(&format!("{tpath}.limits"), &rt.limits)?;
                let degraded = match &rt.degraded_limits {
                    Some(d) => Some(build_limits(&format!("{tpath}.degraded_limits"), d)?),
                    None => None,
                };
                tiers.insert(tname.clone(), Tier { normal, degraded });
            }
            if !tiers.contains_key(&rp.default_tier) {
                return err(format!(
                    "{path}.default_tier `{}` is not one of its tiers",
                    rp.default_tier
                ));
            }
            if rp.reject_unknown_keys && rp.identity_header.is_none() {
                return err(format!(
                    "{path}.reject_unknown_keys needs identity_header to be set"
                ));
            }
            policies.insert(
                pname.clone(),
                Policy {
                    name: pname.clone(),
                    identity_header,
                    default_tier: rp.default_tier.clone(),
                    reject_unknown_keys: rp.reject_unknown_keys,
                    tiers,
                },
            );
        }

        for (key, tier) in &raw.api_keys {
            if key.is_empty() {
                return err("api_keys: empty key");
            }
            // A tier that no policy defines is almost always a typo.
            if !policies.values().any(|p| p.tiers.contains_key(tier)) {
                return err(format!(
                    "api_keys: the key ending in `{}` maps to tier `{tier}`, which no policy defines",
                    key_suffix(key)
                ));
            }
        }

        let raw_key_prefix = raw.raw.key_prefix.unwrap_or_default();
        let key_prefix = raw.key_prefix.unwrap_or_else(|| "rl:".to_owned());
        if key_prefix.contains('{') || key_prefix.contains('}') || raw_key_prefix.contains('{') {
            // A brace in the prefix would become the hash tag and put every
            // identity in one cluster slot.
            return err("key_prefix and raw.key_prefix must not contain `{` or `}`");
        }

        Ok(Config {
            listen,
            redis,
            redis_timeout: Duration::from_millis(timeout_ms),
            fail_open: raw.fail_open.unwrap_or(false),
            mode_cache: Duration::from_millis(mode_cache_ms),
            mode_key: raw
                .redis
                .mode_key
                .unwrap_or_else(|| "ratelimit:shim:mode".to_owned()),
            raw_enabled: raw.raw.enabled.unwrap_or(true),
            raw_key_prefix,
            key_prefix,
            admin_token: raw.admin.token,
            trusted_proxies,
            api_keys: raw.api_keys.into_iter().collect(),
            policies,
        })
    }
}

/// Last four characters of a secret, for messages that must not print it.
fn key_suffix(key: &str) -> String {
    let n = key.chars().count();
    key.chars().skip(n.saturating_sub(4)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    const GOOD: &str = r#"
listen = "127.0.0.1:9000"
[redis]
url = "redis://127.0.0.1:6379"
[admin]
token = "0123456789abcdef"
[identity]
trusted_proxies = ["127.0.0.1", "10.0.0.0/8"]
[api_keys]
"key-pro" = "pro"
[policies.api]
identity_header = "X-API-Key"
default_tier = "free"
[policies.api.tiers.free]
limits = [
  { name = "second", algorithm = "tokenbucket", capacity = 5, rate = 5 },
  { name = "day", algorithm = "fixedwindow", limit = 1000, window = 86400 },
]
degraded_limits = [{ name = "second", algorithm = "sliding", limit = 1, window = 1, mode = "approx" }]
[policies.api.tiers.pro]
limits = [{ name = "second", algorithm = "tokenbucket", capacity = 50, rate = 50 }]
"#;

    #[test]
    fn example_file_is_valid() {
        let text = include_str!("../config.example.toml");
        Config::from_toml(text, no_env).expect("config.example.toml is valid");
    }

    #[test]
    fn good_config_resolves_tiers_and_degraded_fallback() {
        let cfg = Config::from_toml(GOOD, no_env).expect("GOOD parses");
        let api = &cfg.policies["api"];
        assert_eq!(api.tiers["free"].normal.len(), 2);
        assert_eq!(api.tiers["free"].degraded.as_ref().map(Vec::len), Some(1));
        // pro defines no degraded limits: it keeps its normal ones.
        assert_eq!(api.tiers["pro"].degraded, None);
        assert_eq!(cfg.trusted_proxies.len(), 2);
        assert_eq!(cfg.redis_timeout, Duration::from_millis(250));
    }

    fn error_of(text: &str) -> String {
        match Config::from_toml(text, no_env) {
            Ok(_) => String::from("<accepted>"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn errors_name_the_bad_field() {
        let bad_rate = GOOD.replace("capacity = 5, rate = 5", "capacity = 5, rate = 0");
        assert!(
            error_of(&bad_rate).contains("policies.api.tiers.free.limits[0].rate"),
            "{}",
            error_of(&bad_rate)
        );
        let missing = GOOD.replace(", capacity = 50", "");
        assert!(
            error_of(&missing).contains("policies.api.tiers.pro.limits[0].capacity is required")
        );
        let typo = GOOD.replace("default_tier = \"free\"", "default_tier = \"fre\"");
        assert!(error_of(&typo).contains("policies.api.default_tier"));
        let unknown = format!("{GOOD}\n[bogus]\nx = 1\n");
        assert!(
            error_of(&unknown).contains("bogus"),
            "{}",
            error_of(&unknown)
        );
        let proxy = GOOD.replace("10.0.0.0/8", "10.0.0.0/99");
        assert!(error_of(&proxy).contains("identity.trusted_proxies[1]"));
        let both = GOOD.replace("[redis]\n", "[redis]\ncluster = [\"redis://a:1\"]\n");
        assert!(error_of(&both).contains("only one of"));
        let tier = GOOD.replace("\"key-pro\" = \"pro\"", "\"key-pro\" = \"gold\"");
        let e = error_of(&tier);
        assert!(e.contains("api_keys") && !e.contains("key-pro"), "{e}");
    }

    #[test]
    fn env_overrides_win() {
        let env = |k: &str| match k {
            "SHIM_REDIS_CLUSTER" => Some("redis://a:7000, redis://b:7000".to_owned()),
            "SHIM_LISTEN" => Some("0.0.0.0:1234".to_owned()),
            "SHIM_FAIL_OPEN" => Some("true".to_owned()),
            _ => None,
        };
        let cfg = Config::from_toml(GOOD, env).expect("GOOD parses");
        assert_eq!(
            cfg.redis,
            RedisTarget::Cluster(vec!["redis://a:7000".into(), "redis://b:7000".into()])
        );
        assert_eq!(cfg.listen.port(), 1234);
        assert!(cfg.fail_open);
    }

    #[test]
    fn empty_env_values_are_ignored() {
        let env = |k: &str| match k {
            "SHIM_ADMIN_TOKEN" | "SHIM_REDIS_URL" => Some(String::new()),
            _ => None,
        };
        let cfg = Config::from_toml(GOOD, env).expect("GOOD parses");
        assert_eq!(cfg.admin_token.as_deref(), Some("0123456789abcdef"));
        assert_eq!(
            cfg.redis,
            RedisTarget::Standalone("redis://127.0.0.1:6379".into())
        );
    }
}
