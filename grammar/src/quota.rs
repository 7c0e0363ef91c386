//! Validated limiter parameters: a quota that exists is a quota that works.

use std::fmt;

use crate::bounds::{MAX_COUNT, MAX_LEASES_CAP, MAX_WINDOW_MS};

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

/// A lease quota: at most `limit` slots held at once, each lease living
/// `ttl_ms` unless renewed or released.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaseQuota {
    limit: u64,
    ttl_ms: u64,
}

impl LeaseQuota {
    /// `limit` from 1 to [`MAX_LEASES_CAP`] (a configured maximum is checked
    /// by [`LeaseQuota::check_max_leases`]), `ttl_ms` from 1 ms to the
    /// longest window.
    pub fn new(limit: u64, ttl_ms: u64) -> Result<Self, QuotaError> {
        if limit == 0 || limit > MAX_LEASES_CAP {
            return Err(QuotaError::Limit);
        }
        if ttl_ms == 0 || ttl_ms > MAX_WINDOW_MS {
            return Err(QuotaError::Window);
        }
        Ok(Self { limit, ttl_ms })
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }

    pub fn ttl_ms(&self) -> u64 {
        self.ttl_ms
    }

    /// Refuses a limit above `ratelimit.max-leases`: a key holds at most
    /// `limit` leases, so this bounds its memory.
    pub fn check_max_leases(&self, max: u64) -> Result<(), String> {
        if self.limit > max {
            return Err(format!(
                "ERR limit {} is above ratelimit.max-leases ({max}), the most leases one key may hold: lower it, or raise the maximum with CONFIG SET ratelimit.max-leases",
                self.limit
            ));
        }
        Ok(())
    }
}

/// Any quota, as the glue passes it around.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Quota {
    TokenBucket(TokenBucketQuota),
    FixedWindow(WindowQuota),
    SlidingExact(WindowQuota),
    SlidingApprox(WindowQuota),
    /// Concurrency leases (`RL.ACQUIRE`, `CONCURRENCY` in `RL.LIMITS`).
    Concurrency(LeaseQuota),
}

/// Which algorithm a quota (or a stored state) belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    TokenBucket,
    FixedWindow,
    SlidingExact,
    SlidingApprox,
    /// Concurrency leases.
    Concurrency,
}

impl Algorithm {
    /// How users call it, for error messages.
    pub fn command(self) -> &'static str {
        match self {
            Algorithm::TokenBucket => "RL.TOKENBUCKET",
            Algorithm::FixedWindow => "RL.FIXEDWINDOW",
            Algorithm::SlidingExact => "RL.SLIDING EXACT",
            Algorithm::SlidingApprox => "RL.SLIDING APPROX",
            Algorithm::Concurrency => "RL.ACQUIRE",
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
            Quota::Concurrency(_) => Algorithm::Concurrency,
        }
    }

    /// The capacity or limit: the most units one call can ever get.
    pub fn limit(&self) -> u64 {
        match self {
            Quota::TokenBucket(q) => q.capacity(),
            Quota::FixedWindow(q) | Quota::SlidingExact(q) | Quota::SlidingApprox(q) => q.limit(),
            Quota::Concurrency(q) => q.limit(),
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

    /// The quota's two parameters as every command takes them (`capacity
    /// rate` or `limit window`, shortest exact decimals) and the sliding
    /// window's mode word: the one rendering of a quota into command words.
    pub fn words(&self) -> ([String; 2], Option<&'static str>) {
        use crate::number::{format_rate, format_window};
        match self {
            Quota::TokenBucket(q) => ([q.capacity().to_string(), format_rate(q.rate_nano())], None),
            Quota::FixedWindow(q) => ([q.limit().to_string(), format_window(q.window_ms())], None),
            Quota::SlidingExact(q) => (
                [q.limit().to_string(), format_window(q.window_ms())],
                Some("EXACT"),
            ),
            Quota::SlidingApprox(q) => (
                [q.limit().to_string(), format_window(q.window_ms())],
                Some("APPROX"),
            ),
            Quota::Concurrency(q) => ([q.limit().to_string(), format_window(q.ttl_ms())], None),
        }
    }

    /// The words of this quota in an `RL.LIMITS` spec, e.g.
    /// `TOKENBUCKET 10 0.5` or `SLIDING 100 60 APPROX`.
    pub fn args(&self) -> Vec<String> {
        let keyword = match self {
            Quota::TokenBucket(_) => "TOKENBUCKET",
            Quota::FixedWindow(_) => "FIXEDWINDOW",
            Quota::SlidingExact(_) | Quota::SlidingApprox(_) => "SLIDING",
            Quota::Concurrency(_) => "CONCURRENCY",
        };
        let ([first, second], mode) = self.words();
        let mut out = vec![keyword.to_owned(), first, second];
        out.extend(mode.map(str::to_owned));
        out
    }

    /// A sliding window in the mode a caller named: `EXACT` or `APPROX` in
    /// any case, `EXACT` when none is named; `None` for any other word (each
    /// command says so in its own words).
    pub fn sliding(window: WindowQuota, mode: Option<&[u8]>) -> Option<Quota> {
        match mode {
            None => Some(Quota::SlidingExact(window)),
            Some(m) if m.eq_ignore_ascii_case(b"EXACT") => Some(Quota::SlidingExact(window)),
            Some(m) if m.eq_ignore_ascii_case(b"APPROX") => Some(Quota::SlidingApprox(window)),
            Some(_) => None,
        }
    }
}

/// `limit` and `window` as `RL.FIXEDWINDOW`, `RL.SLIDING` and `RL.LIMITS`
/// take them; the error is the module's `ERR …` line.
pub fn window_quota(limit: &[u8], window: &[u8]) -> Result<WindowQuota, String> {
    use crate::number::{parse_count, parse_window_ms};
    let limit = parse_count("limit", limit, 1)?;
    let window_ms = parse_window_ms(window)?;
    WindowQuota::new(limit, window_ms).map_err(|e| format!("ERR limit {e}"))
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
