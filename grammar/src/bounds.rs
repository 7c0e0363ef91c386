//! The limits every argument is checked against; a leaf both the parsers
//! and the quota types read.

/// Largest capacity, limit or cost: replies carry signed 64-bit integers.
pub const MAX_COUNT: u64 = i64::MAX as u64;
/// Longest window: about 31.7 years, so that time arithmetic never overflows.
pub const MAX_WINDOW_MS: u64 = 1_000_000_000_000;
/// Rates are kept in nano-tokens per second (nine decimal places, exact).
pub const RATE_SCALE: u64 = 1_000_000_000;
/// Default of `ratelimit.exact-max-log`: the most entries an `EXACT` log keeps.
pub const EXACT_MAX_LOG_DEFAULT: u64 = 4096;
/// Default of `ratelimit.max-leases`: the largest `limit` of a lease quota,
/// and so the most leases one key holds.
pub const MAX_LEASES_DEFAULT: u64 = 1024;
/// The highest `ratelimit.max-leases` may be set to; stored states holding
/// more leases are refused as damaged.
pub const MAX_LEASES_CAP: u64 = 100_000;
