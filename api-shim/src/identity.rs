//! Who is asking: client address (with trusted-proxy handling), API keys and
//! user ids, and [`resolve`], the pure function that turns a request into the
//! policy, tier, identity key and named calls of its decision.

use std::net::IpAddr;

use axum::http::HeaderMap;
use ipnet::IpNet;
use sha2::{Digest, Sha256};

use crate::config::{Config, IdentityKind, Policy, Tier};
use crate::error::ApiError;

/// What a policy request resolved to: everything the decision needs, found
/// once. The calls of each mode are the tier's (`tier.calls(mode)`).
#[derive(Debug)]
pub struct Resolution<'c> {
    pub policy: &'c Policy,
    pub tier: &'c Tier,
    /// `k:<hash>` (API key), `u:<hash>` (user id) or `ip:<address>`.
    pub identity: String,
    /// The one Redis key of this identity under this policy.
    pub key: String,
}

/// The request facts identity depends on.
pub struct Facts<'a> {
    pub peer: IpAddr,
    pub headers: &'a HeaderMap,
    /// The value of the policy's `identity_query` parameter, if sent.
    pub query: Option<&'a str>,
}

/// Resolves policy, identity and tier. Pure: no Redis, no clock.
///
/// - `identity_kind = "api_key"` (default): a known key selects its tier and
///   its own bucket; an unknown or missing key counts as the client address
///   (or is refused with `reject_unknown_keys`), so a fresh key per request
///   gains nothing.
/// - `identity_kind = "user"`: every value is its own identity in the default
///   tier, believed only from `trusted_proxies` peers; otherwise the address.
///
/// The value comes from `identity_header` or `identity_query` (never both).
/// Callers counted by their address get `anonymous_tier`. With
/// `require_identity`, a request without a believed value is a 400 (checked
/// before `reject_unknown_keys`, whose 401 is for keys that are there but
/// unknown).
pub fn resolve<'c>(
    cfg: &'c Config,
    policy: &str,
    facts: &Facts<'_>,
) -> Result<Resolution<'c>, ApiError> {
    let policy = cfg
        .policies
        .get(policy)
        .ok_or_else(|| ApiError::NotFound(format!("unknown policy `{policy}`")))?;
    let value = match (&policy.identity_header, &policy.identity_query) {
        (Some(h), _) => facts.headers.get(h).map(|v| v.as_bytes()),
        (None, Some(_)) => facts.query.map(str::as_bytes),
        (None, None) => None,
    }
    .filter(|v| !v.is_empty());
    // A user id from an untrusted peer is not an identity: anyone could send
    // a fresh one per request (or someone else's).
    let untrusted_user = policy.identity_kind == IdentityKind::User && !cfg.is_trusted(&facts.peer);
    if policy.require_identity && (value.is_none() || untrusted_user) {
        let source = policy.identity_source().unwrap_or_default();
        return Err(ApiError::BadRequest(if value.is_some() {
            format!(
                "this policy requires an identity in {source}; a user id is accepted only through a trusted proxy"
            )
        } else {
            format!("this policy requires an identity in {source}")
        }));
    }
    let by_address = || {
        format!(
            "ip:{}",
            client_ip(facts.peer, facts.headers, &cfg.trusted_proxies)
        )
    };
    let (identity, tier_name) = match (policy.identity_kind, value) {
        (IdentityKind::ApiKey, Some(v)) => {
            let known = std::str::from_utf8(v)
                .ok()
                .and_then(|k| cfg.api_keys.get(k))
                .filter(|t| policy.tiers.contains_key(*t));
            match known {
                Some(t) => (format!("k:{}", hashed(v)), t.as_str()),
                None if policy.reject_unknown_keys => {
                    return Err(ApiError::Unauthorized("unknown API key".to_owned()))
                }
                None => (by_address(), policy.anonymous_tier.as_str()),
            }
        }
        (IdentityKind::ApiKey, None) if policy.reject_unknown_keys => {
            return Err(ApiError::Unauthorized("an API key is required".to_owned()))
        }
        (IdentityKind::User, Some(v)) if !untrusted_user => {
            (format!("u:{}", hashed(v)), policy.default_tier.as_str())
        }
        _ => (by_address(), policy.anonymous_tier.as_str()),
    };
    let tier = policy
        .tiers
        .get(tier_name)
        .ok_or_else(|| ApiError::Internal(format!("tier `{tier_name}` vanished")))?;
    let key = cfg.policy_key(&policy.name, &identity);
    Ok(Resolution {
        policy,
        tier,
        identity,
        key,
    })
}

/// The client address for rate limiting.
///
/// `X-Forwarded-For` is only believed when the TCP peer is a trusted proxy;
/// otherwise anyone could pick a fresh address per request. The header is read
/// right to left, skipping trusted proxies, so a client cannot spoof an entry:
/// the first untrusted hop is the one our own proxy saw. If every hop is
/// trusted, the leftmost is the client. Unparsable entries stop the walk and
/// the last trusted address seen is used, which errs on the side of limiting.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let mut client = peer;
    let hops = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>();
    for hop in hops.iter().rev() {
        match hop.parse::<IpAddr>() {
            Ok(ip) => {
                client = ip;
                if !is_trusted(&ip) {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    client
}

/// A short, stable, non-reversible stand-in for a header identity.
///
/// API keys are secrets: putting them verbatim in Redis key names would show
/// them to anyone with `SCAN` or `MONITOR`. 64 bits of SHA-256 keep distinct
/// users apart in practice.
pub fn hashed(value: &[u8]) -> String {
    let digest = Sha256::digest(value);
    let mut s = String::with_capacity(16);
    for b in digest.iter().take(8) {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// Constant-time equality of two secrets, independent of their lengths:
/// hashing first gives equal-length inputs to the constant-time compare.
pub fn secret_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    let ha = Sha256::digest(a);
    let hb = Sha256::digest(b);
    ha.as_slice().ct_eq(hb.as_slice()).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn nets(v: &[&str]) -> Vec<IpNet> {
        v.iter().map(|s| s.parse().expect("net")).collect()
    }

    fn xff(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_str(v).expect("header"));
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn untrusted_peer_cannot_spoof() {
        let t = nets(&["10.0.0.0/8"]);
        assert_eq!(
            client_ip(ip("203.0.113.9"), &xff("1.2.3.4"), &t),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn trusted_peer_uses_first_untrusted_hop_from_the_right() {
        let t = nets(&["10.0.0.0/8", "127.0.0.1/32"]);
        // The client wrote "6.6.6.6" itself; our proxy appended the real 1.2.3.4.
        let h = xff("6.6.6.6, 1.2.3.4, 10.0.0.2");
        assert_eq!(client_ip(ip("127.0.0.1"), &h, &t), ip("1.2.3.4"));
    }

    #[test]
    fn all_trusted_hops_give_the_leftmost() {
        let t = nets(&["10.0.0.0/8"]);
        assert_eq!(
            client_ip(ip("10.0.0.1"), &xff("10.1.1.1, 10.0.0.3"), &t),
            ip("10.1.1.1")
        );
    }

    #[test]
    fn no_header_or_garbage_keeps_a_trusted_address() {
        let t = nets(&["10.0.0.0/8"]);
        assert_eq!(
            client_ip(ip("10.0.0.1"), &HeaderMap::new(), &t),
            ip("10.0.0.1")
        );
        assert_eq!(
            client_ip(ip("10.0.0.1"), &xff("garbage"), &t),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn secrets_compare_by_value() {
        assert!(secret_eq(b"0123456789abcdef", b"0123456789abcdef"));
        assert!(!secret_eq(b"0123456789abcdef", b"0123456789abcdeF"));
        assert!(!secret_eq(b"short", b"0123456789abcdef"));
        assert_eq!(hashed(b"k").len(), 16);
        assert_ne!(hashed(b"a"), hashed(b"b"));
    }
}
