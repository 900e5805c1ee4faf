"""The in-memory registry: entries by key, secondary indexes, scope-bound registrations.

Theory of operation. Every registration is an :class:`Entry` with a registry-wide,
increasing ``id``. Four maps hold the state, and every write keeps them in step
synchronously (between two checkpoints), so no other task ever sees them disagree:

* ``_entries``: id -> entry, in id order (ids only grow and an update keeps its slot);
* ``_by_key``: key -> {id: None}, the key's entries in registration order, and
  ``_first``: key -> its oldest entry (the answer to :meth:`Registry.lookup`);
* ``_postings``: index name -> value -> {id: None}, the posting list of each index value;
* ``_placed``: id -> the (index, value) pairs the entry was put under.

Invariant: an id is in a posting list exactly when it is in ``_placed`` under that pair.
Removal therefore visits only the entry's own pairs — O(its number of index values),
independent of how many entries the registry or any posting list holds — which is the
fix for the original platform's unregister that scanned every secondary index. Empty
posting lists and key buckets are deleted, so memory follows the live entries only.

Scope-bound registrations (``async with registry.register(...)``) insert and remove
synchronously: entering checks for cancellation *before* inserting and then takes a
cancel-shielded schedule point, so a cancelled ``__aenter__`` never leaves an entry behind,
and ``__aexit__`` removes the entry without a checkpoint, so an entry can never outlive the
block that owns it — there is no separate monitor to race with.
"""

from __future__ import annotations

import types
from collections import deque
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Literal, NamedTuple, Protocol, TypeAlias, final

import attrs
import trio
import trio.lowlevel

from ._errors import BatchTooLargeError, DuplicateKeyError, RegistryFullError

__all__ = [
    "Backend",
    "Change",
    "Entry",
    "Index",
    "Page",
    "Registered",
    "Registry",
    "RegistryStatistics",
    "Resync",
    "Unregistered",
    "Updated",
    "Watch",
]

_MISSING: Any = object()
_COLLECTIONS = (set, frozenset, list, tuple)


def _check_hashable(value: object, what: str) -> None:
    try:
        hash(value)
    except TypeError:
        raise TypeError(f"{what} must be hashable, got {type(value).__name__}") from None


def _freeze_meta(meta: Mapping[str, object] | None) -> Mapping[str, object]:
    if meta is None:
        return types.MappingProxyType({})
    if not isinstance(meta, Mapping):
        raise TypeError(f"metadata must be a mapping, got {type(meta).__name__}")
    return types.MappingProxyType(dict(meta))


class Entry(NamedTuple):
    """One registration: immutable; an update produces a new ``Entry`` with the same id.

    A named tuple (cheap to make on the hot path); compare entries with ``==``. An entry
    is not hashable (its metadata is a mapping); use its ``id`` as a dict key.

    Attributes:
        id: registry-wide id, increasing in registration order.
        key: the key it is registered under.
        meta: its metadata (a read-only mapping).
        value: what the key names (a mailbox, an address, ...); ``None`` if not given.
    """

    id: int
    key: Hashable
    meta: Mapping[str, object]
    value: object = None


@final
@attrs.frozen
class Index:
    """A secondary index over entries' metadata.

    Attributes:
        name: the index's name, used in queries.
        multi: if true the indexed value is a collection (set, list, tuple, frozenset)
            and the entry is indexed under each element (e.g. a set of capabilities).
        extract: computes the indexed value from the metadata; by default
            ``meta[name]``. An entry whose metadata lacks the value is not in the index.
    """

    name: str
    multi: bool = False
    extract: Callable[[Mapping[str, object]], object] | None = attrs.field(default=None, eq=False)

    def values_of(self, meta: Mapping[str, object]) -> tuple[Hashable, ...]:
        """The index values ``meta`` is filed under (empty if it lacks the field).

        Raises:
            TypeError: a value is not hashable, or a multi-valued field is not a collection.
        """
        raw = meta.get(self.name, _MISSING) if self.extract is None else self.extract(meta)
        if raw is _MISSING or raw is None:
            return ()
        if self.multi:
            if not isinstance(raw, _COLLECTIONS):
                raise TypeError(
                    f"index {self.name!r} is multi-valued: expected a set, frozenset, list"
                    f" or tuple, got {type(raw).__name__}"
                )
            try:
                return tuple(dict.fromkeys(raw))
            except TypeError:
                for value in raw:
                    _check_hashable(value, f"value of index {self.name!r}")
                raise  # pragma: no cover - some value above was unhashable
        try:
            hash(raw)
        except TypeError:
            raise TypeError(
                f"value of index {self.name!r} must be hashable, got {type(raw).__name__}"
            ) from None
        return (raw,)


@final
@attrs.frozen
class Page:
    """One page of a query's answer.

    Attributes:
        entries: the matching entries, in id order, at most ``limit`` of them.
        next_after: pass as ``after=`` to get the next page; ``None`` on the last page.
    """

    entries: tuple[Entry, ...]
    next_after: int | None


@final
@attrs.frozen
class Registered:
    """A watch event: ``entry`` was registered."""

    entry: Entry


@final
@attrs.frozen
class Unregistered:
    """A watch event: ``entry`` was removed (unregistered, or its scope ended)."""

    entry: Entry


@final
@attrs.frozen
class Updated:
    """A watch event: an entry's metadata changed from ``old`` to ``new``."""

    old: Entry
    new: Entry


@final
@attrs.frozen
class Resync:
    """A watch event: the watcher fell behind and ``missed`` events were discarded.

    Re-read the registry (``select``/``lookup``) before your next checkpoint: from then on
    the watch delivers every change again.
    """

    missed: int


Change: TypeAlias = Registered | Unregistered | Updated | Resync


@final
class Watch:
    """A bounded subscription to a registry's changes; use it as ``with registry.watch()``.

    At most ``capacity`` events are buffered. When one more arrives the buffer is emptied
    and the next :meth:`receive` returns a single :class:`Resync` carrying the number of
    events discarded; events are then dropped (and counted) until that marker is taken.
    Memory is therefore bounded by ``capacity`` whatever the watcher's speed.
    """

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._buffer: deque[Change] = deque()
        self._missed = 0
        self._overflowed = False
        self._closed = False
        self._lot = trio.lowlevel.ParkingLot()

    @property
    def capacity(self) -> int:
        """The most events buffered."""
        return self._capacity

    def pending(self) -> int:
        """How many events are buffered (the resync marker counts as one)."""
        return len(self._buffer) + (1 if self._overflowed else 0)

    def _push(self, change: Change) -> None:
        if self._closed:
            return
        if self._overflowed:
            self._missed += 1
        elif len(self._buffer) >= self._capacity:
            self._missed = len(self._buffer) + 1
            self._buffer.clear()
            self._overflowed = True
        else:
            self._buffer.append(change)
        self._lot.unpark()

    def _close(self) -> None:
        self._closed = True
        self._buffer.clear()
        self._lot.unpark_all()

    def receive_nowait(self) -> Change:
        """The next change, without waiting.

        Raises:
            trio.WouldBlock: nothing is pending.
            trio.ClosedResourceError: the watch was closed (its ``with`` block ended).
        """
        if self._overflowed:
            self._overflowed = False
            missed, self._missed = self._missed, 0
            return Resync(missed)
        if self._buffer:
            return self._buffer.popleft()
        if self._closed:
            raise trio.ClosedResourceError("this registry watch is closed")
        raise trio.WouldBlock

    async def receive(self) -> Change:
        """Wait for the next change.

        A checkpoint. If cancelled, no event was taken.

        Raises:
            trio.ClosedResourceError: the watch was closed.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        while True:
            try:
                change = self.receive_nowait()
            except trio.WouldBlock:
                await self._lot.park()
                continue
            await trio.lowlevel.cancel_shielded_checkpoint()
            return change

    def __aiter__(self) -> Watch:
        return self

    async def __anext__(self) -> Change:
        try:
            return await self.receive()
        except trio.ClosedResourceError:
            raise StopAsyncIteration from None


class Backend(Protocol):
    """What a registry backend provides; the conformance suite tests exactly this.

    The in-memory :class:`Registry` is one; a backend over etcd can be another (its
    reads answered from a local view kept current by a watch). Reads are synchronous;
    writes are checkpoints; registrations are scope-bound context managers.
    """

    def register(
        self, key: Hashable, meta: Mapping[str, object] | None = None, *, value: object = None
    ) -> AbstractAsyncContextManager[Entry]: ...

    def register_many(
        self, items: Sequence[tuple[Hashable, Mapping[str, object] | None]]
    ) -> AbstractAsyncContextManager[tuple[Entry, ...]]: ...

    async def unregister(self, entry: Entry | int) -> bool: ...

    async def update(
        self, entry: Entry | int, meta: Mapping[str, object], *, merge: bool = False
    ) -> Entry: ...

    def lookup(self, key: Hashable) -> Entry | None: ...

    def lookup_all(self, key: Hashable) -> tuple[Entry, ...]: ...

    def get(self, entry_id: int) -> Entry | None: ...

    def select(
        self,
        all_of: Mapping[str, Hashable] | None = None,
        any_of: Iterable[tuple[str, Hashable]] | None = None,
        where: Callable[[Entry], bool] | None = None,
        *,
        limit: int = 100,
        after: int | None = None,
    ) -> Page: ...

    def watch(self, capacity: int = 1000) -> AbstractAsyncContextManager[Watch]: ...

    def __len__(self) -> int: ...


@final
class _ScopedRegistration:
    """``async with registry.register(...)``: the entry lives exactly as long as the block."""

    __slots__ = ("_entry", "_key", "_meta", "_registry", "_value")

    def __init__(
        self, registry: Registry, key: Hashable, meta: Mapping[str, object] | None, value: object
    ) -> None:
        self._registry = registry
        self._key = key
        self._meta = meta
        self._value = value
        self._entry: Entry | None = None

    async def __aenter__(self) -> Entry:
        if self._entry is not None:
            raise RuntimeError("this registration context was already entered")
        await trio.lowlevel.checkpoint_if_cancelled()
        self._entry = self._registry.register_nowait(self._key, self._meta, value=self._value)
        await trio.lowlevel.cancel_shielded_checkpoint()
        return self._entry

    async def __aexit__(self, *exc_info: object) -> None:
        if self._entry is not None:
            self._registry.unregister_nowait(self._entry.id)


@final
class _ScopedBatch:
    __slots__ = ("_entries", "_items", "_registry")

    def __init__(
        self, registry: Registry, items: Sequence[tuple[Hashable, Mapping[str, object] | None]]
    ) -> None:
        self._registry = registry
        self._items = items
        self._entries: tuple[Entry, ...] | None = None

    async def __aenter__(self) -> tuple[Entry, ...]:
        if self._entries is not None:
            raise RuntimeError("this registration context was already entered")
        await trio.lowlevel.checkpoint_if_cancelled()
        self._entries = self._registry.register_many_nowait(self._items)
        await trio.lowlevel.cancel_shielded_checkpoint()
        return self._entries

    async def __aexit__(self, *exc_info: object) -> None:
        for entry in self._entries or ():
            self._registry.unregister_nowait(entry.id)


@final
class _ScopedWatch:
    __slots__ = ("_capacity", "_registry", "_watch")

    def __init__(self, registry: Registry, capacity: int) -> None:
        self._registry = registry
        self._capacity = capacity
        self._watch: Watch | None = None

    async def __aenter__(self) -> Watch:
        await trio.lowlevel.checkpoint_if_cancelled()
        self._watch = self._registry.open_watch(self._capacity)
        await trio.lowlevel.cancel_shielded_checkpoint()
        return self._watch

    async def __aexit__(self, *exc_info: object) -> None:
        if self._watch is not None:
            self._registry.close_watch(self._watch)


@final
@attrs.frozen
class RegistryStatistics:
    """A snapshot of a registry's size.

    Attributes:
        entries: live entries.
        keys: distinct keys.
        postings: (index, value) posting lists held.
        watchers: open watches.
    """

    entries: int
    keys: int
    postings: int
    watchers: int


@final
class Registry:
    """An in-memory registry of entries by key, with secondary indexes and watches.

    Args:
        keys: ``"unique"`` (a key names at most one entry; registering it again raises
            :class:`DuplicateKeyError`) or ``"duplicate"`` (a key may name many entries,
            as for a process group).
        indexes: the secondary indexes kept over the entries' metadata.
        max_entries: the most live entries (registering beyond raises
            :class:`RegistryFullError`).
        batch_limit: the most entries one batch registration may add.
        max_watchers: the most open watches.

    Raises:
        ValueError: a bound is not positive, ``keys`` is unknown, or two indexes share a name.
    """

    def __init__(
        self,
        *,
        keys: Literal["unique", "duplicate"] = "unique",
        indexes: Sequence[Index] = (),
        max_entries: int = 1_000_000,
        batch_limit: int = 1000,
        max_watchers: int = 1000,
    ) -> None:
        if keys not in ("unique", "duplicate"):
            raise ValueError(f"keys must be 'unique' or 'duplicate', got {keys!r}")
        for name, bound in (
            ("max_entries", max_entries),
            ("batch_limit", batch_limit),
            ("max_watchers", max_watchers),
        ):
            if not isinstance(bound, int) or bound <= 0:
                raise ValueError(f"{name} must be a positive int, got {bound!r}")
        names = [index.name for index in indexes]
        if len(set(names)) != len(names):
            raise ValueError(f"index names must be distinct, got {names}")
        self._unique = keys == "unique"
        self._indexes: tuple[Index, ...] = tuple(indexes)
        self._index_names = frozenset(names)
        self._max_entries = max_entries
        self._batch_limit = batch_limit
        self._max_watchers = max_watchers
        self._next_id = 1
        self._entries: dict[int, Entry] = {}
        self._by_key: dict[Hashable, dict[int, None]] = {}
        self._first: dict[Hashable, Entry] = {}
        self._postings: dict[str, dict[Hashable, dict[int, None]]] = {n: {} for n in names}
        self._placed: dict[int, tuple[tuple[str, Hashable], ...]] = {}
        self._watches: dict[Watch, None] = {}

    # ------------------------------------------------------------------ properties

    @property
    def unique(self) -> bool:
        """Whether a key names at most one entry."""
        return self._unique

    @property
    def indexes(self) -> tuple[Index, ...]:
        """The secondary indexes."""
        return self._indexes

    @property
    def batch_limit(self) -> int:
        """The most entries one batch registration may add."""
        return self._batch_limit

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[Entry]:
        return iter(tuple(self._entries.values()))

    def statistics(self) -> RegistryStatistics:
        """A frozen snapshot of the registry's size."""
        return RegistryStatistics(
            entries=len(self._entries),
            keys=len(self._by_key),
            postings=sum(len(p) for p in self._postings.values()),
            watchers=len(self._watches),
        )

    # --------------------------------------------------------------------- writes

    def _placements(self, meta: Mapping[str, object]) -> tuple[tuple[str, Hashable], ...]:
        placed: list[tuple[str, Hashable]] = []
        for index in self._indexes:
            name = index.name
            for value in index.values_of(meta):
                placed.append((name, value))
        return tuple(placed)

    def _insert(self, entry: Entry, placed: tuple[tuple[str, Hashable], ...]) -> None:
        entry_id = entry.id
        self._entries[entry_id] = entry
        bucket = self._by_key.get(entry.key)
        if bucket is None:
            self._by_key[entry.key] = {entry_id: None}
            self._first[entry.key] = entry
        else:
            bucket[entry_id] = None
        self._placed[entry_id] = placed
        postings = self._postings
        for name, value in placed:
            index = postings[name]
            ids = index.get(value)
            if ids is None:
                index[value] = {entry_id: None}
            else:
                ids[entry_id] = None

    def _unindex(self, entry_id: int, placed: Iterable[tuple[str, Hashable]]) -> None:
        postings = self._postings
        for name, value in placed:
            index = postings[name]
            ids = index[value]
            del ids[entry_id]
            if not ids:
                del index[value]

    def _notify(self, change: Change) -> None:
        for watch in self._watches:
            watch._push(change)

    def register_nowait(
        self, key: Hashable, meta: Mapping[str, object] | None = None, *, value: object = None
    ) -> Entry:
        """Register ``key`` with ``meta``; the caller must :meth:`unregister_nowait` it.

        Prefer ``async with registry.register(...)``, which cannot leak the entry.

        Returns:
            The new entry.

        Raises:
            TypeError: ``key`` or an index value is not hashable, or ``meta`` is not a mapping.
            DuplicateKeyError: the registry is unique and ``key`` is registered.
            RegistryFullError: the registry holds ``max_entries`` entries.
        """
        _check_hashable(key, "registry key")
        frozen = _freeze_meta(meta)
        placed = self._placements(frozen)
        if self._unique and key in self._by_key:
            raise DuplicateKeyError(key)
        if len(self._entries) >= self._max_entries:
            raise RegistryFullError(self._max_entries, 1)
        entry = Entry(self._next_id, key, frozen, value)
        self._next_id += 1
        self._insert(entry, placed)
        if self._watches:
            self._notify(Registered(entry))
        return entry

    def register(
        self, key: Hashable, meta: Mapping[str, object] | None = None, *, value: object = None
    ) -> AbstractAsyncContextManager[Entry]:
        """Register ``key`` for the duration of an ``async with`` block.

        ``async with registry.register("worker-1", {"node": "a"}) as entry:`` — the entry
        is removed when the block exits, however it exits (return, exception,
        cancellation), so it dies with the task or scope that owns it.

        Entering is a checkpoint: if cancelled there, nothing was registered. Exiting
        removes the entry without a checkpoint (it cannot be interrupted).

        Raises:
            TypeError, DuplicateKeyError, RegistryFullError: as :meth:`register_nowait`,
                on entering.
        """
        return _ScopedRegistration(self, key, meta, value)

    def register_many_nowait(
        self, items: Sequence[tuple[Hashable, Mapping[str, object] | None]]
    ) -> tuple[Entry, ...]:
        """Register a batch atomically: all entries or none.

        Args:
            items: ``(key, meta)`` pairs, at most ``batch_limit`` of them.

        Returns:
            The new entries, in the order of ``items``.

        Raises:
            BatchTooLargeError: more than ``batch_limit`` items.
            TypeError: a key or index value is not hashable, or a meta is not a mapping.
            DuplicateKeyError: (unique registry) a key is registered, or named twice.
            RegistryFullError: the batch would exceed ``max_entries``.
        """
        items = list(items)
        if len(items) > self._batch_limit:
            raise BatchTooLargeError(len(items), self._batch_limit)
        prepared: list[tuple[Hashable, Mapping[str, object], tuple[tuple[str, Hashable], ...]]]
        prepared = []
        seen: set[Hashable] = set()
        for item in items:
            if not isinstance(item, tuple) or len(item) != 2:
                raise TypeError(f"batch items must be (key, meta) pairs, got {item!r}")
            key, meta = item
            _check_hashable(key, "registry key")
            frozen = _freeze_meta(meta)
            if self._unique and (key in self._by_key or key in seen):
                raise DuplicateKeyError(key)
            seen.add(key)
            prepared.append((key, frozen, self._placements(frozen)))
        if len(self._entries) + len(prepared) > self._max_entries:
            raise RegistryFullError(self._max_entries, len(prepared))
        entries = []
        for key, frozen, placed in prepared:
            entry = Entry(self._next_id, key, frozen)
            self._next_id += 1
            self._insert(entry, placed)
            entries.append(entry)
            if self._watches:
                self._notify(Registered(entry))
        return tuple(entries)

    def register_many(
        self, items: Sequence[tuple[Hashable, Mapping[str, object] | None]]
    ) -> AbstractAsyncContextManager[tuple[Entry, ...]]:
        """Register a batch for the duration of an ``async with`` block (all or none).

        Entering is a checkpoint (nothing registered if cancelled there); exiting removes
        every entry of the batch still registered, without a checkpoint.

        Raises:
            As :meth:`register_many_nowait`, on entering.
        """
        return _ScopedBatch(self, items)

    def unregister_nowait(self, entry: Entry | int) -> bool:
        """Remove an entry, in time independent of the registry's and indexes' sizes.

        Returns:
            Whether the entry was registered (unregistering twice is harmless).
        """
        entry_id = entry if isinstance(entry, int) else entry.id
        removed = self._entries.pop(entry_id, None)
        if removed is None:
            return False
        key = removed.key
        bucket = self._by_key[key]
        del bucket[entry_id]
        if not bucket:
            del self._by_key[key]
            del self._first[key]
        elif self._first[key].id == entry_id:
            self._first[key] = self._entries[next(iter(bucket))]
        self._unindex(entry_id, self._placed.pop(entry_id))
        if self._watches:
            self._notify(Unregistered(removed))
        return True

    async def unregister(self, entry: Entry | int) -> bool:
        """Remove an entry. A checkpoint; if cancelled, the entry was not removed.

        Returns:
            Whether the entry was registered.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        removed = self.unregister_nowait(entry)
        await trio.lowlevel.cancel_shielded_checkpoint()
        return removed

    def update_nowait(
        self, entry: Entry | int, meta: Mapping[str, object], *, merge: bool = False
    ) -> Entry:
        """Replace (or, with ``merge=True``, update) an entry's metadata.

        Only the index values that changed are moved.

        Returns:
            The updated entry (same id and key).

        Raises:
            KeyError: the entry is not registered.
            TypeError: ``meta`` is not a mapping, or an index value is not hashable.
        """
        entry_id = entry if isinstance(entry, int) else entry.id
        old = self._entries.get(entry_id)
        if old is None:
            raise KeyError(f"entry {entry_id} is not registered")
        frozen = _freeze_meta({**old.meta, **meta} if merge else meta)
        placed = self._placements(frozen)
        old_placed = self._placed[entry_id]
        new = old._replace(meta=frozen)
        if placed != old_placed:
            keep = set(placed)
            self._unindex(entry_id, [pair for pair in old_placed if pair not in keep])
            before = set(old_placed)
            for name, value in placed:
                if (name, value) not in before:
                    self._postings[name].setdefault(value, {})[entry_id] = None
            self._placed[entry_id] = placed
        self._entries[entry_id] = new
        if self._first[old.key].id == entry_id:
            self._first[old.key] = new
        if self._watches:
            self._notify(Updated(old, new))
        return new

    async def update(
        self, entry: Entry | int, meta: Mapping[str, object], *, merge: bool = False
    ) -> Entry:
        """Replace or merge an entry's metadata. A checkpoint; if cancelled, unchanged.

        Raises:
            As :meth:`update_nowait`.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        new = self.update_nowait(entry, meta, merge=merge)
        await trio.lowlevel.cancel_shielded_checkpoint()
        return new

    # ---------------------------------------------------------------------- reads

    def lookup(self, key: Hashable) -> Entry | None:
        """The oldest entry registered under ``key``, or ``None``. O(1).

        Raises:
            TypeError: ``key`` is not hashable.
        """
        return self._first.get(key)

    def lookup_all(self, key: Hashable) -> tuple[Entry, ...]:
        """Every entry registered under ``key``, oldest first."""
        bucket = self._by_key.get(key)
        if bucket is None:
            return ()
        entries = self._entries
        return tuple(entries[i] for i in bucket)

    def get(self, entry_id: int) -> Entry | None:
        """The entry with this id, or ``None`` if it is not registered."""
        return self._entries.get(entry_id)

    def _ids_for(self, name: str, value: Hashable) -> dict[int, None]:
        if name not in self._index_names:
            raise ValueError(f"no index named {name!r}; indexes: {sorted(self._index_names)}")
        _check_hashable(value, f"query value for index {name!r}")
        return self._postings[name].get(value, {})

    def select(
        self,
        all_of: Mapping[str, Hashable] | None = None,
        any_of: Iterable[tuple[str, Hashable]] | None = None,
        where: Callable[[Entry], bool] | None = None,
        *,
        limit: int = 100,
        after: int | None = None,
    ) -> Page:
        """Entries matching every ``all_of`` pair, at least one ``any_of`` pair, and ``where``.

        Args:
            all_of: ``{index: value}``; an entry must be filed under every pair.
            any_of: ``(index, value)`` pairs; an entry must be filed under at least one
                (an empty iterable matches nothing; ``None`` means no such constraint).
            where: a predicate over entries, applied last.
            limit: page size (> 0).
            after: the ``next_after`` of the previous page, or ``None`` for the first.

        Returns:
            A :class:`Page` of entries in id order. Cost: intersecting the named posting
            lists (set operations, starting from the smallest) and sorting the matches by
            id; with no index named, a scan of the entries, stopping after the page.

        Raises:
            ValueError: an index name is unknown, or ``limit`` is not positive.
            TypeError: a query value is not hashable.
        """
        if not isinstance(limit, int) or limit <= 0:
            raise ValueError(f"limit must be a positive int, got {limit!r}")
        floor = 0 if after is None else after
        ids: Iterable[int] | None = None
        if all_of:
            lists = sorted((self._ids_for(n, v) for n, v in all_of.items()), key=len)
            ids = lists[0].keys()
            for other in lists[1:]:
                ids = ids & other.keys()
        if any_of is not None:
            union: set[int] = set()
            for name, value in any_of:
                union.update(self._ids_for(name, value))
            ids = union if ids is None else union.intersection(ids)
        entries = self._entries
        if ids is None:
            ordered: Iterable[int] = (i for i in entries if i > floor) if floor else entries
        else:
            ordered = sorted(i for i in ids if i > floor) if floor else sorted(ids)
        chosen: list[int] = []
        for entry_id in ordered:
            if where is not None and not where(entries[entry_id]):
                continue
            chosen.append(entry_id)
            if len(chosen) > limit:
                break
        more = len(chosen) > limit
        page = tuple(entries[i] for i in chosen[:limit])
        return Page(page, page[-1].id if more else None)

    def select_all(
        self,
        all_of: Mapping[str, Hashable] | None = None,
        any_of: Iterable[tuple[str, Hashable]] | None = None,
        where: Callable[[Entry], bool] | None = None,
        *,
        page_size: int = 1000,
    ) -> Iterator[Entry]:
        """Every matching entry, page by page (see :meth:`select`)."""
        after: int | None = None
        while True:
            page = self.select(all_of, any_of, where, limit=page_size, after=after)
            yield from page.entries
            if page.next_after is None:
                return
            after = page.next_after

    # --------------------------------------------------------------------- watches

    def open_watch(self, capacity: int = 1000) -> Watch:
        """Open a bounded watch; the caller must :meth:`close_watch` it.

        Prefer ``async with registry.watch(capacity) as watch:``.

        Raises:
            ValueError: ``capacity`` is not positive.
            RuntimeError: ``max_watchers`` watches are open.
        """
        if not isinstance(capacity, int) or capacity <= 0:
            raise ValueError(f"watch capacity must be a positive int, got {capacity!r}")
        if len(self._watches) >= self._max_watchers:
            raise RuntimeError(f"too many watches: max_watchers={self._max_watchers}")
        watch = Watch(capacity)
        self._watches[watch] = None
        return watch

    def close_watch(self, watch: Watch) -> None:
        """Close a watch: it receives nothing more and its buffer is freed."""
        self._watches.pop(watch, None)
        watch._close()

    def watch(self, capacity: int = 1000) -> AbstractAsyncContextManager[Watch]:
        """Watch changes for the duration of an ``async with`` block.

        Entering is a checkpoint (no watch opened if cancelled there); exiting closes it.

        Raises:
            ValueError: ``capacity`` is not positive.
            RuntimeError: ``max_watchers`` watches are open.
        """
        return _ScopedWatch(self, capacity)
