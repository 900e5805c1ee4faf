"""Benchmarks: mailboxes, call/cast and the signal router vs raw trio, in one run.

    python benchmarks/bench_messaging.py [--quick]

* cast: ``cast_nowait(mailbox, m)`` (wraps ``m`` in an envelope with the trace context) vs
  ``MemorySendChannel.send_nowait(m)``, 100,000 messages into a buffer that holds them,
  then drained (the drain is not timed);
* call: a client task doing 20,000 sequential ``await call(mailbox, m)`` against a server
  task answering ``envelope.reply(m)``, vs the raw request/reply pair a hand-written trio
  program would use: a memory channel carrying ``(m, reply_send_channel)``, the client
  owning a reusable reply channel;
* batched drain: ``receive_batch_nowait()`` of 1,000,000 messages already queued
  (receiving side only), in messages/s;
* router fan-out: ``publish`` of one signal to 10 and to 1,000 matching subscribers
  (``agents.*.health``), per publish and per delivery.

Best of 5 (cast and call: best of 10, the two sides alternating, so load on a shared
machine hits both alike), garbage collector disabled while timing. Ratio = baseline
time / ours (>= 1: ours is faster). Goals (issue 12): cast >= 0.8x raw channel; call >= 0.8x raw
request/reply; batched drain >= 1M messages/s.
"""

from __future__ import annotations

import argparse
import gc
import time
from collections.abc import Callable

import trio

from trio_foundation.messaging import Envelope, Mailbox, SignalRouter, call, cast_nowait


def best(fn: Callable[[], float], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        gc.collect()
        gc.disable()
        try:
            times.append(fn())
        finally:
            gc.enable()
    return min(times)


def bench_cast(n: int, repeat: int) -> tuple[float, float]:
    async def ours() -> float:
        box: Mailbox[Envelope] = Mailbox(n)
        start = time.perf_counter()
        for i in range(n):
            cast_nowait(box, i)
        elapsed = time.perf_counter() - start
        box.receive_batch_nowait()
        return elapsed

    async def raw() -> float:
        send, receive = trio.open_memory_channel[int](n)
        start = time.perf_counter()
        for i in range(n):
            send.send_nowait(i)
        elapsed = time.perf_counter() - start
        while True:
            try:
                receive.receive_nowait()
            except trio.WouldBlock:
                break
        return elapsed

    ours_ns, raw_ns = [], []
    for _ in range(repeat):  # alternate, so load on the machine hits both sides alike
        ours_ns.append(best(lambda: trio.run(ours), 1) / n * 1e9)
        raw_ns.append(best(lambda: trio.run(raw), 1) / n * 1e9)
    return min(ours_ns), min(raw_ns)


def bench_call(n: int, repeat: int) -> tuple[float, float]:
    async def ours() -> float:
        box: Mailbox[Envelope] = Mailbox(100)

        async def server() -> None:
            async for envelope in box:
                envelope.reply(envelope.message)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(server)
            start = time.perf_counter()
            for i in range(n):
                await call(box, i)
            elapsed = time.perf_counter() - start
            nursery.cancel_scope.cancel()
        return elapsed

    async def raw() -> float:
        requests_send, requests_receive = trio.open_memory_channel[
            tuple[int, trio.MemorySendChannel[int]]
        ](100)
        reply_send, reply_receive = trio.open_memory_channel[int](1)

        async def server() -> None:
            async for message, reply_to in requests_receive:
                reply_to.send_nowait(message)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(server)
            start = time.perf_counter()
            for i in range(n):
                await requests_send.send((i, reply_send))
                await reply_receive.receive()
            elapsed = time.perf_counter() - start
            nursery.cancel_scope.cancel()
        return elapsed

    ours_us, raw_us = [], []
    for _ in range(repeat):
        ours_us.append(best(lambda: trio.run(ours), 1) / n * 1e6)
        raw_us.append(best(lambda: trio.run(raw), 1) / n * 1e6)
    return min(ours_us), min(raw_us)


def bench_drain(n: int, repeat: int) -> float:
    box: Mailbox[int] = Mailbox(n)

    def once() -> float:
        for i in range(n):
            box.send_nowait(i)
        start = time.perf_counter()
        box.receive_batch_nowait()
        return time.perf_counter() - start

    return n / best(once, repeat)


def bench_fanout(subscribers: int, publishes: int, repeat: int) -> float:
    async def go() -> float:
        router = SignalRouter()
        subs = [
            router.open_subscription("agents.*.health", capacity=publishes)
            for _ in range(subscribers)
        ]
        start = time.perf_counter()
        for i in range(publishes):
            router.publish("agents.a1.health", i)
        elapsed = time.perf_counter() - start
        for sub in subs:
            router.close_subscription(sub)
        return elapsed

    return best(lambda: trio.run(go), repeat) / publishes * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a tenth of the messages")
    args = parser.parse_args()
    scale = 10 if args.quick else 1
    repeat = 5
    ours, raw = bench_cast(100_000 // scale, 2 * repeat)
    print(f"cast      ours {ours:7.0f} ns   raw channel {raw:7.0f} ns   ratio {raw / ours:.2f}x")
    ours, raw = bench_call(20_000 // scale, 2 * repeat)
    print(f"call      ours {ours:7.1f} us   raw pair    {raw:7.1f} us   ratio {raw / ours:.2f}x")
    rate = bench_drain(1_000_000 // scale, repeat)
    print(f"batched drain: {rate / 1e6:.1f} M messages/s")
    for subscribers, publishes in ((10, 10_000 // scale), (1000, 1000 // scale)):
        per = bench_fanout(subscribers, publishes, repeat)
        print(
            f"fan-out to {subscribers:5} subscribers: {per:8.1f} us per publish,"
            f" {per / subscribers * 1000:6.0f} ns per delivery"
        )


if __name__ == "__main__":
    main()
