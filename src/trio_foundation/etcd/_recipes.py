"""The lease lock and leader election on etcd, with etcd's own recipes.

Both are etcd's ``clientv3/concurrency`` algorithms (``Mutex.Lock`` and
``Election.Campaign``): each contender writes a key ``PREFIX/NAME/<lease id>``
attached to its lease; the contenders are ordered by the key's *create
revision*, and one leads (holds the lock) when no key of the same name was
created before its own. A contender waits for the deletion of the key just
before its own (not for every change, so a release wakes one waiter). When a
holder's lease ends — released, revoked, or expired because its process died
or was cut off — etcd deletes the key and the next contender goes ahead.

Fencing token: the create revision of the holder's key. etcd's revision is
cluster-wide and strictly increasing, so every later acquisition of any lock
on the cluster gets a larger token — the same guarantee the project's own
lock server gives.

Safety relies on the client stopping work before etcd can expire its lease:
the body runs inside :meth:`EtcdClient.lease`, whose deadline is the send time
of the last acknowledged keep-alive plus the granted ttl, minus a margin
(assumption: etcd's leader and this process measure one ttl at the same rate
to within the margin; etcd itself makes this assumption). A stale holder's
writes are still refused by a :class:`~trio_foundation.FencedResource` thanks
to the token.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Final, final

import attrs
import trio
from trio_util import AsyncValue

from .._errors import LeadershipLostError, LeaseLostError
from ..coordination.lease_lock import Lease
from ._client import EtcdClient, EtcdLease, collapse
from ._errors import EtcdLeaseLostError
from ._types import Compare, GetOp, PutOp, RangeResult

__all__ = ["EtcdElection", "EtcdLock", "Leadership", "open_etcd_election"]

DEFAULT_PREFIX: Final = "/trio-foundation/"


def _validate_name(kind: str, name: str) -> str:
    if not isinstance(name, str):
        raise TypeError(f"{kind} name must be a str, got {type(name).__name__}")
    if not name or "/" in name:
        raise ValueError(f"{kind} name must be non-empty and contain no '/', got {name!r}")
    return name


async def _wait_deleted(client: EtcdClient, key: bytes, after_revision: int) -> None:
    """Return once ``key`` is deleted at a revision after ``after_revision``."""
    async with client.watch(key, start_revision=after_revision + 1) as events:
        async for event in events:
            if event.type == "DELETE":
                return


async def _campaign(client: EtcdClient, prefix: bytes, lease: EtcdLease, value: bytes) -> int:
    """Enter the queue under ``prefix`` and wait until first in it; returns our create revision.

    A checkpoint; cancelling it leaves our key in place until the lease ends (the
    caller's :meth:`EtcdClient.lease` revokes it on the way out).
    """
    mine = prefix + f"{lease.id:016x}".encode()
    entered = await client.txn(
        [Compare.create_revision(mine) == 0], [PutOp(mine, value, lease=lease.id)], [GetOp(mine)]
    )
    if entered.succeeded:
        my_revision = entered.revision
    else:
        (found,) = entered.responses
        assert isinstance(found, RangeResult) and found.kvs
        my_revision = found.kvs[0].create_revision
    while True:
        ahead = await client.range(
            prefix,
            prefix=True,
            limit=1,
            sort=("CREATE", "DESCEND"),
            max_create_revision=my_revision - 1,
            keys_only=True,
        )
        if not ahead.kvs:
            return my_revision
        await _wait_deleted(client, ahead.kvs[0].key, ahead.revision)


@final
class EtcdLock:
    """The lease lock on etcd, with the API of :class:`~trio_foundation.LeaseLock`.

    ::

        async with open_etcd_client("127.0.0.1:2379") as etcd:
            lock = EtcdLock(etcd)
            async with lock.acquire(ttl=5, name="jobs") as lease:
                resource.write(lease.token, data)

    Args:
        client: an open :class:`EtcdClient`.
        prefix: where lock keys live (``PREFIX + "lock/" + NAME + "/"``).
        margin: seconds of slack between the body's cancellation and the
            earliest moment etcd may expire the lease (default ``min(1, ttl/4)``).
    """

    def __init__(
        self, client: EtcdClient, *, prefix: str = DEFAULT_PREFIX, margin: float | None = None
    ) -> None:
        self._client = client
        self._prefix = prefix.rstrip("/") + "/lock/"
        self._margin = margin

    @asynccontextmanager
    async def acquire(self, *, ttl: float, name: str = "default") -> AsyncIterator[Lease]:
        """Wait for the lock ``name``, hold it for the block, release it on exit.

        Args:
            ttl: seconds; rounded up to etcd's whole seconds (at least 1).
            name: which lock (many independent locks share one etcd).

        Yields:
            a :class:`~trio_foundation.Lease` whose ``token`` is the fencing token
            and whose ``deadline`` moves with each acknowledged keep-alive.

        A checkpoint. Cancelled while waiting: the queue entry is removed (its
        lease revoked) before the cancellation propagates. The block is
        cancelled if the lease can no longer be proved alive, and
        :class:`~trio_foundation.LeaseLostError` is raised from the ``async with``.

        Raises:
            LeaseLostError: (an :class:`EtcdLeaseLostError`) the lease ended while
                waiting or holding.
            EtcdUnavailableError: etcd could not be reached within the client's timeout.
            ValueError: a ttl < 0 or a bad name.
        """
        _validate_name("lock", name)
        if not (isinstance(ttl, int | float) and math.isfinite(ttl) and ttl > 0):
            raise ValueError(f"ttl must be > 0 seconds, got {ttl!r}")
        seconds = max(1, math.ceil(ttl))
        queue = (self._prefix + name + "/").encode()
        token = 0
        lease: Lease | None = None

        def renewed(held: EtcdLease) -> None:
            if lease is not None:
                lease.deadline = held.deadline
                lease.renewals += 1

        try:
            async with self._client.lease(seconds, margin=self._margin, on_renew=renewed) as held:
                token = await _campaign(self._client, queue, held, b"")
                lease = Lease(token=token, ttl=held.ttl, deadline=held.deadline)
                yield lease
        except EtcdLeaseLostError as exc:
            if token:
                raise EtcdLeaseLostError(exc.lease_id, exc.reason, token=token) from None
            raise


@final
@attrs.frozen
class Leadership:
    """This process's term as leader, inside ``async with election.leadership(...)``.

    Attributes:
        candidate: the value this process campaigned with (its id).
        revision: the create revision of its campaign key — a fencing token for
            work done as leader (a later leader always has a larger one).
        lease: the etcd lease backing it (``lease.deadline`` moves on renewal).
    """

    candidate: str
    revision: int
    lease: EtcdLease


@final
class EtcdElection:
    """Leader election on etcd; open one with :func:`open_etcd_election`.

    Attributes:
        leader: an observable (``trio_util.AsyncValue``) holding the current
            leader's candidate string, or ``None`` when there is none. Wait for a
            change with ``await election.leader.wait_transition()``.
    """

    def __init__(self, client: EtcdClient, name: str, prefix: str, margin: float | None) -> None:
        self._client = client
        self.name = name
        self._queue = (prefix.rstrip("/") + "/election/" + name + "/").encode()
        self._margin = margin
        self.leader: AsyncValue[str | None] = AsyncValue(None)

    async def _observe(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        client = self._client
        started = False
        while True:
            first = await client.range(self._queue, prefix=True, limit=1, sort=("CREATE", "ASCEND"))
            self.leader.value = first.kvs[0].value.decode() if first.kvs else None
            if not started:
                started = True
                task_status.started()
            # wait for any change under the prefix, then re-read the head of the queue
            async with client.watch(
                self._queue, prefix=True, start_revision=first.revision + 1
            ) as events:
                async for _ in events:
                    break

    @asynccontextmanager
    async def leadership(self, candidate: str, *, ttl: float = 5.0) -> AsyncIterator[Leadership]:
        """Campaign, and run the block only while this process leads.

        The block starts once every earlier candidate's key is gone, and is
        cancelled before etcd could expire this candidate's lease (then
        :class:`~trio_foundation.LeadershipLostError` is raised from the
        ``async with``) — so two blocks never run as leader at once, under the
        clock assumption of :meth:`EtcdClient.lease`. On exit the lease is
        revoked and the next candidate leads.

        A checkpoint; cancelled while campaigning, the candidacy is withdrawn.

        Raises:
            ValueError: ``candidate`` is not a non-empty str, or ``ttl`` is not a
                finite number of seconds > 0.
            LeadershipLostError: the lease behind the leadership ended while this
                candidate led.
            EtcdLeaseLostError: (a :class:`~trio_foundation.LeaseLostError`) the
                candidate's lease could not be renewed in time, or etcd reported it ended,
                while it was still campaigning: it never led, nothing is held, and
                a later ``leadership()`` call campaigns afresh.
            EtcdUnavailableError: etcd could not be reached within the client's timeout.
        """
        if not isinstance(candidate, str) or not candidate:
            raise ValueError(f"candidate must be a non-empty str, got {candidate!r}")
        if not (isinstance(ttl, int | float) and math.isfinite(ttl) and ttl > 0):
            raise ValueError(f"ttl must be > 0 seconds, got {ttl!r}")
        leading = False
        try:
            async with self._client.lease(max(1, math.ceil(ttl)), margin=self._margin) as held:
                revision = await _campaign(self._client, self._queue, held, candidate.encode())
                leading = True
                yield Leadership(candidate=candidate, revision=revision, lease=held)
        except LeaseLostError as exc:
            if leading:
                raise LeadershipLostError(self.name, candidate, exc.reason) from exc
            raise


@asynccontextmanager
async def open_etcd_election(
    client: EtcdClient,
    name: str,
    *,
    prefix: str = DEFAULT_PREFIX,
    margin: float | None = None,
) -> AsyncIterator[EtcdElection]:
    """Open the election ``name``; its ``leader`` is kept current while the block runs.

    The observer is a task in a nursery this context owns; it has read the
    current leader before the block starts. Its failure (etcd unreachable for
    the client's timeout) propagates out of the ``async with``. When the block
    and the observer fail at the same time (a cut that ends a leadership also
    ends the observer's watch), the block's exception propagates, with a note
    naming the observer's.
    """
    _validate_name("election", name)
    election = EtcdElection(client, name, prefix, margin)
    body_error: BaseException | None = None
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(election._observe)
            try:
                yield election
            except BaseException as exc:
                body_error = exc
                raise
            finally:
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        raise collapse(group, prefer=body_error) from None
