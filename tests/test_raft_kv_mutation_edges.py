"""coordination/raft_kv.py: exact results, refusals and compaction (mutation survivors).

``RaftKV`` only translates between the :class:`~trio_foundation.coordination.kv.KVStore`
interface and the replicated :class:`~trio_foundation.protocols.kv_machine.KVMachine`.
Here the cluster is a stand-in whose ``submit`` applies to a real machine and
whose ``read`` queries it (what a one-member cluster does after its log and a
ReadIndex round), so each translation is checked exactly, with no network.
"""

from __future__ import annotations

from typing import Any

import pytest
import trio

from trio_foundation.coordination.kv import CasResult, CompactedError, KeyValue, WatchEvent
from trio_foundation.coordination.raft_kv import RaftKV
from trio_foundation.protocols import kv_machine as m


class _Cluster:
    """``submit`` applies to a real KVMachine; ``read`` queries it."""

    def __init__(self, **config: Any) -> None:
        self.machine = m.KVMachine(m.KVMachineConfig(**config))
        self.reads: list[Any] = []

    async def submit(self, command: Any) -> Any:
        await trio.lowlevel.checkpoint()
        return self.machine.apply(command)

    async def read(self, query: Any) -> Any:
        await trio.lowlevel.checkpoint()
        self.reads.append(query)
        return self.machine.query(query)


class _Answers:
    """A cluster that answers whatever it is told to (wrong kinds, errors)."""

    def __init__(self, answer: Any) -> None:
        self.answer = answer

    async def submit(self, command: Any) -> Any:
        return self.answer

    async def read(self, query: Any) -> Any:
        return self.answer


async def test_writes_return_the_machines_revisions_and_keys() -> None:
    kv = RaftKV(_Cluster())
    assert await kv.put("a", "1") == 2
    assert await kv.put(b"a", b"2") == 3
    assert await kv.get("a") == KeyValue(b"a", b"2", 2, 3, 2, 0)
    assert await kv.get("missing") is None
    swapped = await kv.cas("a", "2", "3")
    assert swapped == CasResult(True, 4, KeyValue(b"a", b"3", 2, 4, 3, 0))
    refused = await kv.cas("a", "nope", "4")
    assert refused == CasResult(False, 4, KeyValue(b"a", b"3", 2, 4, 3, 0))
    created = await kv.cas("b", None, "x")
    assert created == CasResult(True, 5, KeyValue(b"b", b"x", 5, 5, 1, 0))
    by_revision = await kv.cas_revision("a", 4, "5")
    assert by_revision == CasResult(True, 6, KeyValue(b"a", b"5", 2, 6, 4, 0))
    stale = await kv.cas_revision("a", 4, "6")
    assert stale == CasResult(False, 6, KeyValue(b"a", b"5", 2, 6, 4, 0))
    absent = await kv.cas_revision("c", 0, "new")
    assert absent == CasResult(True, 7, KeyValue(b"c", b"new", 7, 7, 1, 0))
    assert await kv.delete("b") is True
    assert await kv.delete("b") is False
    kvs, revision = await kv.range("")
    assert [x.key for x in kvs] == [b"a", b"c"] and revision == 8
    kvs, revision = await kv.range("a", limit=1)
    assert kvs == (KeyValue(b"a", b"5", 2, 6, 4, 0),) and revision == 8


async def test_bad_arguments_are_refused_before_anything_is_sent() -> None:
    cluster = _Cluster()
    kv = RaftKV(cluster)
    with pytest.raises(ValueError, match=r"^mod_revision must be >= 0, got -1$"):
        await kv.cas_revision("a", -1, "x")
    with pytest.raises(ValueError, match=r"^mod_revision must be >= 0, got '1'$"):
        await kv.cas_revision("a", "1", "x")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^limit must be an int >= 0, got -1$"):
        await kv.range("a", limit=-1)
    with pytest.raises(ValueError, match=r"^limit must be an int >= 0, got 1.5$"):
        await kv.range("a", limit=1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^start_revision must be >= 0, got -2$"):
        async with kv.watch("a", start_revision=-2):
            pass
    with pytest.raises(TypeError, match=r"^key must be bytes or str, got int$"):
        await kv.put(1, "x")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^value must be bytes or str, got NoneType$"):
        await kv.put("k", None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^expect must be bytes or str, got int$"):
        await kv.cas("k", 3, "x")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^new must be bytes or str, got int$"):
        await kv.cas_revision("k", 0, 3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^prefix must be bytes or str, got int$"):
        await kv.range(3)  # type: ignore[arg-type]
    assert cluster.reads == []
    assert cluster.machine.revision == 1


async def test_the_machines_errors_become_exceptions_naming_them() -> None:
    kv = RaftKV(_Cluster(max_key_bytes=4))
    with pytest.raises(ValueError, match=r"^too_large: key of 5 bytes, the limit is 4$"):
        await kv.put("fives", "x")
    with pytest.raises(
        ValueError, match=r"^bad_command: cannot compact to 9, above the revision 1$"
    ):
        await kv.compact(9)
    wrong = RaftKV(_Answers(m.DeleteResult(True, 3)))
    with pytest.raises(TypeError, match=r"^expected PutResult, the cluster answered DeleteResult"):
        await wrong.put("a", "b")
    compacted = RaftKV(_Answers(m.ErrorResult("compacted", "gone", 7)))
    with pytest.raises(CompactedError) as caught:
        await compacted.get("a")
    assert (caught.value.requested, caught.value.compact_revision) == (0, 7)


async def test_compaction_is_reported_with_the_revision_asked_for() -> None:
    kv = RaftKV(_Cluster(history=2))
    for i in range(5):
        await kv.put("k", str(i))  # revisions 2..6; the history keeps the last two
    assert await kv.compact(5) == 5
    with pytest.raises(CompactedError) as caught:
        async with kv.watch("k", start_revision=2):
            pass
    assert (caught.value.requested, caught.value.compact_revision) == (2, 5)
    assert str(caught.value) == "revision 2 has been compacted; oldest kept is 5"


async def test_a_watch_delivers_every_change_in_order_then_polls() -> None:
    cluster = _Cluster()
    kv = RaftKV(cluster, poll_interval=0.01)
    await kv.put("k1", "a")
    await kv.put("k2", "b")
    await kv.delete("k1")
    await kv.put("other", "x")
    seen: list[WatchEvent] = []
    with trio.fail_after(10):
        async with kv.watch("k", start_revision=2) as events:
            async for event in events:
                seen.append(event)
                if len(seen) == 3:
                    await kv.put("k3", "c")  # seen by a later poll
                if len(seen) == 4:
                    break
    assert [(e.type, e.kv.key, e.kv.value, e.revision) for e in seen] == [
        ("PUT", b"k1", b"a", 2),
        ("PUT", b"k2", b"b", 3),
        ("DELETE", b"k1", b"", 4),
        ("PUT", b"k3", b"c", 6),
    ]
    assert seen[2].prev == KeyValue(b"k1", b"a", 2, 2, 1, 0)
    assert seen[0].prev is None
    polls = [q for q in cluster.reads if isinstance(q, m.Watch)]
    assert polls[0] == m.Watch(b"k", 2)
    assert all(q.prefix == b"k" for q in polls)
    assert polls[-1].start_revision == 6


async def test_a_watch_that_falls_behind_a_compaction_says_where_it_was() -> None:
    kv = RaftKV(_Cluster(history=2), poll_interval=0.01)
    await kv.put("k", "0")  # revision 2
    with trio.fail_after(10):
        async with kv.watch("k", start_revision=2) as events:
            assert (await events.__anext__()).revision == 2
            for i in range(4):
                await kv.put("k", str(i))  # revisions 3..6
            assert await kv.compact(6) == 6
            with pytest.raises(CompactedError) as caught:
                await events.__anext__()
    assert (caught.value.requested, caught.value.compact_revision) == (3, 6)


# every bytes argument of every method, by name (session 5: a sampled survivor was
# the key of cas() named None)
@pytest.mark.parametrize(
    ("name", "call"),
    [
        ("key", lambda kv: kv.get(1)),
        ("key", lambda kv: kv.put(1, "v")),
        ("value", lambda kv: kv.put("k", 1)),
        ("key", lambda kv: kv.delete(1)),
        ("key", lambda kv: kv.cas(1, None, "v")),
        ("new", lambda kv: kv.cas("k", None, 1)),
        ("expect", lambda kv: kv.cas("k", 1, "v")),
        ("key", lambda kv: kv.cas_revision(1, 0, "v")),
        ("new", lambda kv: kv.cas_revision("k", 0, 1)),
        ("prefix", lambda kv: kv.range(1)),
    ],
)
async def test_every_bytes_argument_is_refused_by_name(name: str, call: Any) -> None:
    cluster = _Cluster()
    with pytest.raises(TypeError, match=rf"^{name} must be bytes or str, got int$"):
        await call(RaftKV(cluster))
    assert cluster.reads == [] and cluster.machine.revision == 1


async def test_a_watch_prefix_is_refused_by_name() -> None:
    cluster = _Cluster()
    with pytest.raises(TypeError, match=r"^prefix must be bytes or str, got int$"):
        async with RaftKV(cluster).watch(1):  # type: ignore[arg-type]
            pass
    assert cluster.reads == []


async def test_a_watch_polls_every_50_ms_by_default(autojump_clock: Any) -> None:
    """With the default poll interval, a change is delivered within a poll (0.05 s of
    trio's clock) of its write."""
    cluster = _Cluster()
    kv = RaftKV(cluster)
    with trio.fail_after(10):
        async with kv.watch("k") as events:
            await trio.sleep(1.0)  # polls went by with nothing
            written = trio.current_time()
            await kv.put("k", "v")
            event = await events.__anext__()
    assert (event.type, event.kv.key) == ("PUT", b"k")
    assert 0 < trio.current_time() - written <= 0.05 + 1e-9
