//! Validated limiter parameters: a quota that exists is a quota that works.

use std::fmt;

use crate::bounds::{MAX_COUNT, MAX_WINDOW_MS};

/// Why a quota could not be built. The glue turns these into `ERR` replies
/// that name the argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuotaError {
    /// Capacity or limit is 0 or above [`MAX_COUNT`].
    Limit,
    /// The refill rate is 0.
    Rate,
    /// The window is 0 or above [`MAX_WINDOW_MS`].
    Window,
}

impl fmt::Display for QuotaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QuotaError::Limit => write!(f, "must be an integer from 1 to {MAX_COUNT}"),
            QuotaError::Rate => write!(f, "must be greater than 0"),
            QuotaError::Window => {
                write!(f, "must be from 0.001 to {} seconds", MAX_WINDOW_MS / 1000)
            }
        }
    }
}

/// A token bucket: `capacity` tokens, refilled at `rate_nano / 1e9` tokens
/// per second.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenBucketQuota {
    capacity: u64,
    rate_nano: u64,
}

impl TokenBucketQuota {
    pub fn new(capacity: u64, rate_nano: u64) -> Result<Self, QuotaError> {
        if capacity == 0 || capacity > MAX_COUNT {
            return Err(QuotaError::Limit);
        }
        if rate_nano == 0 {
            return Err(QuotaError::Rate);
        }
        Ok(Self {
            capacity,
            rate_nano,
        })
    }

    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Tokens per second, times 1e9. Also pico-tokens per millisecond.
    pub fn rate_nano(&self) -> u64 {
        self.rate_nano
    }
}

/// A window quota: at most `limit` units per `window_ms`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowQuota {
    limit: u64,
    window_ms: u64,
}

impl WindowQuota {
    pub fn new(limit: u64, window_ms: u64) -> Result<Self, QuotaError> {
        if limit == 0 || limit > MAX_COUNT {
            return Err(QuotaError::Limit);
        }
        if window_ms == 0 || window_ms > MAX_WINDOW_MS {
            return Err(QuotaError::Window);
        }
        Ok(Self { limit, window_ms })
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }

    pub fn window_ms(&self) -> u64 {
        self.window_ms
    }
}

/// Any quota, as the glue passes it around.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Quota {
    TokenBucket(TokenBucketQuota),
    FixedWindow(WindowQuota),
    SlidingExact(WindowQuota),
    SlidingApprox(WindowQuota),
}

/// Which algorithm a quota (or a stored state) belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    TokenBucket,
    FixedWindow,
    SlidingExact,
    SlidingApprox,
}

impl Algorithm {
    /// How users call it, for error messages.
    pub fn command(self) -> &'static str {
        match self {
            Algorithm::TokenBucket => "RL.TOKENBUCKET",
            Algorithm::FixedWindow => "RL.FIXEDWINDOW",
            Algorithm::SlidingExact => "RL.SLIDING EXACT",
            Algorithm::SlidingApprox => "RL.SLIDING APPROX",
        }
    }
}

impl Quota {
    pub fn algorithm(&self) -> Algorithm {
        match self {
            Quota::TokenBucket(_) => Algorithm::TokenBucket,
            Quota::FixedWindow(_) => Algorithm::FixedWindow,
            Quota::SlidingExact(_) => Algorithm::SlidingExact,
            Quota::SlidingApprox(_) => Algorithm::SlidingApprox,
        }
    }

    /// The capacity or limit: the most units one call can ever get.
    pub fn limit(&self) -> u64 {
        match self {
            Quota::TokenBucket(q) => q.capacity(),
            Quota::FixedWindow(q) | Quota::SlidingExact(q) | Quota::SlidingApprox(q) => q.limit(),
        }
    }

    /// Refuses an `EXACT` quota whose log could outgrow `max_log` entries
    /// (`ratelimit.exact-max-log`): at most one entry per millisecond, and
    /// one per granted unit.
    pub fn check_exact_log(&self, max_log: u64) -> Result<(), String> {
        if let Quota::SlidingExact(q) = self {
            let worst = q.limit().min(q.window_ms());
            if worst > max_log {
                return Err(format!(
                    "ERR RL.SLIDING EXACT with limit {} could keep {worst} log entries, above ratelimit.exact-max-log ({max_log}): use APPROX, or raise it with CONFIG SET ratelimit.exact-max-log",
                    q.limit()
                ));
            }
        }
        Ok(())
    }

    /// The words of this quota in an `RL.LIMITS` spec, e.g.
    /// `TOKENBUCKET 10 0.5` or `SLIDING 100 60 APPROX`.
    pub fn args(&self) -> Vec<String> {
        use crate::number::{format_rate, format_window};
        match self {
            Quota::TokenBucket(q) => vec![
                "TOKENBUCKET".into(),
                q.capacity().to_string(),
                format_rate(q.rate_nano()),
            ],
            Quota::FixedWindow(q) => vec![
                "FIXEDWINDOW".into(),
                q.limit().to_string(),
                format_window(q.window_ms()),
            ],
            Quota::SlidingExact(q) | Quota::SlidingApprox(q) => vec![
                "SLIDING".into(),
                q.limit().to_string(),
                format_window(q.window_ms()),
                if matches!(self, Quota::SlidingExact(_)) {
                    "EXACT"
                } else {
                    "APPROX"
                }
                .into(),
            ],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotas_refuse_values_that_cannot_work() {
        assert_eq!(TokenBucketQuota::new(0, 1), Err(QuotaError::Limit));
        assert_eq!(
            TokenBucketQuota::new(MAX_COUNT + 1, 1),
            Err(QuotaError::Limit)
        );
        assert_eq!(TokenBucketQuota::new(1, 0), Err(QuotaError::Rate));
        assert!(TokenBucketQuota::new(MAX_COUNT, u64::MAX).is_ok());
        assert_eq!(WindowQuota::new(0, 1), Err(QuotaError::Limit));
        assert_eq!(WindowQuota::new(1, 0), Err(QuotaError::Window));
        assert_eq!(
            WindowQuota::new(1, MAX_WINDOW_MS + 1),
            Err(QuotaError::Window)
        );
        assert!(WindowQuota::new(MAX_COUNT, MAX_WINDOW_MS).is_ok());
    }
}
