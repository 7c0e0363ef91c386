//! Native, atomic rate limiting for Redis and Valkey.
//!
//! `limiter` holds the algorithms as pure code; `redis` is the thin glue that
//! parses arguments, stores state in a custom data type, reads the clock and
//! replicates results. This file only registers them with the server.

// A panic inside a module aborts the whole server: no unwrap, expect, panic
// or unchecked indexing outside tests.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

pub mod limiter;
pub mod redis;

// The module's registration and its allocator (Redis's) stay out of test
// builds and of builds without the `module` feature (fuzzing, benches): the
// allocator aborts outside a server.
#[cfg(all(feature = "module", not(test)))]
mod registration {
    use std::ffi::{c_int, CStr};

    use redis_module::configuration::{
        get_i64_default_config_value, register_i64_configuration, ConfigurationFlags,
    };
    use redis_module::{raw, redis_module, Context, InfoContext, RedisResult, RedisString, Status};

    use crate::redis::command::{self, Argv, RawString};
    use crate::redis::{command_docs, config, datatype::RATELIMIT_TYPE, info, leases, propagation};

    /// A command callback over the server's own argument vector: the
    /// wrapper's `commands` list would first copy every argument into an
    /// owned `Vec<RedisString>` (a retain and a release per argument).
    macro_rules! raw_command {
        ($handler:path) => {{
            unsafe extern "C" fn call(
                ctx: *mut raw::RedisModuleCtx,
                argv: *mut RawString,
                argc: c_int,
            ) -> c_int {
                let context = Context::new(ctx);
                // SAFETY: the server's argument vector for this call, used
                // only during it.
                let args = unsafe { Argv::from_raw(argv, argc) };
                context.reply($handler(&context, args)) as c_int
            }
            let call: raw::RedisModuleCmdFunc = Some(call);
            call
        }};
    }

    /// The commands every caller runs, registered like the `commands` list
    /// does (same flags, keys and ACL category), but over [`raw_command!`].
    const HOT: [(&CStr, raw::RedisModuleCmdFunc); 8] = [
        (c"RL.TOKENBUCKET", raw_command!(command::token_bucket)),
        (c"RL.FIXEDWINDOW", raw_command!(command::fixed_window)),
        (c"RL.SLIDING", raw_command!(command::sliding)),
        (c"RL.LIMITS", raw_command!(command::limits)),
        (c"CL.THROTTLE", raw_command!(command::throttle)),
        (c"RL.ACQUIRE", raw_command!(leases::acquire)),
        (c"RL.RELEASE", raw_command!(leases::release)),
        (c"RL.RENEW", raw_command!(leases::renew)),
    ];

    fn register(ctx: &Context, name: &CStr, call: raw::RedisModuleCmdFunc) -> Status {
        let fail = |what: &str| {
            ctx.log_warning(&format!("ratelimit: could not {what} {name:?}"));
            Status::Err
        };
        // SAFETY: called from the module's OnLoad with its context; the
        // strings are 'static.
        unsafe {
            let Some(create) = raw::RedisModule_CreateCommand else {
                return fail("create");
            };
            let created = create(
                ctx.ctx,
                name.as_ptr(),
                call,
                c"write deny-oom fast".as_ptr(),
                1,
                1,
                1,
            );
            if created != raw::REDISMODULE_OK as c_int {
                return fail("create");
            }
            // ACL categories exist from Redis 7.2 (and in Valkey); 7.0
            // derives them from the flags.
            if let (Some(set_acl), Some(get)) = (
                raw::RedisModule_SetCommandACLCategories,
                raw::RedisModule_GetCommand,
            ) {
                let cmd = get(ctx.ctx, name.as_ptr());
                if cmd.is_null() || set_acl(cmd, c"write".as_ptr()) != raw::REDISMODULE_OK as c_int
                {
                    return fail("set the ACL category of");
                }
            }
        }
        Status::Ok
    }

    /// The `ratelimit.*` configs: name, value, default, min, max.
    const CONFIGS: [(&str, &std::sync::atomic::AtomicI64, i64, i64, i64); 2] = [
        (
            "exact-max-log",
            &config::EXACT_MAX_LOG,
            config::EXACT_MAX_LOG_DEFAULT,
            1,
            1_000_000,
        ),
        (
            "max-leases",
            &config::MAX_LEASES,
            config::MAX_LEASES_DEFAULT,
            1,
            config::MAX_LEASES_CAP,
        ),
    ];

    /// The `ratelimit.*` configs: registered here rather than through the
    /// macro's `configurations`, which ignores what `LoadConfigs` answers
    /// (a `MODULE LOADEX … CONFIG ratelimit.exact-max-log 0` then left a
    /// half-loaded module that could not be unloaded) and takes a module
    /// argument (`exact-max-log N`) unchecked as the default.
    fn configure(ctx: &Context, args: &[RedisString]) -> Status {
        let mut defaults = [0i64; CONFIGS.len()];
        for ((name, _, fallback, min, max), slot) in CONFIGS.iter().zip(defaults.iter_mut()) {
            *slot = match get_i64_default_config_value(args, name, *fallback) {
                Ok(v) if (*min..=*max).contains(&v) => v,
                Ok(v) => {
                    ctx.log_warning(&format!(
                        "ratelimit: module argument {name} {v} must be between {min} and {max}"
                    ));
                    return Status::Err;
                }
                Err(e) => {
                    ctx.log_warning(&format!(
                        "ratelimit: module argument {name} must be an integer between {min} and {max} ({e})"
                    ));
                    return Status::Err;
                }
            };
        }
        // Servers without module configs (before 7.0) keep the defaults.
        // SAFETY: the API table is filled by RedisModule_Init before OnLoad.
        let (Some(_), Some(load)) = (unsafe {
            (
                raw::RedisModule_RegisterNumericConfig,
                raw::RedisModule_LoadConfigs,
            )
        }) else {
            for ((_, value, ..), default) in CONFIGS.iter().zip(defaults) {
                value.store(default, std::sync::atomic::Ordering::Relaxed);
            }
            return Status::Ok;
        };
        for ((name, value, _, min, max), default) in CONFIGS.iter().zip(defaults) {
            register_i64_configuration(
                ctx,
                name,
                *value,
                default,
                *min,
                *max,
                ConfigurationFlags::DEFAULT,
                None,
            );
        }
        // SAFETY: OnLoad's context; applies `MODULE LOADEX … CONFIG` values
        // and config-file lines, or the defaults.
        if unsafe { load(ctx.ctx) } != raw::REDISMODULE_OK as c_int {
            ctx.log_warning("ratelimit: a ratelimit.* config was refused; module not loaded");
            return Status::Err;
        }
        Status::Ok
    }

    fn init(ctx: &Context, args: &[RedisString]) -> Status {
        if configure(ctx, args) == Status::Err {
            return Status::Err;
        }
        // Handle truncated payloads ourselves (an error, not an abort), and
        // signal modified keys only when a call really writes.
        ctx.set_module_options(
            redis_module::ModuleOptions::HANDLE_IO_ERRORS
                | redis_module::ModuleOptions::NO_IMPLICIT_SIGNAL_MODIFIED,
        );
        for (name, call) in HOT {
            if register(ctx, name, call) == Status::Err {
                return Status::Err;
            }
        }
        // COMMAND DOCS / INFO / GETKEYS and redis-cli hints, where the
        // server has the API (the `commands` list is registered by now).
        command_docs::document(ctx);
        propagation::init(ctx)
    }

    fn add_info(ctx: &InfoContext, for_crash_report: bool) {
        info::add_info(ctx, for_crash_report);
    }

    redis_module! {
        name: "ratelimit",
        version: 1,
        allocator: (redis_module::alloc::RedisAlloc, redis_module::alloc::RedisAlloc),
        data_types: [RATELIMIT_TYPE],
        init: init,
        info: add_info,
        commands: [
            // The commands callers run are registered in `init` (HOT).
            ["RL.SETSTATE", command::set_state, "write", 1, 1, 1, "", "write"],
            ["RL.EXACTADD", command::exact_add, "write", 1, 1, 1, "", "write"],
        ],
    }
}
