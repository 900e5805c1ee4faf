"""coordination/kv.py: MemoryKV's watches and refusals, exactly (mutation survivors).

A watch sees only its prefix, a watcher that falls behind its buffer is told
where to resume (and by how much it fell behind), and bad arguments are refused
with messages naming them.
"""

from __future__ import annotations

from typing import Any

import pytest
import trio

from trio_foundation.coordination.kv import (
    CompactedError,
    KeyValue,
    MemoryKV,
    WatchOverflowError,
)


async def test_a_watch_sees_only_its_prefix() -> None:
    kv = MemoryKV()
    with trio.fail_after(10):
        async with kv.watch("a/") as events:
            await kv.put("b/1", "x")
            await kv.put("a/1", "y")
            await kv.delete("b/1")
            await kv.put("a/2", "z")
            first = await events.__anext__()
            second = await events.__anext__()
            with trio.move_on_after(0.05):
                await events.__anext__()
                pytest.fail("an event outside the prefix was delivered")
    assert (first.kv.key, first.revision) == (b"a/1", 3)
    assert (second.kv.key, second.revision) == (b"a/2", 5)


async def test_a_watcher_that_falls_behind_is_told_where_to_resume() -> None:
    kv = MemoryKV(watch_capacity=2)
    with trio.fail_after(10):
        async with kv.watch("k") as events:
            for i in range(5):
                await kv.put("k", str(i))  # revisions 2..6; the buffer holds two
            await kv.put("other", "x")  # outside the prefix: not an overflow of this watch
            assert (await events.__anext__()).revision == 2
            assert (await events.__anext__()).revision == 3
            with pytest.raises(WatchOverflowError) as caught:
                await events.__anext__()
    assert (caught.value.next_revision, caught.value.capacity) == (4, 2)
    assert str(caught.value) == ("watcher fell more than 2 events behind; resume from revision 4")


async def test_a_watch_from_the_past_that_overflows_resumes_where_it_stopped() -> None:
    kv = MemoryKV(watch_capacity=2)
    for i in range(4):
        await kv.put("k", str(i))  # revisions 2..5
    with trio.fail_after(10):
        async with kv.watch("k", start_revision=2) as events:
            assert [(await events.__anext__()).revision for _ in range(2)] == [2, 3]
            with pytest.raises(WatchOverflowError) as caught:
                await events.__anext__()
    assert caught.value.next_revision == 4


async def test_refusals_name_the_argument() -> None:
    kv = MemoryKV(history=2)
    with pytest.raises(TypeError, match=r"^expect must be bytes or str, got int$"):
        await kv.cas("k", 1, "x")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^new must be bytes or str, got int$"):
        await kv.cas("k", None, 1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^mod_revision must be >= 0, got -1$"):
        await kv.cas_revision("k", -1, "x")
    with pytest.raises(ValueError, match=r"^limit must be >= 0, got -1$"):
        await kv.range("k", limit=-1)
    with pytest.raises(ValueError, match=r"^history and watch_capacity must be >= 1, got 0 and 5$"):
        MemoryKV(history=0, watch_capacity=5)
    for i in range(4):
        await kv.put("k", str(i))  # revisions 2..5; history keeps 4 and 5
    with pytest.raises(CompactedError, match=r"^revision 3 has been compacted; oldest kept is 4$"):
        async with kv.watch("k", start_revision=3):
            pass
    assert (await kv.cas("k", "3", "4")).current == KeyValue(b"k", b"4", 2, 6, 5, 0)


# every argument of every method, by name (session 5: a sampled survivor was the key
# of get() named None)
_BAD_ARGUMENTS = [
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
]


@pytest.mark.parametrize(("name", "call"), _BAD_ARGUMENTS)
async def test_every_bytes_argument_is_refused_by_name(name: str, call: Any) -> None:
    kv = MemoryKV()
    await kv.put("k", "old")
    with pytest.raises(TypeError, match=rf"^{name} must be bytes or str, got int$"):
        await call(kv)
    assert await kv.get("k") == KeyValue(b"k", b"old", 2, 2, 1, 0)
    assert kv.revision == 2


async def test_a_watch_prefix_is_refused_by_name() -> None:
    with pytest.raises(TypeError, match=r"^prefix must be bytes or str, got int$"):
        async with MemoryKV().watch(1):  # type: ignore[arg-type]
            pass


async def test_a_delete_event_carries_an_empty_tombstone_and_the_old_value() -> None:
    kv = MemoryKV()
    with trio.fail_after(10):
        async with kv.watch("k") as events:
            await kv.put("k", "v")
            assert await kv.delete("k") is True
            await events.__anext__()
            deleted = await events.__anext__()
    assert deleted.type == "DELETE" and deleted.revision == 3
    assert deleted.kv == KeyValue(b"k", b"", 0, 3, 0, 0)
    assert deleted.prev == KeyValue(b"k", b"v", 2, 2, 1, 0)
