//! Who is asking: client address (with trusted-proxy handling) and API keys.

use std::net::IpAddr;

use axum::http::HeaderMap;
use ipnet::IpNet;
use sha2::{Digest, Sha256};

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
