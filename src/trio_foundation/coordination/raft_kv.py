"""The replicated key-value store: :class:`~trio_foundation.coordination.kv.KVStore`
over a Raft cluster running :class:`~trio_foundation.protocols.kv_machine.KVMachine`.

Writes go through the log (:meth:`submit`; applied once thanks to the core's
session table, see :mod:`trio_foundation.coordination.consensus`); ``get``,
``range`` and watch polls are ReadIndex reads, so every call is linearizable.
A watch polls the machine's event history every ``poll_interval`` seconds; a
start revision older than the history kept raises
:class:`~trio_foundation.coordination.kv.CompactedError` on entry.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Final, Protocol, final

import trio

from ..protocols import kv_machine as m
from .consensus import Codec
from .kv import (
    Bytesish,
    CasResult,
    CompactedError,
    KeyValue,
    WatchEvent,
    to_bytes,
)

__all__ = ["KV_CODEC", "RaftKV"]

KV_CODEC: Final = Codec(
    command=m.Request, result=m.Result, query=m.Get | m.Range | m.Watch, answer=m.Result
)
"""The codec a cluster serving :class:`~trio_foundation.protocols.kv_machine.KVMachine` uses."""


class _Submitter(Protocol):
    async def submit(self, command: Any) -> Any: ...

    async def read(self, query: Any) -> Any: ...


def _kv(kv: m.KV | None) -> KeyValue | None:
    if kv is None:
        return None
    return KeyValue(kv.key, kv.value, kv.create_revision, kv.mod_revision, kv.version, kv.lease)


def _check(result: Any, want: type[Any]) -> Any:
    if isinstance(result, m.ErrorResult):
        if result.code == "compacted":
            raise CompactedError(0, result.compact_revision)
        raise ValueError(f"{result.code}: {result.message}")
    if not isinstance(result, want):
        raise TypeError(f"expected {want.__name__}, the cluster answered {result!r}")
    return result


@final
class RaftKV:
    """A :class:`~trio_foundation.coordination.kv.KVStore` on a Raft node or client
    whose codec is :data:`KV_CODEC`.

    Every method is a checkpoint. A cancelled read has no effect; a cancelled write
    may or may not be applied (it is applied at most once).

    Args:
        raft: a :class:`~trio_foundation.coordination.consensus.RaftNodeHandle` or
            :class:`~trio_foundation.coordination.consensus.RaftClient`.
        poll_interval: seconds between watch polls.
    """

    def __init__(self, raft: _Submitter, *, poll_interval: float = 0.05) -> None:
        self._raft = raft
        self._poll = poll_interval

    async def _write(self, command: m.Command, want: type[Any]) -> Any:
        return _check(await self._raft.submit(m.Request(command)), want)

    async def get(self, key: Bytesish) -> KeyValue | None:
        """See :meth:`KVStore.get`."""
        r = _check(await self._raft.read(m.Get(to_bytes(key, "key"))), m.GetResult)
        return _kv(r.kv)

    async def put(self, key: Bytesish, value: Bytesish) -> int:
        """See :meth:`KVStore.put`."""
        put = m.Put(to_bytes(key, "key"), to_bytes(value, "value"))
        r = await self._write(put, m.PutResult)
        return int(r.revision)

    async def delete(self, key: Bytesish) -> bool:
        """See :meth:`KVStore.delete`."""
        r = await self._write(m.Delete(to_bytes(key, "key")), m.DeleteResult)
        return bool(r.deleted)

    async def cas(self, key: Bytesish, expect: Bytesish | None, new: Bytesish) -> CasResult:
        """See :meth:`KVStore.cas`."""
        exp = None if expect is None else to_bytes(expect, "expect")
        cmd = m.Cas(to_bytes(key, "key"), exp, to_bytes(new, "new"))
        r = await self._write(cmd, m.CasResult)
        return CasResult(r.succeeded, r.revision, _kv(r.current))

    async def cas_revision(self, key: Bytesish, mod_revision: int, new: Bytesish) -> CasResult:
        """See :meth:`KVStore.cas_revision`."""
        if not isinstance(mod_revision, int) or mod_revision < 0:
            raise ValueError(f"mod_revision must be >= 0, got {mod_revision!r}")
        cmd = m.CasRevision(to_bytes(key, "key"), mod_revision, to_bytes(new, "new"))
        r = await self._write(cmd, m.CasResult)
        return CasResult(r.succeeded, r.revision, _kv(r.current))

    async def range(self, prefix: Bytesish, *, limit: int = 0) -> tuple[tuple[KeyValue, ...], int]:
        """See :meth:`KVStore.range`."""
        if not isinstance(limit, int) or limit < 0:
            raise ValueError(f"limit must be an int >= 0, got {limit!r}")
        r = _check(await self._raft.read(m.Range(to_bytes(prefix, "prefix"), limit)), m.RangeResult)
        kvs = tuple(kv for kv in (_kv(k) for k in r.kvs) if kv is not None)
        return kvs, int(r.revision)

    async def compact(self, revision: int) -> int:
        """Drop the watch history before ``revision``; returns the oldest revision kept."""
        r = await self._write(m.Compact(revision), m.CompactResult)
        return int(r.oldest)

    @asynccontextmanager
    async def watch(
        self, prefix: Bytesish, *, start_revision: int = 0
    ) -> AsyncIterator[AsyncIterator[WatchEvent]]:
        """See :meth:`KVStore.watch` (polled; :class:`CompactedError` on entry)."""
        p = to_bytes(prefix, "prefix")
        if not isinstance(start_revision, int) or start_revision < 0:
            raise ValueError(f"start_revision must be >= 0, got {start_revision!r}")
        first = await self._raft.read(m.Watch(p, start_revision))
        if isinstance(first, m.ErrorResult) and first.code == "compacted":
            raise CompactedError(start_revision, first.compact_revision)
        first = _check(first, m.WatchResult)
        yield _RaftWatch(self, p, first)

    async def _poll_once(self, prefix: bytes, start: int) -> m.WatchResult:
        r = await self._raft.read(m.Watch(prefix, start))
        if isinstance(r, m.ErrorResult) and r.code == "compacted":
            raise CompactedError(start, r.compact_revision)
        return _check(r, m.WatchResult)  # type: ignore[no-any-return]


@final
class _RaftWatch:
    def __init__(self, kv: RaftKV, prefix: bytes, first: m.WatchResult) -> None:
        self._kv = kv
        self._prefix = prefix
        self._events = list(first.events)
        self.next_revision = first.next_revision

    def __aiter__(self) -> _RaftWatch:
        return self

    async def __anext__(self) -> WatchEvent:
        while not self._events:
            await trio.sleep(self._kv._poll)
            r = await self._kv._poll_once(self._prefix, self.next_revision)
            self._events = list(r.events)
            self.next_revision = r.next_revision
        await trio.lowlevel.checkpoint()
        e = self._events.pop(0)
        kv = _kv(e.kv)
        assert kv is not None
        return WatchEvent(e.type, kv, _kv(e.prev))
