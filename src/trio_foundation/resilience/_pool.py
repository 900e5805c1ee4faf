"""A resource pool: min/max size, acquire timeout, health check, lifetime, leak detection.

Theory of operation
-------------------
A :class:`trio.Semaphore` of ``max_size`` slots bounds the resources that exist or are
being made; its FIFO queue orders waiting borrowers. A borrower takes a slot, then an
idle resource (most recently returned first, skipping any past ``max_lifetime`` and any
that fails ``health_check``) or makes a new one — in its *own* task, so a slow factory
or a slow borrower delays nobody else (the flaw replaced here ran every request inside
one server loop). Returning is synchronous: the resource goes back to the idle stack and
the slot to the next borrower, so a borrower that is cancelled returns what it holds on
its way out. Closing resources happens in the pool's nursery.

Leaks: a :class:`Lease` from :meth:`ResourcePool.checkout` that is garbage collected
without :meth:`Lease.release` is reclaimed (the resource is closed, its slot freed) and
reported; a lease held longer than ``leak_timeout`` is reported (not reclaimed: its
borrower may still use it). A maintenance task closes resources idle longer than
``idle_timeout`` (keeping ``min_size``) and tops the pool up to ``min_size``.
"""

from __future__ import annotations

import collections
import logging
import math
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any, Final, Generic, TypeVar, final

import attrs
import trio

from ..telemetry import Telemetry
from ._errors import PoolClosedError, PoolTimeoutError
from ._events import (
    POOL_CHECKOUT,
    POOL_CLOSED,
    POOL_LEAK,
    POOL_LEAK_SUSPECTED,
    POOL_TIMEOUT,
    Listener,
    _Listeners,
)

__all__ = ["Lease", "PoolStatistics", "ResourcePool", "open_pool"]

R = TypeVar("R")
_log = logging.getLogger("trio_foundation.resilience")


@final
@attrs.frozen
class PoolStatistics:
    """A snapshot of a :class:`ResourcePool`.

    Attributes:
        size: resources made and not closed (idle or borrowed; <= ``max_size``).
        idle: resources waiting in the pool.
        borrowed: leases outstanding.
        waiting: borrowers waiting for a slot.
        created, closed: resources made and closed so far.
        unhealthy: resources that failed the health check or outlived ``max_lifetime``.
        leaks: leases garbage collected without being released (reclaimed).
        timeouts: acquisitions that timed out.
    """

    size: int
    idle: int
    borrowed: int
    waiting: int
    created: int
    closed: int
    unhealthy: int
    leaks: int
    timeouts: int


class _Held(Generic[R]):
    __slots__ = ("created", "ident", "idle_since", "resource")

    def __init__(self, resource: R, created: float, ident: int) -> None:
        self.resource = resource
        self.created = created
        self.idle_since = created
        self.ident = ident


@final
class Lease(Generic[R]):
    """A borrowed resource. Release it exactly once (``async with`` does it for you).

    Attributes:
        resource: the borrowed resource.
    """

    __slots__ = ("__weakref__", "_finalizer", "_held", "_id", "_pool", "_since", "resource")

    def __init__(self, pool: ResourcePool[R], held: _Held[R], since: float, ident: int) -> None:
        self._pool: ResourcePool[R] | None = pool
        self._id = ident
        self._held = held
        self._since = since
        self.resource = held.resource
        self._finalizer: weakref.finalize[Any, Any] | None = None

    def release(self, *, discard: bool = False) -> None:
        """Give the resource back (or close it, with ``discard=True``). Not a checkpoint.

        Raises:
            RuntimeError: the lease was already released.
        """
        pool = self._pool
        if pool is None:
            raise RuntimeError("lease already released")
        self._pool = None
        if self._finalizer is not None:
            self._finalizer.detach()
        pool._return(self._held, discard=discard, lease_id=self._id)

    async def __aenter__(self) -> R:
        return self.resource

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._pool is not None:
            self.release()


class _Acquire(Generic[R]):
    __slots__ = ("_lease", "_pool", "_timeout")

    def __init__(self, pool: ResourcePool[R], timeout: float | None) -> None:
        self._pool = pool
        self._timeout = timeout
        self._lease: Lease[R] | None = None

    async def __aenter__(self) -> R:
        self._lease = await self._pool._checkout(self._timeout, track=False)
        return self._lease.resource

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        lease = self._lease
        if lease is not None and lease._pool is not None:
            lease.release()


def _leaked(token: trio.lowlevel.TrioToken, pool_ref: weakref.ref[Any], held: Any) -> None:
    def reclaim() -> None:
        pool = pool_ref()
        if pool is not None:
            pool._reclaim(held)

    try:
        token.run_sync_soon(reclaim)
    except trio.RunFinishedError:
        pass  # the run is over: nothing left to reclaim into


@final
class ResourcePool(Generic[R]):
    """A bounded pool of resources made by an async factory. Open it with :func:`open_pool`."""

    def __init__(
        self,
        factory: Callable[[], Awaitable[R]],
        *,
        close: Callable[[R], Awaitable[object]] | None,
        min_size: int,
        max_size: int,
        acquire_timeout: float | None,
        health_check: Callable[[R], Awaitable[bool]] | None,
        max_lifetime: float | None,
        idle_timeout: float | None,
        leak_timeout: float | None,
        name: str,
        telemetry: Telemetry | None = None,
    ) -> None:
        for label, n, low in (("min_size", min_size, 0), ("max_size", max_size, 1)):
            if isinstance(n, bool) or not isinstance(n, int):
                raise TypeError(f"{label} must be an int, got {type(n).__name__}")
            if n < low:
                raise ValueError(f"{label} must be >= {low}, got {n}")
        if min_size > max_size:
            raise ValueError(f"min_size {min_size} must be <= max_size {max_size}")
        for label, t in (
            ("acquire_timeout", acquire_timeout),
            ("max_lifetime", max_lifetime),
            ("idle_timeout", idle_timeout),
            ("leak_timeout", leak_timeout),
        ):
            if t is not None and not (t > 0 and not math.isnan(t)):
                raise ValueError(f"{label} must be > 0, got {t}")
        self.name: Final = name
        self.min_size: Final = min_size
        self.max_size: Final = max_size
        self.acquire_timeout: Final = acquire_timeout
        self.max_lifetime: Final = math.inf if max_lifetime is None else max_lifetime
        self.idle_timeout: Final = idle_timeout
        self.leak_timeout: Final = leak_timeout
        self._factory = factory
        self._close = close
        self._health_check = health_check
        self._slots = trio.Semaphore(max_size)
        # A slot is held by each borrower (from the wait to the return) and by the
        # maintenance task while it makes a resource. Invariant: len(_idle) <=
        # _slots.value, so idle + borrowed + being made <= max_size.
        self._idle: collections.deque[_Held[R]] = collections.deque()
        self._borrowed: dict[int, tuple[_Held[R], float]] = {}  # lease id -> (held, since)
        self._nursery: trio.Nursery | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._closed = False
        self._next_ident = 0
        self._lease_seq = 0
        self._listeners = _Listeners("pool", name, telemetry)
        self._wake = trio.Event()
        self._created = 0
        self._closed_count = 0
        self._unhealthy = 0
        self._leaks = 0
        self._timeouts = 0
        self._reported: set[int] = set()

    # ------------------------------------------------------------------------ public

    def acquire(self, timeout: float | None = None) -> _Acquire[R]:
        """``async with pool.acquire() as resource:`` — borrow for the block.

        Entering waits (FIFO) for a slot, at most ``timeout`` (or the pool's
        ``acquire_timeout``) seconds, and is a checkpoint; leaving returns the resource,
        also when the block is cancelled or raises, and is not a checkpoint.

        Raises:
            PoolClosedError: the pool is closed.
            PoolTimeoutError: no resource within the timeout.
            Exception: whatever the factory raised (the slot is freed).
        """
        if timeout is not None and not timeout > 0:
            raise ValueError(f"timeout must be > 0, got {timeout}")
        return _Acquire(self, timeout)

    async def checkout(self, timeout: float | None = None) -> Lease[R]:  # noqa: ASYNC109
        """Borrow a resource until :meth:`Lease.release`. Always a checkpoint.

        If cancelled, nothing is held. A lease dropped without release is reclaimed and
        reported as a leak.

        Raises:
            PoolClosedError, PoolTimeoutError: as :meth:`acquire`.
        """
        if timeout is not None and not timeout > 0:
            raise ValueError(f"timeout must be > 0, got {timeout}")
        return await self._checkout(timeout, track=True)

    def add_listener(self, callback: Listener) -> Callable[[], None]:
        """Call ``callback(event)`` on leaks, unhealthy resources and closes."""
        return self._listeners.add(callback)

    def statistics(self) -> PoolStatistics:
        """A frozen snapshot."""
        return PoolStatistics(
            size=self._created - self._closed_count,
            idle=len(self._idle),
            borrowed=len(self._borrowed),
            waiting=self._slots.statistics().tasks_waiting,
            created=self._created,
            closed=self._closed_count,
            unhealthy=self._unhealthy,
            leaks=self._leaks,
            timeouts=self._timeouts,
        )

    # ---------------------------------------------------------------------- internals

    def _in_use(self) -> int:
        # Slots taken: resources borrowed or being made (idle ones hold no slot).
        return self.max_size - self._slots.value

    def _emit(self, event: str, key: Hashable, detail: str) -> None:
        if self._listeners.wants(event):
            self._listeners.emit(event, key, detail, trio.current_time())

    async def _checkout(self, wait: float | None, *, track: bool) -> Lease[R]:
        if self._closed or self._nursery is None:
            await trio.lowlevel.checkpoint()
            raise PoolClosedError(self.name)
        limit = self.acquire_timeout if wait is None else wait
        slots = self._slots
        began = trio.current_time()
        if limit is None or slots.value:
            await slots.acquire()
        else:
            with trio.move_on_after(limit) as scope:
                await slots.acquire()
            if scope.cancelled_caught:
                self._timeouts += 1
                if self._listeners.telemetry.listening(POOL_TIMEOUT):
                    self._listeners.tell(
                        POOL_TIMEOUT,
                        None,
                        "no slot",
                        {"wait": limit, "in_use": self.max_size - self._slots.value},
                    )
                raise PoolTimeoutError(self.name, limit)
        try:
            if self._closed:
                raise PoolClosedError(self.name)
            held = await self._take_idle()
            if held is None:
                held = await self._make()
        except BaseException:
            slots.release()
            raise
        now = trio.current_time()
        self._lease_seq += 1
        lease = Lease(self, held, now, self._lease_seq)
        self._borrowed[self._lease_seq] = (held, now)
        if track:
            assert self._token is not None
            lease._finalizer = weakref.finalize(
                lease, _leaked, self._token, weakref.ref(self), (self._lease_seq, held)
            )
        if self._listeners.telemetry.listening(POOL_CHECKOUT):  # the books are whole
            self._listeners.tell(
                POOL_CHECKOUT,
                held.ident,
                "checkout",
                {"wait": now - began, "in_use": self.max_size - self._slots.value},
            )
        return lease

    async def _take_idle(self) -> _Held[R] | None:
        idle = self._idle
        while idle:
            held = idle.pop()
            now = trio.current_time()
            if now - held.created >= self.max_lifetime:
                self._unhealthy += 1
                self._dispose(held, "max lifetime reached")
                continue
            if self._health_check is not None:
                try:
                    healthy = await self._health_check(held.resource)
                except trio.Cancelled:
                    self._dispose(held, "health check cancelled")
                    raise
                except Exception as exc:
                    healthy = False
                    _log.warning("pool %r: health check raised %r", self.name, exc)
                if not healthy:
                    self._unhealthy += 1
                    self._dispose(held, "health check failed")
                    continue
            return held
        return None

    async def _make(self) -> _Held[R]:
        resource = await self._factory()
        self._created += 1
        self._next_ident += 1
        return _Held(resource, trio.current_time(), self._next_ident)

    def _return(self, held: _Held[R], *, discard: bool, lease_id: int) -> None:
        self._borrowed.pop(lease_id, None)
        self._reported.discard(lease_id)
        now = trio.current_time()
        if discard or self._closed or now - held.created >= self.max_lifetime:
            self._dispose(held, "discarded" if discard else "returned after close or lifetime")
        else:
            held.idle_since = now
            self._idle.append(held)
        self._slots.release()

    def _reclaim(self, item: tuple[int, _Held[R]]) -> None:
        lease_id, held = item
        if self._borrowed.pop(lease_id, None) is None:
            return
        self._leaks += 1
        _log.warning("pool %r: a lease was dropped without release; reclaimed", self.name)
        self._emit(POOL_LEAK, held.ident, "lease garbage collected without release; reclaimed")
        self._dispose(held, "leaked")
        self._slots.release()

    def _dispose(self, held: _Held[R], why: str) -> None:
        self._closed_count += 1
        self._emit(POOL_CLOSED, held.ident, why)
        if self._close is not None and self._nursery is not None:
            self._nursery.start_soon(self._run_close, held.resource)

    async def _run_close(self, resource: R) -> None:
        assert self._close is not None
        with trio.move_on_after(10):  # a close that hangs must not hold the pool open
            try:
                await self._close(resource)
            except Exception as exc:
                _log.warning("pool %r: closing a resource raised %r", self.name, exc)

    async def _maintain(self, scope: trio.CancelScope) -> None:
        with scope:
            await self._maintain_loop()

    async def _maintain_loop(self) -> None:
        while True:
            now = trio.current_time()
            # Close idle resources past idle_timeout, oldest first, keeping min_size.
            if self.idle_timeout is not None:
                while (
                    self._idle
                    and now - self._idle[0].idle_since >= self.idle_timeout
                    and len(self._idle) + self._in_use() > self.min_size
                ):
                    self._dispose(self._idle.popleft(), "idle timeout")
            # Report leases held past leak_timeout (once each).
            if self.leak_timeout is not None:
                for lease_id, (held, since) in self._borrowed.items():
                    if now - since >= self.leak_timeout and lease_id not in self._reported:
                        self._reported.add(lease_id)
                        _log.warning("pool %r: a lease is held past leak_timeout", self.name)
                        self._emit(POOL_LEAK_SUSPECTED, held.ident, "held past leak_timeout")
            # Top up to min_size.
            while (
                len(self._idle) + self._in_use() < self.min_size
                and len(self._idle) < self._slots.value
                and not self._closed
            ):
                self._slots.acquire_nowait()
                try:
                    held = await self._make()
                except Exception as exc:
                    self._slots.release()
                    _log.warning("pool %r: factory raised %r while filling", self.name, exc)
                    break
                except BaseException:
                    self._slots.release()
                    raise
                self._idle.appendleft(held)
                self._slots.release()
            period = min(t for t in (self.idle_timeout, self.leak_timeout, 1.0) if t is not None)
            await trio.sleep(period / 2)


@asynccontextmanager
async def open_pool(
    factory: Callable[[], Awaitable[R]],
    *,
    close: Callable[[R], Awaitable[object]] | None = None,
    min_size: int = 0,
    max_size: int = 10,
    acquire_timeout: float | None = None,
    health_check: Callable[[R], Awaitable[bool]] | None = None,
    max_lifetime: float | None = None,
    idle_timeout: float | None = None,
    leak_timeout: float | None = None,
    name: str = "pool",
    telemetry: Telemetry | None = None,
) -> AsyncIterator[ResourcePool[R]]:
    """Open a :class:`ResourcePool` whose maintenance runs in a nursery of this block.

    Args:
        factory: makes a resource (async; runs in the borrower's task).
        close: closes a resource (async; runs in the pool's nursery, 10 s at most).
        min_size: resources kept ready (int >= 0, <= max_size).
        max_size: the most resources that exist at once (int >= 1).
        acquire_timeout: default seconds to wait for a resource (> 0), None for no limit.
        health_check: ``await health_check(r)`` on checkout; False or an exception
            closes ``r`` and tries the next one.
        max_lifetime: seconds after creation a resource is closed instead of reused.
        idle_timeout: seconds idle after which a resource beyond ``min_size`` is closed.
        leak_timeout: seconds after which a lease still held is reported.
        name: used in errors and events.
        telemetry: where the pool's events go (``resilience.pool.checkout`` with
            measurements ``wait`` and ``in_use``, ``.timeout`` (the same),
            ``.leak``,
            ``.leak_suspected``, ``.closed``); ``None``:
            :func:`~trio_foundation.telemetry.default_telemetry`.

    On exit the pool is closed: acquisitions raise :class:`PoolClosedError`, idle
    resources are closed, borrowed ones are closed when returned.

    Raises:
        ValueError: sizes below their minimum, ``min_size > max_size``, a timeout <= 0.
    """
    pool: ResourcePool[R] = ResourcePool(
        factory,
        close=close,
        min_size=min_size,
        max_size=max_size,
        acquire_timeout=acquire_timeout,
        health_check=health_check,
        max_lifetime=max_lifetime,
        idle_timeout=idle_timeout,
        leak_timeout=leak_timeout,
        name=name,
        telemetry=telemetry,
    )
    maintenance = trio.CancelScope()
    try:
        async with trio.open_nursery() as nursery:
            pool._nursery = nursery
            pool._token = trio.lowlevel.current_trio_token()
            nursery.start_soon(pool._maintain, maintenance)
            try:
                yield pool
            finally:
                pool._closed = True
                maintenance.cancel()
                while pool._idle:
                    pool._dispose(pool._idle.pop(), "pool closed")
                # Wake every waiting borrower: each finds the pool closed.
                for _ in range(pool._slots.statistics().tasks_waiting):
                    pool._slots.release()
                # The nursery now waits for the closes (each bounded to 10 s).
    finally:
        pool._nursery = None
