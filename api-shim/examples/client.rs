//! Calls `RL.TOKENBUCKET` with the `redis` crate and prints the five fields.
//!
//! ```sh
//! cargo run -p api-shim --example client -- [redis://127.0.0.1:6379/] [key]
//! ```
//!
//! The module answers an array of five integers under RESP2 and a map of the
//! same named fields under RESP3 (`redis://127.0.0.1:6379/?protocol=resp3`);
//! [`fields`] reads either.

use redis::{Commands, Value};

const FIELDS: [&str; 5] = [
    "allowed",
    "limit",
    "remaining",
    "retry_after_ms",
    "reset_after_ms",
];

/// The five integers of a reply, in `FIELDS` order, from either shape.
fn fields(reply: &Value) -> Option<[i64; 5]> {
    let int = |v: &Value| match v {
        Value::Int(n) => Some(*n),
        _ => None,
    };
    let mut out = [0; 5];
    match reply {
        Value::Array(items) if items.len() == 5 => {
            for (slot, v) in out.iter_mut().zip(items) {
                *slot = int(v)?;
            }
        }
        Value::Map(pairs) => {
            for (slot, name) in out.iter_mut().zip(FIELDS) {
                let (_, v) = pairs.iter().find(|(k, _)| match k {
                    Value::SimpleString(s) => s == name,
                    Value::BulkString(b) => b == name.as_bytes(),
                    _ => false,
                })?;
                *slot = int(v)?;
            }
        }
        _ => return None,
    }
    Some(out)
}

fn main() -> redis::RedisResult<()> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .unwrap_or_else(|| "redis://127.0.0.1:6379/".to_owned());
    let key = args
        .next()
        .unwrap_or_else(|| "example:rust:user:1".to_owned());
    let client = redis::Client::open(url.as_str())?;
    let mut con = client.get_connection()?;
    let _: () = con.del(&key)?;

    for call in 1..=4 {
        // capacity 3, 0.5 tokens per second, cost 1
        let reply: Value = redis::cmd("RL.TOKENBUCKET")
            .arg(&key)
            .arg(3)
            .arg(0.5)
            .arg(1)
            .query(&mut con)?;
        match fields(&reply) {
            Some([allowed, limit, remaining, retry_after_ms, reset_after_ms]) => println!(
                "call {call}: allowed={} limit={limit} remaining={remaining} \
                 retry_after_ms={retry_after_ms} reset_after_ms={reset_after_ms}",
                allowed == 1
            ),
            None => {
                eprintln!("call {call}: unexpected reply {reply:?}");
                std::process::exit(1);
            }
        }
    }
    Ok(())
}
