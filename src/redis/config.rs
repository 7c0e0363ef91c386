//! Tunables, settable as module arguments or with `CONFIG SET ratelimit.*`.

use std::sync::atomic::{AtomicI64, Ordering};

/// Default for `ratelimit.exact-max-log`.
pub const EXACT_MAX_LOG_DEFAULT: i64 = 4096;

/// The largest number of entries an `EXACT` sliding log may hold. A quota
/// whose log could grow past it (`min(limit, window in ms)`) is refused with
/// an error pointing to `APPROX`, so memory per key stays bounded.
pub static EXACT_MAX_LOG: AtomicI64 = AtomicI64::new(EXACT_MAX_LOG_DEFAULT);

pub fn exact_max_log() -> u64 {
    u64::try_from(EXACT_MAX_LOG.load(Ordering::Relaxed)).unwrap_or(0)
}

/// Default for `ratelimit.max-leases`.
pub const MAX_LEASES_DEFAULT: i64 = rl_grammar::MAX_LEASES_DEFAULT as i64;
/// Highest `ratelimit.max-leases`.
pub const MAX_LEASES_CAP: i64 = rl_grammar::MAX_LEASES_CAP as i64;

/// The largest `limit` of a lease quota (`RL.ACQUIRE`, `CONCURRENCY`), and
/// so the most leases one key holds: a larger limit is refused with an
/// error naming this setting, so memory per key stays bounded.
pub static MAX_LEASES: AtomicI64 = AtomicI64::new(MAX_LEASES_DEFAULT);

pub fn max_leases() -> u64 {
    u64::try_from(MAX_LEASES.load(Ordering::Relaxed)).unwrap_or(0)
}
