//! The rate-limiting algorithms, as pure functions.
//!
//! Nothing in this module touches Redis or reads a clock: every step takes the
//! previous state, a validated quota, the current time in milliseconds and a
//! cost, and returns a [`Decision`] plus the state to store (if any). Storage,
//! replication and the clock live in `crate::redis`.

pub mod decision;
pub mod fixed_window;
pub mod quota;
pub mod sliding_window;
pub mod state;
pub mod token_bucket;

pub use decision::{Decision, Outcome, Retry};
pub use quota::{Quota, QuotaError};
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

impl Quota {
    pub fn kind(&self) -> Kind {
        match self {
            Quota::TokenBucket(_) => Kind::TokenBucket,
            Quota::FixedWindow(_) => Kind::FixedWindow,
            Quota::SlidingExact(_) => Kind::SlidingExact,
            Quota::SlidingApprox(_) => Kind::SlidingApprox,
        }
    }
}

/// One call of any algorithm on the state a key holds (`None`: no key).
pub fn apply(
    stored: Option<&State>,
    quota: &Quota,
    now_ms: u64,
    cost: u64,
) -> Result<Outcome<State>, ApplyError> {
    fn wrap<S>(out: Outcome<S>, f: impl FnOnce(S) -> State) -> Outcome<State> {
        Outcome {
            decision: out.decision,
            new_state: out.new_state.map(f),
        }
    }
    let mismatch = |s: &State| ApplyError::WrongKind {
        stored: s.kind(),
        called: quota.kind(),
    };
    Ok(match (quota, stored) {
        (Quota::TokenBucket(q), None) => wrap(
            token_bucket::step(None, q, now_ms, cost),
            State::TokenBucket,
        ),
        (Quota::TokenBucket(q), Some(State::TokenBucket(s))) => wrap(
            token_bucket::step(Some(*s), q, now_ms, cost),
            State::TokenBucket,
        ),
        (Quota::FixedWindow(q), None) => wrap(
            fixed_window::step(None, q, now_ms, cost),
            State::FixedWindow,
        ),
        (Quota::FixedWindow(q), Some(State::FixedWindow(s))) => wrap(
            fixed_window::step(Some(*s), q, now_ms, cost),
            State::FixedWindow,
        ),
        (Quota::SlidingExact(q), None) => wrap(
            sliding_window::step_exact(None, q, now_ms, cost).map_err(ApplyError::Corrupt)?,
            State::SlidingExact,
        ),
        (Quota::SlidingExact(q), Some(State::SlidingExact(log))) => wrap(
            sliding_window::step_exact(Some(log), q, now_ms, cost).map_err(ApplyError::Corrupt)?,
            State::SlidingExact,
        ),
        (Quota::SlidingApprox(q), None) => wrap(
            sliding_window::step_approx(None, q, now_ms, cost),
            State::SlidingApprox,
        ),
        (Quota::SlidingApprox(q), Some(State::SlidingApprox(s))) => wrap(
            sliding_window::step_approx(Some(*s), q, now_ms, cost),
            State::SlidingApprox,
        ),
        (_, Some(s)) => return Err(mismatch(s)),
    })
}
