"""The key-value store interface, shaped like etcd's, and an in-memory reference store.

Every write gets a store-wide *revision*, strictly increasing; each key carries
the revision that created it (``create_revision``) and the one that last
changed it (``mod_revision``). A watch delivers every change from a given
revision on, in revision order; a revision older than the store keeps is
reported as :class:`CompactedError`, never skipped silently.

Backends: :class:`MemoryKV` (one process; the reference for tests and models),
:class:`trio_foundation.etcd.EtcdKV` (etcd), and the Raft store when it lands —
the same conformance suite runs against each.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Literal, Protocol, final, runtime_checkable

import attrs
import trio

from .._errors import FoundationError

__all__ = [
    "CasResult",
    "CompactedError",
    "KVStore",
    "KeyValue",
    "MemoryKV",
    "WatchEvent",
    "WatchOverflowError",
]

Bytesish = bytes | str


def to_bytes(value: Bytesish, what: str) -> bytes:
    """``str`` → UTF-8 bytes; ``bytes`` as is; anything else is a ``TypeError`` naming ``what``."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    raise TypeError(f"{what} must be bytes or str, got {type(value).__name__}")


@final
@attrs.frozen
class KeyValue:
    """One key as the store holds it.

    Attributes:
        key: the key.
        value: the value.
        create_revision: the revision of the write that created the key (since its
            last deletion).
        mod_revision: the revision of its last write.
        version: writes since creation (1 after the first put).
        lease: the id of the lease the key is attached to (etcd), 0 if none.
    """

    key: bytes
    value: bytes
    create_revision: int
    mod_revision: int
    version: int
    lease: int = 0


@final
@attrs.frozen
class WatchEvent:
    """One change seen by a watch.

    Attributes:
        type: ``"PUT"`` or ``"DELETE"``.
        kv: the key after the change (for a delete: its key, empty value, and the
            delete's revision as ``mod_revision``).
        prev: the key before the change, when the backend provides it.
    """

    type: Literal["PUT", "DELETE"]
    kv: KeyValue
    prev: KeyValue | None = None

    @property
    def revision(self) -> int:
        """The revision of the change."""
        return self.kv.mod_revision


@final
@attrs.frozen
class CasResult:
    """The outcome of a compare-and-swap.

    Attributes:
        succeeded: whether the comparison held and the write was made.
        revision: the store's revision after the call.
        current: the key as it is now (after the write if it succeeded).
    """

    succeeded: bool
    revision: int
    current: KeyValue | None


class CompactedError(FoundationError):
    """The revision asked for is older than the store keeps.

    Attributes:
        requested: the revision asked for.
        compact_revision: the oldest revision the store still has (0 if unknown).
    """

    def __init__(self, requested: int, compact_revision: int) -> None:
        have = f"; oldest kept is {compact_revision}" if compact_revision else ""
        super().__init__(f"revision {requested} has been compacted{have}")
        self.requested = requested
        self.compact_revision = compact_revision


class WatchOverflowError(FoundationError):
    """A watcher fell further behind than its buffer: restart it from ``next_revision``
    (or re-read the state if that revision has been compacted since)."""

    def __init__(self, next_revision: int, capacity: int) -> None:
        super().__init__(
            f"watcher fell more than {capacity} events behind; resume from revision {next_revision}"
        )
        self.next_revision = next_revision
        self.capacity = capacity


@runtime_checkable
class KVStore(Protocol):
    """What every key-value backend provides (the conformance suite tests exactly this).

    Every method is a checkpoint. A cancelled read has no effect; a cancelled
    write may or may not have been applied (a remote backend cannot know).
    """

    async def get(self, key: Bytesish) -> KeyValue | None:
        """The key, or ``None``; linearizable."""
        ...

    async def put(self, key: Bytesish, value: Bytesish) -> int:
        """Write the key; returns the write's revision."""
        ...

    async def delete(self, key: Bytesish) -> bool:
        """Delete the key; returns whether it existed."""
        ...

    async def cas(self, key: Bytesish, expect: Bytesish | None, new: Bytesish) -> CasResult:
        """Write ``new`` if the key's value is ``expect`` (``None``: the key is absent)."""
        ...

    async def cas_revision(self, key: Bytesish, mod_revision: int, new: Bytesish) -> CasResult:
        """Write ``new`` if the key's ``mod_revision`` is ``mod_revision`` (0: absent)."""
        ...

    async def range(self, prefix: Bytesish, *, limit: int = 0) -> tuple[tuple[KeyValue, ...], int]:
        """Every key starting with ``prefix`` in key order (at most ``limit``; 0: all),
        and the revision the answer was read at."""
        ...

    def watch(
        self, prefix: Bytesish, *, start_revision: int = 0
    ) -> AbstractAsyncContextManager[AsyncIterator[WatchEvent]]:
        """Changes under ``prefix`` from ``start_revision`` on (0: from now), in order.

        Raises (from the iteration): :class:`CompactedError`,
        :class:`WatchOverflowError` (in-memory backends).
        """
        ...


@attrs.define
class _Watcher:
    prefix: bytes
    send: trio.MemorySendChannel[WatchEvent]
    overflow: list[int] = attrs.Factory(list)


@final
class MemoryKV:
    """A :class:`KVStore` in this process: the reference backend for tests and models.

    Args:
        history: how many past events are kept for watches that start in the past
            (older start revisions raise :class:`CompactedError`).
        watch_capacity: events a watcher may fall behind before it gets
            :class:`WatchOverflowError` (memory stays bounded whatever watchers do).

    Writes are applied atomically at the call (the checkpoint comes first), so
    the store is linearizable by construction; it exists so the conformance
    suite, examples and models have a backend with no process to start.
    """

    def __init__(self, *, history: int = 10_000, watch_capacity: int = 1_000) -> None:
        if history < 1 or watch_capacity < 1:
            raise ValueError(
                f"history and watch_capacity must be >= 1, got {history} and {watch_capacity}"
            )
        self.revision = 1
        self._data: dict[bytes, KeyValue] = {}
        self._history: deque[WatchEvent] = deque(maxlen=history)
        self._watch_capacity = watch_capacity
        self._watchers: list[_Watcher] = []

    def _publish(self, event: WatchEvent) -> None:
        self._history.append(event)
        for w in self._watchers:
            if w.overflow or not event.kv.key.startswith(w.prefix):
                continue
            try:
                w.send.send_nowait(event)
            except trio.WouldBlock:
                w.overflow.append(event.revision)

    def _put_now(self, key: bytes, value: bytes) -> KeyValue:
        self.revision += 1
        old = self._data.get(key)
        kv = KeyValue(
            key=key,
            value=value,
            create_revision=old.create_revision if old else self.revision,
            mod_revision=self.revision,
            version=old.version + 1 if old else 1,
        )
        self._data[key] = kv
        self._publish(WatchEvent("PUT", kv, old))
        return kv

    async def get(self, key: Bytesish) -> KeyValue | None:
        """See :meth:`KVStore.get`."""
        k = to_bytes(key, "key")
        await trio.lowlevel.checkpoint()
        return self._data.get(k)

    async def put(self, key: Bytesish, value: Bytesish) -> int:
        """See :meth:`KVStore.put`."""
        k, v = to_bytes(key, "key"), to_bytes(value, "value")
        await trio.lowlevel.checkpoint()
        return self._put_now(k, v).mod_revision

    async def delete(self, key: Bytesish) -> bool:
        """See :meth:`KVStore.delete`."""
        k = to_bytes(key, "key")
        await trio.lowlevel.checkpoint()
        old = self._data.pop(k, None)
        if old is None:
            return False
        self.revision += 1
        self._publish(WatchEvent("DELETE", KeyValue(k, b"", 0, self.revision, 0), old))
        return True

    async def cas(self, key: Bytesish, expect: Bytesish | None, new: Bytesish) -> CasResult:
        """See :meth:`KVStore.cas`."""
        k, n = to_bytes(key, "key"), to_bytes(new, "new")
        e = None if expect is None else to_bytes(expect, "expect")
        await trio.lowlevel.checkpoint()
        old = self._data.get(k)
        if (old.value if old else None) != e:
            return CasResult(False, self.revision, old)
        kv = self._put_now(k, n)
        return CasResult(True, self.revision, kv)

    async def cas_revision(self, key: Bytesish, mod_revision: int, new: Bytesish) -> CasResult:
        """See :meth:`KVStore.cas_revision`."""
        k, n = to_bytes(key, "key"), to_bytes(new, "new")
        if mod_revision < 0:
            raise ValueError(f"mod_revision must be >= 0, got {mod_revision}")
        await trio.lowlevel.checkpoint()
        old = self._data.get(k)
        if (old.mod_revision if old else 0) != mod_revision:
            return CasResult(False, self.revision, old)
        kv = self._put_now(k, n)
        return CasResult(True, self.revision, kv)

    async def range(self, prefix: Bytesish, *, limit: int = 0) -> tuple[tuple[KeyValue, ...], int]:
        """See :meth:`KVStore.range`. Costs O(n log n) in the number of keys."""
        p = to_bytes(prefix, "prefix")
        if limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
        await trio.lowlevel.checkpoint()
        found = sorted(
            (kv for k, kv in self._data.items() if k.startswith(p)), key=lambda kv: kv.key
        )
        return tuple(found[:limit] if limit else found), self.revision

    @asynccontextmanager
    async def watch(
        self, prefix: Bytesish, *, start_revision: int = 0
    ) -> AsyncIterator[AsyncIterator[WatchEvent]]:
        """See :meth:`KVStore.watch`."""
        p = to_bytes(prefix, "prefix")
        if start_revision < 0:
            raise ValueError(f"start_revision must be >= 0, got {start_revision}")
        send, receive = trio.open_memory_channel[WatchEvent](self._watch_capacity)
        watcher = _Watcher(p, send)
        if start_revision:
            oldest = self._history[0].revision if self._history else self.revision + 1
            if start_revision < oldest and start_revision <= self.revision:
                raise CompactedError(start_revision, oldest)
            for event in self._history:
                if event.revision >= start_revision and event.kv.key.startswith(p):
                    try:
                        send.send_nowait(event)
                    except trio.WouldBlock:
                        watcher.overflow.append(event.revision)
                        break
        self._watchers.append(watcher)
        try:
            yield _MemoryWatch(watcher, receive, self._watch_capacity)
        finally:
            self._watchers.remove(watcher)
            send.close()
            receive.close()


@final
class _MemoryWatch:
    """The iterator of a :meth:`MemoryKV.watch` (a plain object, not an async generator,
    so leaving the loop early leaves nothing for the garbage collector to finalize)."""

    def __init__(
        self, watcher: _Watcher, receive: trio.MemoryReceiveChannel[WatchEvent], capacity: int
    ) -> None:
        self._watcher = watcher
        self._receive = receive
        self._capacity = capacity
        self.next_revision = 0

    def __aiter__(self) -> _MemoryWatch:
        return self

    async def __anext__(self) -> WatchEvent:
        try:
            event = self._receive.receive_nowait()
        except trio.WouldBlock:
            overflow = self._watcher.overflow
            if overflow:
                raise WatchOverflowError(
                    max(self.next_revision, overflow[0]), self._capacity
                ) from None
            event = await self._receive.receive()
        else:
            await trio.lowlevel.checkpoint()
        self.next_revision = event.revision + 1
        return event
