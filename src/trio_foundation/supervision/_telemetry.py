"""Supervision telemetry: events through ``trio_foundation.telemetry``, and frozen events
handed to a supervisor's own synchronous handlers.

Every supervisor emits through a :class:`~trio_foundation.telemetry.Telemetry` (its
``telemetry=`` argument, else :func:`~trio_foundation.telemetry.default_telemetry`):

==============================  ==========================  ================================
event                           measurements                metadata
==============================  ==========================  ================================
``supervisor.child.start``      ``restarts``                ``supervisor``, ``child_id``
``supervisor.child.exit``       (none)                      ``supervisor``, ``child_id``,
                                                            ``reason``, ``exception``
``supervisor.child.restart``    ``restarts_in_period``      ``supervisor``, ``child_id``,
                                                            ``cause_id``
``supervisor.escalate``         ``restarts_in_period``,     ``supervisor``, ``child_id``,
                                ``intensity``, ``period``   ``causes``
``supervisor.child.stop``       ``duration``, ``grace``     ``supervisor``, ``child_id``,
                                                            ``forced``
``supervisor.shutdown``         ``duration``, ``children``  ``supervisor``, ``order``,
                                                            ``durations``, ``cause``
==============================  ==========================  ================================

Each emit is guarded by :meth:`Telemetry.listening`, so an event nobody listens to costs
one dict lookup and builds nothing. The telemetry runs the handlers (isolated, logged,
detached after repeated failures; an emit from inside a handler deferred), so a handler
can neither break nor re-enter the supervisor; an async handler runs in its own task and
may call the supervisor's async API without deadlocking it.

The legacy ``handlers=`` are plain callables ``handler(event) -> None`` run synchronously,
in the supervisor's own task, with the four frozen events below. They must not block; an
exception raised by one is logged (logger ``trio_foundation.supervision``) and swallowed,
so a broken handler can never stop or deadlock a supervisor.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Final, TypeAlias, final

import attrs

from ..telemetry import Telemetry
from ._spec import ExitReason

__all__ = [
    "ChildExited",
    "ChildRestarted",
    "ChildStarted",
    "Escalated",
    "SupervisionEvent",
    "SupervisionHandler",
    "emit",
    "notify",
]

START: Final = "supervisor.child.start"
EXIT: Final = "supervisor.child.exit"
RESTART: Final = "supervisor.child.restart"
ESCALATE: Final = "supervisor.escalate"
STOP: Final = "supervisor.child.stop"
SHUTDOWN: Final = "supervisor.shutdown"
EVENTS: Final = (START, EXIT, RESTART, ESCALATE, STOP, SHUTDOWN)

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


def notify(
    handlers: Sequence[SupervisionHandler],
    telemetry: Telemetry,
    event: SupervisionEvent,
    measurements: dict[str, float],
) -> None:
    """Hand ``event`` to the legacy handlers and emit it through ``telemetry``.

    The caller checks first that someone listens (handlers, or
    ``telemetry.listening(name)``), so nothing is built for nobody.
    """
    if handlers:
        emit(handlers, event)
    meta: dict[str, object]
    if isinstance(event, ChildStarted):
        name, meta = START, {"supervisor": event.supervisor, "child_id": event.child_id}
    elif isinstance(event, ChildExited):
        name = EXIT
        meta = {
            "supervisor": event.supervisor,
            "child_id": event.child_id,
            "reason": event.reason,
            "exception": event.exception,
        }
    elif isinstance(event, ChildRestarted):
        name = RESTART
        meta = {
            "supervisor": event.supervisor,
            "child_id": event.child_id,
            "cause_id": event.cause_id,
        }
    else:
        name = ESCALATE
        meta = {"supervisor": event.supervisor, "child_id": event.child_id, "causes": event.causes}
    telemetry.emit(name, measurements, meta)
