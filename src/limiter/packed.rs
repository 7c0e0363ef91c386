//! Smaller in-memory forms of the small states.
//!
//! A key's value is a pointer Redis keeps for us. Most token-bucket,
//! fixed-window and `APPROX` states fit in fewer bits than their 32-byte
//! [`State`]: in a word (which then lives in the pointer itself, no
//! allocation) or in two words (a 16-byte allocation). These are only the
//! forms a running server holds; RDB, `DUMP`, the AOF and replication still
//! carry the one versioned encoding of `limiter::state`, so replicas stay
//! byte-identical whatever form each side holds. Every form converts back to
//! exactly the state it came from; a state that fits none stays a full
//! [`State`].
//!
//! (An `APPROX` state whose counts do not fit a word stays a full state, and
//! an `EXACT` log is its own single allocation: see `limiter::thin`.)
//!
//! A word holds 63 bits: the kind (2 bits), a time in ms since
//! [`WORD_EPOCH_MS`] (40 bits: until 2054), and a 21-bit field: the token
//! bucket's level in whole milli-tokens (so exact refill is kept: buckets
//! whose rate is a whole number of tokens per second only ever hold such
//! levels), the fixed window's count, or `APPROX`'s previous (10 bits) and
//! current (11 bits) counts.

use super::fixed_window::FixedWindowState;
use super::sliding::approx::SlidingApproxState;
use super::state::State;
use super::token_bucket::TokenBucketState;

/// 2020-01-01T00:00:00Z in ms since the Unix epoch: word times count from it.
pub const WORD_EPOCH_MS: u64 = 1_577_836_800_000;

const KIND_BITS: u32 = 2;
const TIME_BITS: u32 = 40;
const FIELD_BITS: u32 = 21;
const PREV_BITS: u32 = 10;
const TIME_SHIFT: u32 = KIND_BITS;
const FIELD_SHIFT: u32 = KIND_BITS + TIME_BITS;

/// A word's level unit: pico-tokens per milli-token.
const MILLI: u64 = 1_000_000_000;

/// Which small state a word or a pair holds (pairs: token bucket and fixed
/// window only).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SmallKind {
    TokenBucket = 0,
    FixedWindow = 1,
    SlidingApprox = 2,
}

impl SmallKind {
    fn from_bits(bits: u64) -> Option<Self> {
        match bits {
            0 => Some(SmallKind::TokenBucket),
            1 => Some(SmallKind::FixedWindow),
            2 => Some(SmallKind::SlidingApprox),
            _ => None,
        }
    }
}

/// The smallest form a state fits in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Packed {
    /// 63 bits (the top bit is always 0).
    Word(u64),
    /// Two words.
    Pair(SmallKind, [u64; 2]),
}

/// The smallest form of `state`; `None` when it needs the full [`State`].
pub fn pack(state: &State) -> Option<Packed> {
    match state {
        State::TokenBucket(s) => Some(pack_token_bucket(s)?),
        State::FixedWindow(s) => Some(
            word(SmallKind::FixedWindow, s.start_ms, s.count)
                .unwrap_or(Packed::Pair(SmallKind::FixedWindow, [s.start_ms, s.count])),
        ),
        State::SlidingApprox(s) => pack_approx(s),
        State::SlidingExact(_) | State::Limits(_) | State::Leases(_) => None,
    }
}

fn pack_token_bucket(s: &TokenBucketState) -> Option<Packed> {
    // Every form needs the level to fit 64 bits (u64 arithmetic from here:
    // 128-bit division is a library call).
    let level = u64::try_from(s.level()).ok()?;
    if level.is_multiple_of(MILLI) {
        if let Some(w) = word(SmallKind::TokenBucket, s.at_ms, level / MILLI) {
            return Some(w);
        }
    }
    Some(Packed::Pair(SmallKind::TokenBucket, [level, s.at_ms]))
}

fn pack_approx(s: &SlidingApproxState) -> Option<Packed> {
    if s.prev >= 1 << PREV_BITS {
        return None;
    }
    word(
        SmallKind::SlidingApprox,
        s.start_ms,
        s.cur << PREV_BITS | s.prev,
    )
}

/// A word of `kind`, time `at_ms` and `field`, if both fit.
fn word(kind: SmallKind, at_ms: u64, field: u64) -> Option<Packed> {
    let t = at_ms.checked_sub(WORD_EPOCH_MS)?;
    (t < 1 << TIME_BITS && field < 1 << FIELD_BITS).then_some(Packed::Word(
        field << FIELD_SHIFT | t << TIME_SHIFT | kind as u64,
    ))
}

/// The state a word holds; `None` for a word [`pack`] never makes.
pub fn unpack_word(w: u64) -> Option<State> {
    let kind = SmallKind::from_bits(w & ((1 << KIND_BITS) - 1))?;
    let t = (w >> TIME_SHIFT & ((1 << TIME_BITS) - 1)) + WORD_EPOCH_MS;
    let field = w >> FIELD_SHIFT;
    if field >= 1 << FIELD_BITS {
        return None;
    }
    Some(match kind {
        SmallKind::TokenBucket => {
            State::TokenBucket(TokenBucketState::new(u128::from(field * MILLI), t))
        }
        SmallKind::FixedWindow => State::FixedWindow(FixedWindowState {
            start_ms: t,
            count: field,
        }),
        SmallKind::SlidingApprox => State::SlidingApprox(SlidingApproxState {
            start_ms: t,
            prev: field & ((1 << PREV_BITS) - 1),
            cur: field >> PREV_BITS,
        }),
    })
}

/// The state a pair holds (`None`: a kind pairs never hold).
pub fn unpack_pair(kind: SmallKind, [a, b]: [u64; 2]) -> Option<State> {
    match kind {
        SmallKind::TokenBucket => Some(State::TokenBucket(TokenBucketState::new(u128::from(a), b))),
        SmallKind::FixedWindow => Some(State::FixedWindow(FixedWindowState {
            start_ms: a,
            count: b,
        })),
        SmallKind::SlidingApprox => None,
    }
}

/// The kind bits of a pair, for a tagged pointer (1 or 2; 0 and 3 are left
/// for the full state and the `EXACT` log).
pub fn pair_tag(kind: SmallKind) -> usize {
    kind as usize + 1
}

/// The kind a pair's tag stands for.
pub fn pair_kind(tag: usize) -> Option<SmallKind> {
    match tag {
        1 => Some(SmallKind::TokenBucket),
        2 => Some(SmallKind::FixedWindow),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::super::token_bucket::PICO;
    use super::*;
    use proptest::prelude::*;

    fn round_trip(state: &State) -> Option<Packed> {
        let packed = pack(state)?;
        let back = match packed {
            Packed::Word(w) => {
                assert!(w < 1 << 63, "a word keeps its top bit clear");
                unpack_word(w).expect("a packed word unpacks")
            }
            Packed::Pair(kind, p) => {
                assert_eq!(pair_kind(pair_tag(kind)), Some(kind));
                unpack_pair(kind, p).expect("a pair of a kind pairs hold")
            }
        };
        assert_eq!(&back, state);
        Some(packed)
    }

    const NOW: u64 = 1_764_000_000_000;

    #[test]
    fn whole_milli_token_buckets_fit_in_a_word() {
        let s = State::TokenBucket(TokenBucketState::new(999 * PICO, NOW));
        assert!(matches!(round_trip(&s), Some(Packed::Word(_))));
        // 2,097 tokens and a fraction of a token in milli-tokens still fit.
        let s = State::TokenBucket(TokenBucketState::new(u128::from(2_097_151 * MILLI), NOW));
        assert!(matches!(round_trip(&s), Some(Packed::Word(_))));
    }

    #[test]
    fn other_buckets_take_a_pair_or_the_full_state() {
        let pico = State::TokenBucket(TokenBucketState::new(999 * PICO + 7, NOW));
        assert!(matches!(round_trip(&pico), Some(Packed::Pair(..))));
        let big = State::TokenBucket(TokenBucketState::new(u128::from(2_097_152 * MILLI), NOW));
        assert!(matches!(round_trip(&big), Some(Packed::Pair(..))));
        let before_epoch = State::TokenBucket(TokenBucketState::new(PICO, WORD_EPOCH_MS - 1));
        assert!(matches!(round_trip(&before_epoch), Some(Packed::Pair(..))));
        let after_2054 = State::TokenBucket(TokenBucketState::new(PICO, WORD_EPOCH_MS + (1 << 40)));
        assert!(matches!(round_trip(&after_2054), Some(Packed::Pair(..))));
        let huge = State::TokenBucket(TokenBucketState::new(u128::from(u64::MAX) + 1, NOW));
        assert_eq!(pack(&huge), None);
    }

    #[test]
    fn windows_and_approx_fit_where_their_counts_do() {
        let fw = |count| {
            State::FixedWindow(FixedWindowState {
                start_ms: NOW,
                count,
            })
        };
        assert!(matches!(round_trip(&fw(2_097_151)), Some(Packed::Word(_))));
        assert!(matches!(round_trip(&fw(2_097_152)), Some(Packed::Pair(..))));
        assert!(matches!(round_trip(&fw(u64::MAX)), Some(Packed::Pair(..))));
        let approx = |prev, cur| {
            State::SlidingApprox(SlidingApproxState {
                start_ms: NOW,
                prev,
                cur,
            })
        };
        assert!(matches!(
            round_trip(&approx(1023, 2047)),
            Some(Packed::Word(_))
        ));
        // Beyond a word: the full state.
        assert_eq!(pack(&approx(1024, 1)), None);
        assert_eq!(pack(&approx(1, 2048)), None);
        assert_eq!(pack(&approx(1 << 32, 0)), None);
    }

    #[test]
    fn words_pack_never_makes_are_refused() {
        assert_eq!(unpack_word(3), None, "kind 3 does not exist");
        assert_eq!(pair_kind(0), None, "tag 0 is the full state");
        assert_eq!(pair_kind(3), None, "tag 3 is the EXACT log");
        assert_eq!(unpack_pair(SmallKind::SlidingApprox, [1, 2]), None);
    }

    proptest! {
        #[test]
        fn every_small_state_comes_back_as_it_was(
            kind in 0..3u8,
            t in 0..u64::MAX,
            a in prop_oneof![0..u64::MAX, 0..4096u64],
            b in prop_oneof![0..u64::MAX, 0..4096u64],
            whole in any::<bool>(),
        ) {
            let state = match kind {
                0 => {
                    let level = if whole { u128::from(a) * u128::from(MILLI) } else { u128::from(a) };
                    State::TokenBucket(TokenBucketState::new(level, t))
                }
                1 => State::FixedWindow(FixedWindowState { start_ms: t, count: a }),
                _ => State::SlidingApprox(SlidingApproxState { start_ms: t, prev: a, cur: b }),
            };
            // Round-trips when packed (asserted inside); packs unless a
            // field is beyond what a pair holds.
            let packed = round_trip(&state);
            if let State::FixedWindow(_) = state {
                prop_assert!(packed.is_some());
            }
        }
    }
}
