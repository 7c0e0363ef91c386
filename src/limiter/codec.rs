//! The bytes every stored state is written in: LEB128 varints, the sinks
//! they are written to, the errors a decoder reports and the time horizon it
//! checks. It depends on nothing else in the module, so the states, the
//! `EXACT` log and the replication delta all build on it.

use std::fmt;

/// No stored time may lie beyond this instant: 10000-01-01T00:00:00Z in ms
/// since the epoch, far beyond any real clock. A state stamped later is
/// forged or damaged; the algorithms' arithmetic is only proven below it, so
/// every decoder refuses it (a state merely ahead of the server's clock loads
/// and falls under the time rule, see `limiter::dispatch::settle`).
pub const HORIZON_MS: u64 = 253_402_300_800_000;

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
    /// A time beyond [`HORIZON_MS`] (the year 10000).
    BeyondHorizon,
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
            DecodeError::BeyondHorizon => {
                write!(f, "limiter state has a time beyond the year 10000")
            }
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

/// A fixed buffer large enough for every single-algorithm state but an
/// `EXACT` log (format, tag and at most three varints: 19 + 10 + 10 bytes),
/// and for limits states of a few such limits.
#[derive(Clone, Copy)]
pub struct InlineBuf {
    bytes: [u8; 96],
    len: usize,
    /// A write did not fit: the contents are incomplete.
    overflowed: bool,
}

impl Default for InlineBuf {
    fn default() -> Self {
        Self {
            bytes: [0; 96],
            len: 0,
            overflowed: false,
        }
    }
}

impl Sink for InlineBuf {
    fn put(&mut self, bytes: &[u8]) {
        // A write that does not fit is dropped and remembered, never a panic.
        match self.bytes.get_mut(self.len..self.len + bytes.len()) {
            Some(dst) if !self.overflowed => {
                dst.copy_from_slice(bytes);
                self.len += bytes.len();
            }
            _ => self.overflowed = true,
        }
    }
}

/// An encoded state, inline or on the heap.
pub enum Payload {
    Inline(InlineBuf),
    Heap(Vec<u8>),
}

impl Payload {
    /// The buffer as a payload, unless a write did not fit it.
    pub fn inline(buf: InlineBuf) -> Option<Payload> {
        (!buf.overflowed).then_some(Payload::Inline(buf))
    }

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

/// A write buffer on the stack that spills to the heap for long logs, so the
/// only allocation is the final, exactly sized one.
pub(crate) struct Scratch {
    stack: [u8; 256],
    len: usize,
    heap: Vec<u8>,
}

impl Default for Scratch {
    fn default() -> Self {
        Self {
            stack: [0; 256],
            len: 0,
            heap: Vec::new(),
        }
    }
}

impl Sink for Scratch {
    fn put(&mut self, bytes: &[u8]) {
        if self.heap.is_empty() {
            if let Some(dst) = self.stack.get_mut(self.len..self.len + bytes.len()) {
                dst.copy_from_slice(bytes);
                self.len += bytes.len();
                return;
            }
            self.heap
                .extend_from_slice(self.stack.get(..self.len).unwrap_or_default());
        }
        self.heap.extend_from_slice(bytes);
    }
}

impl Scratch {
    /// Bytes written so far.
    pub(crate) fn len(&self) -> usize {
        if self.heap.is_empty() {
            self.len
        } else {
            self.heap.len()
        }
    }

    pub(crate) fn as_slice(&self) -> &[u8] {
        if self.heap.is_empty() {
            self.stack.get(..self.len).unwrap_or_default()
        } else {
            &self.heap
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
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
