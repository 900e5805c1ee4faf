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
