//! What a limiter answers: the same five fields for every algorithm.

/// When the same call could succeed again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retry {
    /// The call was granted.
    Now,
    /// Denied for now; the same call succeeds after this many milliseconds.
    After(u64),
    /// Denied for good: the cost exceeds what the limiter can ever hold.
    Never,
}

/// The answer to one call, independent of the algorithm.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Capacity or limit in force.
    pub limit: u64,
    /// Whole units still available after this call.
    pub remaining: u64,
    pub retry: Retry,
    /// Milliseconds until the limiter is back to its full, untouched state.
    pub reset_after_ms: u64,
}

impl Decision {
    pub fn allowed(&self) -> bool {
        self.retry == Retry::Now
    }

    /// `retry_after_ms` as the reply carries it: 0 when allowed, -1 never.
    pub fn retry_after_ms(&self) -> i64 {
        match self.retry {
            Retry::Now => 0,
            Retry::After(ms) => i64::try_from(ms).unwrap_or(i64::MAX),
            Retry::Never => -1,
        }
    }
}

/// A decision and what to store: `None` means "write nothing" (denied calls,
/// `cost 0`), so nothing is dirtied or replicated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome<S> {
    pub decision: Decision,
    pub new_state: Option<S>,
}

/// Integer division rounding up, for times: a client that waits the
/// reported time must succeed, so times are never rounded down.
pub(crate) fn div_ceil_u128(a: u128, b: u128) -> u128 {
    if b == 0 {
        return u128::MAX;
    }
    a.div_ceil(b)
}

/// Narrow a u128 to u64, saturating.
pub(crate) fn sat_u64(v: u128) -> u64 {
    u64::try_from(v).unwrap_or(u64::MAX)
}
