"""The client of a lock server process: ``connect_lock_service("tcp://HOST:PORT")``.

::

    async with connect_lock_service("tcp://127.0.0.1:7420", secret_file="lock.secret") as locks:
        async with locks.acquire(ttl=10, name="reports") as lease:
            resource.write(lease.token, data)      # fenced by the token

Same semantics as :meth:`trio_foundation.coordination.lease_lock.LeaseLock.acquire`
(the in-process service): the body runs in a cancel scope cancelled ``margin``
seconds before the lease's safe local deadline, which each acknowledged
renewal moves; if renewals stop, the body is cancelled before the lease can
expire and :class:`~trio_foundation.LeaseLostError` is raised; the lease is
released on every exit. Each lock name runs its own
:class:`~trio_foundation.protocols.lease_lock.LockClient` core on a
:class:`~trio_foundation.runtime.driver.NodeDriver` over the connection's TCP
transport. (This is a separate small class rather than ``LeaseLock`` itself,
which is tied to the in-process ``Node``; both follow the same algorithm.)
"""

from __future__ import annotations

import math
import random
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Final, final

import trio

from .._errors import LeaseLostError
from ..protocols.lease_lock import LeaseInfo, LockClient
from ..runtime.driver import NodeDriver
from ..runtime.tcp import TcpTransport, open_tcp_transport, parse_address
from ..runtime.transport import Envelope
from .lease_lock import Lease
from .lock_wire import (
    DEFAULT_LOCK,
    LOCK_PROTOCOL,
    SERVER_NODE,
    LockChannel,
    check_lock_name,
    from_wire,
)

__all__ = ["RETRYABLE_REFUSALS", "RemoteLockService", "open_remote_lock_service"]

RETRYABLE_REFUSALS: Final = frozenset(
    {"held", "quiet period after restart", "grant arrived after its lease had lapsed"}
)
"""Refusals a later attempt can overcome; any other is raised as ``ValueError``."""


def _ignore(data: Any) -> None:
    """A client keeps no durable state: its node id is fresh per connection."""


@final
class _NamedLock:
    def __init__(self, core: LockClient, driver: NodeDriver) -> None:
        self.core = core
        self.driver = driver
        self.busy = False


@final
class RemoteLockService:
    """A connection to a lock server process; get one from :func:`open_remote_lock_service`.

    Args: see :func:`open_remote_lock_service`.
    """

    def __init__(
        self,
        tcp: TcpTransport,
        nursery: trio.Nursery,
        *,
        max_drift: float,
        retry_interval: float,
        retry_delay: float,
        max_locks: int,
        rng: random.Random,
    ) -> None:
        self._tcp = tcp
        self._nursery = nursery
        self._max_drift = max_drift
        self._retry_interval = retry_interval
        self._retry_delay = retry_delay
        self._max_locks = max_locks
        self._rng = rng
        self._locks: dict[str, _NamedLock] = {}

    @property
    def node_id(self) -> int:
        """This connection's node id (random)."""
        return self._tcp.node_id

    def _on_message(self, envelope: Envelope) -> None:
        name, msg = from_wire(envelope.msg)
        lock = self._locks.get(name)
        if lock is not None:
            lock.driver.deliver(envelope.src, msg)

    def _lock(self, name: str) -> _NamedLock:
        lock = self._locks.get(name)
        if lock is None:
            if len(self._locks) >= self._max_locks:
                raise RuntimeError(f"this connection already used {self._max_locks} lock names")
            core = LockClient(
                self._tcp.node_id,
                server=SERVER_NODE,
                max_drift=self._max_drift,
                retry_interval=self._retry_interval,
            )
            driver = NodeDriver(
                core, LockChannel(self._tcp, name), persist=_ignore, pull=False, rng=self._rng
            )
            driver.start_in(self._nursery)
            lock = self._locks[name] = _NamedLock(core, driver)
        return lock

    @asynccontextmanager
    async def acquire(
        self, *, ttl: float, name: str = DEFAULT_LOCK, margin: float | None = None
    ) -> AsyncIterator[Lease]:
        """Hold the lock ``name`` for the body of an ``async with``.

        Waits (re-sending every ``retry_interval``, backing off with jitter
        while the lock is held or the server is in its quiet period) until the
        lease is granted. The body runs in a cancel scope cancelled ``margin``
        seconds before the lease's safe deadline unless a renewal moves it.

        Args:
            ttl: the lease's duration in seconds of the server's clock; the
                client uses ``ttl * (1 - max_drift) / (1 + max_drift)`` of it.
            name: the lock's name (1 to 256 characters); default ``"default"``.
            margin: seconds before the safe deadline at which the body is
                cancelled; default a tenth of the lease's validity.

        Raises:
            ValueError: ``ttl``, ``name`` or ``margin`` out of range, or the
                server refused for good (a ttl above its ``max_ttl``, too many
                locks).
            RuntimeError: this connection already holds or is acquiring ``name``.
            LeaseLostError: the lease could not be renewed and the body was
                cancelled before its deadline.

        Cancellation: waiting for the grant is a checkpoint; if cancelled
        there the request is withdrawn, a grant the connection already took is
        released at once, and one still in flight is ignored (it expires on
        the server after ``ttl``). On every exit of the body the lease is
        released: one message, never blocking.
        """
        check_lock_name(name)
        if not (isinstance(ttl, (int, float)) and not isinstance(ttl, bool) and ttl > 0):
            raise ValueError(f"ttl must be > 0, got {ttl!r}")
        lock = self._lock(name)
        validity = lock.core.validity(float(ttl))
        if margin is None:
            margin = validity / 10
        if not 0 <= margin < validity:
            raise ValueError(f"margin must be in [0, {validity}) for ttl {ttl}, got {margin!r}")
        if lock.busy:
            raise RuntimeError(f"this connection already holds or is acquiring {name!r}")
        lock.busy = True
        try:
            info = await self._wait_for_grant(lock, float(ttl))
            lease = Lease(info.token, info.ttl, info.deadline)
            scope = trio.CancelScope(deadline=info.deadline - margin)

            def follow() -> None:
                current = lock.core.lease
                if current is not None and current.token == lease.token:
                    if current.deadline > lease.deadline:
                        lease.renewals += 1
                        lease.deadline = current.deadline
                        scope.deadline = current.deadline - margin
                elif not scope.cancel_called:
                    scope.cancel()

            lock.driver.after_event.append(follow)
            try:
                with scope:
                    yield lease
            finally:
                lock.driver.after_event.remove(follow)
                self._release(lock, lease.token)
            if scope.cancelled_caught:
                raise LeaseLostError(
                    lease.token, "not renewed before the safe deadline; the body was cancelled"
                )
        finally:
            lock.busy = False

    @staticmethod
    def _release(lock: _NamedLock, token: int) -> None:
        current = lock.core.lease
        if (
            lock.driver.running
            and lock.core.state == "held"
            and current is not None
            and current.token == token
        ):
            lock.driver.submit("release")

    async def _wait_for_grant(self, lock: _NamedLock, ttl: float) -> LeaseInfo:
        delay = self._retry_delay
        while True:
            key = lock.driver.submit("acquire", ttl)
            try:
                reply = await lock.driver.wait_reply(key)
            except trio.Cancelled:
                if lock.driver.running:
                    if lock.core.state == "acquiring":
                        lock.driver.submit("abort")
                    granted = lock.driver.forget(key)
                    if granted is not None and granted.ok:
                        assert isinstance(granted.value, LeaseInfo)
                        self._release(lock, granted.value.token)
                raise
            if reply.ok:
                assert isinstance(reply.value, LeaseInfo)
                return reply.value
            if reply.value not in RETRYABLE_REFUSALS:
                raise ValueError(f"the lock server refused: {reply.value}")
            await trio.sleep(delay * (0.5 + self._rng.random()))
            delay = min(delay * 2, ttl)


@asynccontextmanager
async def open_remote_lock_service(
    address: str,
    *,
    secret: bytes | None = None,
    timeout: float = 5.0,  # noqa: ASYNC109 - the connection timeout of the client
    max_drift: float = 0.001,
    retry_interval: float = 0.5,
    retry_delay: float = 0.05,
    max_locks: int = 1024,
    seed: int | None = None,
) -> AsyncIterator[RemoteLockService]:
    """Connect to the lock server at ``address`` (``HOST:PORT`` or ``tcp://HOST:PORT``).

    Entering waits until the connection's handshake is done (at most
    ``timeout`` seconds); afterwards the connection reconnects by itself with
    jittered backoff, and requests lost with a connection are re-sent by the
    cores. A checkpoint; if cancelled on entry, nothing is left running. On
    exit the connection is closed and every lock it held is released (one
    message each, best effort: an unreleased lease expires after its ttl).

    Args:
        address: the server's address.
        secret: the shared secret; ``None``: no authentication (must match the server).
        timeout: seconds to wait for the first connection.
        max_drift: the bound on clock drift the lease's safety assumes.
        retry_interval: seconds before an unanswered request is re-sent.
        retry_delay: first backoff after a refusal (doubles, jittered).
        max_locks: bound on the lock names this connection uses.
        seed: seed of the backoff jitter and the node id (tests).

    Raises:
        ValueError: a malformed address or parameter.
        ConnectionError: no connection within ``timeout``.
    """
    host, port = parse_address(address, scheme="tcp" if "://" in address else None)
    if not (isinstance(timeout, int | float) and math.isfinite(timeout) and timeout > 0):
        raise ValueError(f"timeout must be > 0 seconds, got {timeout!r}")
    if not retry_delay > 0:
        raise ValueError(f"retry_delay must be > 0, got {retry_delay!r}")
    rng = random.Random(seed) if seed is not None else random.Random()
    node_id = rng.randrange(1, 2**63) if seed is not None else secrets.randbelow(2**63 - 1) + 1
    holder: list[RemoteLockService] = []

    def on_message(envelope: Envelope) -> None:
        if holder:
            holder[0]._on_message(envelope)

    body_error: BaseException | None = None
    unreachable: str | None = None
    try:
        async with trio.open_nursery() as nursery:
            try:
                async with open_tcp_transport(
                    LOCK_PROTOCOL,
                    node_id,
                    peers={SERVER_NODE: (host, port)},
                    secret=secret,
                    on_message=on_message,
                    rng=rng,
                ) as tcp:
                    service = RemoteLockService(
                        tcp,
                        nursery,
                        max_drift=max_drift,
                        retry_interval=retry_interval,
                        retry_delay=retry_delay,
                        max_locks=max_locks,
                        rng=rng,
                    )
                    holder.append(service)
                    with trio.move_on_after(timeout) as waiting:
                        await tcp.wait_connected(SERVER_NODE)
                    if waiting.cancelled_caught:
                        stats = tcp.statistics()
                        unreachable = (
                            f"no connection to the lock server at {host}:{port} within"
                            f" {timeout:g} s ({stats.dial_failures} failed dials,"
                            f" drops {dict(stats.drops)})"
                        )
                    else:
                        try:
                            yield service
                        except BaseException as exc:
                            body_error = exc
                            raise
            finally:
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        # The body's own exception comes back wrapped by the nurseries: unwrap it.
        if body_error is None or _carried(group) != _carried(body_error):
            raise
    else:
        if unreachable is not None:
            raise ConnectionError(unreachable)
        return
    raise body_error


def _carried(exc: BaseException) -> set[int]:
    """The ids of the exceptions other than ``Cancelled`` that ``exc`` carries."""
    if isinstance(exc, BaseExceptionGroup):
        return set().union(*(_carried(e) for e in exc.exceptions))
    return set() if isinstance(exc, trio.Cancelled) else {id(exc)}
