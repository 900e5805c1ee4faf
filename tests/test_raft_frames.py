"""Messages bigger than one Raft frame never crash a member (small frames: cheap).

A 3-member cluster in one process over loopback TCP with ``max_frame`` 8 KiB:
a follower cut off while 1 KiB values are written needs a snapshot (the log
compacts) or a batch of appends far above one frame; oversized commands and
replies are refused with errors naming the size and the limit.
"""

from __future__ import annotations

import time
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import msgspec
import pytest
import raft_cluster
import trio
from attrs import evolve as attrs_evolve
from raft_cluster import Cluster, free_ports, until

from trio_foundation.coordination import raft_wire as rw
from trio_foundation.coordination.consensus import (
    RaftRequestError,
    open_raft_client,
    open_raft_node,
)
from trio_foundation.protocols import raft as core

FRAME = 8192
VALUE = b"v" * 1024


class Store:
    """A tiny key-value state machine: ``[key, bytes]`` puts; queries ``key`` or ``"*"``."""

    def __init__(self) -> None:
        self.values: dict[str, bytes] = {}

    def apply(self, command: Any) -> Any:
        key, value = command
        self.values[key] = value
        return len(self.values)

    def query(self, query: Any) -> Any:
        if query == "*":
            return self.values
        return self.values.get(query)

    def snapshot(self) -> bytes:
        return msgspec.msgpack.encode(self.values)

    def restore(self, data: bytes) -> None:
        self.values = msgspec.msgpack.decode(data)


def cluster(
    tmp: Path, max_log_entries: int = 10_000, send_queue_bytes: int = 8 << 20
) -> AbstractAsyncContextManager[Cluster[Store]]:
    """Three :class:`Store` members with 8 KiB frames (see ``raft_cluster.cluster``)."""
    return raft_cluster.cluster(
        tmp,
        Store,
        max_log_entries=max_log_entries,
        max_frame=FRAME,
        send_queue_bytes=send_queue_bytes,
    )


async def lag_one_follower(c: Cluster[Store], writes: int) -> tuple[int, int]:
    """Stop a follower, write ``writes`` 1 KiB values, restart it; (leader, follower)."""
    leader = await c.leader()
    follower = next(i for i in c.nodes if i != leader)
    c.stop(follower)
    node = c.nodes[leader]
    for k in range(writes):
        await node.submit([f"k{k}", VALUE])
    await c.start(follower)
    await until(lambda: c.machines[follower].values == c.machines[leader].values)
    return leader, follower


async def test_a_lagging_follower_gets_a_snapshot_bigger_than_a_frame(tmp_path: Path) -> None:
    async with cluster(tmp_path, max_log_entries=16) as c:
        with trio.fail_after(20):
            leader, follower = await lag_one_follower(c, 60)
            snap = c.nodes[leader].core.snapshot
            assert snap is not None and len(snap.data) > 5 * FRAME  # compacted, far above
            assert c.nodes[leader].frame_stats()["snapshots_chunked"] >= 1
            assert c.nodes[follower].frame_stats()["snapshots_assembled"] >= 1
            assert len(c.machines[follower].values) == 60
            # the cluster keeps working, and nothing was dropped for its size
            assert await c.nodes[follower].submit(["after", b"x"]) == 61
            for node in c.nodes.values():
                assert not [k for k in node.frame_stats() if k.startswith("oversize.")]


async def test_a_snapshot_of_many_times_the_send_queue_streams_without_elections(
    tmp_path: Path,
) -> None:
    """The reviewer's case in small: a snapshot of >= 20 chunks, 6x the transport's
    send queue. Handed to the transport at once, the queue drops the oldest chunks
    every time and the follower never catches up; streamed as the queue drains,
    it catches up, and no election happens meanwhile (the term stays)."""
    queue = 4 * FRAME
    async with cluster(tmp_path, max_log_entries=16, send_queue_bytes=queue) as c:
        leader = await c.leader()
        follower = next(i for i in c.nodes if i != leader)
        c.stop(follower)
        for k in range(240):
            await c.nodes[leader].submit([f"k{k}", VALUE])
        snap = c.nodes[leader].core.snapshot
        assert snap is not None and len(snap.data) > 6 * queue
        term = c.nodes[leader].core.term
        started = trio.current_time()
        await c.start(follower)
        with trio.fail_after(10):
            await until(lambda: len(c.machines[follower].values) == 240)
        took = trio.current_time() - started
        stats = c.nodes[leader].frame_stats()
        assert stats["snapshot_chunks_sent"] >= 20, stats
        assert c.nodes[follower].frame_stats()["snapshots_assembled"] >= 1
        assert c.nodes[leader].core.role == "leader"
        assert {n.core.term for n in c.nodes.values()} == {term}, "an election happened"
        print(f"catch-up {took:.3f} s, {stats['snapshot_chunks_sent']} chunks sent")


async def test_a_batch_of_appends_bigger_than_a_frame_is_split(tmp_path: Path) -> None:
    async with cluster(tmp_path) as c:
        with trio.fail_after(20):
            leader, follower = await lag_one_follower(c, 40)
            # the core's batch of up to 64 entries of ~1 KiB is ~5 frames: split
            assert c.nodes[leader].frame_stats()["appends_split"] >= 1
            assert c.nodes[follower].core.snapshot is None  # caught up by appends alone
            assert c.nodes[follower].core.last_applied == c.nodes[leader].core.last_applied


async def test_oversized_commands_and_replies_are_refused_and_the_cluster_works(
    tmp_path: Path,
) -> None:
    async with cluster(tmp_path) as c:
        with trio.fail_after(20):
            leader = await c.leader()
            async with open_raft_client(c.peers, max_frame=FRAME) as client:
                limit = rw.max_command_bytes(FRAME)
                # client side: refused before it is sent, naming the size and the limit
                with pytest.raises(ValueError, match=rf"exceeds the limit of {limit} bytes"):
                    await client.submit(["big", b"x" * FRAME])
                with pytest.raises(ValueError, match=rf"exceeds the frame limit of {FRAME}"):
                    await client.submit_many([["k", b"x" * 3000]] * 3)
                # member side: a command that fits a CSubmit frame but not a log entry
                cmd = msgspec.msgpack.encode(["big", b"x" * (limit + 10)])
                assert limit < len(cmd) < FRAME - 64
                with pytest.raises(RaftRequestError, match=r"command of \d+ bytes exceeds"):
                    await client._call("propose", core.Proposal(12345, 1, cmd))
                # a reply too big for a frame: an error reply, not a crash
                for k in range(10):
                    await client.submit([f"k{k}", VALUE])
                with pytest.raises(RaftRequestError, match=rf"exceeds the frame limit {FRAME}"):
                    await client.read("*")
                with pytest.raises(RaftRequestError, match="reply of"):
                    await client.fetch_snapshot(leader)
                assert await client.read("k3") == VALUE
                assert await client.submit(["small", b"y"]) == 11


# --------------------------------------------------------------------------- pure parts


def _entries(n: int, size: int, start: int = 6) -> tuple[core.Entry, ...]:
    return tuple(
        core.Entry(2, start + k, "command", core.Proposal(k, 1, bytes([k % 256]) * size))
        for k in range(n)
    )


@pytest.mark.parametrize(("n", "size"), [(1, 10), (64, 1000), (5, 7000), (30, 100)])
def test_split_append_parts_fit_and_chain(n: int, size: int) -> None:
    entries = _entries(n, size)
    msg = core.AppendEntries(2, 1, 5, 1, entries, 9, 4)
    parts = rw.split_append(msg, FRAME)
    protocol = rw.raft_protocol(FRAME)
    got: list[core.Entry] = []
    prev = (5, 1)
    for part in parts:
        assert len(protocol.encode(part)) <= FRAME
        back = rw.from_wire(part)
        assert isinstance(back, core.AppendEntries)
        assert (back.prev_log_index, back.prev_log_term) == prev
        assert (back.term, back.leader, back.leader_commit, back.read_id) == (2, 1, 9, 4)
        got.extend(back.entries)
        prev = (back.entries[-1].index, back.entries[-1].term)
    assert tuple(got) == entries


def test_split_append_refuses_an_entry_that_fits_no_frame() -> None:
    msg = core.AppendEntries(2, 1, 5, 1, _entries(1, FRAME), 9, 4)
    with pytest.raises(ValueError, match=r"log entry 6 encodes to \d+ bytes"):
        rw.split_append(msg, FRAME)


def _install(size: int) -> core.InstallSnapshot:
    cfg = core.Config((1, 2, 3), ())
    return core.InstallSnapshot(3, 1, 40, 2, cfg, b"s" * size, ((7, 1, b"r"),), 5)


def test_snapshot_chunks_reassemble_and_are_bounded() -> None:
    msg = _install(50_000)
    chunks = rw.snapshot_chunks(msg, FRAME)
    assert len(chunks) > 5 and all(isinstance(ch, rw.WSnapshotChunk) for ch in chunks)
    protocol = rw.raft_protocol(FRAME)
    assert all(len(protocol.encode(ch)) <= FRAME for ch in chunks)
    asm = rw.SnapshotAssembler(max_bytes=1 << 20, timeout=1.0)
    out = [asm.add(1, ch, 0.0) for ch in chunks]  # type: ignore[arg-type]
    assert out[:-1] == [None] * (len(chunks) - 1) and out[-1] == msg
    # a lost chunk drops the partial; a restart at offset 0 succeeds
    assert [asm.add(1, ch, 0.0) for ch in chunks[:1] + chunks[2:]] == [None] * (len(chunks) - 1)
    assert asm.pending_bytes == 0 and asm.dropped >= 1
    assert [asm.add(1, ch, 0.0) for ch in chunks][-1] == msg  # type: ignore[arg-type]
    # a partial untouched past the timeout is forgotten
    asm.add(1, chunks[0], 0.0)  # type: ignore[arg-type]
    assert asm.pending_bytes > 0
    assert asm.add(1, chunks[1], 5.0) is None and asm.pending_bytes == 0  # type: ignore[arg-type]
    # a snapshot above the stated byte limit is refused outright
    small = rw.SnapshotAssembler(max_bytes=10_000, timeout=1.0)
    assert all(small.add(1, ch, 0.0) is None for ch in chunks)  # type: ignore[arg-type]
    assert small.refused == len(chunks) and small.pending_bytes == 0
    # one partial per sender, at most max_senders senders
    few = rw.SnapshotAssembler(max_bytes=1 << 20, timeout=1.0, max_senders=2)
    for src in (1, 2, 3):
        few.add(src, chunks[0], float(src))  # type: ignore[arg-type]
    assert few.pending_bytes == 2 * len(chunks[0].data)  # type: ignore[attr-defined]
    # a snapshot that fits a frame goes as the one InstallSnapshot message
    assert isinstance(rw.snapshot_chunks(_install(100), FRAME)[0], rw.WInstallSnapshot)


def test_frame_limit_is_validated() -> None:
    with pytest.raises(ValueError, match="max_frame must be an int >= 4096"):
        rw.raft_protocol(100)
    assert rw.RAFT_PROTOCOL.max_frame == 16 << 20


async def test_send_queue_bytes_is_validated(tmp_path: Path) -> None:
    peers = {1: ("127.0.0.1", free_ports(1)[0])}
    for bad in (100, 0, True, 4096.0):
        with pytest.raises(ValueError, match="send_queue_bytes must be an int >= 4096"):
            async with open_raft_node(1, peers, tmp_path, Store(), send_queue_bytes=bad):  # type: ignore[arg-type]
                pass  # pragma: no cover


class _FakeTcp:
    """Encodes as the transport does (the codec's size check), keeps nothing."""

    def __init__(self) -> None:
        self.protocol = rw.raft_protocol(FRAME)
        self.sent: list[Any] = []
        self.queued: dict[int, int] = {}  # what the test says the queue holds

    def queued_bytes(self, dst: int) -> int:
        return self.queued.get(dst, 0)

    def send_nowait(self, dst: int, msg: Any) -> bool:
        self.protocol.encode(msg)
        self.sent.append(msg)
        return True


def test_the_send_path_drops_counts_and_survives_an_unsendable_message() -> None:
    from trio_foundation.coordination.consensus import _FrameGuard, _Persister

    tcp = _FakeTcp()
    persister = _Persister(None, tcp, last_index=lambda: 0)  # type: ignore[arg-type]
    guard = persister.guard
    assert isinstance(guard, _FrameGuard)
    # an entry logged under a bigger frame limit: no frame can carry it
    huge = core.AppendEntries(2, 1, 5, 1, _entries(1, FRAME), 9, 4)
    persister.send(2, huge)
    persister.send(2, huge)
    assert guard.oversize == {"AppendEntries": 2} and tcp.sent == []
    # a message the service builds directly: dropped and counted by its wire type
    assert guard.send(2, rw.CReply(1, "ok", value=b"x" * FRAME)) is False
    assert guard.oversize["CReply"] == 1
    # small ones still go out
    persister.send(2, core.AppendEntries(2, 1, 5, 1, _entries(2, 10), 9, 4))
    assert len(tcp.sent) == 1


async def test_a_chunked_snapshot_is_encoded_once_and_paced_by_the_queue() -> None:
    from trio_foundation.coordination.consensus import _Persister

    tcp = _FakeTcp()
    budget = 4 * FRAME
    persister = _Persister(
        None,  # type: ignore[arg-type]
        tcp,  # type: ignore[arg-type]
        last_index=lambda: 0,
        snapshot_resend=0.05,
        stream_budget=budget,
    )
    msg = _install(100_000)
    blob = rw.snapshot_blob(msg)
    step = FRAME - rw.FRAME_MARGIN
    # first ask: only what fits the budget; the same asks with a full queue: nothing
    persister.send(2, msg)
    first = len(tcp.sent)
    assert 1 <= first and first * step <= budget
    tcp.queued[2] = budget
    for _ in range(5):
        persister.send(2, msg)
    assert len(tcp.sent) == first
    # the queue drains: the next ask continues where the stream stopped
    got = list(tcp.sent)
    while sum(len(c.data) for c in got) < len(blob):
        tcp.queued[2] = 0
        persister.send(2, msg)
        got = list(tcp.sent)
    assert [c.offset for c in got] == list(range(0, len(blob), step))
    asm = rw.SnapshotAssembler(max_bytes=1 << 20, timeout=1.0)
    assert [asm.add(1, c, 0.0) for c in got][-1] == msg
    # finished, unanswered: no resend before an election timeout, from 0 after
    persister.send(2, msg)
    assert len(tcp.sent) == len(got)
    await trio.sleep(0.06)
    persister.send(2, msg)
    assert tcp.sent[len(got)].offset == 0
    # answered: the stream is dropped; a new snapshot starts a new stream
    persister.snapshot_answered(2)
    newer = attrs_evolve(msg, last_included_index=41)
    before = len(tcp.sent)
    persister.send(2, newer)
    assert tcp.sent[before].index == 41 and tcp.sent[before].offset == 0
    # one encoding per snapshot however often the core asks
    assert persister.snapshot_encodes == 2
    assert persister.snapshots_chunked == 3


@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_default_frame_a_snapshot_above_16_mib_reaches_a_lagging_follower(
    tmp_path: Path,
) -> None:
    """The reported case at the default 16 MiB frame: a ~20 MiB snapshot."""
    global FRAME
    saved, FRAME = FRAME, rw.DEFAULT_MAX_FRAME
    try:
        async with cluster(tmp_path, max_log_entries=16) as c:
            with trio.fail_after(200):
                leader = await c.leader()
                follower = next(i for i in c.nodes if i != leader)
                c.stop(follower)
                big = b"b" * (512 << 10)
                for k in range(40):
                    await c.nodes[leader].submit([f"k{k}", big])
                await c.start(follower)
                await until(lambda: len(c.machines[follower].values) == 40)
                snap = c.nodes[leader].core.snapshot
                assert snap is not None and len(snap.data) > rw.DEFAULT_MAX_FRAME
                assert c.nodes[follower].frame_stats()["snapshots_assembled"] >= 1
    finally:
        FRAME = saved


@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_processes_an_84_mb_snapshot_reaches_a_restarted_member(tmp_path: Path) -> None:
    """The reviewer's repro on 3 ``foundation kv serve`` processes: member 3 killed,
    40 values of 1 MB and 10,500 small puts written (an ~82 MB snapshot), member 3
    restarted; it must catch up with no election."""
    from test_kv_cli import Processes

    from trio_foundation.coordination.raft_kv import KV_CODEC, RaftKV

    procs = Processes(tmp_path)
    members = {i: ("127.0.0.1", p) for i, p in procs.ports.items()}
    try:
        for i in procs.ports:
            procs.start(i)
        async with open_raft_client(members, codec=KV_CODEC) as client:
            kv = RaftKV(client)
            await kv.put(b"hello", b"x")
            procs.kill(3)
            for k in range(40):
                await kv.put(f"big{k}".encode(), b"b" * 1_000_000)

            async def small(lo: int) -> None:
                for k in range(lo, 10_500, 50):
                    await kv.put(f"s{k}".encode(), b"v" * 16)

            async with trio.open_nursery() as nursery:
                for lo in range(50):
                    nursery.start_soon(small, lo)
            size = await trio.to_thread.run_sync(
                lambda: max((p.stat().st_size for p in tmp_path.glob("data*/snapshot")), default=0)
            )
            assert size > 3 * rw.DEFAULT_MAX_FRAME  # the old code lost chunks from 3 on
            before = [await client.node_status(i) for i in (1, 2)]
            assert all(s is not None for s in before)
            term = max(s.term for s in before if s is not None)
            commit = max(s.commit_index for s in before if s is not None)
            started = time.monotonic()
            procs.start(3)
            with trio.fail_after(60):
                while True:
                    s3 = await client.node_status(3, wait=0.5)
                    if s3 is not None and s3.last_applied >= commit:
                        break
                    await trio.sleep(0.2)
            took = time.monotonic() - started
            after = [await client.node_status(i) for i in (1, 2, 3)]
            assert {s.term for s in after if s is not None} == {term}, "an election happened"
            print(f"member 3 caught up in {took:.1f} s from a {size / 1e6:.1f} MB snapshot")
    finally:
        for i in list(procs.procs):
            procs.kill(i)
