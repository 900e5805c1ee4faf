"""trio-foundation: concurrent and multi-agent coordination on Trio, proved and tested.

The most used names are re-exported here; each area also has its own package:
``trio_foundation.coordination`` (lease lock), ``trio_foundation.supervision``,
``trio_foundation.services``, ``trio_foundation.runtime`` (simulator, local
network) and ``trio_foundation.verify`` (TLC runner, trace validation,
linearizability checker, nemeses).
"""

from __future__ import annotations

from ._errors import (
    FoundationError,
    LeadershipLostError,
    LeaseLostError,
    LeaseRefusedError,
    ProtocolError,
    StaleTokenError,
    VerificationError,
)
from .coordination.lease_lock import (
    FencedResource,
    Lease,
    LeaseLock,
    LockService,
    open_lock_service,
)
from .services import App, AppStartError, Component, Supervised, open_app
from .supervision import (
    ChildSpec,
    DynamicSupervisor,
    MaxChildrenError,
    Supervisor,
    SupervisorEscalation,
    open_dynamic_supervisor,
    open_supervisor,
)

__version__ = "0.1.0"

__all__ = [
    "App",
    "AppStartError",
    "ChildSpec",
    "Component",
    "DynamicSupervisor",
    "FencedResource",
    "FoundationError",
    "LeadershipLostError",
    "Lease",
    "LeaseLock",
    "LeaseLostError",
    "LeaseRefusedError",
    "LockService",
    "MaxChildrenError",
    "ProtocolError",
    "StaleTokenError",
    "Supervised",
    "Supervisor",
    "SupervisorEscalation",
    "VerificationError",
    "__version__",
    "open_app",
    "open_dynamic_supervisor",
    "open_lock_service",
    "open_supervisor",
]

# Registry, messaging and telemetry (issue 12): ``trio_foundation.registry``,
# ``trio_foundation.messaging``, ``trio_foundation.telemetry``.
from .messaging import Mailbox, SignalRouter, call, cast
from .registry import Index, Registry
from .telemetry import MetricRegistry, Telemetry

__all__ += [
    "Index",
    "Mailbox",
    "MetricRegistry",
    "Registry",
    "SignalRouter",
    "Telemetry",
    "call",
    "cast",
]

# Resilience services (issue 14): ``trio_foundation.resilience``. Its pool ``Lease`` is
# not re-exported here (``Lease`` is the lease lock's); use ``resilience.Lease``.
from .resilience import (  # noqa: E402
    GCRA,
    Bulkhead,
    Cache,
    CircuitBreaker,
    CircuitOpenError,
    PoolClosedError,
    PoolTimeoutError,
    RateLimiter,
    Rejected,
    ResourcePool,
    RetryBudget,
    RetryBudgetExhausted,
    RetryPolicy,
    SharedRateLimiter,
    SlidingCounter,
    SlidingLog,
    TokenBucket,
    open_cache,
    open_pool,
    resilience_metrics,
)
from .telemetry import default_telemetry  # noqa: E402

__all__ += [
    "GCRA",
    "Bulkhead",
    "Cache",
    "CircuitBreaker",
    "CircuitOpenError",
    "PoolClosedError",
    "PoolTimeoutError",
    "RateLimiter",
    "Rejected",
    "ResourcePool",
    "RetryBudget",
    "RetryBudgetExhausted",
    "RetryPolicy",
    "SharedRateLimiter",
    "SlidingCounter",
    "SlidingLog",
    "TokenBucket",
    "default_telemetry",
    "open_cache",
    "open_pool",
    "resilience_metrics",
]
