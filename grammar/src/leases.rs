//! The arguments of the concurrency-lease commands.
//!
//! ```text
//! RL.ACQUIRE key limit ttl [ID id] [COST n]
//! RL.RELEASE key id
//! RL.RENEW key id ttl
//! ```
//!
//! `limit` is the most slots held at once, `ttl` how long (seconds, to the
//! millisecond) a lease lives unless renewed or released. `ID` names the
//! lease (1 to [`MAX_LEASE_ID_LEN`] bytes); without it the module makes one.
//! `COST` takes that many slots (default 1).

use std::fmt;

use crate::bounds::{MAX_COUNT, MAX_LEASES_CAP};
#[cfg(test)]
use crate::bounds::{MAX_LEASES_DEFAULT, MAX_WINDOW_MS};
use crate::number::{parse_count, parse_window_ms, shown};
use crate::quota::LeaseQuota;
#[cfg(test)]
use crate::quota::QuotaError;

pub const USAGE_ACQUIRE: &str = "RL.ACQUIRE key limit ttl [ID id] [COST n]";
pub const USAGE_RELEASE: &str = "RL.RELEASE key id";
pub const USAGE_RENEW: &str = "RL.RENEW key id ttl";

/// The longest lease id, in bytes.
pub const MAX_LEASE_ID_LEN: usize = 64;
/// Why the arguments of a lease command were refused: the `ERR …` line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseArgError(String);

impl fmt::Display for LeaseArgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<LeaseArgError> for String {
    fn from(e: LeaseArgError) -> String {
        e.0
    }
}

fn err(msg: String) -> LeaseArgError {
    LeaseArgError(msg)
}

fn arity(usage: &str) -> LeaseArgError {
    err(format!("ERR wrong number of arguments: usage {usage}"))
}

/// A parsed `RL.ACQUIRE`: the quota, the caller's lease id (if given) and
/// the slots to take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Acquire<'a> {
    pub quota: LeaseQuota,
    pub id: Option<&'a [u8]>,
    pub cost: u64,
}

/// A lease id: 1 to [`MAX_LEASE_ID_LEN`] bytes.
pub fn parse_lease_id(arg: &[u8]) -> Result<&[u8], LeaseArgError> {
    if arg.is_empty() || arg.len() > MAX_LEASE_ID_LEN {
        return Err(err(format!(
            "ERR lease id must be 1 to {MAX_LEASE_ID_LEN} bytes, got {} bytes",
            arg.len()
        )));
    }
    Ok(arg)
}

/// A ttl in seconds, to the millisecond: milliseconds.
pub fn parse_ttl_ms(arg: &[u8]) -> Result<u64, LeaseArgError> {
    // The window's grammar and bounds, under the argument's own name.
    parse_window_ms(arg).map_err(|e| err(e.replacen("ERR window", "ERR ttl", 1)))
}

/// `limit ttl` of a lease quota (`RL.ACQUIRE`, `CONCURRENCY` in `RL.LIMITS`).
pub fn parse_lease_quota(limit: &[u8], ttl: &[u8]) -> Result<LeaseQuota, LeaseArgError> {
    let limit = match parse_count("limit", limit, 1) {
        Ok(v) if v <= MAX_LEASES_CAP => v,
        _ => {
            return Err(err(format!(
            "ERR limit must be an integer from 1 to {MAX_LEASES_CAP} (concurrent slots), got '{}'",
            shown(limit)
        )))
        }
    };
    let ttl_ms = parse_ttl_ms(ttl)?;
    LeaseQuota::new(limit, ttl_ms).map_err(|e| err(format!("ERR limit {e}")))
}

fn is(word: &[u8], keyword: &str) -> bool {
    word.eq_ignore_ascii_case(keyword.as_bytes())
}

/// `RL.ACQUIRE key limit ttl [ID id] [COST n]`: `args` excludes the command
/// and the key. `ID` and `COST` come in any order, once each.
pub fn parse_acquire<'a>(args: &[&'a [u8]]) -> Result<Acquire<'a>, LeaseArgError> {
    let [limit, ttl, rest @ ..] = args else {
        return Err(arity(USAGE_ACQUIRE));
    };
    let mut rest = rest;
    let quota = parse_lease_quota(limit, ttl)?;
    let mut id = None;
    let mut cost = None;
    while let [word, tail @ ..] = rest {
        let [value, tail @ ..] = tail else {
            return if is(word, "ID") || is(word, "COST") {
                Err(err(format!(
                    "ERR {} needs a value: usage {USAGE_ACQUIRE}",
                    shown(word).to_ascii_uppercase()
                )))
            } else {
                Err(unknown_option(word))
            };
        };
        if is(word, "ID") {
            if id.is_some() {
                return Err(err("ERR ID is given twice".into()));
            }
            id = Some(parse_lease_id(value)?);
        } else if is(word, "COST") {
            if cost.is_some() {
                return Err(err("ERR COST is given twice".into()));
            }
            cost = Some(parse_count("cost", value, 1).map_err(|_| {
                err(format!(
                    "ERR cost must be an integer from 1 to {MAX_COUNT} (slots to take), got '{}'",
                    shown(value)
                ))
            })?);
        } else {
            return Err(unknown_option(word));
        }
        rest = tail;
    }
    Ok(Acquire {
        quota,
        id,
        cost: cost.unwrap_or(1),
    })
}

fn unknown_option(word: &[u8]) -> LeaseArgError {
    err(format!(
        "ERR unknown option '{}': expected ID or COST (usage {USAGE_ACQUIRE})",
        shown(word)
    ))
}

/// `RL.RELEASE key id`: the lease id.
pub fn parse_release<'a>(args: &[&'a [u8]]) -> Result<&'a [u8], LeaseArgError> {
    let [id] = args else {
        return Err(arity(USAGE_RELEASE));
    };
    parse_lease_id(id)
}

/// `RL.RENEW key id ttl`: the lease id and the new ttl in ms.
pub fn parse_renew<'a>(args: &[&'a [u8]]) -> Result<(&'a [u8], u64), LeaseArgError> {
    let [id, ttl] = args else {
        return Err(arity(USAGE_RENEW));
    };
    Ok((parse_lease_id(id)?, parse_ttl_ms(ttl)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<&[u8]> {
        line.split_whitespace().map(str::as_bytes).collect()
    }

    #[test]
    fn acquire_takes_id_and_cost_in_any_order() {
        let a = parse_acquire(&words("3 30")).expect("valid");
        assert_eq!(
            (a.quota.limit(), a.quota.ttl_ms(), a.id, a.cost),
            (3, 30_000, None, 1)
        );
        let a = parse_acquire(&words("3 0.25 cost 2 id job-7")).expect("valid");
        assert_eq!(
            (a.quota.ttl_ms(), a.id, a.cost),
            (250, Some(&b"job-7"[..]), 2)
        );
        let a = parse_acquire(&words("3 1.5 ID x COST 3")).expect("valid");
        assert_eq!(
            (a.quota.ttl_ms(), a.id, a.cost),
            (1_500, Some(&b"x"[..]), 3)
        );
        // A cost above the limit parses: the reply says it can never succeed.
        assert_eq!(parse_acquire(&words("3 1 COST 4")).expect("valid").cost, 4);
    }

    #[test]
    fn every_malformed_lease_call_names_what_to_fix() {
        let id65 = "i".repeat(MAX_LEASE_ID_LEN + 1);
        let cap = format!("{} 1", MAX_LEASES_CAP + 1);
        for (line, want) in [
            ("", "wrong number of arguments: usage RL.ACQUIRE"),
            ("3", "wrong number of arguments"),
            ("0 30", "ERR limit must be an integer from 1 to 100000"),
            (
                cap.as_str(),
                "ERR limit must be an integer from 1 to 100000",
            ),
            ("x 30", "ERR limit must be"),
            ("3 0", "ERR ttl must be from 0.001"),
            ("3 0.0005", "ERR ttl must be a whole number of milliseconds"),
            ("3 -1", "ERR ttl must be a positive decimal"),
            ("3 inf", "ERR ttl must be a positive decimal"),
            ("3 30 ID", "ERR ID needs a value"),
            ("3 30 COST", "ERR COST needs a value"),
            ("3 30 COST 0", "ERR cost must be an integer from 1"),
            ("3 30 COST -1", "ERR cost must be an integer from 1"),
            ("3 30 COST 1.5", "ERR cost must be"),
            ("3 30 COST 1 COST 1", "ERR COST is given twice"),
            ("3 30 ID a ID b", "ERR ID is given twice"),
            ("3 30 FOO", "ERR unknown option 'FOO'"),
            ("3 30 FOO 1", "ERR unknown option 'FOO'"),
        ] {
            let e = parse_acquire(&words(line)).expect_err(line).to_string();
            assert!(e.contains(want), "{line}: {e}");
        }
        let e = parse_acquire(&words(&format!("3 30 ID {id65}"))).expect_err("long id");
        assert!(
            e.to_string()
                .contains("ERR lease id must be 1 to 64 bytes, got 65"),
            "{e}"
        );
        let e = parse_acquire(&[b"3", b"30", b"ID", b""]).expect_err("empty id");
        assert!(e.to_string().contains("got 0 bytes"), "{e}");
    }

    #[test]
    fn release_and_renew() {
        assert_eq!(parse_release(&words("job-7")), Ok(&b"job-7"[..]));
        assert_eq!(parse_renew(&words("job-7 2.5")), Ok((&b"job-7"[..], 2_500)));
        for (line, want) in [
            ("", "usage RL.RELEASE key id"),
            ("a b", "usage RL.RELEASE key id"),
        ] {
            let e = parse_release(&words(line)).expect_err(line).to_string();
            assert!(e.contains(want), "{line}: {e}");
        }
        for (line, want) in [
            ("a", "usage RL.RENEW key id ttl"),
            ("a 1 2", "usage RL.RENEW key id ttl"),
            ("a 0", "ERR ttl must be"),
        ] {
            let e = parse_renew(&words(line)).expect_err(line).to_string();
            assert!(e.contains(want), "{line}: {e}");
        }
        assert!(parse_release(&[b""]).is_err());
    }

    #[test]
    fn the_configured_maximum_is_checked_with_a_clear_error() {
        let q = LeaseQuota::new(2000, 1000).expect("valid");
        let e = q.check_max_leases(MAX_LEASES_DEFAULT).expect_err("above");
        assert!(
            e.starts_with("ERR limit 2000 is above ratelimit.max-leases (1024)"),
            "{e}"
        );
        assert!(q.check_max_leases(2000).is_ok());
        assert_eq!(
            crate::quota::Quota::Concurrency(q).args().join(" "),
            "CONCURRENCY 2000 1"
        );
    }

    #[test]
    fn quotas_refuse_values_that_cannot_work() {
        assert_eq!(LeaseQuota::new(0, 1), Err(QuotaError::Limit));
        assert_eq!(
            LeaseQuota::new(MAX_LEASES_CAP + 1, 1),
            Err(QuotaError::Limit)
        );
        assert_eq!(LeaseQuota::new(1, 0), Err(QuotaError::Window));
        assert_eq!(
            LeaseQuota::new(1, MAX_WINDOW_MS + 1),
            Err(QuotaError::Window)
        );
        assert!(LeaseQuota::new(MAX_LEASES_CAP, MAX_WINDOW_MS).is_ok());
    }
}
