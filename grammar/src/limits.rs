//! The spec list of `RL.LIMITS key cost spec [spec ...]`.
//!
//! ```text
//! spec := [NAME name] TOKENBUCKET capacity rate
//!       | [NAME name] FIXEDWINDOW limit window
//!       | [NAME name] SLIDING limit window [EXACT|APPROX]
//!       | [NAME name] CONCURRENCY limit ttl          (at most one per call)
//!         each optionally followed by COST n and/or SHADOW (once each, any order)
//! ```

use crate::leases::parse_lease_quota;
use crate::number::{parse_cost, parse_count, parse_rate, shown};
use crate::quota::{Quota, TokenBucketQuota, WindowQuota};

pub const USAGE_LIMITS: &str = "RL.LIMITS key cost spec [spec ...], spec: [NAME name] TOKENBUCKET capacity rate | FIXEDWINDOW limit window | SLIDING limit window [EXACT|APPROX] | CONCURRENCY limit ttl, then [COST n] [SHADOW]";

/// The most limits one call (and so one key) holds.
pub const MAX_LIMITS: usize = 16;
/// The longest `NAME`, in bytes (it is stored as a 32-bit hash).
pub const MAX_NAME_LEN: usize = 64;

/// One limit of an `RL.LIMITS` call. The name is owned by default; the
/// module parses with borrowed names ([`parse_limits_borrowed`]), which
/// saves an allocation per limit on every call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LimitSpec<N = Vec<u8>> {
    pub name: Option<N>,
    pub quota: Quota,
    /// This limit's own cost; `None`: the call's cost.
    pub cost: Option<i64>,
    /// Observed, never denies.
    pub shadow: bool,
}

impl<N: AsRef<[u8]>> LimitSpec<N> {
    /// The words of this spec: `[NAME n] ALGO params [COST n] [SHADOW]`.
    pub fn args(&self) -> Vec<String> {
        let mut out = Vec::with_capacity(8);
        if let Some(name) = &self.name {
            out.push("NAME".into());
            out.push(String::from_utf8_lossy(name.as_ref()).into_owned());
        }
        out.extend(self.quota.args());
        if let Some(cost) = self.cost {
            out.push("COST".into());
            out.push(cost.to_string());
        }
        if self.shadow {
            out.push("SHADOW".into());
        }
        out
    }

    /// The effective cost of this limit in a call of `call_cost`.
    pub fn cost_in(&self, call_cost: i64) -> i64 {
        self.cost.unwrap_or(call_cost)
    }
}

/// The stored form of a `NAME`: 32-bit FNV-1a, stable across builds.
pub fn name_hash(name: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for &b in name {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

fn is(word: &[u8], keyword: &str) -> bool {
    word.eq_ignore_ascii_case(keyword.as_bytes())
}

/// Parses everything after the key: the call's cost and the specs.
pub fn parse_limits(args: &[&[u8]]) -> Result<(i64, Vec<LimitSpec>), String> {
    let (cost, specs) = parse_limits_borrowed(args)?;
    let owned = specs
        .into_iter()
        .map(|s| LimitSpec {
            name: s.name.map(<[u8]>::to_vec),
            quota: s.quota,
            cost: s.cost,
            shadow: s.shadow,
        })
        .collect();
    Ok((cost, owned))
}

/// A spec whose name borrows from the command's arguments.
pub type BorrowedSpec<'a> = LimitSpec<&'a [u8]>;

/// [`parse_limits`] with names borrowed from the arguments.
pub fn parse_limits_borrowed<'a>(
    args: &[&'a [u8]],
) -> Result<(i64, Vec<BorrowedSpec<'a>>), String> {
    let arity = || format!("ERR wrong number of arguments: usage {USAGE_LIMITS}");
    let (cost, mut rest) = match args {
        [cost, rest @ ..] if !rest.is_empty() => (parse_cost(cost)?, rest),
        _ => return Err(arity()),
    };
    let mut specs: Vec<BorrowedSpec> = Vec::with_capacity((rest.len() / 3 + 1).min(MAX_LIMITS));
    while !rest.is_empty() {
        if specs.len() == MAX_LIMITS {
            return Err(format!(
                "ERR too many limits: at most {MAX_LIMITS} in one RL.LIMITS call"
            ));
        }
        let n = specs.len() + 1;
        let (spec, tail) = parse_spec(rest).map_err(|e| format!("ERR limit #{n}: {e}"))?;
        let leases = |s: &BorrowedSpec| matches!(s.quota, Quota::Concurrency(_));
        if leases(&spec) && specs.iter().any(leases) {
            return Err(format!(
                "ERR limit #{n}: CONCURRENCY is given twice: one call holds at most one lease"
            ));
        }
        if let Some(name) = spec.name {
            let h = name_hash(name);
            if let Some(other) = specs
                .iter()
                .filter_map(|s| s.name)
                .find(|o| name_hash(o) == h)
            {
                return Err(if other == name {
                    format!("ERR limit #{n}: NAME '{}' is used twice", shown(name))
                } else {
                    format!(
                        "ERR limit #{n}: NAME '{}' collides with '{}' (names are stored as a 32-bit hash): rename one",
                        shown(name),
                        shown(other)
                    )
                });
            }
        }
        specs.push(spec);
        rest = tail;
    }
    Ok((cost, specs))
}

/// One spec from the front of `args`; returns it and what follows.
/// One spec and the arguments after it.
type Parsed<'a, 'b> = (BorrowedSpec<'a>, &'b [&'a [u8]]);

fn parse_spec<'a, 'b>(mut args: &'b [&'a [u8]]) -> Result<Parsed<'a, 'b>, String> {
    let mut name = None;
    if let [word, tail @ ..] = args {
        if is(word, "NAME") {
            let [n, tail @ ..] = tail else {
                return Err("NAME needs a name".into());
            };
            if n.is_empty() || n.len() > MAX_NAME_LEN {
                return Err(format!(
                    "NAME must be 1 to {MAX_NAME_LEN} bytes, got {} bytes",
                    n.len()
                ));
            }
            name = Some(*n);
            args = tail;
        }
    }
    let needs = |algo: &str, params: &str| format!("{algo} needs {params}");
    let (quota, mut args) = match args {
        [algo, rest @ ..] if is(algo, "TOKENBUCKET") => {
            let [capacity, rate, rest @ ..] = rest else {
                return Err(needs("TOKENBUCKET", "capacity and rate"));
            };
            let capacity = parse_count("capacity", capacity, 1).map_err(strip)?;
            let rate = parse_rate(rate).map_err(strip)?;
            let q = TokenBucketQuota::new(capacity, rate).map_err(|e| format!("capacity {e}"))?;
            (Quota::TokenBucket(q), rest)
        }
        [algo, rest @ ..] if is(algo, "FIXEDWINDOW") => {
            let [limit, window, rest @ ..] = rest else {
                return Err(needs("FIXEDWINDOW", "limit and window"));
            };
            (Quota::FixedWindow(window_quota(limit, window)?), rest)
        }
        [algo, rest @ ..] if is(algo, "SLIDING") => {
            let [limit, window, rest @ ..] = rest else {
                return Err(needs("SLIDING", "limit and window"));
            };
            let q = window_quota(limit, window)?;
            // A word other than EXACT/APPROX is the next option, not a mode.
            match rest {
                [m, tail @ ..] => match Quota::sliding(q, Some(m)) {
                    Some(q) => (q, tail),
                    None => (Quota::SlidingExact(q), rest),
                },
                [] => (Quota::SlidingExact(q), rest),
            }
        }
        [algo, rest @ ..] if is(algo, "CONCURRENCY") => {
            let [limit, ttl, rest @ ..] = rest else {
                return Err(needs("CONCURRENCY", "limit and ttl"));
            };
            let q = parse_lease_quota(limit, ttl).map_err(|e| strip(e.into()))?;
            (Quota::Concurrency(q), rest)
        }
        [other, ..] => {
            return Err(format!(
                "unknown limit '{}': expected [NAME name] TOKENBUCKET, FIXEDWINDOW, SLIDING or CONCURRENCY",
                shown(other)
            ))
        }
        [] => {
            return Err(
                "NAME must be followed by TOKENBUCKET, FIXEDWINDOW, SLIDING or CONCURRENCY".into(),
            )
        }
    };
    let mut cost = None;
    let mut shadow = false;
    loop {
        match args {
            [w, rest @ ..] if is(w, "COST") => {
                if cost.is_some() {
                    return Err("COST is given twice".into());
                }
                let [c, rest @ ..] = rest else {
                    return Err("COST needs a number".into());
                };
                cost = Some(parse_cost(c).map_err(strip)?);
                args = rest;
            }
            [w, rest @ ..] if is(w, "SHADOW") => {
                if shadow {
                    return Err("SHADOW is given twice".into());
                }
                shadow = true;
                args = rest;
            }
            _ => break,
        }
    }
    Ok((
        LimitSpec {
            name,
            quota,
            cost,
            shadow,
        },
        args,
    ))
}

fn window_quota(limit: &[u8], window: &[u8]) -> Result<WindowQuota, String> {
    crate::quota::window_quota(limit, window).map_err(strip)
}

/// A parser's message without its `ERR ` (the caller adds its own prefix).
fn strip(e: String) -> String {
    e.strip_prefix("ERR ").map(str::to_string).unwrap_or(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Result<(i64, Vec<LimitSpec>), String> {
        let words: Vec<&[u8]> = line.split_whitespace().map(str::as_bytes).collect();
        parse_limits(&words)
    }

    #[test]
    fn a_burst_and_a_day() {
        let (cost, specs) =
            parse("1 NAME burst TOKENBUCKET 10 1 NAME day FIXEDWINDOW 1000 86400").expect("valid");
        assert_eq!(cost, 1);
        assert_eq!(specs.len(), 2);
        assert_eq!(specs[0].name.as_deref(), Some(&b"burst"[..]));
        assert_eq!(specs[1].quota.limit(), 1000);
        assert_eq!(specs[0].args().join(" "), "NAME burst TOKENBUCKET 10 1");
    }

    #[test]
    fn cost_shadow_and_modes() {
        let (_, specs) =
            parse("0 SLIDING 5 60 approx SHADOW COST -3 sliding 5 60 COST 2 tokenbucket 3 0.5")
                .expect("valid");
        assert!(matches!(specs[0].quota, Quota::SlidingApprox(_)));
        assert_eq!((specs[0].cost, specs[0].shadow), (Some(-3), true));
        assert!(matches!(specs[1].quota, Quota::SlidingExact(_)));
        assert_eq!((specs[1].cost, specs[1].shadow), (Some(2), false));
        assert_eq!(specs[1].cost_in(7), 2);
        assert_eq!(specs[2].cost_in(7), 7);
        assert_eq!(
            specs[0].args().join(" "),
            "SLIDING 5 60 APPROX COST -3 SHADOW"
        );
    }

    #[test]
    fn every_malformed_line_names_what_to_fix() {
        for (line, want) in [
            ("", "wrong number"),
            ("1", "wrong number"),
            ("x TOKENBUCKET 1 1", "ERR cost"),
            ("1 TOKENBUCKET 1", "TOKENBUCKET needs"),
            ("1 FIXEDWINDOW 1", "FIXEDWINDOW needs"),
            ("1 SLIDING 1", "SLIDING needs"),
            ("1 LEAKY 1 1", "unknown limit"),
            ("1 NAME", "NAME needs"),
            ("1 NAME a", "must be followed"),
            ("1 NAME a NAME b TOKENBUCKET 1 1", "unknown limit"),
            ("1 TOKENBUCKET 1 1 COST", "COST needs"),
            ("1 TOKENBUCKET 1 1 COST x", "cost must be"),
            ("1 TOKENBUCKET 1 1 COST 1 COST 1", "COST is given twice"),
            ("1 TOKENBUCKET 1 1 SHADOW SHADOW", "SHADOW is given twice"),
            ("1 TOKENBUCKET 0 1", "capacity must be"),
            ("1 TOKENBUCKET 1 0", "rate must be"),
            ("1 FIXEDWINDOW 1 0.0005", "window must be"),
            ("1 SLIDING 1 1 EXACTLY", "unknown limit"),
            (
                "1 NAME a TOKENBUCKET 1 1 NAME a FIXEDWINDOW 1 1",
                "used twice",
            ),
            ("1 TOKENBUCKET 1 1 EXACT", "unknown limit"),
            ("1 CONCURRENCY 1", "CONCURRENCY needs limit and ttl"),
            (
                "1 CONCURRENCY 0 1",
                "limit #1: limit must be an integer from 1",
            ),
            ("1 CONCURRENCY 1 0", "limit #1: ttl must be"),
            (
                "1 CONCURRENCY 1 1 NAME b CONCURRENCY 2 1",
                "limit #2: CONCURRENCY is given twice",
            ),
        ] {
            let err = parse(line).expect_err(line);
            assert!(err.starts_with("ERR "), "{line}: {err}");
            assert!(err.contains(want), "{line}: {err}");
        }
        let many = format!("1{}", " FIXEDWINDOW 1 1".repeat(MAX_LIMITS + 1));
        assert!(parse(&many).expect_err("many").contains("too many limits"));
        let ok = format!("1{}", " FIXEDWINDOW 1 1".repeat(MAX_LIMITS));
        assert_eq!(parse(&ok).expect("max").1.len(), MAX_LIMITS);
        let long = format!("1 NAME {} FIXEDWINDOW 1 1", "n".repeat(MAX_NAME_LEN + 1));
        assert!(parse(&long).expect_err("long").contains("NAME must be"));
    }

    #[test]
    fn concurrency_is_one_more_spec() {
        let (_, specs) =
            parse("1 NAME rate FIXEDWINDOW 10 1 NAME inflight CONCURRENCY 3 30 COST 2 SHADOW")
                .expect("valid");
        let Quota::Concurrency(q) = specs[1].quota else {
            panic!("{:?}", specs[1].quota)
        };
        assert_eq!((q.limit(), q.ttl_ms()), (3, 30_000));
        assert_eq!((specs[1].cost, specs[1].shadow), (Some(2), true));
        assert_eq!(
            specs[1].args().join(" "),
            "NAME inflight CONCURRENCY 3 30 COST 2 SHADOW"
        );
    }

    #[test]
    fn names_hash_stably() {
        // FNV-1a test vectors: the stored form must never change.
        assert_eq!(name_hash(b""), 0x811c_9dc5);
        assert_eq!(name_hash(b"a"), 0xe40c_292c);
        assert_eq!(name_hash(b"foobar"), 0xbf9c_f968);
    }
}
