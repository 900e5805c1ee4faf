"""Supervision telemetry: frozen events handed to synchronous handlers.

Handlers are plain callables ``handler(event) -> None`` run synchronously, in the
supervisor's own task, at the moment the event happens. They must not block; an
exception raised by a handler is logged (logger ``trio_foundation.supervision``) and
swallowed, so a broken handler can never stop or deadlock a supervisor.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TypeAlias, final

import attrs

from ._spec import ExitReason

__all__ = [
    "ChildExited",
    "ChildRestarted",
    "ChildStarted",
    "Escalated",
    "SupervisionEvent",
    "SupervisionHandler",
    "emit",
]

logger = logging.getLogger("trio_foundation.supervision")


@final
@attrs.frozen
class ChildStarted:
    """A child began running (first start, restart, or ``start_child``/``restart_child``).

    Attributes:
        supervisor: the supervisor's name.
        child_id: the child's id.
    """

    supervisor: str
    child_id: str


@final
@attrs.frozen
class ChildExited:
    """A child's run ended.

    Attributes:
        supervisor: the supervisor's name.
        child_id: the child's id.
        reason: ``"normal"`` (returned), ``"shutdown"`` (stopped by its supervisor) or
            ``"abnormal"`` (raised).
        exception: what the child raised, for an abnormal exit; else ``None``.
    """

    supervisor: str
    child_id: str
    reason: ExitReason
    exception: BaseException | None = attrs.field(default=None, eq=False)


@final
@attrs.frozen
class ChildRestarted:
    """A child was restarted by the supervisor's restart strategy.

    Attributes:
        supervisor: the supervisor's name.
        child_id: the restarted child.
        cause_id: the child whose exit caused the restart (``child_id`` itself under
            ``one_for_one``; possibly another child under ``one_for_all``/``rest_for_one``).
    """

    supervisor: str
    child_id: str
    cause_id: str


@final
@attrs.frozen
class Escalated:
    """Restart intensity was exceeded: the supervisor stopped all children and is raising.

    Attributes:
        supervisor: the supervisor's name.
        child_id: the child whose exit exceeded the intensity.
        causes: the exceptions of the abnormal exits inside the intensity window.
    """

    supervisor: str
    child_id: str
    causes: tuple[BaseException, ...] = attrs.field(eq=False)


SupervisionEvent: TypeAlias = ChildStarted | ChildExited | ChildRestarted | Escalated
SupervisionHandler: TypeAlias = Callable[[SupervisionEvent], None]


def emit(handlers: Sequence[SupervisionHandler], event: SupervisionEvent) -> None:
    """Call every handler with ``event``; log and swallow an ``Exception`` from any of them."""
    for handler in handlers:
        try:
            handler(event)
        except Exception:
            logger.exception("supervision telemetry handler %r failed on %r", handler, event)
