"""DynamicSupervisor: a bounded one_for_one supervisor for children started at run time."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, final

import trio

from ..telemetry import Telemetry
from ._spec import Backoff, ChildCounts, ChildInfo, ChildSpec
from ._supervisor import _SupervisorBase, _unwrap_group
from ._telemetry import SupervisionHandler

__all__ = ["DynamicSupervisor", "open_dynamic_supervisor"]


@final
class DynamicSupervisor:
    """A ``one_for_one`` supervisor that starts empty and takes children at run time.

    Meant for agents and other children whose number is only known while running. As
    Elixir's ``DynamicSupervisor``: a child that ends without being restarted (transient
    after a normal exit, temporary after any exit) or that is terminated is forgotten, and
    ``start_child`` beyond ``max_children`` raises :class:`MaxChildrenError` with nothing
    started. Intensity and period are counted per supervisor, as in :class:`Supervisor`.

    Args:
        max_children: the most children at once (``None``: unbounded); ``>= 0``.
        intensity: maximum restarts within ``period``; one more escalates (default 3,
            Elixir's ``max_restarts``).
        period: the intensity window in seconds (default 5, Elixir's ``max_seconds``).
        backoff: optional :class:`Backoff` delay before each restart.
        handlers: legacy synchronous handlers of the frozen supervision events.
        name: used in telemetry and errors.
        telemetry: where the supervision events go (as :class:`Supervisor`);
            ``None``: :func:`~trio_foundation.telemetry.default_telemetry`.

    Raises:
        TypeError: a parameter has the wrong type.
        ValueError: ``max_children < 0``, ``intensity < 0`` or ``period <= 0``.
    """

    def __init__(
        self,
        *,
        max_children: int | None = None,
        intensity: int = 3,
        period: float = 5.0,
        backoff: Backoff | None = None,
        handlers: Sequence[SupervisionHandler] = (),
        name: str = "dynamic_supervisor",
        telemetry: Telemetry | None = None,
    ) -> None:
        self._core = _SupervisorBase(
            (),
            strategy="one_for_one",
            intensity=intensity,
            period=period,
            backoff=backoff,
            handlers=handlers,
            name=name,
            max_children=max_children,
            dynamic=True,
            telemetry=telemetry,
        )

    def __repr__(self) -> str:
        return f"DynamicSupervisor(name={self._core.name!r}, max_children={self.max_children})"

    @property
    def name(self) -> str:
        """The supervisor's name."""
        return self._core.name

    @property
    def max_children(self) -> int | None:
        """The most children at once, or ``None``."""
        return self._core._max_children

    @property
    def running(self) -> bool:
        """Whether the supervisor is running."""
        return self._core.running

    async def run(self, *, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        """Supervise until cancelled or escalated; see :meth:`Supervisor.run`.

        ``task_status.started`` is called with this object. A checkpoint; on cancellation
        every child is stopped in reverse start order before ``Cancelled`` propagates.

        Raises:
            SupervisorEscalation: restart intensity was exceeded (all children stopped).
            KeyboardInterrupt, SystemExit: raised by a child; the others were stopped in
                reverse order first; re-raised unwrapped.
        """
        await self._core.run(task_status=_Rebind(task_status, self))

    async def aclose(self) -> None:
        """Stop every child in reverse start order and wait until ``run()`` returned."""
        await self._core.aclose()

    async def start_child(self, spec: ChildSpec) -> object:
        """Start a new child; see :meth:`Supervisor.start_child`.

        A checkpoint; ``Cancelled`` leaves nothing started (a service that had not
        reported ready is cancelled at once).

        Raises:
            MaxChildrenError: already at ``max_children``; nothing was started.
        """
        return await self._core.start_child(spec)

    async def terminate_child(self, child_id: str) -> None:
        """Stop a child and forget it; see :meth:`Supervisor.terminate_child`."""
        await self._core.terminate_child(child_id)

    def which_children(self) -> list[ChildInfo]:
        """Every child, in start order, with its state."""
        return self._core.which_children()

    def count_children(self) -> ChildCounts:
        """How many children there are, are running, are supervisors and are workers."""
        return self._core.count_children()


class _Rebind:
    """A task status that reports the public wrapper instead of the core."""

    def __init__(self, inner: trio.TaskStatus[Any], value: object) -> None:
        self._inner = inner
        self._value = value

    def started(self, value: object = None) -> None:
        self._inner.started(self._value)


@asynccontextmanager
async def open_dynamic_supervisor(
    *,
    max_children: int | None = None,
    intensity: int = 3,
    period: float = 5.0,
    backoff: Backoff | None = None,
    handlers: Sequence[SupervisionHandler] = (),
    name: str = "dynamic_supervisor",
    telemetry: Telemetry | None = None,
) -> AsyncIterator[DynamicSupervisor]:
    """Run a :class:`DynamicSupervisor` for the duration of an ``async with`` block.

    On exit of the block every child is stopped in reverse start order; an escalation
    cancels the block and is raised out of the ``async with``; a ``KeyboardInterrupt`` or
    ``SystemExit`` from a child or the block leaves it unwrapped, after the ordered
    shutdown.
    """
    sup = DynamicSupervisor(
        max_children=max_children,
        intensity=intensity,
        period=period,
        backoff=backoff,
        handlers=handlers,
        name=name,
        telemetry=telemetry,
    )
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run)
            try:
                yield sup
            finally:
                sup._core._request_shutdown()
    except BaseExceptionGroup as group:
        leaf = _unwrap_group(group)
        if leaf is group:
            raise
        raise leaf from leaf.__cause__
