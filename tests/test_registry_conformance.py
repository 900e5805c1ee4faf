"""Conformance suite for registry backends.

Every test takes a ``make`` fixture: ``make(keys=..., indexes=..., batch_limit=...)``
returns a fresh :class:`trio_foundation.registry.Backend`. Only the protocol's methods are
used, so another backend (etcd, later) is tested by adding its factory to ``BACKENDS``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import trio
import trio.testing

from trio_foundation.registry import (
    Backend,
    BatchTooLargeError,
    DuplicateKeyError,
    Index,
    Registered,
    Registry,
    Resync,
    Unregistered,
    Updated,
)

INDEXES = (Index("node"), Index("caps", multi=True), Index("health"))


def _memory(**kwargs: Any) -> Backend:
    kwargs.setdefault("indexes", INDEXES)
    return Registry(**kwargs)


BACKENDS: dict[str, Callable[..., Backend]] = {"memory": _memory}


@pytest.fixture(params=sorted(BACKENDS))
def make(request: pytest.FixtureRequest) -> Callable[..., Backend]:
    return BACKENDS[request.param]


async def test_register_lookup_and_scope_end(make: Callable[..., Backend]) -> None:
    reg = make()
    async with reg.register("w1", {"node": "a"}, value="mbox") as entry:
        assert reg.lookup("w1") == entry
        assert entry.value == "mbox" and entry.meta["node"] == "a"
        assert reg.get(entry.id) == entry
        assert len(reg) == 1
    assert reg.lookup("w1") is None
    assert reg.get(entry.id) is None
    assert len(reg) == 0


async def test_entry_removed_when_the_owner_raises_or_is_cancelled(
    make: Callable[..., Backend], autojump_clock: trio.testing.MockClock
) -> None:
    reg = make()
    with pytest.raises(ZeroDivisionError):
        async with reg.register("w1", {}):
            1 / 0  # noqa: B018
    assert reg.lookup("w1") is None
    with trio.move_on_after(1):
        async with reg.register("w2", {}):
            await trio.sleep_forever()
    assert reg.lookup("w2") is None


async def test_entry_dies_with_its_task(make: Callable[..., Backend]) -> None:
    reg = make()

    async def owner() -> None:
        async with reg.register("task-bound", {}):
            await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(owner)
        await trio.testing.wait_all_tasks_blocked()
        assert reg.lookup("task-bound") is not None
        nursery.cancel_scope.cancel()
    assert reg.lookup("task-bound") is None


async def test_cancelled_before_entering_registers_nothing(make: Callable[..., Backend]) -> None:
    reg = make()
    with trio.CancelScope() as scope:
        scope.cancel()
        async with reg.register("never", {}):
            raise AssertionError("entered a cancelled registration")
    assert reg.lookup("never") is None and len(reg) == 0


async def test_unique_refuses_a_duplicate_key(make: Callable[..., Backend]) -> None:
    reg = make(keys="unique")
    async with reg.register("k", {}):
        with pytest.raises(DuplicateKeyError, match="'k' is already registered"):
            async with reg.register("k", {}):
                pass
        assert len(reg) == 1


async def test_duplicate_registry_keeps_every_entry_in_order(make: Callable[..., Backend]) -> None:
    reg = make(keys="duplicate")
    async with reg.register("group", {"node": "a"}) as first:
        async with reg.register("group", {"node": "b"}) as second:
            assert reg.lookup_all("group") == (first, second)
            assert reg.lookup("group") == first
        assert reg.lookup_all("group") == (first,)
    assert reg.lookup_all("group") == ()


async def test_bad_keys_and_meta_are_refused(make: Callable[..., Backend]) -> None:
    reg = make()
    with pytest.raises(TypeError, match="registry key must be hashable, got list"):
        async with reg.register(["not", "hashable"], {}):  # type: ignore[arg-type]
            pass
    with pytest.raises(TypeError, match="metadata must be a mapping"):
        async with reg.register("k", [("a", 1)]):  # type: ignore[arg-type]
            pass
    with pytest.raises(TypeError, match="index 'caps' is multi-valued"):
        async with reg.register("k", {"caps": "x"}):
            pass
    with pytest.raises(TypeError, match="value of index 'node' must be hashable"):
        async with reg.register("k", {"node": ["a"]}):
            pass
    assert len(reg) == 0


async def test_queries_all_of_any_of_where_and_pages(make: Callable[..., Backend]) -> None:
    reg = make()
    items = [
        (f"w{i}", {"node": f"n{i % 3}", "caps": {"gpu"} if i % 2 else {"cpu"}, "health": "ok"})
        for i in range(20)
    ]
    async with reg.register_many(items[:10]) as first, reg.register_many(items[10:]) as second:
        every = first + second
        gpu_n1 = [e for e in every if e.meta["node"] == "n1" and "gpu" in e.meta["caps"]]  # type: ignore[operator]
        assert reg.select({"node": "n1", "caps": "gpu"}).entries == tuple(gpu_n1)
        any_ = [e for e in every if e.meta["node"] in ("n0", "n2")]
        assert reg.select(any_of=[("node", "n0"), ("node", "n2")], limit=100).entries == tuple(any_)
        odd = reg.select(where=lambda e: int(str(e.key)[1:]) % 2 == 1, limit=100).entries
        assert [e.key for e in odd] == [f"w{i}" for i in range(1, 20, 2)]
        pages, after = [], None
        while True:
            page = reg.select({"health": "ok"}, limit=6, after=after)
            pages.append(page.entries)
            if page.next_after is None:
                break
            after = page.next_after
        assert [len(p) for p in pages] == [6, 6, 6, 2]
        assert sum(pages, ()) == every
        assert reg.select({"node": "nowhere"}).entries == ()
        with pytest.raises(ValueError, match="no index named 'colour'"):
            reg.select({"colour": "red"})
        with pytest.raises(ValueError, match="limit must be a positive int"):
            reg.select(limit=0)
    assert len(reg) == 0


async def test_update_moves_index_values(make: Callable[..., Backend]) -> None:
    reg = make()
    async with reg.register("w", {"node": "a", "caps": ["x", "y"]}) as entry:
        new = await reg.update(entry, {"caps": ["y", "z"]}, merge=True)
        assert new.id == entry.id and new.meta == {"node": "a", "caps": ["y", "z"]}
        assert reg.select({"caps": "x"}).entries == ()
        assert reg.select({"caps": "z"}).entries == (new,)
        assert reg.select({"node": "a"}).entries == (new,)
        replaced = await reg.update(entry.id, {"health": "bad"})
        assert reg.select({"node": "a"}).entries == ()
        assert reg.select({"health": "bad"}).entries == (replaced,)
        assert reg.lookup("w") == replaced
    with pytest.raises(KeyError, match="is not registered"):
        await reg.update(entry, {})


async def test_unregister_is_idempotent(make: Callable[..., Backend]) -> None:
    reg = make()
    async with reg.register("w", {"node": "a"}) as entry:
        assert await reg.unregister(entry) is True
        assert await reg.unregister(entry) is False
        assert reg.select({"node": "a"}).entries == ()
    assert len(reg) == 0


async def test_batches_are_all_or_nothing_and_limited(make: Callable[..., Backend]) -> None:
    reg = make(batch_limit=3)
    with pytest.raises(BatchTooLargeError, match="batch of 4 registrations exceeds batch_limit=3"):
        async with reg.register_many([(f"k{i}", {}) for i in range(4)]):
            pass
    async with reg.register("k1", {}):
        with pytest.raises(DuplicateKeyError):
            async with reg.register_many([("k0", {}), ("k1", {})]):
                pass
        assert reg.lookup("k0") is None and len(reg) == 1
    with pytest.raises(DuplicateKeyError):
        async with reg.register_many([("k2", {}), ("k2", {})]):
            pass
    assert len(reg) == 0


async def test_watch_delivers_changes_and_resyncs_when_behind(
    make: Callable[..., Backend],
) -> None:
    reg = make()
    async with reg.watch(capacity=3) as watch:
        async with reg.register("a", {"node": "x"}) as a:
            b = await reg.update(a, {"node": "y"})
        assert [await watch.receive() for _ in range(3)] == [
            Registered(a),
            Updated(a, b),
            Unregistered(b),
        ]
        for i in range(10):
            async with reg.register(f"k{i}", {}):
                pass
        assert watch.pending() == 1
        assert await watch.receive() == Resync(missed=20)
        async with reg.register("after", {}) as after:
            assert await watch.receive() == Registered(after)
    with pytest.raises(trio.ClosedResourceError):
        await watch.receive()


async def test_watch_receive_waits_and_is_cancellable(
    make: Callable[..., Backend], autojump_clock: trio.testing.MockClock
) -> None:
    reg = make()
    async with reg.watch(capacity=2) as watch:
        with trio.move_on_after(1) as scope:
            await watch.receive()
        assert scope.cancelled_caught
        got: list[object] = []

        async def watcher() -> None:
            got.append(await watch.receive())

        async with trio.open_nursery() as nursery:
            nursery.start_soon(watcher)
            await trio.testing.wait_all_tasks_blocked()
            async with reg.register("x", {}) as entry:
                pass
        assert got == [Registered(entry)]
