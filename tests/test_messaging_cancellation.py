"""Mailboxes, call/cast and the router under injected cancellations (``verify.cancellation``).

Clients ``call`` a server through a small blocking mailbox while a caster waits for room
and the server itself may be cancelled; subscribers come and go while a publisher
publishes. After every step: the mailbox is within capacity and the router holds exactly
the subscriptions whose owner is inside its ``with`` block. At the end: no task is parked
in the mailbox, and every request still queued belongs to a call that has abandoned its
reply slot (nothing is held for a caller that left).
"""

from __future__ import annotations

from typing import Any

import trio
from hypothesis import given, settings

from trio_foundation.messaging import (
    CallTimeoutError,
    Envelope,
    Mailbox,
    SignalRouter,
    call,
    cast,
)
from trio_foundation.verify.cancellation import Injector, injection_plans, run_injected

SETTINGS = settings(max_examples=min(60, settings().max_examples), deadline=None)


def _scenario(state: dict[str, Any]) -> Any:
    async def scenario(inj: Injector) -> None:
        box: Mailbox[Envelope] = Mailbox(2)
        router = SignalRouter()
        state.update(box=box, router=router, subscribed=0)

        async def server() -> None:
            with inj.scope("server"):
                async for envelope in box:
                    await trio.sleep(0.5)
                    if envelope.reply_to is not None:
                        envelope.reply(envelope.message)

        async def client(i: int) -> None:
            with inj.scope(f"client{i}"):
                try:
                    assert await call(box, i, timeout=5) == i
                except CallTimeoutError:
                    pass

        async def caster() -> None:
            with inj.scope("caster"), trio.move_on_after(5):  # the server may be gone
                for i in range(4):
                    await cast(box, -i, wait=True)

        async def subscriber(i: int) -> None:
            with inj.scope(f"subscriber{i}"):
                await trio.sleep(i * 0.3)
                with router.subscribe("t.*", capacity=2) as sub:
                    state["subscribed"] += 1
                    try:
                        async for _ in sub:
                            await trio.sleep(0.4)
                    finally:
                        state["subscribed"] -= 1

        async def publisher() -> None:
            for i in range(12):
                router.publish("t.x", i)
                await trio.sleep(0.1)

        async with trio.open_nursery() as background:
            background.start_soon(server)
            for i in range(2):
                background.start_soon(subscriber, i)
            async with trio.open_nursery() as nursery:
                for i in range(3):
                    nursery.start_soon(client, i)
                nursery.start_soon(caster)
                nursery.start_soon(publisher)
            background.cancel_scope.cancel()

    return scenario


def _check(state: dict[str, Any]) -> None:
    box: Mailbox[Envelope] | None = state.get("box")
    if box is None:
        return
    assert len(box) <= box.capacity
    assert state["router"].statistics().subscriptions == state["subscribed"]


@SETTINGS
@given(plan=injection_plans(max_step=80))
def test_messaging_under_injected_cancellation(plan: Any) -> None:
    state: dict[str, Any] = {}
    run_injected(_scenario(state), plan, check=lambda: _check(state))
    box: Mailbox[Envelope] = state["box"]
    stats = box.statistics()
    assert stats.waiting_senders == stats.waiting_receivers == 0
    for envelope in box.receive_batch_nowait():
        if envelope.reply_to is not None:
            assert envelope.reply_to.state == "abandoned", "a reply slot outlived its caller"
    assert state["router"].statistics().subscriptions == 0
