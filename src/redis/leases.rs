//! `RL.ACQUIRE`, `RL.RELEASE`, `RL.RENEW`: concurrency leases.
//!
//! Parse, read the clock once, run the pure step of `limiter::leases` on the
//! stored state, store and replicate the result (the whole state, with the
//! key's absolute expiry: the last lease's), reply. A lease taken by
//! `RL.LIMITS … CONCURRENCY` lives inside that key's limits state; release
//! and renew find it there.

use redis_module::{Context, RedisError, RedisResult, RedisValue};

use super::command::{
    apply_error, bytes, commit, fields, is_resp3, reply_fields, reply_lease, Argv, RawString,
};
use super::datatype::LimiterKey;
use super::{clock, config, info};
use crate::limiter::leases::{self, Changed, Granted, LeaseError, LeaseState};
use crate::limiter::state::Kind;
use crate::limiter::{ApplyError, Decision, State};
use rl_grammar::Algorithm;

/// What the lease commands work on.
const LEASES: Kind = Kind::Algorithm(Algorithm::Concurrency);

fn wrong_kind(stored: &State) -> RedisError {
    apply_error(
        ApplyError::WrongKind {
            stored: stored.kind(),
            called: LEASES,
        },
        LEASES,
    )
}

/// `ERR lease 'x' is already held: …`
fn lease_error(e: LeaseError) -> RedisError {
    match e {
        LeaseError::AlreadyHeld(id) => RedisError::String(format!(
            "ERR lease '{}' is already held: renew it with RL.RENEW, or release it first",
            rl_grammar::shown(&id)
        )),
    }
}

/// `RL.ACQUIRE key limit ttl [ID id] [COST n]`
pub fn acquire(ctx: &Context, argv: Argv) -> RedisResult {
    let (key, call) = key_and_words(&argv, rl_grammar::parse_acquire)?;
    call.quota
        .check_max_leases(config::max_leases())
        .map_err(RedisError::String)?;

    let now = clock::now_ms();
    let mut lk = LimiterKey::open(ctx, key);
    let held = lk.state()?;
    let stored = match held.as_deref() {
        None => None,
        Some(State::Leases(s)) => Some(s),
        Some(other) => return Err(wrong_kind(other)),
    };
    let out = leases::acquire(stored, &call.quota, now, call.cost, call.id).map_err(lease_error)?;
    drop(held);
    if let Some(state) = out.new_state {
        let reset = state.last_expiry().map_or(0, |t| t.saturating_sub(now));
        commit(ctx, &mut lk, key, State::Leases(state), now, reset, None)?;
    }
    drop(lk);
    info::ACQUIRE.record(out.decision.allowed());
    reply_acquired(ctx, &out.decision, out.lease.as_ref());
    Ok(RedisValue::NoReply)
}

/// The key and the words after it, or the usage error of `parse` when the
/// call has no key.
fn key_and_words<'a, T>(
    argv: &Argv<'a>,
    parse: fn(&[&'a [u8]]) -> Result<T, rl_grammar::LeaseArgError>,
) -> Result<(RawString, T), RedisError> {
    let refused = |e: rl_grammar::LeaseArgError| RedisError::String(e.into());
    match argv.args() {
        [_, key, rest @ ..] => {
            let words: Vec<&[u8]> = rest.iter().map(|&a| bytes(a)).collect();
            Ok((*key, parse(&words).map_err(refused)?))
        }
        _ => Err(parse(&[])
            .err()
            .map_or(RedisError::Str("ERR wrong number of arguments"), refused)),
    }
}

/// `RL.RELEASE key id`
pub fn release(ctx: &Context, argv: Argv) -> RedisResult {
    let (key, id) = key_and_words(&argv, rl_grammar::parse_release)?;
    let done = change(ctx, key, |s, now| leases::release(s, id, now))?;
    info::RELEASE.record(done);
    Ok(RedisValue::Integer(i64::from(done)))
}

/// `RL.RENEW key id ttl`
pub fn renew(ctx: &Context, argv: Argv) -> RedisResult {
    let (key, (id, ttl_ms)) = key_and_words(&argv, rl_grammar::parse_renew)?;
    let done = change(ctx, key, |s, now| leases::renew(s, id, ttl_ms, now))?;
    info::RENEW.record(done);
    Ok(RedisValue::Integer(i64::from(done)))
}

/// Runs a release or renewal on the leases a key holds: an `RL.ACQUIRE`
/// key's, or those of the `CONCURRENCY` limit of an `RL.LIMITS` key.
/// Stores and replicates what changed; returns whether the lease was held.
fn change(
    ctx: &Context,
    key: RawString,
    step: impl Fn(Option<&LeaseState>, u64) -> Changed,
) -> Result<bool, RedisError> {
    let now = clock::now_ms();
    let mut lk = LimiterKey::open(ctx, key);
    // An `RL.LIMITS` key's expiry, kept (read before the state is borrowed).
    let kept = lk.expires_at().unwrap_or(now);
    let held = lk.state()?;
    let (done, next, at) = match held.as_deref() {
        None => return Ok(false),
        Some(State::Leases(s)) => {
            let out = step(Some(s), now);
            // The key lives as long as its last lease.
            let at = out
                .new_state
                .as_ref()
                .and_then(LeaseState::last_expiry)
                .unwrap_or(now);
            (out.done, out.new_state.map(State::Leases), at)
        }
        Some(State::Limits(limits)) => {
            let Some((pos, stored)) = limits.leases() else {
                return Ok(false);
            };
            let out = step(Some(stored), now);
            // The other limits' resets depend on quotas this call does not
            // know: the key keeps its expiry, or outlives a renewed lease.
            let at = out
                .new_state
                .as_ref()
                .and_then(LeaseState::last_expiry)
                .map_or(kept, |t| t.max(kept));
            let next = out
                .new_state
                .map(|s| State::Limits(limits.with_leases(pos, s)));
            (out.done, next, at)
        }
        Some(other) => return Err(wrong_kind(other)),
    };
    drop(held);
    if let Some(state) = next {
        commit(ctx, &mut lk, key, state, now, at.saturating_sub(now), None)?;
    }
    Ok(done)
}

/// `RL.ACQUIRE`'s reply: the five fields, `lease`, `expires_at_ms`.
fn reply_acquired(ctx: &Context, d: &Decision, lease: Option<&Granted>) {
    let resp3 = is_resp3(ctx);
    reply_fields(ctx, resp3, &fields(d), 2);
    reply_lease(ctx, resp3, lease, true);
}
