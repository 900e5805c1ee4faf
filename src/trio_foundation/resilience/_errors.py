"""Operational failures of the resilience services."""

from __future__ import annotations

from collections.abc import Hashable

from .._errors import FoundationError

__all__ = [
    "CircuitOpenError",
    "PoolClosedError",
    "PoolTimeoutError",
    "Rejected",
    "RetryBudgetExhausted",
]


class Rejected(FoundationError):
    """A bounded service refused work at once instead of queueing it without bound.

    Attributes:
        service: which service refused (``"bulkhead"``, ``"rate limiter"``, ``"cache"``).
        reason: why, e.g. ``"4 running and 8 queued (the maximum)"``.
    """

    def __init__(self, service: str, reason: str) -> None:
        super().__init__(f"{service} rejected the call: {reason}")
        self.service = service
        self.reason = reason


class CircuitOpenError(FoundationError):
    """The circuit breaker is open (or half-open with every trial slot taken).

    Attributes:
        name: the breaker's name.
        retry_after: seconds until the breaker lets a trial call through (0 when half-open).
    """

    def __init__(self, name: str, retry_after: float) -> None:
        super().__init__(f"circuit {name!r} is open; retry in {retry_after:.3f} s")
        self.name = name
        self.retry_after = retry_after


class PoolClosedError(FoundationError):
    """A resource pool was used after it closed."""

    def __init__(self, name: str) -> None:
        super().__init__(f"pool {name!r} is closed")
        self.name = name


class PoolTimeoutError(FoundationError, TimeoutError):
    """No resource became available within the acquire timeout.

    Attributes:
        name: the pool's name.
        timeout: the timeout that expired, in seconds.
    """

    def __init__(self, name: str, timeout: float) -> None:
        super().__init__(f"pool {name!r}: no resource available within {timeout} s")
        self.name = name
        self.timeout = timeout


class RetryBudgetExhausted(FoundationError):
    """A retry was refused because the service's shared retry budget is spent.

    Attributes:
        key: the budget's name.
        attempts: attempts made before the refusal.
    """

    def __init__(self, key: Hashable, attempts: int) -> None:
        super().__init__(f"retry budget {key!r} exhausted after {attempts} attempt(s)")
        self.key = key
        self.attempts = attempts
