//! Several limits on one key, decided all or nothing (`RL.LIMITS`).
//!
//! [`combine`] is a pure function over the single-algorithm steps: every
//! limit is evaluated against its stored state, the call is granted only if
//! every enforced (non-shadow) limit grants its cost, and only then does any
//! limit consume. A denied call consumes nothing: it returns no new state, so
//! nothing is written, dirtied or replicated and no limit's quota is burnt by
//! another's denial (the one exception: states the time rule settles, see
//! `super::settle`, are stored unconsumed).
//!
//! Stored states are matched to the call's limits by name (a 32-bit hash of
//! `NAME`) or, for unnamed limits, by position; a limit whose algorithm
//! changed starts fresh, and stored limits the call does not name are dropped
//! when the call writes.

use super::decision::{Decision, Retry};
use super::state::State;
use super::{apply, ApplyError, Quota};

/// One stored limit: its name's hash (`None`: matched by position) and its
/// state (`None`: untouched, i.e. full).
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
    /// unique, at most [`rl_grammar::MAX_LIMITS`] entries.
    pub fn new(entries: Vec<LimitEntry>) -> Result<Self, super::state::DecodeError> {
        use super::state::DecodeError::Invalid;
        if entries.len() > rl_grammar::MAX_LIMITS {
            return Err(Invalid);
        }
        for (i, e) in entries.iter().enumerate() {
            if matches!(e.state, Some(State::Limits(_))) {
                return Err(Invalid);
            }
            let later = entries.get(i + 1..).unwrap_or_default();
            if e.name.is_some() && later.iter().any(|o| o.name == e.name) {
                return Err(Invalid);
            }
        }
        Ok(Self {
            entries: entries.into_boxed_slice(),
        })
    }

    pub fn entries(&self) -> &[LimitEntry] {
        &self.entries
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
    fn matching(&self, position: usize, limit: &Limit) -> Option<&State> {
        let entry = match limit.name {
            Some(h) => self.entries.iter().find(|e| e.name == Some(h)),
            None => self.entries.get(position).filter(|e| e.name.is_none()),
        }?;
        entry
            .state
            .as_ref()
            .filter(|s| s.kind() == super::state::Kind::Algorithm(limit.quota.algorithm()))
    }
}

/// One limit of a call, as the glue resolved it from the grammar's spec.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limit {
    pub name: Option<u32>,
    pub quota: Quota,
    /// Effective cost (the spec's `COST`, else the call's); negative: refund.
    pub cost: i64,
    /// Observed, never denies.
    pub shadow: bool,
}

/// The answer to one `RL.LIMITS` call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LimitsOutcome {
    pub allowed: bool,
    /// Position of the binding limit.
    pub binding: usize,
    /// One decision per limit, in the call's order.
    pub decisions: Vec<Decision>,
    /// What to store; `None`: write nothing (denied, or every cost 0).
    pub new_state: Option<LimitsState>,
}

impl LimitsOutcome {
    /// The reply's top-level fields: the binding limit's, with the call's
    /// verdict (granted calls report no wait, even when the binding limit is
    /// a shadow that would have denied).
    pub fn summary(&self) -> Decision {
        let d = self
            .decisions
            .get(self.binding)
            .copied()
            .unwrap_or(Decision {
                limit: 0,
                remaining: 0,
                retry: Retry::Now,
                reset_after_ms: 0,
            });
        if self.allowed {
            Decision {
                retry: Retry::Now,
                ..d
            }
        } else {
            d
        }
    }

    /// The key's TTL: the longest reset of its limits.
    pub fn reset_after_ms(&self) -> u64 {
        self.decisions
            .iter()
            .map(|d| d.reset_after_ms)
            .max()
            .unwrap_or(0)
    }
}

/// One limit's evaluation: what it decides and what it would store.
struct Evaluated<'a> {
    prior: Option<&'a State>,
    decision: Decision,
    new_state: Option<State>,
}

/// One `RL.LIMITS` call on the state a key holds (`None`: no key).
pub fn combine(
    stored: Option<&LimitsState>,
    limits: &[Limit],
    now_ms: u64,
) -> Result<LimitsOutcome, ApplyError> {
    let mut evaluated = Vec::with_capacity(limits.len());
    for (i, limit) in limits.iter().enumerate() {
        let prior = stored.and_then(|s| s.matching(i, limit));
        let out = apply(prior, &limit.quota, now_ms, limit.cost)?;
        let mut e = Evaluated {
            prior,
            decision: out.decision,
            new_state: out.new_state,
        };
        if limit.shadow && !e.decision.allowed() && e.decision.remaining > 0 {
            // A shadow limit consumes like an enforced one, but never below
            // empty: it takes what is left and still reports its denial.
            let rest = apply(prior, &limit.quota, now_ms, to_i64(e.decision.remaining))?;
            e.decision = Decision {
                retry: e.decision.retry,
                ..rest.decision
            };
            e.new_state = rest.new_state;
        }
        evaluated.push(e);
    }

    let enforced = |i: &usize| limits.get(*i).is_some_and(|l| !l.shadow);
    let allowed = evaluated
        .iter()
        .enumerate()
        .all(|(i, e)| !enforced(&i) || e.decision.allowed());
    let writes = limits.iter().any(|l| l.cost != 0);

    if !allowed {
        // Nothing is consumed: every limit reports its own verdict on the
        // untouched state, and keeps only what the time rule settled.
        for (limit, e) in limits.iter().zip(evaluated.iter_mut()) {
            let untouched = apply(e.prior, &limit.quota, now_ms, 0)?;
            if e.new_state.is_some() {
                e.decision = Decision {
                    retry: e.decision.retry,
                    ..untouched.decision
                };
            }
            e.new_state = untouched.new_state;
        }
    }
    let decisions: Vec<Decision> = evaluated.iter().map(|e| e.decision).collect();
    let binding = binding(limits, &decisions);
    // A state the time rule settled (see `apply`) is stored even by a call
    // that otherwise writes nothing, so the key's TTL follows.
    let settled = evaluated.iter().any(|e| e.new_state.is_some());
    let new_state = ((allowed && writes) || settled).then(|| LimitsState {
        entries: limits
            .iter()
            .zip(evaluated)
            .map(|(limit, e)| LimitEntry {
                name: limit.name,
                state: e.new_state.or_else(|| e.prior.cloned()),
            })
            .collect(),
    });
    Ok(LimitsOutcome {
        allowed,
        binding,
        decisions,
        new_state,
    })
}

/// The limit that decides the call. Denied: the denying enforced limit with
/// the longest wait ("never" beats any wait). Allowed: the enforced limit
/// with the fewest remaining units (ties: the later reset). With only shadow
/// limits, the same rules over them say which would have bound. Further ties:
/// the first in the call.
fn binding(limits: &[Limit], decisions: &[Decision]) -> usize {
    let any_enforced = limits.iter().any(|l| !l.shadow);
    let candidates = || {
        limits
            .iter()
            .zip(decisions)
            .enumerate()
            .filter(move |(_, (l, _))| !any_enforced || !l.shadow)
            .map(|(i, (_, d))| (i, d))
    };
    let wait = |d: &Decision| match d.retry {
        Retry::Now => None,
        Retry::After(ms) => Some(u128::from(ms)),
        Retry::Never => Some(u128::MAX),
    };
    let mut best: Option<(usize, u128)> = None;
    for (i, d) in candidates() {
        if let Some(w) = wait(d) {
            if best.is_none_or(|(_, bw)| w > bw) {
                best = Some((i, w));
            }
        }
    }
    if let Some((i, _)) = best {
        return i;
    }
    let mut best: Option<(usize, &Decision)> = None;
    for (i, d) in candidates() {
        let better = best.is_none_or(|(_, b)| {
            d.remaining < b.remaining
                || (d.remaining == b.remaining && d.reset_after_ms > b.reset_after_ms)
        });
        if better {
            best = Some((i, d));
        }
    }
    best.map_or(0, |(i, _)| i)
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}
