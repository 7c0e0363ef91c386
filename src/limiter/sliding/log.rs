//! The `EXACT` log's one allocation: its layout, and how it is built and read.

use crate::limiter::codec::{read_varint, write_varint, DecodeError, Scratch, Sink, HORIZON_MS};
use crate::limiter::thin::ThinBytes;
use rl_grammar::MAX_COUNT;
use std::ptr::NonNull;

/// A compact log of `(time_ms, count)` entries, oldest first, times strictly
/// increasing and counts above zero.
///
/// One allocation (a thin pointer: a key's value can hold it directly) holds
/// a 24-byte summary (newest time, total count, offset of the newest entry,
/// entry count; little endian) and the packed entries, so a call
/// needs neither a full walk nor a re-encode: it walks only the entries that
/// left the window (each does so once), copies the rest as bytes and writes
/// the new entry.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ExactLog {
    /// summary, then varint(first time) varint(count), varint(delta)
    /// varint(count) ...; `None` for an empty log.
    bytes: Option<ThinBytes>,
}

/// Bytes of the summary before the packed entries.
const SUMMARY: usize = 24;

impl ExactLog {
    pub fn from_entries(entries: &[(u64, u64)]) -> Self {
        let mut out = LogWriter::default();
        for &(ts, count) in entries {
            out.push(ts, count);
        }
        out.finish()
    }

    fn all_bytes(&self) -> &[u8] {
        self.bytes.as_deref().unwrap_or_default()
    }

    fn summary_u32(&self, at: usize) -> u32 {
        self.all_bytes()
            .get(at..at + 4)
            .and_then(|b| b.try_into().ok())
            .map_or(0, u32::from_le_bytes)
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entry_count() as usize
    }

    pub(super) fn entry_count(&self) -> u32 {
        self.summary_u32(20)
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_none()
    }

    /// The packed entries (stored as they are in RDB and replication payloads).
    pub fn packed(&self) -> &[u8] {
        self.all_bytes().get(SUMMARY..).unwrap_or_default()
    }

    fn summary_u64(&self, at: usize) -> u64 {
        self.all_bytes()
            .get(at..at + 8)
            .and_then(|b| b.try_into().ok())
            .map_or(0, u64::from_le_bytes)
    }

    /// The newest entry's time (`None`: an empty log).
    pub fn newest(&self) -> Option<u64> {
        (!self.is_empty()).then(|| self.summary_u64(0))
    }

    /// The units of every entry.
    pub fn total(&self) -> u64 {
        self.summary_u64(8)
    }

    /// Where the newest entry starts in [`Self::packed`].
    pub(super) fn newest_offset(&self) -> usize {
        self.summary_u32(16) as usize
    }

    /// Checks and adopts packed bytes: well-formed varints, increasing times
    /// up to [`HORIZON_MS`], counts from 1 to `MAX_COUNT`, and no more than
    /// `MAX_COUNT` units in all (no limit holds more).
    pub fn from_packed(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut out = LogWriter::default();
        let mut it = Entries::new(bytes);
        loop {
            let at = it.offset();
            let Some(e) = it.next() else { break };
            let (ts, count) = e?;
            // Times past the horizon and counts no limit reaches are forged:
            // near u64::MAX, `ts + window` saturates and nothing would count.
            if ts > HORIZON_MS {
                return Err(DecodeError::BeyondHorizon);
            }
            if count > MAX_COUNT || out.total.saturating_add(count) > MAX_COUNT {
                return Err(DecodeError::Invalid);
            }
            out.len = out.len.checked_add(1).ok_or(DecodeError::Invalid)?;
            out.total += count;
            out.newest = ts;
            out.newest_at = at;
            out.prev = ts;
        }
        out.out.put(bytes);
        Ok(out.finish())
    }

    pub fn entries(&self) -> Result<Vec<(u64, u64)>, DecodeError> {
        self.iter().collect()
    }

    /// The entries, decoded as they are read (no allocation).
    pub fn iter(&self) -> Entries<'_> {
        Entries::new(self.packed())
    }

    /// Heap bytes held, for `MEMORY USAGE`.
    pub fn heap_size(&self) -> usize {
        self.bytes.as_ref().map_or(0, ThinBytes::allocated)
    }

    /// The log's one allocation, given up (`None`: an empty log, which has
    /// none); see [`ExactLog::from_raw`].
    pub fn into_raw(self) -> Option<NonNull<u8>> {
        self.bytes.map(ThinBytes::into_raw)
    }

    /// # Safety
    /// `ptr` must come from [`ExactLog::into_raw`] and be taken back once
    /// (or, wrapped in `ManuallyDrop`, only borrowed while it lives).
    pub unsafe fn from_raw(ptr: NonNull<u8>) -> Self {
        // SAFETY: the contract above.
        ExactLog {
            bytes: Some(unsafe { ThinBytes::from_raw(ptr) }),
        }
    }
}

/// Builds a log: entries pushed one by one or copied packed, the summary
/// kept on the way, written once into one exactly sized allocation.
pub(super) struct LogWriter {
    out: Scratch,
    len: u32,
    total: u64,
    newest: u64,
    /// Offset of the newest entry in the packed entries.
    newest_at: usize,
    /// Time of the last entry written (deltas are from it).
    prev: u64,
}

impl Default for LogWriter {
    fn default() -> Self {
        let mut out = Scratch::default();
        out.put(&[0; SUMMARY]);
        Self {
            out,
            len: 0,
            total: 0,
            newest: 0,
            newest_at: 0,
            prev: 0,
        }
    }
}

impl LogWriter {
    /// Appends an entry at `ts` (after every entry written so far).
    pub(super) fn push(&mut self, ts: u64, count: u64) {
        self.newest_at = self.out.len() - SUMMARY;
        write_varint(&mut self.out, u128::from(ts - self.prev));
        write_varint(&mut self.out, u128::from(count));
        self.prev = ts;
        self.newest = ts;
        self.total = self.total.saturating_add(count);
        self.len = self.len.saturating_add(1);
    }

    /// Appends `entries` entries already packed (their first delta is from
    /// the last entry written), holding `units` units, the last at `last`.
    pub(super) fn copy(&mut self, packed: &[u8], entries: u32, units: u64, last: u64) {
        if entries == 0 {
            return;
        }
        self.out.put(packed);
        self.prev = last;
        self.newest = last;
        self.total = self.total.saturating_add(units);
        self.len = self.len.saturating_add(entries);
    }

    pub(super) fn finish(self) -> ExactLog {
        if self.len == 0 {
            return ExactLog::default();
        }
        let Some(mut bytes) = ThinBytes::copy_of(self.out.as_slice()) else {
            std::alloc::handle_alloc_error(std::alloc::Layout::new::<[u8; SUMMARY]>());
        };
        let newest_at = u32::try_from(self.newest_at).unwrap_or(u32::MAX);
        let summary = [
            &self.newest.to_le_bytes()[..],
            &self.total.to_le_bytes()[..],
            &newest_at.to_le_bytes()[..],
            &self.len.to_le_bytes()[..],
        ];
        let mut at = 0;
        for part in summary {
            if let Some(dst) = bytes.get_mut(at..at + part.len()) {
                dst.copy_from_slice(part);
            }
            at += part.len();
        }
        ExactLog { bytes: Some(bytes) }
    }
}

/// Decodes `(time_ms, count)` entries from packed bytes, checking as it goes.
pub struct Entries<'a> {
    bytes: &'a [u8],
    pos: usize,
    last: u64,
    first: bool,
}

impl<'a> Entries<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self {
            bytes,
            pos: 0,
            last: 0,
            first: true,
        }
    }

    /// Where the next entry starts.
    pub(super) fn offset(&self) -> usize {
        self.pos
    }
}

impl Iterator for Entries<'_> {
    type Item = Result<(u64, u64), DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.bytes.len() {
            return None;
        }
        let mut field = || {
            u64::try_from(read_varint(self.bytes, &mut self.pos)?).map_err(|_| DecodeError::Invalid)
        };
        let entry = field()
            .and_then(|delta| Ok((delta, field()?)))
            .and_then(|(delta, count)| {
                if count == 0 || (!self.first && delta == 0) {
                    return Err(DecodeError::Invalid);
                }
                let ts = self.last.checked_add(delta).ok_or(DecodeError::Invalid)?;
                Ok((ts, count))
            });
        match entry {
            Ok((ts, count)) => {
                self.last = ts;
                self.first = false;
                Some(Ok((ts, count)))
            }
            Err(e) => {
                // Stop after an error: the rest cannot be trusted.
                self.pos = self.bytes.len();
                Some(Err(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corrupt_logs_are_refused() {
        assert_eq!(ExactLog::from_packed(&[]).map(|l| l.len()), Ok(0));
        // count 0
        assert_eq!(ExactLog::from_packed(&[5, 0]), Err(DecodeError::Invalid));
        // second entry at the same time
        assert_eq!(
            ExactLog::from_packed(&[5, 1, 0, 1]),
            Err(DecodeError::Invalid)
        );
        // truncated varint
        assert_eq!(
            ExactLog::from_packed(&[5, 0x80]),
            Err(DecodeError::Truncated)
        );
    }
}
