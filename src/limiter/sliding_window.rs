//! Sliding windows: an exact log, and the two-counter approximation.
//!
//! `EXACT` keeps every grant's time (grants in the same millisecond merged)
//! and counts the ones inside the trailing window `(now - window, now]`. It
//! never over- or under-grants. The log is packed as varints of the time
//! deltas and counts, a few bytes per entry.
//!
//! `APPROX` keeps the counts of the previous and the current aligned window
//! and weighs the previous one by how much of it the trailing window still
//! covers. It is O(1) in memory. Bound: it never grants more than `limit`
//! inside one aligned window, and never more than `2 × limit` inside any
//! trailing window (the worst case is a previous window whose traffic all came
//! at its very end). For evenly spread traffic the error is small.

use super::decision::{sat_u64, Decision, Outcome, Retry};
use super::quota::WindowQuota;
use super::quota::MAX_COUNT;
use super::state::{read_varint, write_varint, DecodeError, Sink, HORIZON_MS};
use super::thin::ThinBytes;
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

    fn entry_count(&self) -> u32 {
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
    fn newest_offset(&self) -> usize {
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
struct LogWriter {
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
    fn push(&mut self, ts: u64, count: u64) {
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
    fn copy(&mut self, packed: &[u8], entries: u32, units: u64, last: u64) {
        if entries == 0 {
            return;
        }
        self.out.put(packed);
        self.prev = last;
        self.newest = last;
        self.total = self.total.saturating_add(units);
        self.len = self.len.saturating_add(entries);
    }

    fn finish(self) -> ExactLog {
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
    fn offset(&self) -> usize {
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

/// One `EXACT` call on the log's entries.
///
/// `max_entries` is not checked here: the glue refuses quotas whose log could
/// grow past the configured size before calling.
pub fn step_exact(
    prev: Option<&ExactLog>,
    quota: &WindowQuota,
    now_ms: u64,
    cost: u64,
) -> Result<Outcome<ExactLog>, DecodeError> {
    let w = quota.window_ms();
    let empty = ExactLog::default();
    let log = prev.unwrap_or(&empty);
    let newest = log.newest();
    // A log stamped ahead of the clock (within the time rule) is read at
    // its newest time; waits are reported from the clock.
    let t = newest.map_or(now_ms, |n| now_ms.max(n));
    let skew = t - now_ms;
    // Entries at or before t - w have left the trailing window. States come
    // from RDB/RESTORE payloads too, so times must saturate.
    let live = |ts: u64| ts.saturating_add(w) > t;
    // Entries leave oldest first: walk those that left, up to the first
    // still in the window; the units in it are the total minus theirs.
    let (gone, first, used, mut it) = split_at_first_live(log, live)?;
    // The newest entry is the last to leave the window.
    let reset = |newest: Option<u64>| {
        newest
            .filter(|&ts| live(ts))
            .map_or(0, |ts| (ts.saturating_add(w) - t).saturating_add(skew))
    };
    let decision = |used: u64, retry: Retry, newest: Option<u64>| Decision {
        limit: quota.limit(),
        remaining: quota.limit().saturating_sub(used),
        retry,
        reset_after_ms: reset(newest),
    };
    if cost > quota.limit() {
        return Ok(Outcome {
            decision: decision(used, Retry::Never, newest),
            new_state: None,
        });
    }
    let total = used.saturating_add(cost);
    if total <= quota.limit() {
        if cost == 0 {
            return Ok(Outcome {
                decision: decision(used, Retry::Now, newest),
                new_state: None,
            });
        }
        return Ok(Outcome {
            decision: decision(total, Retry::Now, Some(t)),
            new_state: Some(append(log, first, gone, used, t, cost)?),
        });
    }
    // Wait until enough of the oldest entries have left the window.
    let excess = total - quota.limit();
    let mut wait = 0;
    if let Some(f) = first {
        let mut freed = f.count;
        let mut at = f.ts;
        while freed < excess {
            let Some(e) = it.next() else { break };
            let (ts, c) = e?;
            freed = freed.saturating_add(c);
            at = ts;
        }
        wait = (at.saturating_add(w) - t).saturating_add(skew);
    }
    Ok(Outcome {
        decision: decision(used, Retry::After(wait), newest),
        new_state: None,
    })
}

/// What a granted `EXACT` call changed in its log, for replicas and the AOF
/// (bytes that do not grow with the log): entries older than `keep_from`
/// left, and `units` were added at `ts` (merged into the newest entry when it
/// is at `ts`). `len` and `total` describe the result, so a follower can tell
/// it reached the same log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExactDelta {
    pub keep_from: u64,
    pub ts: u64,
    pub units: u64,
    pub len: u64,
    pub total: u64,
}

impl ExactDelta {
    /// The delta from `before` to `after`, a grant of `units` at the newest
    /// time of `after`; `None` when `after` is not such a grant (a state the
    /// time rule settled, a refund: those go whole).
    pub fn between(before: &ExactLog, after: &ExactLog, units: u64, now_ms: u64) -> Option<Self> {
        let ts = after.newest()?;
        if units == 0 || before.newest().is_some_and(|n| n > now_ms || n > ts) {
            return None;
        }
        let keep_from = after.iter().next()?.ok()?.0;
        Some(Self {
            keep_from,
            ts,
            units,
            len: after.len() as u64,
            total: after.total(),
        })
    }

    /// Applies the delta to the follower's copy of the log, refusing one
    /// that does not lead to the log it describes.
    pub fn apply(&self, log: &ExactLog) -> Result<ExactLog, DecodeError> {
        if self.ts > HORIZON_MS {
            return Err(DecodeError::BeyondHorizon);
        }
        if self.units == 0 || self.units > MAX_COUNT || self.ts < self.keep_from {
            return Err(DecodeError::Invalid);
        }
        let (gone, first, used, _) = split_at_first_live(log, |ts| ts >= self.keep_from)?;
        if first.is_some() && log.newest().is_some_and(|n| n > self.ts) {
            return Err(DecodeError::Invalid);
        }
        if used.saturating_add(self.units) > MAX_COUNT {
            return Err(DecodeError::Invalid);
        }
        let out = append(log, first, gone, used, self.ts, self.units)?;
        if out.len() as u64 != self.len || out.total() != self.total {
            return Err(DecodeError::Invalid);
        }
        Ok(out)
    }
}

/// The entries that left the window at the head of a log.
#[derive(Clone, Copy, Default)]
struct Gone {
    entries: u32,
    units: u64,
}

/// The oldest entry still in the window, and where it ends in the packed
/// entries.
#[derive(Clone, Copy)]
struct FirstLive {
    ts: u64,
    count: u64,
    /// Where the entry after it starts.
    end: usize,
}

/// Walks the head of `log` up to the first entry `live` keeps (entries leave
/// oldest first): what left, that entry, the units still in the window (the
/// log's total minus those that left), and the entries after it.
fn split_at_first_live(
    log: &ExactLog,
    live: impl Fn(u64) -> bool,
) -> Result<(Gone, Option<FirstLive>, u64, Entries<'_>), DecodeError> {
    let mut it = log.iter();
    let mut gone = Gone::default();
    while let Some(e) = it.next() {
        let (ts, count) = e?;
        if live(ts) {
            let first = FirstLive {
                ts,
                count,
                end: it.offset(),
            };
            let used = log.total().saturating_sub(gone.units);
            return Ok((gone, Some(first), used, it));
        }
        gone.entries = gone.entries.saturating_add(1);
        gone.units = gone.units.saturating_add(count);
    }
    Ok((gone, None, 0, it))
}

/// The entries of `log` from `first` on (those before it left the window),
/// plus `cost` units at `t` (merged into the newest entry when it is at `t`).
/// The first kept entry is rewritten with its absolute time, the newest one
/// when merged; the entries between are copied as bytes.
fn append(
    log: &ExactLog,
    first: Option<FirstLive>,
    gone: Gone,
    used: u64,
    t: u64,
    cost: u64,
) -> Result<ExactLog, DecodeError> {
    let mut out = LogWriter::default();
    let Some(f) = first else {
        out.push(t, cost);
        return Ok(out.finish());
    };
    let packed = log.packed();
    let newest = log.newest().unwrap_or(f.ts);
    let kept = log.entry_count().saturating_sub(gone.entries);
    if kept <= 1 {
        // The first kept entry is the newest.
        if f.ts == t {
            out.push(t, f.count.saturating_add(cost));
        } else {
            out.push(f.ts, f.count);
            out.push(t, cost);
        }
        return Ok(out.finish());
    }
    out.push(f.ts, f.count);
    let newest_at = log.newest_offset();
    if newest == t {
        // Copy up to the newest entry, then rewrite it with its new count.
        let mut pos = newest_at;
        let delta =
            u64::try_from(read_varint(packed, &mut pos)?).map_err(|_| DecodeError::Invalid)?;
        let count =
            u64::try_from(read_varint(packed, &mut pos)?).map_err(|_| DecodeError::Invalid)?;
        let middle = packed.get(f.end..newest_at).ok_or(DecodeError::Invalid)?;
        let middle_units = used.saturating_sub(f.count).saturating_sub(count);
        out.copy(middle, kept - 2, middle_units, newest - delta);
        out.push(newest, count.saturating_add(cost));
    } else {
        let rest = packed.get(f.end..).ok_or(DecodeError::Invalid)?;
        out.copy(rest, kept - 1, used.saturating_sub(f.count), newest);
        out.push(t, cost);
    }
    Ok(out.finish())
}

/// The time rule for `EXACT`: entries stamped after `now_ms` (the clock
/// stepped back, or the state came from a server whose clock ran ahead) are
/// merged into one entry at `now_ms`, so every unit leaves the window within
/// one window. `None`: the log is within the rule.
pub fn settle_exact(log: &ExactLog, now_ms: u64) -> Result<Option<ExactLog>, DecodeError> {
    match log.newest() {
        Some(newest) if newest > now_ms => {}
        _ => return Ok(None),
    }
    let mut entries = Vec::with_capacity(log.len());
    let mut ahead = 0u64;
    for e in log.iter() {
        let (ts, c) = e?;
        if ts > now_ms {
            ahead = ahead.saturating_add(c);
        } else {
            entries.push((ts, c));
        }
    }
    match entries.last_mut() {
        Some(last) if last.0 == now_ms => last.1 = last.1.saturating_add(ahead).min(MAX_COUNT),
        _ => entries.push((now_ms, ahead.min(MAX_COUNT))),
    }
    Ok(Some(ExactLog::from_entries(&entries)))
}

/// An `EXACT` refund: takes `units` back from the newest entries still in
/// the window (the grants a reserve-then-refund caller just made), never below
/// zero used. Entries that left the window are dropped as on every write.
pub fn refund_exact(
    prev: Option<&ExactLog>,
    quota: &WindowQuota,
    now_ms: u64,
    units: u64,
) -> Result<Outcome<ExactLog>, DecodeError> {
    let w = quota.window_ms();
    let empty = ExactLog::default();
    let log = prev.unwrap_or(&empty);
    let mut live = Vec::with_capacity(log.len());
    for e in log.iter() {
        live.push(e?);
    }
    let t = live.last().map_or(now_ms, |&(ts, _)| now_ms.max(ts));
    live.retain(|&(ts, _)| ts.saturating_add(w) > t);
    let mut left = units;
    while left > 0 {
        let Some(last) = live.last_mut() else { break };
        let take = left.min(last.1);
        last.1 -= take;
        left -= take;
        if last.1 == 0 {
            live.pop();
        }
    }
    let used = live.iter().fold(0u64, |a, e| a.saturating_add(e.1));
    let reset = live.last().map_or(0, |&(ts, _)| {
        (ts.saturating_add(w) - t).saturating_add(t - now_ms)
    });
    Ok(Outcome {
        decision: Decision {
            limit: quota.limit(),
            remaining: quota.limit().saturating_sub(used),
            retry: Retry::Now,
            reset_after_ms: reset,
        },
        new_state: Some(ExactLog::from_entries(&live)),
    })
}

/// A write buffer on the stack that spills to the heap for long logs, so the
/// only allocation is the final, exactly sized one.
struct Scratch {
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
    fn len(&self) -> usize {
        if self.heap.is_empty() {
            self.len
        } else {
            self.heap.len()
        }
    }

    fn as_slice(&self) -> &[u8] {
        if self.heap.is_empty() {
            self.stack.get(..self.len).unwrap_or_default()
        } else {
            &self.heap
        }
    }
}

/// The stored state of an `APPROX` limiter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlidingApproxState {
    /// Start of the current aligned window.
    pub start_ms: u64,
    /// Units counted in the window before it.
    pub prev: u64,
    /// Units counted in the current window.
    pub cur: u64,
}

/// One `APPROX` call.
pub fn step_approx(
    prev: Option<SlidingApproxState>,
    quota: &WindowQuota,
    now_ms: u64,
    cost: u64,
) -> Outcome<SlidingApproxState> {
    let w = quota.window_ms();
    let s = roll(prev, w, now_ms);
    let t = now_ms.max(s.start_ms);
    let skew = t - now_ms;
    let elapsed = t - s.start_ms;
    let (w128, limit) = (u128::from(w), u128::from(quota.limit()));
    // The weighted count, times w, so everything stays in integers.
    let weighted = |prev: u64, cur: u64| {
        u128::from(prev) * (w128 - u128::from(elapsed)) + u128::from(cur) * w128
    };
    let remaining =
        |prev: u64, cur: u64| sat_u64((limit * w128).saturating_sub(weighted(prev, cur)) / w128);
    // elapsed < w, so these never underflow; written from `elapsed` rather
    // than `start_ms` so a stored start near u64::MAX cannot overflow.
    let reset = |st: &SlidingApproxState| {
        if st.cur > 0 {
            (2 * w - elapsed).saturating_add(skew)
        } else if st.prev > 0 {
            (w - elapsed).saturating_add(skew)
        } else {
            0
        }
    };
    let decision = |st: &SlidingApproxState, retry| Decision {
        limit: quota.limit(),
        remaining: remaining(st.prev, st.cur),
        retry,
        reset_after_ms: reset(st),
    };
    if cost > quota.limit() {
        return Outcome {
            decision: decision(&s, Retry::Never),
            new_state: None,
        };
    }
    if weighted(s.prev, s.cur) + u128::from(cost) * w128 <= limit * w128 {
        let next = SlidingApproxState {
            cur: s.cur + cost,
            ..s
        };
        return Outcome {
            decision: decision(&next, Retry::Now),
            new_state: (cost > 0).then_some(next),
        };
    }
    let wait = approx_wait(&s, quota, elapsed, cost).saturating_add(skew);
    Outcome {
        decision: decision(&s, Retry::After(wait)),
        new_state: None,
    }
}

/// An `APPROX` refund: takes `units` off the current window's count, then
/// off the previous one's, never below zero.
pub fn refund_approx(
    prev: Option<SlidingApproxState>,
    quota: &WindowQuota,
    now_ms: u64,
    units: u64,
) -> Outcome<SlidingApproxState> {
    let mut s = roll(prev, quota.window_ms(), now_ms);
    let from_cur = units.min(s.cur);
    s.cur -= from_cur;
    s.prev = s.prev.saturating_sub(units - from_cur);
    Outcome {
        decision: step_approx(Some(s), quota, now_ms, 0).decision,
        new_state: Some(s),
    }
}

/// The time rule for `APPROX`: counters whose window starts after `now_ms`
/// are read as the current aligned window's, so they are gone within two
/// windows (the approximation's own full reset). `None`: within the rule.
pub fn settle_approx(
    s: &SlidingApproxState,
    quota: &WindowQuota,
    now_ms: u64,
) -> Option<SlidingApproxState> {
    let w = quota.window_ms();
    (s.start_ms > now_ms).then(|| SlidingApproxState {
        start_ms: now_ms - now_ms % w,
        ..*s
    })
}

/// The stored counters as of the aligned window holding `now_ms`: the
/// current count becomes the previous one when a window passes. A stored
/// window at or after the aligned one (the clock went backwards, or the
/// window changed) is kept as it is.
fn roll(prev: Option<SlidingApproxState>, w: u64, now_ms: u64) -> SlidingApproxState {
    let aligned = now_ms - now_ms % w;
    match prev {
        Some(s) if s.start_ms >= aligned => s,
        Some(s) if s.start_ms.saturating_add(w) == aligned => SlidingApproxState {
            start_ms: aligned,
            prev: s.cur,
            cur: 0,
        },
        _ => SlidingApproxState {
            start_ms: aligned,
            prev: 0,
            cur: 0,
        },
    }
}

/// Milliseconds from `elapsed` (into the current window) until a call of
/// `cost` fits, with no other calls. The weighted count never rises over time,
/// so the first moment found is the answer.
fn approx_wait(s: &SlidingApproxState, quota: &WindowQuota, elapsed: u64, cost: u64) -> u64 {
    let w = quota.window_ms();
    let (w128, limit, cost) = (u128::from(w), u128::from(quota.limit()), u128::from(cost));
    // Still in this window: prev * (w - e) <= (limit - cur - cost) * w.
    let cur = u128::from(s.cur);
    if s.prev > 0 && cur + cost <= limit {
        let room = (limit - cur - cost) * w128 / u128::from(s.prev);
        let e = w128.saturating_sub(room);
        if e < w128 {
            return sat_u64(e.max(u128::from(elapsed)) - u128::from(elapsed));
        }
    }
    // In the next window the current count becomes the previous one.
    let to_next = w - elapsed;
    if cur == 0 {
        return to_next;
    }
    let room = (limit - cost) * w128 / cur;
    let e = w128.saturating_sub(room);
    sat_u64(u128::from(to_next) + e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn exact(log: &mut Option<ExactLog>, q: &WindowQuota, now: u64, cost: u64) -> Decision {
        let out = step_exact(log.as_ref(), q, now, cost).expect("log decodes");
        if out.new_state.is_some() {
            *log = out.new_state;
        }
        out.decision
    }

    fn approx(
        st: &mut Option<SlidingApproxState>,
        q: &WindowQuota,
        now: u64,
        cost: u64,
    ) -> Decision {
        let out = step_approx(*st, q, now, cost);
        if out.new_state.is_some() {
            *st = out.new_state;
        }
        out.decision
    }

    #[test]
    fn exact_log_frees_units_as_they_leave_the_window() {
        let q = WindowQuota::new(3, 1_000).expect("valid");
        let mut log = None;
        assert!(exact(&mut log, &q, 100, 1).allowed());
        assert!(exact(&mut log, &q, 400, 2).allowed());
        let d = exact(&mut log, &q, 500, 1);
        assert_eq!(d.retry, Retry::After(600));
        assert_eq!(d.reset_after_ms, 900);
        assert!(!exact(&mut log, &q, 1_099, 1).allowed());
        let d = exact(&mut log, &q, 1_100, 1);
        assert!(d.allowed());
        assert_eq!(d.remaining, 0);
        // Needs both units of the entry at 400.
        assert_eq!(exact(&mut log, &q, 1_100, 2).retry, Retry::After(300));
    }

    #[test]
    fn exact_log_merges_grants_of_the_same_millisecond() {
        let q = WindowQuota::new(100, 1_000).expect("valid");
        let mut log = None;
        for _ in 0..10 {
            assert!(exact(&mut log, &q, 7, 1).allowed());
        }
        let log = log.expect("stored");
        assert_eq!(log.entries().expect("decodes"), vec![(7, 10)]);
    }

    proptest! {
        /// A follower applying the deltas of granted calls reaches the very
        /// log the master holds, however entries leave the window and merge.
        #[test]
        fn deltas_rebuild_the_masters_log(
            limit in 1u64..40,
            window in 1u64..300,
            calls in prop::collection::vec((0u64..40, 1u64..6), 1..120),
        ) {
            let q = WindowQuota::new(limit, window).expect("valid");
            let mut master: Option<ExactLog> = None;
            let mut follower: Option<ExactLog> = None;
            let mut now = 1_000;
            for (gap, cost) in calls {
                now += gap;
                let out = step_exact(master.as_ref(), &q, now, cost).expect("decodes");
                let Some(next) = out.new_state else { continue };
                match master.as_ref().and_then(|m| ExactDelta::between(m, &next, cost, now)) {
                    Some(delta) => {
                        let f = follower.as_ref().expect("the follower has the log");
                        follower = Some(delta.apply(f).expect("applies"));
                    }
                    None => follower = Some(next.clone()),
                }
                prop_assert_eq!(follower.as_ref(), Some(&next));
                master = Some(next);
            }
        }
    }

    #[test]
    fn a_delta_that_does_not_fit_the_log_is_refused() {
        let log = ExactLog::from_entries(&[(100, 2), (200, 3)]);
        let ok = ExactDelta {
            keep_from: 200,
            ts: 300,
            units: 1,
            len: 2,
            total: 4,
        };
        assert_eq!(
            ok.apply(&log).map(|l| l.entries().expect("decodes")),
            Ok(vec![(200, 3), (300, 1)])
        );
        for bad in [
            ExactDelta { len: 3, ..ok },
            ExactDelta { total: 5, ..ok },
            ExactDelta {
                ts: 150,
                keep_from: 100,
                ..ok
            },
            ExactDelta { units: 0, ..ok },
            ExactDelta { ts: u64::MAX, ..ok },
        ] {
            assert!(bad.apply(&log).is_err(), "{bad:?}");
        }
    }

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

    #[test]
    fn approx_weighs_the_previous_window() {
        let q = WindowQuota::new(10, 1_000).expect("valid");
        let mut st = None;
        assert!(approx(&mut st, &q, 500, 10).allowed());
        // At 1_250, 75% of the previous window still counts: 7.5 used.
        let d = approx(&mut st, &q, 1_250, 0);
        assert_eq!(d.remaining, 2);
        assert!(approx(&mut st, &q, 1_250, 2).allowed());
        // 7.5 + 2 = 9.5; one more needs the weight to fall to 7 -> at 1_300.
        assert_eq!(approx(&mut st, &q, 1_250, 1).retry, Retry::After(50));
        assert!(!approx(&mut st, &q, 1_299, 1).allowed());
        assert!(approx(&mut st, &q, 1_300, 1).allowed());
    }

    #[test]
    fn long_logs_spill_to_the_heap_intact() {
        let q = WindowQuota::new(1_000, 1_000_000).expect("valid");
        let mut log = None;
        for i in 0..300u64 {
            assert!(exact(&mut log, &q, 1_000 + i * 1_000, 1).allowed());
        }
        let log = log.expect("stored");
        assert!(log.packed().len() > 256);
        let want: Vec<(u64, u64)> = (0..300u64).map(|i| (1_000 + i * 1_000, 1)).collect();
        assert_eq!(log.entries().expect("decodes"), want);
        assert_eq!(log.len(), 300);
    }

    #[test]
    fn an_exact_refund_removes_the_newest_grants_first() {
        let q = WindowQuota::new(10, 1_000).expect("valid");
        let mut log = None;
        assert!(exact(&mut log, &q, 100, 3).allowed());
        assert!(exact(&mut log, &q, 200, 4).allowed());
        let out = refund_exact(log.as_ref(), &q, 300, 5).expect("decodes");
        assert!(out.decision.allowed());
        assert_eq!(out.decision.remaining, 8);
        let log = out.new_state.expect("stored");
        assert_eq!(log.entries().expect("decodes"), vec![(100, 2)]);
        assert_eq!(out.decision.reset_after_ms, 800);
        // More than was used: an empty log, never negative.
        let out = refund_exact(Some(&log), &q, 300, 50).expect("decodes");
        assert_eq!(
            (out.decision.remaining, out.decision.reset_after_ms),
            (10, 0)
        );
        assert!(out.new_state.expect("stored").is_empty());
    }

    #[test]
    fn an_approx_refund_empties_the_current_window_first() {
        let q = WindowQuota::new(10, 1_000).expect("valid");
        let mut st = None;
        assert!(approx(&mut st, &q, 500, 6).allowed());
        assert!(approx(&mut st, &q, 1_000, 4).allowed());
        let out = refund_approx(st, &q, 1_000, 5);
        assert_eq!(
            out.new_state,
            Some(SlidingApproxState {
                start_ms: 1_000,
                prev: 5,
                cur: 0
            })
        );
        assert_eq!(out.decision.remaining, 5);
    }

    /// Found by the `apply` fuzz target: a stored window start near u64::MAX
    /// (a forged RESTORE payload) overflowed the reset time.
    #[test]
    fn states_from_the_far_future_do_not_overflow() {
        let q = WindowQuota::new(5, 1_500).expect("valid");
        let now = 1_764_000_000_000;
        for (prev, cur) in [(0, 1), (1, 0), (9, 9)] {
            let st = SlidingApproxState {
                start_ms: u64::MAX - 1_000,
                prev,
                cur,
            };
            for cost in [0, 1, 5, 6] {
                let out = step_approx(Some(st), &q, now, cost);
                assert!(out.decision.remaining <= 5);
            }
        }
        let _ = step_approx(None, &q, u64::MAX, 1);
        let log = ExactLog::from_entries(&[(u64::MAX - 10, 3), (u64::MAX - 1, 2)]);
        for cost in [0, 1, 5, 6] {
            let out = step_exact(Some(&log), &q, now, cost).expect("decodes");
            assert!(out.decision.remaining <= 5);
        }
    }

    proptest! {
        /// EXACT grants exactly what a plain list of grant times grants.
        #[test]
        fn exact_matches_a_reference_log(
            limit in 1u64..15,
            window in 1u64..3_000,
            calls in prop::collection::vec((0u64..800, 0u64..18), 1..80),
        ) {
            let q = WindowQuota::new(limit, window).expect("valid");
            let mut log = None;
            let mut model: Vec<(u64, u64)> = Vec::new();
            let mut now = 0;
            for (gap, cost) in calls {
                now += gap;
                model.retain(|&(ts, _)| ts + window > now);
                let used: u64 = model.iter().map(|e| e.1).sum();
                let d = exact(&mut log, &q, now, cost);
                prop_assert_eq!(d.allowed(), used + cost <= limit);
                if d.allowed() && cost > 0 {
                    model.push((now, cost));
                }
                let used: u64 = model.iter().map(|e| e.1).sum();
                prop_assert_eq!(d.remaining, limit - used);
                if let Some(l) = &log {
                    // The summary agrees with the entries (a decode rebuilds
                    // it from them), and the live entries are the model's.
                    prop_assert_eq!(&ExactLog::from_packed(l.packed()), &Ok(l.clone()));
                    let entries = l.entries().expect("decodes");
                    let live: Vec<(u64, u64)> = entries.iter().copied().filter(|e| e.0 + window > now).collect();
                    let mut merged: Vec<(u64, u64)> = Vec::new();
                    for &(ts, c) in &model {
                        match merged.last_mut() {
                            Some(m) if m.0 == ts => m.1 += c,
                            _ => merged.push((ts, c)),
                        }
                    }
                    prop_assert_eq!(live, merged);
                }
                if let Retry::After(ms) = d.retry {
                    // After the wait the model has room; one ms earlier it has not.
                    let room_at = |t: u64| model.iter().filter(|e| e.0 + window > t).map(|e| e.1).sum::<u64>() + cost <= limit;
                    prop_assert!(room_at(now + ms));
                    prop_assert!(!room_at(now + ms - 1));
                }
            }
        }

        /// APPROX stays within its documented bound, and its waits are enough.
        #[test]
        fn approx_stays_within_its_bound(
            limit in 1u64..15,
            window in 1u64..3_000,
            calls in prop::collection::vec((0u64..800, 0u64..18), 1..80),
        ) {
            let q = WindowQuota::new(limit, window).expect("valid");
            let mut st = None;
            let mut grants: Vec<(u64, u64)> = Vec::new();
            let mut now = 0;
            for (gap, cost) in calls {
                now += gap;
                let d = approx(&mut st, &q, now, cost);
                if d.allowed() && cost > 0 {
                    grants.push((now, cost));
                }
                if let Retry::After(ms) = d.retry {
                    let probe = step_approx(st, &q, now + ms, cost);
                    prop_assert!(probe.decision.allowed());
                    if ms > 0 {
                        prop_assert!(!step_approx(st, &q, now + ms - 1, cost).decision.allowed());
                    }
                }
                let in_aligned: u64 = grants.iter().filter(|g| g.0 / window == now / window).map(|g| g.1).sum();
                prop_assert!(in_aligned <= limit);
                let trailing: u64 = grants.iter().filter(|g| g.0 + window > now).map(|g| g.1).sum();
                prop_assert!(trailing <= 2 * limit);
            }
        }
    }
}
