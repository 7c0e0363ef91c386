//! Argument parsing: bytes in, validated quotas out, or an `ERR` message that
//! names the argument and says what to fix.
//!
//! Numbers are plain decimals (`10`, `0.25`): no sign, no exponent, no `inf`
//! or `nan`, no spaces. Parsing is exact (scaled integers, never floats).

use crate::limiter::quota::{
    Quota, QuotaError, TokenBucketQuota, WindowQuota, MAX_COUNT, MAX_WINDOW_MS, RATE_SCALE,
};

/// One-line usage of each command, as the README shows it.
pub const USAGE_TOKENBUCKET: &str = "RL.TOKENBUCKET key capacity rate cost";
pub const USAGE_FIXEDWINDOW: &str = "RL.FIXEDWINDOW key limit window cost";
pub const USAGE_SLIDING: &str = "RL.SLIDING key limit window cost [EXACT|APPROX]";
pub const USAGE_THROTTLE: &str = "CL.THROTTLE key max_burst count period [quantity]";

/// A parsed call: the quota and the cost.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Call {
    pub quota: Quota,
    pub cost: u64,
}

/// `ERR wrong number of arguments ...` with the usage line.
pub fn arity_error(usage: &str) -> String {
    format!("ERR wrong number of arguments: usage {usage}")
}

/// Shows a user's argument in an error safely: short, printable, one line.
fn shown(arg: &[u8]) -> String {
    const MAX: usize = 32;
    let mut s: String = arg
        .iter()
        .take(MAX)
        .map(|&b| {
            if b.is_ascii_graphic() || b == b' ' {
                b as char
            } else {
                '?'
            }
        })
        .collect();
    if arg.len() > MAX {
        s.push_str("...");
    }
    s
}

#[derive(Debug, PartialEq, Eq)]
enum NumError {
    NotANumber,
    TooPrecise,
    TooLarge,
}

/// Parses `digits[.digits]` as an exact integer scaled by `10^frac_digits`,
/// in one pass over the bytes (this runs for every argument of every call).
fn parse_scaled(arg: &[u8], frac_digits: u32) -> Result<u128, NumError> {
    // Anything past 2^64 is too large for every argument; stopping there
    // also makes a megabyte of digits cost nothing.
    const TOO_LARGE: u128 = u64::MAX as u128 * 10;
    let mut v: u128 = 0;
    let mut int_digits = 0usize;
    let mut frac_seen = 0u32;
    let mut frac_any = false;
    let mut dot = false;
    for &b in arg {
        match b {
            b'0'..=b'9' if !dot => {
                v = v * 10 + u128::from(b - b'0');
                int_digits += 1;
                if v > TOO_LARGE {
                    return Err(NumError::TooLarge);
                }
            }
            b'0'..=b'9' => {
                frac_any = true;
                if frac_seen < frac_digits {
                    v = v * 10 + u128::from(b - b'0');
                    frac_seen += 1;
                } else if b != b'0' {
                    return Err(NumError::TooPrecise);
                }
            }
            b'.' if !dot => dot = true,
            _ => return Err(NumError::NotANumber),
        }
    }
    if int_digits == 0 || (dot && !frac_any) {
        return Err(NumError::NotANumber);
    }
    Ok(v * 10u128.pow(frac_digits - frac_seen))
}

/// An integer in `min..=MAX_COUNT`.
fn count(name: &str, arg: &[u8], min: u64) -> Result<u64, String> {
    let bad = || {
        format!(
            "ERR {name} must be an integer from {min} to {MAX_COUNT}, got '{}'",
            shown(arg)
        )
    };
    match parse_scaled(arg, 0) {
        Ok(v) if v >= u128::from(min) && v <= u128::from(MAX_COUNT) => Ok(v as u64),
        _ => Err(bad()),
    }
}

/// A rate in tokens per second, up to nine decimals.
fn rate(arg: &[u8]) -> Result<u64, String> {
    let bad = |why: &str| format!("ERR rate {why}, got '{}'", shown(arg));
    match parse_scaled(arg, 9) {
        Ok(0) => Err(bad("must be greater than 0")),
        Ok(v) => u64::try_from(v)
            .map_err(|_| bad("is too large (at most 18446744073 tokens per second)")),
        Err(NumError::TooPrecise) => Err(bad("has more than 9 decimal places")),
        Err(_) => Err(bad(
            "must be a positive decimal number of tokens per second",
        )),
    }
}

/// A window in seconds, to the millisecond.
fn window_ms(arg: &[u8]) -> Result<u64, String> {
    let bad = |why: &str| format!("ERR window {why}, got '{}'", shown(arg));
    let range = format!("must be from 0.001 to {} seconds", MAX_WINDOW_MS / 1000);
    match parse_scaled(arg, 3) {
        Ok(v) if v >= 1 && v <= u128::from(MAX_WINDOW_MS) => Ok(v as u64),
        Ok(_) | Err(NumError::TooLarge) => Err(bad(&range)),
        Err(NumError::TooPrecise) => Err(bad(
            "must be a whole number of milliseconds (at most 3 decimal places)",
        )),
        Err(NumError::NotANumber) => Err(bad("must be a positive decimal number of seconds")),
    }
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
    let cost = count("cost", cost, 0)?;
    let quota =
        TokenBucketQuota::new(capacity, rate_nano).map_err(|e| quota_error("capacity", e))?;
    Ok(Call {
        quota: Quota::TokenBucket(quota),
        cost,
    })
}

fn window_quota(limit: &[u8], window: &[u8]) -> Result<WindowQuota, String> {
    let limit = count("limit", limit, 1)?;
    let window_ms = window_ms(window)?;
    WindowQuota::new(limit, window_ms).map_err(|e| quota_error("limit", e))
}

/// `RL.FIXEDWINDOW key limit window cost`
pub fn fixed_window(args: &[&[u8]]) -> Result<Call, String> {
    let [limit, window, cost] = args else {
        return Err(arity_error(USAGE_FIXEDWINDOW));
    };
    let quota = window_quota(limit, window)?;
    Ok(Call {
        quota: Quota::FixedWindow(quota),
        cost: count("cost", cost, 0)?,
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
    let cost = count("cost", cost, 0)?;
    let quota = match mode {
        None => Quota::SlidingExact(quota),
        Some(m) if m.eq_ignore_ascii_case(b"EXACT") => Quota::SlidingExact(quota),
        Some(m) if m.eq_ignore_ascii_case(b"APPROX") => Quota::SlidingApprox(quota),
        Some(m) => {
            return Err(format!(
                "ERR unknown option '{}': expected EXACT or APPROX",
                shown(m)
            ))
        }
    };
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
        Some(q) => count("quantity", q, 0)?,
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
    fn decimals_are_exact() {
        assert_eq!(parse_scaled(b"0.25", 3), Ok(250));
        assert_eq!(parse_scaled(b"10", 9), Ok(10_000_000_000));
        assert_eq!(parse_scaled(b"0.001000", 3), Ok(1));
        assert_eq!(parse_scaled(b"0.0015", 3), Err(NumError::TooPrecise));
        assert_eq!(parse_scaled(b"007", 0), Ok(7));
    }

    #[test]
    fn every_bad_number_is_refused_with_its_name() {
        let huge = "9".repeat(1 << 20);
        for bad in [
            "",
            "-1",
            "-0",
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
    }
}
