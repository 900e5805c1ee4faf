"""The lease lock's Trio API: one client over any transport, and the in-process service.

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

:class:`LeaseLock` is the one client, whatever carries its messages: each lock
name it uses runs a :class:`~trio_foundation.protocols.lease_lock.LockClient`
core on a :class:`~trio_foundation.runtime.driver.NodeDriver`. The in-process
service (:func:`open_lock_service`) runs the server core and its clients'
drivers over a :class:`~trio_foundation.runtime.local.LocalNetwork`; the client
of a lock server process (``connect_lock_service("tcp://...")``,
:mod:`~trio_foundation.coordination.tcp_lock`) runs the same class over TCP.

The protocol is :mod:`trio_foundation.protocols.lease_lock` (model-checked as
``specs/LeaseLock.tla``).

Telemetry (pass ``telemetry=``, a :class:`~trio_foundation.telemetry.Telemetry`,
default :func:`~trio_foundation.telemetry.default_telemetry`; one dict lookup
per event when nobody listens): ``lease_lock.acquired``
(measurements ``wait`` seconds, ``ttl``; metadata ``name``, ``token``,
``client``), ``lease_lock.renewed`` (``renewals``), ``lease_lock.lost``,
``lease_lock.released`` (``held`` seconds) and ``lease_lock.refused``
(metadata ``reason``). See ``docs/telemetry.md``.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Final, final

import attrs
import trio

from .._errors import LeaseLostError, LeaseRefusedError
from ..protocols.lease_lock import FencedResource, LeaseInfo, LockClient, LockServer
from ..runtime.driver import NodeDriver, Transition
from ..runtime.local import LocalNetwork, LocalTransport, NodeStorage
from ..telemetry import Telemetry, default_telemetry
from .lock_wire import DEFAULT_LOCK, check_lock_name

__all__ = [
    "DEFAULT_LOCK",
    "RETRYABLE_REFUSALS",
    "FencedResource",
    "Lease",
    "LeaseLock",
    "LockService",
    "open_lock_service",
]

SERVER_NODE: Final = 0

#: Refusals that a later attempt can overcome, as the cores word them
#: (:class:`~trio_foundation.protocols.lease_lock.LockServer` and
#: :class:`~trio_foundation.protocols.lease_lock.LockClient`). Every other
#: refusal (a ttl above ``max_ttl``, a client core out of step, too many locks)
#: is final and raised at once as :class:`~trio_foundation.LeaseRefusedError`.
RETRYABLE_REFUSALS: Final = frozenset(
    {"held", "quiet period after restart", "grant arrived after its lease had lapsed"}
)


def _carried(exc: BaseException) -> set[int]:
    """The ids of the exceptions other than ``Cancelled`` that ``exc`` carries."""
    if isinstance(exc, BaseExceptionGroup):
        return set().union(*(_carried(e) for e in exc.exceptions))
    return set() if isinstance(exc, trio.Cancelled) else {id(exc)}


@asynccontextmanager
async def _running(driver: NodeDriver, transport: LocalTransport) -> AsyncIterator[None]:
    """Run ``driver`` for the body; the body's exception propagates unwrapped.

    The driver's loop ends only by cancellation, so a nursery error that
    carries just the body's exception (and ``Cancelled`` from an enclosing
    scope) is the body's exception; anything else (a core that raised)
    propagates as the group. The transport is closed when the driver stops.
    """
    body_error: BaseException | None = None
    unwrapped: BaseException | None = None
    try:
        with transport:
            async with trio.open_nursery() as nursery:
                await nursery.start(driver.run)
                try:
                    yield
                except BaseException as exc:
                    body_error = exc
                    raise
                finally:
                    nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        # trio rebuilds a group raised by the body (it splits Cancelled out),
        # so compare what the groups carry, not the group objects.
        if body_error is None or _carried(group) != _carried(body_error):
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
class LockHandle:
    """One lock name's client core and the driver that runs it (see :class:`LeaseLock`).

    Attributes:
        core: the name's :class:`~trio_foundation.protocols.lease_lock.LockClient`.
        driver: the :class:`~trio_foundation.runtime.driver.NodeDriver` running it.
        busy: whether a caller holds or is acquiring the lock through this client.
    """

    def __init__(self, core: LockClient, driver: NodeDriver) -> None:
        self.core = core
        self.driver = driver
        self.busy = False


@final
class LeaseLock:
    """A client of a lease lock service: named locks with fencing tokens.

    Get one from :meth:`LockService.connect` (in-process) or
    :func:`~trio_foundation.coordination.connect.connect_lock_service`
    (``tcp://``); both run this class, which differs only in how a lock
    name's driver is made.

    Args:
        node_id: this client's node id.
        open_lock: makes the :class:`LockHandle` of a lock name on first use
            (its driver started); raises ``ValueError`` for a name the
            service does not serve.
        retry_delay: first backoff after a retryable refusal (doubles, jittered).
        rng: the backoff jitter's randomness.
        max_locks: bound on the lock names this client uses.
        telemetry: where the ``lease_lock.*`` events go (``None``:
            :func:`~trio_foundation.telemetry.default_telemetry`, like the
            library's other components; an event nobody listens to costs one
            dict lookup).
    """

    def __init__(
        self,
        *,
        node_id: int,
        open_lock: Callable[[str], LockHandle],
        retry_delay: float,
        rng: random.Random,
        max_locks: int = 1024,
        telemetry: Telemetry | None = None,
    ) -> None:
        if not retry_delay > 0:
            raise ValueError(f"retry_delay must be > 0, got {retry_delay!r}")
        if not (isinstance(max_locks, int) and max_locks >= 1):
            raise ValueError(f"max_locks must be an int >= 1, got {max_locks!r}")
        self._node_id = node_id
        self._open_lock = open_lock
        self._retry_delay = retry_delay
        self._rng = rng
        self._max_locks = max_locks
        self._telemetry = default_telemetry() if telemetry is None else telemetry
        self._locks: dict[str, LockHandle] = {}

    @property
    def node_id(self) -> int:
        """This client's node id."""
        return self._node_id

    def handle(self, name: str) -> LockHandle | None:
        """The handle of lock ``name`` if this client has used it (inspection, tests)."""
        return self._locks.get(name)

    def _handle(self, name: str) -> LockHandle:
        lock = self._locks.get(name)
        if lock is None:
            if len(self._locks) >= self._max_locks:
                raise RuntimeError(f"this connection already used {self._max_locks} lock names")
            lock = self._locks[name] = self._open_lock(name)
        return lock

    def _emit(self, event: str, name: str, token: int | None, **measurements: float) -> None:
        telemetry = self._telemetry
        if telemetry.listening(event):
            telemetry.emit(
                event, measurements, {"name": name, "token": token, "client": self._node_id}
            )

    @staticmethod
    def _submit(lock: LockHandle, op: str) -> None:
        # The driver may already be stopped when the same cancellation tears
        # down the connection and the caller: the request still goes out.
        if lock.driver.running:
            lock.driver.submit(op)
        else:
            lock.driver.submit_final(op)

    async def _check_open(self, lock: LockHandle) -> None:
        # A cancellation that tears down the connection can stop its task
        # before the caller reaches a checkpoint: then the caller is cancelled,
        # not misusing a closed connection.
        if not lock.driver.running:
            await trio.lowlevel.checkpoint_if_cancelled()
            raise RuntimeError(f"the connection of client {self._node_id} is closed")

    def _release(self, lock: LockHandle, token: int) -> bool:
        lease = lock.core.lease
        if lock.core.state == "held" and lease is not None and lease.token == token:
            self._submit(lock, "release")
            return True
        return False

    @asynccontextmanager
    async def acquire(
        self, *, ttl: float, name: str = DEFAULT_LOCK, margin: float | None = None
    ) -> AsyncIterator[Lease]:
        """Hold the lock ``name`` for the body of an ``async with``.

        Waits (re-sending every ``retry_interval``, retrying with jittered
        backoff while the lock is held by another client or the server is in
        its quiet period) until the lease is granted. The body runs in a
        cancel scope cancelled ``margin`` seconds before the lease's safe
        deadline unless a renewal moves it.

        Args:
            ttl: the lease's duration in seconds of the server's clock; the
                client uses ``ttl * (1 - max_drift) / (1 + max_drift)`` of it.
            name: the lock's name (1 to 256 characters); default ``"default"``.
            margin: seconds before the safe deadline at which the body is
                cancelled, leaving it time to stop acting; default a tenth of
                the lease's validity.

        Raises:
            TypeError: ``name`` is not a str.
            ValueError: ``ttl``, ``name`` or ``margin`` out of range, or a name
                the service does not serve.
            RuntimeError: this client already holds or is acquiring ``name``,
                it used ``max_locks`` names already, or its connection is closed.
            LeaseRefusedError: the server refused in a way retrying cannot
                change (a ttl above its ``max_ttl``, too many locks); raised at once.
            LeaseLostError: the lease could not be renewed and the body was
                cancelled before its deadline.

        Cancellation: waiting for the grant is a checkpoint. If cancelled
        there, the request is abandoned; a grant that the client already took
        for it is released at once, and one still in flight is ignored and
        expires on the server after ``ttl``. On every exit of the body
        (normal, exception, cancellation, the connection torn down by the same
        cancellation) the lease is released: one message, never blocking.
        Exceptions from the body propagate unchanged.
        """
        check_lock_name(name)
        if not (isinstance(ttl, (int, float)) and not isinstance(ttl, bool) and ttl > 0):
            raise ValueError(f"ttl must be > 0, got {ttl!r}")
        lock = self._handle(name)
        validity = lock.core.validity(float(ttl))
        if margin is None:
            margin = validity / 10
        if not 0 <= margin < validity:
            raise ValueError(f"margin must be in [0, {validity}) for ttl {ttl}, got {margin!r}")
        if lock.busy:
            raise RuntimeError(f"this client already holds or is acquiring the lock {name!r}")
        await self._check_open(lock)
        lock.busy = True
        try:
            asked = trio.current_time()
            info = await self._wait_for_grant(lock, name, float(ttl))
            granted = trio.current_time()
            self._emit("lease_lock.acquired", name, info.token, wait=granted - asked, ttl=info.ttl)
            lease = Lease(info.token, info.ttl, info.deadline)
            scope = trio.CancelScope(deadline=info.deadline - margin)

            def follow() -> None:
                current = lock.core.lease
                if current is not None and current.token == lease.token:
                    if current.deadline > lease.deadline:
                        lease.renewals += 1
                        lease.deadline = current.deadline
                        scope.deadline = current.deadline - margin
                        self._emit("lease_lock.renewed", name, lease.token, renewals=lease.renewals)
                elif not scope.cancel_called:
                    scope.cancel()

            lock.driver.after_event.append(follow)
            try:
                with scope:
                    yield lease
            finally:
                lock.driver.after_event.remove(follow)
                released = self._release(lock, lease.token)
            if scope.cancelled_caught:
                self._emit("lease_lock.lost", name, lease.token, held=trio.current_time() - granted)
                raise LeaseLostError(
                    lease.token, "not renewed before the safe deadline; the body was cancelled"
                )
            if released:
                self._emit(
                    "lease_lock.released", name, lease.token, held=trio.current_time() - granted
                )
        finally:
            lock.busy = False

    async def _wait_for_grant(self, lock: LockHandle, name: str, ttl: float) -> LeaseInfo:
        delay = self._retry_delay
        while True:
            await self._check_open(lock)
            key = lock.driver.submit("acquire", ttl)
            try:
                reply = await lock.driver.wait_reply(key)
            except trio.BrokenResourceError:
                await self._check_open(lock)
                raise
            except trio.Cancelled:
                # The client may have taken the grant in the very batch in
                # which we were cancelled: then the lease is ours, give it back.
                late = lock.driver.forget(key)
                if lock.core.state == "acquiring":
                    self._submit(lock, "abort")
                elif late is not None and late.ok and isinstance(late.value, LeaseInfo):
                    self._release(lock, late.value.token)
                raise
            if reply.ok:
                assert isinstance(reply.value, LeaseInfo)
                return reply.value
            reason = str(reply.value)
            if reason not in RETRYABLE_REFUSALS:
                self._emit("lease_lock.refused", name, None)
                raise LeaseRefusedError(self._node_id, reason)
            await trio.sleep(delay * (0.5 + self._rng.random()))
            delay = min(delay * 2, ttl)


@final
class LockService:
    """A running in-process lock server and the network its clients reach it on.

    It serves one lock, :data:`DEFAULT_LOCK` (a lock server process serves
    many names: ``foundation lock serve``).
    """

    def __init__(
        self,
        network: LocalNetwork,
        driver: NodeDriver,
        *,
        telemetry: Telemetry | None,
        trace: Callable[[Transition], None] | None,
    ) -> None:
        self.network = network
        self._server_driver = driver
        self._ids = itertools.count(SERVER_NODE + 1)
        self._telemetry = telemetry
        self._trace = trace

    @property
    def server(self) -> LockServer:
        """The server core (read-only use: tokens granted, current holder)."""
        core = self._server_driver.core
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

        Raises:
            ValueError: ``retry_delay`` is not positive.

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
        transport = self.network.transport(node_id)
        # A connection is a fresh client: what its core persists dies with it.
        driver = NodeDriver(
            core,
            transport,
            persist=NodeStorage().save,
            trace=self._trace,
            projection=_client_projection,
        )
        handle = LockHandle(core, driver)

        def open_lock(name: str) -> LockHandle:
            if name != DEFAULT_LOCK:
                raise ValueError(
                    f"the in-process lock service serves one lock, {DEFAULT_LOCK!r}; got {name!r}"
                )
            return handle

        async with _running(driver, transport):
            yield LeaseLock(
                node_id=node_id,
                open_lock=open_lock,
                retry_delay=retry_delay,
                rng=random.Random(seed),
                max_locks=1,
                telemetry=self._telemetry,
            )


def _client_projection(core: LockClient) -> object:
    return (core.state, core.lease)


@asynccontextmanager
async def open_lock_service(
    *,
    max_ttl: float = 60.0,
    capacity: int = 1024,
    storage: NodeStorage | None = None,
    telemetry: Telemetry | None = None,
    trace: Callable[[Transition], None] | None = None,
) -> AsyncIterator[LockService]:
    """Run a lock server for the body of an ``async with``.

    Args:
        max_ttl: the longest lease a client may ask for.
        capacity: each node's inbox size.
        storage: the server's durable storage; pass the one from a previous
            service to restart it (it then grants nothing for the longest ttl
            it ever granted, and its tokens keep increasing).
        telemetry: where its clients emit their ``lease_lock.*`` events.
        trace: the trace hook of every driver of the service (server and
            clients), e.g. a :class:`~trio_foundation.verify.traces.lease_lock.Recorder`.

    Starting the server is a checkpoint. On exit (normal, exception or
    cancellation) the server stops; clients still connected then get no
    answers and their leases lapse. Exceptions from the body propagate
    unchanged (not wrapped in an ``ExceptionGroup``).
    """
    network = LocalNetwork(capacity=capacity)
    storage = storage if storage is not None else NodeStorage()
    transport = network.transport(SERVER_NODE)
    driver = NodeDriver(
        LockServer(SERVER_NODE, max_ttl=max_ttl),
        transport,
        persist=storage.save,
        restored=storage.restored(),
        trace=trace,
    )
    async with _running(driver, transport):
        yield LockService(network, driver, telemetry=telemetry, trace=trace)
