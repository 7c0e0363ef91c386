//! The argument parsers (`redis::args`) on arbitrary arguments.
//!
//! Input: byte 0 picks the command (`% 4`: RL.TOKENBUCKET, RL.FIXEDWINDOW,
//! RL.SLIDING, CL.THROTTLE); the rest is the arguments after the key,
//! separated by 0x00 bytes.
//!
//! Checks: no panic; every error starts with "ERR ", is one line (no `\r` or
//! `\n`) and is under 400 bytes; every success has the right arity, a cost
//! and quota within the documented bounds, and the command's kind of quota.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let argv = common::split_args(rest);
    common::parse_checked(selector, &argv);
});
