//! Turning module replies into one HTTP decision and its headers.
//!
//! Pure functions, no I/O: the HTTP layer calls [`Decision::combine`] on the
//! replies of one round trip and [`Decision::headers`] to render them.

use axum::http::{HeaderMap, HeaderName, HeaderValue};

use crate::backend::{Algorithm, Reply};

/// One limit as evaluated.
#[derive(Debug, Clone, PartialEq)]
pub struct Checked {
    /// Item name in the `RateLimit*` fields (`[A-Za-z0-9_.-]`, so no escaping).
    pub name: String,
    pub algorithm: Algorithm,
    pub reply: Reply,
}

/// The outcome of every limit of one request.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub allowed: bool,
    pub items: Vec<Checked>,
    /// Index into `items` of the most restrictive limit, the one reported in
    /// `RateLimit`, `X-RateLimit-*` and `Retry-After`.
    pub binding: usize,
}

/// Milliseconds to whole seconds, rounded up: a client that waits what we say
/// must succeed (SPEC §1 "rounded up, never down").
pub fn ceil_secs(ms: i64) -> i64 {
    if ms <= 0 {
        0
    } else {
        // Not (ms + 999) / 1000, which overflows near i64::MAX.
        ms / 1000 + i64::from(ms % 1000 != 0)
    }
}

pub const X_RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
pub const X_RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
pub const X_RATELIMIT_RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");
pub const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// Marker on `/v1/auth` answers that Nginx turns into a 429.
pub const X_RATELIMIT_DENIED: HeaderName = HeaderName::from_static("x-ratelimit-denied");
/// Marker on `/v1/auth` answers that Nginx turns into a 503.
pub const X_RATELIMIT_ERROR: HeaderName = HeaderName::from_static("x-ratelimit-error");
/// Set when a request was let through only because Redis was down and
/// `fail_open = true`.
pub const X_RATELIMIT_FAIL_OPEN: HeaderName = HeaderName::from_static("x-ratelimit-fail-open");

impl Decision {
    /// Combines the replies of all limits of one request: allowed only if every
    /// limit allowed. The binding limit is, when denied, the one with the longest
    /// wait (`-1`, "never", beats any wait); when allowed, the one with the
    /// fewest remaining units (ties: the later reset).
    pub fn combine(items: Vec<Checked>) -> Decision {
        let allowed = items.iter().all(|c| c.reply.allowed);
        let mut binding = 0;
        for (i, c) in items.iter().enumerate() {
            let Some(b) = items.get(binding) else { break };
            let better = if allowed {
                (c.reply.remaining, -c.reply.reset_after_ms)
                    < (b.reply.remaining, -b.reply.reset_after_ms)
            } else if !c.reply.allowed && b.reply.allowed {
                true
            } else if !c.reply.allowed {
                wait_rank(c.reply.retry_after_ms) > wait_rank(b.reply.retry_after_ms)
            } else {
                false
            };
            if better {
                binding = i;
            }
        }
        Decision {
            allowed,
            items,
            binding,
        }
    }

    /// The binding limit.
    pub fn binding(&self) -> Option<&Checked> {
        self.items.get(self.binding)
    }

    /// `true` if the binding limit says the request can never succeed.
    pub fn never(&self) -> bool {
        !self.allowed && self.binding().is_some_and(|c| c.reply.retry_after_ms < 0)
    }

    /// Seconds for `Retry-After`: at least 1 when denied, so that clients
    /// honouring it never spin; `None` when allowed or when waiting cannot help.
    pub fn retry_after_secs(&self) -> Option<i64> {
        let b = self.binding()?;
        if self.allowed || b.reply.retry_after_ms < 0 {
            None
        } else {
            Some(ceil_secs(b.reply.retry_after_ms).max(1))
        }
    }

    /// The rate-limit header fields of this decision.
    pub fn headers(&self) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(RATELIMIT_POLICY, policy_header(&self.items));
        if let Some(b) = self.binding() {
            let remaining = b.reply.remaining.max(0);
            let reset = ceil_secs(b.reply.reset_after_ms);
            h.insert(
                RATELIMIT,
                num_value(format!("\"{}\";r={remaining};t={reset}", b.name)),
            );
            h.insert(X_RATELIMIT_LIMIT, num_value(b.reply.limit.to_string()));
            h.insert(X_RATELIMIT_REMAINING, num_value(remaining.to_string()));
            h.insert(X_RATELIMIT_RESET, num_value(reset.to_string()));
        }
        if let Some(secs) = self.retry_after_secs() {
            h.insert(axum::http::header::RETRY_AFTER, num_value(secs.to_string()));
        }
        h
    }
}

fn wait_rank(retry_ms: i64) -> i64 {
    if retry_ms < 0 {
        i64::MAX
    } else {
        retry_ms
    }
}

/// `RateLimit-Policy` listing every limit in force (from configuration, so it
/// can be sent even when Redis did not answer).
pub fn policy_header<'a>(items: impl IntoIterator<Item = &'a Checked>) -> HeaderValue {
    let s = items
        .into_iter()
        .map(|c| policy_item(&c.name, &c.algorithm))
        .collect::<Vec<_>>()
        .join(", ");
    num_value(s)
}

/// One `RateLimit-Policy` item.
pub fn policy_item(name: &str, algorithm: &Algorithm) -> String {
    format!(
        "\"{name}\";q={};w={}",
        algorithm.quota(),
        algorithm.window_secs()
    )
}

/// Header values built here contain only names we validated and digits;
/// anything else would be our bug, so degrade to an empty value over panicking.
fn num_value(s: String) -> HeaderValue {
    HeaderValue::from_str(&s).unwrap_or_else(|_| HeaderValue::from_static(""))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(name: &str, allowed: bool, remaining: i64, retry: i64, reset: i64) -> Checked {
        Checked {
            name: name.into(),
            algorithm: Algorithm::FixedWindow {
                limit: 100,
                window: 60.0,
            },
            reply: Reply {
                allowed,
                limit: 100,
                remaining,
                retry_after_ms: retry,
                reset_after_ms: reset,
            },
        }
    }

    fn header(h: &HeaderMap, name: &str) -> String {
        h.get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("<absent>")
            .to_owned()
    }

    #[test]
    fn rounding_is_always_up() {
        assert_eq!(ceil_secs(0), 0);
        assert_eq!(ceil_secs(1), 1);
        assert_eq!(ceil_secs(1000), 1);
        assert_eq!(ceil_secs(1001), 2);
        assert_eq!(ceil_secs(-1), 0);
        assert_eq!(ceil_secs(i64::MAX), i64::MAX / 1000 + 1);
    }

    #[test]
    fn allowed_reports_fewest_remaining() {
        let d = Decision::combine(vec![
            item("second", true, 4, 0, 1_000),
            item("day", true, 2, 0, 86_000_000),
        ]);
        assert!(d.allowed);
        assert_eq!(d.binding().map(|c| c.name.as_str()), Some("day"));
        let h = d.headers();
        assert_eq!(header(&h, "ratelimit"), "\"day\";r=2;t=86000");
        assert_eq!(
            header(&h, "ratelimit-policy"),
            "\"second\";q=100;w=60, \"day\";q=100;w=60"
        );
        assert_eq!(header(&h, "retry-after"), "<absent>");
    }

    #[test]
    fn one_denial_denies_and_longest_wait_binds() {
        let d = Decision::combine(vec![
            item("second", false, 0, 300, 1_000),
            item("minute", false, 0, 20_001, 60_000),
            item("day", true, 50, 0, 86_000_000),
        ]);
        assert!(!d.allowed);
        assert_eq!(d.binding().map(|c| c.name.as_str()), Some("minute"));
        let h = d.headers();
        assert_eq!(header(&h, "retry-after"), "21");
        assert_eq!(header(&h, "x-ratelimit-remaining"), "0");
        assert_eq!(header(&h, "x-ratelimit-reset"), "60");
    }

    #[test]
    fn never_beats_any_wait_and_has_no_retry_after() {
        let d = Decision::combine(vec![
            item("a", false, 0, 5_000, 1_000),
            item("b", false, 3, -1, 1_000),
        ]);
        assert!(d.never());
        assert_eq!(d.retry_after_secs(), None);
    }

    #[test]
    fn a_tiny_wait_still_says_one_second() {
        let d = Decision::combine(vec![item("a", false, 0, 1, 1)]);
        assert_eq!(d.retry_after_secs(), Some(1));
    }
}
