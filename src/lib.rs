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
    use redis_module::configuration::ConfigurationFlags;
    use redis_module::{redis_module, Context, InfoContext, RedisResult, RedisString, Status};

    use crate::redis::{command, config, datatype::RATELIMIT_TYPE, info};

    fn init(ctx: &Context, _args: &[RedisString]) -> Status {
        // Handle truncated payloads ourselves (an error, not an abort), and
        // signal modified keys only when a call really writes.
        ctx.set_module_options(
            redis_module::ModuleOptions::HANDLE_IO_ERRORS
                | redis_module::ModuleOptions::NO_IMPLICIT_SIGNAL_MODIFIED,
        );
        Status::Ok
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
            ["RL.TOKENBUCKET", command::token_bucket, "write deny-oom fast", 1, 1, 1, "", "write"],
            ["RL.FIXEDWINDOW", command::fixed_window, "write deny-oom fast", 1, 1, 1, "", "write"],
            ["RL.SLIDING", command::sliding, "write deny-oom fast", 1, 1, 1, "", "write"],
            ["RL.LIMITS", command::limits, "write deny-oom fast", 1, 1, 1, "", "write"],
            ["CL.THROTTLE", command::throttle, "write deny-oom fast", 1, 1, 1, "", "write"],
            ["RL.SETSTATE", command::set_state, "write", 1, 1, 1, "", "write"],
            ["RL.EXACTADD", command::exact_add, "write", 1, 1, 1, "", "write"],
        ],
        configurations: [
            i64: [
                ["exact-max-log", &config::EXACT_MAX_LOG, config::EXACT_MAX_LOG_DEFAULT, 1, 1_000_000, ConfigurationFlags::DEFAULT, None],
            ],
            string: [],
            bool: [],
            enum: [],
            module_args_as_configuration: true,
        ]
    }
}
