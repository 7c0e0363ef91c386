//! Prometheus metrics, exposed as text on `/metrics`.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder,
};

/// Counters and latency histograms of one shim process.
pub struct Metrics {
    registry: Registry,
    /// Decisions by endpoint (`raw`, `check`, `auth`, `status`), outcome
    /// (`allowed`, `denied`, `fail_open`, `read`, or an error label), and
    /// policy, tier and mode. Policy and tier names come from configuration
    /// (never from the request, never an identity), the mode is one of two:
    /// bounded cardinality. Raw endpoints and requests refused before a
    /// policy was found have empty policy, tier and mode.
    pub decisions: IntCounterVec,
    /// Redis round-trip latency by operation, including failures.
    pub redis_seconds: HistogramVec,
    /// Configuration reloads by result (`ok`, `error`).
    pub reloads: IntCounterVec,
    /// Shadow limits that would have denied, by policy and limit name
    /// (both from configuration: bounded cardinality).
    pub shadow_denials: IntCounterVec,
}

impl Metrics {
    pub fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        let decisions = IntCounterVec::new(
            Opts::new(
                "shim_decisions_total",
                "Rate-limit decisions by endpoint, outcome, policy, tier and mode",
            ),
            &["endpoint", "outcome", "policy", "tier", "mode"],
        )?;
        let redis_seconds = HistogramVec::new(
            HistogramOpts::new("shim_redis_seconds", "Redis round-trip time by operation").buckets(
                vec![
                    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                ],
            ),
            &["op"],
        )?;
        let reloads = IntCounterVec::new(
            Opts::new(
                "shim_config_reloads_total",
                "Configuration reloads by result",
            ),
            &["result"],
        )?;
        let shadow_denials = IntCounterVec::new(
            Opts::new(
                "shim_shadow_denials_total",
                "Requests a shadow limit would have denied, by policy and limit",
            ),
            &["policy", "limit"],
        )?;
        registry.register(Box::new(decisions.clone()))?;
        registry.register(Box::new(redis_seconds.clone()))?;
        registry.register(Box::new(reloads.clone()))?;
        registry.register(Box::new(shadow_denials.clone()))?;
        Ok(Metrics {
            registry,
            decisions,
            redis_seconds,
            reloads,
            shadow_denials,
        })
    }

    pub fn decision(&self, endpoint: &str, outcome: &str, policy: &str, tier: &str, mode: &str) {
        self.decisions
            .with_label_values(&[endpoint, outcome, policy, tier, mode])
            .inc();
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> Result<String, prometheus::Error> {
        let mut buf = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut buf)?;
        String::from_utf8(buf).map_err(|e| prometheus::Error::Msg(e.to_string()))
    }
}
