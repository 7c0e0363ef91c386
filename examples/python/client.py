#!/usr/bin/env python3
"""Calls the ratelimit module from Python with redis-py (pip install redis).

    python3 examples/python/client.py [redis://127.0.0.1:6379/0[?protocol=2|3]]

The module answers a list of five integers under RESP2 and a map of the same
named fields under RESP3 (redis-py 8's default); Decision.parse takes either.

Shows a token bucket being drained, and how to honour retry_after_ms.
"""
import sys
import time
from typing import NamedTuple

import redis


class Decision(NamedTuple):
    allowed: bool
    limit: int
    remaining: int
    retry_after_ms: int  # 0 if allowed, -1 if it can never succeed
    reset_after_ms: int

    @classmethod
    def parse(cls, reply):
        # RESP2: a list of five integers; RESP3 (protocol=3): a dict.
        if isinstance(reply, dict):
            reply = [reply[k if k in reply else k.encode()] for k in
                     ("allowed", "limit", "remaining", "retry_after_ms", "reset_after_ms")]
        allowed, limit, remaining, retry, reset = (int(x) for x in reply)
        return cls(allowed == 1, limit, remaining, retry, reset)


def token_bucket(r: redis.Redis, key: str, capacity: int, rate: float, cost: int = 1) -> Decision:
    return Decision.parse(r.execute_command("RL.TOKENBUCKET", key, capacity, rate, cost))


def main() -> None:
    url = sys.argv[1] if len(sys.argv) > 1 else "redis://127.0.0.1:6379/0"
    r = redis.Redis.from_url(url)
    key = "example:python:user:1"
    r.delete(key, "example:python:fw", "example:python:sw")
    for i in range(7):
        d = token_bucket(r, key, capacity=5, rate=2)
        print(f"call {i + 1}: {d}")
        if not d.allowed:
            if d.retry_after_ms < 0:
                print("  can never succeed: the cost exceeds the capacity")
                break
            # The module rounds up, so waiting exactly this long is enough.
            print(f"  denied; waiting {d.retry_after_ms} ms")
            time.sleep(d.retry_after_ms / 1000)
            print(f"  retry: {token_bucket(r, key, capacity=5, rate=2)}")
    print(f"fixed window: {Decision.parse(r.execute_command('RL.FIXEDWINDOW', 'example:python:fw', 3, 60, 1))}")
    print(f"sliding (approx): {Decision.parse(r.execute_command('RL.SLIDING', 'example:python:sw', 3, 60, 1, 'APPROX'))}")


if __name__ == "__main__":
    main()
