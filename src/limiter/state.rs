//! The state a limiter key holds (one algorithm's, or the [`LimitsState`] of
//! an `RL.LIMITS` key), and its versioned binary encoding.
//!
//! One encoding serves RDB, `DUMP`/`RESTORE`, AOF and the replication
//! payload. Layout: a format byte, an algorithm tag, then the fields as LEB128
//! varints (the `EXACT` log as its entry count and packed entries). Decoding
//! checks everything and refuses, never panics, on bad input.
//!
//! Formats: [`FORMAT_V1`] holds one algorithm's state (tags 1–4) and is still
//! what single-algorithm keys are written in, byte for byte as before, so an
//! older build reads them. [`FORMAT_V2`] adds the `RL.LIMITS` state (tag 5):
//! an entry count, then per entry a flags byte (bit 0: named, bit 1: has a
//! state), the name's 32-bit hash (little endian) when named, and the nested
//! state's tag and fields (a nested `EXACT` log also carries its byte length).
//! An older build refuses format 2 cleanly as an unknown version.
//! [`FORMAT_V3`] adds concurrency leases (tag 6, `limiter::leases` writes
//! its body): an `RL.ACQUIRE` key, and any `RL.LIMITS` key holding a
//! `CONCURRENCY` limit, are written in it; every other key is written in
//! format 1 or 2 exactly as before, and an older build refuses format 3
//! cleanly as an unknown version.

use super::codec::{read_varint, write_varint, DecodeError, InlineBuf, Payload, Sink, HORIZON_MS};
use super::fixed_window::FixedWindowState;
use super::leases::{decode_leases, encode_leases, LeaseState};
use super::sliding::approx::SlidingApproxState;
use super::sliding::log::ExactLog;
use super::token_bucket::{TokenBucketState, PICO};
use rl_grammar::{Algorithm, MAX_COUNT};

/// One algorithm's state (the first format; still written for those).
pub const FORMAT_V1: u8 = 1;
/// Adds the `RL.LIMITS` state.
pub const FORMAT_V2: u8 = 2;
/// Adds concurrency leases (alone, or as an `RL.LIMITS` entry).
pub const FORMAT_V3: u8 = 3;

const TAG_TOKEN_BUCKET: u8 = 1;
const TAG_FIXED_WINDOW: u8 = 2;
const TAG_SLIDING_EXACT: u8 = 3;
const TAG_SLIDING_APPROX: u8 = 4;
const TAG_LIMITS: u8 = 5;
const TAG_LEASES: u8 = 6;

const ENTRY_NAMED: u8 = 1;
const ENTRY_HAS_STATE: u8 = 2;

/// What a key belongs to: one algorithm, or `RL.LIMITS`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Algorithm(Algorithm),
    Limits,
}

impl Kind {
    /// How users call it, for error messages.
    pub fn command(self) -> &'static str {
        match self {
            Kind::Algorithm(a) => a.command(),
            Kind::Limits => "RL.LIMITS",
        }
    }
}

/// What one limiter key holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum State {
    TokenBucket(TokenBucketState),
    FixedWindow(FixedWindowState),
    SlidingExact(ExactLog),
    SlidingApprox(SlidingApproxState),
    /// Every limit of one `RL.LIMITS` identity (never nested).
    Limits(LimitsState),
    /// Concurrency leases (`RL.ACQUIRE`, or a `CONCURRENCY` limit).
    Leases(LeaseState),
}

impl State {
    pub fn kind(&self) -> Kind {
        Kind::Algorithm(match self {
            State::TokenBucket(_) => Algorithm::TokenBucket,
            State::FixedWindow(_) => Algorithm::FixedWindow,
            State::SlidingExact(_) => Algorithm::SlidingExact,
            State::SlidingApprox(_) => Algorithm::SlidingApprox,
            State::Leases(_) => Algorithm::Concurrency,
            State::Limits(_) => return Kind::Limits,
        })
    }

    /// Appends the encoding to `out`.
    pub fn encode<S: Sink>(&self, out: &mut S) {
        match self {
            State::Limits(limits) => {
                let format = if limits.has_leases() {
                    FORMAT_V3
                } else {
                    FORMAT_V2
                };
                out.put(&[format, TAG_LIMITS]);
                write_varint(out, limits.entries().len() as u128);
                for entry in limits.entries() {
                    let flags = if entry.name.is_some() { ENTRY_NAMED } else { 0 }
                        | if entry.state.is_some() {
                            ENTRY_HAS_STATE
                        } else {
                            0
                        };
                    out.put(&[flags]);
                    if let Some(h) = entry.name {
                        out.put(&h.to_le_bytes());
                    }
                    if let Some(state) = &entry.state {
                        state.encode_body(out, true);
                    }
                }
            }
            State::Leases(_) => {
                out.put(&[FORMAT_V3]);
                self.encode_body(out, false);
            }
            single => {
                out.put(&[FORMAT_V1]);
                single.encode_body(out, false);
            }
        }
    }

    /// The tag and fields. A nested `EXACT` log carries its byte length,
    /// since more bytes follow it.
    fn encode_body<S: Sink>(&self, out: &mut S, nested: bool) {
        match self {
            State::TokenBucket(s) => {
                out.put(&[TAG_TOKEN_BUCKET]);
                write_varint(out, s.level());
                write_varint(out, u128::from(s.at_ms));
            }
            State::FixedWindow(s) => {
                out.put(&[TAG_FIXED_WINDOW]);
                write_varint(out, u128::from(s.start_ms));
                write_varint(out, u128::from(s.count));
            }
            State::SlidingExact(log) => {
                out.put(&[TAG_SLIDING_EXACT]);
                // The entry count makes a cut at an entry boundary detectable.
                write_varint(out, log.len() as u128);
                if nested {
                    write_varint(out, log.packed().len() as u128);
                }
                out.put(log.packed());
            }
            State::SlidingApprox(s) => {
                out.put(&[TAG_SLIDING_APPROX]);
                write_varint(out, u128::from(s.start_ms));
                write_varint(out, u128::from(s.prev));
                write_varint(out, u128::from(s.cur));
            }
            // Its own length: a count, then length-prefixed ids.
            State::Leases(l) => {
                out.put(&[TAG_LEASES]);
                encode_leases(l, out);
            }
            // Never nested: combine() builds entries of single states only.
            State::Limits(_) => {}
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(24);
        self.encode(&mut out);
        out
    }

    /// The encoding without a heap allocation for the fixed-size states (the
    /// replication payload is built on every granted call).
    pub fn encoded(&self) -> Payload {
        if let State::SlidingExact(_) = self {
            return Payload::Heap(self.to_bytes());
        }
        // A limits state of a few small limits fits too; a larger one is
        // written again on the heap.
        let mut buf = InlineBuf::default();
        self.encode(&mut buf);
        Payload::inline(buf).unwrap_or_else(|| Payload::Heap(self.to_bytes()))
    }

    pub fn decode(bytes: &[u8]) -> Result<State, DecodeError> {
        let (&format, rest) = bytes.split_first().ok_or(DecodeError::Truncated)?;
        if !(FORMAT_V1..=FORMAT_V3).contains(&format) {
            return Err(DecodeError::UnknownFormat(format));
        }
        let mut pos = 0;
        let state = match rest.first() {
            Some(&TAG_LIMITS) if format >= FORMAT_V2 => {
                pos = 1;
                decode_limits(rest, &mut pos, format)?
            }
            _ => Self::decode_body(rest, &mut pos, false, format)?,
        };
        if pos != rest.len() {
            return Err(DecodeError::Invalid);
        }
        // Format 3 only for states with leases (which need it).
        if format == FORMAT_V3 && state.format() != FORMAT_V3 {
            return Err(DecodeError::Invalid);
        }
        Ok(state)
    }

    /// The format this state is written in.
    fn format(&self) -> u8 {
        match self {
            State::Leases(_) => FORMAT_V3,
            State::Limits(l) if l.has_leases() => FORMAT_V3,
            State::Limits(_) => FORMAT_V2,
            _ => FORMAT_V1,
        }
    }

    /// One algorithm's tag and fields from `bytes[*pos..]`. At the top level
    /// an `EXACT` log runs to the end of the payload; nested, it carries its
    /// byte length.
    fn decode_body(
        bytes: &[u8],
        pos: &mut usize,
        nested: bool,
        format: u8,
    ) -> Result<State, DecodeError> {
        let &tag = bytes.get(*pos).ok_or(DecodeError::Truncated)?;
        *pos += 1;
        let u64_field = |pos: &mut usize| -> Result<u64, DecodeError> {
            u64::try_from(read_varint(bytes, pos)?).map_err(|_| DecodeError::Invalid)
        };
        // Counts and levels no quota can reach, and times past the horizon,
        // are refused: the algorithms never produce them.
        let count = |pos: &mut usize| {
            u64_field(pos).and_then(|v| {
                if v <= MAX_COUNT {
                    Ok(v)
                } else {
                    Err(DecodeError::Invalid)
                }
            })
        };
        let time = |pos: &mut usize| {
            u64_field(pos).and_then(|v| {
                if v <= HORIZON_MS {
                    Ok(v)
                } else {
                    Err(DecodeError::BeyondHorizon)
                }
            })
        };
        Ok(match tag {
            TAG_TOKEN_BUCKET => {
                let level = read_varint(bytes, pos)?;
                if level > u128::from(MAX_COUNT) * PICO {
                    return Err(DecodeError::Invalid);
                }
                let at_ms = time(pos)?;
                State::TokenBucket(TokenBucketState::new(level, at_ms))
            }
            TAG_FIXED_WINDOW => {
                let start_ms = time(pos)?;
                let count = count(pos)?;
                State::FixedWindow(FixedWindowState { start_ms, count })
            }
            TAG_SLIDING_EXACT => {
                let n = read_varint(bytes, pos)?;
                let end = if nested {
                    let len = usize::try_from(read_varint(bytes, pos)?)
                        .map_err(|_| DecodeError::Invalid)?;
                    pos.checked_add(len).ok_or(DecodeError::Invalid)?
                } else {
                    bytes.len()
                };
                let packed = bytes.get(*pos..end).ok_or(DecodeError::Truncated)?;
                let log = ExactLog::from_packed(packed)?;
                if log.len() as u128 != n {
                    return Err(DecodeError::Truncated);
                }
                *pos = end;
                State::SlidingExact(log)
            }
            TAG_SLIDING_APPROX => {
                let start_ms = time(pos)?;
                let prev = count(pos)?;
                let cur = count(pos)?;
                State::SlidingApprox(SlidingApproxState {
                    start_ms,
                    prev,
                    cur,
                })
            }
            TAG_LEASES if format >= FORMAT_V3 => State::Leases(decode_leases(bytes, pos)?),
            // A limits state inside a limits state, or in format 1; leases
            // before format 3.
            TAG_LIMITS | TAG_LEASES => return Err(DecodeError::Invalid),
            other => return Err(DecodeError::UnknownKind(other)),
        })
    }

    /// Bytes held on the heap besides the state itself, for `MEMORY USAGE`.
    pub fn heap_size(&self) -> usize {
        match self {
            State::SlidingExact(log) => log.heap_size(),
            State::Limits(limits) => limits.heap_size(),
            State::Leases(leases) => leases.heap_size(),
            _ => 0,
        }
    }
}

/// One stored limit of an `RL.LIMITS` key: its name's hash (`None`: matched
/// by position) and its state (`None`: untouched, i.e. full).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LimitEntry {
    pub name: Option<u32>,
    pub state: Option<State>,
}

/// What an `RL.LIMITS` key holds: one entry per limit of the last write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LimitsState {
    entries: Box<[LimitEntry]>,
}

impl LimitsState {
    /// Checks what a decoder built: single-algorithm states only, names
    /// unique, at most [`rl_grammar::MAX_LIMITS`] entries, at most one of
    /// them leases.
    pub fn new(entries: Vec<LimitEntry>) -> Result<Self, DecodeError> {
        if entries.len() > rl_grammar::MAX_LIMITS {
            return Err(DecodeError::Invalid);
        }
        let leases = entries
            .iter()
            .filter(|e| matches!(e.state, Some(State::Leases(_))))
            .count();
        if leases > 1 {
            return Err(DecodeError::Invalid);
        }
        for (i, e) in entries.iter().enumerate() {
            if matches!(e.state, Some(State::Limits(_))) {
                return Err(DecodeError::Invalid);
            }
            let later = entries.get(i + 1..).unwrap_or_default();
            if e.name.is_some() && later.iter().any(|o| o.name == e.name) {
                return Err(DecodeError::Invalid);
            }
        }
        Ok(Self::built(entries))
    }

    /// Entries a call built from its own validated limits (names unique,
    /// single-algorithm states), so nothing is checked again.
    pub(crate) fn built(entries: Vec<LimitEntry>) -> Self {
        Self {
            entries: entries.into_boxed_slice(),
        }
    }

    pub fn entries(&self) -> &[LimitEntry] {
        &self.entries
    }

    /// The entry holding leases (a `CONCURRENCY` limit), if any: its
    /// position and its leases.
    pub fn leases(&self) -> Option<(usize, &LeaseState)> {
        self.entries
            .iter()
            .enumerate()
            .find_map(|(i, e)| match &e.state {
                Some(State::Leases(l)) => Some((i, l)),
                _ => None,
            })
    }

    fn has_leases(&self) -> bool {
        self.leases().is_some()
    }

    /// This state with entry `pos` holding `leases` instead.
    pub fn with_leases(&self, pos: usize, leases: LeaseState) -> Self {
        let mut entries = self.entries.to_vec();
        if let Some(e) = entries.get_mut(pos) {
            e.state = Some(State::Leases(leases));
        }
        Self::built(entries)
    }

    /// Heap bytes held, for `MEMORY USAGE`.
    pub fn heap_size(&self) -> usize {
        self.entries.len() * std::mem::size_of::<LimitEntry>()
            + self
                .entries
                .iter()
                .filter_map(|e| e.state.as_ref())
                .map(State::heap_size)
                .sum::<usize>()
    }

    /// The stored state a limit continues from: by name, or for an unnamed
    /// limit the unnamed entry at its position; only if the algorithm is the
    /// same (EXACT and APPROX are different algorithms).
    pub fn matching(
        &self,
        position: usize,
        name: Option<u32>,
        algorithm: Algorithm,
    ) -> Option<&State> {
        let entry = match name {
            Some(h) => self.entries.iter().find(|e| e.name == Some(h)),
            None => self.entries.get(position).filter(|e| e.name.is_none()),
        }?;
        entry
            .state
            .as_ref()
            .filter(|s| s.kind() == Kind::Algorithm(algorithm))
    }
}

/// The entries of a limits state; `bytes[*pos]` is just past the tag.
fn decode_limits(bytes: &[u8], pos: &mut usize, format: u8) -> Result<State, DecodeError> {
    let n = read_varint(bytes, pos)?;
    let n = usize::try_from(n)
        .ok()
        .filter(|&n| n <= rl_grammar::MAX_LIMITS)
        .ok_or(DecodeError::Invalid)?;
    let mut entries = Vec::with_capacity(n);
    for _ in 0..n {
        let &flags = bytes.get(*pos).ok_or(DecodeError::Truncated)?;
        *pos += 1;
        if flags & !(ENTRY_NAMED | ENTRY_HAS_STATE) != 0 {
            return Err(DecodeError::Invalid);
        }
        let name = if flags & ENTRY_NAMED != 0 {
            let raw = bytes.get(*pos..*pos + 4).ok_or(DecodeError::Truncated)?;
            *pos += 4;
            let mut h = [0u8; 4];
            h.copy_from_slice(raw);
            Some(u32::from_le_bytes(h))
        } else {
            None
        };
        let state = if flags & ENTRY_HAS_STATE != 0 {
            Some(State::decode_body(bytes, pos, true, format)?)
        } else {
            None
        };
        entries.push(LimitEntry { name, state });
    }
    LimitsState::new(entries).map(State::Limits)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn samples() -> Vec<State> {
        vec![
            State::TokenBucket(TokenBucketState::new(
                u128::from(MAX_COUNT) * PICO,
                1_764_000_000_000,
            )),
            State::FixedWindow(FixedWindowState {
                start_ms: 60_000,
                count: 7,
            }),
            State::SlidingExact(ExactLog::from_entries(&[
                (1_000, 2),
                (1_001, 1),
                (9_000, 5),
            ])),
            State::SlidingApprox(SlidingApproxState {
                start_ms: 0,
                prev: MAX_COUNT,
                cur: 0,
            }),
            limits_sample(),
            State::Leases(leases_sample()),
        ]
    }

    /// Every kind of entry: named and not, untouched, a nested log in the
    /// middle (its byte length matters there).
    fn limits_sample() -> State {
        State::Limits(
            LimitsState::new(vec![
                LimitEntry {
                    name: Some(0xdead_beef),
                    state: Some(State::TokenBucket(TokenBucketState::new(5, 9))),
                },
                LimitEntry {
                    name: None,
                    state: Some(State::SlidingExact(ExactLog::from_entries(&[
                        (1_000, 2),
                        (1_500, 1),
                    ]))),
                },
                LimitEntry {
                    name: Some(7),
                    state: None,
                },
                LimitEntry {
                    name: None,
                    state: Some(State::FixedWindow(FixedWindowState {
                        start_ms: 60_000,
                        count: 3,
                    })),
                },
            ])
            .expect("valid"),
        )
    }

    /// Bytes written by the build before `RL.LIMITS` existed (format 1): they
    /// must load as they are, and single states are still written the same.
    #[test]
    fn format_1_payloads_still_load_and_are_still_written() {
        let golden: [(&[u8], State); 4] = [
            (
                &[
                    1, 1, 128, 128, 234, 215, 188, 174, 254, 15, 128, 208, 223, 180, 171, 51,
                ],
                State::TokenBucket(TokenBucketState::new(
                    9_000_000_000_000_000,
                    1_764_000_000_000,
                )),
            ),
            (
                &[1, 2, 224, 212, 3, 7],
                State::FixedWindow(FixedWindowState {
                    start_ms: 60_000,
                    count: 7,
                }),
            ),
            (
                &[1, 3, 2, 232, 7, 2, 1, 1],
                State::SlidingExact(ExactLog::from_entries(&[(1_000, 2), (1_001, 1)])),
            ),
            (
                &[1, 4, 0, 3, 4],
                State::SlidingApprox(SlidingApproxState {
                    start_ms: 0,
                    prev: 3,
                    cur: 4,
                }),
            ),
        ];
        for (bytes, state) in golden {
            assert_eq!(State::decode(bytes), Ok(state.clone()));
            assert_eq!(state.to_bytes(), bytes);
        }
    }

    fn leases_sample() -> LeaseState {
        use crate::limiter::leases::Lease;
        LeaseState::new(
            300,
            vec![
                Lease {
                    id: b"a"[..].into(),
                    expires_at_ms: 1_000,
                    slots: 1,
                },
                Lease {
                    id: b"bc"[..].into(),
                    expires_at_ms: 1_200,
                    slots: 2,
                },
            ],
        )
        .expect("valid")
    }

    /// Leases are format 3, alone or as an `RL.LIMITS` entry; a limits
    /// state without leases stays format 2, byte for byte; format 1 and 2
    /// payloads cannot carry leases, and format 3 is only for leases.
    #[test]
    fn leases_are_format_3_and_nothing_else_changes() {
        let alone = State::Leases(leases_sample());
        let bytes = alone.to_bytes();
        assert_eq!(
            bytes,
            [3, 6, 172, 2, 2, 1, b'a', 232, 7, 1, 2, b'b', b'c', 200, 1, 2]
        );
        assert_eq!(State::decode(&bytes), Ok(alone.clone()));
        assert_eq!(alone.encoded().as_slice(), bytes.as_slice());
        for older in [FORMAT_V1, FORMAT_V2] {
            let mut b = bytes.clone();
            b[0] = older;
            assert_eq!(State::decode(&b), Err(DecodeError::Invalid));
        }
        let with = State::Limits(
            LimitsState::new(vec![
                LimitEntry {
                    name: Some(7),
                    state: Some(State::FixedWindow(FixedWindowState {
                        start_ms: 60_000,
                        count: 3,
                    })),
                },
                LimitEntry {
                    name: None,
                    state: Some(alone.clone()),
                },
            ])
            .expect("valid"),
        );
        let b = with.to_bytes();
        assert_eq!(&b[..2], &[FORMAT_V3, TAG_LIMITS]);
        assert_eq!(State::decode(&b), Ok(with.clone()));
        let mut v2 = b.clone();
        v2[0] = FORMAT_V2;
        assert_eq!(State::decode(&v2), Err(DecodeError::Invalid));
        // Without leases, format 3 is refused (each state has one encoding).
        let mut v3 = limits_sample().to_bytes();
        assert_eq!(v3[0], FORMAT_V2);
        v3[0] = FORMAT_V3;
        assert_eq!(State::decode(&v3), Err(DecodeError::Invalid));
        // Two lease entries in one limits state are refused.
        let two = [FORMAT_V3, TAG_LIMITS, 2, 2, 6, 0, 0, 2, 6, 0, 0];
        assert_eq!(State::decode(&two), Err(DecodeError::Invalid));
        assert_eq!(
            State::decode(&[FORMAT_V3, TAG_LIMITS, 1, 2, 6, 0, 0]).map(|s| s.kind()),
            Ok(Kind::Limits)
        );
        // Every cut is refused.
        for s in [alone, with] {
            let bytes = s.to_bytes();
            for len in 0..bytes.len() {
                assert!(State::decode(&bytes[..len]).is_err(), "{s:?} cut at {len}");
            }
        }
    }

    #[test]
    fn limits_states_are_format_2_and_refused_where_they_cannot_be() {
        let bytes = limits_sample().to_bytes();
        assert_eq!(&bytes[..2], &[FORMAT_V2, TAG_LIMITS]);
        // Not in format 1, and never nested.
        let mut v1 = bytes.clone();
        v1[0] = FORMAT_V1;
        assert!(State::decode(&v1).is_err());
        let nested = [FORMAT_V2, TAG_LIMITS, 1, ENTRY_HAS_STATE, TAG_LIMITS, 0];
        assert_eq!(State::decode(&nested), Err(DecodeError::Invalid));
        // Unknown entry flags, duplicate names, too many entries.
        assert_eq!(
            State::decode(&[FORMAT_V2, TAG_LIMITS, 1, 4]),
            Err(DecodeError::Invalid)
        );
        let dup = [FORMAT_V2, TAG_LIMITS, 2, 1, 1, 0, 0, 0, 1, 1, 0, 0, 0];
        assert_eq!(State::decode(&dup), Err(DecodeError::Invalid));
        let too_many = [FORMAT_V2, TAG_LIMITS, 17];
        assert_eq!(State::decode(&too_many), Err(DecodeError::Invalid));
        // An empty limits state decodes (nothing to check it against).
        assert!(State::decode(&[FORMAT_V2, TAG_LIMITS, 0]).is_ok());
    }

    /// A `RESTORE`d log at 2^64 - 2 and 2^64 - 1 ms once granted without
    /// limit (`ts + window` saturated to `now`). Every time past the horizon,
    /// and every count no limit reaches, is refused.
    #[test]
    fn states_beyond_the_horizon_or_any_limit_are_refused() {
        let forged =
            State::SlidingExact(ExactLog::from_entries(&[(u64::MAX - 1, 1), (u64::MAX, 1)]));
        assert_eq!(
            State::decode(&forged.to_bytes()),
            Err(DecodeError::BeyondHorizon)
        );
        let at = |ms: u64| {
            [
                State::TokenBucket(TokenBucketState::new(PICO, ms)),
                State::FixedWindow(FixedWindowState {
                    start_ms: ms,
                    count: 1,
                }),
                State::SlidingExact(ExactLog::from_entries(&[(ms, 1)])),
                State::SlidingApprox(SlidingApproxState {
                    start_ms: ms,
                    prev: 1,
                    cur: 1,
                }),
            ]
        };
        for s in at(HORIZON_MS) {
            assert_eq!(State::decode(&s.to_bytes()), Ok(s.clone()), "{s:?}");
            // Nested in a limits state, the same.
            let limits = State::Limits(
                LimitsState::new(vec![LimitEntry {
                    name: None,
                    state: Some(s),
                }])
                .expect("valid"),
            );
            assert!(State::decode(&limits.to_bytes()).is_ok());
        }
        for s in at(HORIZON_MS + 1) {
            assert_eq!(
                State::decode(&s.to_bytes()),
                Err(DecodeError::BeyondHorizon),
                "{s:?}"
            );
            let limits = State::Limits(
                LimitsState::new(vec![LimitEntry {
                    name: None,
                    state: Some(s),
                }])
                .expect("valid"),
            );
            assert_eq!(
                State::decode(&limits.to_bytes()),
                Err(DecodeError::BeyondHorizon)
            );
        }
        let over = MAX_COUNT + 1;
        for s in [
            State::TokenBucket(TokenBucketState::new(u128::from(over) * PICO, 0)),
            State::FixedWindow(FixedWindowState {
                start_ms: 0,
                count: over,
            }),
            State::SlidingExact(ExactLog::from_entries(&[(5, over)])),
            State::SlidingApprox(SlidingApproxState {
                start_ms: 0,
                prev: 0,
                cur: over,
            }),
        ] {
            assert_eq!(State::decode(&s.to_bytes()), Err(DecodeError::Invalid));
        }
    }

    #[test]
    fn a_state_fits_a_32_byte_allocation() {
        assert!(std::mem::size_of::<State>() <= 32);
    }

    #[test]
    fn every_state_round_trips() {
        for s in samples() {
            assert_eq!(State::decode(&s.to_bytes()), Ok(s.clone()));
        }
    }

    #[test]
    fn unknown_versions_and_kinds_are_refused() {
        let mut bytes = samples()[0].to_bytes();
        bytes[0] = 4;
        assert_eq!(State::decode(&bytes), Err(DecodeError::UnknownFormat(4)));
        bytes[0] = FORMAT_V1;
        bytes[1] = 99;
        assert_eq!(State::decode(&bytes), Err(DecodeError::UnknownKind(99)));
    }

    #[test]
    fn every_truncation_is_refused() {
        for s in samples() {
            let bytes = s.to_bytes();
            for len in 0..bytes.len() {
                assert!(State::decode(&bytes[..len]).is_err(), "{s:?} cut at {len}");
            }
            let mut longer = bytes.clone();
            longer.push(0);
            assert!(State::decode(&longer).is_err());
        }
    }

    #[test]
    fn overlong_varints_are_refused() {
        let mut bytes = vec![FORMAT_V1, TAG_FIXED_WINDOW];
        bytes.extend([0xff; 19]);
        bytes.push(0x7f);
        assert_eq!(State::decode(&bytes), Err(DecodeError::Invalid));
    }

    #[test]
    fn inline_and_heap_encodings_agree() {
        // Sixteen full buckets do not fit the inline buffer: the heap takes over.
        let big = State::Limits(
            LimitsState::new(
                (0..16)
                    .map(|i| LimitEntry {
                        name: Some(i),
                        state: Some(State::TokenBucket(TokenBucketState::new(
                            u128::MAX >> 30,
                            u64::MAX,
                        ))),
                    })
                    .collect(),
            )
            .expect("valid"),
        );
        assert!(big.to_bytes().len() > 96);
        for s in samples().into_iter().chain([big]) {
            assert_eq!(s.encoded().as_slice(), s.to_bytes().as_slice());
        }
    }

    proptest! {
        #[test]
        fn decoding_any_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            let _ = State::decode(&bytes);
        }
    }
}
