"""Conformance suite for registry backends.

Every test takes a ``make`` fixture: ``await make(keys=..., indexes=..., batch_limit=...)``
returns a fresh :class:`trio_foundation.registry.Backend`. Only the protocol's methods are
used, so another backend is tested by adding its factory to ``BACKENDS``: ``memory`` (the
in-memory :class:`Registry`) and ``etcd`` (:class:`trio_foundation.etcd.EtcdRegistry` on a
real etcd started once per module, each registry in its own prefix; marker ``etcd``).

Metadata is JSON (lists, not sets), as every backend accepts; the tests wait for an event
(not ``wait_all_tasks_blocked``, which also returns while a task waits on the network).
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
import trio
import trio.testing

from trio_foundation.etcd import open_etcd_client, open_etcd_registry
from trio_foundation.etcd.testing import EtcdCluster
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


Make = Callable[..., Awaitable[Backend]]
_prefixes = itertools.count()


@pytest.fixture(scope="module")
def etcd_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    with EtcdCluster.start(tmp_path_factory.mktemp("etcd")) as cluster:
        yield cluster


@pytest.fixture
async def _memory(request: pytest.FixtureRequest) -> AsyncIterator[Make]:
    async def make(**kwargs: Any) -> Backend:
        kwargs.setdefault("indexes", INDEXES)
        return Registry(**kwargs)

    yield make


@pytest.fixture
async def _etcd(request: pytest.FixtureRequest) -> AsyncIterator[Make]:
    cluster: EtcdCluster = request.getfixturevalue("etcd_cluster")
    async with open_etcd_client(cluster.endpoints[0]) as client, trio.open_nursery() as nursery:

        async def hold(kwargs: dict[str, Any], *, task_status: trio.TaskStatus[Backend]) -> None:
            prefix = f"/conformance/{request.node.name}/{next(_prefixes)}"
            async with open_etcd_registry(client, prefix=prefix, **kwargs) as registry:
                task_status.started(registry)
                await trio.sleep_forever()

        async def make(**kwargs: Any) -> Backend:
            kwargs.setdefault("indexes", INDEXES)
            backend: Backend = await nursery.start(hold, kwargs)
            return backend

        yield make
        nursery.cancel_scope.cancel()


BACKENDS = {"memory": "_memory", "etcd": "_etcd"}


@pytest.fixture(
    params=[
        pytest.param("memory"),
        pytest.param("etcd", marks=pytest.mark.etcd),
    ]
)
def make(request: pytest.FixtureRequest) -> Make:
    factory: Make = request.getfixturevalue(BACKENDS[request.param])
    return factory


@pytest.fixture
def autojump_clock(request: pytest.FixtureRequest) -> trio.testing.MockClock:
    """Virtual time for the in-memory backend; real time (rate 1) against a real etcd."""
    if request.node.callspec.params.get("make") == "etcd":
        return trio.testing.MockClock(rate=1.0)
    return trio.testing.MockClock(autojump_threshold=0)


async def test_register_lookup_and_scope_end(make: Make) -> None:
    reg = await make()
    async with reg.register("w1", {"node": "a"}, value="mbox") as entry:
        assert reg.lookup("w1") == entry
        assert entry.value == "mbox" and entry.meta["node"] == "a"
        assert reg.get(entry.id) == entry
        assert len(reg) == 1
    assert reg.lookup("w1") is None
    assert reg.get(entry.id) is None
    assert len(reg) == 0


async def test_entry_removed_when_the_owner_raises_or_is_cancelled(
    make: Make, autojump_clock: trio.testing.MockClock
) -> None:
    reg = await make()
    with pytest.raises(ZeroDivisionError):
        async with reg.register("w1", {}):
            1 / 0  # noqa: B018
    assert reg.lookup("w1") is None
    with trio.move_on_after(1):
        async with reg.register("w2", {}):
            await trio.sleep_forever()
    assert reg.lookup("w2") is None


async def test_entry_dies_with_its_task(make: Make) -> None:
    reg = await make()

    entered = trio.Event()

    async def owner() -> None:
        async with reg.register("task-bound", {}):
            entered.set()
            await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(owner)
        await entered.wait()
        assert reg.lookup("task-bound") is not None
        nursery.cancel_scope.cancel()
    assert reg.lookup("task-bound") is None


async def test_cancelled_before_entering_registers_nothing(make: Make) -> None:
    reg = await make()
    with trio.CancelScope() as scope:
        scope.cancel()
        async with reg.register("never", {}):
            raise AssertionError("entered a cancelled registration")
    assert reg.lookup("never") is None and len(reg) == 0


async def test_unique_refuses_a_duplicate_key(make: Make) -> None:
    reg = await make(keys="unique")
    async with reg.register("k", {}):
        with pytest.raises(DuplicateKeyError, match="'k' is already registered"):
            async with reg.register("k", {}):
                pass
        assert len(reg) == 1


async def test_duplicate_registry_keeps_every_entry_in_order(make: Make) -> None:
    reg = await make(keys="duplicate")
    async with reg.register("group", {"node": "a"}) as first:
        async with reg.register("group", {"node": "b"}) as second:
            assert reg.lookup_all("group") == (first, second)
            assert reg.lookup("group") == first
        assert reg.lookup_all("group") == (first,)
    assert reg.lookup_all("group") == ()


async def test_bad_keys_and_meta_are_refused(make: Make) -> None:
    reg = await make()
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


async def test_queries_all_of_any_of_where_and_pages(make: Make) -> None:
    reg = await make()
    items = [
        (f"w{i}", {"node": f"n{i % 3}", "caps": ["gpu"] if i % 2 else ["cpu"], "health": "ok"})
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


async def test_update_moves_index_values(make: Make) -> None:
    reg = await make()
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


async def test_unregister_is_idempotent(make: Make) -> None:
    reg = await make()
    async with reg.register("w", {"node": "a"}) as entry:
        assert await reg.unregister(entry) is True
        assert await reg.unregister(entry) is False
        assert reg.select({"node": "a"}).entries == ()
    assert len(reg) == 0


async def test_batches_are_all_or_nothing_and_limited(make: Make) -> None:
    reg = await make(batch_limit=3)
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
    make: Make,
) -> None:
    reg = await make()
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
    make: Make, autojump_clock: trio.testing.MockClock
) -> None:
    reg = await make()
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
