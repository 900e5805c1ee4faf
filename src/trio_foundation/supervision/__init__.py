"""Supervision trees on structured concurrency: a supervisor is a nursery plus a policy.

Public names:

* :class:`Supervisor` / :func:`open_supervisor` — OTP's ``one_for_one``,
  ``one_for_all`` and ``rest_for_one`` strategies; ``permanent``, ``transient`` and
  ``temporary`` children; restart intensity per supervisor; ordered shutdown with grace;
  ``auto_shutdown`` with significant children; optional backoff with jitter.
* :class:`DynamicSupervisor` / :func:`open_dynamic_supervisor` — children started at run
  time, bounded by ``max_children``.
* :class:`ChildSpec`, :class:`Backoff`, :class:`ChildInfo`, :class:`ChildCounts`.
* :func:`current_child` / :class:`ChildContext` — a child's view of its own run
  (graceful stop requests).
* Telemetry events :class:`ChildStarted`, :class:`ChildExited`, :class:`ChildRestarted`,
  :class:`Escalated`, handed to synchronous handlers.
* Errors :class:`SupervisorEscalation`, :class:`ChildStartError`,
  :class:`MaxChildrenError` (all :class:`trio_foundation.FoundationError`).

``trio_foundation.supervision.testing`` has controllable children for tests.

See ``docs/supervision.md``.
"""

from __future__ import annotations

from ._dynamic import DynamicSupervisor, open_dynamic_supervisor
from ._errors import ChildStartError, MaxChildrenError, SupervisorEscalation
from ._spec import (
    AutoShutdown,
    Backoff,
    ChildCounts,
    ChildInfo,
    ChildSpec,
    ChildState,
    ExitReason,
    Restart,
    Service,
    Strategy,
    is_async_callable,
)
from ._supervisor import ChildContext, Supervisor, current_child, open_supervisor
from ._supervisor import _unwrap_group as unwrap_group
from ._telemetry import (
    ChildExited,
    ChildRestarted,
    ChildStarted,
    Escalated,
    SupervisionEvent,
    SupervisionHandler,
)

__all__ = [
    "AutoShutdown",
    "Backoff",
    "ChildContext",
    "ChildCounts",
    "ChildExited",
    "ChildInfo",
    "ChildRestarted",
    "ChildSpec",
    "ChildStartError",
    "ChildStarted",
    "ChildState",
    "DynamicSupervisor",
    "Escalated",
    "ExitReason",
    "MaxChildrenError",
    "Restart",
    "Service",
    "Strategy",
    "SupervisionEvent",
    "SupervisionHandler",
    "Supervisor",
    "SupervisorEscalation",
    "current_child",
    "is_async_callable",
    "open_dynamic_supervisor",
    "open_supervisor",
    "unwrap_group",
]
