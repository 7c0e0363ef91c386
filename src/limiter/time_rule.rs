//! The time rule, checked on every algorithm with a fake clock that jumps
//! forward and back by random amounts (see [`super::dispatch::settle`]).
//!
//! Whatever the clock did: no limiter denies for longer than its own full
//! reset time (token bucket: capacity / rate; fixed window and `EXACT`: one
//! window; `APPROX`: two windows, its reset without any step), its key never
//! lives longer than that, and a step never grants more than one full limit
//! beyond what the algorithm allows without one.

use proptest::prelude::*;

use super::codec::HORIZON_MS;
use super::decision::{Decision, Retry};
use super::dispatch::apply;
use super::state::State;
use super::token_bucket::PICO;
use rl_grammar::{Quota, TokenBucketQuota, WindowQuota};

/// A year, in ms.
const YEAR: u64 = 365 * 24 * 3_600 * 1_000;
/// Roughly the clock of late 2025.
const BASE: u64 = 1_764_000_000_000;

/// The algorithm's full reset time: its longest possible wait.
fn full_reset(q: &Quota) -> u64 {
    match q {
        Quota::TokenBucket(q) => {
            (u128::from(q.capacity()) * PICO).div_ceil(u128::from(q.rate_nano())) as u64
        }
        Quota::FixedWindow(q) | Quota::SlidingExact(q) => q.window_ms(),
        Quota::SlidingApprox(q) => 2 * q.window_ms(),
        Quota::Concurrency(q) => q.ttl_ms(),
    }
}

/// A key as the glue keeps it: the state and its absolute expiry.
#[derive(Default)]
struct Key {
    state: Option<State>,
    expires_at: u64,
    /// The last write left the limiter full (its TTL is the 1 ms floor).
    full: bool,
}

impl Key {
    /// One call at `now`, storing what the call stores with a TTL of its
    /// reset time (at least 1 ms), as `commit` does.
    fn call(&mut self, q: &Quota, now: u64, cost: i64) -> Decision {
        if self.expires_at <= now {
            self.state = None;
        }
        let out = apply(self.state.as_ref(), q, now, cost).expect("same algorithm");
        if let Some(s) = out.new_state {
            // Whatever is stored survives a decode (the replica's and RDB's path).
            assert_eq!(State::decode(&s.to_bytes()), Ok(s.clone()));
            self.state = Some(s);
            self.expires_at = now + out.decision.reset_after_ms.max(1);
            self.full = out.decision.reset_after_ms == 0;
        }
        out.decision
    }
}

fn quotas() -> impl Strategy<Value = Quota> {
    let window = || (1u64..20, 1u64..100_000);
    prop_oneof![
        (1u64..50, 1u64..50_000_000_000)
            .prop_map(|(c, r)| Quota::TokenBucket(TokenBucketQuota::new(c, r).expect("valid"))),
        window().prop_map(|(l, w)| Quota::FixedWindow(WindowQuota::new(l, w).expect("valid"))),
        window().prop_map(|(l, w)| Quota::SlidingExact(WindowQuota::new(l, w).expect("valid"))),
        window().prop_map(|(l, w)| Quota::SlidingApprox(WindowQuota::new(l, w).expect("valid"))),
    ]
}

/// A jump of the clock: mostly small steps forward, sometimes a leap either
/// way, up to several years.
fn jumps() -> impl Strategy<Value = i64> {
    let big = 5 * YEAR as i64;
    prop_oneof![
        6 => 0i64..2_000,
        2 => -2_000i64..0,
        1 => -big..big,
    ]
}

fn moved(now: u64, jump: i64) -> u64 {
    now.saturating_add_signed(jump).min(HORIZON_MS)
}

/// Every denial's wait and every reset fit in the full reset time; waiting
/// that long always lets a full-limit call through; keys live no longer.
fn check_bounds(q: &Quota, key: &mut Key, now: u64, d: &Decision) -> Result<(), TestCaseError> {
    let r = full_reset(q);
    prop_assert!(
        d.reset_after_ms <= r,
        "reset {} > {r}: {d:?}",
        d.reset_after_ms
    );
    if let Retry::After(ms) = d.retry {
        prop_assert!(ms <= r, "wait {ms} > {r}: {d:?}");
    }
    // A full state (a refund's) keeps the 1 ms TTL it got under the clock
    // it was written with: it is worth no key at all, so that clock is moot.
    if key.state.is_some() && !key.full {
        prop_assert!(key.expires_at <= now + r.max(1), "TTL beyond {r}");
    }
    let probe = apply(key.state.as_ref(), q, now + r, q.limit() as i64).expect("same algorithm");
    prop_assert!(
        probe.decision.allowed(),
        "still denied after {r}: {probe:?}"
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Random jumps either way: no wait, reset or TTL beyond the full reset.
    #[test]
    fn no_clock_step_locks_a_limiter_for_longer_than_its_full_reset(
        q in quotas(),
        calls in prop::collection::vec((jumps(), -3i64..25), 1..60),
    ) {
        let mut key = Key::default();
        let mut now = BASE;
        for (jump, cost) in calls {
            now = moved(now, jump);
            let d = key.call(&q, now, cost);
            check_bounds(&q, &mut key, now, &d)?;
            // A call that writes nothing leaves the key as it was; its TTL
            // still fits (it was set by an earlier call).
            let again = key.call(&q, now, 0);
            check_bounds(&q, &mut key, now, &again)?;
        }
    }

    /// One step of the clock, then time runs on. Counted in real time, the
    /// grants on each side of the step keep the algorithm's own bound, so a
    /// step adds at most what the limiter held: one full limit (a bucket's
    /// capacity, an exact log's limit; a window's boundary burst may recur).
    #[test]
    fn a_clock_step_grants_at_most_one_limit_extra(
        q in quotas(),
        before in prop::collection::vec((0u64..3_000, 0i64..25), 0..40),
        step in -(YEAR as i64)..(YEAR as i64),
        after in prop::collection::vec((0u64..3_000, 0i64..25), 1..40),
    ) {
        let mut key = Key::default();
        let mut real = BASE;
        let mut grants: Vec<(u64, u64)> = Vec::new();
        let calls = before.iter().map(|c| (c, 0)).chain(after.iter().map(|c| (c, step)));
        for (&(gap, cost), offset) in calls {
            real += gap;
            let d = key.call(&q, real.saturating_add_signed(offset), cost);
            if d.allowed() && cost > 0 {
                grants.push((real, cost as u64));
            }
        }
        let limit = q.limit();
        // Units granted in the real interval [from, to].
        let granted = |from: u64, to: u64| -> u64 {
            grants.iter().filter(|g| g.0 >= from && g.0 <= to).map(|g| g.1).sum()
        };
        for &(from, _) in &grants {
            match &q {
                Quota::TokenBucket(tb) => {
                    for &(to, _) in grants.iter().filter(|g| g.0 >= from) {
                        // capacity + refill over the interval, plus one capacity.
                        let refill = u128::from(tb.rate_nano()) * u128::from(to - from) / PICO;
                        let bound = 2 * u128::from(limit) + refill;
                        prop_assert!(u128::from(granted(from, to)) <= bound);
                    }
                }
                Quota::SlidingExact(w) => {
                    // One limit per trailing window on each side of the step.
                    prop_assert!(granted(from, from + w.window_ms() - 1) <= 2 * limit);
                }
                Quota::FixedWindow(w) | Quota::SlidingApprox(w) => {
                    // Two limits in any window-long interval (a burst at a
                    // window boundary) on each side of the step.
                    prop_assert!(granted(from, from + w.window_ms() - 1) <= 4 * limit);
                }
                // Leases keep absolute expiries (see `limiter::leases`):
                // none is generated here.
                Quota::Concurrency(_) => {}
            }
        }
    }
}

/// Every algorithm touched a year ahead, then the clock set back: without
/// the rule they denied for a year.
#[test]
fn a_state_touched_a_year_ahead_does_not_lock_users_out_for_a_year() {
    let w = WindowQuota::new(5, 10_000).expect("valid");
    for q in [
        Quota::TokenBucket(TokenBucketQuota::new(5, 500_000_000).expect("valid")),
        Quota::FixedWindow(w),
        Quota::SlidingExact(w),
        Quota::SlidingApprox(w),
    ] {
        let mut key = Key::default();
        let ahead = BASE + YEAR;
        assert!(key.call(&q, ahead, 5).allowed());
        let d = key.call(&q, BASE, 1);
        assert!(!d.allowed(), "{q:?}: the units used ahead still count");
        let r = full_reset(&q);
        assert!(r <= 20_000);
        assert!(d.retry_after_ms() as u64 <= r, "{q:?}: {d:?}");
        assert!(key.expires_at <= BASE + r, "{q:?}: the key lives on");
        assert!(key.call(&q, BASE + 20_000, 5).allowed(), "{q:?}");
    }
}

/// `RL.LIMITS` applies the rule to each limit, and a denied call still
/// stores what the rule settled (so the key's TTL follows), consuming nothing.
#[test]
fn rl_limits_settles_every_limit_even_when_denied() {
    use super::cost::Cost;
    use super::limits::{combine, Limit};
    let limits = [
        Limit {
            name: None,
            quota: Quota::TokenBucket(TokenBucketQuota::new(5, 500_000_000).expect("valid")),
            cost: Cost::from(1),
            shadow: false,
        },
        Limit {
            name: None,
            quota: Quota::SlidingExact(WindowQuota::new(5, 10_000).expect("valid")),
            cost: Cost::from(1),
            shadow: false,
        },
    ];
    let ahead = combine(None, &limits, BASE + YEAR).expect("fresh");
    let mut stored = ahead.new_state.expect("granted");
    for _ in 0..4 {
        let out = combine(Some(&stored), &limits, BASE + YEAR).expect("same kinds");
        stored = out.new_state.expect("granted");
    }
    // Both limits are empty, a year ahead. Back on the real clock:
    let out = combine(Some(&stored), &limits, BASE).expect("same kinds");
    assert!(!out.allowed);
    for d in &out.decisions {
        assert!(
            d.retry_after_ms() <= 10_000 && d.reset_after_ms <= 10_000,
            "{d:?}"
        );
    }
    let settled = out.new_state.expect("the settled states are stored");
    // Nothing was consumed: the same call again sees the same counts.
    let again = combine(Some(&settled), &limits, BASE).expect("same kinds");
    assert_eq!(again.decisions, out.decisions);
    assert_eq!(again.new_state, None, "settled once, nothing more to write");
}
