//! The one seam between HTTP and Redis.
//!
//! Handlers never see a Redis connection: a policy decision is one
//! [`Backend::limits`] call (`RL.LIMITS`, one round trip, all or nothing), a
//! raw endpoint one [`Backend::single`] call. The real implementation lives in
//! [`crate::redis_backend`]; [`fake::FakeBackend`] is an in-memory stand-in so
//! the HTTP layer can be tested without a server.

#[cfg(any(test, feature = "test-util"))]
pub mod fake;

use async_trait::async_trait;
use rl_grammar::Quota;

pub use crate::model::{changed_at_key, LimitCall, LimitsReply, Reply, SystemMode};

/// What a mode change found and did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModeChange {
    /// The mode stored before (a missing key counts as NORMAL).
    pub previous: SystemMode,
    /// When the mode last changed (Unix ms): `now_ms` if this call changed
    /// it, else the stored time (`None` if it never changed through a shim).
    pub changed_at_ms: Option<u64>,
}

/// Readiness facts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Readiness {
    pub module_loaded: bool,
}

/// What can go wrong talking to Redis. The text is for logs, except the
/// module's own `ERR` message, which is written for users.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    /// Connection refused/reset, timeout, cluster down, loading, read-only
    /// replica, out of memory: retryable, maps to 503.
    #[error("redis unavailable: {0}")]
    Unavailable(String),
    /// `WRONGTYPE`: the key holds another Redis type or another limiter's state.
    #[error("redis: {0}")]
    WrongType(String),
    /// `ERR`: the command was refused; the text is the server's message.
    #[error("redis: {0}")]
    Refused(String),
    /// The reply did not have the shape we expect (version skew).
    #[error("unexpected reply from redis: {0}")]
    Protocol(String),
}

/// Classifies a server error reply by its code alone (never by wording):
/// `WRONGTYPE`, `ERR` and `NOPERM` are answers about this call; every other code
/// (`OOM`, `LOADING`, `READONLY`, `MASTERDOWN`, `NOREPLICAS`, `BUSY`,
/// `TRYAGAIN`, `CLUSTERDOWN`, …) says the server cannot serve it now.
pub fn classify_server_error(code: &str, message: String) -> BackendError {
    if code.eq_ignore_ascii_case("WRONGTYPE") {
        BackendError::WrongType(message)
    } else if code.eq_ignore_ascii_case("ERR") || code.eq_ignore_ascii_case("NOPERM") {
        BackendError::Refused(message)
    } else {
        BackendError::Unavailable(message)
    }
}

/// Redis access as the HTTP layer needs it.
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// `RL.LIMITS key cost spec...`: one round trip, all or nothing.
    async fn limits(
        &self,
        key: &str,
        cost: u64,
        calls: &[LimitCall],
    ) -> Result<LimitsReply, BackendError>;
    /// `RL.RELEASE key id`: `true` if the lease was held and is now free.
    async fn release(&self, key: &str, id: &str) -> Result<bool, BackendError>;
    /// `RL.TOKENBUCKET` / `RL.FIXEDWINDOW` / `RL.SLIDING` on one key.
    async fn single(&self, key: &str, quota: &Quota, cost: u64) -> Result<Reply, BackendError>;
    /// Reads the shared system mode; a missing key means NORMAL.
    async fn get_mode(&self) -> Result<SystemMode, BackendError>;
    /// Stores the shared system mode (`SET … GET`, so the previous value is
    /// read in the same command) and, when it changed, `now_ms` as the time
    /// of the change.
    async fn set_mode(&self, mode: SystemMode, now_ms: u64) -> Result<ModeChange, BackendError>;
    /// When the mode last changed through a shim (Unix ms), if ever.
    async fn mode_changed_at(&self) -> Result<Option<u64>, BackendError>;
    /// PING plus `MODULE LIST`.
    async fn readiness(&self) -> Result<Readiness, BackendError>;
    /// `CONFIG GET ratelimit.exact-max-log`; `None` when not permitted or absent.
    async fn exact_max_log(&self) -> Result<Option<u64>, BackendError>;
}

/// The single command and its arguments after the key, cost included, in the
/// module's usage order (`RL.SLIDING key limit window cost [EXACT|APPROX]`).
pub fn single_command(quota: &Quota, cost: u64) -> (&'static str, Vec<String>) {
    let ([first, second], mode) = quota.words();
    let mut args = vec![first, second];
    let command = match quota {
        Quota::TokenBucket(_) => "RL.TOKENBUCKET",
        Quota::FixedWindow(_) => "RL.FIXEDWINDOW",
        Quota::SlidingExact(_) | Quota::SlidingApprox(_) => "RL.SLIDING",
        // `RL.ACQUIRE key limit ttl COST n`: its cost is an option.
        Quota::Concurrency(_) => {
            args.push("COST".to_owned());
            "RL.ACQUIRE"
        }
    };
    args.push(cost.to_string());
    args.extend(mode.map(str::to_owned));
    (command, args)
}

/// `RL.LIMITS` arguments after the key.
pub fn limits_args(cost: u64, calls: &[LimitCall]) -> Vec<String> {
    let mut args = vec![cost.to_string()];
    for c in calls {
        args.extend(c.words().iter().cloned());
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;
    use rl_grammar::{TokenBucketQuota, WindowQuota};

    #[test]
    fn single_commands_render_like_the_module_usage_lines() {
        let tb = Quota::TokenBucket(TokenBucketQuota::new(10, 250_000_000).expect("quota"));
        assert_eq!(
            single_command(&tb, 1),
            (
                "RL.TOKENBUCKET",
                vec!["10".into(), "0.25".into(), "1".into()]
            )
        );
        let sl = Quota::SlidingApprox(WindowQuota::new(5, 60_000).expect("quota"));
        assert_eq!(single_command(&sl, 0).1, vec!["5", "60", "0", "APPROX"]);
    }

    /// Defect 4: the class comes from the code the module really sends.
    #[test]
    fn server_errors_are_classified_by_code() {
        let wrong = "WRONGTYPE key holds RL.TOKENBUCKET state, not RL.SLIDING".to_owned();
        assert!(matches!(
            classify_server_error("WRONGTYPE", wrong),
            BackendError::WrongType(_)
        ));
        assert!(matches!(
            classify_server_error("ERR", "ERR window must be ...".into()),
            BackendError::Refused(_)
        ));
        for code in [
            "OOM",
            "LOADING",
            "READONLY",
            "MASTERDOWN",
            "NOREPLICAS",
            "BUSY",
        ] {
            assert!(
                matches!(
                    classify_server_error(code, String::new()),
                    BackendError::Unavailable(_)
                ),
                "{code}"
            );
        }
    }
}
