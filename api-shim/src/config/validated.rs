//! The validated configuration: values that passed every check, in the shapes
//! the request path uses. Every error names the field it is about.
//!
//! Limits go through the module's own grammar (`rl_grammar`): a limit the
//! module would refuse never reaches a running shim.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use axum::http::HeaderName;
use ipnet::IpNet;
use rl_grammar::{LimitSpec, Quota, QuotaError, TokenBucketQuota, WindowQuota};

use super::error::ConfigError;
use super::raw::{Number, RawConfig, RawLimit, RawTier};
use crate::model::{changed_at_key, ResetStyle, SystemMode};
pub use crate::model::{LimitCall, MAX_HEADER_INT};

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

/// Credentials for one kind of Redis node. `Debug` never prints the password.
#[derive(Clone, Default, PartialEq)]
pub struct RedisAuth {
    pub username: Option<String>,
    pub password: Option<String>,
}

impl std::fmt::Debug for RedisAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisAuth")
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// The level of the one log line per decision (`observability.decision_log`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecisionLog {
    Off,
    Debug,
    Info,
}

/// What the identity header (or query parameter) holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentityKind {
    /// An API key looked up in `[api_keys]`; unknown keys count as the client
    /// address (or are refused), so a fresh key per request gains nothing.
    ApiKey,
    /// A user id set by a trusted upstream: every value is its own identity,
    /// believed only when the peer is in `identity.trusted_proxies`.
    User,
}

/// One tier with the calls of each mode, built once at load time.
///
/// Both lists name the same limits in the same order: NORMAL sends names that
/// only `degraded_limits` define as `SHADOW`, DEGRADED sends the overrides in
/// place of the limits they name. So a mode switch keeps every stored state.
#[derive(Debug, Clone, PartialEq)]
pub struct Tier {
    pub name: String,
    pub normal: Vec<LimitCall>,
    pub degraded: Vec<LimitCall>,
}

impl Tier {
    pub fn calls(&self, mode: SystemMode) -> &[LimitCall] {
        match mode {
            SystemMode::Normal => &self.normal,
            SystemMode::Degraded => &self.degraded,
        }
    }
}

/// A policy served by `/v1/check/{policy}` and `/v1/auth/{policy}`.
#[derive(Debug, Clone)]
pub struct Policy {
    pub name: String,
    /// Identity header; `None` means "client address".
    pub identity_header: Option<HeaderName>,
    pub identity_kind: IdentityKind,
    pub default_tier: String,
    pub reject_unknown_keys: bool,
    /// Identity query parameter (exclusive with `identity_header`).
    pub identity_query: Option<String>,
    /// A request without a believed identity is a 400.
    pub require_identity: bool,
    /// The tier of callers counted by their address (`anonymous_tier`, else
    /// `default_tier`).
    pub anonymous_tier: String,
    pub tiers: HashMap<String, Tier>,
}

impl Policy {
    /// Where the identity comes from, for messages: "header `X-API-Key`".
    pub fn identity_source(&self) -> Option<String> {
        match (&self.identity_header, &self.identity_query) {
            (Some(h), _) => Some(format!("header `{h}`")),
            (None, Some(q)) => Some(format!("query parameter `{q}`")),
            (None, None) => None,
        }
    }
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub redis: RedisTarget,
    /// Credentials of the data nodes (standalone, cluster, Sentinel's master).
    pub redis_auth: RedisAuth,
    /// Credentials of the sentinels themselves.
    pub sentinel_auth: RedisAuth,
    /// PEM CA certificates trusted for `rediss://` instead of the system roots.
    pub tls_ca: Option<Vec<u8>>,
    /// Budget of one whole decision (mode read included): an outage must turn
    /// into a 503 within this, not after TCP's minutes-long retries.
    pub redis_timeout: Duration,
    pub fail_open: bool,
    /// How long a shim trusts its copy of the NORMAL/DEGRADED flag.
    pub mode_cache: Duration,
    pub mode_key: String,
    pub header_read_timeout: Duration,
    /// How `X-RateLimit-Reset` is written (`http.x_ratelimit_reset`).
    pub x_ratelimit_reset: ResetStyle,
    /// Level of the per-decision log line (`observability.decision_log`).
    pub decision_log: DecisionLog,
    /// `None`: only SIGHUP reloads.
    pub reload_interval: Option<Duration>,
    pub raw_enabled: bool,
    pub raw_key_prefix: String,
    pub key_prefix: String,
    pub admin_token: Option<String>,
    pub trusted_proxies: Vec<IpNet>,
    pub api_keys: HashMap<String, String>,
    pub policies: HashMap<String, Policy>,
    /// The `ratelimit.exact-max-log` this configuration was checked against.
    pub exact_max_log: u64,
}

impl Config {
    /// The one key of an identity under a policy: every limit of every mode
    /// lives in it, under one hash tag (one cluster slot).
    pub fn policy_key(&self, policy: &str, identity: &str) -> String {
        format!("{}{{{policy}:{identity}}}", self.key_prefix)
    }

    /// Is `peer` one of our trusted proxies?
    pub fn is_trusted(&self, peer: &IpAddr) -> bool {
        self.trusted_proxies.iter().any(|n| n.contains(peer))
    }
}

// ---------------------------------------------------------------- limits

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
}

/// The grammar's message without its Redis code, after the field path.
fn grammar_err(path: &str, e: String) -> ConfigError {
    let msg = e.strip_prefix("ERR ").unwrap_or(&e);
    ConfigError(format!("{path}: {msg}"))
}

/// A count (capacity/limit) through the module's grammar, then the header cap.
pub fn count(name: &str, text: &[u8]) -> Result<u64, String> {
    let v = rl_grammar::parse_count(name, text, 1)?;
    if v > MAX_HEADER_INT {
        return Err(format!(
            "ERR {name} must be at most {MAX_HEADER_INT} (it must fit a structured header field)"
        ));
    }
    Ok(v)
}

/// A quota constructor's refusal in the module's words.
pub fn quota_err(e: QuotaError) -> String {
    let field = match e {
        QuotaError::Limit => "limit",
        QuotaError::Rate => "rate",
        QuotaError::Window => "window",
    };
    format!("ERR {field} {e}")
}

/// `exact` (default) or `approx`, case-insensitive, as the module takes it.
pub fn sliding(window: WindowQuota, mode: Option<&[u8]>) -> Result<Quota, String> {
    Quota::sliding(window, mode).ok_or_else(|| {
        format!(
            "ERR mode must be exact or approx, got `{}`",
            String::from_utf8_lossy(mode.unwrap_or_default())
        )
    })
}

/// Same algorithm (EXACT and APPROX differ: the module would start fresh).
fn same_kind(a: &Quota, b: &Quota) -> bool {
    std::mem::discriminant(a) == std::mem::discriminant(b)
}

pub(crate) fn build_limit(
    path: &str,
    raw: &RawLimit,
    max_log: u64,
) -> Result<LimitCall, ConfigError> {
    if !is_name(&raw.name) {
        return err(format!(
            "{path}.name must be 1-64 characters of [A-Za-z0-9_.-], got `{}`",
            raw.name
        ));
    }
    let need = |field: &str, v: &Option<Number>| -> Result<String, ConfigError> {
        v.as_ref().map(Number::text).ok_or_else(|| {
            ConfigError(format!(
                "{path}.{field} is required for `{}`",
                raw.algorithm
            ))
        })
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
    let (first, second, fields) = match raw.algorithm.as_str() {
        "tokenbucket" => {
            forbid("ttl", raw.ttl.is_some())?;
            forbid("limit", raw.limit.is_some())?;
            forbid("window", raw.window.is_some())?;
            forbid("mode", raw.mode.is_some())?;
            (
                need("capacity", &raw.capacity)?,
                need("rate", &raw.rate)?,
                ["capacity", "rate"],
            )
        }
        "fixedwindow" | "sliding" => {
            forbid("ttl", raw.ttl.is_some())?;
            forbid("capacity", raw.capacity.is_some())?;
            forbid("rate", raw.rate.is_some())?;
            if raw.algorithm == "fixedwindow" {
                forbid("mode", raw.mode.is_some())?;
            }
            (
                need("limit", &raw.limit)?,
                need("window", &raw.window)?,
                ["limit", "window"],
            )
        }
        "concurrency" => {
            forbid("capacity", raw.capacity.is_some())?;
            forbid("rate", raw.rate.is_some())?;
            forbid("window", raw.window.is_some())?;
            forbid("mode", raw.mode.is_some())?;
            (
                need("limit", &raw.limit)?,
                need("ttl", &raw.ttl)?,
                ["limit", "ttl"],
            )
        }
        other => {
            return err(format!(
                "{path}.algorithm must be `tokenbucket`, `fixedwindow`, `sliding` or `concurrency`, got `{other}`"
            ))
        }
    };
    // Each parameter on its own, so the message names the right field.
    let at = |field: &'static str| move |e: String| grammar_err(&format!("{path}.{field}"), e);
    let q = if raw.algorithm == "concurrency" {
        let q = rl_grammar::parse_lease_quota(first.as_bytes(), second.as_bytes())
            .map_err(|e| at(fields[0])(e.into()))?;
        Quota::Concurrency(q)
    } else if raw.algorithm == "tokenbucket" {
        let capacity = count("capacity", first.as_bytes()).map_err(at(fields[0]))?;
        let rate = rl_grammar::parse_rate(second.as_bytes()).map_err(at(fields[1]))?;
        Quota::TokenBucket(
            TokenBucketQuota::new(capacity, rate).map_err(|e| at(fields[1])(quota_err(e)))?,
        )
    } else {
        let limit = count("limit", first.as_bytes()).map_err(at(fields[0]))?;
        let window = rl_grammar::parse_window_ms(second.as_bytes()).map_err(at(fields[1]))?;
        let w = WindowQuota::new(limit, window).map_err(|e| at(fields[1])(quota_err(e)))?;
        if raw.algorithm == "fixedwindow" {
            Quota::FixedWindow(w)
        } else {
            sliding(w, raw.mode.as_deref().map(str::as_bytes)).map_err(at("mode"))?
        }
    };
    q.check_exact_log(max_log)
        .map_err(|e| grammar_err(&format!("{path}.limit"), e))?;
    Ok(LimitCall::new(
        raw.name.clone(),
        LimitSpec {
            name: Some(raw.name.clone().into_bytes()),
            quota: q,
            cost: None,
            shadow: raw.shadow,
        },
    ))
}

fn build_list(path: &str, raws: &[RawLimit], max_log: u64) -> Result<Vec<LimitCall>, ConfigError> {
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(raws.len());
    for (i, raw) in raws.iter().enumerate() {
        let l = build_limit(&format!("{path}[{i}]"), raw, max_log)?;
        if !seen.insert(l.name.clone()) {
            return err(format!("{path}[{i}].name `{}` is used twice", l.name));
        }
        out.push(l);
    }
    Ok(out)
}

fn build_tier(path: &str, name: &str, rt: &RawTier, max_log: u64) -> Result<Tier, ConfigError> {
    if rt.limits.is_empty() {
        return err(format!("{path}.limits must define at least one limit"));
    }
    let normal = build_list(&format!("{path}.limits"), &rt.limits, max_log)?;
    let degraded = match &rt.degraded_limits {
        Some(d) => build_list(&format!("{path}.degraded_limits"), d, max_log)?,
        None => Vec::new(),
    };
    let mut normal_calls = normal.clone();
    let mut degraded_calls = Vec::with_capacity(normal.len() + degraded.len());
    for n in &normal {
        match degraded.iter().position(|d| d.name == n.name) {
            Some(i) => {
                let d = degraded.get(i).cloned().unwrap_or_else(|| n.clone());
                if !same_kind(n.quota(), d.quota()) {
                    return err(format!(
                        "{path}.degraded_limits[{i}]: `{}` must keep the algorithm it has in `limits` \
                         (a limit's name keeps its algorithm across modes, so its state carries over)",
                        n.name
                    ));
                }
                degraded_calls.push(d);
            }
            None => degraded_calls.push(n.clone()),
        }
    }
    for d in &degraded {
        if !normal.iter().any(|n| n.name == d.name) {
            normal_calls.push(d.shadowed());
            degraded_calls.push(d.clone());
        }
    }
    for calls in [&normal_calls, &degraded_calls] {
        let leases = calls
            .iter()
            .filter(|c| matches!(c.quota(), Quota::Concurrency(_)))
            .count();
        if leases > 1 {
            return err(format!(
                "{path}: {leases} `concurrency` limits in one tier; one request holds at most one lease"
            ));
        }
    }
    if normal_calls.len() > rl_grammar::MAX_LIMITS {
        return err(format!(
            "{path}: {} limits in one tier; RL.LIMITS takes at most {}",
            normal_calls.len(),
            rl_grammar::MAX_LIMITS
        ));
    }
    Ok(Tier {
        name: name.to_owned(),
        normal: normal_calls,
        degraded: degraded_calls,
    })
}

// ---------------------------------------------------------------- the rest

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
    if url.starts_with("rediss://") && url.contains("#insecure") {
        return err(format!(
            "{path}: `#insecure` would skip the certificate check; trust a private CA with redis.tls_ca_file instead"
        ));
    }
    if url.starts_with("redis://") || url.starts_with("rediss://") || url.starts_with("unix://") {
        Ok(())
    } else {
        err(format!(
            "{path}: `{url}` must start with redis://, rediss:// (TLS) or unix://"
        ))
    }
}

/// Every URL of a list uses TLS, or none does (a cluster or a group of
/// sentinels is configured as a whole).
fn check_same_scheme(path: &str, urls: &[String]) -> Result<(), ConfigError> {
    let tls = urls.iter().filter(|u| u.starts_with("rediss://")).count();
    if tls != 0 && tls != urls.len() {
        return err(format!(
            "{path}: mixes rediss:// and redis:// URLs; use TLS on all of them or none"
        ));
    }
    Ok(())
}

/// `true` if the URL carries a password of its own (`redis://user:pass@host`).
fn url_has_password(url: &str) -> bool {
    redis::IntoConnectionInfo::into_connection_info(url)
        .is_ok_and(|i| i.redis_settings().password().is_some())
}

/// A password from its file or its environment variable (never both); the
/// file's trailing newline is not part of it.
fn read_password(
    path: &str,
    file: Option<&str>,
    env: Option<String>,
    env_name: &str,
    base_dir: &Path,
) -> Result<Option<String>, ConfigError> {
    match (file, env) {
        (Some(_), Some(_)) => err(format!(
            "{path}.password_file and {env_name} are both set; use one"
        )),
        (None, env) => Ok(env),
        (Some(f), None) => {
            let p = base_dir.join(f);
            let text = std::fs::read_to_string(&p).map_err(|e| {
                ConfigError(format!(
                    "{path}.password_file: cannot read {}: {e}",
                    p.display()
                ))
            })?;
            let pw = text.trim_end_matches(['\n', '\r']);
            if pw.is_empty() {
                return err(format!("{path}.password_file: {} is empty", p.display()));
            }
            Ok(Some(pw.to_owned()))
        }
    }
}

/// The credentials of one kind of node; a password set here and in a URL too
/// is refused (which one would win is not obvious to a reader).
fn build_auth(
    path: &str,
    username: Option<String>,
    password: Option<String>,
    urls: &[String],
    env_name: &str,
) -> Result<RedisAuth, ConfigError> {
    if let Some(u) = &username {
        if u.is_empty() {
            return err(format!("{path}.username must not be empty"));
        }
        if password.is_none() {
            return err(format!(
                "{path}.username needs a password: {path}.password_file or {env_name}"
            ));
        }
    }
    if password.is_some() {
        if let Some(u) = urls.iter().find(|u| url_has_password(u)) {
            let shown = u.split('@').next_back().unwrap_or_default();
            return err(format!(
                "{path}: the URL for {shown} carries a password and {path}.password_file or \
                 {env_name} sets one too; keep one"
            ));
        }
    }
    Ok(RedisAuth { username, password })
}

/// The `tls_ca_file`'s PEM certificates, checked as trust anchors.
fn read_tls_ca(path: &Path) -> Result<Vec<u8>, ConfigError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let at = |msg: String| ConfigError(format!("redis.tls_ca_file: {}: {msg}", path.display()));
    let pem = std::fs::read(path).map_err(|e| at(format!("cannot read: {e}")))?;
    let mut store = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| at(format!("not a PEM certificate: {e}")))?;
        store
            .add(cert)
            .map_err(|e| at(format!("not a usable CA certificate: {e}")))?;
    }
    if store.is_empty() {
        return Err(at("holds no PEM certificate".to_owned()));
    }
    Ok(pem)
}

/// Proves the raw endpoints' key space disjoint from the policy keys and the
/// mode key: raw keys are `raw_prefix + anything`, policy keys
/// `key_prefix + "{" + …`, so neither prefix may be a prefix of the other.
fn check_disjoint(raw_prefix: &str, key_prefix: &str, mode_key: &str) -> Result<(), ConfigError> {
    let policy_space = format!("{key_prefix}{{");
    if raw_prefix.is_empty() {
        return err("raw.key_prefix must not be empty while raw.enabled = true (raw keys would share the policy keys' namespace)");
    }
    if policy_space.starts_with(raw_prefix) || raw_prefix.starts_with(&policy_space) {
        return err(format!(
            "raw.key_prefix `{raw_prefix}` overlaps the policy keys (`{policy_space}…`): choose a prefix neither starts the other"
        ));
    }
    let changed_at = changed_at_key(mode_key);
    if mode_key.starts_with(raw_prefix) || changed_at.starts_with(raw_prefix) {
        return err(format!(
            "raw.key_prefix `{raw_prefix}` covers redis.mode_key `{mode_key}` (or `{changed_at}`)"
        ));
    }
    Ok(())
}

/// API keys from their own file: a JSON or TOML object `"key": "tier"`.
pub fn read_api_keys_file(path: &Path) -> Result<BTreeMap<String, String>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigError(format!(
            "api_keys_file: cannot read {}: {e}",
            path.display()
        ))
    })?;
    let json = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"));
    if json {
        serde_json::from_str(&text)
            .map_err(|e| ConfigError(format!("api_keys_file {}: {e}", path.display())))
    } else {
        toml::from_str(&text)
            .map_err(|e| ConfigError(format!("api_keys_file {}: {e}", path.display())))
    }
}

/// Last four characters of a secret, for messages that must not print it.
fn key_suffix(key: &str) -> String {
    let n = key.chars().count();
    key.chars().skip(n.saturating_sub(4)).collect()
}

/// Checks everything and builds the [`Config`]. `base_dir` resolves a relative
/// `api_keys_file`; `max_log` is the server's `ratelimit.exact-max-log`.
pub fn validate(raw: RawConfig, base_dir: &Path, max_log: u64) -> Result<Config, ConfigError> {
    let listen_s = raw.listen.unwrap_or_else(|| "127.0.0.1:8080".to_owned());
    let listen: SocketAddr = listen_s.parse().map_err(|_| {
        ConfigError(format!(
            "listen: `{listen_s}` is not an address like 0.0.0.0:8080"
        ))
    })?;

    let sentinel_creds = raw.redis.sentinel.as_ref().map(|s| {
        (
            s.username.clone(),
            s.password_file.clone(),
            s.password_env.clone(),
        )
    });
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
    let (data_urls, sentinel_urls) = match &redis {
        RedisTarget::Standalone(u) => (vec![u.clone()], vec![]),
        RedisTarget::Cluster(n) => (n.clone(), vec![]),
        RedisTarget::Sentinel { nodes, .. } => (vec![], nodes.clone()),
    };
    check_same_scheme("redis.cluster", &data_urls)?;
    check_same_scheme("redis.sentinel.nodes", &sentinel_urls)?;
    let password = read_password(
        "redis",
        raw.redis.password_file.as_deref(),
        raw.redis.password_env,
        "SHIM_REDIS_PASSWORD",
        base_dir,
    )?;
    let redis_auth = build_auth(
        "redis",
        raw.redis.username,
        password,
        &data_urls,
        "SHIM_REDIS_PASSWORD",
    )?;
    let sentinel_auth = match sentinel_creds {
        Some((username, file, env)) => {
            let password = read_password(
                "redis.sentinel",
                file.as_deref(),
                env,
                "SHIM_SENTINEL_PASSWORD",
                base_dir,
            )?;
            build_auth(
                "redis.sentinel",
                username,
                password,
                &sentinel_urls,
                "SHIM_SENTINEL_PASSWORD",
            )?
        }
        None => RedisAuth::default(),
    };
    let tls_ca = match &raw.redis.tls_ca_file {
        Some(f) => {
            if !data_urls
                .iter()
                .chain(&sentinel_urls)
                .any(|u| u.starts_with("rediss://"))
            {
                return err("redis.tls_ca_file is set but no Redis URL uses rediss:// (TLS)");
            }
            Some(read_tls_ca(&base_dir.join(f))?)
        }
        None => None,
    };

    let timeout_ms = raw.redis.timeout_ms.unwrap_or(250);
    if !(1..=60_000).contains(&timeout_ms) {
        return err("redis.timeout_ms must be between 1 and 60000");
    }
    let mode_cache_ms = raw.mode_cache_ms.unwrap_or(1_000);
    if mode_cache_ms > 60_000 {
        return err("mode_cache_ms must be at most 60000");
    }
    let header_ms = raw.http.header_read_timeout_ms.unwrap_or(5_000);
    if !(10..=120_000).contains(&header_ms) {
        return err("http.header_read_timeout_ms must be between 10 and 120000");
    }
    let x_ratelimit_reset = match raw.http.x_ratelimit_reset.as_deref() {
        None | Some("unix") => ResetStyle::Unix,
        Some("delta") => ResetStyle::Delta,
        Some(other) => {
            return err(format!(
                "http.x_ratelimit_reset must be `unix` or `delta`, got `{other}`"
            ))
        }
    };
    let decision_log = match raw.observability.decision_log.as_deref() {
        None | Some("info") => DecisionLog::Info,
        Some("debug") => DecisionLog::Debug,
        Some("off") => DecisionLog::Off,
        Some(other) => {
            return err(format!(
                "observability.decision_log must be `info`, `debug` or `off`, got `{other}`"
            ))
        }
    };
    let reload_interval = match raw.reload_interval_ms.unwrap_or(0) {
        0 => None,
        ms if ms < 100 => return err("reload_interval_ms must be 0 (off) or at least 100"),
        ms => Some(Duration::from_millis(ms)),
    };

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
            return err("admin.token must be at least 16 characters (or unset to disable /admin)");
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
        let identity_kind = match rp.identity_kind.as_deref() {
            None | Some("api_key") => IdentityKind::ApiKey,
            Some("user") => IdentityKind::User,
            Some(other) => {
                return err(format!(
                    "{path}.identity_kind must be `api_key` or `user`, got `{other}`"
                ))
            }
        };
        let identity_query = match &rp.identity_query {
            Some(q) => {
                if identity_header.is_some() {
                    return err(format!(
                        "{path}: set one of identity_header and identity_query, not both"
                    ));
                }
                // `cost` is the decision's own parameter.
                if !is_name(q) || q == "cost" {
                    return err(format!(
                        "{path}.identity_query must be 1-64 characters of [A-Za-z0-9_.-] and not `cost`, got `{q}`"
                    ));
                }
                Some(q.clone())
            }
            None => None,
        };
        let has_identity = identity_header.is_some() || identity_query.is_some();
        if identity_kind == IdentityKind::User {
            if !has_identity {
                return err(format!(
                    "{path}.identity_kind = \"user\" needs identity_header or identity_query"
                ));
            }
            if trusted_proxies.is_empty() {
                return err(format!(
                    "{path}.identity_kind = \"user\" needs identity.trusted_proxies: a user id is believed only from them"
                ));
            }
            if rp.reject_unknown_keys {
                return err(format!(
                    "{path}.reject_unknown_keys applies to identity_kind = \"api_key\" only"
                ));
            }
        }
        if rp.tiers.is_empty() {
            return err(format!("{path}.tiers must define at least one tier"));
        }
        let mut tiers = HashMap::new();
        for (tname, rt) in &rp.tiers {
            let tpath = format!("{path}.tiers.{tname}");
            if !is_name(tname) {
                return err(format!("{tpath}: tier names must be [A-Za-z0-9_.-]"));
            }
            tiers.insert(tname.clone(), build_tier(&tpath, tname, rt, max_log)?);
        }
        if !tiers.contains_key(&rp.default_tier) {
            return err(format!(
                "{path}.default_tier `{}` is not one of its tiers",
                rp.default_tier
            ));
        }
        if rp.reject_unknown_keys && !has_identity {
            return err(format!(
                "{path}.reject_unknown_keys needs identity_header or identity_query to be set"
            ));
        }
        if rp.require_identity && !has_identity {
            return err(format!(
                "{path}.require_identity needs identity_header or identity_query to be set"
            ));
        }
        let anonymous_tier = match &rp.anonymous_tier {
            None => rp.default_tier.clone(),
            Some(t) => {
                if !tiers.contains_key(t) {
                    return err(format!(
                        "{path}.anonymous_tier `{t}` is not one of its tiers"
                    ));
                }
                // A setting that can never apply is a mistake worth hearing about.
                if rp.reject_unknown_keys {
                    return err(format!(
                        "{path}.anonymous_tier never applies with reject_unknown_keys (every caller has a known key)"
                    ));
                }
                if rp.require_identity && identity_kind == IdentityKind::User {
                    return err(format!(
                        "{path}.anonymous_tier never applies with require_identity and identity_kind = \"user\" (every caller has a user id)"
                    ));
                }
                t.clone()
            }
        };
        policies.insert(
            pname.clone(),
            Policy {
                name: pname.clone(),
                identity_header,
                identity_kind,
                default_tier: rp.default_tier.clone(),
                reject_unknown_keys: rp.reject_unknown_keys,
                identity_query,
                require_identity: rp.require_identity,
                anonymous_tier,
                tiers,
            },
        );
    }

    let mut api_keys = raw.api_keys;
    if let Some(file) = &raw.api_keys_file {
        let p = base_dir.join(file);
        for (k, t) in read_api_keys_file(&p)? {
            if api_keys.contains_key(&k) {
                return err(format!(
                    "api_keys_file: the key ending in `{}` is also in [api_keys]",
                    key_suffix(&k)
                ));
            }
            api_keys.insert(k, t);
        }
    }
    for (key, tier) in &api_keys {
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

    let key_prefix = raw.key_prefix.unwrap_or_else(|| "rl:".to_owned());
    if key_prefix.contains('{') || key_prefix.contains('}') {
        // A brace in the prefix would become the hash tag and put every
        // identity in one cluster slot.
        return err("key_prefix must not contain `{` or `}`");
    }
    let mode_key = raw
        .redis
        .mode_key
        .unwrap_or_else(|| "ratelimit:shim:mode".to_owned());
    if mode_key.starts_with(&format!("{key_prefix}{{")) {
        return err("redis.mode_key must not look like a policy key");
    }
    let raw_enabled = raw.raw.enabled.unwrap_or(false);
    let raw_key_prefix = raw.raw.key_prefix.unwrap_or_else(|| "raw:".to_owned());
    if raw_enabled {
        check_disjoint(&raw_key_prefix, &key_prefix, &mode_key)?;
    }

    Ok(Config {
        listen,
        redis,
        redis_auth,
        sentinel_auth,
        tls_ca,
        redis_timeout: Duration::from_millis(timeout_ms),
        fail_open: raw.fail_open.unwrap_or(false),
        mode_cache: Duration::from_millis(mode_cache_ms),
        mode_key,
        header_read_timeout: Duration::from_millis(header_ms),
        x_ratelimit_reset,
        decision_log,
        reload_interval,
        raw_enabled,
        raw_key_prefix,
        key_prefix,
        admin_token: raw.admin.token,
        trusted_proxies,
        api_keys: api_keys.into_iter().collect(),
        policies,
        exact_max_log: max_log,
    })
}
