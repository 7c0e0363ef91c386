//! The argument grammar of the ratelimit module, in one place.
//!
//! The module parses its command arguments with it and the HTTP shim checks
//! its configuration and query parameters with it, so a value one accepts the
//! other accepts too (a window of `0.0005` is refused by both, with the same
//! words). Numbers are plain decimals (`10`, `0.25`): no sign (except a
//! cost's `-`), no exponent, no `inf` or `nan`, no spaces. Parsing is exact
//! (scaled integers, never floats).
//!
//! Every error is the `ERR …` line the module replies with.

#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

mod bounds;
mod leases;
mod limits;
mod number;
mod quota;

pub use bounds::{
    EXACT_MAX_LOG_DEFAULT, MAX_COUNT, MAX_LEASES_CAP, MAX_LEASES_DEFAULT, MAX_WINDOW_MS, RATE_SCALE,
};
pub use leases::{
    parse_acquire, parse_lease_id, parse_lease_quota, parse_release, parse_renew, parse_ttl_ms,
    Acquire, LeaseArgError, MAX_LEASE_ID_LEN, USAGE_ACQUIRE, USAGE_RELEASE, USAGE_RENEW,
};
pub use limits::{
    name_hash, parse_limits, parse_limits_borrowed, BorrowedSpec, LimitSpec, MAX_LIMITS,
    MAX_NAME_LEN, USAGE_LIMITS,
};
pub use number::{
    format_rate, format_window, parse_cost, parse_count, parse_rate, parse_window_ms, shown,
};
pub use quota::{
    window_quota, Algorithm, LeaseQuota, Quota, QuotaError, TokenBucketQuota, WindowQuota,
};
