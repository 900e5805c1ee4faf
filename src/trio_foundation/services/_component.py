"""Components: nursery-scoped services with a name, dependencies and a readiness signal."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol, final, runtime_checkable

import trio

from ..supervision import Backoff, ChildSpec, Restart, SupervisionHandler, Supervisor

__all__ = ["Component", "Supervised"]


@runtime_checkable
class Component(Protocol):
    """A service started inside its parent's nursery.

    ``run`` does its setup, calls ``task_status.started(handle)`` once it is ready to be
    used (the handle is what :meth:`App.__getitem__` returns: a client, a port, the
    component itself), then serves until cancelled. It may also define
    ``async def health(self) -> bool``.

    Attributes:
        name: unique within an :class:`App`.
        dependencies: names of the components that must be ready before this one starts.
    """

    @property
    def name(self) -> str:
        """The component's name."""
        ...

    @property
    def dependencies(self) -> Sequence[str]:
        """Names of the components this one needs."""
        ...

    def run(self, *, task_status: trio.TaskStatus[Any] = ...) -> Awaitable[None]:
        """Start, report ready with ``task_status.started(handle)``, serve until cancelled."""
        ...


@final
class Supervised:
    """A component run under its own :class:`Supervisor` with a restart policy.

    It is itself a component (same name and dependencies): when the wrapped component
    exits, it is restarted per ``restart``; more than ``intensity`` restarts within
    ``period`` seconds make this wrapper fail, which fails the :class:`App`.

    Args:
        component: the component to supervise.
        restart: its restart type (default ``"permanent"``).
        intensity: maximum restarts within ``period``.
        period: the intensity window in seconds.
        backoff: optional delay before each restart.
        start_timeout: how long each (re)start may take to report ready.
        shutdown: grace period in seconds (see :class:`ChildSpec`).
        handlers: telemetry handlers for the inner supervisor.

    Raises:
        TypeError, ValueError: as :class:`ChildSpec` and :class:`Supervisor`.
    """

    def __init__(
        self,
        component: Component,
        *,
        restart: Restart = "permanent",
        intensity: int = 3,
        period: float = 5.0,
        backoff: Backoff | None = None,
        start_timeout: float | None = None,
        shutdown: float = 5.0,
        handlers: Sequence[SupervisionHandler] = (),
    ) -> None:
        self._component = component
        self._supervisor = Supervisor(
            [
                ChildSpec(
                    component.name,
                    component,
                    restart=restart,
                    start_timeout=start_timeout,
                    shutdown=shutdown,
                )
            ],
            intensity=intensity,
            period=period,
            backoff=backoff,
            handlers=handlers,
            name=f"{component.name}.supervisor",
        )

    def __repr__(self) -> str:
        return f"Supervised({self._component!r})"

    @property
    def name(self) -> str:
        """The wrapped component's name."""
        return self._component.name

    @property
    def dependencies(self) -> Sequence[str]:
        """The wrapped component's dependencies."""
        return self._component.dependencies

    @property
    def component(self) -> Component:
        """The wrapped component."""
        return self._component

    @property
    def supervisor(self) -> Supervisor:
        """The supervisor that restarts the component."""
        return self._supervisor

    @property
    def handle(self) -> object:
        """The handle of the component's current run (``None`` while it is not running)."""
        return self._supervisor.which_children()[0].handle

    async def health(self) -> bool:
        """The component's own health check if it has one, else whether it is running.

        A checkpoint.
        """
        check = getattr(self._component, "health", None)
        if check is None:
            await trio.lowlevel.checkpoint()
            return self._supervisor.which_children()[0].state == "running"
        return bool(await check())

    async def run(self, *, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the component under its supervisor; ready when the component is.

        A checkpoint; on cancellation the component is stopped before ``Cancelled``
        propagates.

        Raises:
            SupervisorEscalation: the component exceeded its restart intensity.
            ChildStartError: the component failed to report ready on its first start.
            KeyboardInterrupt, SystemExit: raised by the component; re-raised unwrapped.
        """
        await self._supervisor.run(
            task_status=_CallbackStatus(lambda _: task_status.started(self.handle))
        )


class _CallbackStatus:
    """A stand-in ``task_status`` whose ``started`` calls a function."""

    def __init__(self, callback: Callable[[object], None]) -> None:
        self._callback = callback

    def started(self, value: object = None) -> None:
        self._callback(value)
