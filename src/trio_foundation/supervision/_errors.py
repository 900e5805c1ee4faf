"""Operational failures of supervisors (subclasses of :class:`FoundationError`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import final

from .._errors import FoundationError

__all__ = ["ChildStartError", "MaxChildrenError", "SupervisorEscalation"]


@final
class SupervisorEscalation(FoundationError):
    """A supervisor's restart intensity was exceeded; all its children have been stopped.

    Raised out of the supervisor (out of ``run`` or ``open_supervisor``), so that the
    parent supervisor or nursery sees an abnormal exit.

    Attributes:
        supervisor: the supervisor's name.
        child_id: the child whose exit exceeded the intensity.
        intensity: the supervisor's maximum number of restarts per period.
        period: the supervisor's period in seconds.
        causes: the exceptions of the abnormal exits counted inside the window, oldest
            first (normal exits of permanent children are counted but carry no exception).
    """

    def __init__(
        self,
        supervisor: str,
        child_id: str,
        intensity: int,
        period: float,
        causes: Sequence[BaseException],
    ) -> None:
        super().__init__(
            f"supervisor {supervisor!r}: child {child_id!r} exceeded restart intensity "
            f"(more than {intensity} restart(s) in {period:g}s); "
            f"{len(causes)} abnormal exit(s) in the window"
        )
        self.supervisor = supervisor
        self.child_id = child_id
        self.intensity = intensity
        self.period = period
        self.causes = tuple(causes)
        if self.causes:
            self.__cause__ = self.causes[-1]


@final
class ChildStartError(FoundationError):
    """A service child failed to report ready (it raised or its start timed out).

    Attributes:
        supervisor: the supervisor's name.
        child_id: the child that did not start.
        cause: what it raised, or ``None`` if it timed out.
    """

    def __init__(self, supervisor: str, child_id: str, cause: BaseException | None) -> None:
        what = f"raised {cause!r}" if cause is not None else "did not report ready in time"
        super().__init__(f"supervisor {supervisor!r}: child {child_id!r} failed to start: {what}")
        self.supervisor = supervisor
        self.child_id = child_id
        self.cause = cause
        self.__cause__ = cause


@final
class MaxChildrenError(FoundationError):
    """A dynamic supervisor already has ``max_children`` children; nothing was started.

    Attributes:
        supervisor: the supervisor's name.
        child_id: the child that was refused.
        max_children: the limit.
    """

    def __init__(self, supervisor: str, child_id: str, max_children: int) -> None:
        super().__init__(
            f"supervisor {supervisor!r}: cannot start child {child_id!r}: "
            f"already at max_children={max_children}"
        )
        self.supervisor = supervisor
        self.child_id = child_id
        self.max_children = max_children
