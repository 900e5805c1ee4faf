"""The node driver on an in-memory transport stub: effect order, timers, replies, trace hook."""

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
from trio_foundation.protocols.lease_lock import (
    AcquireRequest,
    Granted,
    LeaseInfo,
    LockClient,
    LockServer,
    ServerDurable,
)
from trio_foundation.runtime.driver import NO_STATE, NodeDriver, Start, TimerFired, Transition
from trio_foundation.runtime.transport import Envelope


class StubTransport:
    """A Transport whose sends are recorded in a shared log and whose inbox is a channel."""

    def __init__(self, node_id: int, log: list[tuple[str, Any]], *, route: bool = True) -> None:
        self._node_id = node_id
        self.log = log
        self.route = route
        self.send_in, self.inbox = trio.open_memory_channel[Envelope](16)
        self.peers: dict[int, StubTransport] = {}

    @property
    def node_id(self) -> int:
        return self._node_id

    def send_nowait(self, dst: int, msg: Any) -> bool:
        self.log.append(("send", (dst, msg)))
        peer = self.peers.get(dst)
        if peer is None or not self.route:
            return False
        peer.send_in.send_nowait(Envelope(self._node_id, msg))
        return True

    async def receive(self) -> Envelope:
        return await self.inbox.receive()


class ScriptedCore:
    """A core that returns pre-scripted effects and records its inputs."""

    def __init__(self, script: dict[str, list[Effect]]) -> None:
        self.script = script
        self.inputs: list[Any] = []
        self.restored: Any = None

    def on_start(self, now: float, rng: random.Random) -> list[Effect]:
        self.inputs.append(("start", now))
        return list(self.script.get("start", []))

    def on_message(self, now: float, src: int, msg: Any) -> list[Effect]:
        self.inputs.append(("message", src, msg))
        return list(self.script.get(f"msg:{msg}", []))

    def on_timer(self, now: float, name: str) -> list[Effect]:
        self.inputs.append(("timer", name, now))
        return list(self.script.get(f"timer:{name}", []))

    def on_client(self, now: float, request: ClientRequest) -> list[Effect]:
        self.inputs.append(("client", request.op))
        effects = list(self.script.get(f"op:{request.op}", []))
        return [Reply(request.client, e.value) if isinstance(e, Reply) else e for e in effects]

    def snapshot_persistent(self) -> Any:
        return None

    def restore(self, snapshot: Any) -> None:
        self.restored = snapshot


async def test_persist_runs_before_everything_else_then_emitted_order() -> None:
    log: list[tuple[str, Any]] = []
    transport = StubTransport(1, log)
    core = ScriptedCore(
        {
            "op:go": [
                Send(2, "a"),
                SetTimer("t", 5.0),
                Persist("p1"),
                Reply("x", "done"),
                Send(3, "b"),
                Persist("p2"),
            ]
        }
    )
    driver = NodeDriver(core, transport, persist=lambda d: log.append(("persist", d)))
    async with trio.open_nursery() as nursery:
        await nursery.start(driver.run)
        key = driver.submit("go")
        reply = await driver.wait_reply(key)
        nursery.cancel_scope.cancel()
    assert reply.value == "done"
    assert log == [
        ("persist", "p1"),
        ("persist", "p2"),
        ("send", (2, "a")),
        ("send", (3, "b")),
    ]


async def test_a_failing_persist_sends_nothing_and_ends_the_driver() -> None:
    log: list[tuple[str, Any]] = []
    core = ScriptedCore({"start": [Send(2, "early"), Persist("p")]})

    def broken(data: Any) -> None:
        raise OSError("disk full")

    driver = NodeDriver(core, StubTransport(1, log), persist=broken)
    with pytest.raises(OSError, match="disk full"):
        await driver.run()
    assert log == []
    assert not driver.running


async def test_persist_without_callback_is_an_error() -> None:
    driver = NodeDriver(ScriptedCore({"start": [Persist(1)]}), StubTransport(1, []))
    with pytest.raises(RuntimeError, match="no persist callback"):
        await driver.run()


async def test_timers_fire_on_the_clock_rearm_and_cancel(autojump_clock: Any) -> None:
    core = ScriptedCore(
        {
            "start": [SetTimer("a", 1.0), SetTimer("b", 2.0), SetTimer("c", 3.0)],
            "timer:a": [CancelTimer("b"), SetTimer("c", 10.0)],
        }
    )
    driver = NodeDriver(core, StubTransport(1, []))
    async with trio.open_nursery() as nursery:
        await nursery.start(driver.run)
        await trio.sleep(20)
        nursery.cancel_scope.cancel()
    fired = [(i[1], i[2]) for i in core.inputs if i[0] == "timer"]
    assert fired == [("a", 1.0), ("c", 11.0)]


async def test_a_timer_set_by_another_task_wakes_the_driver(autojump_clock: Any) -> None:
    core = ScriptedCore({"op:arm": [SetTimer("late", 0.5)]})
    driver = NodeDriver(core, StubTransport(1, []))
    async with trio.open_nursery() as nursery:
        await nursery.start(driver.run)
        await trio.sleep(100)
        driver.submit("arm")
        await trio.sleep(1)
        nursery.cancel_scope.cancel()
    assert ("timer", "late", 100.5) in core.inputs


async def test_pull_and_push_delivery() -> None:
    core = ScriptedCore({})
    transport = StubTransport(1, [])
    driver = NodeDriver(core, transport)
    async with trio.open_nursery() as nursery:
        await nursery.start(driver.run)
        transport.send_in.send_nowait(Envelope(7, "pulled"))
        await trio.testing.wait_all_tasks_blocked()
        driver.deliver(8, "pushed")
        nursery.cancel_scope.cancel()
    assert ("message", 7, "pulled") in core.inputs
    assert core.inputs[-1] == ("message", 8, "pushed")
    driver.deliver(9, "after stop")  # dropped, like a network would
    assert core.inputs[-1] == ("message", 8, "pushed")


async def test_restore_then_start_and_waiters_broken_on_stop() -> None:
    core = ScriptedCore({})
    driver = NodeDriver(core, StubTransport(1, []), restored="snapshot")
    async with trio.open_nursery() as nursery:
        await nursery.start(driver.run)
        key = driver.submit("never-answered")
        nursery.cancel_scope.cancel()
    assert core.restored == "snapshot"
    with pytest.raises(trio.BrokenResourceError):
        await driver.wait_reply(key)
    with pytest.raises(RuntimeError, match="not running"):
        driver.submit("late")
    with pytest.raises(RuntimeError, match="runs once"):
        await driver.run()
    fresh = ScriptedCore({})
    assert NodeDriver(fresh, StubTransport(1, []), restored=NO_STATE) is not None
    assert fresh.restored is None


async def test_trace_records_inputs_effects_in_emitted_order_and_projection() -> None:
    records: list[Transition] = []
    script: dict[str, list[Effect]] = {"start": [Send(2, "x"), Persist("p"), SetTimer("t", 1)]}
    driver = NodeDriver(
        ScriptedCore(script),
        StubTransport(1, []),
        persist=lambda d: None,
        trace=records.append,
        projection=lambda core: len(core.inputs),
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(driver.run)
        driver.deliver(4, "m")
        nursery.cancel_scope.cancel()
    assert records[0].input == Start()
    assert records[0].effects == (Send(2, "x"), Persist("p"), SetTimer("t", 1))
    assert records[0].state == 1
    assert records[1].input == Envelope(4, "m") and records[1].state == 2
    assert TimerFired("t") == TimerFired("t")


async def test_lease_lock_cores_over_two_drivers(autojump_clock: Any) -> None:
    """The real cores: a grant is persisted before the Granted is sent, tokens increase."""
    log: list[tuple[str, Any]] = []
    server_t, client_t = StubTransport(0, log), StubTransport(5, log)
    server_t.peers[5] = client_t
    client_t.peers[0] = server_t
    durable: list[Any] = []

    def persist(data: Any) -> None:
        log.append(("persist", data))
        durable.append(data)

    server = NodeDriver(LockServer(0, max_ttl=10), server_t, persist=persist)
    client = NodeDriver(LockClient(5, server=0), client_t, persist=lambda d: None)
    async with trio.open_nursery() as nursery:
        await nursery.start(server.run)
        await nursery.start(client.run)
        tokens = []
        for _ in range(3):
            reply = await client.wait_reply(client.submit("acquire", 2.0))
            assert reply.ok and isinstance(reply.value, LeaseInfo)
            tokens.append(reply.value.token)
            await trio.sleep(3)  # renewed in the background past the ttl
            assert client.core.lease is not None  # type: ignore[attr-defined]
            await client.wait_reply(client.submit("release"))
        nursery.cancel_scope.cancel()
    assert tokens == [1, 2, 3]
    assert durable[-1] == ServerDurable(3, 2.0)
    for token in tokens:
        persisted = log.index(("persist", ServerDurable(token, 2.0)))
        sent = next(
            i
            for i, (kind, what) in enumerate(log)
            if kind == "send" and isinstance(what[1], Granted) and what[1].token == token
        )
        assert persisted < sent
    assert any(kind == "send" and isinstance(what[1], AcquireRequest) for kind, what in log)


def test_the_synchronous_face_with_caller_owned_timers_and_replies() -> None:
    """What the simulator uses: start/deliver/request/fire_timer/stop, no Trio loop."""
    now = [10.0]
    armed: list[tuple[str, float, int]] = []
    replies: list[Reply] = []
    core = ScriptedCore(
        {
            "start": [SetTimer("t", 2.0)],
            "op:rearm": [SetTimer("t", 5.0), Reply("x", "ok")],
            "timer:t": [Send(3, "tick")],
        }
    )
    log: list[tuple[str, Any]] = []
    driver = NodeDriver(
        core,
        StubTransport(1, log, route=False),
        clock=lambda: now[0],
        on_arm=lambda name, delay, ticket: armed.append((name, delay, ticket)),
        on_reply=replies.append,
        pull=False,
    )
    driver.start()
    assert driver.running and driver.timers() == {"t": 12.0} and driver.timer_count == 1
    first = armed[-1][2]
    driver.request(ClientRequest("c1", "rearm"))
    assert [r.value for r in replies] == ["ok"]
    second = armed[-1][2]
    assert armed[-1][:2] == ("t", 5.0) and second != first
    assert not driver.fire_timer("t", first)  # a stale ticket fires nothing
    now[0] = 15.0
    assert driver.fire_timer("t", second)
    assert ("timer", "t", 15.0) in core.inputs and log == [("send", (3, "tick"))]
    assert not driver.fire_timer("t", second)  # fired once
    driver.stop()
    assert not driver.running and driver.timers() == {}
    driver.request(ClientRequest("c2", "rearm"))  # ignored once stopped
    assert len(replies) == 1


def test_submit_final_sends_and_persists_but_drops_timers_and_replies() -> None:
    log: list[tuple[str, Any]] = []
    core = ScriptedCore({"op:bye": [SetTimer("t", 1.0), Send(2, "bye"), Persist("p"), Reply("x")]})
    driver = NodeDriver(
        core,
        StubTransport(1, log, route=False),
        persist=lambda d: log.append(("persist", d)),
        clock=lambda: 0.0,
    )
    with pytest.raises(RuntimeError, match="never ran"):
        driver.submit_final("bye")
    driver.start()
    with pytest.raises(RuntimeError, match="is running"):
        driver.submit_final("bye")
    driver.stop()
    driver.submit_final("bye")
    assert log == [("persist", "p"), ("send", (2, "bye"))]
    assert driver.timers() == {}
