"""The key-value store interface (:class:`~trio_foundation.coordination.kv.KVStore`) on etcd."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import final

from ..coordination.kv import Bytesish, CasResult, KeyValue, WatchEvent, to_bytes
from ._client import EtcdClient
from ._types import Compare, GetOp, PutOp, RangeResult

__all__ = ["EtcdKV"]


@final
class EtcdKV:
    """A :class:`~trio_foundation.coordination.kv.KVStore` backed by etcd.

    Revisions are etcd's own (cluster-wide); reads are linearizable (etcd's
    default); ``cas`` and ``cas_revision`` are one etcd transaction each. Keys
    live under ``prefix`` in etcd and are reported without it.

    Args:
        client: an open :class:`EtcdClient`.
        prefix: a namespace for this store's keys inside etcd (``b""``: none).
    """

    def __init__(self, client: EtcdClient, *, prefix: Bytesish = b"") -> None:
        self._client = client
        self._prefix = to_bytes(prefix, "prefix")

    def _key(self, key: Bytesish) -> bytes:
        return self._prefix + to_bytes(key, "key")

    def _strip(self, kv: KeyValue | None) -> KeyValue | None:
        if kv is None or not self._prefix:
            return kv
        return KeyValue(
            kv.key[len(self._prefix) :],
            kv.value,
            kv.create_revision,
            kv.mod_revision,
            kv.version,
            kv.lease,
        )

    async def get(self, key: Bytesish) -> KeyValue | None:
        """See :meth:`KVStore.get`."""
        return self._strip(await self._client.get(self._key(key)))

    async def put(self, key: Bytesish, value: Bytesish) -> int:
        """See :meth:`KVStore.put`."""
        return (await self._client.put(self._key(key), value)).revision

    async def delete(self, key: Bytesish) -> bool:
        """See :meth:`KVStore.delete`."""
        return (await self._client.delete(self._key(key))).deleted > 0

    async def _swap(self, key: bytes, compare: Compare, new: Bytesish) -> CasResult:
        result = await self._client.txn(
            [compare], [PutOp(key, to_bytes(new, "new")), GetOp(key)], [GetOp(key)]
        )
        found = result.responses[-1]
        assert isinstance(found, RangeResult)
        current = self._strip(found.kvs[0]) if found.kvs else None
        return CasResult(result.succeeded, result.revision, current)

    async def cas(self, key: Bytesish, expect: Bytesish | None, new: Bytesish) -> CasResult:
        """See :meth:`KVStore.cas`."""
        k = self._key(key)
        if expect is None:
            return await self._swap(k, Compare.create_revision(k) == 0, new)
        return await self._swap(k, Compare.value(k) == to_bytes(expect, "expect"), new)

    async def cas_revision(self, key: Bytesish, mod_revision: int, new: Bytesish) -> CasResult:
        """See :meth:`KVStore.cas_revision`."""
        if mod_revision < 0:
            raise ValueError(f"mod_revision must be >= 0, got {mod_revision}")
        k = self._key(key)
        return await self._swap(k, Compare.mod_revision(k) == mod_revision, new)

    async def range(self, prefix: Bytesish, *, limit: int = 0) -> tuple[tuple[KeyValue, ...], int]:
        """See :meth:`KVStore.range`."""
        result = await self._client.range(self._key(prefix), prefix=True, limit=limit)
        kvs = tuple(kv for kv in map(self._strip, result.kvs) if kv is not None)
        return kvs, result.revision

    @asynccontextmanager
    async def watch(
        self, prefix: Bytesish, *, start_revision: int = 0
    ) -> AsyncIterator[AsyncIterator[WatchEvent]]:
        """See :meth:`KVStore.watch`; resumes across reconnects (:meth:`EtcdClient.watch`)."""
        async with self._client.watch(
            self._key(prefix), prefix=True, start_revision=start_revision, prev_kv=True
        ) as events:
            yield _Stripped(self, events)


@final
class _Stripped:
    def __init__(self, store: EtcdKV, events: AsyncIterator[WatchEvent]) -> None:
        self._store = store
        self._events = events

    def __aiter__(self) -> _Stripped:
        return self

    async def __anext__(self) -> WatchEvent:
        event = await self._events.__anext__()
        kv = self._store._strip(event.kv)
        assert kv is not None
        return WatchEvent(event.type, kv, self._store._strip(event.prev))
