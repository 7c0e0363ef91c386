//! The replication delta of a granted `EXACT` call: bytes that do not grow
//! with the log, which a follower applies to its own copy.

use super::exact::{append, split_at_first_live};
use super::log::ExactLog;
use crate::limiter::codec::{DecodeError, HORIZON_MS};
use rl_grammar::MAX_COUNT;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limiter::sliding::exact::step_exact;
    use proptest::prelude::*;
    use rl_grammar::WindowQuota;

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
}
