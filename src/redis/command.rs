//! Command handlers: parse, read the clock once, run the pure limiter on the
//! stored state, store and replicate the result, reply.

use std::ffi::{c_char, CStr};

use redis_module::{raw, Context, ContextFlags, RedisError, RedisResult, RedisString, RedisValue};

use super::args::{self, Call};
use super::datatype::{LimiterKey, EXACTADD, SETSTATE};
use super::{clock, config, info, propagation};
use crate::limiter::leases::Granted;
use crate::limiter::limits::{combine, Limit, LimitsOutcome};
use crate::limiter::sliding::delta::ExactDelta;
use crate::limiter::state::Kind;
use crate::limiter::{self, token_bucket, ApplyError, Cost, Decision, Quota, Retry, State};

/// Keys never live longer than this (~1,115 years), whatever a quota says,
/// so absolute expiry times cannot overflow.
const MAX_TTL_MS: u64 = 1 << 45;

/// A server string argument (a key or a word), borrowed from the call.
pub type RawString = *mut raw::RedisModuleString;

/// A command's arguments as the server passed them: borrowed, never copied
/// (the hot commands are registered with `RedisModule_CreateCommand`
/// directly, without the wrapper's owned `Vec<RedisString>`).
#[derive(Clone, Copy)]
pub struct Argv<'a>(&'a [RawString]);

impl<'a> Argv<'a> {
    /// The arguments, command name first.
    pub(super) fn args(&self) -> &'a [RawString] {
        self.0
    }

    /// # Safety
    /// `argv` and `argc` must be what the server passed to a command
    /// callback; the view must not outlive that call.
    pub unsafe fn from_raw(argv: *mut RawString, argc: std::ffi::c_int) -> Self {
        let len = usize::try_from(argc).unwrap_or(0);
        if argv.is_null() || len == 0 {
            return Argv(&[]);
        }
        // SAFETY: the server's argv holds argc live strings (contract).
        Argv(unsafe { std::slice::from_raw_parts(argv, len) })
    }
}

/// The bytes of a server string argument.
pub(super) fn bytes<'a>(s: RawString) -> &'a [u8] {
    RedisString::string_as_slice(s)
}

/// How a command shapes its reply.
#[derive(Clone, Copy)]
enum Shape {
    /// The five `RL.*` fields; a map under RESP3.
    Rl,
    /// redis-cell's `CL.THROTTLE` array, times in seconds.
    Cell,
}

/// `RL.TOKENBUCKET key capacity rate cost`
pub fn token_bucket(ctx: &Context, argv: Argv) -> RedisResult {
    run(ctx, argv, args::token_bucket, &info::TOKENBUCKET, Shape::Rl)
}

/// `RL.FIXEDWINDOW key limit window cost`
pub fn fixed_window(ctx: &Context, argv: Argv) -> RedisResult {
    run(ctx, argv, args::fixed_window, &info::FIXEDWINDOW, Shape::Rl)
}

/// `RL.SLIDING key limit window cost [EXACT|APPROX]`
pub fn sliding(ctx: &Context, argv: Argv) -> RedisResult {
    run(ctx, argv, args::sliding, &info::SLIDING, Shape::Rl)
}

/// `CL.THROTTLE key max_burst count period [quantity]`
pub fn throttle(ctx: &Context, argv: Argv) -> RedisResult {
    run(ctx, argv, args::throttle, &info::THROTTLE, Shape::Cell)
}

fn run(
    ctx: &Context,
    argv: Argv,
    parse: fn(&[&[u8]]) -> Result<Call, String>,
    counters: &info::Counters,
    shape: Shape,
) -> RedisResult {
    // No command takes more than four arguments after the key; a fifth slot
    // lets the parser see "too many" without allocating.
    let mut slots: [&[u8]; 5] = [&[]; 5];
    let (key, rest) = match argv.0 {
        [_, key, rest @ ..] => (Some(*key), rest),
        _ => (None, &[][..]),
    };
    let n = rest.len().min(slots.len());
    for (slot, &arg) in slots.iter_mut().zip(rest) {
        *slot = bytes(arg);
    }
    let call = parse(slots.get(..n).unwrap_or(&slots)).map_err(RedisError::String)?;
    // parse() only succeeds with the right arity, which includes the key.
    let Some(key) = key else {
        return Err(RedisError::Str("ERR missing key"));
    };
    call.quota
        .check_exact_log(config::exact_max_log())
        .map_err(RedisError::String)?;

    let now = clock::now_ms();
    let mut lk = LimiterKey::open(ctx, key);
    let called = Kind::Algorithm(call.quota.algorithm());
    // A key redis-cell left (a string holding its GCRA time): CL.THROTTLE
    // continues from it, and its next write converts the key to our type.
    let from_cell = match (shape, call.quota) {
        (Shape::Cell, Quota::TokenBucket(q)) => lk
            .redis_cell_tat()
            .map(|tat| State::TokenBucket(token_bucket::from_cell_tat(tat, &q, now))),
        _ => None,
    };
    let held = match from_cell {
        Some(_) => None,
        None => lk.state()?,
    };
    let stored = from_cell.as_ref().or(held.as_deref());
    let cost = Cost::from(call.cost);
    let outcome =
        limiter::apply(stored, &call.quota, now, cost).map_err(|e| apply_error(e, called))?;
    if let Some(state) = outcome.new_state {
        // A grant on an EXACT log goes to replicas and the AOF as a delta.
        let delta = match (stored, &state) {
            (Some(State::SlidingExact(before)), State::SlidingExact(after)) => {
                ExactDelta::between(before, after, cost.taken(), now)
            }
            _ => None,
        };
        if from_cell.is_some() {
            // Replaces the string (and drops its TTL; commit sets ours).
            lk.replace(state.clone())?;
        }
        let reset = outcome.decision.reset_after_ms;
        commit(ctx, &mut lk, key, state, now, reset, delta.as_ref())?;
    }
    drop(lk);
    counters.record(outcome.decision.allowed());
    reply(ctx, &outcome.decision, shape);
    Ok(RedisValue::NoReply)
}

/// `RL.LIMITS key cost spec [spec ...]`
pub fn limits(ctx: &Context, argv: Argv) -> RedisResult {
    let [_, key, rest @ ..] = argv.0 else {
        return Err(RedisError::String(args::arity_error(
            rl_grammar::USAGE_LIMITS,
        )));
    };
    // The arguments as byte slices, on the stack for every call that can be
    // valid (a cost and at most MAX_LIMITS specs of at most 9 words each).
    const MOST_WORDS: usize = 1 + 9 * rl_grammar::MAX_LIMITS;
    let mut slots: [&[u8]; MOST_WORDS] = [&[]; MOST_WORDS];
    let heap: Vec<&[u8]>;
    let words: &[&[u8]] = if rest.len() <= MOST_WORDS {
        for (slot, &arg) in slots.iter_mut().zip(rest) {
            *slot = bytes(arg);
        }
        slots.get(..rest.len()).unwrap_or_default()
    } else {
        // Too long to be valid: the parser says why.
        heap = rest.iter().map(|&arg| bytes(arg)).collect();
        &heap
    };
    let (cost, specs) = rl_grammar::parse_limits_borrowed(words).map_err(RedisError::String)?;
    let max_log = config::exact_max_log();
    let mut limits = Vec::with_capacity(specs.len());
    let mut leases = false;
    for (i, spec) in specs.iter().enumerate() {
        let refused = |e: String| {
            let why = e.strip_prefix("ERR ").unwrap_or(&e);
            RedisError::String(format!("ERR limit #{}: {why}", i + 1))
        };
        spec.quota.check_exact_log(max_log).map_err(refused)?;
        let cost = Cost::from(spec.cost_in(cost));
        if let Quota::Concurrency(q) = &spec.quota {
            q.check_max_leases(config::max_leases()).map_err(refused)?;
            if let Cost::GiveBack(_) = cost {
                return Err(refused(
                    "CONCURRENCY takes a cost of 0 or more: slots come back with RL.RELEASE key lease".into(),
                ));
            }
            leases = true;
        }
        limits.push(Limit {
            name: spec.name.map(rl_grammar::name_hash),
            quota: spec.quota,
            cost,
            shadow: spec.shadow,
        });
    }

    let now = clock::now_ms();
    let key = *key;
    let mut lk = LimiterKey::open(ctx, key);
    let held = lk.state()?;
    let stored = match held.as_deref() {
        None => None,
        Some(State::Limits(s)) => Some(s),
        Some(other) => {
            let e = ApplyError::WrongKind {
                stored: other.kind(),
                called: Kind::Limits,
            };
            return Err(apply_error(e, Kind::Limits));
        }
    };
    let mut outcome = combine(stored, &limits, now).map_err(|e| apply_error(e, Kind::Limits))?;
    if let Some(state) = outcome.new_state.take() {
        let reset = outcome.reset_after_ms();
        commit(ctx, &mut lk, key, State::Limits(state), now, reset, None)?;
    }
    drop(lk);
    info::LIMITS.record(outcome.allowed);
    reply_limits(ctx, &outcome, leases);
    Ok(RedisValue::NoReply)
}

/// Stores a new state with its absolute expiry (`reset_after_ms` from
/// `now`), replicates it and signals the change. With a `delta` (a grant on
/// an `EXACT` log) replicas and the AOF get `RL.EXACTADD`, whose size does
/// not grow with the log, instead of the whole state.
pub(super) fn commit(
    ctx: &Context,
    lk: &mut LimiterKey,
    key: RawString,
    state: State,
    now: u64,
    reset_after_ms: u64,
    delta: Option<&ExactDelta>,
) -> Result<(), RedisError> {
    let ttl = reset_after_ms.clamp(1, MAX_TTL_MS);
    let at = now.saturating_add(ttl);
    let replicated = propagation::needed();
    // Encoded before the state moves into the key.
    let payload = (replicated && delta.is_none()).then(|| state.encoded());
    lk.store(state)?;
    lk.expire_at(at, ttl);
    match (payload, delta) {
        (Some(p), _) => replicate(ctx, key, p.as_slice(), at),
        (None, Some(d)) if replicated => replicate_exact_delta(ctx, key, d, at),
        // Nothing can receive the result (see `propagation`); this only
        // counts the change for the `save` rules.
        // SAFETY: the command's context.
        _ => unsafe {
            if let Some(verbatim) = raw::RedisModule_ReplicateVerbatim {
                verbatim(ctx.ctx);
            }
        },
    }
    // SAFETY: ctx and key are valid for this command.
    unsafe {
        if let Some(signal) = raw::RedisModule_SignalModifiedKey {
            signal(ctx.ctx, key);
        }
    }
    Ok(())
}

pub(super) fn apply_error(e: ApplyError, called: Kind) -> RedisError {
    match e {
        ApplyError::WrongKind { stored, called } => RedisError::String(format!(
            "WRONGTYPE key holds {} state, not {}: use that command on it, or DEL the key",
            stored.command(),
            called.command()
        )),
        ApplyError::Corrupt(d) => RedisError::String(format!(
            "ERR {} state is damaged ({d}): DEL the key",
            called.command()
        )),
    }
}

/// Sends replicas and the AOF the result, with an absolute expiry, so they
/// never recompute with their own clock.
fn replicate(ctx: &Context, key: RawString, payload: &[u8], at_ms: u64) {
    // SAFETY: "sbl" = RedisModuleString, (pointer, length) buffer, long long;
    // all arguments outlive the call, which copies them.
    unsafe {
        if let Some(rep) = raw::RedisModule_Replicate {
            rep(
                ctx.ctx,
                SETSTATE.as_ptr(),
                c"sbl".as_ptr(),
                key,
                payload.as_ptr().cast::<c_char>(),
                payload.len(),
                i64::try_from(at_ms).unwrap_or(i64::MAX),
            );
        }
    }
}

/// Sends replicas and the AOF a grant on an `EXACT` log as a delta.
fn replicate_exact_delta(ctx: &Context, key: RawString, d: &ExactDelta, at_ms: u64) {
    // SAFETY: "sllllll" = a RedisModuleString and six long longs; the key
    // outlives the call, which copies its arguments.
    unsafe {
        if let Some(rep) = raw::RedisModule_Replicate {
            rep(
                ctx.ctx,
                EXACTADD.as_ptr(),
                c"sllllll".as_ptr(),
                key,
                to_i64(d.keep_from),
                to_i64(d.ts),
                to_i64(d.units),
                to_i64(d.len),
                to_i64(d.total),
                to_i64(at_ms),
            );
        }
    }
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The five `RL.*` reply fields of a decision.
pub(super) fn fields(d: &Decision) -> [(&'static CStr, i64); 5] {
    [
        (c"allowed", i64::from(d.allowed())),
        (c"limit", to_i64(d.limit)),
        (c"remaining", to_i64(d.remaining)),
        (c"retry_after_ms", d.retry_after_ms()),
        (c"reset_after_ms", to_i64(d.reset_after_ms)),
    ]
}

/// Replies with named integers: a map under RESP3, an array under RESP2
/// (`extra` more elements follow, written by the caller).
pub(super) fn reply_fields(ctx: &Context, resp3: bool, fields: &[(&CStr, i64)], extra: usize) {
    let c = ctx.ctx;
    if resp3 {
        raw::reply_with_map(c, (fields.len() + extra) as _);
    } else {
        raw::reply_with_array(c, (fields.len() + extra) as _);
    }
    for (name, v) in fields {
        if resp3 {
            raw::reply_with_simple_string(c, name.as_ptr());
        }
        raw::reply_with_long_long(c, *v);
    }
}

pub(super) fn is_resp3(ctx: &Context) -> bool {
    ctx.get_flags().contains(ContextFlags::FLAGS_RESP3)
}

fn reply(ctx: &Context, d: &Decision, shape: Shape) {
    match shape {
        Shape::Rl => reply_fields(ctx, is_resp3(ctx), &fields(d), 0),
        Shape::Cell => {
            let secs = |ms: u64| to_i64(ms.div_ceil(1000));
            let retry = match d.retry {
                Retry::After(ms) => secs(ms),
                Retry::Now | Retry::Never => -1,
            };
            raw::reply_with_array(ctx.ctx, 5);
            for v in [
                i64::from(!d.allowed()),
                to_i64(d.limit),
                to_i64(d.remaining),
                retry,
                secs(d.reset_after_ms),
            ] {
                raw::reply_with_long_long(ctx.ctx, v);
            }
        }
    }
}

/// `RL.LIMITS`' reply: the binding limit's five fields, `binding`, and
/// `limits` (one five-field reply per limit, in the call's order); with a
/// `CONCURRENCY` limit, then `lease` (its id; nil unless granted).
fn reply_limits(ctx: &Context, out: &LimitsOutcome, leases: bool) {
    let c = ctx.ctx;
    // Read once: the context flags cost more than a reply field.
    let resp3 = is_resp3(ctx);
    reply_fields(ctx, resp3, &fields(&out.summary()), 2 + usize::from(leases));
    if resp3 {
        raw::reply_with_simple_string(c, c"binding".as_ptr());
    }
    raw::reply_with_long_long(c, out.binding as i64);
    if resp3 {
        raw::reply_with_simple_string(c, c"limits".as_ptr());
    }
    raw::reply_with_array(c, out.decisions.len() as _);
    for d in &out.decisions {
        reply_fields(ctx, resp3, &fields(d), 0);
    }
    if leases {
        reply_lease(ctx, resp3, out.lease.as_ref(), false);
    }
}

/// The lease fields after the five: the id (nil when denied) and its
/// expiry in Unix ms (0 when denied).
pub(super) fn reply_lease(ctx: &Context, resp3: bool, lease: Option<&Granted>, with_expiry: bool) {
    let c = ctx.ctx;
    let key = |name: &CStr| {
        if resp3 {
            raw::reply_with_simple_string(c, name.as_ptr());
        }
    };
    key(c"lease");
    match lease {
        Some(g) => {
            raw::reply_with_string_buffer(c, g.id.as_ptr().cast(), g.id.len());
        }
        None => {
            raw::reply_with_null(c);
        }
    }
    if with_expiry {
        key(c"expires_at_ms");
        raw::reply_with_long_long(
            c,
            lease.map_or(0, |g| i64::try_from(g.expires_at_ms).unwrap_or(i64::MAX)),
        );
    }
}

/// `RL.SETSTATE key payload [at_ms]`: internal. Applies a state computed by a
/// master (replication stream) or logged to the AOF. Refuses ordinary
/// clients, who must not be able to forge limiter state.
pub fn set_state(ctx: &Context, argv: Vec<RedisString>) -> RedisResult {
    let flags = ctx.get_flags();
    if !flags.intersects(ContextFlags::REPLICATED | ContextFlags::LOADING) {
        return Err(RedisError::Str(
            "ERR RL.SETSTATE is internal: it is only accepted from a master or the AOF",
        ));
    }
    let (key, payload, at) = match argv.as_slice() {
        [_, k, p] => (k, p, None),
        [_, k, p, at] => (k, p, Some(at)),
        _ => {
            return Err(RedisError::Str(
                "ERR wrong number of arguments for RL.SETSTATE",
            ))
        }
    };
    let state = State::decode(payload.as_slice())
        .map_err(|e| RedisError::String(format!("ERR RL.SETSTATE: {e}")))?;
    let at_ms = match at {
        Some(a) => Some(
            a.parse_integer()
                .ok()
                .and_then(|v| u64::try_from(v).ok())
                .ok_or(RedisError::Str("ERR RL.SETSTATE: bad expiry time"))?,
        ),
        None => None,
    };
    let mut lk = LimiterKey::open(ctx, key.inner);
    lk.replace(state)?;
    if let Some(at_ms) = at_ms {
        let ttl = at_ms.saturating_sub(clock::now_ms());
        lk.expire_at(at_ms, ttl);
    }
    Ok(RedisValue::SimpleStringStatic("OK"))
}

/// `RL.EXACTADD key keep_from_ms ts_ms units len total at_ms`: internal. A
/// grant on an `EXACT` log as a master replicated it: entries older than
/// `keep_from_ms` leave, `units` are added at `ts_ms`, and the result must
/// have `len` entries and `total` units (else the follower's log differs and
/// the delta is refused). Refuses ordinary clients, as `RL.SETSTATE` does.
pub fn exact_add(ctx: &Context, argv: Vec<RedisString>) -> RedisResult {
    if !ctx
        .get_flags()
        .intersects(ContextFlags::REPLICATED | ContextFlags::LOADING)
    {
        return Err(RedisError::Str(
            "ERR RL.EXACTADD is internal: it is only accepted from a master or the AOF",
        ));
    }
    let [_, key, nums @ ..] = argv.as_slice() else {
        return Err(RedisError::Str(
            "ERR wrong number of arguments for RL.EXACTADD",
        ));
    };
    let mut v = [0u64; 6];
    if nums.len() != v.len() {
        return Err(RedisError::Str(
            "ERR wrong number of arguments for RL.EXACTADD",
        ));
    }
    for (slot, arg) in v.iter_mut().zip(nums) {
        *slot = arg
            .parse_integer()
            .ok()
            .and_then(|n| u64::try_from(n).ok())
            .ok_or(RedisError::Str("ERR RL.EXACTADD: bad number"))?;
    }
    let [keep_from, ts, units, len, total, at_ms] = v;
    let delta = ExactDelta {
        keep_from,
        ts,
        units,
        len,
        total,
    };
    let mut lk = LimiterKey::open(ctx, key.inner);
    let next = match lk.state()?.as_deref() {
        Some(State::SlidingExact(log)) => delta
            .apply(log)
            .map_err(|e| RedisError::String(format!("ERR RL.EXACTADD: {e}")))?,
        _ => {
            return Err(RedisError::Str(
                "ERR RL.EXACTADD: the key holds no EXACT log to add to",
            ))
        }
    };
    lk.store(State::SlidingExact(next))?;
    lk.expire_at(at_ms, at_ms.saturating_sub(clock::now_ms()));
    Ok(RedisValue::SimpleStringStatic("OK"))
}
