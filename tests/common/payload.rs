//! Limiter states written by hand (the module's format, see
//! `src/limiter/state.rs`) and wrapped into `DUMP` payloads for `RESTORE`,
//! to put a server in states no ordinary call produces (a clock that ran
//! ahead, forged times).
//!
//! Included with `#[path]` by the tests that need it: the module crate cannot
//! be linked into a test binary (its allocator is the server's).

#![allow(dead_code)]

/// LEB128, as the state format writes its fields.
pub fn varint(out: &mut Vec<u8>, mut v: u128) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn fields(format_tag: &[u8], values: &[u128]) -> Vec<u8> {
    let mut out = format_tag.to_vec();
    for &v in values {
        varint(&mut out, v);
    }
    out
}

/// Pico-tokens per token.
pub const PICO: u128 = 1_000_000_000_000;

/// The body of a state (tag and fields, no format byte), to nest or wrap.
pub fn token_bucket_body(tokens: u128, at_ms: u64) -> Vec<u8> {
    fields(&[1], &[tokens * PICO, u128::from(at_ms)])
}

pub fn fixed_window_body(start_ms: u64, count: u64) -> Vec<u8> {
    fields(&[2], &[u128::from(start_ms), u128::from(count)])
}

/// An `EXACT` log; nested in `RL.LIMITS` it carries its byte length.
pub fn exact_body(entries: &[(u64, u64)], nested: bool) -> Vec<u8> {
    let mut packed = Vec::new();
    let mut last = 0;
    for &(ts, count) in entries {
        varint(&mut packed, u128::from(ts - last));
        varint(&mut packed, u128::from(count));
        last = ts;
    }
    let mut out = vec![3];
    varint(&mut out, entries.len() as u128);
    if nested {
        varint(&mut out, packed.len() as u128);
    }
    out.extend(packed);
    out
}

pub fn approx_body(start_ms: u64, prev: u64, cur: u64) -> Vec<u8> {
    fields(
        &[4],
        &[u128::from(start_ms), u128::from(prev), u128::from(cur)],
    )
}

/// A single algorithm's state (format 1).
pub fn single(body: Vec<u8>) -> Vec<u8> {
    let mut out = vec![1];
    out.extend(body);
    out
}

/// An `RL.LIMITS` state (format 2) of unnamed entries, each with a state.
pub fn limits(bodies: &[Vec<u8>]) -> Vec<u8> {
    let mut out = vec![2, 5];
    varint(&mut out, bodies.len() as u128);
    for b in bodies {
        out.push(2); // flags: has a state, unnamed
        out.extend(b);
    }
    out
}

/// Redis's CRC-64 (Jones), as DUMP payloads carry it.
pub fn crc64(data: &[u8]) -> u64 {
    const POLY: u64 = 0x95ac_9329_ac4b_c9b5;
    let mut crc = 0u64;
    for &b in data {
        crc ^= u64::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ POLY
            } else {
                crc >> 1
            };
        }
    }
    crc
}

/// A `DUMP` payload holding `state`, built on `template` (a `DUMP` of any
/// limiter key of the same server, for the module id and RDB version):
/// `[7][0x81 + module id (8)][5][length][state][0 = EOF][version (2)][crc (8)]`.
pub fn dump_of(template: &[u8], state: &[u8]) -> Vec<u8> {
    assert_eq!(template[0], 7, "a module value");
    assert_eq!(template[10], 5, "a string field");
    let old_len = usize::from(template[11] & 0x3f);
    let trailer = &template[12 + old_len..template.len() - 8];
    let mut out = template[..11].to_vec();
    // RDB length: 6 bits, or 14 bits in two bytes.
    match state.len() {
        n if n < 64 => out.push(n as u8),
        n if n < 16_384 => out.extend([0x40 | (n >> 8) as u8, n as u8]),
        n => panic!("state of {n} bytes"),
    }
    out.extend_from_slice(state);
    out.extend_from_slice(trailer);
    let crc = crc64(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}
