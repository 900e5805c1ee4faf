"""Frames per second through the wire codec, against json and pickle round trips.

Run ``python benchmarks/bench_codec.py`` (``--quick`` for a shorter run). One
round trip = encode a message, frame it (length prefix and check), feed the
bytes to a decoder, decode the message back. The message is shaped like a lease
lock's grant (a request id pair, a token, a ttl, a lock name).

* ``msgspec+crc32`` and ``msgspec+mac``: :mod:`trio_foundation.runtime.codec`
  (a schema'd, validated MessagePack struct; CRC-32 or a per-frame keyed-BLAKE2s MAC).
* ``json``: ``json.dumps`` of the same fields as a dict, a length prefix,
  ``json.loads`` back to a dict — no schema, no validation, no check.
* ``pickle``: ``pickle.dumps``/``pickle.loads`` of a frozen attrs object with a
  length prefix — a speed reference only: pickle runs code chosen by the
  sender, so it must never read bytes from a network.

Each codec is timed ``--repeat`` times (default 5) for ``--seconds`` each; the
best rate is printed (the machine is shared, so the best is the least disturbed).
"""

from __future__ import annotations

import argparse
import json
import pickle
import struct
import time
from collections.abc import Callable

import attrs

from trio_foundation.runtime.auth import MacSeal
from trio_foundation.runtime.codec import (
    Crc32Seal,
    FrameDecoder,
    FrameSeal,
    WireMessage,
    WireProtocol,
    encode_frame,
)


class Granted(WireMessage, frozen=True):
    req: tuple[int, int]
    token: int
    ttl: float
    name: str


@attrs.frozen
class GrantedAttrs:
    req: tuple[int, int]
    token: int
    ttl: float
    name: str


PROTO = WireProtocol("bench", 1, [Granted])
HEADER = struct.Struct(">I")
MSG = Granted((3, 1_000_017), 123_456, 5.0, "db-writer")


def codec_round_trip(seal_factory: Callable[[], FrameSeal]) -> Callable[[int], None]:
    def run(n: int) -> None:
        send, recv = seal_factory(), seal_factory()
        decoder = FrameDecoder(PROTO, recv)
        encode, feed, next_message = PROTO.encode, decoder.feed, decoder.next_message
        for _ in range(n):
            feed(encode_frame(encode(MSG), send))
            assert next_message() == MSG

    return run


def json_round_trip(n: int) -> None:
    obj = {"type": "Granted", "req": list(MSG.req), "token": MSG.token, "ttl": MSG.ttl,
           "name": MSG.name}  # fmt: skip
    for _ in range(n):
        payload = json.dumps(obj).encode()
        frame = HEADER.pack(len(payload)) + payload
        (length,) = HEADER.unpack_from(frame)
        assert json.loads(frame[4 : 4 + length])["token"] == MSG.token


def pickle_round_trip(n: int) -> None:
    obj = GrantedAttrs(MSG.req, MSG.token, MSG.ttl, MSG.name)
    for _ in range(n):
        payload = pickle.dumps(obj)
        frame = HEADER.pack(len(payload)) + payload
        (length,) = HEADER.unpack_from(frame)
        assert pickle.loads(frame[4 : 4 + length]) == obj  # speed reference only


CODECS: dict[str, Callable[[int], None]] = {
    "msgspec+crc32": codec_round_trip(Crc32Seal),
    "msgspec+mac": codec_round_trip(lambda: MacSeal(b"k" * 32)),
    "json": json_round_trip,
    "pickle (reference only)": pickle_round_trip,
}


def rate(run: Callable[[int], None], seconds: float) -> float:
    n, elapsed = 1000, 0.0
    while elapsed < seconds / 4:  # calibrate
        n *= 2
        start = time.perf_counter()
        run(n)
        elapsed = time.perf_counter() - start
    start = time.perf_counter()
    run(n * 4)
    return n * 4 / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="0.2 s, 2 repeats")
    args = parser.parse_args()
    seconds, repeat = (0.2, 2) if args.quick else (args.seconds, args.repeat)
    print(f"message: {MSG!r}; {len(PROTO.encode(MSG))} bytes as MessagePack")
    results = {name: max(rate(run, seconds) for _ in range(repeat)) for name, run in CODECS.items()}
    base = results["json"]
    print(f"{'codec':<26}{'round trips/s':>15}{'vs json':>10}")
    for name, value in results.items():
        print(f"{name:<26}{value:>15,.0f}{value / base:>9.2f}x")


if __name__ == "__main__":
    main()
