"""Resilience services on Trio: rate limiter, cache, circuit breaker, pool, retry, bulkhead.

Each service is bounded, cancellation-safe and states what it guarantees; see
``docs/resilience.md``. Every service reports state changes to callbacks registered
with ``add_listener`` (:class:`ResilienceEvent`); the telemetry layer will subscribe
through that hook.
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
from ._events import Listener, ResilienceEvent
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

__all__ = [
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
    "PoolClosedError",
    "PoolStatistics",
    "PoolTimeoutError",
    "RateLimiter",
    "RateLimiterStatistics",
    "Rejected",
    "ResilienceEvent",
    "ResourcePool",
    "RetryBudget",
    "RetryBudgetExhausted",
    "RetryBudgetStatistics",
    "RetryPolicy",
    "SlidingCounter",
    "SlidingLog",
    "TokenBucket",
    "open_cache",
    "open_pool",
]
