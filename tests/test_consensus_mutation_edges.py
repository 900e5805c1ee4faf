"""coordination/consensus.py: refusals, membership errors and snapshots (mutation survivors).

One member in this process on a free loopback port, reached by a
:func:`~trio_foundation.coordination.consensus.open_raft_client`: the paths the
three-member tests never take — a membership change refused for good, a
snapshot fetched for a backup — and which refusals a caller retries.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import msgspec
import pytest
import trio
from raft_cluster import Counter, free_ports

from trio_foundation._errors import LeadershipLostError
from trio_foundation.coordination.consensus import (
    Codec,
    RaftClient,
    RaftNodeHandle,
    RaftRequestError,
    _merge,
    _retryable,
    open_raft_client,
    open_raft_node,
)
from trio_foundation.coordination.raft_wire import (
    MAX_BATCH,
    MAX_MEMBER_ID,
    RAFT_PROTOCOL,
    CBatchItem,
    CBatchReply,
    CBatchResult,
    CRead,
    CReply,
    CSnapshot,
    CSubmit,
    CSubmitBatch,
    decode_snapshot,
)
from trio_foundation.protocols import raft as core
from trio_foundation.runtime.tcp import open_tcp_transport
from trio_foundation.runtime.transport import Envelope

_Totals = Counter  # named totals: a command (name, delta) adds; a query reads one


def _free_port() -> int:
    return free_ports(1)[0]


@asynccontextmanager
async def _one_member(
    tmp: Path, codec: Codec | None = None
) -> AsyncIterator[tuple[RaftNodeHandle, RaftClient]]:
    peers = {1: ("127.0.0.1", _free_port())}
    async with open_raft_node(
        1, peers, tmp / "n1", _Totals(), election_timeout=0.2, codec=codec
    ) as node:
        async with open_raft_client(peers) as client:
            await node.leader.wait_value(lambda v: v == 1)
            await client.wait_connected()
            yield node, client


@pytest.mark.parametrize(
    ("reason", "retry"),
    [
        ("the leader has not yet committed an entry of its term; retry", True),
        ("a configuration change is in progress", True),
        ("leadership transfer in progress", True),
        ("too many pending proposals (64)", True),
        ("too many uncommitted entries (1000)", True),
        ("busy", True),
        ("node 7 is not a member", False),
        ("cannot remove the last voter", False),
        ("node 1 is already a voter", False),
        ("no change", False),
        ("undecodable command", False),
    ],
)
def test_which_refusals_of_a_membership_change_are_retried(reason: str, retry: bool) -> None:
    assert _retryable(reason) is retry


async def test_a_membership_change_refused_for_good_raises_with_the_reason(
    tmp_path: Path,
) -> None:
    with trio.fail_after(30):
        async with _one_member(tmp_path) as (node, client):
            with pytest.raises(
                RaftRequestError, match=r"^raft request refused: cannot remove the last voter$"
            ):
                await client.change_membership("remove_server", 1)
            with pytest.raises(
                RaftRequestError, match=r"^raft request refused: node 7 is not a member$"
            ):
                await client.change_membership("remove_server", 7)
            with pytest.raises(
                RaftRequestError, match=r"^raft request refused: node 1 is already a voter$"
            ):
                await node.change_membership("add_server", 1)
            with pytest.raises(ValueError, match=r"^unknown membership operation 'promote'$"):
                await client.change_membership("promote", 2)  # type: ignore[arg-type]
            with pytest.raises(ValueError, match=r"^node must be an int in \[0, 4294967295\]"):
                await client.change_membership("add_server", -1)
            assert node.core.config.voters == (1,)
            # a learner needs no quorum: adding and removing one commits at once
            assert await client.change_membership("add_learner", 9) == ((1,), (9,))
            assert await node.change_membership("remove_server", 9) == ((1,), ())


async def test_a_snapshot_fetched_for_a_backup_holds_what_was_applied(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with _one_member(tmp_path) as (node, client):
            assert await client.submit(("a", 2)) == 2
            assert await client.submit(("b", 5)) == 5
            assert await client.submit(("a", 1)) == 3
            data = await client.fetch_snapshot(1)
            snapshot = decode_snapshot(data)
            restored = _Totals()
            restored.restore(snapshot.data)
            assert restored.values == {"a": 3, "b": 5}
            assert snapshot.config.voters == (1,)
            assert snapshot.last_included_index == node.core.last_applied
            assert await client.read("a") == 3  # the member serves on after the snapshot


def test_a_truncation_below_the_queued_entries_keeps_the_later_vote() -> None:
    queued = core.RaftPersist(2, 1, None, (core.Entry(2, 5, "noop"), core.Entry(2, 6, "noop")))
    later = core.RaftPersist(3, 2, 3, (core.Entry(3, 3, "noop"),))
    assert _merge(queued, later) == core.RaftPersist(3, 2, 3, (core.Entry(3, 3, "noop"),), None)
    earlier_cut = core.RaftPersist(2, 1, 2, (core.Entry(2, 5, "noop"),))
    assert _merge(earlier_cut, later) == core.RaftPersist(
        3, 2, 2, (core.Entry(3, 3, "noop"),), None
    )


TYPED = Codec(command=tuple[str, int], result=int)


async def test_a_command_the_members_cannot_decode_is_refused_for_good(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with _one_member(tmp_path, TYPED) as (_node, client):
            with pytest.raises(RaftRequestError, match=r"^raft request refused: undecodable"):
                await client.submit("not a pair")
            assert await client.submit(("a", 4)) == 4


async def test_raw_batches_are_checked_item_by_item_and_bounded(tmp_path: Path) -> None:
    replies: list[Any] = []
    arrived = trio.Event()

    def on_message(env: Envelope) -> None:
        replies.append(env.msg)
        arrived.set()

    async def ask(tcp: Any, msg: Any) -> Any:
        nonlocal arrived
        arrived = trio.Event()
        replies.clear()
        assert tcp.send_nowait(1, msg)
        await arrived.wait()
        return replies[0]

    with trio.fail_after(30):
        async with _one_member(tmp_path, TYPED) as (node, _client):
            listening = node._tcp.listen_address
            assert listening is not None
            address = node.core.id, ("127.0.0.1", listening[1])
            async with open_tcp_transport(
                RAFT_PROTOCOL, MAX_MEMBER_ID + 7, peers=dict([address]), on_message=on_message
            ) as tcp:
                while not tcp.is_connected(1):  # noqa: ASYNC110
                    await trio.sleep(0.01)
                good = msgspec.msgpack.encode(("a", 2))
                bad = msgspec.msgpack.encode("oops")
                reply = await ask(
                    tcp,
                    CSubmitBatch(5, (CBatchItem(11, 1, good), CBatchItem(12, 1, bad))),
                )
                assert isinstance(reply, CBatchReply) and reply.req == 5
                assert reply.results[0] == CBatchResult("ok", msgspec.msgpack.encode(2))
                assert reply.results[1].outcome == "rejected"
                assert reply.results[1].reason.startswith("undecodable command: ")
                too_many = tuple(CBatchItem(13, i + 1, good) for i in range(MAX_BATCH + 1))
                reply = await ask(tcp, CSubmitBatch(6, too_many))
                assert reply == CReply(
                    6, "rejected", reason=f"a batch of {MAX_BATCH + 1} commands (at most 1024)"
                )


async def test_followers_forward_membership_changes_and_a_leadership_scope_renews_then_ends(
    tmp_path: Path,
) -> None:
    ports = [_free_port() for _ in range(3)]
    peers = {i + 1: ("127.0.0.1", port) for i, port in enumerate(ports)}
    nodes: dict[int, RaftNodeHandle] = {}

    async def member(i: int, task_status: trio.TaskStatus[None]) -> None:
        async with open_raft_node(
            i, peers, tmp_path / f"n{i}", _Totals(), election_timeout=1.0
        ) as node:
            nodes[i] = node
            task_status.started()
            await trio.sleep_forever()

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            for i in peers:
                await nursery.start(member, i)
            while not any(n.core.role == "leader" for n in nodes.values()):  # noqa: ASYNC110
                await trio.sleep(0.01)
            leader = next(n for n in nodes.values() if n.core.role == "leader")
            other = next(i for i in nodes if i != leader.node_id)
            # a membership change sent to followers only is forwarded to the leader
            followers = {i: a for i, a in peers.items() if i != leader.node_id}
            async with open_raft_client(followers) as client:
                with trio.fail_after(10):
                    added = await client.change_membership("add_learner", 9)
                    removed = await client.change_membership("remove_server", 9)
            assert (added, removed) == (((1, 2, 3), (9,)), ((1, 2, 3), ()))
            held_for = 0.0
            with pytest.raises(LeadershipLostError) as caught:
                async with leader.leadership() as term:
                    assert term == leader.core.term
                    start = trio.current_time()
                    await trio.sleep(3 * leader.lease)  # renewed every heartbeat
                    held_for = trio.current_time() - start
                    assert leader.driver is not None
                    leader.driver.submit("transfer_leadership", other)
                    await trio.sleep_forever()
            assert held_for >= 3 * leader.lease
            assert str(caught.value).endswith(": stepped down (a newer term, or no quorum heard)")
            nursery.cancel_scope.cancel()


async def test_a_member_missing_from_its_own_peers_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"^peers must include this node's own id 4$"):
        async with open_raft_node(4, {1: ("127.0.0.1", 1)}, tmp_path / "n4", _Totals()):
            pass
    assert not (tmp_path / "n4").exists()


async def test_a_backup_asked_before_the_connection_is_up_waits_for_it(tmp_path: Path) -> None:
    peers = {1: ("127.0.0.1", _free_port())}
    with trio.fail_after(30):
        async with open_raft_node(
            1, peers, tmp_path / "n1", _Totals(), election_timeout=0.2
        ) as node:
            await node.leader.wait_value(lambda v: v == 1)
            assert await node.submit(("a", 7)) == 7
            async with open_raft_client(peers) as client:
                # no wait_connected(): the first attempts find no connection and retry
                snapshot = decode_snapshot(await client.fetch_snapshot(1))
    restored = _Totals()
    restored.restore(snapshot.data)
    assert restored.values == {"a": 7}


# ---------------------------------------------------------------- session 5's survivors


async def _raw_client(port: int) -> Any:
    """A raw client connection's pieces: the transport's context and a reply queue."""
    send, receive = trio.open_memory_channel[Any](16)

    def on_message(env: Envelope) -> None:
        send.send_nowait(env.msg)

    cm = open_tcp_transport(
        RAFT_PROTOCOL,
        MAX_MEMBER_ID + 9,
        peers={1: ("127.0.0.1", port)},
        on_message=on_message,
    )
    return cm, receive


async def test_a_restarted_member_in_its_quiet_period_refuses_snapshots_and_batches(
    tmp_path: Path,
) -> None:
    """A member that restored a state stays silent for an election timeout before its
    driver runs, its transport already up: a backup request is refused as "not
    running", a raw batch answered "not_leader" item by item."""
    port = _free_port()
    peers = {1: ("127.0.0.1", port)}
    with trio.fail_after(15):
        async with open_raft_node(
            1, peers, tmp_path / "n1", _Totals(), election_timeout=0.2
        ) as node:
            await node.leader.wait_value(lambda v: v == 1)
            assert await node.submit(("a", 1)) == 1
        opened = trio.Event()

        async def second_life() -> None:
            # quiet period: 20 s * (1 + drift), far past this test's end
            async with open_raft_node(1, peers, tmp_path / "n1", _Totals(), election_timeout=20.0):
                opened.set()  # pragma: no cover (cancelled before)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(second_life)
            cm, replies = await _raw_client(port)
            async with cm as tcp:
                while not tcp.is_connected(1):  # noqa: ASYNC110
                    await trio.sleep(0.01)
                item = CBatchItem(21, 1, msgspec.msgpack.encode(("a", 2)))
                assert tcp.send_nowait(1, CSnapshot(3))
                assert await replies.receive() == CReply(3, "rejected", reason="not running")
                assert tcp.send_nowait(1, CSubmitBatch(4, (item, item)))
                assert await replies.receive() == CBatchReply(
                    4, (CBatchResult("not_leader"), CBatchResult("not_leader"))
                )
            assert not opened.is_set()
            nursery.cancel_scope.cancel()


async def test_requests_past_max_client_requests_are_refused_busy(tmp_path: Path) -> None:
    """``max_client_requests=1``: requests that arrive while one is being served
    are refused "busy" at once; the count falls back when a request is done."""
    port = _free_port()
    peers = {1: ("127.0.0.1", port)}
    with trio.fail_after(15):
        async with open_raft_node(
            1, peers, tmp_path / "n1", _Totals(), election_timeout=0.2, max_client_requests=1
        ) as node:
            await node.leader.wait_value(lambda v: v == 1)
            cm, replies = await _raw_client(port)
            async with cm as tcp:
                while not tcp.is_connected(1):  # noqa: ASYNC110
                    await trio.sleep(0.01)
                applied = 0
                for round_ in range(3):
                    # sent in one burst: each submit waits for an fsync, so the
                    # others arrive while the first is served
                    reqs = [10 * round_ + k for k in range(5)]
                    command = msgspec.msgpack.encode(("a", 1))
                    for req in reqs:
                        assert tcp.send_nowait(1, CSubmit(req, 1000 + req, 1, command))
                    got = {}
                    for _ in reqs:
                        reply = await replies.receive()
                        got[reply.req] = reply
                    assert sorted(got) == reqs
                    busy = [r for r in reqs if got[r] == CReply(r, "rejected", reason="busy")]
                    ok = [r for r in reqs if got[r].outcome == "ok"]
                    assert sorted(busy + ok) == reqs, got
                    assert ok[0] == reqs[0] and busy, got  # the first is served
                    applied += len(ok)
            # every ok was applied once, nothing refused was
            assert await node.read("a") == applied


async def test_a_client_goes_to_a_connected_member_not_to_an_unreachable_one(
    tmp_path: Path,
) -> None:
    """Among 41 members of which only one is up, a client without a leader hint
    picks a connected member: five submits and five batches take a few round trips, not one
    backoff per unreachable member tried (about 20 s each)."""
    port = _free_port()
    dead = {i: ("127.0.0.1", _free_port()) for i in range(2, 42)}  # nothing listens
    with trio.fail_after(15):
        async with open_raft_node(
            1, {1: ("127.0.0.1", port)}, tmp_path / "n1", _Totals(), election_timeout=0.2
        ) as node:
            await node.leader.wait_value(lambda v: v == 1)
            async with open_raft_client({1: ("127.0.0.1", port), **dead}) as client:
                await client.wait_connected()
                with trio.fail_after(10):
                    for k in range(1, 6):
                        assert await client.submit(("a", 1)) == k
                    for k in range(6, 21, 3):  # batches choose their target alike
                        assert await client.submit_many([("a", 1)] * 3) == [k, k + 1, k + 2]


class _HoldingTcp:
    """A transport stand-in: the frame limit, an empty send queue, what was sent."""

    def __init__(self) -> None:
        from trio_foundation.coordination.raft_wire import raft_protocol

        self.protocol = raft_protocol(1 << 20)
        self.sent: list[Any] = []

    def queued_bytes(self, dst: int) -> int:
        return 0

    def send_nowait(self, dst: int, msg: Any) -> bool:
        self.sent.append(msg)
        return True


def test_sends_held_for_durability_are_bounded_and_the_dropped_ones_counted() -> None:
    """While a record is not durable, the replies that must follow it are held; past
    ``_MAX_HELD`` the oldest are dropped (Raft's timers retry) and counted."""
    from trio_foundation.coordination.consensus import _MAX_HELD, _Persister

    tcp = _HoldingTcp()
    persister = _Persister(None, tcp, last_index=lambda: 0)  # type: ignore[arg-type]
    persister.enqueue(core.RaftPersist(1, 2))  # queued, not yet durable
    for _ in range(_MAX_HELD):
        assert persister.send(2, core.RequestVoteResponse(1, True)) is True
    assert persister.held_dropped == 0
    for _ in range(3):
        persister.send(3, core.RequestVoteResponse(1, False))
    assert persister.held_dropped == 3
    assert tcp.sent == []


async def test_member_id_zero_can_join_and_leave(tmp_path: Path) -> None:
    """Member ids are ``[0, MAX_MEMBER_ID]``: 0 is one."""
    with trio.fail_after(15):
        async with _one_member(tmp_path) as (node, client):
            assert await client.change_membership("add_learner", 0) == ((1,), (0,))
            assert await node.change_membership("remove_server", 0) == ((1,), ())


async def test_a_one_member_clusters_frame_stats_are_all_zero(tmp_path: Path) -> None:
    with trio.fail_after(15):
        async with _one_member(tmp_path) as (node, client):
            assert await client.submit(("a", 1)) == 1
            assert node.frame_stats() == {
                "appends_split": 0,
                "snapshots_chunked": 0,
                "snapshot_chunks_sent": 0,
                "snapshot_encodes": 0,
                "snapshots_assembled": 0,
                "snapshot_chunks_dropped": 0,
                "snapshots_refused": 0,
            }


async def test_commands_over_the_limit_are_refused_naming_both_sizes(tmp_path: Path) -> None:
    """Under a 16 KiB frame the command limit is 16384 - 512 bytes: a bigger
    command is refused, alone or in a batch, with a reason naming both sizes."""
    port = _free_port()
    peers = {1: ("127.0.0.1", port)}
    big = msgspec.msgpack.encode(("x" * 15990, 1))  # decodable, 15995 bytes
    reason = (
        f"command of {len(big)} bytes exceeds the limit of 15872 bytes"
        " (one log entry must fit one Raft frame)"
    )
    with trio.fail_after(15):
        async with open_raft_node(
            1, peers, tmp_path / "n1", _Totals(), election_timeout=0.2, max_frame=16384
        ) as node:
            await node.leader.wait_value(lambda v: v == 1)
            cm, replies = await _raw_client(port)
            async with cm as tcp:
                while not tcp.is_connected(1):  # noqa: ASYNC110
                    await trio.sleep(0.01)
                assert tcp.send_nowait(1, CSubmit(1, 77, 1, big))
                assert await replies.receive() == CReply(1, "rejected", reason=reason)
                good = msgspec.msgpack.encode(("a", 5))
                batch = (CBatchItem(78, 1, big), CBatchItem(79, 1, good))
                assert tcp.send_nowait(1, CSubmitBatch(2, batch))
                assert await replies.receive() == CBatchReply(
                    2,
                    (
                        CBatchResult("rejected", reason=reason),
                        CBatchResult("ok", msgspec.msgpack.encode(5)),
                    ),
                )


class _Sized:
    """A machine whose command ``n`` answers ``n`` bytes: small requests, big replies."""

    def __init__(self) -> None:
        self.applied: list[int] = []

    def apply(self, command: Any) -> Any:
        self.applied.append(command)
        return b"r" * command

    def query(self, query: Any) -> Any:
        return b"q" * query

    def snapshot(self) -> bytes:
        return msgspec.msgpack.encode(self.applied)

    def restore(self, data: bytes) -> None:
        self.applied = msgspec.msgpack.decode(data)


@pytest.mark.parametrize(("large", "small"), [(12000, 6000), (9600, 6850)])
async def test_a_batch_reply_over_the_frame_loses_only_its_largest_results(
    tmp_path: Path, large: int, small: int
) -> None:
    """Under a 16 KiB frame, results of 12000 and 6000 bytes, or of 9600 and 6850 (just
    above the frame, within its margin), do not fit one reply: the largest becomes a
    rejection naming its size (the command was applied all the same), the other is
    answered."""
    port = _free_port()
    peers = {1: ("127.0.0.1", port)}
    with trio.fail_after(15):
        async with open_raft_node(
            1, peers, tmp_path / "n1", _Sized(), election_timeout=0.2, max_frame=16384
        ) as node:
            await node.leader.wait_value(lambda v: v == 1)
            cm, replies = await _raw_client(port)
            async with cm as tcp:
                while not tcp.is_connected(1):  # noqa: ASYNC110
                    await trio.sleep(0.01)
                items = tuple(
                    CBatchItem(90 + n, 1, msgspec.msgpack.encode(size))
                    for n, size in enumerate((large, small))
                )
                assert tcp.send_nowait(1, CSubmitBatch(3, items))
                reply = await replies.receive()
            assert node.core.last_applied >= 3  # both were applied
    big = len(msgspec.msgpack.encode(b"r" * large))
    assert reply == CBatchReply(
        3,
        (
            CBatchResult(
                "rejected",
                reason=f"reply of {big} bytes exceeds the frame limit 16384: the result is"
                " lost (a submitted command was applied all the same; a read had no"
                " effect); narrow the range",
            ),
            CBatchResult("ok", msgspec.msgpack.encode(b"r" * small)),
        ),
    )


async def test_a_query_the_members_cannot_decode_is_refused(tmp_path: Path) -> None:
    port = _free_port()
    peers = {1: ("127.0.0.1", port)}
    with trio.fail_after(15):
        async with open_raft_node(
            1, peers, tmp_path / "n1", _Totals(), election_timeout=0.2, codec=Codec(query=str)
        ) as node:
            await node.leader.wait_value(lambda v: v == 1)
            cm, replies = await _raw_client(port)
            async with cm as tcp:
                while not tcp.is_connected(1):  # noqa: ASYNC110
                    await trio.sleep(0.01)
                assert tcp.send_nowait(1, CRead(4, msgspec.msgpack.encode(5)))
                reply = await replies.receive()
    assert (reply.req, reply.outcome) == (4, "rejected")
    assert reply.reason == "undecodable query: Expected `str`, got `int`"


@pytest.mark.parametrize("bad", [-1, MAX_MEMBER_ID + 1, "2"])
async def test_a_member_id_out_of_range_is_refused_by_value(tmp_path: Path, bad: Any) -> None:
    peers = {1: ("127.0.0.1", 1), bad: ("127.0.0.1", 2)}
    with pytest.raises(
        ValueError, match=rf"^member ids must be ints in \[0, 4294967295\], got {bad!r}$"
    ):
        async with open_raft_node(1, peers, tmp_path / "n1", _Totals()):
            pass
    assert not (tmp_path / "n1").exists()
