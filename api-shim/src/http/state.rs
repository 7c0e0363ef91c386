//! What every handler shares: the state, the running configuration's
//! snapshot, the mode cache and the backend deadline.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use crate::backend::{Backend, BackendError, SystemMode};
use crate::config::{Config, ConfigError, Loader};
use crate::metrics::Metrics;

/// What a policy answer was about, for the edge's metrics and decision log.
/// Every field comes from configuration or is hashed: never a raw API key.
#[derive(Debug, Clone)]
pub(crate) struct DecisionInfo {
    pub policy: String,
    pub tier: String,
    pub mode: &'static str,
    /// The binding limit's configured name (none when failed open).
    pub binding: Option<String>,
    /// `k:<hash>`, `u:<hash>` or `ip:<address>` (identity::resolve).
    pub identity: String,
}

/// Everything a handler needs; cheap to clone.
///
/// The configuration sits behind an [`ArcSwap`]: a request takes one
/// snapshot and keeps it to the end, so a reload never changes a decision
/// in flight.
#[derive(Clone)]
pub struct AppState {
    pub cfg: Arc<ArcSwap<Config>>,
    pub backend: Arc<dyn Backend>,
    pub metrics: Arc<Metrics>,
    pub(crate) mode: Arc<ModeCache>,
}

impl AppState {
    pub fn new(cfg: Config, backend: Arc<dyn Backend>) -> Result<AppState, prometheus::Error> {
        let mode = Arc::new(ModeCache::new(cfg.mode_cache));
        Ok(AppState {
            cfg: Arc::new(ArcSwap::from_pointee(cfg)),
            backend,
            metrics: Arc::new(Metrics::new()?),
            mode,
        })
    }

    /// The configuration as of now.
    pub fn config(&self) -> Arc<Config> {
        self.cfg.load_full()
    }

    /// Reads and validates the whole configuration again; only a valid one
    /// replaces the running one. Listening address, Redis target and
    /// timeouts need a restart: a change to them is logged and not applied.
    pub fn reload(&self, loader: &Loader) -> Result<(), ConfigError> {
        let old = self.config();
        match loader.load(old.exact_max_log) {
            Ok(mut new) => {
                if new.listen != old.listen
                    || new.redis != old.redis
                    || new.redis_timeout != old.redis_timeout
                    || new.mode_cache != old.mode_cache
                    || new.header_read_timeout != old.header_read_timeout
                {
                    tracing::warn!("listen, redis, timeouts and mode_cache_ms change only on restart; kept the running values");
                    new.listen = old.listen;
                    new.redis = old.redis.clone();
                    new.redis_timeout = old.redis_timeout;
                    new.mode_cache = old.mode_cache;
                    new.header_read_timeout = old.header_read_timeout;
                }
                self.cfg.store(Arc::new(new));
                self.metrics.reloads.with_label_values(&["ok"]).inc();
                tracing::info!("configuration reloaded");
                Ok(())
            }
            Err(e) => {
                self.metrics.reloads.with_label_values(&["error"]).inc();
                tracing::error!(error = %e, "configuration reload refused; keeping the running one");
                Err(e)
            }
        }
    }
}

/// `X-RateLimit-Reset` for an answer given now: the configured style, with
/// the one clock reading a Unix time needs.
pub fn reset_field(cfg: &Config) -> crate::decision::ResetField {
    use crate::decision::{ResetField, ResetStyle};
    match cfg.x_ratelimit_reset {
        ResetStyle::Delta => ResetField::Delta,
        ResetStyle::Unix => ResetField::Unix {
            now_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
                .unwrap_or(0),
        },
    }
}

/// Runs `fut` within the decision budget: an outage or a hung server turns
/// into `Unavailable` after `budget` at the latest, whatever `fut` awaits.
pub async fn within<T>(
    budget: Duration,
    fut: impl std::future::Future<Output = Result<T, BackendError>>,
) -> Result<T, BackendError> {
    match tokio::time::timeout(budget, fut).await {
        Ok(r) => r,
        Err(_) => Err(BackendError::Unavailable(format!(
            "no answer within {} ms",
            budget.as_millis()
        ))),
    }
}

/// The shared NORMAL/DEGRADED flag, cached for `mode_cache_ms`.
///
/// Reading it from Redis on every decision would double the round trips, and
/// it cannot ride with the decision because it decides which limits go there.
/// So each shim keeps a copy for a short time (default 1 s); one request
/// refreshes it while the others use the copy. With `mode_cache_ms = 0` it is
/// read on every decision.
pub(crate) struct ModeCache {
    ttl: Duration,
    current: std::sync::RwLock<(SystemMode, Option<Instant>)>,
    refreshing: tokio::sync::Mutex<()>,
}

impl ModeCache {
    fn new(ttl: Duration) -> Self {
        ModeCache {
            ttl,
            current: std::sync::RwLock::new((SystemMode::Normal, None)),
            refreshing: tokio::sync::Mutex::new(()),
        }
    }

    fn snapshot(&self) -> (SystemMode, Option<Instant>) {
        self.current
            .read()
            .map(|g| *g)
            .unwrap_or((SystemMode::Normal, None))
    }

    pub(crate) fn store(&self, mode: SystemMode) {
        if let Ok(mut g) = self.current.write() {
            *g = (mode, Some(Instant::now()));
        }
    }

    /// The last known mode, without I/O.
    pub(crate) fn last(&self) -> SystemMode {
        self.snapshot().0
    }

    pub(crate) async fn get(&self, backend: &dyn Backend) -> SystemMode {
        let (mode, at) = self.snapshot();
        if at.is_some_and(|t| t.elapsed() < self.ttl) {
            return mode;
        }
        // Only one request refreshes; the rest go on with the last known value.
        let Ok(_guard) = self.refreshing.try_lock() else {
            return mode;
        };
        match backend.get_mode().await {
            Ok(m) => {
                self.store(m);
                m
            }
            Err(e) => {
                // Keep the last known mode; the decision itself will report
                // the outage if Redis is really gone.
                tracing::debug!(error = %e, "cannot refresh system mode");
                self.store(mode);
                mode
            }
        }
    }
}
