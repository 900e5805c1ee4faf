"""Stateful test: the real Registry against a reference model, with injected cancellations.

The registry lives in one guest-mode trio run (``tests/trio_guest.py``). Owners are tasks
holding ``async with registry.register(...)``; rules start owners (cancelled at an
arbitrary checkpoint of entering, drawn by Hypothesis), end them normally, cancel them or
crash them; register and unregister without owners; update metadata (async, also under
injected cancellation); register batches; drain a small watch.

The model is a dict id -> (key, meta). Invariants, after every step:

* ``IndexesAgree``: for every index value, the entries ``select`` returns are exactly the
  model's, and the registry holds no posting list the model does not (no stale index);
* ``LookupsAgree``: ``lookup``/``lookup_all`` answer as the model;
* ``NoEntryOutlivesItsOwner``: an owner that has left its block has no entry.

Two broken registries reproduce the original flaws: one leaves a multi-valued index stale
after unregister, one inserts the entry before its cancellable checkpoint (the
register-then-monitor race). ``test_*_is_caught`` run fresh random searches for each.
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Mapping
from typing import Any

import pytest
import trio
import trio.lowlevel
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    rule,
)
from trio_guest import GuestRun, Handle

from trio_foundation.registry import (
    DuplicateKeyError,
    Entry,
    Index,
    Registered,
    Registry,
    Resync,
    Unregistered,
    Updated,
)
from trio_foundation.registry._registry import _ScopedRegistration
from trio_foundation.verify.catch_rate import caught_by_fresh_search, measure_catch_rate

KEYS = st.sampled_from(["a", "b", "c", "d", "e"])
NODES = st.sampled_from(["n1", "n2"])
CAPS = st.frozensets(st.sampled_from(["x", "y", "z"]), max_size=3)
METAS = st.fixed_dictionaries(
    {"node": NODES, "caps": CAPS, "health": st.sampled_from(["ok", "bad"])}
)
CANCEL_AFTER = st.one_of(st.none(), st.integers(0, 3))
INDEXES = (Index("node"), Index("caps", multi=True), Index("health"))
WATCH_CAPACITY = 3


class Crash(Exception):
    pass


def _postings(meta: Mapping[str, Any]) -> set[tuple[str, Hashable]]:
    return {("node", meta["node"]), ("health", meta["health"])} | {
        ("caps", c) for c in meta["caps"]
    }


class RegistryMachine(RuleBasedStateMachine):
    registry_factory: Any = Registry

    owners = Bundle("owners")
    entries = Bundle("entries")

    def __init__(self) -> None:
        super().__init__()
        self.guest = GuestRun()
        self.model: dict[int, tuple[Hashable, dict[str, Any]]] = {}
        self.expected_changes: list[object] = []
        self.live_owners: list[Handle] = []

    @initialize(keys=st.sampled_from(["unique", "duplicate"]))
    def setup(self, keys: str) -> None:
        self.registry = self.registry_factory(keys=keys, indexes=INDEXES, batch_limit=3)
        self.watch = self.registry.open_watch(WATCH_CAPACITY)

    def teardown(self) -> None:
        self.guest.close()

    def _expect(self, change: object) -> None:
        self.expected_changes.append(change)

    def _model_has_key(self, key: Hashable) -> bool:
        return any(k == key for k, _ in self.model.values())

    # ------------------------------------------------------------------------ owners

    @rule(target=owners, key=KEYS, meta=METAS, cancel_after=CANCEL_AFTER)
    def OwnerRegisters(self, key: str, meta: dict[str, Any], cancel_after: int | None) -> Handle:
        registry = self.registry

        async def owner(handle: Handle) -> None:
            handle.data["release"] = release = trio.Event()
            try:
                async with registry.register(key, meta) as entry:
                    handle.data["entry"] = entry
                    await release.wait()
                    if handle.data.get("crash"):
                        raise Crash
            except Crash:
                pass

        duplicate = self.registry.unique and self._model_has_key(key)
        handle = self.guest.start(owner, cancel_after=cancel_after)
        entry = handle.data.get("entry")
        if duplicate:
            assert isinstance(handle.error, DuplicateKeyError) or handle.cancelled
            assert entry is None
        elif entry is not None and not handle.done:
            self.model[entry.id] = (key, dict(meta))
            self._expect(Registered(entry))
        elif entry is not None:
            # registered, then cancelled before the test could see it: must be gone again
            self._expect(Registered(entry))
            self._expect(Unregistered(entry))
        else:
            assert handle.done and (handle.cancelled or handle.error is not None)
            assert handle.error is None or isinstance(handle.error, DuplicateKeyError)
        self.live_owners.append(handle)
        return handle

    def _finish(self, handle: Handle, how: str) -> None:
        if handle.done:
            return
        if how == "cancel":
            assert handle.scope is not None
            self.guest.run_sync(handle.scope.cancel)
        else:
            handle.data["crash"] = how == "crash"
            self.guest.run_sync(handle.data["release"].set)
        assert handle.done
        entry = handle.data.get("entry")
        if entry is not None and entry.id in self.model:
            del self.model[entry.id]
            self._expect(Unregistered(self.registry_entry_for_model(entry)))

    def registry_entry_for_model(self, entry: Entry) -> Entry:
        return self._last_seen.get(entry.id, entry)

    @property
    def _last_seen(self) -> dict[int, Entry]:
        return self.__dict__.setdefault("_seen", {})

    @rule(handle=consumes(owners), how=st.sampled_from(["return", "crash", "cancel"]))
    def OwnerExits(self, handle: Handle, how: str) -> None:
        self._finish(handle, how)

    # ----------------------------------------------------------------- direct writes

    @rule(target=entries, key=KEYS, meta=METAS)
    def RegisterNowait(self, key: str, meta: dict[str, Any]) -> int:
        if self.registry.unique and self._model_has_key(key):
            with pytest.raises(DuplicateKeyError):
                self.registry.register_nowait(key, meta)
            return -1
        entry = self.registry.register_nowait(key, meta)
        self.model[entry.id] = (key, dict(meta))
        self._expect(Registered(entry))
        return entry.id

    @rule(
        items=st.lists(st.tuples(KEYS, METAS), min_size=1, max_size=4),
    )
    def RegisterBatch(self, items: list[tuple[str, dict[str, Any]]]) -> None:
        keys = [k for k, _ in items]
        too_big = len(items) > self.registry.batch_limit
        dup = self.registry.unique and (
            len(set(keys)) < len(keys) or any(self._model_has_key(k) for k in keys)
        )
        before = len(self.registry)
        if too_big or dup:
            with pytest.raises(ValueError):
                self.registry.register_many_nowait(items)
            assert len(self.registry) == before
            return
        for entry, (key, meta) in zip(
            self.registry.register_many_nowait(items), items, strict=True
        ):
            self.model[entry.id] = (key, dict(meta))
            self._expect(Registered(entry))

    @rule(entry_id=consumes(entries))
    def Unregister(self, entry_id: int) -> None:
        if entry_id < 0:
            return
        old = self.registry.get(entry_id)
        removed = self.registry.unregister_nowait(entry_id)
        assert removed == (entry_id in self.model)
        if removed:
            del self.model[entry_id]
            self._expect(Unregistered(old))

    @rule(pick=st.integers(0, 50), meta=METAS, merge=st.booleans(), cancel_after=CANCEL_AFTER)
    def UpdateMeta(
        self, pick: int, meta: dict[str, Any], merge: bool, cancel_after: int | None
    ) -> None:
        if not self.model:
            return
        entry_id = sorted(self.model)[pick % len(self.model)]
        registry = self.registry
        old = registry.get(entry_id)

        async def update(handle: Handle) -> Entry:
            return await registry.update(entry_id, meta, merge=merge)

        handle = self.guest.start(update, cancel_after=cancel_after)
        assert handle.done and handle.error is None
        if handle.cancelled:
            assert registry.get(entry_id) == old
            return
        key, current = self.model[entry_id]
        self.model[entry_id] = (key, {**current, **meta} if merge else dict(meta))
        self._expect(Updated(old, handle.result))

    @rule()
    def DrainWatch(self) -> None:
        got = []
        while self.watch.pending():
            got.append(self.watch.receive_nowait())
        expected, self.expected_changes = self.expected_changes, []
        if len(expected) > WATCH_CAPACITY:
            assert got == [Resync(len(expected))]
        else:
            assert got == expected

    # -------------------------------------------------------------------- invariants

    @invariant()
    def IndexesAgree(self) -> None:
        if not hasattr(self, "registry"):
            return
        want: dict[tuple[str, Hashable], set[int]] = {}
        for entry_id, (_, meta) in self.model.items():
            for pair in _postings(meta):
                want.setdefault(pair, set()).add(entry_id)
        for (name, value), ids in want.items():
            try:
                got = {e.id for e in self.registry.select_all({name: value}, page_size=2)}
            except KeyError as missing:  # a posting that names a removed entry
                raise AssertionError(
                    f"IndexesAgree: select_all({name}={value!r}) met entry {missing} not held"
                ) from missing
            assert got == ids, f"IndexesAgree: select_all({name}={value!r}) = {got}, want {ids}"
        postings = self.registry.statistics().postings
        assert postings == len(want), f"IndexesAgree: {postings} postings, want {len(want)}"
        for name, value in [("caps", "x"), ("node", "n1"), ("health", "bad")]:
            got = {e.id for e in self.registry.select({name: value}, limit=1000).entries}
            assert got == want.get((name, value), set())
        any_got = {
            e.id
            for e in self.registry.select(any_of=[("caps", "x"), ("caps", "y")], limit=1000).entries
        }
        assert any_got == want.get(("caps", "x"), set()) | want.get(("caps", "y"), set())

    @invariant()
    def LookupsAgree(self) -> None:
        if not hasattr(self, "registry"):
            return
        assert len(self.registry) == len(self.model)
        for key in "abcde":
            ids = [i for i, (k, _) in sorted(self.model.items()) if k == key]
            got = self.registry.lookup_all(key)
            assert [e.id for e in got] == ids
            first = self.registry.lookup(key)
            assert (first.id if first else None) == (ids[0] if ids else None)
            for entry in got:
                assert dict(entry.meta) == self.model[entry.id][1]
                self._last_seen[entry.id] = entry

    @invariant()
    def NoEntryOutlivesItsOwner(self) -> None:
        for handle in self.live_owners:
            entry = handle.data.get("entry")
            if handle.done and entry is not None:
                assert self.registry.get(entry.id) is None, "entry outlived its owner"


TestRegistryMachine = RegistryMachine.TestCase
TestRegistryMachine.settings = settings(
    max_examples=settings().max_examples,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


# ------------------------------------------------------------------- broken variants


class StaleIndexRegistry(Registry):  # type: ignore[misc]
    """Unregister leaves every value of a multi-valued index but the first in place."""

    def _unindex(self, entry_id: int, placed: Any) -> None:
        placed = list(placed)
        if self._entries.get(entry_id) is None:  # called by unregister: entry already popped
            seen: set[str] = set()
            kept = []
            for name, value in placed:
                if name == "caps" and name in seen:
                    continue
                seen.add(name)
                kept.append((name, value))
            placed = kept
        super()._unindex(entry_id, placed)


class _RaceyScoped(_ScopedRegistration):  # type: ignore[misc]
    async def __aenter__(self) -> Entry:
        self._entry = self._registry.register_nowait(self._key, self._meta, value=self._value)
        await trio.lowlevel.checkpoint()  # the "monitor" step, after the entry exists
        return self._entry


class OutlivingRegistry(Registry):  # type: ignore[misc]
    """Registers, then reaches a cancellable checkpoint: a cancel there leaks the entry."""

    def register(self, key: Hashable, meta: Any = None, *, value: object = None) -> Any:
        return _RaceyScoped(self, key, meta, value)


# fresh searches in the slow catch-rate test (`CATCH_RUNS=200 pytest -m slow ...`)
CATCH_RUNS = int(os.environ.get("CATCH_RUNS", "20"))
SEARCH = settings(
    max_examples=200,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)


def _finds_failure(factory: type[Registry]) -> bool:
    """One fresh search; True if the indexes disagree with the model's live entries."""
    machine = type("BrokenMachine", (RegistryMachine,), {"registry_factory": factory})
    return caught_by_fresh_search(machine, SEARCH, ("IndexesAgree",), name=factory.__name__)


@pytest.mark.parametrize("factory", [StaleIndexRegistry, OutlivingRegistry])
def test_broken_registry_is_caught(factory: type[Registry]) -> None:
    assert _finds_failure(factory)


@pytest.mark.slow
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("factory", [StaleIndexRegistry, OutlivingRegistry])
def test_broken_registry_catch_rate(factory: type[Registry]) -> None:
    """Catch rate over ``CATCH_RUNS`` fresh searches (recorded in docs/registry.md)."""
    rate = measure_catch_rate(lambda: _finds_failure(factory), CATCH_RUNS)
    print(f"\n{factory.__name__}: {rate}")
    assert rate.rate >= 0.95
