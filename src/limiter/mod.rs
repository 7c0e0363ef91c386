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
