"""The resilience services' events: through ``trio_foundation.telemetry``, and to the
callbacks registered with ``add_listener``.

Every service emits ``resilience.<service>.<kind>`` events through a
:class:`~trio_foundation.telemetry.Telemetry` (its ``telemetry=`` argument, else
:func:`~trio_foundation.telemetry.default_telemetry`). Each emit is guarded by
:meth:`Telemetry.listening` (one dict lookup), so an event nobody listens to builds
nothing. The metadata of every event is ``service``, ``name`` (the instance's name),
``key`` and ``detail``; the measurements are listed in ``docs/resilience.md``.

The ``add_listener`` callbacks receive :class:`ResilienceEvent` values for the state
changes and notable occurrences that existed before the telemetry (breaker state,
evictions, load failures, pool leaks and disposals, retries, bulkhead rejections). They
run synchronously in the emitting task and must not block; one that raises is logged and
kept (it never breaks the service).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable, Mapping
from typing import Final

import attrs

from ..telemetry import Telemetry, default_telemetry

__all__ = ["EVENTS", "Listener", "ResilienceEvent"]

_log = logging.getLogger("trio_foundation.resilience")

BREAKER_STATE: Final = "resilience.circuit_breaker.state"
BREAKER_REJECTED: Final = "resilience.circuit_breaker.rejected"
LIMITER_REJECTED: Final = "resilience.rate_limiter.rejected"
LIMITER_WAIT: Final = "resilience.rate_limiter.wait"
LIMITER_CONFLICT: Final = "resilience.rate_limiter.conflict"
LIMITER_OUTAGE: Final = "resilience.rate_limiter.outage"
CACHE_HIT: Final = "resilience.cache.hit"
CACHE_MISS: Final = "resilience.cache.miss"
CACHE_EVICTED: Final = "resilience.cache.evicted"
CACHE_EXPIRED: Final = "resilience.cache.expired"
CACHE_LOAD: Final = "resilience.cache.load"
CACHE_LOAD_FAILED: Final = "resilience.cache.load_failed"
POOL_CHECKOUT: Final = "resilience.pool.checkout"
POOL_TIMEOUT: Final = "resilience.pool.timeout"
POOL_LEAK: Final = "resilience.pool.leak"
POOL_LEAK_SUSPECTED: Final = "resilience.pool.leak_suspected"
POOL_CLOSED: Final = "resilience.pool.closed"
RETRY_RETRY: Final = "resilience.retry.retry"
BULKHEAD_REJECTED: Final = "resilience.bulkhead.rejected"

#: Every event name the resilience services emit.
EVENTS: Final = (
    BREAKER_STATE,
    BREAKER_REJECTED,
    LIMITER_REJECTED,
    LIMITER_WAIT,
    LIMITER_CONFLICT,
    LIMITER_OUTAGE,
    CACHE_HIT,
    CACHE_MISS,
    CACHE_EVICTED,
    CACHE_EXPIRED,
    CACHE_LOAD,
    CACHE_LOAD_FAILED,
    POOL_CHECKOUT,
    POOL_TIMEOUT,
    POOL_LEAK,
    POOL_LEAK_SUSPECTED,
    POOL_CLOSED,
    RETRY_RETRY,
    BULKHEAD_REJECTED,
)

_NO_MEASUREMENTS: Mapping[str, float] = {}


@attrs.frozen
class ResilienceEvent:
    """One state change or notable occurrence in a resilience service.

    Attributes:
        service: ``"circuit_breaker"``, ``"cache"``, ``"pool"``, ``"bulkhead"``, ``"retry"``.
        name: the service instance's name.
        kind: what happened, e.g. ``"state"``, ``"leak"``, ``"rejected"``, ``"retry"``.
        key: the key or resource concerned, if any.
        detail: a short description, e.g. ``"closed -> open"``.
        time: the service clock when it happened, in seconds.
    """

    service: str
    name: str
    kind: str
    key: Hashable
    detail: str
    time: float


Listener = Callable[[ResilienceEvent], None]


def check_telemetry(telemetry: Telemetry | None) -> Telemetry:
    """``telemetry``, or the default one for ``None``.

    Raises:
        TypeError: ``telemetry`` is neither a :class:`Telemetry` nor ``None``.
    """
    if telemetry is None:
        return default_telemetry()
    if not isinstance(telemetry, Telemetry):
        raise TypeError(f"telemetry must be a Telemetry or None, got {telemetry!r}")
    return telemetry


class _Listeners:
    """A service's ``add_listener`` callbacks and its telemetry."""

    __slots__ = ("_callbacks", "_name", "_service", "telemetry")

    def __init__(self, service: str, name: str, telemetry: Telemetry | None) -> None:
        self._callbacks: list[Listener] = []
        self._service = service
        self._name = name
        self.telemetry: Final = check_telemetry(telemetry)

    def add(self, callback: Listener) -> Callable[[], None]:
        if not callable(callback):
            raise TypeError(f"listener must be callable, got {type(callback).__name__}")
        if len(self._callbacks) >= 64:
            raise ValueError("at most 64 listeners per service")
        self._callbacks.append(callback)

        def remove() -> None:
            if callback in self._callbacks:
                self._callbacks.remove(callback)

        return remove

    def wants(self, event: str) -> bool:
        """Whether a callback or a telemetry handler would receive ``event``."""
        return bool(self._callbacks) or self.telemetry.listening(event)

    def emit(
        self,
        event: str,
        key: Hashable,
        detail: str,
        time: float,
        measurements: Mapping[str, float] = _NO_MEASUREMENTS,
    ) -> None:
        """Hand the event to the callbacks and emit it through the telemetry."""
        if self._callbacks:
            kind = event.rsplit(".", 1)[1]
            legacy = ResilienceEvent(self._service, self._name, kind, key, detail, time)
            for callback in tuple(self._callbacks):
                try:
                    callback(legacy)
                except Exception:
                    _log.exception("resilience listener %r raised on %r", callback, legacy)
        self.tell(event, key, detail, measurements)

    def tell(
        self,
        event: str,
        key: Hashable,
        detail: str,
        measurements: Mapping[str, float] = _NO_MEASUREMENTS,
        *,
        extra: Mapping[str, Hashable] | None = None,
    ) -> None:
        """Emit through the telemetry only (events the callbacks never received).

        ``extra``: metadata beyond ``service``, ``name``, ``key`` and ``detail``
        (documented per event in ``docs/resilience.md``).
        """
        telemetry = self.telemetry
        if telemetry.listening(event):
            metadata = {"service": self._service, "name": self._name, "key": key, "detail": detail}
            if extra:
                metadata.update(extra)
            telemetry.emit(event, measurements, metadata)
