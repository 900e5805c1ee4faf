"""A minimal listener hook shared by the resilience services.

Each service emits :class:`ResilienceEvent` values to callbacks registered with
``add_listener``. Callbacks run synchronously in the emitting task and must not block;
one that raises is logged and kept (it never breaks the service). The project's
telemetry layer will subscribe through this same hook.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable

import attrs

__all__ = ["Listener", "ResilienceEvent"]

_log = logging.getLogger("trio_foundation.resilience")


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


class _Listeners:
    __slots__ = ("_callbacks",)

    def __init__(self) -> None:
        self._callbacks: list[Listener] = []

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

    def __bool__(self) -> bool:
        return bool(self._callbacks)

    def emit(self, event: ResilienceEvent) -> None:
        for callback in tuple(self._callbacks):
            try:
                callback(event)
            except Exception:
                _log.exception("resilience listener %r raised on %r", callback, event)
