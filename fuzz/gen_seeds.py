#!/usr/bin/env python3
"""Writes the committed seed inputs in fuzz/seeds/: python3 fuzz/gen_seeds.py"""
import os, struct

os.chdir(os.path.dirname(os.path.abspath(__file__)))

def varint(v):
    out = bytearray()
    while True:
        b = v & 0x7f; v >>= 7
        if v == 0:
            out.append(b); return bytes(out)
        out.append(b | 0x80)
def state(tag, *fields, raw=b""):
    return bytes([1, tag]) + b"".join(varint(f) for f in fields) + raw
PICO = 10**12
NOW = 1_764_000_000_000
states = {
  "token_bucket": state(1, 10 * PICO, NOW),
  "token_bucket_empty": state(1, 0, NOW - 500),
  "fixed_window": state(2, NOW - NOW % 60000, 7),
  "sliding_exact": state(3, 3, raw=varint(NOW-9000)+varint(2)+varint(1)+varint(1)+varint(7999)+varint(5)),
  "sliding_approx": state(4, NOW - NOW % 10000, 3, 2),
  "sliding_approx_max_prev": state(4, 0, 2**64 - 1, 0),
}
S = b"\x00"
args = {
  "tokenbucket": b"0" + S.join([b"10", b"1", b"1"]),
  "tokenbucket_decimal": b"0" + S.join([b"100", b"0.5", b"0"]),
  "tokenbucket_fine_rate": b"0" + S.join([b"9223372036854775807", b"0.000000001", b"3"]),
  "fixedwindow": b"1" + S.join([b"10", b"60", b"1"]),
  "sliding": b"2" + S.join([b"5", b"1", b"1"]),
  "sliding_exact": b"2" + S.join([b"5", b"10", b"2", b"exact"]),
  "sliding_approx": b"2" + S.join([b"5", b"1.5", b"1", b"APPROX"]),
  "throttle": b"3" + S.join([b"15", b"30", b"60"]),
  "throttle_quantity": b"3" + S.join([b"0", b"1", b"3", b"0"]),
  "bad_crlf": b"0" + S.join([b"10", b"\r\n+OK\r\n", b"1"]),
  "bad_arity": b"1" + S.join([b"10", b"60"]),
}
def w(d, name, data):
    os.makedirs(d, exist_ok=True)
    open(os.path.join(d, name), "wb").write(data)
for n, b in args.items(): w("seeds/args", n, b)
for n, b in states.items(): w("seeds/state_decode", n, b)
def apply_in(cmd, st, steps, argv):
    hdr = bytes([cmd, len(st), len(steps) - 1])
    body = b"".join(struct.pack("<QQ", now, cost) for now, cost in steps)
    return hdr + body + st + argv[1:]
pairs = [
  ("tokenbucket_new", 0, b"", "tokenbucket"),
  ("tokenbucket_stored", 0, states["token_bucket"], "tokenbucket"),
  ("tokenbucket_empty", 0, states["token_bucket_empty"], "tokenbucket_decimal"),
  ("throttle_stored", 3, states["token_bucket"], "throttle"),
  ("fixedwindow_stored", 1, states["fixed_window"], "fixedwindow"),
  ("sliding_exact_stored", 2, states["sliding_exact"], "sliding_exact"),
  ("sliding_exact_new", 2, b"", "sliding"),
  ("sliding_approx_stored", 2, states["sliding_approx"], "sliding_approx"),
  ("wrong_kind", 1, states["token_bucket"], "fixedwindow"),
]
steps = [(NOW, 1), (NOW + 1, 2), (NOW + 1000, 3), (NOW - 5, 0)]
for name, cmd, st, a in pairs:
    w("seeds/apply", name, apply_in(cmd, st, steps, args[a]))
