//! Whether anything can receive a replicated result.
//!
//! The server itself drops every propagated command when it has no AOF and
//! no replication backlog (`shouldPropagate`: a master with neither has no
//! replica, and nothing to offer one that reconnects). Building the
//! `RL.SETSTATE` command (looking `RL.SETSTATE` up by name and making its
//! argument objects) is then a third of a call's cost for nothing, so it is
//! skipped, under a rule that can only err towards replicating:
//!
//! - Replication is off only while, since the module loaded, the server has
//!   been a master without AOF, without replicas and without a backlog (read
//!   from `INFO` and the context flags at load and again whenever loading a
//!   data set ends: a master restarted from an RDB may recreate its backlog),
//!   and has never forked, changed role, or seen a replica come or go.
//! - Any fork (`BGSAVE`, `BGREWRITEAOF`, `CONFIG SET appendonly yes`, and every
//!   full synchronisation of a replica, which starts by forking), any role
//!   change and any replica event turn it on for the life of the process.
//!   Everything before a fork is in the fork's snapshot; everything after is
//!   replicated; a partial resynchronisation needs a backlog, which only a
//!   synchronisation (a fork) or having been a replica (a role change)
//!   creates.
//!
//! A skipped call still counts as a change for the `save` rules: it goes
//! through `RedisModule_ReplicateVerbatim` (which adds to the dirty counter
//! and whose command the server drops, having no target), never to a
//! replica or file.

use std::ffi::{c_int, c_void, CStr};
use std::sync::atomic::{AtomicBool, Ordering};

use redis_module::{raw, Context, Status};

/// Results go to replicas and the AOF (the safe default).
static NEEDED: AtomicBool = AtomicBool::new(true);
/// Something happened after which results always go out.
static FOR_GOOD: AtomicBool = AtomicBool::new(false);

/// Whether a result must be replicated (one relaxed load: commands run on
/// the main thread, as do the events that change it).
pub fn needed() -> bool {
    NEEDED.load(Ordering::Relaxed)
}

/// `INFO ratelimit`'s `results_replicated`: 1 when results go out.
pub fn info_value() -> u64 {
    u64::from(needed())
}

/// Re-reads the server's state; can only turn replication on unless the
/// server is a master without AOF, replicas or backlog and nothing has
/// turned it on for good.
fn recheck(ctx: *mut raw::RedisModuleCtx) {
    let isolated = !FOR_GOOD.load(Ordering::Relaxed) && isolated_master(ctx).unwrap_or(false);
    NEEDED.store(!isolated, Ordering::Relaxed);
}

/// A master with no AOF, no replica and no backlog (`None`: cannot tell).
fn isolated_master(ctx: *mut raw::RedisModuleCtx) -> Option<bool> {
    // SAFETY: a valid context for the duration of the call (OnLoad or an
    // event callback); the info data is freed before returning.
    unsafe {
        let flags = raw::RedisModule_GetContextFlags?(ctx);
        let master = flags & raw::REDISMODULE_CTX_FLAGS_MASTER as c_int != 0;
        let aof = flags & raw::REDISMODULE_CTX_FLAGS_AOF as c_int != 0;
        if !master || aof {
            return Some(false);
        }
        let info = raw::RedisModule_GetServerInfo?(ctx, c"replication".as_ptr());
        if info.is_null() {
            return None;
        }
        let field = |name: &CStr| -> Option<i64> {
            let mut err: c_int = 0;
            let v = raw::RedisModule_ServerInfoGetFieldSigned?(info, name.as_ptr(), &mut err);
            (err == raw::REDISMODULE_OK as c_int).then_some(v)
        };
        let quiet =
            field(c"connected_slaves") == Some(0) && field(c"repl_backlog_active") == Some(0);
        if let Some(free) = raw::RedisModule_FreeServerInfo {
            free(ctx, info);
        }
        Some(quiet)
    }
}

unsafe extern "C" fn for_good(
    _ctx: *mut raw::RedisModuleCtx,
    _event: raw::RedisModuleEvent,
    _subevent: u64,
    _data: *mut c_void,
) {
    FOR_GOOD.store(true, Ordering::Relaxed);
    NEEDED.store(true, Ordering::Relaxed);
}

unsafe extern "C" fn loading(
    ctx: *mut raw::RedisModuleCtx,
    _event: raw::RedisModuleEvent,
    subevent: u64,
    _data: *mut c_void,
) {
    if subevent == raw::REDISMODULE_SUBEVENT_LOADING_ENDED {
        recheck(ctx);
    } else {
        // While loading, and if loading fails: replicate.
        NEEDED.store(true, Ordering::Relaxed);
    }
}

/// Subscribes to the events above and reads the server's state once. A
/// server without the events keeps replicating everything.
pub fn init(ctx: &Context) -> Status {
    let events = [
        (raw::REDISMODULE_EVENT_FORK_CHILD, for_good as Callback),
        (raw::REDISMODULE_EVENT_REPLICATION_ROLE_CHANGED, for_good),
        (raw::REDISMODULE_EVENT_REPLICA_CHANGE, for_good),
        (raw::REDISMODULE_EVENT_LOADING, loading),
    ];
    // SAFETY: OnLoad's context; the callbacks are 'static functions.
    unsafe {
        let Some(subscribe) = raw::RedisModule_SubscribeToServerEvent else {
            FOR_GOOD.store(true, Ordering::Relaxed);
            return Status::Ok;
        };
        for (id, callback) in events {
            let event = raw::RedisModuleEvent { id, dataver: 1 };
            if subscribe(ctx.ctx, event, Some(callback)) != raw::REDISMODULE_OK as c_int {
                // Without every event, keep replicating everything.
                FOR_GOOD.store(true, Ordering::Relaxed);
            }
        }
    }
    recheck(ctx.ctx);
    Status::Ok
}

type Callback =
    unsafe extern "C" fn(*mut raw::RedisModuleCtx, raw::RedisModuleEvent, u64, *mut c_void);
