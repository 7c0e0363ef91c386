//! Token bucket with exact, continuous refill.
//!
//! The level is kept in pico-tokens (1e-12 of a token) and the rate in
//! nano-tokens per second, which is the same as pico-tokens per millisecond.
//! With the server clock in milliseconds, refill is then an exact integer
//! product: no floating point, no drift, whatever the rate (1e-9/s upward).

use super::decision::{div_ceil_u128, sat_u64, Decision, Outcome, Retry};
use rl_grammar::TokenBucketQuota;

/// Level units per token.
pub const PICO: u128 = 1_000_000_000_000;

/// The stored state: the level at `at_ms`.
///
/// The level is kept as two `u64` halves so the struct aligns to 8, not 16:
/// that keeps every stored state in a 32-byte allocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenBucketState {
    /// Tokens in the bucket, in pico-tokens: (low, high) halves.
    level: [u64; 2],
    /// When the level was measured (server time, ms since the epoch).
    pub at_ms: u64,
}

impl TokenBucketState {
    pub fn new(level: u128, at_ms: u64) -> Self {
        Self {
            level: [level as u64, (level >> 64) as u64],
            at_ms,
        }
    }

    /// Tokens in the bucket, in pico-tokens.
    pub fn level(&self) -> u128 {
        u128::from(self.level[0]) | (u128::from(self.level[1]) << 64)
    }
}

/// One call: take `cost` tokens if the bucket holds them.
///
/// A bucket that does not exist yet is full. If the clock went backwards the
/// stored time is used, so nothing refills until the clock catches up, and
/// the reported waits include the difference; `limiter::apply` first settles
/// a stamp further ahead than the time rule allows (see [`settle`]).
///
/// Lowering the capacity of an existing bucket drops the tokens above the new
/// capacity; raising it lets the bucket refill up to the new capacity at the
/// current rate. A new rate applies from the last update on.
pub fn step(
    prev: Option<TokenBucketState>,
    quota: &TokenBucketQuota,
    now_ms: u64,
    cost: u64,
) -> Outcome<TokenBucketState> {
    let capacity = u128::from(quota.capacity()) * PICO;
    let rate = u128::from(quota.rate_nano());
    let (level, t) = level_at(prev, quota, now_ms);
    // Times are computed from `t` and reported from `now_ms`.
    let skew = t - now_ms;
    let reset_after = |level: u128| -> u64 {
        if level >= capacity {
            0
        } else {
            sat_u64(div_ceil_u128(capacity - level, rate)).saturating_add(skew)
        }
    };
    let remaining = |level: u128| sat_u64(level / PICO);

    let needed = u128::from(cost) * PICO;
    if cost > quota.capacity() {
        return Outcome {
            decision: Decision {
                limit: quota.capacity(),
                remaining: remaining(level),
                retry: Retry::Never,
                reset_after_ms: reset_after(level),
            },
            new_state: None,
        };
    }
    if needed <= level {
        let left = level - needed;
        // Fewer tokens shorten how far ahead the stamp may stay (the time
        // rule, see `settle`): the reset never exceeds capacity / rate.
        let after = TokenBucketState::new(left, t);
        let after = settle(&after, quota, now_ms).unwrap_or(after);
        let reset = if left >= capacity {
            0
        } else {
            sat_u64(div_ceil_u128(capacity - left, rate)).saturating_add(after.at_ms - now_ms)
        };
        return Outcome {
            decision: Decision {
                limit: quota.capacity(),
                remaining: remaining(left),
                retry: Retry::Now,
                reset_after_ms: reset,
            },
            new_state: (cost > 0).then_some(after),
        };
    }
    let wait = sat_u64(div_ceil_u128(needed - level, rate)).saturating_add(skew);
    Outcome {
        decision: Decision {
            limit: quota.capacity(),
            remaining: remaining(level),
            retry: Retry::After(wait),
            reset_after_ms: reset_after(level),
        },
        new_state: None,
    }
}

/// The level at the call's time and that time: the stored time if the clock
/// went backwards (nothing refills until it catches up).
fn level_at(prev: Option<TokenBucketState>, quota: &TokenBucketQuota, now_ms: u64) -> (u128, u64) {
    let capacity = u128::from(quota.capacity()) * PICO;
    match prev {
        None => (capacity, now_ms),
        Some(s) => {
            let t = now_ms.max(s.at_ms);
            let refill = u128::from(quota.rate_nano()).saturating_mul(u128::from(t - s.at_ms));
            (s.level().saturating_add(refill).min(capacity), t)
        }
    }
}

/// The time rule: a bucket stamped later than `now_ms` (the clock stepped
/// back, or the state came from a server whose clock ran ahead) keeps its
/// level and refills nothing until its stamp, but the stamp is moved back to
/// at most the time its own tokens would take to drain at `rate`. The full
/// reset from `now_ms` is then at most `capacity / rate`: no step of the
/// clock turns into a longer lockout. `None`: the state is within the rule.
pub fn settle(
    s: &TokenBucketState,
    quota: &TokenBucketQuota,
    now_ms: u64,
) -> Option<TokenBucketState> {
    if s.at_ms <= now_ms {
        return None;
    }
    let capacity = u128::from(quota.capacity()) * PICO;
    let level = s.level().min(capacity);
    // floor(level / rate) ms: with the ceiled refill time of the rest, the
    // reset stays within ceil(capacity / rate).
    let slack = sat_u64(level / u128::from(quota.rate_nano()).max(1));
    let latest = now_ms.saturating_add(slack);
    (s.at_ms > latest).then(|| TokenBucketState::new(s.level(), latest))
}

/// Continues from a key redis-cell left: a GCRA "theoretical arrival time"
/// `tat_ns` (ns since the epoch; redis-cell stores it as a decimal string).
/// The bucket at `now_ms` then lacks the tokens the rate refills between now
/// and that time (rounded up: a migration never grants extra), so the
/// remaining count is redis-cell's. A time past now by more than a full
/// bucket leaves it empty (and the time rule bounds the wait); one in the
/// past leaves it full.
pub fn from_cell_tat(tat_ns: u64, quota: &TokenBucketQuota, now_ms: u64) -> TokenBucketState {
    let capacity = u128::from(quota.capacity()) * PICO;
    let ahead_ns = u128::from(tat_ns).saturating_sub(u128::from(now_ms) * 1_000_000);
    // rate_nano is pico-tokens per ms, i.e. rate_nano / 1e6 per ns.
    let owed = div_ceil_u128(ahead_ns * u128::from(quota.rate_nano()), 1_000_000);
    TokenBucketState::new(capacity.saturating_sub(owed), now_ms)
}

/// A refund: gives `units` tokens back, never above `capacity`. Always
/// allowed, and always stored (it changes the state like a grant does).
pub fn refund(
    prev: Option<TokenBucketState>,
    quota: &TokenBucketQuota,
    now_ms: u64,
    units: u64,
) -> Outcome<TokenBucketState> {
    let capacity = u128::from(quota.capacity()) * PICO;
    let (level, t) = level_at(prev, quota, now_ms);
    let level = level.saturating_add(u128::from(units) * PICO).min(capacity);
    let reset = if level >= capacity {
        0
    } else {
        sat_u64(div_ceil_u128(
            capacity - level,
            u128::from(quota.rate_nano()),
        ))
        .saturating_add(t - now_ms)
    };
    Outcome {
        decision: Decision {
            limit: quota.capacity(),
            remaining: sat_u64(level / PICO),
            retry: Retry::Now,
            reset_after_ms: reset,
        },
        new_state: Some(TokenBucketState::new(level, t)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rl_grammar::RATE_SCALE;

    fn quota(capacity: u64, rate_per_s: f64) -> TokenBucketQuota {
        TokenBucketQuota::new(capacity, (rate_per_s * RATE_SCALE as f64).round() as u64)
            .expect("valid quota")
    }

    /// Runs calls against one bucket, returning each decision.
    struct Bucket {
        quota: TokenBucketQuota,
        state: Option<TokenBucketState>,
    }

    impl Bucket {
        fn new(quota: TokenBucketQuota) -> Self {
            Self { quota, state: None }
        }
        fn call(&mut self, now: u64, cost: u64) -> Decision {
            let out = step(self.state, &self.quota, now, cost);
            if let Some(s) = out.new_state {
                self.state = Some(s);
            }
            out.decision
        }
    }

    #[test]
    fn a_new_bucket_is_full_and_the_first_call_answers_like_the_readme() {
        let mut b = Bucket::new(quota(10, 1.0));
        let d = b.call(1_000, 1);
        assert!(d.allowed());
        assert_eq!((d.limit, d.remaining, d.retry_after_ms()), (10, 9, 0));
        assert_eq!(d.reset_after_ms, 1_000);
    }

    #[test]
    fn burst_up_to_capacity_then_denied_with_exact_wait() {
        let mut b = Bucket::new(quota(5, 2.0));
        for left in (0..5).rev() {
            let d = b.call(0, 1);
            assert!(d.allowed());
            assert_eq!(d.remaining, left);
        }
        let d = b.call(0, 1);
        assert_eq!(d.retry, Retry::After(500));
        assert_eq!(d.reset_after_ms, 2_500);
        assert!(!b.call(499, 1).allowed());
        assert!(b.call(500, 1).allowed());
    }

    #[test]
    fn fractional_rates_refill_exactly() {
        // (rate per second, ms for exactly one token)
        for (rate, ms) in [
            (0.001, 1_000_000u64),
            (0.25, 4_000),
            (3.0, 334), // 1/3 s rounds up to whole ms
            (1_000_000.0, 0),
        ] {
            let mut b = Bucket::new(quota(3, rate));
            assert!(b.call(0, 3).allowed());
            if ms > 0 {
                assert!(!b.call(ms - 1, 1).allowed(), "rate {rate}");
            }
            assert!(b.call(ms.max(1), 1).allowed(), "rate {rate}");
        }
        // Three tokens at 3/s after exactly one second, however they were taken.
        let mut b = Bucket::new(quota(3, 3.0));
        for _ in 0..3 {
            assert!(b.call(0, 1).allowed());
        }
        assert!(!b.call(999, 3).allowed());
        assert!(b.call(1_000, 3).allowed());
        // A million per second: a thousand tokens per millisecond.
        let mut b = Bucket::new(quota(1_000_000, 1_000_000.0));
        assert!(b.call(0, 1_000_000).allowed());
        assert_eq!(b.call(1, 0).remaining, 1_000);
    }

    #[test]
    fn cost_zero_inspects_and_stores_nothing() {
        let q = quota(10, 1.0);
        let out = step(None, &q, 0, 0);
        assert!(out.decision.allowed());
        assert_eq!(out.decision.remaining, 10);
        assert_eq!(out.decision.reset_after_ms, 0);
        assert_eq!(out.new_state, None);
    }

    #[test]
    fn cost_above_capacity_can_never_succeed() {
        let out = step(None, &quota(10, 1.0), 0, 11);
        assert_eq!(out.decision.retry, Retry::Never);
        assert_eq!(out.decision.retry_after_ms(), -1);
        assert_eq!(out.decision.remaining, 10);
        assert_eq!(out.new_state, None);
    }

    #[test]
    fn huge_capacity_and_tiny_rate_do_not_overflow() {
        let q = TokenBucketQuota::new(rl_grammar::MAX_COUNT, 1).expect("valid");
        let out = step(None, &q, u64::MAX, rl_grammar::MAX_COUNT);
        assert!(out.decision.allowed());
        assert_eq!(out.decision.remaining, 0);
        assert_eq!(out.decision.reset_after_ms, u64::MAX);
        let again = step(out.new_state, &q, u64::MAX, 1);
        // One token at one pico-token per millisecond.
        assert_eq!(again.decision.retry, Retry::After(1_000_000_000_000));
    }

    #[test]
    fn a_clock_going_backwards_grants_nothing_extra() {
        let mut b = Bucket::new(quota(2, 1.0));
        assert!(b.call(10_000, 2).allowed());
        let d = b.call(5_000, 1);
        assert!(!d.allowed());
        // The wait counts from the real (earlier) clock.
        assert_eq!(d.retry, Retry::After(6_000));
        assert!(!b.call(10_999, 1).allowed());
        assert!(b.call(11_000, 1).allowed());
    }

    #[test]
    fn lowering_capacity_drops_tokens_above_it() {
        let mut b = Bucket::new(quota(100, 1.0));
        assert!(b.call(0, 1).allowed());
        b.quota = quota(10, 1.0);
        let d = b.call(0, 1);
        assert_eq!((d.limit, d.remaining), (10, 9));
    }

    #[test]
    fn a_refund_gives_back_but_never_above_capacity() {
        let q = quota(10, 1.0);
        let taken = step(None, &q, 0, 7).new_state;
        let back = refund(taken, &q, 0, 3);
        assert!(back.decision.allowed());
        assert_eq!(back.decision.remaining, 6);
        assert_eq!(back.decision.reset_after_ms, 4_000);
        let over = refund(back.new_state, &q, 0, 1_000);
        assert_eq!(over.decision.remaining, 10);
        assert_eq!(over.decision.reset_after_ms, 0);
        assert_eq!(
            over.new_state.map(|s| s.level()),
            Some(10 * PICO),
            "capped at capacity"
        );
    }

    /// redis-cell's arithmetic, as its source (`src/cell/mod.rs`) documents
    /// it: emission interval T = period / count, tolerance = T * (burst + 1),
    /// remaining = floor((tolerance - (tat - now)) / T).
    fn cell_remaining(burst: u64, count: u64, period_s: u64, tat_ns: u64, now_ns: u64) -> u64 {
        let t = (period_s as f64 * 1e9 / count as f64) as u64;
        let tolerance = t * (burst + 1);
        let ahead = tat_ns.saturating_sub(now_ns);
        tolerance.saturating_sub(ahead) / t
    }

    #[test]
    fn a_redis_cell_tat_continues_with_the_same_remaining_count() {
        let now = 1_764_000_000_000u64;
        let now_ns = now * 1_000_000;
        // CL.THROTTLE key 15 30 60: 16 tokens, one every 2 s.
        let q = quota(16, 0.5);
        for ahead_ns in [
            0,
            1,
            1_999_999_999,
            2_000_000_000,
            7_300_000_000,
            32_000_000_000,
        ] {
            let tat = now_ns + ahead_ns;
            let s = from_cell_tat(tat, &q, now);
            let d = step(Some(s), &q, now, 0).decision;
            assert_eq!(
                d.remaining,
                cell_remaining(15, 30, 60, tat, now_ns),
                "{ahead_ns}"
            );
            assert_eq!(s.at_ms, now);
        }
        // A TAT in the past is a full bucket; far ahead, an empty one.
        assert_eq!(from_cell_tat(now_ns - 5, &q, now).level(), 16 * PICO);
        assert_eq!(from_cell_tat(u64::MAX, &q, now).level(), 0);
    }

    proptest! {
        /// Against a reference model in rational arithmetic: the same grants,
        /// and a wait that is exactly enough.
        #[test]
        fn matches_a_rational_model(
            capacity in 1u64..50,
            rate_milli in 1u64..5_000_000,
            calls in prop::collection::vec((0u64..3_000, 0u64..60), 1..60),
        ) {
            let q = TokenBucketQuota::new(capacity, rate_milli * 1_000_000).expect("valid");
            let mut b = Bucket::new(q);
            // model: tokens * 1e3 * 1e3 (milli-tokens per second times ms)
            let scale = 1_000_000u128;
            let cap = u128::from(capacity) * scale;
            let mut level = cap;
            let mut now = 0u64;
            for (gap, cost) in calls {
                level = (level + u128::from(rate_milli) * u128::from(gap)).min(cap);
                now += gap;
                let d = b.call(now, cost);
                let need = u128::from(cost) * scale;
                let model_allowed = cost <= capacity && need <= level;
                prop_assert_eq!(d.allowed(), model_allowed);
                if model_allowed {
                    level -= need;
                }
                prop_assert_eq!(d.remaining, (level / scale) as u64);
                if let Retry::After(ms) = d.retry {
                    // waiting exactly that long is enough, one ms less is not
                    let at = |w: u64| (level + u128::from(rate_milli) * u128::from(w)).min(cap);
                    prop_assert!(at(ms) >= need);
                    prop_assert!(ms == 0 || at(ms - 1) < need);
                }
            }
        }
    }
}
