"""Request/reply round trips per second over loopback TCP: the transport against a raw
Trio TCP loop (the floor).

Run ``python benchmarks/bench_tcp.py`` (``--quick`` for a shorter run). A client
sends a small request and waits for the reply before sending the next
(``sequential``: the latency-bound case, with p50/p99 per round trip), or keeps
``--window`` requests in flight (``pipelined``). Rows:

* ``raw trio``: ``trio.open_tcp_stream`` / ``trio.serve_tcp`` echoing 16-byte
  requests — no framing, no codec, no handshake; the floor any transport pays.
* ``transport``: :func:`trio_foundation.runtime.tcp.open_tcp_transport`, a
  ``Ping`` answered with a ``Pong`` through ``send_nowait``/``receive``, CRC-32
  frames; ``transport+auth``: the same with a shared secret (MAC per frame);
  ``transport+handler``: the server answers from an ``on_message`` handler run
  by the connection's reader (no hand-off to another task).

Each row is measured ``--repeat`` times (default 3) for ``--seconds`` each and
the best run is printed (the machine is shared).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Awaitable, Callable

import trio

from trio_foundation.runtime.codec import WireMessage, WireProtocol
from trio_foundation.runtime.tcp import TcpTransport, open_tcp_transport
from trio_foundation.runtime.transport import Envelope


class Ping(WireMessage, frozen=True):
    seq: int


class Pong(WireMessage, frozen=True):
    seq: int


PROTO = WireProtocol("bench-tcp", 1, [Ping, Pong])
REQUEST = b"0123456789abcdef"


async def raw_trio(seconds: float, window: int) -> tuple[int, list[float]]:
    async def echo(stream: trio.SocketStream) -> None:
        try:
            while data := await stream.receive_some(65536):
                await stream.send_all(data)
        except trio.BrokenResourceError:
            pass

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(trio.serve_tcp, echo, 0)
        port = listeners[0].socket.getsockname()[1]
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        done, latencies = 0, []
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            await stream.send_all(REQUEST * window)
            want = len(REQUEST) * window
            while want:
                want -= len(await stream.receive_some(want))
            latencies.append(time.perf_counter() - start)
            done += window
        await stream.aclose()
        nursery.cancel_scope.cancel()
    return done, latencies


def transport(
    secret: bytes | None, *, handler: bool = False
) -> Callable[[float, int], Awaitable[tuple[int, list[float]]]]:
    async def run(seconds: float, window: int) -> tuple[int, list[float]]:
        ref: list[TcpTransport] = []

        def on_message(env: Envelope) -> None:
            ref[0].send_nowait(env.src, Pong(env.msg.seq))

        async with open_tcp_transport(
            PROTO,
            0,
            listen=("127.0.0.1", 0),
            secret=secret,
            on_message=on_message if handler else None,
        ) as server:
            assert server.listen_address is not None
            ref.append(server)

            async def echo() -> None:
                if handler:
                    return
                while True:
                    env = await server.receive()
                    server.send_nowait(env.src, Pong(env.msg.seq))
                    while True:  # answer everything already received before yielding
                        try:
                            env = server.receive_nowait()
                        except trio.WouldBlock:
                            break
                        server.send_nowait(env.src, Pong(env.msg.seq))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(echo)
                async with open_tcp_transport(
                    PROTO, 1, peers={0: server.listen_address}, secret=secret
                ) as client:
                    await client.wait_connected(0)
                    done, latencies, seq = 0, [], 0
                    deadline = time.perf_counter() + seconds
                    while time.perf_counter() < deadline:
                        start = time.perf_counter()
                        for _ in range(window):
                            client.send_nowait(0, Ping(seq))
                            seq += 1
                        for _ in range(window):
                            await client.receive()
                        latencies.append(time.perf_counter() - start)
                        done += window
                nursery.cancel_scope.cancel()
        return done, latencies

    return run


ROWS = {
    "raw trio": raw_trio,
    "transport": transport(None),
    "transport+auth": transport(b"bench secret, 32 bytes long....."),
    "transport+handler": transport(None, handler=True),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--window", type=int, default=64)
    parser.add_argument("--quick", action="store_true", help="0.5 s, 1 repeat")
    args = parser.parse_args()
    seconds, repeat = (0.5, 1) if args.quick else (args.seconds, args.repeat)
    print(f"{'mode':<12}{'row':<19}{'round trips/s':>14}{'vs raw':>8}{'p50 us':>9}{'p99 us':>9}")
    for mode, window in (("sequential", 1), ("pipelined", args.window)):
        floor = 0.0
        for name, run in ROWS.items():
            best: tuple[float, list[float]] = (0.0, [])
            for _ in range(repeat):
                start = time.perf_counter()
                done, latencies = trio.run(run, seconds, window)
                rate = done / (time.perf_counter() - start)
                if rate > best[0]:
                    best = (rate, latencies)
            rate, latencies = best
            floor = floor or rate
            q = statistics.quantiles(latencies, n=100)
            print(
                f"{mode:<12}{name:<19}{rate:>14,.0f}{rate / floor:>7.2f}x"
                f"{q[49] * 1e6:>9.0f}{q[98] * 1e6:>9.0f}"
            )
    if args.window > 1:
        print(f"(pipelined: {args.window} requests in flight; latencies are per window)")


if __name__ == "__main__":
    main()
