//! `State::decode` (the RDB / RESTORE / replication payload) on arbitrary
//! bytes.
//!
//! Checks: no panic; whatever decodes re-encodes to bytes that decode to the
//! same state (`decode(to_bytes(s)) == Ok(s)`), and the re-encoding is stable;
//! an `EXACT` log's summary (newest time, total) agrees with its entries.

#![no_main]

use libfuzzer_sys::fuzz_target;
use redis_ratelimit::limiter::State;

fuzz_target!(|data: &[u8]| {
    let Ok(state) = State::decode(data) else {
        return;
    };
    let bytes = state.to_bytes();
    assert_eq!(
        State::decode(&bytes).as_ref(),
        Ok(&state),
        "round trip failed: input {data:02x?}, re-encoded {bytes:02x?}"
    );
    // Encoding is canonical: encoding what we decoded gives the same bytes.
    let again = State::decode(&bytes).map(|s| s.to_bytes());
    assert_eq!(again.as_ref(), Ok(&bytes));
    let _ = state.heap_size();
    if let State::SlidingExact(log) = &state {
        let entries = log.entries().expect("a decoded log has valid entries");
        assert_eq!(entries.len(), log.len());
        // An empty log is valid (a refund can empty one); whatever it holds,
        // its summary agrees with its entries.
        assert_eq!(log.newest(), entries.last().map(|e| e.0));
        assert_eq!(log.total(), entries.iter().map(|e| e.1).sum::<u64>());
    }
});
