//! The shim's vocabulary, which every other module speaks and which speaks
//! no other module: the system mode, one limit call as sent, the module's
//! replies, how the reset header is written and the header integer bound.

use rl_grammar::{LimitSpec, Quota};

/// Largest integer a structured header field can carry (RFC 9651: 15 digits).
/// Counts above it could not be reported in `RateLimit-Policy`, so they are
/// refused where they enter (configuration, raw endpoint parameters).
pub const MAX_HEADER_INT: u64 = 999_999_999_999_999;

/// The module's five-field reply (docs/commands.md).
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
    /// From the five integers in reply order.
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

/// The `RL.LIMITS` reply: the decision, the binding limit's position and one
/// reply per limit, in the order sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitsReply {
    pub allowed: bool,
    pub binding: usize,
    pub limits: Vec<Reply>,
    /// The lease a `concurrency` limit took (granted calls with one only).
    pub lease: Option<String>,
}

/// Shared system state (docs/http.md, load-aware mode).
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

/// The key holding when the mode last changed (Unix ms), beside the mode key,
/// which keeps holding the bare `NORMAL`/`DEGRADED` as before.
pub fn changed_at_key(mode_key: &str) -> String {
    format!("{mode_key}:changed_at")
}

/// One limit as sent in `RL.LIMITS`: the display name and the spec (which
/// carries the same name as `NAME`), walked once at load time.
#[derive(Debug, Clone, PartialEq)]
pub struct LimitCall {
    pub name: String,
    spec: LimitSpec,
    /// `spec.args()`, rendered once at load time (the hot path only copies).
    words: Vec<String>,
}

impl LimitCall {
    pub fn new(name: String, spec: LimitSpec) -> LimitCall {
        let words = spec.args();
        LimitCall { name, spec, words }
    }

    /// The spec's words in `RL.LIMITS`: `NAME n ALGO params [SHADOW]`.
    pub fn words(&self) -> &[String] {
        &self.words
    }

    pub fn quota(&self) -> &Quota {
        &self.spec.quota
    }

    pub fn shadow(&self) -> bool {
        self.spec.shadow
    }

    /// The same limit sent as `SHADOW`: counted, never binding.
    pub fn shadowed(&self) -> LimitCall {
        let mut spec = self.spec.clone();
        spec.shadow = true;
        LimitCall::new(self.name.clone(), spec)
    }
}

/// How `X-RateLimit-Reset` is written (`http.x_ratelimit_reset`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ResetStyle {
    /// The Unix time in seconds at which the binding limit is full again
    /// (GitHub's API and the seed systems), rounded up.
    #[default]
    Unix,
    /// Seconds from now, rounded up.
    Delta,
}
