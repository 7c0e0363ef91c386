//! Argument parsing: bytes in, validated quotas out, or an `ERR` message that
//! names the argument and says what to fix. The numbers and quotas are the
//! shared grammar's (`rl_grammar`), which the HTTP shim uses too.

use rl_grammar::{
    parse_cost, parse_count as count, parse_rate as rate, shown, window_quota, Quota, QuotaError,
    TokenBucketQuota, MAX_COUNT, RATE_SCALE,
};

/// One-line usage of each command, as the README shows it.
pub const USAGE_TOKENBUCKET: &str = "RL.TOKENBUCKET key capacity rate cost";
pub const USAGE_FIXEDWINDOW: &str = "RL.FIXEDWINDOW key limit window cost";
pub const USAGE_SLIDING: &str = "RL.SLIDING key limit window cost [EXACT|APPROX]";
pub const USAGE_THROTTLE: &str = "CL.THROTTLE key max_burst count period [quantity]";

/// A parsed call: the quota and the cost (negative: a refund).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Call {
    pub quota: Quota,
    pub cost: i64,
}

/// `ERR wrong number of arguments ...` with the usage line.
pub fn arity_error(usage: &str) -> String {
    format!("ERR wrong number of arguments: usage {usage}")
}

fn quota_error(name: &str, e: QuotaError) -> String {
    format!("ERR {name} {e}")
}

/// `RL.TOKENBUCKET key capacity rate cost`: `args` excludes command and key.
pub fn token_bucket(args: &[&[u8]]) -> Result<Call, String> {
    let [capacity, rate_arg, cost] = args else {
        return Err(arity_error(USAGE_TOKENBUCKET));
    };
    let capacity = count("capacity", capacity, 1)?;
    let rate_nano = rate(rate_arg)?;
    let cost = parse_cost(cost)?;
    let quota =
        TokenBucketQuota::new(capacity, rate_nano).map_err(|e| quota_error("capacity", e))?;
    Ok(Call {
        quota: Quota::TokenBucket(quota),
        cost,
    })
}

/// `RL.FIXEDWINDOW key limit window cost`
pub fn fixed_window(args: &[&[u8]]) -> Result<Call, String> {
    let [limit, window, cost] = args else {
        return Err(arity_error(USAGE_FIXEDWINDOW));
    };
    let quota = window_quota(limit, window)?;
    Ok(Call {
        quota: Quota::FixedWindow(quota),
        cost: parse_cost(cost)?,
    })
}

/// `RL.SLIDING key limit window cost [EXACT|APPROX]`
pub fn sliding(args: &[&[u8]]) -> Result<Call, String> {
    let (limit, window, cost, mode) = match args {
        [l, w, c] => (l, w, c, None),
        [l, w, c, m] => (l, w, c, Some(m)),
        _ => return Err(arity_error(USAGE_SLIDING)),
    };
    let quota = window_quota(limit, window)?;
    let cost = parse_cost(cost)?;
    let quota = Quota::sliding(quota, mode.map(|m| &**m)).ok_or_else(|| {
        format!(
            "ERR unknown option '{}': expected EXACT or APPROX",
            shown(mode.map_or(&[][..], |m| &**m))
        )
    })?;
    Ok(Call { quota, cost })
}

/// `CL.THROTTLE key max_burst count period [quantity]`, redis-cell's meaning:
/// a bucket of `max_burst + 1` tokens refilled at `count` per `period`
/// seconds. A refill rate that is not a whole number of nano-tokens per
/// second is rounded down (never grants more than asked).
pub fn throttle(args: &[&[u8]]) -> Result<Call, String> {
    let (burst, per, period, quantity) = match args {
        [b, c, p] => (b, c, p, None),
        [b, c, p, q] => (b, c, p, Some(q)),
        _ => return Err(arity_error(USAGE_THROTTLE)),
    };
    let burst = count("max_burst", burst, 0)?;
    let capacity = burst
        .checked_add(1)
        .filter(|&c| c <= MAX_COUNT)
        .ok_or_else(|| {
            format!(
                "ERR max_burst must be an integer from 0 to {}",
                MAX_COUNT - 1
            )
        })?;
    let per = count("count", per, 1)?;
    let period = count("period", period, 1)?;
    let cost = match quantity {
        // A negative quantity is a refund, as for every RL.* command.
        Some(q) => parse_cost(q).map_err(|e| e.replacen("ERR cost", "ERR quantity", 1))?,
        None => 1,
    };
    let rate_nano = u128::from(per) * u128::from(RATE_SCALE) / u128::from(period);
    let rate_nano = u64::try_from(rate_nano)
        .ok()
        .filter(|&r| r > 0)
        .ok_or_else(|| {
            "ERR count/period must be from 1e-9 to 18446744073 per second".to_string()
        })?;
    let quota =
        TokenBucketQuota::new(capacity, rate_nano).map_err(|e| quota_error("max_burst", e))?;
    Ok(Call {
        quota: Quota::TokenBucket(quota),
        cost,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tb(args: &[&str]) -> Result<Call, String> {
        let v: Vec<&[u8]> = args.iter().map(|s| s.as_bytes()).collect();
        token_bucket(&v)
    }

    #[test]
    fn every_bad_number_is_refused_with_its_name() {
        let huge = "9".repeat(1 << 20);
        for bad in [
            "",
            "--1",
            "+1",
            "1e3",
            "1e309",
            "nan",
            "NaN",
            "inf",
            "-inf",
            " 1",
            "1 ",
            "0x10",
            ".5",
            "5.",
            "1.2.3",
            "18446744073709551616",
            "9223372036854775808",
            huge.as_str(),
        ] {
            let err = tb(&["10", "1", bad]).expect_err(bad);
            assert!(err.starts_with("ERR cost "), "{err}");
            assert!(err.len() < 200, "error echoes too much: {}", err.len());
            let err = tb(&[&format!("-{bad}"), "1", "1"]).expect_err(bad);
            assert!(err.starts_with("ERR capacity "), "{err}");
            let err = tb(&[bad, "1", "1"]).expect_err(bad);
            assert!(err.starts_with("ERR capacity "), "{err}");
            let err = tb(&["10", bad, "1"]).expect_err(bad);
            assert!(err.starts_with("ERR rate "), "{err}");
        }
        assert!(tb(&["0", "1", "1"])
            .expect_err("zero")
            .starts_with("ERR capacity"));
        assert!(tb(&["1", "0", "1"])
            .expect_err("zero")
            .contains("greater than 0"));
        assert!(tb(&["1", "0.0000000001", "1"])
            .expect_err("precise")
            .contains("9 decimal"));
    }

    #[test]
    fn errors_are_one_printable_line() {
        let err = tb(&["10", "1", "\r\n+OK\r\n"]).expect_err("bad");
        assert!(!err.contains('\r') && !err.contains('\n'), "{err}");
    }

    #[test]
    fn arity_and_options() {
        assert!(tb(&["1", "1"])
            .expect_err("arity")
            .contains(USAGE_TOKENBUCKET));
        let s = |a: &[&str]| sliding(&a.iter().map(|s| s.as_bytes()).collect::<Vec<_>>());
        assert!(matches!(
            s(&["5", "1", "1"]),
            Ok(Call {
                quota: Quota::SlidingExact(_),
                ..
            })
        ));
        assert!(matches!(
            s(&["5", "1", "1", "approx"]),
            Ok(Call {
                quota: Quota::SlidingApprox(_),
                ..
            })
        ));
        assert!(s(&["5", "1", "1", "FAST"])
            .expect_err("opt")
            .contains("EXACT or APPROX"));
        assert!(s(&["5", "0.0001", "1"])
            .expect_err("ms")
            .contains("milliseconds"));
        assert!(s(&["5", "0", "1"]).expect_err("zero").contains("0.001"));
        assert!(s(&["5", "1000000001", "1"])
            .expect_err("long")
            .contains("1000000000"));
    }

    #[test]
    fn throttle_maps_to_a_bucket_of_burst_plus_one() {
        let a: Vec<&[u8]> = vec![b"15", b"30", b"60"];
        let call = throttle(&a).expect("valid");
        let Quota::TokenBucket(q) = call.quota else {
            panic!("not a bucket")
        };
        assert_eq!(
            (q.capacity(), q.rate_nano(), call.cost),
            (16, 500_000_000, 1)
        );
        let a: Vec<&[u8]> = vec![b"0", b"1", b"3", b"0"];
        let call = throttle(&a).expect("valid");
        assert_eq!(call.cost, 0);
        let a: Vec<&[u8]> = vec![b"0", b"1", b"3", b"-2"];
        assert_eq!(throttle(&a).expect("refund").cost, -2);
        let a: Vec<&[u8]> = vec![b"0", b"1", b"3", b"x"];
        assert!(throttle(&a).expect_err("bad").starts_with("ERR quantity "));
    }
}
