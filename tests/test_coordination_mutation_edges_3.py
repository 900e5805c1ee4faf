"""coordination/: the fourth mutation sample's survivors (seed 1726211423) and the third's.

Each test asserts an exact reply, message, state or count:

* ``consensus``: a raw batch with an undecodable command in the middle (the later
  commands are still proposed); a client's batch retried after partial progress; a
  batch answered ``not_leader`` as a whole, whose leader hint the client follows at
  once. The last two talk to stand-in members (a TCP transport on a free loopback
  port answering each :class:`CSubmitBatch` from a script): no real member answers a
  batch that way on demand.
* ``market``: ``execution_timeout`` refused when not finite, with one message for
  :meth:`Market.allocate` and :meth:`Market.auction`; a sealed call's ``minimum`` is
  the reserve; an English bidder refused ``duplicate`` while its outbid hold's
  release is in flight (a ledger answering 50 ms late) is called again.
* ``raft_ledger``: a transfer's key of the wrong type is named by its type.

The third sample's (seed 3780956633), further down: the client's leader hint and
jittered backoffs under trio's mock clock (a scripted transport, the jitter pinned),
the snapshot stream's chunk size, restart instant and one-frame path, the send path's
drop log, a save's duration, the reassembly timeout's 1 s floor, a snapshot answer
credited to its sender, a timed-out request answered "unknown" (a member's message
handling with stand-ins for the core's driver), credits paid over auctions,
contractors' node numbers, and a release at the exact expiry.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import msgspec
import pytest
import trio
import trio.testing
from raft_cluster import Counter, free_ports
from test_raft_ledger import Recorder

from trio_foundation.coordination import CallForBids, Market
from trio_foundation.coordination.consensus import (
    Codec,
    RaftClient,
    RaftNodeHandle,
    _Persister,
    open_raft_client,
    open_raft_node,
)
from trio_foundation.coordination.lock_monitor import LockServerMonitor
from trio_foundation.coordination.market import LEDGER_NODE
from trio_foundation.coordination.raft_ledger import RaftLedger
from trio_foundation.coordination.raft_wire import (
    MAX_BATCH,
    MAX_MEMBER_ID,
    RAFT_PROTOCOL,
    CBatchItem,
    CBatchReply,
    CBatchResult,
    CReply,
    CSubmit,
    CSubmitBatch,
    WInstallSnapshot,
    raft_protocol,
    snapshot_blob,
    snapshot_chunks,
    split_append,
    to_wire,
)
from trio_foundation.protocols import ledger as led
from trio_foundation.protocols import raft as core
from trio_foundation.protocols.effects import Send
from trio_foundation.protocols.lease_lock import AcquireRequest, LockServer, ReleaseRequest
from trio_foundation.protocols.ledger import Ledger, Mint, Open
from trio_foundation.registry import Registry
from trio_foundation.runtime.tcp import open_tcp_transport
from trio_foundation.runtime.transport import Envelope
from trio_foundation.telemetry import Event, MetricRegistry, Telemetry


def _free_port() -> int:
    return free_ports(1)[0]


_Totals = Counter  # named totals: a command (name, delta) adds; a query reads one


# ------------------------------------------------------------------------ consensus


async def test_an_undecodable_command_in_a_batch_is_skipped_not_the_ones_after_it(
    tmp_path: Path,
) -> None:
    """A raw batch [good, undecodable, good] to the leader: the first and the third
    are proposed and applied (ok, in order), only the second is rejected."""
    port = _free_port()
    peers = {1: ("127.0.0.1", port)}
    replies: list[Any] = []
    arrived = trio.Event()

    def on_message(env: Envelope) -> None:
        replies.append(env.msg)
        arrived.set()

    with trio.fail_after(30):
        async with open_raft_node(
            1, peers, tmp_path / "n1", _Totals(), election_timeout=0.2
        ) as node:
            await node.leader.wait_value(lambda v: v == 1)
            async with open_tcp_transport(
                RAFT_PROTOCOL, MAX_MEMBER_ID + 11, peers=peers, on_message=on_message
            ) as tcp:
                while not tcp.is_connected(1):  # noqa: ASYNC110
                    await trio.sleep(0.01)
                good = msgspec.msgpack.encode(("a", 2))
                bad = b"\xc1"  # a byte msgpack never uses
                items = (CBatchItem(31, 1, good), CBatchItem(32, 1, bad), CBatchItem(33, 1, good))
                assert tcp.send_nowait(1, CSubmitBatch(7, items))
                await arrived.wait()
            assert await node.read("a") == 4  # both good commands applied
    [reply] = replies
    assert isinstance(reply, CBatchReply) and reply.req == 7
    ok = [CBatchResult("ok", msgspec.msgpack.encode(v)) for v in (2, 4)]
    assert (reply.results[0], reply.results[2]) == (ok[0], ok[1])
    assert reply.results[1].outcome == "rejected"
    assert reply.results[1].reason.startswith("undecodable command: ")


Script = Callable[[CSubmitBatch], Any]


@asynccontextmanager
async def _stand_in(node_id: int, answer: Script, log: list[tuple[int, CSubmitBatch]]) -> Any:
    """A member stand-in on a free port: each CSubmitBatch is logged and answered by
    ``answer(msg)``. Yields its address."""
    port = _free_port()
    transport: list[Any] = []

    def on_message(env: Envelope) -> None:
        if isinstance(env.msg, CSubmitBatch):
            log.append((node_id, env.msg))
            transport[0].send_nowait(env.src, answer(env.msg))

    async with open_tcp_transport(
        RAFT_PROTOCOL, node_id, listen=("127.0.0.1", port), on_message=on_message
    ) as tcp:
        transport.append(tcp)
        yield ("127.0.0.1", port)


def _ok_all(counter: list[int]) -> Script:
    """Answer every command ok, the results counting up from ``counter[0]``."""

    def answer(msg: CSubmitBatch) -> CBatchReply:
        results = []
        for _ in msg.items:
            counter[0] += 1
            results.append(CBatchResult("ok", msgspec.msgpack.encode(counter[0])))
        return CBatchReply(msg.req, tuple(results))

    return answer


async def test_a_batch_retries_only_what_is_left_after_partial_progress() -> None:
    """The leader takes the first of two commands and loses track of the second
    ("unknown"): the client sends the second again, under its own session, after a
    short backoff (0.01 s * [0.5, 1.5)), and returns both results in order."""
    log: list[tuple[int, CSubmitBatch]] = []
    counter = [0]
    ok = _ok_all(counter)

    def answer(msg: CSubmitBatch) -> CBatchReply:
        if len(log) == 1:  # the first batch: one taken, one unknown
            counter[0] += 1
            first = CBatchResult("ok", msgspec.msgpack.encode(counter[0]))
            return CBatchReply(msg.req, (first, CBatchResult("unknown")))
        return ok(msg)

    with trio.fail_after(10):
        async with _stand_in(1, answer, log) as address, open_raft_client({1: address}) as client:
            await client.wait_connected()
            start = trio.current_time()
            assert await client.submit_many([("a", 1), ("b", 1)]) == [1, 2]
            elapsed = trio.current_time() - start
    assert [len(m.items) for _, m in log] == [2, 1]
    assert log[1][1].items == (log[0][1].items[1],)  # the same session, not a new one
    assert elapsed >= 0.005  # one backoff slept (at least 0.01 * 0.5)


async def test_a_batch_answered_not_leader_goes_to_the_named_leader_at_once() -> None:
    """A member answers a whole batch ``CReply(not_leader, leader=1)``: the client
    sends the same batch to member 1 at once and keeps going there; member 2 sees
    that one batch only."""
    log: list[tuple[int, CSubmitBatch]] = []
    counter = [0]

    def follower(msg: CSubmitBatch) -> CReply:
        return CReply(msg.req, "not_leader", leader=1)

    with trio.fail_after(10):
        async with (
            _stand_in(1, _ok_all(counter), log) as leader,
            _stand_in(2, follower, log) as other,
            open_raft_client({1: leader, 2: other}) as client,
        ):
            while not (client._tcp.is_connected(1) and client._tcp.is_connected(2)):  # noqa: ASYNC110
                await trio.sleep(0.01)
            client._hint = 2  # as a reply naming member 2 the leader would leave it
            got = [await client.submit_many([("a", 1), ("a", 1)]) for _ in range(5)]
    assert got == [[1, 2], [3, 4], [5, 6], [7, 8], [9, 10]]
    assert [node for node, _ in log] == [2, 1, 1, 1, 1, 1]
    assert log[0][1].items == log[1][1].items  # the same sessions, sent again


# --------------------------------------------------------------------------- market


def _market(**funds: int) -> Market:
    ledger = Ledger()
    for account, amount in funds.items():
        ledger.apply(Open(account))
        ledger.apply(Mint("treasury", account, amount))
    return Market(Registry(), ledger)


async def _none(cfp: Any) -> None:
    return None


async def _work(payload: Any) -> str:
    await trio.sleep(0.5)
    return f"{payload} done"


@pytest.mark.parametrize("bad", [math.inf, math.nan, 0, -1.0, -math.inf])
async def test_execution_timeout_must_be_positive_and_finite_in_both_calls(bad: float) -> None:
    """A contract without an execution deadline would let a silent contractor hold
    the task (and the buyer's escrow, or the auction's payment) forever: both
    entry points refuse it, with the same message, before anything is held."""
    market = _market(buyer=10)
    message = f"^execution_timeout must be > 0 seconds and finite, got {bad!r}$"
    with pytest.raises(ValueError, match=message):
        await market.allocate("x", budget=5, buyer="buyer", deadline=1.0, execution_timeout=bad)
    with pytest.raises(ValueError, match=message):
        await market.auction("x", seller="s", deadline=1.0, execution_timeout=bad)
    assert market.ledger.holds() == {} and market.ledger.balance("buyer") == 10
    assert "s" not in market.ledger.balances()


async def test_a_sealed_call_names_the_reserve_as_its_minimum(autojump_clock: Any) -> None:
    calls: list[CallForBids] = []

    async def bid(call: CallForBids) -> int:
        calls.append(call)
        return 5

    market = _market(a=10)
    async with trio.open_nursery() as nursery:
        await nursery.start(
            lambda task_status: market.serve_contractor(
                "a", capabilities={"gpu"}, account="a", propose=_none, perform=_work,
                bid=bid, task_status=task_status,
            )
        )  # fmt: skip
        for fmt in ("first_price", "second_price"):
            outcome = await market.auction(
                "job", seller="s", format=fmt, deadline=2.0, execution_timeout=5.0,  # type: ignore[arg-type]
                reserve=3, task=f"t-{fmt}",
            )  # fmt: skip
            assert (outcome.state, outcome.winner) == ("done", "a")
        nursery.cancel_scope.cancel()
    assert calls == [
        CallForBids("t-first_price", "first_price", 3, 2.0, "job", minimum=3),
        CallForBids("t-second_price", "second_price", 3, 2.0, "job", minimum=3),
    ]


class _LateMachine(Recorder):
    """The replicated ledger's state machine in-process, each write answered 50 ms late."""

    async def submit(self, command: Any) -> Any:
        await trio.sleep(0.05)
        return await super().submit(command)


async def test_an_outbid_bidder_refused_duplicate_is_called_again(autojump_clock: Any) -> None:
    """English, on a ledger answering 50 ms late: an outbid bidder's next bid can reach
    the auction before its old hold's release is answered and be refused "duplicate"
    (one live hold per bidder). That is not a pass: it is called again once the
    release is answered, so the bidding goes on until ann (worth 9) beats bob (worth
    6) whoever bid first; bob is asked, last, for more than he is worth."""
    ledger = RaftLedger(_LateMachine())
    values = {"ann": 9, "bob": 6}
    for name in values:
        await ledger.open(name)
        await ledger.mint(name, 50)
    calls: dict[str, list[int]] = {name: [] for name in values}
    market = Market(Registry(), ledger)

    def agent(name: str, value: int) -> Any:
        async def bid(call: CallForBids) -> int | None:
            calls[name].append(call.minimum)
            return call.minimum if call.minimum <= value else None

        async def serve(task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
            await market.serve_contractor(
                name, capabilities={"gpu"}, account=name, propose=_none,
                perform=_work, bid=bid, task_status=task_status,
            )  # fmt: skip

        return serve

    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            for name, value in values.items():
                await nursery.start(agent(name, value))
            outcome = await market.auction(
                "e", seller="studio", format="english", quiet=30.0, deadline=60.0,
                execution_timeout=5.0, reserve=1,
            )  # fmt: skip
            nursery.cancel_scope.cancel()
    assert (outcome.state, outcome.winner) == ("done", "ann") and outcome.price in (6, 7)
    assert outcome.time_to_award is not None and outcome.time_to_award < 30.0  # all passed
    assert calls["bob"][-1] == outcome.price + 1 > values["bob"]  # asked above his value
    final = await ledger.snapshot()
    assert final.holds() == {} and final.balance("studio") == outcome.price


# ---------------------------------------------------------------------- raft_ledger


class _Untouched:
    async def submit(self, command: Any) -> Any:
        raise AssertionError("a refused call reached the cluster")

    async def submit_many(self, commands: list[Any]) -> list[Any]:
        raise AssertionError("a refused call reached the cluster")

    async def read(self, query: Any) -> Any:
        raise AssertionError("a refused call reached the cluster")


@pytest.mark.parametrize(("key", "kind"), [(7, "int"), (b"k", "bytes"), (None, "NoneType")])
async def test_a_transfer_key_of_another_type_is_named_by_its_type(key: Any, kind: str) -> None:
    ledger = RaftLedger(_Untouched())
    with pytest.raises(TypeError, match=rf"^key must be a str, got {kind}$"):
        await ledger.transfer("a", "b", 1, key=key)


# ------------------------------------------------------ the third sample's survivors


class _FixedRng(random.Random):
    """The client's randomness pinned: jitter factor 0.5 + 0.25, and the last member."""

    def random(self) -> float:
        return 0.25

    def choice(self, seq: Any) -> Any:
        return seq[-1]


class _ScriptedMembers:
    """A transport stand-in under trio's mock clock: every request the client sends is
    logged with the time and answered at once by ``answer(dst, msg)``."""

    def __init__(self, answer: Callable[[int, Any], Any], connected: set[int]) -> None:
        self.answer = answer
        self.connected = connected
        self.sent: list[tuple[float, int, Any]] = []
        self.client: Any = None

    def is_connected(self, dst: int) -> bool:
        return dst in self.connected

    def send_nowait(self, dst: int, msg: Any) -> bool:
        self.sent.append((trio.current_time(), dst, msg))
        if len(self.sent) > 20:
            raise AssertionError(f"the client spins: {self.sent[:6]}")
        self.client._on_reply(self.answer(dst, msg))
        return True


def _client(answer: Callable[[int, Any], Any], members: list[int]) -> _ScriptedMembers:
    tcp = _ScriptedMembers(answer, set(members))
    tcp.client = RaftClient(tcp, members, Codec(), 2.0, _FixedRng())  # type: ignore[arg-type]
    return tcp


def _ok(req: int, value: Any) -> CReply:
    return CReply(req, "ok", value=msgspec.msgpack.encode(value))


async def test_a_submit_follows_a_leader_hint_and_keeps_to_it(autojump_clock: Any) -> None:
    """Member 2 (chosen first) names member 1 the leader: the client asks 1 at once and,
    1 being connected, keeps asking 1 (it does not draw a member again)."""

    def answer(dst: int, msg: Any) -> CReply:
        return CReply(msg.req, "not_leader", leader=1) if dst == 2 else _ok(msg.req, 7)

    tcp = _client(answer, [1, 2])
    for _ in range(3):
        assert await tcp.client.submit(("a", 1)) == 7
    assert [(t, dst) for t, dst, _ in tcp.sent] == [(0.0, 2), (0.0, 1), (0.0, 1), (0.0, 1)]


async def test_a_submit_retries_a_refusal_that_is_not_final_after_a_jittered_backoff(
    autojump_clock: Any,
) -> None:
    """A proposal refused "entry overwritten by a newer leader" (neither final nor one
    of the membership refusals) is retried, not raised: after 0.01 s * 0.75, then
    0.02 s * 0.75 (doubling, jitter 0.5 + random())."""
    refusals = 2

    def answer(dst: int, msg: Any) -> CReply:
        nonlocal refusals
        if refusals:
            refusals -= 1
            return CReply(msg.req, "rejected", reason="entry overwritten by a newer leader")
        return _ok(msg.req, 3)

    tcp = _client(answer, [1])
    assert await tcp.client.submit(("a", 1)) == 3
    times = [t for t, _, _ in tcp.sent]
    assert times == pytest.approx([0.0, 0.0075, 0.0075 + 0.015])


async def test_a_batch_refused_busy_is_sent_again_after_a_backoff(autojump_clock: Any) -> None:
    """A batch refused "busy" as a whole (the member's request limit) is sent again
    after 0.01 s * 0.75, then 0.02 s * 0.75: never at once."""
    refusals = 2

    def answer(dst: int, msg: Any) -> Any:
        nonlocal refusals
        if refusals:
            refusals -= 1
            return CReply(msg.req, "rejected", reason="busy")
        results = tuple(CBatchResult("ok", msgspec.msgpack.encode(i)) for i in range(2))
        return CBatchReply(msg.req, results)

    tcp = _client(answer, [1])
    assert await tcp.client.submit_many([("a", 1), ("b", 1)]) == [0, 1]
    times = [t for t, _, _ in tcp.sent]
    assert times == pytest.approx([0.0, 0.0075, 0.0075 + 0.015])


async def test_credits_paid_add_up_over_auctions(autojump_clock: Any) -> None:
    market = _market(a=20, b=20)
    async with trio.open_nursery() as nursery:
        for name, amount in (("a", 7), ("b", 5)):

            async def bid(call: CallForBids, amount: int = amount) -> int:
                return amount

            await nursery.start(
                lambda task_status, name=name, bid=bid: market.serve_contractor(
                    name, capabilities={"gpu"}, account=name, propose=_none, perform=_work,
                    bid=bid, task_status=task_status,
                )
            )  # fmt: skip
        first = await market.auction("j", seller="s", deadline=2.0, execution_timeout=5.0)
        second = await market.auction(
            "j", seller="s", format="first_price", deadline=2.0, execution_timeout=5.0
        )
        nursery.cancel_scope.cancel()
    assert (first.winner, first.price, second.winner, second.price) == ("a", 5, "a", 7)
    assert market.statistics().credits_paid == 12
    assert market.ledger.balance("s") == 12


async def test_contractors_are_numbered_from_the_node_after_the_ledger(
    autojump_clock: Any,
) -> None:
    market = _market()
    async with trio.open_nursery() as nursery:
        for name in ("a", "b"):
            await nursery.start(
                lambda task_status, name=name: market.serve_contractor(
                    name, capabilities={"gpu"}, account=name, propose=_none, perform=_work,
                    task_status=task_status,
                )
            )  # fmt: skip
        nodes = sorted(c.node for c in market.contractors())
        nursery.cancel_scope.cancel()
    assert nodes == [LEDGER_NODE + 1, LEDGER_NODE + 2]


def test_a_release_at_the_very_end_of_a_lease_is_an_expiry_not_a_release() -> None:
    """A lease granted at 0 for 2 s and released at 2.0 exactly: it has lapsed (a lease
    is live while now < expiry), so the monitor reports one expiry and no release."""
    events: list[Event] = []
    telemetry = Telemetry(slow_handler=None)
    telemetry.attach("t", ["lock_server.released", "lock_server.expired"], events.append)
    monitor = LockServerMonitor(telemetry, MetricRegistry())
    core = LockServer(0, max_ttl=10.0)
    core.on_start(0.0, random.Random(0))
    monitor.watch("x", core)

    def step(now: float, src: int, msg: Any) -> None:
        before = monitor.before("x", now)
        effects = core.on_message(now, src, msg)
        monitor.after(
            "x", now, src, msg, before, [(e.to, e.msg) for e in effects if isinstance(e, Send)]
        )

    step(0.0, 1, AcquireRequest((1, 1), 2.0))
    step(2.0, 1, ReleaseRequest(1))
    assert [e.name for e in events] == ["lock_server.expired"]
    counts = {f.name: f for f in monitor.metrics.families()}
    assert [s.value for _, s in counts["foundation_lock_releases"].series()] == [0]  # type: ignore[union-attr]
    assert [s.value for _, s in counts["foundation_lock_expiries"].series()] == [1]  # type: ignore[union-attr]


FRAME = 8192


class _FrameTcp:
    """Encodes as the transport does (the codec's size check); its queue holds what
    the test says."""

    def __init__(self) -> None:
        self.protocol = raft_protocol(FRAME)
        self.sent: list[Any] = []
        self.queued: dict[int, int] = {}

    def queued_bytes(self, dst: int) -> int:
        return self.queued.get(dst, 0)

    def send_nowait(self, dst: int, msg: Any) -> bool:
        self.protocol.encode(msg)
        self.sent.append(msg)
        return True


def _install(size: int, index: int = 40) -> core.InstallSnapshot:
    return core.InstallSnapshot(3, 1, index, 2, core.Config((1, 2, 3), ()), b"s" * size, (), 5)


def _persister(tcp: _FrameTcp, **kw: Any) -> _Persister:
    return _Persister(None, tcp, last_index=lambda: 0, **kw)  # type: ignore[arg-type]


async def test_stream_chunks_are_half_the_budget_when_that_is_below_a_frame() -> None:
    """Two chunks fit the stream budget: with a budget of 5001 bytes (below two frames)
    a chunk carries 2500 bytes (5001 // 2), at offsets 0, 2500, 5000, ..."""
    tcp = _FrameTcp()
    persister = _persister(tcp, stream_budget=5001)
    msg = _install(20_000)
    blob = snapshot_blob(msg)
    persister.send(2, msg)
    assert [(c.offset, len(c.data)) for c in tcp.sent] == [(0, 2500), (2500, 2500)]
    while tcp.sent[-1].offset + len(tcp.sent[-1].data) < len(blob):
        persister.send(2, msg)
    assert [c.offset for c in tcp.sent] == list(range(0, len(blob), 2500))


def test_a_message_no_frame_can_carry_is_logged_with_the_reason(
    caplog: pytest.LogCaptureFixture,
) -> None:
    tcp = _FrameTcp()
    persister = _persister(tcp)
    entry = core.Entry(2, 6, "command", core.Proposal(1, 1, b"x" * FRAME))
    huge = core.AppendEntries(2, 1, 5, 1, (entry,), 9, 4)
    with pytest.raises(ValueError) as why:
        split_append(huge, FRAME)
    with caplog.at_level(logging.ERROR, logger="trio_foundation.coordination.consensus"):
        persister.send(2, huge)
    assert [r.getMessage() for r in caplog.records] == [
        f"raft: dropped a AppendEntries too big for a frame: {why.value}"
    ]
    assert tcp.sent == [] and persister.guard.oversize == {"AppendEntries": 1}


async def test_a_snapshot_that_fits_one_frame_goes_whole_and_is_not_kept_encoded() -> None:
    tcp = _FrameTcp()
    persister = _persister(tcp)
    msg = _install(1000)
    persister.send(2, msg)
    persister.send(3, msg)
    assert [type(m) for m in tcp.sent] == [WInstallSnapshot, WInstallSnapshot]
    assert (persister.snapshot_encodes, persister.snapshots_chunked) == (0, 0)


async def test_a_finished_stream_restarts_exactly_one_resend_interval_later(
    autojump_clock: Any,
) -> None:
    """Finished and unanswered: an ask before ``snapshot_resend`` (0.25 s) sends
    nothing; an ask at exactly 0.25 s restarts the stream from offset 0."""
    tcp = _FrameTcp()
    persister = _persister(tcp, snapshot_resend=0.25, stream_budget=1 << 20)
    msg = _install(20_000)
    persister.send(2, msg)  # the whole stream fits the budget: finished at 0.0
    sent = len(tcp.sent)
    assert sent > 1 and persister.snapshots_chunked == 1
    await trio.sleep(0.125)
    persister.send(2, msg)
    assert len(tcp.sent) == sent
    await trio.sleep(0.125)
    persister.send(2, msg)
    assert tcp.sent[sent].offset == 0 and len(tcp.sent) == 2 * sent
    assert persister.snapshots_chunked == 2


class _SlowLog:
    """A log whose every save takes 0.5 s of trio's clock."""

    def __init__(self) -> None:
        self.saved: list[Any] = []

    async def save_record(self, record: Any, **_: Any) -> None:
        await trio.sleep(0.5)
        self.saved.append(record)


async def test_on_saved_gets_each_saves_duration(autojump_clock: Any) -> None:
    log = _SlowLog()
    persister = _Persister(log, _FrameTcp(), last_index=lambda: 0)  # type: ignore[arg-type]
    saves: list[tuple[int, float]] = []
    persister.on_saved = lambda n, seconds: saves.append((n, seconds))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(persister.run)
        await trio.sleep(1.0)  # the clock is not at 0 when the save starts
        persister.enqueue(core.RaftPersist(1, 2))
        persister.enqueue(core.RaftPersist(1, 2))  # merged with the first
        await persister.wait_durable(2)
        nursery.cancel_scope.cancel()
    assert saves == [(2, 0.5)] and len(log.saved) == 1


class _Driver:
    """A node driver stand-in: records what the handle delivers to the core."""

    running = True

    def __init__(self) -> None:
        self.delivered: list[tuple[int, Any]] = []

    def deliver(self, src: int, msg: Any) -> None:
        self.delivered.append((src, msg))


class _Answered:
    def __init__(self) -> None:
        self.answered: list[Any] = []

    def snapshot_answered(self, src: Any) -> None:
        self.answered.append(src)


def _handle(election_timeout: float) -> tuple[RaftNodeHandle, _Driver]:
    """A member's message handling with no network and no running core."""
    raft = core.RaftNode(1, (1, 2), _Totals(), election_timeout=election_timeout)
    handle = RaftNodeHandle(1, [1, 2], _FrameTcp(), raft, Codec(), 2.0, 0.01, 64)  # type: ignore[arg-type]
    driver = _Driver()
    handle.driver = driver  # type: ignore[assignment]
    return handle, driver


async def test_a_partial_snapshot_is_dropped_after_a_second_at_least(autojump_clock: Any) -> None:
    """The reassembly timeout is 10 election timeouts but at least 1 s: with 50 ms
    ones, a stream whose chunks come 0.9 s apart is reassembled and delivered; one
    paused 1.1 s is dropped (its later chunks counted as dropped)."""
    handle, driver = _handle(0.05)
    msg = _install(20_000)
    chunks = snapshot_chunks(msg, FRAME)
    assert len(chunks) == 3
    for pause, delivered, dropped in ((0.9, 1, 0), (1.1, 1, 2)):
        handle._on_message(Envelope(2, chunks[0]))
        await trio.sleep(pause)
        for chunk in chunks[1:]:
            handle._on_message(Envelope(2, chunk))
        stats = handle.frame_stats()
        assert (len(driver.delivered), stats["snapshot_chunks_dropped"]) == (delivered, dropped)
    assert driver.delivered == [(2, msg)]


async def test_a_snapshot_answer_ends_the_stream_to_the_follower_that_sent_it() -> None:
    handle, driver = _handle(0.05)
    persister = handle.persister = _Answered()  # type: ignore[assignment]
    handle._on_message(Envelope(2, to_wire(core.InstallSnapshotResponse(3, 40))))
    assert persister.answered == [2]
    assert driver.delivered == [(2, core.InstallSnapshotResponse(3, 40))]


class _SilentDriver(_Driver):
    """A running core that never answers a request."""

    def __init__(self) -> None:
        super().__init__()
        self.forgotten: list[Any] = []

    def submit(self, op: str, value: Any) -> Any:
        return (op, value)

    async def wait_reply(self, key: Any) -> Any:
        await trio.sleep_forever()

    def forget(self, key: Any) -> None:
        self.forgotten.append(key)


class _Queued:
    queued = 0


async def test_a_request_the_core_does_not_answer_in_time_is_answered_unknown(
    autojump_clock: Any,
) -> None:
    """The core never answers a client's submit: after ``request_timeout`` (2 s) the
    member answers "unknown" (it may or may not be applied) and forgets the request."""
    handle, _ = _handle(0.05)
    driver = _SilentDriver()
    handle.driver = driver  # type: ignore[assignment]
    handle.persister = _Queued()  # type: ignore[assignment]
    tcp = handle._tcp
    client = MAX_MEMBER_ID + 5
    command = msgspec.msgpack.encode(("a", 1))
    async with trio.open_nursery() as nursery:
        handle.nursery = nursery
        handle._on_message(Envelope(client, CSubmit(7, 99, 1, command)))
        await trio.sleep(1.9)
        assert tcp.sent == []  # type: ignore[attr-defined]
        await trio.sleep(0.2)
        assert tcp.sent == [CReply(7, "unknown")]  # type: ignore[attr-defined]
        handle.nursery = None
    assert driver.forgotten == [("propose", core.Proposal(99, 1, command))]
    assert handle._client_requests == 0


# ------------------------------------------------ the fifth (fresh) sample's survivors


async def test_stream_chunks_are_at_least_1024_bytes() -> None:
    """A stream budget of 2000 bytes would make 1000-byte chunks: the floor is 1024."""
    tcp = _FrameTcp()
    persister = _persister(tcp, stream_budget=2000)
    msg = _install(20_000)
    for _ in range(3):
        persister.send(2, msg)
    assert [(c.offset, len(c.data)) for c in tcp.sent] == [(0, 1024), (1024, 1024), (2048, 1024)]


async def test_an_answered_snapshot_is_streamed_afresh_at_the_next_ask() -> None:
    """Follower 2 answered: the core's next ask for the same snapshot starts a new
    stream from offset 0 at once (no wait for the resend interval)."""
    tcp = _FrameTcp()
    persister = _persister(tcp, snapshot_resend=10.0, stream_budget=1 << 20)
    msg = _install(20_000)
    persister.send(2, msg)
    sent = len(tcp.sent)
    persister.snapshot_answered(2)
    persister.send(2, msg)
    assert tcp.sent[sent].offset == 0 and len(tcp.sent) == 2 * sent
    assert persister.snapshots_chunked == 2


async def test_held_snapshot_chunks_dropped_past_the_bound_are_uncounted() -> None:
    """Chunks held for durability, then dropped as the oldest past ``_MAX_HELD``:
    their bytes leave the held count, so the stream can continue once durable."""
    from trio_foundation.coordination.consensus import _MAX_HELD

    tcp = _FrameTcp()
    persister = _persister(tcp, stream_budget=1 << 20)
    persister.enqueue(core.RaftPersist(1, 2))  # queued, not yet durable
    msg = _install(20_000)
    persister.send(2, msg)  # its chunks are held
    chunks = persister._held_for[2]
    assert chunks > 1 and tcp.sent == []
    for _ in range(_MAX_HELD):
        persister.send(3, core.RequestVoteResponse(1, True))
    assert persister.held_dropped == chunks
    assert persister._held_for[2] == 0 and persister._held_chunk_bytes == {}


async def test_a_winner_past_its_execution_timeout_has_its_job_cancelled(
    autojump_clock: Any,
) -> None:
    """The winner's ``perform`` is still running at the execution timeout (5 s after
    the award): the auction fails "timeout" and the job is cancelled then."""
    cancelled_at: list[float] = []

    async def hang(payload: Any) -> str:
        try:
            await trio.sleep(100.0)
        except trio.Cancelled:
            cancelled_at.append(trio.current_time())
            raise
        return "late"  # pragma: no cover

    async def bid(call: CallForBids) -> int:
        return 3

    market = _market(a=10)
    async with trio.open_nursery() as nursery:
        await nursery.start(
            lambda task_status: market.serve_contractor(
                "a", capabilities={"gpu"}, account="a", propose=_none, perform=hang,
                bid=bid, task_status=task_status,
            )
        )  # fmt: skip
        outcome = await market.auction("job", seller="s", deadline=2.0, execution_timeout=5.0)
        await trio.sleep(1.0)
        nursery.cancel_scope.cancel()
    assert (outcome.state, outcome.reason) == ("failed", "timeout")
    assert len(cancelled_at) == 1 and cancelled_at[0] == pytest.approx(outcome.elapsed)


async def test_apply_many_takes_exactly_max_batch_commands() -> None:
    raft = Recorder()
    ledger = RaftLedger(raft)
    await ledger.open("a")
    results = await ledger.apply_many([led.Mint("treasury", "a", 1)] * MAX_BATCH)
    assert len(results) == MAX_BATCH and await ledger.balance("a") == MAX_BATCH
    with pytest.raises(ValueError, match=rf"^at most {MAX_BATCH} commands per batch, got "):
        await ledger.apply_many([led.Mint("treasury", "a", 1)] * (MAX_BATCH + 1))
