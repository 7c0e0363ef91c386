//! The rate-limiting algorithms, as pure functions.
//!
//! Nothing in this module touches Redis or reads a clock: every step takes the
//! previous state, a validated quota, the current time in milliseconds and a
//! cost, and returns a [`Decision`] plus the state to store (if any). Storage,
//! replication and the clock live in `crate::redis`.
//!
//! Layers, each importing only those before it: [`codec`] (varints, sinks,
//! decode errors, the time horizon); [`decision`] and [`cost`]; the
//! algorithms ([`token_bucket`], [`fixed_window`], [`sliding`]); [`state`]
//! (what a key holds and its encoding); [`dispatch`] (one call of any
//! algorithm); [`limits`] (`RL.LIMITS`). The re-exports below are for the
//! glue; the files here import each other directly.

pub mod codec;
pub mod cost;
pub mod decision;
pub mod dispatch;
pub mod fixed_window;
pub mod leases;
pub mod limits;
pub mod packed;
pub mod sliding;
pub mod state;
pub mod thin;
pub mod token_bucket;

pub use cost::Cost;
pub use decision::{Decision, Outcome, Retry};
pub use dispatch::{apply, settle, ApplyError};
pub use rl_grammar as quota;
pub use rl_grammar::{Quota, QuotaError};
pub use state::State;

#[cfg(test)]
mod time_rule;
