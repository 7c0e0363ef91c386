//! Turning module replies into one HTTP decision and its header fields.
//!
//! Pure functions, no I/O. The header fields follow
//! draft-ietf-httpapi-ratelimit-headers-11 and are serialized by the `sfv`
//! crate (RFC 9651 structured fields: strings escaped, integers capped at
//! 15 digits):
//!
//! - `RateLimit-Policy: "burst";q=10;w=1, "day";q=1000;w=86400` — every limit
//!   of the decision (shadow ones too), `q` its quota, `w` its window in
//!   seconds (a token bucket: the time an empty bucket takes to refill);
//! - `RateLimit: "burst";r=0;t=1, "day";r=412;t=30612` — every limit, `r` the
//!   units left, `t` the seconds until that limit is back to its full quota
//!   (a delta, never a timestamp, rounded up);
//! - `X-RateLimit-Limit/Remaining/Reset` and `Retry-After` for the binding limit;
//!   `X-RateLimit-Reset` is a Unix time in seconds by default ([`ResetField`]).

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use rl_grammar::{Quota, RATE_SCALE};
use sfv::{Integer, KeyRef, ListSerializer, StringRef};

pub use crate::model::ResetStyle;
use crate::model::{LimitCall, LimitsReply, Reply, MAX_HEADER_INT};

/// `X-RateLimit-Reset` for one answer: the style with the clock reading it
/// needs (time is an argument; the handler reads the clock once).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetField {
    Unix { now_ms: u64 },
    Delta,
}

impl ResetField {
    /// The field's value for a limit that is full again in `reset_after_ms`.
    pub fn value(self, reset_after_ms: i64) -> i64 {
        match self {
            ResetField::Delta => ceil_secs(reset_after_ms),
            ResetField::Unix { now_ms } => {
                let now = i64::try_from(now_ms).unwrap_or(i64::MAX);
                ceil_secs(now.saturating_add(reset_after_ms.max(0)))
            }
        }
    }
}

/// One limit as evaluated.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub name: String,
    pub quota: Quota,
    pub shadow: bool,
    pub reply: Reply,
}

/// The outcome of every limit of one request.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub allowed: bool,
    pub items: Vec<Item>,
    /// Index into `items` of the binding limit (the module says which), the
    /// one reported in `X-RateLimit-*` and `Retry-After`.
    pub binding: usize,
    /// The lease a `concurrency` limit took: release it with
    /// `DELETE /v1/leases/{policy}/{id}` when the work is done.
    pub lease: Option<String>,
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
/// The tier a policy decision used.
pub const X_RATELIMIT_TIER: HeaderName = HeaderName::from_static("x-ratelimit-tier");
/// `NORMAL` or `DEGRADED`: the system mode a policy decision used.
pub const X_SYSTEM_HEALTH: HeaderName = HeaderName::from_static("x-system-health");
/// Marker on `/v1/auth` answers that Nginx turns into a 429.
pub const X_RATELIMIT_DENIED: HeaderName = HeaderName::from_static("x-ratelimit-denied");
/// Marker on `/v1/auth` answers that Nginx turns into a 503.
pub const X_RATELIMIT_ERROR: HeaderName = HeaderName::from_static("x-ratelimit-error");
/// Set when a request was let through only because Redis was down and
/// `fail_open = true`.
pub const X_RATELIMIT_FAIL_OPEN: HeaderName = HeaderName::from_static("x-ratelimit-fail-open");
/// The lease a granted request holds (policies with a `concurrency` limit).
pub const X_LEASE_ID: HeaderName = HeaderName::from_static("x-lease-id");

/// The window `w` in whole seconds, rounded up. A token bucket has no window;
/// it reports the time an empty bucket takes to refill completely.
pub fn window_secs(q: &Quota) -> u64 {
    let ceil_div = |a: u128, b: u128| if b == 0 { u128::MAX } else { a.div_ceil(b) };
    let secs = match q {
        Quota::TokenBucket(t) => ceil_div(
            u128::from(t.capacity()) * u128::from(RATE_SCALE),
            u128::from(t.rate_nano()),
        ),
        Quota::FixedWindow(w) | Quota::SlidingExact(w) | Quota::SlidingApprox(w) => {
            ceil_div(u128::from(w.window_ms()), 1000)
        }
        // A lease's window is its ttl.
        Quota::Concurrency(c) => ceil_div(u128::from(c.ttl_ms()), 1000),
    };
    u64::try_from(secs).unwrap_or(u64::MAX)
}

/// A structured-field integer, capped at 15 digits (never negative here).
fn sf_int(v: u64) -> Integer {
    Integer::try_from(v.min(MAX_HEADER_INT)).unwrap_or(Integer::MAX)
}

fn sf_non_negative(v: i64) -> Integer {
    sf_int(u64::try_from(v).unwrap_or(0))
}

/// Serializes a list of `"name";k1=v1;k2=v2` items.
fn sf_list<'a>(items: impl IntoIterator<Item = (&'a str, [(&'static str, Integer); 2])>) -> String {
    let mut ser = ListSerializer::new();
    for (name, params) in items {
        // Names come from configuration ([A-Za-z0-9_.-]) or are fixed words;
        // anything sfv refuses is skipped rather than sent malformed.
        let Ok(s) = StringRef::from_str(name) else {
            continue;
        };
        let mut p = ser.bare_item(s);
        for (k, v) in params {
            p = p.parameter(KeyRef::constant(k), v);
        }
    }
    ser.finish().unwrap_or_default()
}

fn value(s: String) -> HeaderValue {
    // sfv output and decimal digits are always valid header values.
    HeaderValue::from_str(&s).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// `RateLimit-Policy` for the given limits (from configuration, so it can be
/// sent even when Redis did not answer).
pub fn policy_header<'a>(limits: impl IntoIterator<Item = (&'a str, &'a Quota)>) -> HeaderValue {
    value(sf_list(limits.into_iter().map(|(name, q)| {
        (
            name,
            [("q", sf_int(q.limit())), ("w", sf_int(window_secs(q)))],
        )
    })))
}

impl Decision {
    /// Pairs the `RL.LIMITS` reply with the calls that produced it; `None` if
    /// the reply does not match (a bug or version skew).
    pub fn from_limits(calls: &[LimitCall], reply: LimitsReply) -> Option<Decision> {
        if reply.limits.len() != calls.len() || reply.binding >= calls.len() {
            return None;
        }
        let items = calls
            .iter()
            .zip(reply.limits)
            .map(|(c, r)| Item {
                name: c.name.clone(),
                quota: *c.quota(),
                shadow: c.shadow(),
                reply: r,
            })
            .collect();
        Some(Decision {
            allowed: reply.allowed,
            items,
            binding: reply.binding,
            lease: reply.lease,
        })
    }

    /// One single-command reply (raw endpoints).
    pub fn single(name: &str, quota: Quota, reply: Reply) -> Decision {
        Decision {
            allowed: reply.allowed,
            items: vec![Item {
                name: name.to_owned(),
                quota,
                shadow: false,
                reply,
            }],
            binding: 0,
            lease: None,
        }
    }

    /// The binding limit.
    pub fn binding(&self) -> Option<&Item> {
        self.items.get(self.binding)
    }

    /// `true` if the binding limit says the request can never succeed.
    pub fn never(&self) -> bool {
        !self.allowed && self.binding().is_some_and(|c| c.reply.retry_after_ms < 0)
    }

    /// The enforced limits that denied this request (`violated-policies`).
    pub fn violated(&self) -> Vec<&str> {
        self.items
            .iter()
            .filter(|i| !i.shadow && !i.reply.allowed)
            .map(|i| i.name.as_str())
            .collect()
    }

    /// Shadow limits that would have denied (reported, never enforced).
    pub fn shadow_denials(&self) -> impl Iterator<Item = &Item> {
        self.items.iter().filter(|i| i.shadow && !i.reply.allowed)
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

    /// The rate-limit header fields of this decision. The IETF `t` is always
    /// a delta; `X-RateLimit-Reset` follows `reset`.
    pub fn headers(&self, reset: ResetField) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            RATELIMIT_POLICY,
            policy_header(self.items.iter().map(|i| (i.name.as_str(), &i.quota))),
        );
        h.insert(
            RATELIMIT,
            value(sf_list(self.items.iter().map(|i| {
                (
                    i.name.as_str(),
                    [
                        ("r", sf_non_negative(i.reply.remaining)),
                        ("t", sf_non_negative(ceil_secs(i.reply.reset_after_ms))),
                    ],
                )
            }))),
        );
        if let Some(b) = self.binding() {
            let digits = |v: i64| value(i64::from(sf_non_negative(v)).to_string());
            h.insert(X_RATELIMIT_LIMIT, digits(b.reply.limit));
            h.insert(X_RATELIMIT_REMAINING, digits(b.reply.remaining));
            h.insert(
                X_RATELIMIT_RESET,
                digits(reset.value(b.reply.reset_after_ms)),
            );
        }
        if let Some(secs) = self.retry_after_secs() {
            h.insert(
                axum::http::header::RETRY_AFTER,
                value(i64::from(sf_non_negative(secs)).to_string()),
            );
        }
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rl_grammar::{TokenBucketQuota, WindowQuota};

    fn window(limit: u64, window_ms: u64) -> Quota {
        Quota::FixedWindow(WindowQuota::new(limit, window_ms).expect("quota"))
    }

    fn item(name: &str, allowed: bool, remaining: i64, retry: i64, reset: i64) -> Item {
        Item {
            name: name.into(),
            quota: window(100, 60_000),
            shadow: false,
            reply: Reply {
                allowed,
                limit: 100,
                remaining,
                retry_after_ms: retry,
                reset_after_ms: reset,
            },
        }
    }

    fn decision(allowed: bool, binding: usize, items: Vec<Item>) -> Decision {
        Decision {
            allowed,
            items,
            binding,
            lease: None,
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
    fn both_fields_list_every_limit() {
        let d = decision(
            true,
            1,
            vec![
                item("second", true, 4, 0, 1_000),
                item("day", true, 2, 0, 86_000_000),
            ],
        );
        let h = d.headers(ResetField::Delta);
        assert_eq!(
            header(&h, "ratelimit-policy"),
            "\"second\";q=100;w=60, \"day\";q=100;w=60"
        );
        assert_eq!(
            header(&h, "ratelimit"),
            "\"second\";r=4;t=1, \"day\";r=2;t=86000"
        );
        assert_eq!(header(&h, "x-ratelimit-remaining"), "2");
        assert_eq!(header(&h, "retry-after"), "<absent>");
    }

    #[test]
    fn denial_names_the_violated_limits_and_rounds_retry_after_up() {
        let mut shadow = item("shadowed", false, 0, 9_000, 9_000);
        shadow.shadow = true;
        let d = decision(
            false,
            1,
            vec![
                item("second", false, 0, 300, 1_000),
                item("minute", false, 0, 20_001, 60_000),
                item("day", true, 50, 0, 86_000_000),
                shadow,
            ],
        );
        assert_eq!(d.violated(), ["second", "minute"]);
        assert_eq!(d.shadow_denials().count(), 1);
        let h = d.headers(ResetField::Delta);
        assert_eq!(header(&h, "retry-after"), "21");
        assert_eq!(header(&h, "x-ratelimit-reset"), "60");
    }

    #[test]
    fn never_has_no_retry_after_and_a_tiny_wait_says_one_second() {
        let d = decision(
            false,
            1,
            vec![
                item("a", false, 0, 5_000, 1_000),
                item("b", false, 3, -1, 1_000),
            ],
        );
        assert!(d.never());
        assert_eq!(d.retry_after_secs(), None);
        let d = decision(false, 0, vec![item("a", false, 0, 1, 1)]);
        assert_eq!(d.retry_after_secs(), Some(1));
    }

    /// Defect 7: no header integer ever exceeds 15 digits.
    #[test]
    fn huge_values_are_capped_to_structured_field_integers() {
        let tb = Quota::TokenBucket(TokenBucketQuota::new(MAX_HEADER_INT, 1).expect("quota"));
        let h = policy_header([("big", &tb)]);
        assert_eq!(
            h.to_str().ok(),
            Some("\"big\";q=999999999999999;w=999999999999999")
        );
        let mut i = item("x", true, i64::MAX, 0, i64::MAX);
        i.reply.limit = i64::MAX;
        let h = decision(true, 0, vec![i]).headers(ResetField::Delta);
        assert_eq!(
            header(&h, "ratelimit"),
            "\"x\";r=999999999999999;t=999999999999999"
        );
        assert_eq!(header(&h, "x-ratelimit-limit"), "999999999999999");
        // sfv escapes what it must.
        let q = window(1, 1_000);
        let h = policy_header([("a\"b", &q)]);
        assert_eq!(h.to_str().ok(), Some(r#""a\"b";q=1;w=1"#));
    }

    /// `X-RateLimit-Reset` is a Unix time by default, rounded up; the IETF
    /// `t` stays a delta either way.
    #[test]
    fn reset_is_a_unix_time_unless_delta_is_asked_for() {
        let d = decision(true, 0, vec![item("a", true, 1, 0, 2_500)]);
        let now_ms = 1_700_000_000_250;
        let h = d.headers(ResetField::Unix { now_ms });
        // 1_700_000_000.25 s + 2.5 s = 1_700_000_002.75 -> 1_700_000_003.
        assert_eq!(header(&h, "x-ratelimit-reset"), "1700000003");
        assert_eq!(header(&h, "ratelimit"), "\"a\";r=1;t=3");
        let h = d.headers(ResetField::Delta);
        assert_eq!(header(&h, "x-ratelimit-reset"), "3");
        assert_eq!(header(&h, "ratelimit"), "\"a\";r=1;t=3");
        // A full limit resets "now"; a huge reset saturates instead of wrapping.
        assert_eq!(ResetField::Unix { now_ms: 1_000 }.value(0), 1);
        assert_eq!(ResetField::Unix { now_ms: 1_000 }.value(-5), 1);
        assert!(ResetField::Unix { now_ms: u64::MAX }.value(i64::MAX) > 0);
    }

    #[test]
    fn token_bucket_window_is_the_full_refill_time_rounded_up() {
        let tb = Quota::TokenBucket(TokenBucketQuota::new(10, 3 * RATE_SCALE).expect("quota"));
        assert_eq!(window_secs(&tb), 4);
        assert_eq!(window_secs(&window(1, 250)), 1);
    }
}
