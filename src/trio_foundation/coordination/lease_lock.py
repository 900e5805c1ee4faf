"""The lease lock's Trio API.

::

    async with open_lock_service(max_ttl=30) as service:
        async with service.connect(max_drift=0.001) as lock:
            async with lock.acquire(ttl=5) as lease:
                resource.write(lease.token, data)   # fenced by the token

The body of ``lock.acquire`` runs in a cancel scope whose deadline is kept
``margin`` seconds before the lease's safe local deadline; the lease is renewed
in the background while the body runs, and each acknowledged renewal moves the
deadline. If renewals stop being acknowledged the body is cancelled before the
lease can expire and :class:`~trio_foundation.LeaseLostError` is raised from
the ``async with``. The lease is released on exit, including on cancellation.

The protocol is :mod:`trio_foundation.protocols.lease_lock` (model-checked as
``specs/LeaseLock.tla``); this module only runs its cores on a
:class:`~trio_foundation.runtime.local.LocalNetwork`.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import final

import attrs
import trio

from .._errors import LeaseLostError
from ..protocols.lease_lock import FencedResource, LeaseInfo, LockClient, LockServer
from ..runtime.local import LocalNetwork, Node, NodeStorage

__all__ = [
    "FencedResource",
    "Lease",
    "LeaseLock",
    "LockService",
    "open_lock_service",
]

SERVER_NODE = 0


@final
@attrs.define
class Lease:
    """A held lease, as seen inside ``async with lock.acquire(...) as lease``.

    Attributes:
        token: the fencing token; present it to every fenced resource you write.
        ttl: the granted ttl in seconds.
        deadline: the Trio time until which the lease is safely held (moves on renewal).
        renewals: how many renewals have been acknowledged.
    """

    token: int
    ttl: float
    deadline: float
    renewals: int = 0


@final
class LeaseLock:
    """A client of a :class:`LockService`; get one with :meth:`LockService.connect`."""

    def __init__(
        self, node: Node, core: LockClient, *, retry_delay: float, rng: random.Random
    ) -> None:
        self._node = node
        self._core = core
        self._retry_delay = retry_delay
        self._rng = rng
        self._busy = False

    @property
    def node_id(self) -> int:
        """This client's node id."""
        return self._node.node_id

    @asynccontextmanager
    async def acquire(self, *, ttl: float, margin: float | None = None) -> AsyncIterator[Lease]:
        """Hold the lock for the body of an ``async with``.

        Waits (retrying with jittered backoff) until the lease is granted. The
        body runs in a cancel scope cancelled ``margin`` seconds before the
        lease's safe deadline unless a renewal moves it.

        Args:
            ttl: the lease's duration in seconds of the server's clock; the
                client uses ``ttl * (1 - max_drift) / (1 + max_drift)`` of it.
            margin: seconds before the safe deadline at which the body is
                cancelled, leaving it time to stop acting; default a tenth of
                the lease's validity.

        Raises:
            ValueError: ``ttl`` or ``margin`` out of range.
            RuntimeError: this client already holds or is acquiring the lock.
            LeaseLostError: the lease could not be renewed and the body was
                cancelled before its deadline.

        Waiting for the grant is a checkpoint; if cancelled there, the request is
        abandoned (a grant arriving later is ignored and expires on the server).
        """
        if not (isinstance(ttl, (int, float)) and ttl > 0):
            raise ValueError(f"ttl must be > 0, got {ttl!r}")
        validity = self._core.validity(float(ttl))
        if margin is None:
            margin = validity / 10
        if not 0 <= margin < validity:
            raise ValueError(f"margin must be in [0, {validity}) for ttl {ttl}, got {margin!r}")
        if self._busy:
            raise RuntimeError("this client already holds or is acquiring the lock")
        self._busy = True
        try:
            info = await self._wait_for_grant(float(ttl))
            lease = Lease(info.token, info.ttl, info.deadline)
            scope = trio.CancelScope(deadline=info.deadline - margin)

            def follow() -> None:
                current = self._core.lease
                if current is not None and current.token == lease.token:
                    if current.deadline > lease.deadline:
                        lease.renewals += 1
                        lease.deadline = current.deadline
                        scope.deadline = current.deadline - margin
                elif not scope.cancel_called:
                    scope.cancel()

            self._node.after_event.append(follow)
            try:
                with scope:
                    yield lease
            finally:
                self._node.after_event.remove(follow)
                if self._core.state == "held":
                    self._node.submit("release")
            if scope.cancelled_caught:
                raise LeaseLostError(
                    lease.token, "not renewed before the safe deadline; the body was cancelled"
                )
        finally:
            self._busy = False

    async def _wait_for_grant(self, ttl: float) -> LeaseInfo:
        delay = self._retry_delay
        while True:
            key = self._node.submit("acquire", ttl)
            try:
                reply = await self._node.wait_reply(key)
            except trio.Cancelled:
                if self._core.state == "acquiring":
                    self._node.submit("abort")
                self._node.forget(key)
                raise
            if reply.ok:
                assert isinstance(reply.value, LeaseInfo)
                return reply.value
            await trio.sleep(delay * (0.5 + self._rng.random()))
            delay = min(delay * 2, ttl)


@final
class LockService:
    """A running lock server and the network its clients reach it on."""

    def __init__(self, network: LocalNetwork, node: Node) -> None:
        self.network = network
        self._server_node = node
        self._ids = itertools.count(SERVER_NODE + 1)

    @property
    def server(self) -> LockServer:
        """The server core (read-only use: tokens granted, current holder)."""
        core = self._server_node.core
        assert isinstance(core, LockServer)
        return core

    @asynccontextmanager
    async def connect(
        self,
        *,
        max_drift: float = 0.001,
        retry_interval: float = 0.5,
        retry_delay: float = 0.05,
        seed: int | None = None,
    ) -> AsyncIterator[LeaseLock]:
        """A new client, running in a task of its own until the ``async with`` ends.

        Args:
            max_drift: the bound on clock drift the safety argument assumes.
            retry_interval: seconds before an unanswered request is re-sent.
            retry_delay: initial backoff after a refusal (doubles, jittered).
            seed: seed for the backoff jitter.
        """
        if not retry_delay > 0:
            raise ValueError(f"retry_delay must be > 0, got {retry_delay!r}")
        node_id = next(self._ids)
        core = LockClient(
            node_id, server=SERVER_NODE, max_drift=max_drift, retry_interval=retry_interval
        )
        node = Node(node_id, core, self.network)
        async with trio.open_nursery() as nursery:
            await nursery.start(node.run)
            try:
                yield LeaseLock(node, core, retry_delay=retry_delay, rng=random.Random(seed))
            finally:
                nursery.cancel_scope.cancel()


@asynccontextmanager
async def open_lock_service(
    *,
    max_ttl: float = 60.0,
    capacity: int = 1024,
    storage: NodeStorage | None = None,
) -> AsyncIterator[LockService]:
    """Run a lock server for the body of an ``async with``.

    Args:
        max_ttl: the longest lease a client may ask for.
        capacity: each node's inbox size.
        storage: the server's durable storage; pass the one from a previous
            service to restart it (it then grants nothing for the longest ttl
            it ever granted, and its tokens keep increasing).
    """
    network = LocalNetwork(capacity=capacity)
    node = Node(SERVER_NODE, LockServer(SERVER_NODE, max_ttl=max_ttl), network, storage=storage)
    async with trio.open_nursery() as nursery:
        await nursery.start(node.run)
        try:
            yield LockService(network, node)
        finally:
            nursery.cancel_scope.cancel()
