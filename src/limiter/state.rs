//! The state a limiter key holds, and its versioned binary encoding.
//!
//! One encoding serves RDB, `DUMP`/`RESTORE`, AOF and the replication
//! payload. Layout: a format byte ([`FORMAT_V1`]), an algorithm tag, then the
//! fields as LEB128 varints (the `EXACT` log as its entry count and packed
//! entries). Decoding
//! checks everything and refuses, never panics, on bad input.

use std::fmt;

use super::fixed_window::FixedWindowState;
use super::sliding_window::{ExactLog, SlidingApproxState};
use super::token_bucket::TokenBucketState;

/// The only encoding this build writes and reads.
pub const FORMAT_V1: u8 = 1;

const TAG_TOKEN_BUCKET: u8 = 1;
const TAG_FIXED_WINDOW: u8 = 2;
const TAG_SLIDING_EXACT: u8 = 3;
const TAG_SLIDING_APPROX: u8 = 4;

/// Which algorithm a key belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    TokenBucket,
    FixedWindow,
    SlidingExact,
    SlidingApprox,
}

impl Kind {
    /// How users call it, for error messages.
    pub fn command(self) -> &'static str {
        match self {
            Kind::TokenBucket => "RL.TOKENBUCKET",
            Kind::FixedWindow => "RL.FIXEDWINDOW",
            Kind::SlidingExact => "RL.SLIDING EXACT",
            Kind::SlidingApprox => "RL.SLIDING APPROX",
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
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// The payload ends early.
    Truncated,
    /// A format version this build does not know (written by a newer one).
    UnknownFormat(u8),
    /// An algorithm tag this build does not know.
    UnknownKind(u8),
    /// Well-formed bytes describing an impossible state, or trailing bytes.
    Invalid,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Truncated => write!(f, "limiter state is truncated"),
            DecodeError::UnknownFormat(v) => {
                write!(f, "limiter state has unknown encoding version {v}")
            }
            DecodeError::UnknownKind(k) => write!(f, "limiter state has unknown algorithm {k}"),
            DecodeError::Invalid => write!(f, "limiter state is corrupt"),
        }
    }
}

impl State {
    pub fn kind(&self) -> Kind {
        match self {
            State::TokenBucket(_) => Kind::TokenBucket,
            State::FixedWindow(_) => Kind::FixedWindow,
            State::SlidingExact(_) => Kind::SlidingExact,
            State::SlidingApprox(_) => Kind::SlidingApprox,
        }
    }

    /// Appends the encoding to `out`.
    pub fn encode<S: Sink>(&self, out: &mut S) {
        out.put(&[FORMAT_V1]);
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
                out.put(log.packed());
            }
            State::SlidingApprox(s) => {
                out.put(&[TAG_SLIDING_APPROX]);
                write_varint(out, u128::from(s.start_ms));
                write_varint(out, u128::from(s.prev));
                write_varint(out, u128::from(s.cur));
            }
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
        let mut buf = InlineBuf::default();
        self.encode(&mut buf);
        Payload::Inline(buf)
    }

    pub fn decode(bytes: &[u8]) -> Result<State, DecodeError> {
        let (&format, rest) = bytes.split_first().ok_or(DecodeError::Truncated)?;
        if format != FORMAT_V1 {
            return Err(DecodeError::UnknownFormat(format));
        }
        let (&tag, body) = rest.split_first().ok_or(DecodeError::Truncated)?;
        let mut pos = 0;
        let u64_field = |pos: &mut usize| -> Result<u64, DecodeError> {
            u64::try_from(read_varint(body, pos)?).map_err(|_| DecodeError::Invalid)
        };
        let state = match tag {
            TAG_TOKEN_BUCKET => {
                let level = read_varint(body, &mut pos)?;
                let at_ms = u64_field(&mut pos)?;
                State::TokenBucket(TokenBucketState::new(level, at_ms))
            }
            TAG_FIXED_WINDOW => {
                let start_ms = u64_field(&mut pos)?;
                let count = u64_field(&mut pos)?;
                State::FixedWindow(FixedWindowState { start_ms, count })
            }
            TAG_SLIDING_EXACT => {
                let n = read_varint(body, &mut pos)?;
                let log = ExactLog::from_packed(body.get(pos..).unwrap_or_default())?;
                if log.len() as u128 != n {
                    return Err(DecodeError::Truncated);
                }
                pos = body.len();
                State::SlidingExact(log)
            }
            TAG_SLIDING_APPROX => {
                let start_ms = u64_field(&mut pos)?;
                let prev = u64_field(&mut pos)?;
                let cur = u64_field(&mut pos)?;
                State::SlidingApprox(SlidingApproxState {
                    start_ms,
                    prev,
                    cur,
                })
            }
            other => return Err(DecodeError::UnknownKind(other)),
        };
        if pos != body.len() {
            return Err(DecodeError::Invalid);
        }
        Ok(state)
    }

    /// Bytes held on the heap besides the state itself, for `MEMORY USAGE`.
    pub fn heap_size(&self) -> usize {
        match self {
            State::SlidingExact(log) => log.heap_size(),
            _ => 0,
        }
    }
}

/// Where encodings are written.
pub trait Sink {
    fn put(&mut self, bytes: &[u8]);
}

impl Sink for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// A fixed buffer large enough for every state but an `EXACT` log: format,
/// tag and at most three varints (19 + 10 + 10 bytes).
#[derive(Clone, Copy)]
pub struct InlineBuf {
    bytes: [u8; 48],
    len: usize,
}

impl Default for InlineBuf {
    fn default() -> Self {
        Self {
            bytes: [0; 48],
            len: 0,
        }
    }
}

impl Sink for InlineBuf {
    fn put(&mut self, bytes: &[u8]) {
        // Only fixed-size states are written here, which always fit; a write
        // that would not fit is dropped rather than panicking (and the
        // decoder would then refuse the payload).
        if let Some(dst) = self.bytes.get_mut(self.len..self.len + bytes.len()) {
            dst.copy_from_slice(bytes);
            self.len += bytes.len();
        }
    }
}

/// An encoded state, inline or on the heap.
pub enum Payload {
    Inline(InlineBuf),
    Heap(Vec<u8>),
}

impl Payload {
    pub fn as_slice(&self) -> &[u8] {
        match self {
            Payload::Inline(b) => b.bytes.get(..b.len).unwrap_or_default(),
            Payload::Heap(v) => v,
        }
    }
}

/// LEB128: seven bits a byte, low bits first.
pub fn write_varint<S: Sink>(out: &mut S, mut v: u128) {
    let mut buf = [0u8; 19];
    let mut n = 0;
    for slot in buf.iter_mut() {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        n += 1;
        if v == 0 {
            *slot = byte;
            break;
        }
        *slot = byte | 0x80;
    }
    out.put(buf.get(..n).unwrap_or_default());
}

/// Reads one varint at `*pos`, advancing it. Refuses overlong encodings.
pub fn read_varint(bytes: &[u8], pos: &mut usize) -> Result<u128, DecodeError> {
    let mut v: u128 = 0;
    let mut shift = 0u32;
    loop {
        let &byte = bytes.get(*pos).ok_or(DecodeError::Truncated)?;
        *pos += 1;
        let bits = u128::from(byte & 0x7f);
        if shift >= 128 || (shift > 121 && bits >> (128 - shift) != 0) {
            return Err(DecodeError::Invalid);
        }
        v |= bits << shift;
        if byte & 0x80 == 0 {
            return Ok(v);
        }
        shift += 7;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn samples() -> Vec<State> {
        vec![
            State::TokenBucket(TokenBucketState::new(
                u128::from(u64::MAX) * 1_000_000_000_000,
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
                prev: u64::MAX,
                cur: 0,
            }),
        ]
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
        bytes[0] = 2;
        assert_eq!(State::decode(&bytes), Err(DecodeError::UnknownFormat(2)));
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
        for s in samples() {
            assert_eq!(s.encoded().as_slice(), s.to_bytes().as_slice());
        }
    }

    proptest! {
        #[test]
        fn decoding_any_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            let _ = State::decode(&bytes);
        }

        #[test]
        fn varints_round_trip(v in any::<u128>()) {
            let mut out = Vec::new();
            write_varint(&mut out, v);
            let mut pos = 0;
            prop_assert_eq!(read_varint(&out, &mut pos), Ok(v));
            prop_assert_eq!(pos, out.len());
        }
    }
}
