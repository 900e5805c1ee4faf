"""Soak: mailboxes (cast, call, batched drain, overflow) and the router (rotating
subscribers and topics, slow subscribers).

Mailbox operations: ``cast_nowait`` into a ``drop_oldest`` mailbox of capacity 64 (so it
overflows), batched drains, ``call`` to a server task (some cancelled before the reply,
abandoning their slot), blocked sends cancelled by a deadline. Router operations:
subscriptions opened and closed with rotating patterns (drop and disconnect policies,
capacity 8), publishes to rotating topics, receives. Sampling starts after 10,000 warm-up
operations; the test asserts the growth the memory slope projects stays under
``soak_memory.GROWTH_LIMIT``.

CI runs 20,000 operations of each; the 1,000,000-operation soaks are ``pytest -m slow
chaos/test_soak_messaging.py -s`` (figures in docs/messaging.md).
"""

from __future__ import annotations

import random

import pytest
import trio
import trio.testing
from soak_memory import GROWTH_LIMIT, MemoryTrace, isolated, traced

from trio_foundation.messaging import (
    Envelope,
    Mailbox,
    SignalRouter,
    SubscriberDisconnected,
    call,
    cast_nowait,
)

WARMUP = 10_000
PATTERNS = ["a.b", "a.*", "a.**", "*.b", "x.*.z", "**"]
TOPICS = ["a.b", "a.c", "x.y.z", "q.b", "a.b.c"]


async def _mailbox_soak(ops: int, trace: MemoryTrace, seed: int) -> None:
    rng = random.Random(seed)
    inbox: Mailbox[Envelope] = Mailbox(64, policy="drop_oldest")
    server_box: Mailbox[Envelope] = Mailbox(8)
    step = max(1, ops // 40)

    async def server() -> None:
        async for envelope in server_box:
            if envelope.message % 4:
                envelope.reply(envelope.message)
            # every fourth request is never answered: its caller times out

    async with trio.open_nursery() as nursery:
        nursery.start_soon(server)
        for i in range(-WARMUP, ops):
            op = rng.randrange(6)
            if op <= 2:
                cast_nowait(inbox, i)
            elif op == 3:
                inbox.receive_batch_nowait()
            elif op == 4:
                with trio.move_on_after(0.001):
                    await call(server_box, i)
            else:
                blocked: Mailbox[int] = Mailbox(1)
                blocked.send_nowait(0)
                with trio.move_on_after(0):
                    await blocked.send(1)
            if i >= 0 and i % step == 0:
                trace.sample(i)
        nursery.cancel_scope.cancel()
    assert len(inbox) <= 64
    trace.sample(ops)


async def _router_soak(ops: int, trace: MemoryTrace, seed: int) -> None:
    rng = random.Random(seed)
    router = SignalRouter(max_subscriptions=64)
    subs = []
    step = max(1, ops // 40)
    for i in range(-WARMUP, ops):
        op = rng.randrange(6)
        if op == 0 and len(subs) < 60:
            subs.append(
                router.open_subscription(
                    rng.choice(PATTERNS),
                    capacity=8,
                    policy=rng.choice(["drop", "disconnect"]),
                    deadline=0.001,
                )
            )
        elif op == 1 and subs:
            router.close_subscription(subs.pop(rng.randrange(len(subs))))
        elif op in (2, 3):
            router.publish(rng.choice(TOPICS), i)
        elif op == 4 and subs:
            sub = subs[rng.randrange(len(subs))]
            for _ in range(rng.randrange(4)):
                try:
                    sub.receive_nowait()
                except trio.WouldBlock:
                    break
                except (SubscriberDisconnected, trio.ClosedResourceError):
                    subs.remove(sub)
                    break
        else:
            await trio.sleep(0.0005)
        if i >= 0 and i % step == 0:
            trace.sample(i)
    assert all(sub.pending() <= 8 for sub in subs)
    trace.sample(ops)


def _run(name: str, ops: int) -> MemoryTrace:
    """The soak ``name`` (``mailbox`` or ``router``) in this process."""
    soak = _mailbox_soak if name == "mailbox" else _router_soak
    with traced() as trace:
        trio.run(
            soak,
            ops,
            trace,
            random.randrange(2**32),
            clock=trio.testing.MockClock(autojump_threshold=0),
        )
    return trace


@pytest.mark.parametrize("name", ["mailbox", "router"])
def test_messaging_soak_short(name: str) -> None:
    trace = isolated(__file__, "_run", name, 20_000, timeout=240)
    print(trace.report(name))
    assert trace.projected_growth() < GROWTH_LIMIT, trace.report(name)


@pytest.mark.slow
@pytest.mark.timeout(3600)
@pytest.mark.parametrize("name", ["mailbox", "router"])
def test_messaging_soak_million(name: str) -> None:
    trace = isolated(__file__, "_run", name, 1_000_000, timeout=3500)
    print(trace.report(name))
    assert trace.projected_growth() < GROWTH_LIMIT, trace.report(name)
