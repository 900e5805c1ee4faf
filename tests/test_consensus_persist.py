"""The persister: its merge of consecutive RaftPersist records has apply_persist's effect;
its send gate lets a leader's append out before its own fsync only when that is safe."""

from __future__ import annotations

from pathlib import Path

import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from trio_foundation.coordination.consensus import _merge, _Persister
from trio_foundation.coordination.raft_wire import RAFT_PROTOCOL
from trio_foundation.protocols.raft import (
    AppendEntries,
    Config,
    Entry,
    RaftDurable,
    RaftPersist,
    RequestVoteResponse,
    Snapshot,
    apply_persist,
)


@st.composite
def record_scripts(draw: st.DrawFn) -> tuple[RaftDurable, list[RaftPersist]]:
    """A durable start and a script of valid records (as a core could emit them)."""
    durable = RaftDurable()
    records = []
    term = 1
    last = 0
    snap_index = 0
    for _ in range(draw(st.integers(1, 8))):
        term += draw(st.integers(0, 1))
        snapshot = None
        if draw(st.integers(0, 5)) == 0 and last > snap_index:
            idx = draw(st.integers(snap_index + 1, last))
            snapshot = Snapshot(idx, 1, Config((1, 2, 3)), b"s%d" % idx)
            snap_index = idx
        truncate = None
        if draw(st.booleans()) and last > snap_index:
            truncate = draw(st.integers(snap_index + 1, last))
            last = truncate - 1
        n = draw(st.integers(0, 3))
        entries = tuple(Entry(term, last + 1 + k, "noop") for k in range(n))
        last += n
        record = RaftPersist(term, None, truncate, entries, snapshot)
        durable = apply_persist(durable, record)
        records.append(record)
    return RaftDurable(), records


@settings(max_examples=300, deadline=None)
@given(record_scripts())
def test_merged_records_have_the_same_effect(script: tuple[RaftDurable, list[RaftPersist]]) -> None:
    start, records = script
    expected = start
    for r in records:
        expected = apply_persist(expected, r)
    # merge greedily, as the persister does
    merged: list[RaftPersist] = []
    for r in records:
        m = _merge(merged[-1], r) if merged else None
        if m is None:
            merged.append(r)
        else:
            merged[-1] = m
    got = start
    for r in merged:
        got = apply_persist(got, r)
    assert got == expected


# ----------------------------------------------------------------------------- the send gate


class _BlockingLog:
    """A RaftLog stand-in whose saves finish only when the test lets them."""

    def __init__(self) -> None:
        self.saved: list[RaftPersist] = []
        self.release = trio.Event()

    async def save_record(self, record: RaftPersist, **_codecs: object) -> None:
        await self.release.wait()
        self.release = trio.Event()
        self.saved.append(record)


class _Wire:
    """A TcpTransport stand-in recording what was sent, in order."""

    # the Raft service reads its frame limit from the transport's protocol
    protocol = RAFT_PROTOCOL

    def __init__(self) -> None:
        self.sent: list[tuple[int, object]] = []

    def send_nowait(self, dst: int, msg: object) -> bool:
        self.sent.append((dst, msg))
        return True

    def queued_bytes(self, dst: int) -> int:
        return 0  # nothing waits: every send is recorded at once


def _append(term: int, commit: int, index: int) -> AppendEntries:
    return AppendEntries(term, 1, index - 1, term, (Entry(term, index, "noop"),), commit)


async def test_a_leaders_append_goes_out_before_its_own_entry_is_durable() -> None:
    log, wire = _BlockingLog(), _Wire()
    last = [5]
    p = _Persister(log, wire, last_index=lambda: last[0], durable_term=2, durable_last=5)  # type: ignore[arg-type]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(p.run)
        # the leader appends entry 6 (not durable yet) and replicates it at once
        last[0] = 6
        p.enqueue(RaftPersist(2, 1, None, (Entry(2, 6, "noop"),)))
        assert p.send(2, _append(2, 5, 6))
        assert [d for d, _ in wire.sent] == [2]  # sent before the fsync
        # revealing commit 6 (counted with this node's not yet durable copy): held
        p.send(2, _append(2, 6, 7))
        # anything after a held message to the same node waits too (FIFO link) ...
        p.send(2, _append(2, 5, 7))
        # ... a node with nothing held still gets an eligible append at once
        p.send(3, _append(2, 5, 6))
        # other messages (a vote, an acknowledgement) always wait
        p.send(3, RequestVoteResponse(2, True))
        assert [d for d, _ in wire.sent] == [2, 3]
        assert p.sent_early == 2
        waiter_done = trio.Event()

        async def waiter() -> None:
            await p.wait_index(6)
            waiter_done.set()

        nursery.start_soon(waiter)
        await trio.testing.wait_all_tasks_blocked()
        assert not waiter_done.is_set()
        log.release.set()  # the record (entry 6) becomes durable
        await waiter_done.wait()
        assert p.durable_last == 6 and p.durable_term == 2 and p.durable == 1
        # the held messages go out in order
        held = [(d, type(m).__name__, getattr(m, "leader_commit", None)) for d, m in wire.sent[2:]]
        assert held == [
            (2, "WAppendEntries", 6),
            (2, "WAppendEntries", 5),
            (3, "WRequestVoteResponse", None),
        ]
        nursery.cancel_scope.cancel()


async def test_an_append_of_a_term_not_yet_durable_waits() -> None:
    log, wire = _BlockingLog(), _Wire()
    p = _Persister(log, wire, last_index=lambda: 5, durable_term=2, durable_last=5)  # type: ignore[arg-type]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(p.run)
        p.enqueue(RaftPersist(3, 1))  # a new term (this node's election), not durable
        p.send(2, _append(3, 5, 6))
        assert wire.sent == [] and p.sent_early == 0
        log.release.set()
        await p.wait_durable(1)
        assert len(wire.sent) == 1 and p.durable_term == 3
        nursery.cancel_scope.cancel()


async def test_three_nodes_replicate_in_parallel_with_the_leaders_fsync(tmp_path: Path) -> None:
    from raft_cluster import cluster

    async with cluster(tmp_path) as c:
        with trio.fail_after(20):
            leader = await c.leader()
            for k in range(20):
                assert await c.nodes[leader].submit(("a", 1)) == k + 1
            persister = c.nodes[leader].persister
            assert persister is not None
            assert persister.sent_early > 0  # the early path is the one taken
            assert persister.durable_last >= c.nodes[leader].core.commit_index
