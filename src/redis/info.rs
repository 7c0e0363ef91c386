//! Counters for `INFO ratelimit`: calls, allowed and denied per command.

use std::sync::atomic::{AtomicU64, Ordering};

use redis_module::{raw, InfoContext};

/// Counters of one command.
pub struct Counters {
    name: &'static str,
    calls: AtomicU64,
    allowed: AtomicU64,
    denied: AtomicU64,
}

impl Counters {
    const fn new(name: &'static str) -> Self {
        Self {
            name,
            calls: AtomicU64::new(0),
            allowed: AtomicU64::new(0),
            denied: AtomicU64::new(0),
        }
    }

    /// Counts one answered call (argument errors count as neither).
    pub fn record(&self, allowed: bool) {
        // Commands run on the main thread; Relaxed is enough for counters.
        self.calls.fetch_add(1, Ordering::Relaxed);
        if allowed {
            self.allowed.fetch_add(1, Ordering::Relaxed);
        } else {
            self.denied.fetch_add(1, Ordering::Relaxed);
        }
    }
}

pub static TOKENBUCKET: Counters = Counters::new("tokenbucket");
pub static FIXEDWINDOW: Counters = Counters::new("fixedwindow");
pub static SLIDING: Counters = Counters::new("sliding");
pub static THROTTLE: Counters = Counters::new("throttle");
pub static LIMITS: Counters = Counters::new("limits");
/// Leases: `allowed` counts grants (acquire), leases freed (release) and
/// leases renewed (renew); `denied` the rest.
pub static ACQUIRE: Counters = Counters::new("acquire");
pub static RELEASE: Counters = Counters::new("release");
pub static RENEW: Counters = Counters::new("renew");

/// Fills the module's `INFO` section (`INFO ratelimit`).
pub fn add_info(ctx: &InfoContext, _for_crash_report: bool) {
    if raw::add_info_section(ctx.ctx, None) == raw::Status::Err {
        return;
    }
    for c in [
        &TOKENBUCKET,
        &FIXEDWINDOW,
        &SLIDING,
        &THROTTLE,
        &LIMITS,
        &ACQUIRE,
        &RELEASE,
        &RENEW,
    ] {
        for (field, value) in [
            ("calls", &c.calls),
            ("allowed", &c.allowed),
            ("denied", &c.denied),
        ] {
            let name = format!("{}_{field}", c.name);
            raw::add_info_field_unsigned_long_long(ctx.ctx, &name, value.load(Ordering::Relaxed));
        }
    }
    raw::add_info_field_unsigned_long_long(
        ctx.ctx,
        "results_replicated",
        super::propagation::info_value(),
    );
}
