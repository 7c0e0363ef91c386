//! Fixed windows aligned to multiples of the window since the Unix epoch.

use super::decision::{Decision, Outcome, Retry};
use rl_grammar::WindowQuota;

/// The stored state: units counted in the window starting at `start_ms`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FixedWindowState {
    pub start_ms: u64,
    pub count: u64,
}

/// One call: count `cost` units if the current window has room.
///
/// A stored window that starts at or after the current aligned window (the
/// clock went backwards, or the window length changed) is kept as it is, so
/// nothing is granted twice; an older one is over and counts nothing. One
/// that starts after `now_ms` is first settled by `limiter::apply` (see
/// [`settle`]), so no window outlasts one window from now.
pub fn step(
    prev: Option<FixedWindowState>,
    quota: &WindowQuota,
    now_ms: u64,
    cost: u64,
) -> Outcome<FixedWindowState> {
    let w = quota.window_ms();
    let aligned = now_ms - now_ms % w;
    let (start, count) = match prev {
        Some(s) if s.start_ms >= aligned => (s.start_ms, s.count),
        _ => (aligned, 0),
    };
    // Always > now: start >= aligned and aligned + w > now.
    let to_end = start.saturating_add(w) - now_ms;
    let decision = |count: u64, retry: Retry| Decision {
        limit: quota.limit(),
        remaining: quota.limit().saturating_sub(count),
        retry,
        reset_after_ms: if count == 0 { 0 } else { to_end },
    };
    if cost > quota.limit() {
        return Outcome {
            decision: decision(count, Retry::Never),
            new_state: None,
        };
    }
    match count.checked_add(cost) {
        Some(total) if total <= quota.limit() => Outcome {
            decision: decision(total, Retry::Now),
            new_state: (cost > 0).then_some(FixedWindowState {
                start_ms: start,
                count: total,
            }),
        },
        _ => Outcome {
            decision: decision(count, Retry::After(to_end)),
            new_state: None,
        },
    }
}

/// The time rule: a window that starts after `now_ms` (the clock stepped
/// back, or the state came from a server whose clock ran ahead) is read as
/// the current aligned window with the same count, so it ends within one
/// window. `None`: the state is within the rule.
pub fn settle(s: &FixedWindowState, quota: &WindowQuota, now_ms: u64) -> Option<FixedWindowState> {
    let w = quota.window_ms();
    (s.start_ms > now_ms).then(|| FixedWindowState {
        start_ms: now_ms - now_ms % w,
        count: s.count,
    })
}

/// A refund: takes `units` back off the current window's count, never
/// below zero. A window that is over has nothing left to refund.
pub fn refund(
    prev: Option<FixedWindowState>,
    quota: &WindowQuota,
    now_ms: u64,
    units: u64,
) -> Outcome<FixedWindowState> {
    let w = quota.window_ms();
    let aligned = now_ms - now_ms % w;
    let (start, count) = match prev {
        Some(s) if s.start_ms >= aligned => (s.start_ms, s.count.saturating_sub(units)),
        _ => (aligned, 0),
    };
    Outcome {
        decision: Decision {
            limit: quota.limit(),
            remaining: quota.limit().saturating_sub(count),
            retry: Retry::Now,
            reset_after_ms: if count == 0 {
                0
            } else {
                start.saturating_add(w) - now_ms
            },
        },
        new_state: Some(FixedWindowState {
            start_ms: start,
            count,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn run(
        quota: &WindowQuota,
        state: &mut Option<FixedWindowState>,
        now: u64,
        cost: u64,
    ) -> Decision {
        let out = step(*state, quota, now, cost);
        if out.new_state.is_some() {
            *state = out.new_state;
        }
        out.decision
    }

    #[test]
    fn windows_are_aligned_to_the_epoch() {
        let q = WindowQuota::new(2, 60_000).expect("valid");
        let mut s = None;
        let d = run(&q, &mut s, 125_000, 1);
        assert!(d.allowed());
        assert_eq!((d.remaining, d.reset_after_ms), (1, 55_000));
        assert!(run(&q, &mut s, 130_000, 1).allowed());
        let d = run(&q, &mut s, 179_999, 1);
        assert_eq!(d.retry, Retry::After(1));
        let d = run(&q, &mut s, 180_000, 2);
        assert!(d.allowed());
        assert_eq!(d.remaining, 0);
    }

    #[test]
    fn cost_zero_and_oversized_costs_store_nothing() {
        let q = WindowQuota::new(5, 1_000).expect("valid");
        let out = step(None, &q, 10, 0);
        assert!(out.decision.allowed());
        assert_eq!(
            (out.decision.remaining, out.decision.reset_after_ms),
            (5, 0)
        );
        assert_eq!(out.new_state, None);
        let out = step(None, &q, 10, 6);
        assert_eq!(out.decision.retry_after_ms(), -1);
        assert_eq!(out.new_state, None);
    }

    #[test]
    fn a_clock_going_backwards_keeps_the_later_window() {
        let q = WindowQuota::new(1, 1_000).expect("valid");
        let mut s = None;
        assert!(run(&q, &mut s, 5_500, 1).allowed());
        let d = run(&q, &mut s, 4_200, 1);
        assert_eq!(d.retry, Retry::After(1_800));
        assert!(!run(&q, &mut s, 5_999, 1).allowed());
        assert!(run(&q, &mut s, 6_000, 1).allowed());
    }

    proptest! {
        /// However calls arrive, one aligned window never holds more than the limit,
        /// and a call is denied only when it would not fit.
        #[test]
        fn never_exceeds_the_limit_inside_one_window(
            limit in 1u64..20,
            window in 1u64..5_000,
            calls in prop::collection::vec((0u64..2_000, 0u64..25), 1..80),
        ) {
            let q = WindowQuota::new(limit, window).expect("valid");
            let mut s = None;
            let mut now = 0;
            let mut used: std::collections::HashMap<u64, u64> = Default::default();
            for (gap, cost) in calls {
                now += gap;
                let d = run(&q, &mut s, now, cost);
                let slot = used.entry(now / window).or_default();
                prop_assert_eq!(d.allowed(), *slot + cost <= limit);
                if d.allowed() {
                    *slot += cost;
                } else if cost <= limit {
                    prop_assert_eq!(d.retry, Retry::After((now / window + 1) * window - now));
                }
                prop_assert!(*slot <= limit);
                prop_assert_eq!(d.remaining, limit - *slot);
            }
        }
    }
}
