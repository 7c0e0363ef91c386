#!/usr/bin/env python3
"""Cost of an EXACT log by its length: server time per call and bytes written
to the AOF (the same bytes replicas receive) per granted call.

Usage: exact_log.py PORT [ENTRIES ...]   (default 100 1000 4096)

For each length N a key is RESTOREd holding N entries one millisecond apart
(the newest a millisecond ago) in a one-hour window, then called CALLS times
with a cost of 1, pipelined BATCH at a time: a batch lands within a
millisecond or two, so it adds at most an entry or two (the rest merge) and
the log stays within N + CALLS / BATCH entries. Reported: the server's
usec_per_call for RL.SLIDING (INFO commandstats) and the growth of the AOF
divided by the granted calls. Talks RESP over a loopback socket; no client
library needed.
"""

import socket
import sys
import time

CALLS = 5_000
BATCH = 100


class Conn:
    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port))
        self.f = self.s.makefile("rb")

    def call(self, *args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        self.s.sendall(b"".join(out))
        return self.read()

    def read(self):
        line = self.f.readline()
        kind, rest = line[:1], line[1:-2]
        if kind in (b"+",):
            return rest.decode()
        if kind == b"-":
            raise RuntimeError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self.f.read(n + 2)
            return data[:-2]
        if kind == b"*":
            return [self.read() for _ in range(int(rest))]
        raise RuntimeError("unexpected reply %r" % line)


def varint(v):
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v == 0:
            out.append(b)
            return bytes(out)
        out.append(b | 0x80)


def crc64(data):
    poly = 0x95AC9329AC4BC9B5
    crc = 0
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ poly if crc & 1 else crc >> 1
    return crc


def rdb_len(n):
    if n < 64:
        return bytes([n])
    if n < 16384:
        return bytes([0x40 | (n >> 8), n & 0xFF])
    return bytes([0x80]) + n.to_bytes(4, "big")


def dump_of(template, state):
    """A DUMP payload holding `state`, on a template DUMP of a limiter key."""
    old_len = template[11] & 0x3F
    trailer = template[12 + old_len : -8]
    body = template[:11] + rdb_len(len(state)) + state + trailer
    return body + crc64(body).to_bytes(8, "little")


def exact_state(entries):
    packed = bytearray()
    last = 0
    for ts, count in entries:
        packed += varint(ts - last) + varint(count)
        last = ts
    return bytes([1, 3]) + varint(len(entries)) + bytes(packed)


def info_field(c, section, name):
    for line in c.call("INFO", section).decode().splitlines():
        if line.startswith(name + ":"):
            return line.split(":", 1)[1]
    return None


def usec_per_call(c):
    stats = (
        info_field(c, "commandstats", "cmdstat_RL.SLIDING")
        or info_field(c, "commandstats", "cmdstat_rl.sliding")
        or ""
    )
    for part in stats.split(","):
        if part.startswith("usec_per_call="):
            return float(part.split("=")[1])
    return float("nan")


def main():
    port = int(sys.argv[1])
    sizes = [int(a) for a in sys.argv[2:]] or [100, 1000, 4096]
    c = Conn(port)
    c.call("RL.TOKENBUCKET", "template", 10, 1, 1)
    template = c.call("DUMP", "template")
    print("| entries before | units after | calls | granted | µs/call granted | denied | µs/call denied | AOF bytes/grant |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n in sizes:
        key = "exact:%d" % n
        t0, _ = c.call("TIME")
        now = int(t0) * 1000 + int(_) // 1000
        entries = [(now - n + i, 1) for i in range(n)]
        c.call("RESTORE", key, 0, dump_of(template, exact_state(entries)), "REPLACE")
        window = 3600
        limit = 10 * n + 10 * CALLS
        c.call("CONFIG", "RESETSTAT")
        c.call("BGREWRITEAOF")
        while info_field(c, "persistence", "aof_rewrite_in_progress") != "0" or info_field(
            c, "persistence", "aof_rewrite_scheduled"
        ) != "0":
            time.sleep(0.05)
        aof0 = int(info_field(c, "persistence", "aof_current_size"))
        granted = 0
        one = b"*5\r\n$10\r\nRL.SLIDING\r\n" + b"".join(
            b"$%d\r\n%s\r\n" % (len(a), a) for a in (key.encode(), b"%d" % limit, b"%d" % window, b"1")
        )
        for _ in range(CALLS // BATCH):
            c.s.sendall(one * BATCH)
            for _ in range(BATCH):
                granted += c.read()[0]
        aof1 = int(info_field(c, "persistence", "aof_current_size"))
        granted_us = usec_per_call(c)
        used = limit - c.call("RL.SLIDING", key, limit, window, 0)[2]
        # Denied calls: the same log, a limit it already fills.
        c.call("CONFIG", "RESETSTAT")
        full = b"*5\r\n$10\r\nRL.SLIDING\r\n" + b"".join(
            b"$%d\r\n%s\r\n" % (len(a), a) for a in (key.encode(), b"%d" % used, b"%d" % window, b"1")
        )
        denied = 0
        for _ in range(CALLS // BATCH):
            c.s.sendall(full * BATCH)
            for _ in range(BATCH):
                denied += 1 - c.read()[0]
        print(
            "| %d | %d | %d | %d | %.2f | %d | %.2f | %.0f |"
            % (n, used, CALLS, granted, granted_us, denied, usec_per_call(c), (aof1 - aof0) / max(granted, 1))
        )


if __name__ == "__main__":
    main()
