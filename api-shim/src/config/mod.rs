//! Configuration: one TOML file (plus an optional API-key file) and a few
//! `SHIM_*` environment overrides.
//!
//! - [`raw`] mirrors the TOML with serde, nothing checked;
//! - [`validated`] checks every field and builds [`Config`], whose values
//!   cannot be invalid (limits through the module's grammar, `rl_grammar`).
//!
//! A [`Loader`] remembers where the configuration came from so that a reload
//! (SIGHUP, or every `reload_interval_ms`) reads and validates it whole again.

mod error;
pub mod raw;
pub mod validated;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use error::ConfigError;
pub use validated::{
    Config, DecisionLog, IdentityKind, LimitCall, Policy, RedisAuth, RedisTarget, Tier,
    MAX_HEADER_INT,
};

/// Environment variables the shim reads (besides `SHIM_CONFIG`).
pub const ENV_OVERRIDES: &[&str] = &[
    "SHIM_LISTEN",
    "SHIM_REDIS_URL",
    "SHIM_REDIS_CLUSTER",
    "SHIM_ADMIN_TOKEN",
    "SHIM_FAIL_OPEN",
    "SHIM_REDIS_PASSWORD",
    "SHIM_SENTINEL_PASSWORD",
];

/// Where the configuration comes from: a file (or none) and the environment
/// overrides as they were at start-up.
#[derive(Debug, Clone)]
pub struct Loader {
    pub path: Option<PathBuf>,
    env: BTreeMap<String, String>,
}

impl Loader {
    /// Snapshots the `SHIM_*` overrides through `env`.
    pub fn new(path: Option<PathBuf>, env: impl Fn(&str) -> Option<String>) -> Loader {
        let env = ENV_OVERRIDES
            .iter()
            .filter_map(|k| env(k).map(|v| ((*k).to_owned(), v)))
            .collect();
        Loader { path, env }
    }

    /// Reads and validates the whole configuration against the server's
    /// `ratelimit.exact-max-log`.
    pub fn load(&self, max_log: u64) -> Result<Config, ConfigError> {
        let text = match &self.path {
            Some(p) => std::fs::read_to_string(p)
                .map_err(|e| ConfigError(format!("cannot read {}: {e}", p.display())))?,
            None => String::new(),
        };
        let base = self
            .path
            .as_deref()
            .and_then(Path::parent)
            .map(Path::to_owned)
            .unwrap_or_default();
        Config::from_toml_in(&text, |k| self.env.get(k).cloned(), &base, max_log)
    }
}

impl Config {
    /// Reads the file at `path` (or starts from defaults when `None`), applies
    /// environment overrides read through `env`, and checks EXACT limits
    /// against the module's default `exact-max-log`.
    pub fn load(
        path: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        Loader::new(path.map(Path::to_owned), env).load(rl_grammar::EXACT_MAX_LOG_DEFAULT)
    }

    /// Parses TOML text and applies environment overrides (module defaults).
    pub fn from_toml(
        text: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        Self::from_toml_in(text, env, Path::new(""), rl_grammar::EXACT_MAX_LOG_DEFAULT)
    }

    /// Parses TOML text; a relative `api_keys_file` is read from `base`.
    pub fn from_toml_in(
        text: &str,
        env: impl Fn(&str) -> Option<String>,
        base: &Path,
        max_log: u64,
    ) -> Result<Config, ConfigError> {
        // toml's message already carries the line, column and key path.
        let mut raw: raw::RawConfig =
            toml::from_str(text).map_err(|e| ConfigError(e.to_string()))?;
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
        // Passwords come from the environment (or a file), never the TOML.
        raw.redis.password_env = env("SHIM_REDIS_PASSWORD");
        if let Some(v) = env("SHIM_SENTINEL_PASSWORD") {
            match raw.redis.sentinel.as_mut() {
                Some(s) => s.password_env = Some(v),
                None => {
                    return Err(ConfigError(
                        "SHIM_SENTINEL_PASSWORD is set but [redis.sentinel] is not configured"
                            .to_owned(),
                    ))
                }
            }
        }
        if let Some(v) = env("SHIM_ADMIN_TOKEN") {
            raw.admin.token = Some(v);
        }
        if let Some(v) = env("SHIM_FAIL_OPEN") {
            raw.fail_open = Some(match v.as_str() {
                "1" | "true" | "yes" => true,
                "0" | "false" | "no" => false,
                _ => {
                    return Err(ConfigError(format!(
                        "SHIM_FAIL_OPEN must be true or false, got `{v}`"
                    )))
                }
            });
        }
        validated::validate(raw, base, max_log)
    }
}

#[cfg(test)]
mod tests;
