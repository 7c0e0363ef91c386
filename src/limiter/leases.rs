//! Concurrency leases: at most `limit` slots held at once.
//!
//! A lease holds `slots` (a call's cost) until it is released, or until its
//! absolute expiry passes, so a holder that dies gives its slots back by
//! itself. A lease whose expiry is at or before `now` is gone: every step
//! ignores it, and every step that writes drops it. Leases are kept sorted
//! by expiry (then id), which makes the encoding canonical, the earliest
//! expiry the first lease and the key's TTL the last one.
//!
//! Lease ids are the caller's (`ID`) or made here from a per-key counter,
//! rendered as decimal text. The counter never goes below `now_ms * 1000`,
//! so ids keep growing even after the key expired and was made anew (unless
//! more than a thousand leases a millisecond were made on it).
//!
//! Absolute expiries also settle the time rule: a clock that steps back
//! keeps every lease held longer (never grants extra); nothing is moved.

use std::collections::HashSet;

use super::codec::{read_varint, write_varint, DecodeError, Sink, HORIZON_MS};
use super::decision::{Decision, Retry};
use rl_grammar::{LeaseQuota, MAX_COUNT, MAX_LEASES_CAP, MAX_LEASE_ID_LEN};

/// One lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    /// 1 to `MAX_LEASE_ID_LEN` bytes.
    pub id: Box<[u8]>,
    /// Gone at this instant (server time, ms since the epoch).
    pub expires_at_ms: u64,
    /// Slots it holds (at least 1).
    pub slots: u64,
}

/// What a lease key holds: its leases and the id counter.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct LeaseState {
    /// The next id to make (see the module's guide).
    next_id: u64,
    /// Sorted by `(expires_at_ms, id)`, ids unique.
    leases: Box<[Lease]>,
}

/// Why a lease step was refused (an error reply, not a denial).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeaseError {
    /// `RL.ACQUIRE … ID id` while a lease of that id is held.
    AlreadyHeld(Box<[u8]>),
}

/// A lease granted by [`acquire`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Granted {
    pub id: Box<[u8]>,
    pub expires_at_ms: u64,
}

/// The answer to an acquire: the five fields, the lease if granted, and
/// what to store (`None`: write nothing).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Acquired {
    pub decision: Decision,
    pub lease: Option<Granted>,
    pub new_state: Option<LeaseState>,
}

/// The answer to a release or a renewal: whether the lease was held (and
/// so released or renewed), and what to store (`None`: write nothing).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Changed {
    pub done: bool,
    pub new_state: Option<LeaseState>,
}

impl LeaseState {
    /// Checks what a decoder built: at most `MAX_LEASES_CAP` leases, ids of
    /// 1 to `MAX_LEASE_ID_LEN` bytes and unique, at least one slot each and
    /// at most `MAX_COUNT` in all, times up to the horizon, sorted.
    pub fn new(next_id: u64, leases: Vec<Lease>) -> Result<Self, DecodeError> {
        use DecodeError::{BeyondHorizon, Invalid};
        if leases.len() as u64 > MAX_LEASES_CAP {
            return Err(Invalid);
        }
        let mut total: u64 = 0;
        let mut ids = HashSet::with_capacity(leases.len());
        for l in &leases {
            if l.expires_at_ms > HORIZON_MS {
                return Err(BeyondHorizon);
            }
            if l.id.is_empty() || l.id.len() > MAX_LEASE_ID_LEN || !ids.insert(&l.id[..]) {
                return Err(Invalid);
            }
            total = total.checked_add(l.slots).ok_or(Invalid)?;
            if l.slots == 0 || total > MAX_COUNT {
                return Err(Invalid);
            }
        }
        if leases.windows(2).any(|w| order(w.first(), w.get(1))) {
            return Err(Invalid);
        }
        Ok(Self {
            next_id,
            leases: leases.into_boxed_slice(),
        })
    }

    /// Every lease, expired or not, earliest expiry first.
    pub fn leases(&self) -> &[Lease] {
        &self.leases
    }

    pub fn next_id(&self) -> u64 {
        self.next_id
    }

    /// The leases still held at `now_ms`.
    pub fn live(&self, now_ms: u64) -> &[Lease] {
        let gone = self.leases.partition_point(|l| l.expires_at_ms <= now_ms);
        self.leases.get(gone..).unwrap_or_default()
    }

    /// Slots held at `now_ms`.
    pub fn held(&self, now_ms: u64) -> u64 {
        self.live(now_ms)
            .iter()
            .fold(0, |sum, l| sum.saturating_add(l.slots))
    }

    /// When the last lease expires (`None`: no lease at all).
    pub fn last_expiry(&self) -> Option<u64> {
        self.leases.last().map(|l| l.expires_at_ms)
    }

    /// Heap bytes held, for `MEMORY USAGE`.
    pub fn heap_size(&self) -> usize {
        self.leases.len() * std::mem::size_of::<Lease>()
            + self.leases.iter().map(|l| l.id.len()).sum::<usize>()
    }

    /// Where lease `id` is among the live leases.
    fn find(&self, now_ms: u64, id: &[u8]) -> Option<usize> {
        self.live(now_ms).iter().position(|l| &*l.id == id)
    }

    /// The live leases, with `f` applied to them, as a new state.
    fn rebuild(&self, now_ms: u64, next_id: u64, f: impl FnOnce(&mut Vec<Lease>)) -> Self {
        let mut leases = self.live(now_ms).to_vec();
        f(&mut leases);
        Self {
            next_id,
            leases: leases.into_boxed_slice(),
        }
    }

    /// The live leases, if any lease expired (else `None`: nothing to drop).
    fn pruned(&self, now_ms: u64) -> Option<Self> {
        (self.live(now_ms).len() != self.leases.len())
            .then(|| self.rebuild(now_ms, self.next_id, |_| {}))
    }
}

/// `true` when `b` sorts before `a` (or equals it): out of order.
fn order(a: Option<&Lease>, b: Option<&Lease>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => (b.expires_at_ms, &b.id) <= (a.expires_at_ms, &a.id),
        _ => false,
    }
}

/// Puts `lease` at its place in the sorted list.
fn insert_sorted(leases: &mut Vec<Lease>, lease: Lease) {
    let at =
        leases.partition_point(|l| (l.expires_at_ms, &l.id) < (lease.expires_at_ms, &lease.id));
    leases.insert(at, lease);
}

/// The five fields for `held` slots after the call at `now_ms`.
fn decision(
    quota: &LeaseQuota,
    held: u64,
    retry: Retry,
    last: Option<u64>,
    now_ms: u64,
) -> Decision {
    Decision {
        limit: quota.limit(),
        remaining: quota.limit().saturating_sub(held),
        retry,
        reset_after_ms: last.map_or(0, |t| t.saturating_sub(now_ms)),
    }
}

/// One acquire: a lease of `cost` slots (at least 1) for `quota.ttl_ms()`,
/// if at most `quota.limit()` slots are then held.
///
/// Denied: `retry_after_ms` is the time until enough leases expire for the
/// same call to fit (for one slot: until the earliest lease expires), -1
/// when `cost` exceeds the limit. `reset_after_ms` is until the last lease
/// expires. A lease id held already is an error ([`LeaseError::AlreadyHeld`]):
/// renewing is `RL.RENEW`'s job, and silently extending someone else's lease
/// would hide a bug. Expired leases are dropped whenever the call writes,
/// and a denied call that finds some writes just that.
pub fn acquire(
    prev: Option<&LeaseState>,
    quota: &LeaseQuota,
    now_ms: u64,
    cost: u64,
    id: Option<&[u8]>,
) -> Result<Acquired, LeaseError> {
    if let (Some(id), Some(s)) = (id, prev) {
        if s.find(now_ms, id).is_some() {
            return Err(LeaseError::AlreadyHeld(id.into()));
        }
    }
    Ok(grant(prev, quota, now_ms, cost, id))
}

/// [`acquire`] with a made id (`CONCURRENCY` in `RL.LIMITS`), which cannot
/// be held already.
pub fn take(prev: Option<&LeaseState>, quota: &LeaseQuota, now_ms: u64, cost: u64) -> Acquired {
    grant(prev, quota, now_ms, cost, None)
}

/// [`acquire`] once a caller's id is known to be free.
fn grant(
    prev: Option<&LeaseState>,
    quota: &LeaseQuota,
    now_ms: u64,
    cost: u64,
    id: Option<&[u8]>,
) -> Acquired {
    let empty = LeaseState::default();
    let s = prev.unwrap_or(&empty);
    let held = s.held(now_ms);
    let last = s.live(now_ms).last().map(|l| l.expires_at_ms);
    let denied = |retry| Acquired {
        decision: decision(quota, held, retry, last, now_ms),
        lease: None,
        new_state: s.pruned(now_ms),
    };
    if cost > quota.limit() {
        return denied(Retry::Never);
    }
    if held.saturating_add(cost) > quota.limit() {
        // Wait until enough slots come back: walk the leases by expiry.
        let mut still = held;
        let mut wait = 0;
        for l in s.live(now_ms) {
            still -= l.slots.min(still);
            wait = l.expires_at_ms - now_ms;
            if still.saturating_add(cost) <= quota.limit() {
                break;
            }
        }
        return denied(Retry::After(wait));
    }

    let floor = now_ms.saturating_mul(1000);
    let mut next = s.next_id.max(floor);
    let lease_id: Box<[u8]> = match id {
        Some(id) => id.into(),
        None => loop {
            let text = next.to_string().into_bytes().into_boxed_slice();
            next = next.saturating_add(1);
            if s.find(now_ms, &text).is_none() {
                break text;
            }
        },
    };
    let expires_at_ms = now_ms.saturating_add(quota.ttl_ms()).min(HORIZON_MS);
    let lease = Lease {
        id: lease_id.clone(),
        expires_at_ms,
        slots: cost,
    };
    let new = s.rebuild(now_ms, next, |v| insert_sorted(v, lease));
    Acquired {
        decision: decision(quota, held + cost, Retry::Now, new.last_expiry(), now_ms),
        lease: Some(Granted {
            id: lease_id,
            expires_at_ms,
        }),
        new_state: Some(new),
    }
}

/// The five fields of a call that takes nothing (`cost 0` in `RL.LIMITS`,
/// or a denied `RL.LIMITS` call reporting this limit untouched).
pub fn observe(prev: Option<&LeaseState>, quota: &LeaseQuota, now_ms: u64) -> Acquired {
    let empty = LeaseState::default();
    let s = prev.unwrap_or(&empty);
    Acquired {
        decision: decision(
            quota,
            s.held(now_ms),
            Retry::Now,
            s.live(now_ms).last().map(|l| l.expires_at_ms),
            now_ms,
        ),
        lease: None,
        new_state: s.pruned(now_ms),
    }
}

/// Frees lease `id`. Releasing one that is unknown, released or expired is
/// not an error: `done` is false.
pub fn release(prev: Option<&LeaseState>, id: &[u8], now_ms: u64) -> Changed {
    change(prev, id, now_ms, |_| None)
}

/// Lease `id` now expires `ttl_ms` from `now_ms` (sooner or later than
/// before). An expired or unknown lease is not renewed: `done` is false.
pub fn renew(prev: Option<&LeaseState>, id: &[u8], ttl_ms: u64, now_ms: u64) -> Changed {
    change(prev, id, now_ms, |mut lease| {
        lease.expires_at_ms = now_ms.saturating_add(ttl_ms).min(HORIZON_MS);
        Some(lease)
    })
}

/// Takes live lease `id` out and puts back what `f` makes of it (`None`:
/// nothing, i.e. released). Not held: `done` is false, and only the
/// expired leases are dropped.
fn change(
    prev: Option<&LeaseState>,
    id: &[u8],
    now_ms: u64,
    f: impl FnOnce(Lease) -> Option<Lease>,
) -> Changed {
    let found = prev.and_then(|s| Some((s, s.find(now_ms, id)?)));
    let Some((s, i)) = found else {
        return Changed {
            done: false,
            new_state: prev.and_then(|s| s.pruned(now_ms)),
        };
    };
    Changed {
        done: true,
        new_state: Some(s.rebuild(now_ms, s.next_id, |v| {
            if i < v.len() {
                if let Some(lease) = f(v.remove(i)) {
                    insert_sorted(v, lease);
                }
            }
        })),
    }
}

/// The encoding's body (after the format byte and tag): the id counter,
/// the lease count, then per lease its id (length, bytes), its expiry as
/// the gap after the previous lease's (the first: after 0) and its slots,
/// all varints.
pub fn encode_leases<S: Sink>(s: &LeaseState, out: &mut S) {
    write_varint(out, u128::from(s.next_id));
    write_varint(out, s.leases.len() as u128);
    let mut prev = 0;
    for l in s.leases.iter() {
        write_varint(out, l.id.len() as u128);
        out.put(&l.id);
        write_varint(out, u128::from(l.expires_at_ms.saturating_sub(prev)));
        write_varint(out, u128::from(l.slots));
        prev = l.expires_at_ms;
    }
}

/// Reads what [`encode_leases`] wrote from `bytes[*pos..]`, advancing
/// `*pos`; checks everything ([`LeaseState::new`]).
pub fn decode_leases(bytes: &[u8], pos: &mut usize) -> Result<LeaseState, DecodeError> {
    let u64_field = |pos: &mut usize| -> Result<u64, DecodeError> {
        u64::try_from(read_varint(bytes, pos)?).map_err(|_| DecodeError::Invalid)
    };
    let next_id = u64_field(pos)?;
    let n = u64_field(pos)?;
    if n > MAX_LEASES_CAP {
        return Err(DecodeError::Invalid);
    }
    // Each lease takes at least 4 bytes: a short count cannot allocate much.
    let mut leases = Vec::with_capacity((n as usize).min(bytes.len() / 4));
    let mut prev: u64 = 0;
    for _ in 0..n {
        let len = u64_field(pos)?;
        if len == 0 || len > MAX_LEASE_ID_LEN as u64 {
            return Err(DecodeError::Invalid);
        }
        let end = pos.checked_add(len as usize).ok_or(DecodeError::Invalid)?;
        let id = bytes.get(*pos..end).ok_or(DecodeError::Truncated)?;
        *pos = end;
        let gap = u64_field(pos)?;
        let expires_at_ms = prev.checked_add(gap).ok_or(DecodeError::BeyondHorizon)?;
        if expires_at_ms > HORIZON_MS {
            return Err(DecodeError::BeyondHorizon);
        }
        let slots = u64_field(pos)?;
        leases.push(Lease {
            id: id.into(),
            expires_at_ms,
            slots,
        });
        prev = expires_at_ms;
    }
    LeaseState::new(next_id, leases)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const T0: u64 = 1_764_000_000_000;

    fn quota(limit: u64, ttl_ms: u64) -> LeaseQuota {
        LeaseQuota::new(limit, ttl_ms).expect("valid")
    }

    fn take(
        s: &mut Option<LeaseState>,
        q: &LeaseQuota,
        now: u64,
        cost: u64,
        id: Option<&str>,
    ) -> Result<Acquired, LeaseError> {
        let out = acquire(s.as_ref(), q, now, cost, id.map(str::as_bytes))?;
        if let Some(n) = &out.new_state {
            *s = Some(n.clone());
        }
        Ok(out)
    }

    fn encoded(s: &LeaseState) -> Vec<u8> {
        let mut out = Vec::new();
        encode_leases(s, &mut out);
        out
    }

    fn decoded(bytes: &[u8]) -> Result<LeaseState, DecodeError> {
        let mut pos = 0;
        let s = decode_leases(bytes, &mut pos)?;
        if pos != bytes.len() {
            return Err(DecodeError::Invalid);
        }
        Ok(s)
    }

    #[test]
    fn three_in_flight_then_the_fourth_waits_for_the_earliest() {
        let q = quota(3, 10_000);
        let mut s = None;
        for (i, now) in [T0, T0 + 100, T0 + 200].into_iter().enumerate() {
            let out = take(&mut s, &q, now, 1, None).expect("ok");
            assert!(out.decision.allowed());
            assert_eq!(out.decision.remaining, 2 - i as u64);
            assert_eq!(out.decision.reset_after_ms, 10_000);
            let lease = out.lease.expect("granted");
            assert_eq!(lease.expires_at_ms, now + 10_000);
        }
        let out = take(&mut s, &q, T0 + 300, 1, None).expect("ok");
        assert_eq!(out.decision.retry, Retry::After(9_700));
        assert_eq!(out.decision.remaining, 0);
        assert_eq!(out.decision.reset_after_ms, 9_900);
        assert_eq!((out.lease, out.new_state), (None, None));
        // Two slots: until the second lease expires.
        let out = take(&mut s, &q, T0 + 300, 2, None).expect("ok");
        assert_eq!(out.decision.retry, Retry::After(9_800));
        // More than the limit: never.
        let out = take(&mut s, &q, T0 + 300, 4, None).expect("ok");
        assert_eq!(out.decision.retry, Retry::Never);
        assert_eq!(out.decision.retry_after_ms(), -1);
        // Waiting exactly retry_after_ms succeeds.
        let out = take(&mut s, &q, T0 + 10_000, 1, None).expect("ok");
        assert!(out.decision.allowed());
        assert_eq!(out.decision.remaining, 0);
        // The expired lease was dropped by that write.
        assert_eq!(s.as_ref().map(|s| s.leases().len()), Some(3));
    }

    #[test]
    fn made_ids_are_decimal_unique_and_keep_growing_after_the_key_is_gone() {
        let q = quota(5, 1_000);
        let mut s = None;
        let a = take(&mut s, &q, T0, 1, None).expect("ok").lease.expect("a");
        let b = take(&mut s, &q, T0, 1, None).expect("ok").lease.expect("b");
        assert_eq!(&*a.id, (T0 * 1000).to_string().as_bytes());
        assert_eq!(&*b.id, (T0 * 1000 + 1).to_string().as_bytes());
        // A caller id that looks like the next made one: the maker skips it.
        let next = (T0 * 1000 + 2).to_string();
        take(&mut s, &q, T0, 1, Some(&next)).expect("ok");
        let c = take(&mut s, &q, T0, 1, None).expect("ok").lease.expect("c");
        assert_eq!(&*c.id, (T0 * 1000 + 3).to_string().as_bytes());
        // A fresh key a millisecond later starts past every earlier id.
        let mut fresh = None;
        let d = take(&mut fresh, &q, T0 + 1, 1, None)
            .expect("ok")
            .lease
            .expect("d");
        assert_eq!(&*d.id, ((T0 + 1) * 1000).to_string().as_bytes());
    }

    #[test]
    fn a_held_id_is_refused_an_expired_or_released_one_is_free_again() {
        let q = quota(5, 1_000);
        let mut s = None;
        take(&mut s, &q, T0, 1, Some("job")).expect("ok");
        assert_eq!(
            take(&mut s, &q, T0 + 999, 1, Some("job")),
            Err(LeaseError::AlreadyHeld(b"job"[..].into()))
        );
        assert!(take(&mut s, &q, T0 + 1_000, 1, Some("job")).is_ok());
        let out = release(s.as_ref(), b"job", T0 + 1_001);
        assert!(out.done);
        s = out.new_state;
        assert!(take(&mut s, &q, T0 + 1_002, 1, Some("job")).is_ok());
    }

    #[test]
    fn release_and_renew_are_idempotent_and_never_revive_an_expired_lease() {
        let q = quota(2, 1_000);
        let mut s = None;
        take(&mut s, &q, T0, 1, Some("a")).expect("ok");
        take(&mut s, &q, T0, 1, Some("b")).expect("ok");
        // Renewed at 900 for 1 s: held until 1_900, "b" is gone at 1_000.
        let r = renew(s.as_ref(), b"a", 1_000, T0 + 900);
        assert!(r.done);
        s = r.new_state;
        let out = take(&mut s, &q, T0 + 1_000, 1, None).expect("ok");
        assert!(out.decision.allowed());
        assert_eq!(out.decision.remaining, 0);
        assert!(!renew(s.as_ref(), b"b", 1_000, T0 + 1_000).done);
        assert!(!release(s.as_ref(), b"b", T0 + 1_000).done);
        let r = release(s.as_ref(), b"a", T0 + 1_000);
        assert!(r.done);
        s = r.new_state;
        let again = release(s.as_ref(), b"a", T0 + 1_000);
        assert_eq!(
            again,
            Changed {
                done: false,
                new_state: None
            }
        );
        assert!(!release(None, b"a", T0).done);
        assert!(!renew(None, b"a", 5, T0).done);
        // Renewing to a shorter ttl is allowed: the lease then ends sooner.
        let ids: Vec<_> = s
            .as_ref()
            .expect("s")
            .live(T0 + 1_000)
            .iter()
            .map(|l| l.id.clone())
            .collect();
        let r = renew(s.as_ref(), &ids[0], 1, T0 + 1_000);
        assert!(r.done);
        assert_eq!(r.new_state.expect("s").held(T0 + 1_001), 0);
    }

    #[test]
    fn a_denied_call_that_finds_expired_leases_drops_them() {
        let q = quota(1, 1_000);
        let mut s = None;
        take(&mut s, &q, T0, 1, Some("old")).expect("ok");
        take(&mut s, &q, T0 + 1_000, 1, Some("new")).expect("ok");
        // "new" is held; "old" already left on that write. Forge a state
        // that still carries an expired lease (as loaded from disk).
        let forged = LeaseState::new(
            0,
            vec![
                Lease {
                    id: b"old"[..].into(),
                    expires_at_ms: T0 + 500,
                    slots: 1,
                },
                Lease {
                    id: b"new"[..].into(),
                    expires_at_ms: T0 + 2_000,
                    slots: 1,
                },
            ],
        )
        .expect("valid");
        let out = acquire(Some(&forged), &q, T0 + 1_000, 1, None).expect("ok");
        assert!(!out.decision.allowed());
        assert_eq!(out.new_state.expect("pruned").leases().len(), 1);
        let out = observe(Some(&forged), &q, T0 + 1_000);
        assert_eq!(out.decision.remaining, 0);
        assert_eq!(out.decision.reset_after_ms, 1_000);
    }

    #[test]
    fn a_clock_that_steps_back_holds_leases_longer_and_never_grants_more() {
        let q = quota(1, 1_000);
        let mut s = None;
        take(&mut s, &q, T0, 1, None).expect("ok");
        let out = take(&mut s, &q, T0 - 60_000, 1, None).expect("ok");
        assert_eq!(out.decision.retry, Retry::After(61_000));
        assert_eq!(out.decision.reset_after_ms, 61_000);
    }

    #[test]
    fn a_lowered_limit_leaves_held_leases_and_denies_until_they_expire() {
        let mut s = None;
        for _ in 0..3 {
            take(&mut s, &quota(3, 1_000), T0, 1, None).expect("ok");
        }
        let out = take(&mut s, &quota(1, 1_000), T0, 1, None).expect("ok");
        assert_eq!(out.decision.remaining, 0);
        assert_eq!(out.decision.retry, Retry::After(1_000));
    }

    /// The bytes of a state: the layout the module writes (golden).
    #[test]
    fn the_encoding_is_stable() {
        let s = LeaseState::new(
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
        .expect("valid");
        let bytes = encoded(&s);
        assert_eq!(
            bytes,
            [172, 2, 2, 1, b'a', 232, 7, 1, 2, b'b', b'c', 200, 1, 2]
        );
        assert_eq!(decoded(&bytes), Ok(s));
        assert_eq!(decoded(&[0, 0]), Ok(LeaseState::default()));
    }

    #[test]
    fn forged_or_damaged_states_are_refused() {
        let lease = |id: &[u8], t: u64, slots: u64| Lease {
            id: id.into(),
            expires_at_ms: t,
            slots,
        };
        for bad in [
            vec![lease(b"", 1, 1)],
            vec![lease(&[b'x'; 65], 1, 1)],
            vec![lease(b"a", 1, 0)],
            vec![lease(b"a", 1, 1), lease(b"a", 2, 1)],
            vec![lease(b"b", 1, 1), lease(b"a", 1, 1)],
            vec![lease(b"a", 1, MAX_COUNT), lease(b"b", 2, 1)],
        ] {
            assert_eq!(
                LeaseState::new(0, bad.clone()),
                Err(DecodeError::Invalid),
                "{bad:?}"
            );
            // The same through the decoder (which checks the same way).
            let s = LeaseState {
                next_id: 0,
                leases: bad.clone().into_boxed_slice(),
            };
            assert!(decoded(&encoded(&s)).is_err(), "{bad:?}");
        }
        // Out of time order (the encoding's gaps cannot even say so).
        assert_eq!(
            LeaseState::new(0, vec![lease(b"a", 2, 1), lease(b"b", 1, 1)]),
            Err(DecodeError::Invalid)
        );
        assert_eq!(
            LeaseState::new(0, vec![lease(b"a", HORIZON_MS + 1, 1)]),
            Err(DecodeError::BeyondHorizon)
        );
        assert!(LeaseState::new(0, vec![lease(b"a", HORIZON_MS, 1)]).is_ok());
        // Too many leases, announced by the count alone.
        let mut many = Vec::new();
        write_varint(&mut many, 0);
        write_varint(&mut many, u128::from(MAX_LEASES_CAP + 1));
        assert_eq!(decoded(&many), Err(DecodeError::Invalid));
        // Every cut of a valid payload is refused.
        let s =
            LeaseState::new(7, vec![lease(b"job", T0, 3), lease(b"k", T0 + 5, 1)]).expect("valid");
        let bytes = encoded(&s);
        for len in 0..bytes.len() {
            assert!(decoded(&bytes[..len]).is_err(), "cut at {len}");
        }
    }

    #[test]
    fn heap_size_counts_leases_and_ids() {
        let s = LeaseState::new(
            0,
            vec![Lease {
                id: b"abcd"[..].into(),
                expires_at_ms: 1,
                slots: 1,
            }],
        )
        .expect("valid");
        assert_eq!(s.heap_size(), std::mem::size_of::<Lease>() + 4);
        assert_eq!(LeaseState::default().heap_size(), 0);
    }

    /// A model of leases: a plain list, no ordering, no counter.
    #[derive(Debug, Clone)]
    enum Op {
        Acquire {
            cost: u64,
            ttl: u64,
            id: Option<u8>,
        },
        Release(u8),
        Renew(u8, u64),
        Advance(u64),
        /// Releases a made id (by its position among the live leases).
        ReleaseMade(usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (1u64..4, 1u64..2_000, prop::option::of(0u8..6))
                .prop_map(|(cost, ttl, id)| Op::Acquire { cost, ttl, id }),
            2 => (0u8..6).prop_map(Op::Release),
            2 => ((0u8..6), 1u64..2_000).prop_map(|(id, ttl)| Op::Renew(id, ttl)),
            3 => (0u64..800).prop_map(Op::Advance),
            1 => (0usize..8).prop_map(Op::ReleaseMade),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Acquire, renew, release and expiry in any order, against a
        /// model that is a plain list of (id, expiry, slots): the same
        /// verdicts, never more than `limit` held, every state round-trips
        /// its encoding, and every slot is back one ttl after the last call.
        #[test]
        fn leases_behave_like_the_model(limit in 1u64..6, ops in prop::collection::vec(op(), 1..60)) {
            let mut now = T0;
            let mut s: Option<LeaseState> = None;
            let mut model: Vec<(Vec<u8>, u64, u64)> = Vec::new();
            let max_ttl = 2_000;
            for op in ops {
                model.retain(|(_, t, _)| *t > now);
                let held: u64 = model.iter().map(|(_, _, n)| n).sum();
                match op {
                    Op::Acquire { cost, ttl, id } => {
                        let q = quota(limit, ttl);
                        let id = id.map(|i| format!("id{i}").into_bytes());
                        let out = acquire(s.as_ref(), &q, now, cost, id.as_deref());
                        let taken = id.as_ref().is_some_and(|i| model.iter().any(|(m, _, _)| m == i));
                        if taken {
                            prop_assert!(out.is_err());
                            continue;
                        }
                        let out = out.expect("not held");
                        let fits = held + cost <= limit;
                        prop_assert_eq!(out.decision.allowed(), fits);
                        if cost > limit {
                            prop_assert_eq!(out.decision.retry, Retry::Never);
                        }
                        if let Retry::After(w) = out.decision.retry {
                            // Waiting that long frees enough (no one else calls).
                            let freed: u64 = model.iter().filter(|(_, t, _)| *t <= now + w).map(|(_, _, n)| n).sum();
                            prop_assert!(held - freed + cost <= limit);
                            prop_assert!(w >= 1);
                        }
                        if let Some(g) = &out.lease {
                            prop_assert_eq!(g.expires_at_ms, now + ttl);
                            model.push((g.id.to_vec(), now + ttl, cost));
                        }
                        if let Some(n) = out.new_state { s = Some(n); }
                    }
                    Op::Release(i) => {
                        let id = format!("id{i}").into_bytes();
                        let out = release(s.as_ref(), &id, now);
                        let was = model.iter().position(|(m, _, _)| *m == id);
                        prop_assert_eq!(out.done, was.is_some());
                        if let Some(p) = was { model.remove(p); }
                        if let Some(n) = out.new_state { s = Some(n); }
                    }
                    Op::ReleaseMade(k) => {
                        let Some((id, _, _)) = model.get(k % model.len().max(1)).cloned() else { continue };
                        let out = release(s.as_ref(), &id, now);
                        prop_assert!(out.done);
                        model.retain(|(m, _, _)| *m != id);
                        if let Some(n) = out.new_state { s = Some(n); }
                    }
                    Op::Renew(i, ttl) => {
                        let id = format!("id{i}").into_bytes();
                        let out = renew(s.as_ref(), &id, ttl, now);
                        let was = model.iter_mut().find(|(m, _, _)| *m == id);
                        prop_assert_eq!(out.done, was.is_some());
                        if let Some(m) = was { m.1 = now + ttl; }
                        if let Some(n) = out.new_state { s = Some(n); }
                    }
                    Op::Advance(ms) => now += ms,
                }
                let st = s.clone().unwrap_or_default();
                model.retain(|(_, t, _)| *t > now);
                let want: u64 = model.iter().map(|(_, _, n)| n).sum();
                prop_assert_eq!(st.held(now), want);
                prop_assert!(st.held(now) <= limit);
                prop_assert_eq!(decoded(&encoded(&st)), Ok(st.clone()));
                // Ids unique among live leases.
                let live: HashSet<_> = st.live(now).iter().map(|l| l.id.clone()).collect();
                prop_assert_eq!(live.len(), st.live(now).len());
            }
            // One ttl after the last call every slot is back.
            let st = s.unwrap_or_default();
            let later = now + max_ttl;
            prop_assert_eq!(st.held(later), 0);
            let out = observe(Some(&st), &quota(limit, 1), later);
            prop_assert_eq!(out.decision.remaining, limit);
            prop_assert_eq!(out.decision.reset_after_ms, 0);
        }

        #[test]
        fn decoding_any_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..96)) {
            let mut pos = 0;
            let _ = decode_leases(&bytes, &mut pos);
        }
    }
}
