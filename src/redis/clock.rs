//! The one place that reads the server clock.

use redis_module::raw;

/// Server time in milliseconds since the Unix epoch. Read once per command:
/// every decision of a command uses the same instant.
pub fn now_ms() -> u64 {
    // SAFETY: RedisModule_Milliseconds is part of the module API since 4.0
    // and takes no arguments; the module is loaded, so the pointer is set.
    let ms = unsafe { raw::RedisModule_Milliseconds.map_or(0, |f| f()) };
    u64::try_from(ms).unwrap_or(0)
}
