//! The one seam between HTTP and Redis.
//!
//! Handlers never see a Redis connection: they build [`Call`]s and hand a batch
//! to a [`Backend`], which must send the whole batch in one round trip and
//! answer with one [`Reply`] per call, in order. The real implementation lives
//! in [`crate::redis_backend`]; [`FakeBackend`] is an in-memory stand-in so the
//! HTTP layer can be tested without a server.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use async_trait::async_trait;

/// `RL.SLIDING` accuracy option.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SlidingMode {
    /// Compact log; never errs (module default).
    Exact,
    /// Two weighted counters, O(1) memory.
    Approx,
}

impl SlidingMode {
    /// The literal the module expects.
    pub fn as_arg(self) -> &'static str {
        match self {
            SlidingMode::Exact => "EXACT",
            SlidingMode::Approx => "APPROX",
        }
    }
}

/// One limiter algorithm with its parameters (already validated).
#[derive(Debug, Clone, PartialEq)]
pub enum Algorithm {
    /// `RL.TOKENBUCKET key capacity rate cost`
    TokenBucket { capacity: u64, rate: f64 },
    /// `RL.FIXEDWINDOW key limit window cost`
    FixedWindow { limit: u64, window: f64 },
    /// `RL.SLIDING key limit window cost [EXACT|APPROX]`
    Sliding {
        limit: u64,
        window: f64,
        mode: SlidingMode,
    },
}

impl Algorithm {
    /// The quota (`q` in `RateLimit-Policy`).
    pub fn quota(&self) -> u64 {
        match self {
            Algorithm::TokenBucket { capacity, .. } => *capacity,
            Algorithm::FixedWindow { limit, .. } | Algorithm::Sliding { limit, .. } => *limit,
        }
    }

    /// The window in whole seconds (`w` in `RateLimit-Policy`), rounded up.
    /// A token bucket has no window; we report the time an empty bucket takes
    /// to refill completely, which is the period over which `q` units flow.
    pub fn window_secs(&self) -> u64 {
        let secs = match self {
            Algorithm::TokenBucket { capacity, rate } => *capacity as f64 / rate,
            Algorithm::FixedWindow { window, .. } | Algorithm::Sliding { window, .. } => *window,
        };
        if secs.is_finite() && secs > 0.0 {
            // Saturating float->int cast is what we want for absurd windows.
            secs.ceil() as u64
        } else {
            0
        }
    }

    /// Command name and arguments after the key (cost included).
    pub fn command(&self, key: &str, cost: u64) -> (&'static str, Vec<String>) {
        let mut args = vec![key.to_owned()];
        let name = match self {
            Algorithm::TokenBucket { capacity, rate } => {
                args.extend([capacity.to_string(), fmt_decimal(*rate), cost.to_string()]);
                "RL.TOKENBUCKET"
            }
            Algorithm::FixedWindow { limit, window } => {
                args.extend([limit.to_string(), fmt_decimal(*window), cost.to_string()]);
                "RL.FIXEDWINDOW"
            }
            Algorithm::Sliding {
                limit,
                window,
                mode,
            } => {
                args.extend([
                    limit.to_string(),
                    fmt_decimal(*window),
                    cost.to_string(),
                    mode.as_arg().to_owned(),
                ]);
                "RL.SLIDING"
            }
        };
        (name, args)
    }
}

/// Rust's `Display` for `f64` never uses exponent notation, which the module's
/// decimal parser may not accept; it is also the shortest exact round-trip form.
fn fmt_decimal(v: f64) -> String {
    format!("{v}")
}

/// One command of a batch.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub key: String,
    pub algorithm: Algorithm,
    pub cost: u64,
}

/// The module's five-field reply (SPEC §1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply {
    pub allowed: bool,
    pub limit: i64,
    pub remaining: i64,
    /// 0 if allowed, -1 if the call can never succeed.
    pub retry_after_ms: i64,
    pub reset_after_ms: i64,
}

impl Reply {
    /// Parses the RESP2 array (or RESP3 map) of five integers.
    pub fn from_values(values: &[i64]) -> Option<Reply> {
        match values {
            [allowed, limit, remaining, retry, reset] => Some(Reply {
                allowed: *allowed == 1,
                limit: *limit,
                remaining: *remaining,
                retry_after_ms: *retry,
                reset_after_ms: *reset,
            }),
            _ => None,
        }
    }
}

/// Shared system state (SPEC §2 "load-aware mode").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum SystemMode {
    #[default]
    Normal,
    Degraded,
}

impl SystemMode {
    pub fn as_str(self) -> &'static str {
        match self {
            SystemMode::Normal => "NORMAL",
            SystemMode::Degraded => "DEGRADED",
        }
    }

    /// Unknown stored values count as NORMAL: a typo in Redis must not shed load.
    pub fn parse_lenient(s: &str) -> SystemMode {
        if s.eq_ignore_ascii_case("DEGRADED") {
            SystemMode::Degraded
        } else {
            SystemMode::Normal
        }
    }
}

/// Readiness facts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Readiness {
    pub module_loaded: bool,
}

/// What can go wrong talking to Redis. The text is for logs only.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    /// Connection refused/reset, timeout, cluster down: retryable, maps to 503.
    #[error("redis unavailable: {0}")]
    Unavailable(String),
    /// The server answered with an error to one of our commands.
    #[error("redis rejected the command: {0}")]
    Rejected(RejectKind, String),
    /// The reply did not have the shape we expect (version skew).
    #[error("unexpected reply from redis: {0}")]
    Protocol(String),
}

/// Why the server rejected a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectKind {
    /// `WRONGTYPE` or another algorithm's state under the key.
    WrongType,
    /// The `RL.*` commands are unknown: the module is not loaded.
    ModuleMissing,
    /// Any other `ERR`: the arguments were refused.
    Invalid,
}

impl fmt::Display for RejectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            RejectKind::WrongType => "wrong type",
            RejectKind::ModuleMissing => "module missing",
            RejectKind::Invalid => "invalid",
        };
        f.write_str(s)
    }
}

/// Classifies a server error reply by its code and text.
pub fn classify_server_error(code: &str, detail: &str) -> RejectKind {
    let lower = detail.to_ascii_lowercase();
    if code.eq_ignore_ascii_case("WRONGTYPE") {
        RejectKind::WrongType
    } else if lower.contains("unknown command") {
        RejectKind::ModuleMissing
    } else if lower.contains("another algorithm") || lower.contains("wrong kind") {
        RejectKind::WrongType
    } else {
        RejectKind::Invalid
    }
}

/// Redis access as the HTTP layer needs it.
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// Runs all calls in ONE round trip (pipeline) and returns one reply per
    /// call, in order. Not a transaction: every call is executed.
    async fn run(&self, calls: &[Call]) -> Result<Vec<Reply>, BackendError>;
    /// Reads the shared system mode; a missing key means NORMAL.
    async fn get_mode(&self) -> Result<SystemMode, BackendError>;
    /// Stores the shared system mode.
    async fn set_mode(&self, mode: SystemMode) -> Result<(), BackendError>;
    /// PING plus `MODULE LIST`.
    async fn readiness(&self) -> Result<Readiness, BackendError>;
}

/// In-memory backend for HTTP-layer tests: a token bucket/fixed counter that
/// never refills, which is enough to drive allow/deny paths deterministically.
#[derive(Default)]
pub struct FakeBackend {
    used: Mutex<HashMap<String, u64>>,
    mode: Mutex<SystemMode>,
    down: AtomicBool,
    /// Every batch seen, for assertions on keys and round trips.
    pub batches: Mutex<Vec<Vec<Call>>>,
}

impl FakeBackend {
    pub fn new() -> Self {
        Self::default()
    }

    /// Simulates an outage (`true`) or recovery (`false`).
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    fn check_up(&self) -> Result<(), BackendError> {
        if self.down.load(Ordering::SeqCst) {
            Err(BackendError::Unavailable("fake outage".into()))
        } else {
            Ok(())
        }
    }
}

/// Fixed retry/reset the fake reports, so tests can check rounding.
pub const FAKE_RETRY_MS: i64 = 1_001;
pub const FAKE_RESET_MS: i64 = 59_500;

#[async_trait]
impl Backend for FakeBackend {
    async fn run(&self, calls: &[Call]) -> Result<Vec<Reply>, BackendError> {
        self.check_up()?;
        if let Ok(mut b) = self.batches.lock() {
            b.push(calls.to_vec());
        }
        let mut used = self
            .used
            .lock()
            .map_err(|_| BackendError::Protocol("poisoned".into()))?;
        let mut out = Vec::with_capacity(calls.len());
        for call in calls {
            let limit = call.algorithm.quota();
            let u = used.entry(call.key.clone()).or_insert(0);
            let reply = if call.cost > limit {
                Reply {
                    allowed: false,
                    limit: limit as i64,
                    remaining: (limit - *u) as i64,
                    retry_after_ms: -1,
                    reset_after_ms: FAKE_RESET_MS,
                }
            } else if *u + call.cost <= limit {
                *u += call.cost;
                Reply {
                    allowed: true,
                    limit: limit as i64,
                    remaining: (limit - *u) as i64,
                    retry_after_ms: 0,
                    reset_after_ms: FAKE_RESET_MS,
                }
            } else {
                Reply {
                    allowed: false,
                    limit: limit as i64,
                    remaining: (limit - *u) as i64,
                    retry_after_ms: FAKE_RETRY_MS,
                    reset_after_ms: FAKE_RESET_MS,
                }
            };
            out.push(reply);
        }
        Ok(out)
    }

    async fn get_mode(&self) -> Result<SystemMode, BackendError> {
        self.check_up()?;
        self.mode
            .lock()
            .map(|m| *m)
            .map_err(|_| BackendError::Protocol("poisoned".into()))
    }

    async fn set_mode(&self, mode: SystemMode) -> Result<(), BackendError> {
        self.check_up()?;
        let mut m = self
            .mode
            .lock()
            .map_err(|_| BackendError::Protocol("poisoned".into()))?;
        *m = mode;
        Ok(())
    }

    async fn readiness(&self) -> Result<Readiness, BackendError> {
        self.check_up()?;
        Ok(Readiness {
            module_loaded: true,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_render_like_the_module_usage_lines() {
        let tb = Algorithm::TokenBucket {
            capacity: 10,
            rate: 0.25,
        };
        assert_eq!(
            tb.command("k", 1),
            (
                "RL.TOKENBUCKET",
                vec!["k".into(), "10".into(), "0.25".into(), "1".into()]
            )
        );
        let sl = Algorithm::Sliding {
            limit: 5,
            window: 60.0,
            mode: SlidingMode::Approx,
        };
        assert_eq!(sl.command("k", 0).1, vec!["k", "5", "60", "0", "APPROX"]);
        // No exponent notation even for tiny rates.
        let tiny = Algorithm::TokenBucket {
            capacity: 1,
            rate: 1e-7,
        };
        assert_eq!(tiny.command("k", 1).1[2], "0.0000001");
    }

    #[test]
    fn token_bucket_window_is_full_refill_time_rounded_up() {
        let tb = Algorithm::TokenBucket {
            capacity: 10,
            rate: 3.0,
        };
        assert_eq!(tb.window_secs(), 4);
        let fw = Algorithm::FixedWindow {
            limit: 1,
            window: 0.25,
        };
        assert_eq!(fw.window_secs(), 1);
    }

    #[test]
    fn server_errors_are_classified() {
        assert_eq!(
            classify_server_error("WRONGTYPE", "Operation against a key"),
            RejectKind::WrongType
        );
        assert_eq!(
            classify_server_error("ERR", "unknown command 'RL.TOKENBUCKET'"),
            RejectKind::ModuleMissing
        );
        assert_eq!(
            classify_server_error("ERR", "rate must be positive"),
            RejectKind::Invalid
        );
    }
}
