//! `APPROX`: the counts of the previous and the current aligned window, the
//! previous one weighed by how much of it the trailing window still covers.
//! O(1) in memory. Bound: it never grants more than `limit` inside one
//! aligned window, and never more than `2 × limit` inside any trailing window
//! (the worst case is a previous window whose traffic all came at its very
//! end). For evenly spread traffic the error is small.

use crate::limiter::decision::{sat_u64, Decision, Outcome, Retry};
use rl_grammar::WindowQuota;

/// The stored state of an `APPROX` limiter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlidingApproxState {
    /// Start of the current aligned window.
    pub start_ms: u64,
    /// Units counted in the window before it.
    pub prev: u64,
    /// Units counted in the current window.
    pub cur: u64,
}

/// One `APPROX` call.
pub fn step_approx(
    prev: Option<SlidingApproxState>,
    quota: &WindowQuota,
    now_ms: u64,
    cost: u64,
) -> Outcome<SlidingApproxState> {
    let w = quota.window_ms();
    let s = roll(prev, w, now_ms);
    let t = now_ms.max(s.start_ms);
    let skew = t - now_ms;
    let elapsed = t - s.start_ms;
    let (w128, limit) = (u128::from(w), u128::from(quota.limit()));
    // The weighted count, times w, so everything stays in integers.
    let weighted = |prev: u64, cur: u64| {
        u128::from(prev) * (w128 - u128::from(elapsed)) + u128::from(cur) * w128
    };
    let remaining =
        |prev: u64, cur: u64| sat_u64((limit * w128).saturating_sub(weighted(prev, cur)) / w128);
    // elapsed < w, so these never underflow; written from `elapsed` rather
    // than `start_ms` so a stored start near u64::MAX cannot overflow.
    let reset = |st: &SlidingApproxState| {
        if st.cur > 0 {
            (2 * w - elapsed).saturating_add(skew)
        } else if st.prev > 0 {
            (w - elapsed).saturating_add(skew)
        } else {
            0
        }
    };
    let decision = |st: &SlidingApproxState, retry| Decision {
        limit: quota.limit(),
        remaining: remaining(st.prev, st.cur),
        retry,
        reset_after_ms: reset(st),
    };
    if cost > quota.limit() {
        return Outcome {
            decision: decision(&s, Retry::Never),
            new_state: None,
        };
    }
    if weighted(s.prev, s.cur) + u128::from(cost) * w128 <= limit * w128 {
        let next = SlidingApproxState {
            cur: s.cur + cost,
            ..s
        };
        return Outcome {
            decision: decision(&next, Retry::Now),
            new_state: (cost > 0).then_some(next),
        };
    }
    let wait = approx_wait(&s, quota, elapsed, cost).saturating_add(skew);
    Outcome {
        decision: decision(&s, Retry::After(wait)),
        new_state: None,
    }
}

/// An `APPROX` refund: takes `units` off the current window's count, then
/// off the previous one's, never below zero.
pub fn refund_approx(
    prev: Option<SlidingApproxState>,
    quota: &WindowQuota,
    now_ms: u64,
    units: u64,
) -> Outcome<SlidingApproxState> {
    let mut s = roll(prev, quota.window_ms(), now_ms);
    let from_cur = units.min(s.cur);
    s.cur -= from_cur;
    s.prev = s.prev.saturating_sub(units - from_cur);
    Outcome {
        decision: step_approx(Some(s), quota, now_ms, 0).decision,
        new_state: Some(s),
    }
}

/// The time rule for `APPROX`: counters whose window starts after `now_ms`
/// are read as the current aligned window's, so they are gone within two
/// windows (the approximation's own full reset). `None`: within the rule.
pub fn settle_approx(
    s: &SlidingApproxState,
    quota: &WindowQuota,
    now_ms: u64,
) -> Option<SlidingApproxState> {
    let w = quota.window_ms();
    (s.start_ms > now_ms).then(|| SlidingApproxState {
        start_ms: now_ms - now_ms % w,
        ..*s
    })
}

/// The stored counters as of the aligned window holding `now_ms`: the
/// current count becomes the previous one when a window passes. A stored
/// window at or after the aligned one (the clock went backwards, or the
/// window changed) is kept as it is.
fn roll(prev: Option<SlidingApproxState>, w: u64, now_ms: u64) -> SlidingApproxState {
    let aligned = now_ms - now_ms % w;
    match prev {
        Some(s) if s.start_ms >= aligned => s,
        Some(s) if s.start_ms.saturating_add(w) == aligned => SlidingApproxState {
            start_ms: aligned,
            prev: s.cur,
            cur: 0,
        },
        _ => SlidingApproxState {
            start_ms: aligned,
            prev: 0,
            cur: 0,
        },
    }
}

/// Milliseconds from `elapsed` (into the current window) until a call of
/// `cost` fits, with no other calls. The weighted count never rises over time,
/// so the first moment found is the answer.
fn approx_wait(s: &SlidingApproxState, quota: &WindowQuota, elapsed: u64, cost: u64) -> u64 {
    let w = quota.window_ms();
    let (w128, limit, cost) = (u128::from(w), u128::from(quota.limit()), u128::from(cost));
    // Still in this window: prev * (w - e) <= (limit - cur - cost) * w.
    let cur = u128::from(s.cur);
    if s.prev > 0 && cur + cost <= limit {
        let room = (limit - cur - cost) * w128 / u128::from(s.prev);
        let e = w128.saturating_sub(room);
        if e < w128 {
            return sat_u64(e.max(u128::from(elapsed)) - u128::from(elapsed));
        }
    }
    // In the next window the current count becomes the previous one.
    let to_next = w - elapsed;
    if cur == 0 {
        return to_next;
    }
    let room = (limit - cost) * w128 / cur;
    let e = w128.saturating_sub(room);
    sat_u64(u128::from(to_next) + e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn approx(
        st: &mut Option<SlidingApproxState>,
        q: &WindowQuota,
        now: u64,
        cost: u64,
    ) -> Decision {
        let out = step_approx(*st, q, now, cost);
        if out.new_state.is_some() {
            *st = out.new_state;
        }
        out.decision
    }

    #[test]
    fn approx_weighs_the_previous_window() {
        let q = WindowQuota::new(10, 1_000).expect("valid");
        let mut st = None;
        assert!(approx(&mut st, &q, 500, 10).allowed());
        // At 1_250, 75% of the previous window still counts: 7.5 used.
        let d = approx(&mut st, &q, 1_250, 0);
        assert_eq!(d.remaining, 2);
        assert!(approx(&mut st, &q, 1_250, 2).allowed());
        // 7.5 + 2 = 9.5; one more needs the weight to fall to 7 -> at 1_300.
        assert_eq!(approx(&mut st, &q, 1_250, 1).retry, Retry::After(50));
        assert!(!approx(&mut st, &q, 1_299, 1).allowed());
        assert!(approx(&mut st, &q, 1_300, 1).allowed());
    }

    #[test]
    fn an_approx_refund_empties_the_current_window_first() {
        let q = WindowQuota::new(10, 1_000).expect("valid");
        let mut st = None;
        assert!(approx(&mut st, &q, 500, 6).allowed());
        assert!(approx(&mut st, &q, 1_000, 4).allowed());
        let out = refund_approx(st, &q, 1_000, 5);
        assert_eq!(
            out.new_state,
            Some(SlidingApproxState {
                start_ms: 1_000,
                prev: 5,
                cur: 0
            })
        );
        assert_eq!(out.decision.remaining, 5);
    }

    proptest! {
        /// APPROX stays within its documented bound, and its waits are enough.
        #[test]
        fn approx_stays_within_its_bound(
            limit in 1u64..15,
            window in 1u64..3_000,
            calls in prop::collection::vec((0u64..800, 0u64..18), 1..80),
        ) {
            let q = WindowQuota::new(limit, window).expect("valid");
            let mut st = None;
            let mut grants: Vec<(u64, u64)> = Vec::new();
            let mut now = 0;
            for (gap, cost) in calls {
                now += gap;
                let d = approx(&mut st, &q, now, cost);
                if d.allowed() && cost > 0 {
                    grants.push((now, cost));
                }
                if let Retry::After(ms) = d.retry {
                    let probe = step_approx(st, &q, now + ms, cost);
                    prop_assert!(probe.decision.allowed());
                    if ms > 0 {
                        prop_assert!(!step_approx(st, &q, now + ms - 1, cost).decision.allowed());
                    }
                }
                let in_aligned: u64 = grants.iter().filter(|g| g.0 / window == now / window).map(|g| g.1).sum();
                prop_assert!(in_aligned <= limit);
                let trailing: u64 = grants.iter().filter(|g| g.0 + window > now).map(|g| g.1).sum();
                prop_assert!(trailing <= 2 * limit);
            }
        }
    }
}
