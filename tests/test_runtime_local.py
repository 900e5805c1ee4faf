"""runtime/local.py: the in-process network, with cores on NodeDriver over its transports."""

from __future__ import annotations

import random
from typing import Any

import pytest
import trio
import trio.testing

from trio_foundation.protocols.effects import (
    CancelTimer,
    ClientRequest,
    Effect,
    Persist,
    Reply,
    Send,
    SetTimer,
)
from trio_foundation.runtime.driver import NodeDriver
from trio_foundation.runtime.local import LocalNetwork, NodeStorage


class Counter:
    """A tiny core: counts starts (persisted), pings a peer, echoes, and ticks a timer."""

    def __init__(self, peer: int | None = None) -> None:
        self.peer = peer
        self.starts = 0
        self.received: list[tuple[int, Any]] = []
        self.ticks = 0

    def snapshot_persistent(self) -> int:
        return self.starts

    def restore(self, snapshot: Any) -> None:
        self.starts = snapshot

    def on_start(self, now: float, rng: random.Random) -> list[Effect]:
        self.starts += 1
        return [Persist(self.starts), SetTimer("tick", 1.0)]

    def on_message(self, now: float, src: int, msg: Any) -> list[Effect]:
        self.received.append((src, msg))
        return []

    def on_timer(self, now: float, name: str) -> list[Effect]:
        self.ticks += 1
        return [SetTimer("tick", 1.0)] if self.ticks < 3 else [CancelTimer("tick")]

    def on_client(self, now: float, request: ClientRequest) -> list[Effect]:
        if request.op == "ping" and self.peer is not None:
            return [Send(self.peer, request.value), Reply(request.client, "sent")]
        if request.op == "later":
            return []  # never answered
        return [Reply(request.client, request.value)]


@pytest.fixture
def autojump_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)


async def test_messages_timers_and_replies(autojump_clock: trio.testing.MockClock) -> None:
    net = LocalNetwork(capacity=4)
    a, b = Counter(peer=2), Counter()
    node_a = NodeDriver(a, net.transport(1), persist=NodeStorage().save)
    node_b = NodeDriver(b, net.transport(2), persist=NodeStorage().save)
    async with trio.open_nursery() as nursery:
        await nursery.start(node_a.run)
        await nursery.start(node_b.run)
        assert (await node_a.wait_reply(node_a.submit("ping", "hello"))).value == "sent"
        await trio.sleep(5)
        assert b.received == [(1, "hello")]
        assert a.ticks == b.ticks == 3  # the timer re-armed twice, then was cancelled
        nursery.cancel_scope.cancel()


async def test_cut_links_and_full_inboxes_drop(autojump_clock: trio.testing.MockClock) -> None:
    net = LocalNetwork(capacity=2)
    net.transport(7)
    net.cut(1, 7)
    assert not net.send(1, 7, "x")
    net.heal()
    assert net.send(1, 7, "x") and net.send(1, 7, "y")
    assert not net.send(1, 7, "z")  # inbox full
    assert not net.send(1, 99, "z")  # nobody there
    assert net.dropped == 3


async def test_a_restarted_node_keeps_its_storage(autojump_clock: trio.testing.MockClock) -> None:
    net = LocalNetwork()
    storage = NodeStorage()
    for expected in (1, 2, 3):
        core = Counter()
        with net.transport(1) as transport:
            driver = NodeDriver(core, transport, persist=storage.save, restored=storage.restored())
            async with trio.open_nursery() as nursery:
                await nursery.start(driver.run)
                nursery.cancel_scope.cancel()  # a crash
        assert core.starts == expected
    assert storage.data == 3


async def test_waiting_on_a_node_that_stops_raises(autojump_clock: trio.testing.MockClock) -> None:
    node = NodeDriver(Counter(), LocalNetwork().transport(1), persist=NodeStorage().save)
    with pytest.raises(RuntimeError, match="not running"):
        node.submit("echo", 1)
    node_scope = trio.CancelScope()

    async def host(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        with node_scope:
            async with trio.open_nursery() as nursery:
                await nursery.start(node.run)
                task_status.started()

    async def stop_later() -> None:
        await trio.sleep(1.0)
        node_scope.cancel()  # the node crashes; the waiter is not cancelled

    async with trio.open_nursery() as nursery:
        await nursery.start(host)
        key = node.submit("later")
        nursery.start_soon(stop_later)
        with pytest.raises(trio.BrokenResourceError, match="stopped before replying"):
            await node.wait_reply(key)


def test_bad_configuration() -> None:
    with pytest.raises(ValueError, match="capacity must be > 0"):
        LocalNetwork(capacity=0)
    with pytest.raises(TypeError, match="node id must be an int"):
        LocalNetwork().transport("a")  # type: ignore[arg-type]
