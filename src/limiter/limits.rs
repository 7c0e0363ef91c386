//! Several limits on one key, decided all or nothing (`RL.LIMITS`).
//!
//! [`combine`] is a pure function over the single-algorithm steps: every
//! limit is evaluated against its stored state, the call is granted only if
//! every enforced (non-shadow) limit grants its cost, and only then does any
//! limit consume. A denied call consumes nothing: it returns no new state, so
//! nothing is written, dirtied or replicated and no limit's quota is burnt by
//! another's denial (the one exception: states the time rule settles, see
//! `dispatch::settle`, are stored unconsumed).
//!
//! Stored states are matched to the call's limits by name (a 32-bit hash of
//! `NAME`) or, for unnamed limits, by position; a limit whose algorithm
//! changed starts fresh, and stored limits the call does not name are dropped
//! when the call writes.
//!
//! A `CONCURRENCY` limit (at most one per call) takes a lease with a made
//! id when the call is granted; the outcome carries it. A shadow one that
//! would deny takes no lease (slots are not "what is left" of a budget).

use super::cost::Cost;
use super::decision::{Decision, Retry};
use super::dispatch::{apply, lease_step, ApplyError};
use super::leases::Granted;
use super::state::{LimitEntry, LimitsState, State};
use rl_grammar::{Quota, MAX_LIMITS};

/// One limit of a call, as the glue resolved it from the grammar's spec.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limit {
    pub name: Option<u32>,
    pub quota: Quota,
    /// Effective cost (the spec's `COST`, else the call's).
    pub cost: Cost,
    /// Observed, never denies.
    pub shadow: bool,
}

/// The answer to one `RL.LIMITS` call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LimitsOutcome {
    pub allowed: bool,
    /// Position of the binding limit.
    pub binding: usize,
    /// One decision per limit, in the call's order.
    pub decisions: Vec<Decision>,
    /// What to store; `None`: write nothing (denied, or every cost 0).
    pub new_state: Option<LimitsState>,
    /// The lease a `CONCURRENCY` limit took (granted calls only).
    pub lease: Option<Granted>,
}

impl LimitsOutcome {
    /// The reply's top-level fields: the binding limit's, with the call's
    /// verdict (granted calls report no wait, even when the binding limit is
    /// a shadow that would have denied).
    pub fn summary(&self) -> Decision {
        let d = self
            .decisions
            .get(self.binding)
            .copied()
            .unwrap_or(Decision {
                limit: 0,
                remaining: 0,
                retry: Retry::Now,
                reset_after_ms: 0,
            });
        if self.allowed {
            Decision {
                retry: Retry::Now,
                ..d
            }
        } else {
            d
        }
    }

    /// The key's TTL: the longest reset of its limits.
    pub fn reset_after_ms(&self) -> u64 {
        self.decisions
            .iter()
            .map(|d| d.reset_after_ms)
            .max()
            .unwrap_or(0)
    }
}

/// One `RL.LIMITS` call on the state a key holds (`None`: no key).
pub fn combine(
    stored: Option<&LimitsState>,
    limits: &[Limit],
    now_ms: u64,
) -> Result<LimitsOutcome, ApplyError> {
    // Each limit's stored state, looked up once: on the stack for every
    // call the grammar accepts (at most MAX_LIMITS limits), else on the heap.
    let mut on_stack = [None; MAX_LIMITS];
    let mut on_heap: Vec<Option<&State>>;
    let priors: &mut [Option<&State>] = match on_stack.get_mut(..limits.len()) {
        Some(slots) => slots,
        None => {
            on_heap = vec![None; limits.len()];
            on_heap.as_mut_slice()
        }
    };
    for (i, (slot, l)) in priors.iter_mut().zip(limits).enumerate() {
        *slot = stored.and_then(|s| s.matching(i, l.name, l.quota.algorithm()));
    }
    let priors = &*priors;
    // Each limit's decision, and in `entries` what it would store (`None`:
    // unchanged); the unchanged ones are filled from the stored state only
    // if the call writes.
    let mut decisions = Vec::with_capacity(limits.len());
    let mut entries = Vec::with_capacity(limits.len());
    let mut lease = None;
    for (limit, &prior) in limits.iter().zip(priors) {
        let (mut decision, mut state) = match &limit.quota {
            Quota::Concurrency(q) => {
                let out = lease_step(prior, q, now_ms, limit.cost)?;
                lease = lease.or(out.lease);
                (out.decision, out.new_state.map(State::Leases))
            }
            quota => {
                let out = apply(prior, quota, now_ms, limit.cost)?;
                (out.decision, out.new_state)
            }
        };
        let leases = matches!(limit.quota, Quota::Concurrency(_));
        if limit.shadow && !decision.allowed() && decision.remaining > 0 && !leases {
            // A shadow limit consumes like an enforced one, but never below
            // empty: it takes what is left and still reports its denial.
            let rest = apply(prior, &limit.quota, now_ms, Cost::Take(decision.remaining))?;
            decision = Decision {
                retry: decision.retry,
                ..rest.decision
            };
            state = rest.new_state;
        }
        decisions.push(decision);
        entries.push(LimitEntry {
            name: limit.name,
            state,
        });
    }

    let allowed = limits
        .iter()
        .zip(&decisions)
        .all(|(l, d)| l.shadow || d.allowed());
    if !allowed {
        // Nothing is consumed: every limit reports its own verdict on its
        // untouched state, and keeps only what the time rule settled.
        let each = limits
            .iter()
            .zip(priors)
            .zip(entries.iter_mut().zip(decisions.iter_mut()));
        for ((limit, &prior), (entry, d)) in each {
            let untouched = apply(prior, &limit.quota, now_ms, Cost::Read)?;
            if entry.state.is_some() {
                *d = Decision {
                    retry: d.retry,
                    ..untouched.decision
                };
            }
            entry.state = untouched.new_state;
        }
    }
    let binding = binding(limits, &decisions);
    let writes = limits.iter().any(|l| l.cost.writes());
    // A state the time rule settled (see `apply`) is stored even by a call
    // that otherwise writes nothing, so the key's TTL follows.
    let settled = entries.iter().any(|e| e.state.is_some());
    let new_state = ((allowed && writes) || settled).then(|| {
        for (entry, &prior) in entries.iter_mut().zip(priors) {
            if entry.state.is_none() {
                entry.state = prior.cloned();
            }
        }
        LimitsState::built(entries)
    });
    Ok(LimitsOutcome {
        allowed,
        binding,
        decisions,
        new_state,
        lease: lease.filter(|_| allowed),
    })
}

/// The limit that decides the call. Denied: the denying enforced limit with
/// the longest wait ("never" beats any wait). Allowed: the enforced limit
/// with the fewest remaining units (ties: the later reset). With only shadow
/// limits, the same rules over them say which would have bound. Further ties:
/// the first in the call.
fn binding(limits: &[Limit], decisions: &[Decision]) -> usize {
    let any_enforced = limits.iter().any(|l| !l.shadow);
    let candidates = || {
        limits
            .iter()
            .zip(decisions)
            .enumerate()
            .filter(move |(_, (l, _))| !any_enforced || !l.shadow)
            .map(|(i, (_, d))| (i, d))
    };
    let wait = |d: &Decision| match d.retry {
        Retry::Now => None,
        Retry::After(ms) => Some(u128::from(ms)),
        Retry::Never => Some(u128::MAX),
    };
    let mut best: Option<(usize, u128)> = None;
    for (i, d) in candidates() {
        if let Some(w) = wait(d) {
            if best.is_none_or(|(_, bw)| w > bw) {
                best = Some((i, w));
            }
        }
    }
    if let Some((i, _)) = best {
        return i;
    }
    let mut best: Option<(usize, &Decision)> = None;
    for (i, d) in candidates() {
        let better = best.is_none_or(|(_, b)| {
            d.remaining < b.remaining
                || (d.remaining == b.remaining && d.reset_after_ms > b.reset_after_ms)
        });
        if better {
            best = Some((i, d));
        }
    }
    best.map_or(0, |(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rl_grammar::{TokenBucketQuota, WindowQuota, RATE_SCALE};

    fn tb(capacity: u64, per_s: u64) -> Quota {
        Quota::TokenBucket(TokenBucketQuota::new(capacity, per_s * RATE_SCALE).expect("valid"))
    }
    fn fw(limit: u64, window_ms: u64) -> Quota {
        Quota::FixedWindow(WindowQuota::new(limit, window_ms).expect("valid"))
    }
    fn se(limit: u64, window_ms: u64) -> Quota {
        Quota::SlidingExact(WindowQuota::new(limit, window_ms).expect("valid"))
    }
    fn sa(limit: u64, window_ms: u64) -> Quota {
        Quota::SlidingApprox(WindowQuota::new(limit, window_ms).expect("valid"))
    }
    fn limit(quota: Quota, cost: i64) -> Limit {
        Limit {
            name: None,
            quota,
            cost: Cost::from(cost),
            shadow: false,
        }
    }

    #[test]
    fn a_denied_call_stores_nothing_and_reports_untouched_states() {
        let limits = [limit(tb(2, 1), 1), limit(fw(10, 60_000), 1)];
        let mut state = None;
        for _ in 0..2 {
            let out = combine(state.as_ref(), &limits, 1_000).expect("applies");
            assert!(out.allowed);
            state = out.new_state;
        }
        let out = combine(state.as_ref(), &limits, 1_000).expect("applies");
        assert!(!out.allowed);
        assert_eq!(out.new_state, None);
        assert_eq!(out.binding, 0);
        assert_eq!(out.decisions[1].remaining, 8, "the window lost nothing");
        assert!(out.decisions[1].allowed());
    }

    #[test]
    fn costs_of_zero_write_nothing_and_refunds_only_with_a_grant() {
        let out = combine(None, &[limit(tb(5, 1), 0)], 0).expect("applies");
        assert!(out.allowed && out.new_state.is_none());
        // A refund beside a denial is not applied.
        let limits = [limit(tb(1, 1), 2), limit(fw(5, 1_000), -1)];
        let out = combine(None, &limits, 0).expect("applies");
        assert!(!out.allowed && out.new_state.is_none());
    }

    /// Found by the model test: an APPROX limit lowered below its count
    /// made a refund (and a cost of 0) report a denial, so a call whose costs
    /// were all <= 0 was refused.
    #[test]
    fn costs_at_most_zero_are_granted_even_over_a_lowered_limit() {
        for q in [fw(6, 2_000), se(6, 1_500), sa(6, 1_500)] {
            let s = combine(None, &[limit(q, 6)], 0).expect("applies").new_state;
            let lowered = match q {
                Quota::FixedWindow(_) => fw(3, 2_000),
                Quota::SlidingExact(_) => se(3, 1_500),
                _ => sa(3, 1_500),
            };
            for cost in [0, -1] {
                let out = combine(s.as_ref(), &[limit(lowered, cost)], 1).expect("applies");
                assert!(out.allowed, "{q:?} cost {cost}");
                assert_eq!(out.decisions[0].retry, Retry::Now);
                assert_eq!(out.summary().retry_after_ms(), 0);
            }
        }
    }

    #[test]
    fn a_changed_algorithm_starts_fresh_and_unnamed_limits_match_by_position() {
        let first = [limit(se(5, 1_000), 3), limit(sa(5, 1_000), 1)];
        let s = combine(None, &first, 0).expect("applies").new_state;
        let swapped = [limit(sa(5, 1_000), 0), limit(se(5, 1_000), 0)];
        let out = combine(s.as_ref(), &swapped, 0).expect("applies");
        assert_eq!(
            (out.decisions[0].remaining, out.decisions[1].remaining),
            (5, 5)
        );
        let same = [limit(se(5, 1_000), 0), limit(sa(5, 1_000), 0)];
        let out = combine(s.as_ref(), &same, 0).expect("applies");
        assert_eq!(
            (out.decisions[0].remaining, out.decisions[1].remaining),
            (2, 4)
        );
    }

    /// More limits than a call can have (the grammar's bound) are still
    /// decided, each against its own stored state.
    #[test]
    fn more_limits_than_the_grammar_allows_are_still_decided() {
        let limits: Vec<Limit> = (0..MAX_LIMITS as u32 + 2)
            .map(|i| Limit {
                name: Some(i),
                ..limit(fw(2, 1_000), 1)
            })
            .collect();
        let first = combine(None, &limits, 0).expect("applies");
        assert!(first.allowed);
        let out = combine(first.new_state.as_ref(), &limits, 0).expect("applies");
        assert!(out
            .decisions
            .iter()
            .all(|d| d.allowed() && d.remaining == 0));
        let out = combine(out.new_state.as_ref(), &limits, 0).expect("applies");
        assert!(!out.allowed);
    }

    /// What one limit is in the reference model: its own state, as if it
    /// were a key of its own, changed only when the whole call is granted.
    #[derive(Clone, Debug)]
    struct Model {
        state: Option<State>,
    }

    fn quota_of(algo: u8, small: bool) -> Quota {
        let n = if small { 3 } else { 6 };
        match algo % 4 {
            0 => tb(n, 1),
            1 => fw(n, 2_000),
            2 => se(n, 1_500),
            _ => sa(n, 1_500),
        }
    }

    proptest! {
        /// Against a reference model of separate limiters committed only
        /// when every enforced one grants: the same verdicts and remaining
        /// units, a denial stores nothing, shadows never deny, and every
        /// stored state survives its encoding.
        #[test]
        fn matches_separate_limiters_committed_all_or_nothing(
            algos in prop::collection::vec(0u8..4, 1..5),
            calls in prop::collection::vec(
                (0u64..900, -3i64..6, prop::collection::vec((any::<bool>(), any::<bool>(), -2i64..5, any::<bool>()), 4)),
                1..60,
            ),
        ) {
            let mut stored: Option<LimitsState> = None;
            let mut model: Vec<Model> = algos.iter().map(|_| Model { state: None }).collect();
            let mut now = 1_000_000u64;
            for (gap, call_cost, per) in calls {
                now += gap;
                // A limit's parameters may change between calls ("small"),
                // it may be a shadow, and have its own cost.
                let limits: Vec<Limit> = algos
                    .iter()
                    .zip(&per)
                    .enumerate()
                    .map(|(i, (&a, &(small, shadow, own, use_own)))| Limit {
                        name: Some(i as u32),
                        quota: quota_of(a, small),
                        cost: Cost::from(if use_own { own } else { call_cost }),
                        shadow,
                    })
                    .collect();
                let before = stored.clone();
                let out = combine(stored.as_ref(), &limits, now).expect("applies");

                // The model: each limit alone.
                let mut verdicts = Vec::new();
                for (l, m) in limits.iter().zip(&model) {
                    let o = apply(m.state.as_ref(), &l.quota, now, l.cost).expect("applies");
                    verdicts.push(o);
                }
                let allowed = limits
                    .iter()
                    .zip(&verdicts)
                    .all(|(l, o)| l.shadow || o.decision.allowed());
                prop_assert_eq!(out.allowed, allowed);
                for (i, (l, o)) in limits.iter().zip(&verdicts).enumerate() {
                    prop_assert_eq!(out.decisions[i].allowed(), o.decision.allowed(), "limit {}", i);
                    if !allowed || !l.shadow || o.decision.allowed() {
                        // Denied calls report untouched states; granted ones
                        // the state after the grant.
                        let want = if allowed {
                            o.decision.remaining
                        } else {
                            apply(model[i].state.as_ref(), &l.quota, now, 0)
                                .expect("applies")
                                .decision
                                .remaining
                        };
                        prop_assert_eq!(out.decisions[i].remaining, want, "limit {}", i);
                    }
                }
                if !allowed {
                    prop_assert!(out.new_state.is_none());
                    prop_assert_eq!(&stored, &before);
                    continue;
                }
                let writes = limits.iter().any(|l| l.cost.writes());
                prop_assert_eq!(out.new_state.is_some(), writes);
                if !writes {
                    continue;
                }
                // Commit the model: grants, refunds, and shadows consumed to
                // empty.
                for (i, (l, o)) in limits.iter().zip(verdicts).enumerate() {
                    let next = if o.decision.allowed() {
                        o.new_state
                    } else {
                        let rest = apply(model[i].state.as_ref(), &l.quota, now, o.decision.remaining as i64)
                            .expect("applies");
                        if o.decision.remaining > 0 { rest.new_state } else { None }
                    };
                    if let Some(s) = next {
                        model[i].state = Some(s);
                    }
                    if l.shadow && !o.decision.allowed() {
                        prop_assert_eq!(out.decisions[i].remaining,
                            apply(model[i].state.as_ref(), &l.quota, now, 0).expect("applies").decision.remaining);
                    }
                }
                stored = out.new_state;
                let encoded = State::Limits(stored.clone().expect("written")).to_bytes();
                prop_assert_eq!(State::decode(&encoded), Ok(State::Limits(stored.clone().expect("written"))));
            }
        }
    }
}
