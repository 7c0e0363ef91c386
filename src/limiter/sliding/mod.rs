//! Sliding windows: an exact log, and the two-counter approximation.
//!
//! `EXACT` keeps every grant's time and counts those inside the trailing
//! window; its log is packed as varints of the time deltas and counts, a few
//! bytes per entry, in one allocation ([`log`]); a granted call replicates as
//! a small delta ([`delta`]). `APPROX` keeps two counters and is O(1)
//! ([`approx`]).

pub mod approx;
pub mod delta;
pub mod exact;
pub mod log;
