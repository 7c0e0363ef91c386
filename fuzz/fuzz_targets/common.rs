//! Helpers shared by the fuzz targets (included with `#[path]`, not a target).

#![allow(dead_code)]

use redis_ratelimit::limiter::quota::{MAX_COUNT, MAX_WINDOW_MS};
use redis_ratelimit::limiter::Quota;
use redis_ratelimit::redis::args::{self, Call};

pub type Parser = fn(&[&[u8]]) -> Result<Call, String>;

/// The four parsers, picked by `selector % 4`.
pub const COMMANDS: [(&str, Parser); 4] = [
    ("RL.TOKENBUCKET", args::token_bucket),
    ("RL.FIXEDWINDOW", args::fixed_window),
    ("RL.SLIDING", args::sliding),
    ("CL.THROTTLE", args::throttle),
];

/// Separates arguments in a fuzz input. Arguments may hold any other byte,
/// including spaces, `\r` and `\n`.
pub const SEP: u8 = 0;

pub fn command(selector: u8) -> (usize, &'static str, Parser) {
    let i = usize::from(selector % 4);
    let (name, parse) = COMMANDS[i];
    (i, name, parse)
}

/// Splits `rest` on [`SEP`]; an empty `rest` is zero arguments.
pub fn split_args(rest: &[u8]) -> Vec<&[u8]> {
    if rest.is_empty() {
        Vec::new()
    } else {
        rest.split(|&b| b == SEP).collect()
    }
}

/// Runs a parser and checks its contract: errors are one short `ERR` line,
/// successes are quotas the limiters accept.
pub fn parse_checked(selector: u8, argv: &[&[u8]]) -> Option<Call> {
    let (i, name, parse) = command(selector);
    match parse(argv) {
        Err(e) => {
            assert!(e.starts_with("ERR "), "{name}: error without 'ERR ': {e:?}");
            assert!(
                !e.contains('\r') && !e.contains('\n'),
                "{name}: error is not one line: {e:?}"
            );
            assert!(e.len() < 400, "{name}: error is {} bytes: {e:?}", e.len());
            None
        }
        Ok(call) => {
            let arity_ok = match i {
                0 | 1 => argv.len() == 3,
                _ => argv.len() == 3 || argv.len() == 4,
            };
            assert!(arity_ok, "{name}: accepted {} arguments", argv.len());
            assert!(
                call.cost.unsigned_abs() <= MAX_COUNT,
                "{name}: cost {} too large",
                call.cost
            );
            match (i, call.quota) {
                (0 | 3, Quota::TokenBucket(q)) => {
                    assert!((1..=MAX_COUNT).contains(&q.capacity()), "{name}: {q:?}");
                    assert!(q.rate_nano() >= 1, "{name}: {q:?}");
                }
                (1, Quota::FixedWindow(q))
                | (2, Quota::SlidingExact(q))
                | (2, Quota::SlidingApprox(q)) => {
                    assert!((1..=MAX_COUNT).contains(&q.limit()), "{name}: {q:?}");
                    assert!(
                        (1..=MAX_WINDOW_MS).contains(&q.window_ms()),
                        "{name}: {q:?}"
                    );
                }
                (_, q) => panic!("{name}: returned the wrong kind of quota: {q:?}"),
            }
            Some(call)
        }
    }
}
