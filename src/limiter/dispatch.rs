//! One call of any algorithm on the state a key holds: the stored state is
//! first brought under the time rule, then the quota's algorithm steps.

use super::codec::DecodeError;
use super::cost::Cost;
use super::decision::{Outcome, Retry};
use super::fixed_window;
use super::leases::{self, Acquired};
use super::sliding::approx::{refund_approx, settle_approx, step_approx};
use super::sliding::exact::{refund_exact, settle_exact, step_exact};
use super::state::{Kind, State};
use super::token_bucket;
use rl_grammar::{Algorithm, LeaseQuota, Quota};

/// Why a call could not be applied to the stored state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApplyError {
    /// The key holds another algorithm's state.
    WrongKind { stored: Kind, called: Kind },
    /// The stored state does not decode (it was checked on load, so this
    /// means memory was damaged; refuse rather than guess).
    Corrupt(DecodeError),
}

/// The state a call continues from under the time rule: a state stamped
/// further ahead of `now_ms` than its algorithm's full reset allows (the
/// clock stepped back, or the state came from a clock that ran ahead) is
/// pulled back so it resets within that time. `Ok(None)`: the stored state
/// is within the rule (or belongs to another algorithm) and is used as is.
/// A settled state is stored even by calls that would store nothing, so the
/// key's TTL follows.
pub fn settle(stored: &State, quota: &Quota, now_ms: u64) -> Result<Option<State>, ApplyError> {
    Ok(match (quota, stored) {
        (Quota::TokenBucket(q), State::TokenBucket(s)) => {
            token_bucket::settle(s, q, now_ms).map(State::TokenBucket)
        }
        (Quota::FixedWindow(q), State::FixedWindow(s)) => {
            fixed_window::settle(s, q, now_ms).map(State::FixedWindow)
        }
        (Quota::SlidingExact(_), State::SlidingExact(log)) => settle_exact(log, now_ms)
            .map_err(ApplyError::Corrupt)?
            .map(State::SlidingExact),
        (Quota::SlidingApprox(q), State::SlidingApprox(s)) => {
            settle_approx(s, q, now_ms).map(State::SlidingApprox)
        }
        _ => None,
    })
}

/// One call of any algorithm on the state a key holds (`None`: no key).
/// The cost is classified once (see [`Cost`]; the glue passes it classified,
/// a signed number converts): a refund and a read are always allowed. A
/// stored state ahead of the clock is first settled (see [`settle`]); if it
/// was, the settled state is returned for storing even when the call itself
/// stores nothing (denied, `cost 0`).
pub fn apply(
    stored: Option<&State>,
    quota: &Quota,
    now_ms: u64,
    cost: impl Into<Cost>,
) -> Result<Outcome<State>, ApplyError> {
    let cost = cost.into();
    let settled = match stored {
        Some(s) => settle(s, quota, now_ms)?,
        None => None,
    };
    let mut out = step(settled.as_ref().or(stored), quota, now_ms, cost)?;
    if !matches!(cost, Cost::Take(_)) {
        out.decision.retry = Retry::Now;
    }
    if out.new_state.is_none() {
        out.new_state = settled;
    }
    Ok(out)
}

/// The step of a cost that takes units (a read takes none), or the refund
/// of one that gives them back.
fn by_cost<T>(cost: Cost, take: impl FnOnce(u64) -> T, give_back: impl FnOnce(u64) -> T) -> T {
    match cost {
        Cost::Take(units) => take(units),
        Cost::Read => take(0),
        Cost::GiveBack(units) => give_back(units),
    }
}

/// [`apply`] on a state already within the time rule.
fn step(
    stored: Option<&State>,
    quota: &Quota,
    now_ms: u64,
    cost: Cost,
) -> Result<Outcome<State>, ApplyError> {
    fn wrap<S>(out: Outcome<S>, f: impl FnOnce(S) -> State) -> Outcome<State> {
        Outcome {
            decision: out.decision,
            new_state: out.new_state.map(f),
        }
    }
    Ok(match (quota, stored) {
        (Quota::TokenBucket(q), None | Some(State::TokenBucket(_))) => {
            let prev = match stored {
                Some(State::TokenBucket(s)) => Some(*s),
                _ => None,
            };
            let out = by_cost(
                cost,
                |units| token_bucket::step(prev, q, now_ms, units),
                |units| token_bucket::refund(prev, q, now_ms, units),
            );
            wrap(out, State::TokenBucket)
        }
        (Quota::FixedWindow(q), None | Some(State::FixedWindow(_))) => {
            let prev = match stored {
                Some(State::FixedWindow(s)) => Some(*s),
                _ => None,
            };
            let out = by_cost(
                cost,
                |units| fixed_window::step(prev, q, now_ms, units),
                |units| fixed_window::refund(prev, q, now_ms, units),
            );
            wrap(out, State::FixedWindow)
        }
        (Quota::SlidingExact(q), None | Some(State::SlidingExact(_))) => {
            let prev = match stored {
                Some(State::SlidingExact(log)) => Some(log),
                _ => None,
            };
            let out = by_cost(
                cost,
                |units| step_exact(prev, q, now_ms, units),
                |units| refund_exact(prev, q, now_ms, units),
            );
            wrap(out.map_err(ApplyError::Corrupt)?, State::SlidingExact)
        }
        (Quota::SlidingApprox(q), None | Some(State::SlidingApprox(_))) => {
            let prev = match stored {
                Some(State::SlidingApprox(s)) => Some(*s),
                _ => None,
            };
            let out = by_cost(
                cost,
                |units| step_approx(prev, q, now_ms, units),
                |units| refund_approx(prev, q, now_ms, units),
            );
            wrap(out, State::SlidingApprox)
        }
        (Quota::Concurrency(q), None | Some(State::Leases(_))) => {
            let out = lease_step(stored, q, now_ms, cost)?;
            Outcome {
                decision: out.decision,
                new_state: out.new_state.map(State::Leases),
            }
        }
        (_, Some(s)) => {
            return Err(ApplyError::WrongKind {
                stored: s.kind(),
                called: Kind::Algorithm(quota.algorithm()),
            })
        }
    })
}

/// One call on concurrency leases with a made id: a cost takes a lease of
/// that many slots; a read (and a refund, which the glue refuses: slots come
/// back by `RL.RELEASE`) only reports. The lease granted is in the answer.
pub fn lease_step(
    stored: Option<&State>,
    quota: &LeaseQuota,
    now_ms: u64,
    cost: Cost,
) -> Result<Acquired, ApplyError> {
    let prev = match stored {
        None => None,
        Some(State::Leases(s)) => Some(s),
        Some(s) => {
            return Err(ApplyError::WrongKind {
                stored: s.kind(),
                called: Kind::Algorithm(Algorithm::Concurrency),
            })
        }
    };
    Ok(match cost {
        Cost::Take(units) => leases::take(prev, quota, now_ms, units),
        Cost::Read | Cost::GiveBack(_) => leases::observe(prev, quota, now_ms),
    })
}
