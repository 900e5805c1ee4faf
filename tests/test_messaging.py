"""Mailbox, call/cast and SignalRouter."""

from __future__ import annotations

import math

import pytest
import trio
import trio.testing

from trio_foundation.messaging import (
    Address,
    CallTimeoutError,
    Envelope,
    Mailbox,
    MailboxFullError,
    NotRegisteredError,
    PatternError,
    SignalRouter,
    SubscriberDisconnected,
    call,
    cast,
    cast_nowait,
    parse_pattern,
)
from trio_foundation.registry import Registry
from trio_foundation.telemetry import start_span

# ------------------------------------------------------------------------- mailbox


def test_bad_capacity_and_policy_are_refused() -> None:
    with pytest.raises(ValueError, match="capacity must be a positive int, got -1"):
        Mailbox(-1)
    with pytest.raises(ValueError, match="capacity must be a positive int, got 0"):
        Mailbox(0)
    with pytest.raises(ValueError, match="policy must be one of"):
        Mailbox(1, policy="spill")  # type: ignore[arg-type]


async def test_overflow_policies() -> None:
    oldest: Mailbox[int] = Mailbox(2, policy="drop_oldest")
    newest: Mailbox[int] = Mailbox(2, policy="drop_newest")
    raising: Mailbox[int] = Mailbox(2, policy="raise", name="inbox")
    blocking: Mailbox[int] = Mailbox(2)
    for i in range(2):
        for box in (oldest, newest, raising, blocking):
            assert box.send_nowait(i)
    assert oldest.send_nowait(2) is True
    assert newest.send_nowait(2) is False
    with pytest.raises(MailboxFullError, match="mailbox 'inbox' is full"):
        raising.send_nowait(2)
    with pytest.raises(trio.WouldBlock):
        blocking.send_nowait(2)
    assert oldest.receive_batch_nowait() == [1, 2]
    assert newest.receive_batch_nowait() == [0, 1]
    assert oldest.statistics().dropped == newest.statistics().dropped == 1
    assert len(raising) == 2 and len(blocking) == 2


async def test_blocked_send_waits_for_room_and_cancels_cleanly(
    autojump_clock: trio.testing.MockClock,
) -> None:
    box: Mailbox[str] = Mailbox(1)
    box.send_nowait("a")
    with trio.move_on_after(1):
        await box.send("never")
    assert box.receive_batch_nowait() == ["a"]
    box.send_nowait("b")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(box.send, "c")
        await trio.testing.wait_all_tasks_blocked()
        assert box.statistics().waiting_senders == 1
        assert await box.receive() == "b"
    assert box.receive_nowait() == "c"


async def test_receive_waits_and_batched_drain_takes_everything() -> None:
    box: Mailbox[int] = Mailbox(100)
    got: list[list[int]] = []

    async def drainer() -> None:
        got.append(await box.receive_batch())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(drainer)
        await trio.testing.wait_all_tasks_blocked()
        for i in range(5):
            box.send_nowait(i)
    assert got == [[0], [1, 2, 3, 4]] or got == [[0, 1, 2, 3, 4]]
    for i in range(10):
        box.send_nowait(i)
    assert await box.receive_batch(max_messages=4) == [0, 1, 2, 3]
    assert await box.receive_batch() == list(range(4, 10))
    with pytest.raises(ValueError, match="max_messages must be positive"):
        await box.receive_batch(0)


async def test_close_drains_then_ends() -> None:
    box: Mailbox[int] = Mailbox(3)
    box.send_nowait(1)
    box.close()
    with pytest.raises(trio.ClosedResourceError):
        box.send_nowait(2)
    assert [m async for m in box] == [1]
    with pytest.raises(trio.EndOfChannel):
        await box.receive_batch()


# ---------------------------------------------------------------------- call / cast


async def _serve(box: Mailbox[Envelope], *, task_status: trio.TaskStatus[None]) -> None:
    task_status.started()
    async for envelope in box:
        if envelope.message == "boom":
            envelope.fail(KeyError("boom"))
        elif envelope.message == "slow":
            await trio.sleep(10)
            assert envelope.reply("late") is False
            assert envelope.abandoned
        elif envelope.reply_to is not None:
            envelope.reply(("echo", envelope.message, envelope.trace))


async def test_call_cast_and_errors(autojump_clock: trio.testing.MockClock) -> None:
    box: Mailbox[Envelope] = Mailbox(10)
    async with trio.open_nursery() as nursery:
        await nursery.start(_serve, box)
        assert await call(box, "hi", timeout=1) == ("echo", "hi", None)
        with start_span("client") as span:
            reply = await call(box, "traced")
        assert reply[2] == span
        with pytest.raises(KeyError, match="boom"):
            await call(box, "boom", timeout=1)
        with pytest.raises(CallTimeoutError, match="no reply within 1 s"):
            await call(box, "slow", timeout=1)
        assert cast_nowait(box, "fire") is True
        assert await cast(box, "and forget") is True
        with pytest.raises(ValueError, match="timeout must be > 0"):
            await call(box, "x", timeout=0)
        await trio.sleep(20)
        nursery.cancel_scope.cancel()


async def test_cast_never_blocks_unless_asked(autojump_clock: trio.testing.MockClock) -> None:
    box: Mailbox[Envelope] = Mailbox(1)
    cast_nowait(box, 1)
    with pytest.raises(trio.WouldBlock):
        await cast(box, 2)
    with trio.move_on_after(1) as scope:
        await cast(box, 2, wait=True)
    assert scope.cancelled_caught


async def test_call_to_a_full_drop_newest_mailbox_fails_fast() -> None:
    box: Mailbox[Envelope] = Mailbox(1, policy="drop_newest")
    cast_nowait(box, 1)
    with pytest.raises(MailboxFullError):
        await call(box, "x", timeout=5)


async def test_cancelled_call_abandons_its_slot(autojump_clock: trio.testing.MockClock) -> None:
    box: Mailbox[Envelope] = Mailbox(2)
    with trio.move_on_after(1):
        await call(box, "q")
    envelope = box.receive_nowait()
    assert envelope.abandoned
    assert envelope.reply("too late") is False
    assert envelope.reply_to is not None and envelope.reply_to._task is None


async def test_addressing_by_registry_key() -> None:
    registry = Registry()
    box: Mailbox[Envelope] = Mailbox(10)
    address = Address(registry, "server")
    with pytest.raises(NotRegisteredError, match="no mailbox registered under key 'server'"):
        cast_nowait(address, 1)
    async with trio.open_nursery() as nursery:
        await nursery.start(_serve, box)
        async with registry.register("server", {}, value=box):
            assert await call(address, 7, timeout=1) == ("echo", 7, None)
        nursery.cancel_scope.cancel()
    registry.register_nowait("not-a-box", {}, value=42)
    with pytest.raises(TypeError, match="registered with a int, not a Mailbox"):
        await call(Address(registry, "not-a-box"), 1)
    with pytest.raises(TypeError, match="target must be a Mailbox or an Address"):
        cast_nowait("server", 1)  # type: ignore[arg-type]
    assert math.isinf(math.inf)


# --------------------------------------------------------------------------- router


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        ("", "empty pattern"),
        ("a..b", "empty segment at position 1"),
        ("a.b*", "mixes '*'"),
        ("a.**.b", "'\\*\\*' may only be the last segment"),
    ],
)
def test_bad_patterns_are_refused(pattern: str, reason: str) -> None:
    with pytest.raises(PatternError, match=reason):
        parse_pattern(pattern)
    with pytest.raises(PatternError), SignalRouter().subscribe(pattern):
        pass


async def test_bad_topics_and_capacities_are_refused() -> None:
    router = SignalRouter()
    with pytest.raises(PatternError):
        router.publish("a.*")
    with pytest.raises(ValueError, match="capacity must be a positive int, got -5"):
        router.open_subscription("a", capacity=-5)
    with pytest.raises(ValueError, match="max_subscriptions"):
        SignalRouter(max_subscriptions=-1)


async def test_pattern_matching() -> None:
    router = SignalRouter()
    patterns = ["a.b.c", "a.**", "a.*.c", "*.b.*", "**", "a.b", "x.**"]
    subs = {p: router.open_subscription(p) for p in patterns}
    assert router.publish("a.b.c", 1) == 5
    got = {p for p, s in subs.items() if s.pending()}
    assert got == {"a.b.c", "a.**", "a.*.c", "*.b.*", "**"}
    assert router.publish("a", 2) == 1  # only "**": a.** needs one more segment
    assert router.publish("a.b", 3) == 3  # a.**, **, a.b
    for sub in subs.values():
        router.close_subscription(sub)
    assert router.statistics().subscriptions == 0
    assert router._root.empty()


async def test_slow_subscriber_drops_and_never_stalls_others() -> None:
    router = SignalRouter()
    with router.subscribe("t", capacity=2) as slow, router.subscribe("t", capacity=100) as fast:
        for i in range(50):
            router.publish("t", i)
        assert slow.pending() == 2 and slow.dropped == 48
        assert [s.payload for s in [fast.receive_nowait() for _ in range(50)]] == list(range(50))
        assert router.statistics().dropped == 48


async def test_disconnect_after_deadline(autojump_clock: trio.testing.MockClock) -> None:
    router = SignalRouter()
    with router.subscribe("t", capacity=1, policy="disconnect", deadline=5) as sub:
        router.publish("t", 1)
        router.publish("t", 2)  # full since now
        await trio.sleep(4)
        router.publish("t", 3)
        assert not sub.disconnected
        await trio.sleep(1)
        router.publish("t", 4)
        assert sub.disconnected
        assert router.statistics().subscriptions == 0
        assert router.statistics().disconnected == 1
        assert (await sub.receive()).payload == 1
        with pytest.raises(SubscriberDisconnected, match="stayed full for more than 5 s"):
            await sub.receive()


async def test_subscription_iterates_until_closed() -> None:
    router = SignalRouter()
    received: list[object] = []
    async with trio.open_nursery() as nursery:
        with router.subscribe("news.*") as sub:

            async def reader() -> None:
                async for signal in sub:
                    received.append(signal.payload)

            nursery.start_soon(reader)
            await trio.testing.wait_all_tasks_blocked()
            router.publish("news.a", "x")
            router.publish("other", "y")
            await trio.testing.wait_all_tasks_blocked()
    assert received == ["x"]
