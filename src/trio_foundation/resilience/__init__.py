"""Resilience services on Trio: rate limiter, cache, circuit breaker, pool, retry, bulkhead.

Each service is bounded, cancellation-safe and states what it guarantees; see
``docs/resilience.md``. Every service emits ``resilience.<service>.<event>`` events
through ``trio_foundation.telemetry`` (its ``telemetry=`` argument, else the default
telemetry; :data:`EVENTS` lists them), and :func:`resilience_metrics` keeps fixed-memory
metrics from them. State changes also reach callbacks registered with ``add_listener``
(:class:`ResilienceEvent`).
"""

from __future__ import annotations

from ._bulkhead import Bulkhead, BulkheadStatistics
from ._cache import Cache, CacheStatistics, open_cache
from ._circuit_breaker import BreakerState, CircuitBreaker, CircuitBreakerStatistics
from ._errors import (
    CircuitOpenError,
    PoolClosedError,
    PoolTimeoutError,
    Rejected,
    RetryBudgetExhausted,
)
from ._events import EVENTS, Listener, ResilienceEvent
from ._metrics import ResilienceMetrics, resilience_metrics
from ._pool import Lease, PoolStatistics, ResourcePool, open_pool
from ._rate_limiter import (
    GCRA,
    RateLimiter,
    RateLimiterStatistics,
    SlidingCounter,
    SlidingLog,
    TokenBucket,
)
from ._retry import RetryBudget, RetryBudgetStatistics, RetryPolicy
from ._shared_limiter import OutagePolicy, SharedRateLimiter, SharedRateLimiterStatistics

__all__ = [
    "EVENTS",
    "GCRA",
    "BreakerState",
    "Bulkhead",
    "BulkheadStatistics",
    "Cache",
    "CacheStatistics",
    "CircuitBreaker",
    "CircuitBreakerStatistics",
    "CircuitOpenError",
    "Lease",
    "Listener",
    "OutagePolicy",
    "PoolClosedError",
    "PoolStatistics",
    "PoolTimeoutError",
    "RateLimiter",
    "RateLimiterStatistics",
    "Rejected",
    "ResilienceEvent",
    "ResilienceMetrics",
    "ResourcePool",
    "RetryBudget",
    "RetryBudgetExhausted",
    "RetryBudgetStatistics",
    "RetryPolicy",
    "SharedRateLimiter",
    "SharedRateLimiterStatistics",
    "SlidingCounter",
    "SlidingLog",
    "TokenBucket",
    "open_cache",
    "open_pool",
    "resilience_metrics",
]
