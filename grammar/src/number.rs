//! Numbers as the commands take them, and back to text.

use crate::bounds::{MAX_COUNT, MAX_WINDOW_MS, RATE_SCALE};

/// Shows a user's argument in an error safely: short, printable, one line.
pub fn shown(arg: &[u8]) -> String {
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
pub(crate) enum NumError {
    NotANumber,
    TooPrecise,
    TooLarge,
}

/// Parses `digits[.digits]` as an exact integer scaled by `10^frac_digits`,
/// in one pass over the bytes (this runs for every argument of every call).
pub(crate) fn parse_scaled(arg: &[u8], frac_digits: u32) -> Result<u128, NumError> {
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

/// An integer in `min..=MAX_COUNT`; `name` is the argument's name in the error.
pub fn parse_count(name: &str, arg: &[u8], min: u64) -> Result<u64, String> {
    match parse_scaled(arg, 0) {
        Ok(v) if v >= u128::from(min) && v <= u128::from(MAX_COUNT) => Ok(v as u64),
        _ => Err(format!(
            "ERR {name} must be an integer from {min} to {MAX_COUNT}, got '{}'",
            shown(arg)
        )),
    }
}

/// A cost: an integer from `-MAX_COUNT` to `MAX_COUNT`; negative is a refund.
pub fn parse_cost(arg: &[u8]) -> Result<i64, String> {
    let (negative, digits) = match arg.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, arg),
    };
    match parse_scaled(digits, 0) {
        Ok(v) if v <= u128::from(MAX_COUNT) => {
            let v = v as i64;
            Ok(if negative { -v } else { v })
        }
        _ => Err(format!(
            "ERR cost must be an integer from -{MAX_COUNT} to {MAX_COUNT} (negative: a refund), got '{}'",
            shown(arg)
        )),
    }
}

/// A rate in tokens per second, up to nine decimals: nano-tokens per second.
pub fn parse_rate(arg: &[u8]) -> Result<u64, String> {
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

/// A window in seconds, to the millisecond: milliseconds.
pub fn parse_window_ms(arg: &[u8]) -> Result<u64, String> {
    let bad = |why: &str| format!("ERR window {why}, got '{}'", shown(arg));
    match parse_scaled(arg, 3) {
        Ok(v) if v >= 1 && v <= u128::from(MAX_WINDOW_MS) => Ok(v as u64),
        Ok(_) | Err(NumError::TooLarge) => Err(bad(&format!(
            "must be from 0.001 to {} seconds",
            MAX_WINDOW_MS / 1000
        ))),
        Err(NumError::TooPrecise) => Err(bad(
            "must be a whole number of milliseconds (at most 3 decimal places)",
        )),
        Err(NumError::NotANumber) => Err(bad("must be a positive decimal number of seconds")),
    }
}

/// `v / 10^digits` as the shortest exact decimal text.
fn format_scaled(v: u64, scale: u64) -> String {
    let (int, frac) = (v / scale, v % scale);
    if frac == 0 {
        return int.to_string();
    }
    let width = scale.ilog10() as usize;
    let frac = format!("{frac:0width$}");
    format!("{int}.{}", frac.trim_end_matches('0'))
}

/// Nano-tokens per second as the tokens-per-second text the grammar takes.
pub fn format_rate(rate_nano: u64) -> String {
    format_scaled(rate_nano, RATE_SCALE)
}

/// Milliseconds as the seconds text the grammar takes.
pub fn format_window(window_ms: u64) -> String {
    format_scaled(window_ms, 1000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn decimals_are_exact() {
        assert_eq!(parse_scaled(b"0.25", 3), Ok(250));
        assert_eq!(parse_scaled(b"10", 9), Ok(10_000_000_000));
        assert_eq!(parse_scaled(b"0.001000", 3), Ok(1));
        assert_eq!(parse_scaled(b"0.0015", 3), Err(NumError::TooPrecise));
        assert_eq!(parse_scaled(b"007", 0), Ok(7));
    }

    #[test]
    fn costs_are_signed_and_bounded() {
        assert_eq!(parse_cost(b"5"), Ok(5));
        assert_eq!(parse_cost(b"-5"), Ok(-5));
        assert_eq!(parse_cost(b"-0"), Ok(0));
        assert_eq!(
            parse_cost(b"-9223372036854775807"),
            Ok(-9_223_372_036_854_775_807)
        );
        for bad in [
            "",
            "-",
            "--1",
            "+1",
            "1.5",
            "-9223372036854775808",
            "9223372036854775808",
            "1e3",
        ] {
            let err = parse_cost(bad.as_bytes()).expect_err(bad);
            assert!(err.starts_with("ERR cost "), "{err}");
        }
    }

    #[test]
    fn formatting_is_what_parsing_takes() {
        assert_eq!(format_rate(500_000_000), "0.5");
        assert_eq!(format_rate(10 * RATE_SCALE), "10");
        assert_eq!(format_rate(1), "0.000000001");
        assert_eq!(format_window(1_500), "1.5");
        assert_eq!(format_window(60_000), "60");
        assert_eq!(format_window(1), "0.001");
    }

    proptest! {
        #[test]
        fn rates_and_windows_round_trip(rate in 1u64.., window in 1u64..=MAX_WINDOW_MS) {
            prop_assert_eq!(parse_rate(format_rate(rate).as_bytes()), Ok(rate));
            prop_assert_eq!(parse_window_ms(format_window(window).as_bytes()), Ok(window));
        }

        #[test]
        fn float_text_goes_through_the_same_grammar(v in 0.0f64..1e6) {
            // What the shim does with a TOML number: its decimal text.
            let text = format!("{v}");
            if let Ok(ms) = parse_window_ms(text.as_bytes()) {
                prop_assert!((ms as f64 - v * 1000.0).abs() < 1e-3 * v.max(1.0));
            }
        }
    }
}
