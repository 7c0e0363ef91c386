//! `limiter::apply` on any decoded state, any quota the parsers accept, and
//! arbitrary times and costs, over a few consecutive calls.
//!
//! Input layout:
//!   byte 0          command selector (`% 4`, as in the `args` target)
//!   byte 1          n: length of the stored state (0: no key)
//!   byte 2          k: number of calls, `1 + byte % 4`
//!   k * 16 bytes    per call: now_ms (u64 LE), cost (i64 LE; negative: refund)
//!   n bytes         stored state, given to `State::decode`
//!   rest            arguments after the key, separated by 0x00
//!
//! Each call uses the state the previous one stored. Checks: no panic;
//! `remaining <= limit`; `limit` is the quota's; an error is only a kind
//! mismatch (never `Corrupt` for a state that decoded); every state to store
//! survives the RDB round trip (`decode(to_bytes(s)) == Ok(s)`); the time
//! rule: no wait and no reset beyond the quota's full reset time.

#![no_main]

use libfuzzer_sys::fuzz_target;
use redis_ratelimit::limiter::codec::HORIZON_MS;
use redis_ratelimit::limiter::packed::{self, Packed};
use redis_ratelimit::limiter::sliding::delta::ExactDelta;
use redis_ratelimit::limiter::{self, ApplyError, Quota, State};

#[path = "common.rs"]
mod common;

const HEADER: usize = 3;
const STEP: usize = 16;

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

fn quota_limit(q: &Quota) -> u64 {
    match q {
        Quota::TokenBucket(q) => q.capacity(),
        Quota::FixedWindow(q) | Quota::SlidingExact(q) | Quota::SlidingApprox(q) => q.limit(),
        Quota::Concurrency(q) => q.limit(),
    }
}

/// The quota's full reset time: the time rule's bound on every wait.
fn full_reset(q: &Quota) -> u64 {
    match q {
        Quota::TokenBucket(q) => {
            let pico = redis_ratelimit::limiter::token_bucket::PICO;
            let ms = (u128::from(q.capacity()) * pico).div_ceil(u128::from(q.rate_nano()));
            u64::try_from(ms).unwrap_or(u64::MAX)
        }
        Quota::FixedWindow(q) | Quota::SlidingExact(q) => q.window_ms(),
        Quota::SlidingApprox(q) => 2 * q.window_ms(),
        Quota::Concurrency(q) => q.ttl_ms(),
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < HEADER {
        return;
    }
    let selector = data[0];
    let state_len = usize::from(data[1]);
    let steps = 1 + usize::from(data[2] % 4);
    let state_at = HEADER + steps * STEP;
    let args_at = state_at + state_len;
    if data.len() < args_at {
        return;
    }
    let mut stored = if state_len == 0 {
        None
    } else {
        match State::decode(&data[state_at..args_at]) {
            Ok(s) => Some(s),
            Err(_) => return,
        }
    };
    let argv = common::split_args(&data[args_at..]);
    let Some(call) = common::parse_checked(selector, &argv) else {
        return;
    };
    let quota = call.quota;
    for i in 0..steps {
        let at = HEADER + i * STEP;
        // A server clock never passes the horizon the decoder enforces.
        let now_ms = u64_at(data, at) % (HORIZON_MS + 1);
        // Any i64 but i64::MIN (the grammar's range): refunds included.
        let cost = (u64_at(data, at + 8) as i64).max(-i64::MAX);
        let out = match limiter::apply(stored.as_ref(), &quota, now_ms, cost) {
            Ok(out) => out,
            Err(ApplyError::WrongKind { stored: s, called }) => {
                assert_ne!(s, called, "WrongKind for matching kinds");
                assert_eq!(
                    called,
                    redis_ratelimit::limiter::state::Kind::Algorithm(quota.algorithm())
                );
                return;
            }
            Err(e @ ApplyError::Corrupt(_)) => {
                panic!("{e:?} on a state that decoded: {stored:?}")
            }
        };
        let d = out.decision;
        assert!(
            d.remaining <= d.limit,
            "remaining {} > limit {}: {d:?} (state {stored:?}, quota {quota:?}, now {now_ms}, cost {cost})",
            d.remaining,
            d.limit
        );
        assert_eq!(d.limit, quota_limit(&quota), "{d:?} for {quota:?}");
        let full = full_reset(&quota);
        let wait = match d.retry {
            redis_ratelimit::limiter::Retry::After(ms) => ms,
            _ => 0,
        };
        assert!(
            d.reset_after_ms <= full && wait <= full,
            "beyond the full reset {full}: {d:?} (state {stored:?}, quota {quota:?}, now {now_ms})"
        );
        if let Some(next) = out.new_state {
            // A grant on an EXACT log replicates as a delta: it must lead
            // the follower's copy to the very same log.
            if let (Some(State::SlidingExact(before)), State::SlidingExact(after)) =
                (stored.as_ref(), &next)
            {
                let units = u64::try_from(cost).unwrap_or(0);
                if let Some(delta) = ExactDelta::between(before, after, units, now_ms) {
                    assert_eq!(delta.apply(before).as_ref(), Ok(after), "{delta:?}");
                }
            }
            assert_eq!(
                next.kind(),
                redis_ratelimit::limiter::state::Kind::Algorithm(quota.algorithm())
            );
            let bytes = next.to_bytes();
            assert_eq!(
                State::decode(&bytes).as_ref(),
                Ok(&next),
                "stored state does not survive RDB: {bytes:02x?}"
            );
            // The in-memory small forms give back exactly the state.
            match packed::pack(&next) {
                Some(Packed::Word(w)) => assert_eq!(packed::unpack_word(w).as_ref(), Some(&next)),
                Some(Packed::Pair(kind, p)) => {
                    assert_eq!(packed::unpack_pair(kind, p).as_ref(), Some(&next))
                }
                None => {}
            }
            stored = Some(next);
        }
    }
});
