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
from typing import Final, final

import attrs
import trio

from .._errors import LeaseLostError, LeaseRefusedError
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

#: Refusals that a later attempt can overcome, as the cores word them
#: (:class:`~trio_foundation.protocols.lease_lock.LockServer` and
#: :class:`~trio_foundation.protocols.lease_lock.LockClient`). Every other
#: refusal (a ttl above ``max_ttl``, a client core out of step) is final and
#: raised at once as :class:`~trio_foundation.LeaseRefusedError`.
RETRYABLE_REFUSALS: Final = frozenset(
    {"held", "quiet period after restart", "grant arrived after its lease had lapsed"}
)


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    out: list[BaseException] = []
    for exc in group.exceptions:
        out.extend(_leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return out


@asynccontextmanager
async def _running(node: Node) -> AsyncIterator[None]:
    """Run ``node`` for the body; the body's exception propagates unwrapped.

    The node's loop ends only by cancellation, so a nursery error made of the
    body's exception and ``Cancelled`` (from an enclosing scope) is the body's
    exception alone; anything else (a core that raised) propagates as the group.
    """
    body_error: BaseException | None = None
    unwrapped: BaseException | None = None
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(node.run)
            try:
                yield
            except BaseException as exc:
                body_error = exc
                raise
            finally:
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        leaves = _leaves(group)
        if body_error is None or not any(leaf is body_error for leaf in leaves):
            raise
        if not all(leaf is body_error or isinstance(leaf, trio.Cancelled) for leaf in leaves):
            raise
        unwrapped = body_error
    if unwrapped is not None:
        raise unwrapped  # outside the handler, so the group is not its __context__


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

    def _submit(self, op: str) -> None:
        # The connection's loop may already be gone when the same cancellation
        # tears down the connection and the caller: the request still goes out.
        if self._node.running:
            self._node.submit(op)
        else:
            self._node.submit_final(op)

    def _release(self, token: int) -> None:
        lease = self._core.lease
        if self._core.state == "held" and lease is not None and lease.token == token:
            self._submit("release")

    @asynccontextmanager
    async def acquire(self, *, ttl: float, margin: float | None = None) -> AsyncIterator[Lease]:
        """Hold the lock for the body of an ``async with``.

        Waits (retrying with jittered backoff while the lock is held by another
        client or the server is in its quiet period) until the lease is
        granted. The body runs in a cancel scope cancelled ``margin`` seconds
        before the lease's safe deadline unless a renewal moves it.

        Args:
            ttl: the lease's duration in seconds of the server's clock; the
                client uses ``ttl * (1 - max_drift) / (1 + max_drift)`` of it.
            margin: seconds before the safe deadline at which the body is
                cancelled, leaving it time to stop acting; default a tenth of
                the lease's validity.

        Raises:
            ValueError: ``ttl`` or ``margin`` out of range.
            RuntimeError: this client already holds or is acquiring the lock,
                or its connection is closed.
            LeaseRefusedError: the server refused in a way retrying cannot
                change (a ttl above its ``max_ttl``); raised at once.
            LeaseLostError: the lease could not be renewed and the body was
                cancelled before its deadline.

        Cancellation: waiting for the grant is a checkpoint. If cancelled
        there, the request is abandoned; a grant that the connection already
        took for it is released at once, and one still in flight is ignored
        and expires on the server after ``ttl``. On every exit of the body
        (normal, exception, cancellation, the connection torn down by the same
        cancellation) the lease is released: one message, never blocking.
        Exceptions from the body propagate unchanged.
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
        if not self._node.running:
            raise RuntimeError(f"the connection of client {self.node_id} is closed")
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
                self._release(lease.token)
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
                # The connection may have taken the grant in the very batch in
                # which we were cancelled: then the lease is ours, give it back.
                late = self._node.forget(key)
                if self._core.state == "acquiring":
                    self._submit("abort")
                elif late is not None and late.ok and isinstance(late.value, LeaseInfo):
                    self._release(late.value.token)
                raise
            if reply.ok:
                assert isinstance(reply.value, LeaseInfo)
                return reply.value
            reason = str(reply.value)
            if reason not in RETRYABLE_REFUSALS:
                raise LeaseRefusedError(self.node_id, reason)
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

        Starting the client is a checkpoint. On exit (normal, exception or
        cancellation) the client's task stops; a lease still held by a body
        inside has been released by then. Exceptions from the body propagate
        unchanged (not wrapped in an ``ExceptionGroup``).
        """
        if not retry_delay > 0:
            raise ValueError(f"retry_delay must be > 0, got {retry_delay!r}")
        node_id = next(self._ids)
        core = LockClient(
            node_id, server=SERVER_NODE, max_drift=max_drift, retry_interval=retry_interval
        )
        node = Node(node_id, core, self.network)
        async with _running(node):
            yield LeaseLock(node, core, retry_delay=retry_delay, rng=random.Random(seed))


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

    Starting the server is a checkpoint. On exit (normal, exception or
    cancellation) the server stops; clients still connected then get no
    answers and their leases lapse. Exceptions from the body propagate
    unchanged (not wrapped in an ``ExceptionGroup``).
    """
    network = LocalNetwork(capacity=capacity)
    node = Node(SERVER_NODE, LockServer(SERVER_NODE, max_ttl=max_ttl), network, storage=storage)
    async with _running(node):
        yield LockService(network, node)
