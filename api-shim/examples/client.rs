//! Calls `RL.TOKENBUCKET` with the `redis` crate and prints the five fields.
//!
//! ```sh
//! cargo run -p api-shim --example client -- [redis://127.0.0.1:6379/] [key]
//! ```

use redis::Commands;

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
        let reply: Vec<i64> = redis::cmd("RL.TOKENBUCKET")
            .arg(&key)
            .arg(3)
            .arg(0.5)
            .arg(1)
            .query(&mut con)?;
        match reply.as_slice() {
            [allowed, limit, remaining, retry_after_ms, reset_after_ms] => println!(
                "call {call}: allowed={} limit={limit} remaining={remaining} \
                 retry_after_ms={retry_after_ms} reset_after_ms={reset_after_ms}",
                *allowed == 1
            ),
            other => println!("call {call}: unexpected reply {other:?}"),
        }
    }
    Ok(())
}
