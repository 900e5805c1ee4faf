"""The registry on etcd: the :class:`~trio_foundation.registry.Backend` protocol over etcd keys.

Theory of operation. A registration is one etcd key ``PREFIX/e/<random hex>`` whose value
is JSON (``{"k": key, "m": metadata, "v": value, "n": position in its batch}``), attached
to a lease that the registration's ``async with`` block keeps alive
(:meth:`EtcdClient.lease`): the entry vanishes when the block ends (deleted, then the
lease revoked), and within the lease's ttl when its process dies or is cut off. An entry's
id is ``create_revision * 1024 + position``, so ids increase in registration order, are the
same in every process, and a batch (one transaction, one revision) still gets distinct ids.

In a unique registry each entry also holds a claim key ``PREFIX/u/<JSON of the key>`` on
the same lease; registering is a transaction comparing every claim's ``create_revision``
with 0, so two processes can never both hold a key (etcd serialises the transactions).

Reads are synchronous and answered from a local view: an in-memory
:class:`~trio_foundation.registry.Registry` (its index machinery is reused, not copied),
loaded with a ``range`` of ``PREFIX/e/`` and then kept current by a watch from the range's
revision + 1 (so no change is missed); if that revision is compacted the view is reloaded
and reconciled (entries gone are reported as unregistered, new ones as registered). The
view's ids are etcd's: before each insert the view's id counter is set to the entry's id
(``Registry._next_id``, the one private touchpoint; events arrive in revision order, so
ids are inserted in increasing order, which the view's id-ordered scans rely on).

Every write of this process waits until the view has applied it before returning, so a
process reads its own writes. Another process's view follows within the watch's delay
(normally milliseconds); it is eventually consistent, never ahead of etcd, and applies
changes in etcd's revision order.
"""

from __future__ import annotations

import json
import logging
import math
import secrets
import types
from collections.abc import AsyncIterator, Callable, Hashable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Literal, final

import trio
import trio.lowlevel

from ..registry import (
    BatchTooLargeError,
    DuplicateKeyError,
    Entry,
    Index,
    Page,
    Registry,
    RegistryFullError,
)
from ..registry import Watch as RegistryWatch
from ._client import EtcdClient, collapse
from ._errors import EtcdCompactedError, EtcdUnavailableError
from ._types import Compare, DeleteOp, GetOp, KeyValue, PutOp, RangeResult, WatchEvent

__all__ = ["EtcdRegistry", "open_etcd_registry"]

log = logging.getLogger(__name__)

ID_SPAN = 1024
"""Entry ids are ``create_revision * ID_SPAN + position in the batch``."""
MAX_BATCH = 64
"""The most entries one batch may hold (etcd's default ``--max-txn-ops`` is 128; a
unique registry spends two operations per entry)."""

_SCALARS = (str, int, float, bool, type(None))


def _check_key(key: object) -> None:
    try:
        hash(key)
    except TypeError:
        raise TypeError(f"registry key must be hashable, got {type(key).__name__}") from None
    if not isinstance(key, _SCALARS) or (isinstance(key, float) and not math.isfinite(key)):
        raise TypeError(
            "an etcd registry key must be a JSON scalar (str, int, finite float, bool or"
            f" None), got {type(key).__name__}"
        )


def _json_value(value: object, what: str) -> object:
    """``value`` as it comes back from JSON; TypeError if JSON cannot carry it unchanged."""
    try:
        text = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"{what} must be JSON (dict, list, str, number, bool, None): {exc}"
        ) from None
    back = json.loads(text)
    if back != value:
        raise TypeError(f"{what} does not survive JSON unchanged (tuples and non-str keys do not)")
    return back


def _check_meta(meta: Mapping[str, object] | None) -> dict[str, object]:
    if meta is None:
        return {}
    if not isinstance(meta, Mapping):
        raise TypeError(f"metadata must be a mapping, got {type(meta).__name__}")
    plain = dict(meta)
    for name in plain:
        if not isinstance(name, str):
            raise TypeError(f"metadata keys must be str, got {type(name).__name__}")
    back = _json_value(plain, "metadata")
    assert isinstance(back, dict)
    return back


@final
class EtcdRegistry:
    """A registry whose entries live in etcd; get one with :func:`open_etcd_registry`.

    Implements :class:`trio_foundation.registry.Backend`. Reads (:meth:`lookup`,
    :meth:`select`, ``len``...) are synchronous, answered from a local view kept current
    by a watch; writes go to etcd and return once the view shows them. See the module
    docstring and ``docs/etcd.md`` ("The registry on etcd") for what other processes see.
    """

    def __init__(
        self,
        client: EtcdClient,
        prefix: str,
        *,
        keys: Literal["unique", "duplicate"],
        indexes: Sequence[Index],
        ttl: int,
        max_entries: int,
        batch_limit: int,
        max_watchers: int,
    ) -> None:
        if not isinstance(prefix, str) or not prefix:
            raise ValueError(f"prefix must be a non-empty str, got {prefix!r}")
        if not isinstance(ttl, int) or ttl < 2:
            raise ValueError(f"ttl must be an int >= 2 seconds, got {ttl!r}")
        if not isinstance(batch_limit, int) or not 0 < batch_limit <= MAX_BATCH:
            raise ValueError(f"batch_limit must be in 1..{MAX_BATCH}, got {batch_limit!r}")
        # The view: duplicate keys (etcd enforces uniqueness), no entry bound of its own
        # (it mirrors etcd; max_entries is checked before writing).
        self._view = Registry(
            keys="duplicate", indexes=indexes, max_entries=2**62, max_watchers=max_watchers
        )
        if not isinstance(max_entries, int) or max_entries <= 0:
            raise ValueError(f"max_entries must be a positive int, got {max_entries!r}")
        self._client = client
        base = prefix.rstrip("/").encode()
        self._entries_prefix = base + b"/e/"
        self._claims_prefix = base + b"/u/"
        self._unique = keys == "unique"
        if keys not in ("unique", "duplicate"):
            raise ValueError(f"keys must be 'unique' or 'duplicate', got {keys!r}")
        self._ttl = ttl
        self._max_entries = max_entries
        self._batch_limit = batch_limit
        self._id_of: dict[bytes, int] = {}  # etcd key -> entry id
        self._kv_of: dict[int, KeyValue] = {}  # entry id -> its etcd key-value
        self._revision = 0  # the view reflects every change up to this revision
        self._changed = trio.lowlevel.ParkingLot()
        self._failed: BaseException | None = None
        self._retry = 0.5
        self.reloads = 0
        """How many times the view was reloaded because its revision was compacted."""
        self.outages = 0
        """How many times following etcd failed (etcd unreachable) and was retried."""

    # ------------------------------------------------------------------ properties

    @property
    def unique(self) -> bool:
        """Whether a key names at most one entry."""
        return self._unique

    @property
    def indexes(self) -> tuple[Index, ...]:
        """The secondary indexes of the local view."""
        return self._view.indexes

    @property
    def batch_limit(self) -> int:
        """The most entries one batch registration may add."""
        return self._batch_limit

    @property
    def revision(self) -> int:
        """The etcd revision the local view has reached."""
        return self._revision

    def __len__(self) -> int:
        return len(self._view)

    # ------------------------------------------------------------------ the view

    def _decode(self, kv: KeyValue) -> tuple[int, Hashable, Mapping[str, object], object] | None:
        try:
            doc = json.loads(kv.value)
            key, meta, value, n = doc["k"], doc["m"], doc.get("v"), doc.get("n", 0)
            _check_key(key)
            if not isinstance(meta, dict) or not isinstance(n, int) or not 0 <= n < ID_SPAN:
                raise TypeError("malformed entry")
            for index in self._view.indexes:
                index.values_of(meta)
        except (ValueError, TypeError, KeyError) as exc:
            log.warning("ignoring malformed registry entry %r: %s", kv.key, exc)
            return None
        return kv.create_revision * ID_SPAN + n, key, meta, value

    def _insert(self, kv: KeyValue) -> None:
        decoded = self._decode(kv)
        if decoded is None:
            return
        entry_id, key, meta, value = decoded
        old = self._id_of.get(kv.key)
        if old is not None:  # an update of an entry we hold
            self._kv_of[old] = kv
            if self._view.get(old) is not None:
                self._view.update_nowait(old, meta)
            return
        self._id_of[kv.key] = entry_id
        self._kv_of[entry_id] = kv
        self._view._next_id = entry_id  # the view's ids are etcd's (see module docstring)
        self._view.register_nowait(key, meta, value=value)

    def _remove(self, etcd_key: bytes) -> None:
        entry_id = self._id_of.pop(etcd_key, None)
        if entry_id is not None:
            del self._kv_of[entry_id]
            self._view.unregister_nowait(entry_id)

    def _apply(self, event: WatchEvent) -> None:
        if event.type == "PUT":
            self._insert(event.kv)
        else:
            self._remove(event.kv.key)
        self._revision = max(self._revision, event.revision)
        self._changed.unpark_all()

    async def _load(self) -> int:
        """Read the prefix and reconcile the view with it; returns the range's revision."""
        result: RangeResult = await self._client.range(self._entries_prefix, prefix=True)
        present = {kv.key: kv for kv in result.kvs}
        for etcd_key in [k for k in self._id_of if k not in present]:
            self._remove(etcd_key)
        # id order: by creation, then by position in the batch (zero-padded in the key)
        for kv in sorted(result.kvs, key=lambda kv: (kv.create_revision, kv.key)):
            held = self._id_of.get(kv.key)
            if held is None or self._kv_of[held].mod_revision != kv.mod_revision:
                self._insert(kv)
        self._revision = max(self._revision, result.revision)
        self._changed.unpark_all()
        return result.revision

    async def _follow(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        try:
            revision = await self._load()
            task_status.started()
            while True:
                try:
                    async with self._client.watch(
                        self._entries_prefix, prefix=True, start_revision=revision + 1
                    ) as events:
                        async for event in events:
                            self._apply(event)
                            revision = event.revision
                except EtcdCompactedError:
                    log.info("registry view's revision %d was compacted: reloading", revision)
                    self.reloads += 1
                    revision = await self._reload()
                except EtcdUnavailableError as exc:
                    # The view goes stale (writes of this process wait, then time out) and
                    # resumes from the next revision once etcd answers again.
                    log.warning("registry view lost etcd (%s): retrying", exc)
                    self.outages += 1
                    await trio.sleep(self._retry)
        except BaseException as exc:
            self._failed = exc
            self._changed.unpark_all()
            raise

    async def _reload(self) -> int:
        while True:
            try:
                return await self._load()
            except EtcdUnavailableError as exc:
                log.warning("registry view could not reload (%s): retrying", exc)
                self.outages += 1
                await trio.sleep(self._retry)

    async def _wait_for(self, done: Callable[[], bool], what: str) -> None:
        """Wait until the view satisfies ``done`` (within the client's timeout)."""
        with trio.move_on_after(self._client.timeout):
            while not done():
                if self._failed is not None:
                    raise EtcdUnavailableError(
                        f"the registry view stopped following etcd: {self._failed!r}"
                    )
                await self._changed.park()
            return
        raise EtcdUnavailableError(
            f"the registry view did not show {what} within {self._client.timeout:g} s"
        )

    async def _wait_revision(self, revision: int, what: str) -> None:
        await self._wait_for(lambda: self._revision >= revision, what)

    # ------------------------------------------------------------------ writes

    def _prepare(
        self, items: Sequence[tuple[Hashable, Mapping[str, object] | None, object]]
    ) -> list[tuple[Hashable, dict[str, object], object]]:
        prepared = []
        seen: set[Hashable] = set()
        for key, meta, value in items:
            _check_key(key)
            plain = _check_meta(meta)
            for index in self._view.indexes:
                index.values_of(plain)
            value = _json_value(value, "an etcd registry entry's value")
            if self._unique and key in seen:
                raise DuplicateKeyError(key)
            seen.add(key)
            prepared.append((key, plain, value))
        if len(self._view) + len(prepared) > self._max_entries:
            raise RegistryFullError(self._max_entries, len(prepared))
        return prepared

    def _claim(self, key: Hashable) -> bytes:
        return self._claims_prefix + json.dumps(key).encode()

    @asynccontextmanager
    async def _registered(
        self, items: Sequence[tuple[Hashable, Mapping[str, object] | None, object]]
    ) -> AsyncIterator[tuple[Entry, ...]]:
        prepared = self._prepare(items)
        await trio.lowlevel.checkpoint_if_cancelled()
        client = self._client
        async with client.lease(self._ttl) as lease:
            tag = secrets.token_hex(8)
            etcd_keys = [
                self._entries_prefix + f"{tag}-{n:04d}".encode() for n in range(len(prepared))
            ]
            compare: list[Compare] = []
            success: list[PutOp | DeleteOp | GetOp] = []
            for n, (key, meta, value) in enumerate(prepared):
                doc = json.dumps({"k": key, "m": meta, "v": value, "n": n}).encode()
                success.append(PutOp(etcd_keys[n], doc, lease=lease.id))
                if self._unique:
                    claim = self._claim(key)
                    compare.append(Compare.create_revision(claim) == 0)
                    success.append(PutOp(claim, etcd_keys[n], lease=lease.id))
            failure = [GetOp(self._claim(key)) for key, _, _ in prepared] if self._unique else []
            result = await client.txn(compare, success, failure)
            if not result.succeeded:
                for (key, _, _), answer in zip(prepared, result.responses, strict=True):
                    if isinstance(answer, RangeResult) and answer.kvs:
                        raise DuplicateKeyError(key)
                raise DuplicateKeyError(prepared[0][0])  # pragma: no cover - claim just freed
            ids = [result.revision * ID_SPAN + n for n in range(len(prepared))]
            try:
                await self._wait_for(
                    lambda: (
                        self._revision > result.revision
                        or all(self._view.get(i) is not None for i in ids)
                    ),
                    f"registration at revision {result.revision}",
                )
                # An entry already gone again (another process unregistered it, as
                # another task may in memory) is given as it was written.
                entries = tuple(
                    self._view.get(i) or Entry(i, key, types.MappingProxyType(meta), value)
                    for i, (key, meta, value) in zip(ids, prepared, strict=True)
                )
                yield entries
            finally:
                with trio.CancelScope(shield=True, deadline=trio.current_time() + client.timeout):
                    await self._delete_all(etcd_keys, prepared)

    async def _delete_all(
        self,
        etcd_keys: list[bytes],
        prepared: list[tuple[Hashable, dict[str, object], object]],
    ) -> None:
        """Delete the entries (and claims) still present, and wait for the view to drop them."""
        ids = [self._id_of.get(k) for k in etcd_keys]
        for etcd_key, (key, _, _) in zip(etcd_keys, prepared, strict=True):
            await self._delete_one(etcd_key, key)
        await self._wait_for(
            lambda: all(i is None or self._view.get(i) is None for i in ids),
            "the unregistration",
        )

    async def _delete_one(self, etcd_key: bytes, key: Hashable) -> bool:
        # The claim was created with the entry and is only deleted with it, so while
        # the entry exists its key's claim is its own.
        ops: list[PutOp | DeleteOp | GetOp] = [DeleteOp(etcd_key)]
        if self._unique:
            ops.append(DeleteOp(self._claim(key)))
        result = await self._client.txn([Compare.create_revision(etcd_key) != 0], ops)
        return result.succeeded

    def register(
        self, key: Hashable, meta: Mapping[str, object] | None = None, *, value: object = None
    ) -> AbstractAsyncContextManager[Entry]:
        """Register ``key`` in etcd for the duration of an ``async with`` block.

        Entering grants a lease (ttl ``ttl`` s, kept alive while the block runs) and
        writes the entry in one transaction, then waits until the local view shows it;
        it returns the entry as the view holds it. Exiting deletes the entry (and its
        claim), waits for the view to drop it, and revokes the lease — shielded, within
        the client's timeout. If the lease is lost (etcd unreachable past the ttl), the
        block is cancelled and :class:`EtcdLeaseLostError` raised from the ``async with``.

        Entering is a checkpoint. If cancelled while entering, the lease is revoked, so
        no key remains; if the cancellation cut off the grant's answer, the lease holds
        no key (only the transaction, which needs its id, writes keys) and expires
        with its ttl.

        Raises:
            TypeError: ``key`` is not a hashable JSON scalar, ``meta`` is not a mapping
                of JSON values, or an index value is not hashable.
            DuplicateKeyError: (unique registry) ``key`` is registered, in any process.
            RegistryFullError: the local view holds ``max_entries`` entries.
            EtcdUnavailableError: etcd did not answer within the client's timeout.
        """
        return _single(self._registered([(key, meta, value)]))

    def register_many(
        self, items: Sequence[tuple[Hashable, Mapping[str, object] | None]]
    ) -> AbstractAsyncContextManager[tuple[Entry, ...]]:
        """Register a batch in one etcd transaction (all or none), on one lease.

        As :meth:`register`, for at most ``batch_limit`` ``(key, meta)`` pairs.

        Raises:
            BatchTooLargeError: more than ``batch_limit`` items.
            TypeError, DuplicateKeyError, RegistryFullError: as :meth:`register`.
        """
        return self._batch(list(items))

    @asynccontextmanager
    async def _batch(
        self, items: list[tuple[Hashable, Mapping[str, object] | None]]
    ) -> AsyncIterator[tuple[Entry, ...]]:
        # checked on entering, as the in-memory registry does
        if len(items) > self._batch_limit:
            raise BatchTooLargeError(len(items), self._batch_limit)
        triples = []
        for item in items:
            if not isinstance(item, tuple) or len(item) != 2:
                raise TypeError(f"batch items must be (key, meta) pairs, got {item!r}")
            triples.append((item[0], item[1], None))
        async with self._registered(triples) as entries:
            yield entries

    async def unregister(self, entry: Entry | int) -> bool:
        """Delete an entry from etcd (whoever owns it) and wait for the view to drop it.

        A checkpoint. If cancelled, the entry may or may not have been deleted.

        Returns:
            Whether the entry was registered.
        """
        entry_id = entry if isinstance(entry, int) else entry.id
        await trio.lowlevel.checkpoint_if_cancelled()
        kv = self._kv_of.get(entry_id)
        held = self._view.get(entry_id)
        if kv is None or held is None:
            await trio.lowlevel.cancel_shielded_checkpoint()
            return False
        deleted = await self._delete_one(kv.key, held.key)
        if deleted:
            await self._wait_for(lambda: self._view.get(entry_id) is None, "the unregistration")
        return deleted

    async def update(
        self, entry: Entry | int, meta: Mapping[str, object], *, merge: bool = False
    ) -> Entry:
        """Replace (or merge into) an entry's metadata in etcd; returns the updated entry.

        A compare-and-swap on the entry's key (same creation, same last modification),
        keeping its lease; retried if another process updated it meanwhile. Returns once
        the view shows the update. A checkpoint; if cancelled, the update may or may not
        have been applied.

        Raises:
            KeyError: the entry is not registered.
            TypeError: ``meta`` is not a mapping of JSON values, or an index value is bad.
        """
        entry_id = entry if isinstance(entry, int) else entry.id
        await trio.lowlevel.checkpoint_if_cancelled()
        while True:
            kv = self._kv_of.get(entry_id)
            old = self._view.get(entry_id)
            if kv is None or old is None:
                raise KeyError(f"entry {entry_id} is not registered")
            plain = _check_meta({**old.meta, **meta} if merge else meta)
            for index in self._view.indexes:
                index.values_of(plain)
            doc = json.loads(kv.value)
            doc["m"] = plain
            result = await self._client.txn(
                [Compare.mod_revision(kv.key) == kv.mod_revision],
                [PutOp(kv.key, json.dumps(doc).encode(), lease=kv.lease)],
                [GetOp(kv.key)],
            )
            if result.succeeded:
                await self._wait_revision(result.revision, "the metadata update")
                new = self._view.get(entry_id)
                if new is None:
                    raise KeyError(f"entry {entry_id} is not registered")
                return new
            answer = result.responses[0]
            if not isinstance(answer, RangeResult) or not answer.kvs:
                raise KeyError(f"entry {entry_id} is not registered")
            # changed meanwhile: wait for the view to catch up, then retry on fresh data
            await self._wait_revision(answer.kvs[0].mod_revision, "a concurrent update")

    # ------------------------------------------------------------------ reads

    def lookup(self, key: Hashable) -> Entry | None:
        """The oldest entry under ``key`` in the local view, or ``None``. O(1)."""
        return self._view.lookup(key)

    def lookup_all(self, key: Hashable) -> tuple[Entry, ...]:
        """Every entry under ``key`` in the local view, oldest first."""
        return self._view.lookup_all(key)

    def get(self, entry_id: int) -> Entry | None:
        """The entry with this id in the local view, or ``None``."""
        return self._view.get(entry_id)

    def select(
        self,
        all_of: Mapping[str, Hashable] | None = None,
        any_of: Iterable[tuple[str, Hashable]] | None = None,
        where: Callable[[Entry], bool] | None = None,
        *,
        limit: int = 100,
        after: int | None = None,
    ) -> Page:
        """Query the local view; as :meth:`trio_foundation.registry.Registry.select`."""
        return self._view.select(all_of, any_of, where, limit=limit, after=after)

    def watch(self, capacity: int = 1000) -> AbstractAsyncContextManager[RegistryWatch]:
        """Watch the view's changes (every process's registrations), bounded.

        As :meth:`trio_foundation.registry.Registry.watch`: at most ``capacity``
        events are buffered; beyond, a single ``Resync`` replaces them. Events come in
        etcd's revision order; a reload after compaction reports the difference.
        """
        return self._view.watch(capacity)


@asynccontextmanager
async def _single(
    batch: AbstractAsyncContextManager[tuple[Entry, ...]],
) -> AsyncIterator[Entry]:
    async with batch as entries:
        yield entries[0]


@asynccontextmanager
async def open_etcd_registry(
    client: EtcdClient,
    *,
    prefix: str,
    keys: Literal["unique", "duplicate"] = "unique",
    indexes: Sequence[Index] = (),
    ttl: int = 10,
    max_entries: int = 1_000_000,
    batch_limit: int = MAX_BATCH,
    max_watchers: int = 1000,
) -> AsyncIterator[EtcdRegistry]:
    """Open a registry stored in etcd under ``prefix``, with its view following etcd.

    ``async with open_etcd_registry(client, prefix="svc", indexes=[Index("node")]) as reg:``

    Entering loads the view (one ``range``) and starts the watch that follows it, in a
    nursery of this block; exiting stops it. Every process opening the same prefix with
    the same ``keys`` mode shares the registry.

    Args:
        prefix: the etcd key prefix (``PREFIX/e/`` holds entries, ``PREFIX/u/`` claims).
        keys: ``"unique"`` or ``"duplicate"``, as for the in-memory registry.
        indexes: the local view's secondary indexes.
        ttl: seconds an entry outlives a process that died or was cut off (>= 2).
        max_entries: registering beyond this many entries in the view is refused.
        batch_limit: the most entries of one batch (<= 64, etcd's transaction limit).
        max_watchers: the most open watches.

    Raises:
        ValueError: a bad argument.
        EtcdUnavailableError: the first load did not get an answer in time, or the
            follower lost etcd while the block ran (when the block failed at the
            same time, the block's exception propagates instead, with a note
            naming the follower's).
    """
    registry = EtcdRegistry(
        client,
        prefix,
        keys=keys,
        indexes=indexes,
        ttl=ttl,
        max_entries=max_entries,
        batch_limit=batch_limit,
        max_watchers=max_watchers,
    )
    body_error: BaseException | None = None
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(registry._follow)
            try:
                yield registry
            except BaseException as exc:
                body_error = exc
                raise
            finally:
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        # give the block's (or the follower's) exception back unwrapped; when both
        # failed at once, the block's, with a note naming the follower's
        raise collapse(group, prefer=body_error) from None
