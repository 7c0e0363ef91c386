//! `EXACT`: every grant's time (grants in the same millisecond merged),
//! counting the ones inside the trailing window `(now - window, now]`. It
//! never over- or under-grants.

use super::log::{Entries, ExactLog, LogWriter};
use crate::limiter::codec::{read_varint, DecodeError};
use crate::limiter::decision::{Decision, Outcome, Retry};
use rl_grammar::{WindowQuota, MAX_COUNT};

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

/// The entries that left the window at the head of a log.
#[derive(Clone, Copy, Default)]
pub(super) struct Gone {
    entries: u32,
    units: u64,
}

/// The oldest entry still in the window, and where it ends in the packed
/// entries.
#[derive(Clone, Copy)]
pub(super) struct FirstLive {
    ts: u64,
    count: u64,
    /// Where the entry after it starts.
    end: usize,
}

/// Walks the head of `log` up to the first entry `live` keeps (entries leave
/// oldest first): what left, that entry, the units still in the window (the
/// log's total minus those that left), and the entries after it.
pub(super) fn split_at_first_live(
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
pub(super) fn append(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limiter::sliding::approx::{step_approx, SlidingApproxState};
    use proptest::prelude::*;

    fn exact(log: &mut Option<ExactLog>, q: &WindowQuota, now: u64, cost: u64) -> Decision {
        let out = step_exact(log.as_ref(), q, now, cost).expect("log decodes");
        if out.new_state.is_some() {
            *log = out.new_state;
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

    }
}
