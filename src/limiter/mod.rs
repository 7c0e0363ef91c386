//! The rate-limiting algorithms, as pure functions.
//!
//! Nothing in this module touches Redis or reads a clock: every step takes the
//! previous state, a validated quota, the current time in milliseconds and a
//! cost, and returns a [`Decision`] plus the state to store (if any). Storage,
//! replication and the clock live in `crate::redis`.

pub mod decision;
pub mod fixed_window;
pub mod limits;
pub mod packed;
pub mod sliding_window;
pub mod state;
pub mod thin;
pub mod token_bucket;

pub use decision::{Decision, Outcome, Retry};
pub use rl_grammar as quota;
pub use rl_grammar::{Quota, QuotaError};
pub use state::State;

use state::{DecodeError, Kind};

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
        (Quota::SlidingExact(_), State::SlidingExact(log)) => {
            sliding_window::settle_exact(log, now_ms)
                .map_err(ApplyError::Corrupt)?
                .map(State::SlidingExact)
        }
        (Quota::SlidingApprox(q), State::SlidingApprox(s)) => {
            sliding_window::settle_approx(s, q, now_ms).map(State::SlidingApprox)
        }
        _ => None,
    })
}

/// One call of any algorithm on the state a key holds (`None`: no key).
/// A negative `cost` is a refund of that many units: always allowed, never
/// above the limiter's full state, and stored like a grant. A `cost` of 0
/// takes nothing, so it is always allowed too, even when a lowered limit
/// leaves the limiter over its new limit (it then reports 0 remaining).
/// A stored state ahead of the clock is first settled (see [`settle`]); if it
/// was, the settled state is returned for storing even when the call itself
/// stores nothing (denied, `cost 0`).
pub fn apply(
    stored: Option<&State>,
    quota: &Quota,
    now_ms: u64,
    cost: i64,
) -> Result<Outcome<State>, ApplyError> {
    let settled = match stored {
        Some(s) => settle(s, quota, now_ms)?,
        None => None,
    };
    let mut out = step(settled.as_ref().or(stored), quota, now_ms, cost)?;
    if cost <= 0 {
        out.decision.retry = Retry::Now;
    }
    if out.new_state.is_none() {
        out.new_state = settled;
    }
    Ok(out)
}

/// [`apply`] on a state already within the time rule.
fn step(
    stored: Option<&State>,
    quota: &Quota,
    now_ms: u64,
    cost: i64,
) -> Result<Outcome<State>, ApplyError> {
    fn wrap<S>(out: Outcome<S>, f: impl FnOnce(S) -> State) -> Outcome<State> {
        Outcome {
            decision: out.decision,
            new_state: out.new_state.map(f),
        }
    }
    let take = u64::try_from(cost).ok();
    let give = cost.unsigned_abs();
    Ok(match (quota, stored) {
        (Quota::TokenBucket(q), None | Some(State::TokenBucket(_))) => {
            let prev = match stored {
                Some(State::TokenBucket(s)) => Some(*s),
                _ => None,
            };
            let out = match take {
                Some(cost) => token_bucket::step(prev, q, now_ms, cost),
                None => token_bucket::refund(prev, q, now_ms, give),
            };
            wrap(out, State::TokenBucket)
        }
        (Quota::FixedWindow(q), None | Some(State::FixedWindow(_))) => {
            let prev = match stored {
                Some(State::FixedWindow(s)) => Some(*s),
                _ => None,
            };
            let out = match take {
                Some(cost) => fixed_window::step(prev, q, now_ms, cost),
                None => fixed_window::refund(prev, q, now_ms, give),
            };
            wrap(out, State::FixedWindow)
        }
        (Quota::SlidingExact(q), None | Some(State::SlidingExact(_))) => {
            let prev = match stored {
                Some(State::SlidingExact(log)) => Some(log),
                _ => None,
            };
            let out = match take {
                Some(cost) => sliding_window::step_exact(prev, q, now_ms, cost),
                None => sliding_window::refund_exact(prev, q, now_ms, give),
            };
            wrap(out.map_err(ApplyError::Corrupt)?, State::SlidingExact)
        }
        (Quota::SlidingApprox(q), None | Some(State::SlidingApprox(_))) => {
            let prev = match stored {
                Some(State::SlidingApprox(s)) => Some(*s),
                _ => None,
            };
            let out = match take {
                Some(cost) => sliding_window::step_approx(prev, q, now_ms, cost),
                None => sliding_window::refund_approx(prev, q, now_ms, give),
            };
            wrap(out, State::SlidingApprox)
        }
        (_, Some(s)) => {
            return Err(ApplyError::WrongKind {
                stored: s.kind(),
                called: Kind::Algorithm(quota.algorithm()),
            })
        }
    })
}

#[cfg(test)]
mod time_rule;
