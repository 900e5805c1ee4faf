"""App: a graph of components started in dependency order and stopped in reverse.

An :class:`App` is a :class:`~trio_foundation.supervision.Supervisor` underneath: one
child per component, in topological order, each started with ``nursery.start`` (so a
component starts only once everything before it reported ready), ``transient``, with
intensity 0. Hence a component that returns normally simply stops; one that raises
fails the whole app (every component stopped in reverse order); a component that should
be restarted is wrapped in :class:`Supervised`, which brings its own supervisor.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any, final

import trio

from .._errors import FoundationError
from ..supervision import (
    ChildSpec,
    ChildStartError,
    SupervisionHandler,
    Supervisor,
    SupervisorEscalation,
    is_async_callable,
    unwrap_group,
)
from ._component import Component, Supervised, _CallbackStatus

logger = logging.getLogger(__name__)

__all__ = ["App", "AppStartError", "ComponentFailedError", "dependency_order", "open_app"]


@final
class AppStartError(FoundationError):
    """A component did not become ready; the ones already started were stopped in reverse.

    Attributes:
        app: the app's name.
        component: the component that failed to start.
        cause: what it raised, or ``None`` if it did not report ready in time.
    """

    def __init__(self, app: str, component: str, cause: BaseException | None) -> None:
        what = f"raised {cause!r}" if cause is not None else "did not report ready in time"
        super().__init__(f"app {app!r}: component {component!r} failed to start: {what}")
        self.app = app
        self.component = component
        self.cause = cause


@final
class ComponentFailedError(FoundationError):
    """A running component raised (or its supervisor escalated); the app was stopped.

    Attributes:
        app: the app's name.
        component: the component that failed.
        cause: what it raised (for a :class:`Supervised` component, its escalation).
    """

    def __init__(self, app: str, component: str, cause: BaseException | None) -> None:
        super().__init__(f"app {app!r}: component {component!r} failed: {cause!r}")
        self.app = app
        self.component = component
        self.cause = cause


def _check_component(component: object) -> Component:
    name = getattr(component, "name", None)
    if not isinstance(name, str) or not name:
        raise TypeError(f"a component needs a non-empty str name, got {component!r}")
    deps = getattr(component, "dependencies", None)
    if isinstance(deps, str) or not isinstance(deps, Sequence | frozenset | set):
        raise TypeError(f"component {name!r}: dependencies must be a sequence of names")
    if not is_async_callable(getattr(component, "run", None)):
        raise TypeError(f"component {name!r}: needs 'async def run(self, *, task_status)'")
    return component  # type: ignore[return-value]


def dependency_order(components: Iterable[Component]) -> list[Component]:
    """Sort components so each comes after its dependencies (stable for independent ones).

    Raises:
        TypeError: something is not a component.
        ValueError: duplicate names, an unknown dependency, or a dependency cycle (the
            message names the cycle, e.g. ``"dependency cycle: a -> b -> a"``).
    """
    items = [_check_component(c) for c in components]
    by_name: dict[str, Component] = {}
    for comp in items:
        if comp.name in by_name:
            raise ValueError(f"duplicate component name {comp.name!r}")
        by_name[comp.name] = comp
    for comp in items:
        for dep in comp.dependencies:
            if dep not in by_name:
                raise ValueError(f"component {comp.name!r} depends on unknown {dep!r}")
    order: list[Component] = []
    placed: set[str] = set()
    remaining = list(items)
    while remaining:
        ready = next((c for c in remaining if set(c.dependencies) <= placed), None)
        if ready is None:
            raise ValueError(f"dependency cycle: {' -> '.join(_find_cycle(remaining))}")
        order.append(ready)
        placed.add(ready.name)
        remaining.remove(ready)
    return order


def _find_cycle(remaining: list[Component]) -> list[str]:
    deps = {c.name: list(c.dependencies) for c in remaining}
    path: list[str] = []
    node = remaining[0].name
    while node not in path:
        path.append(node)
        node = next(d for d in deps[node] if d in deps)
    return [*path[path.index(node) :], node]


@final
class App:
    """Components started in dependency order, stopped in reverse; see :func:`open_app`.

    Args:
        components: the components (any order; sorted by dependencies, stably).
        start_timeout: seconds each component may take to report ready (``None``: no limit).
        shutdown: grace period in seconds for components that trap stop requests.
        handlers: supervision telemetry handlers.
        name: used in errors and telemetry.

    Raises:
        TypeError: something is not a component.
        ValueError: duplicate names, an unknown dependency, or a dependency cycle.
    """

    def __init__(
        self,
        components: Iterable[Component],
        *,
        start_timeout: float | None = 30.0,
        shutdown: float = 5.0,
        handlers: Sequence[SupervisionHandler] = (),
        name: str = "app",
    ) -> None:
        self._order = dependency_order(components)
        self._name = name
        self._supervisor = Supervisor(
            [
                ChildSpec(
                    comp.name,
                    comp,
                    restart="transient",
                    start_timeout=start_timeout,
                    shutdown=shutdown,
                )
                for comp in self._order
            ],
            intensity=0,
            handlers=handlers,
            name=name,
        )

    def __repr__(self) -> str:
        return f"App(name={self._name!r}, components={self.order!r})"

    @property
    def order(self) -> list[str]:
        """Component names in start order."""
        return [comp.name for comp in self._order]

    @property
    def running(self) -> bool:
        """Whether the app is running."""
        return self._supervisor.running

    def __getitem__(self, name: str) -> object:
        """The handle the named component reported ready with (its current run's).

        Raises:
            KeyError: no component has this name.
        """
        for comp in self._order:
            if comp.name == name:
                if isinstance(comp, Supervised):
                    return comp.handle
                for info in self._supervisor.which_children():
                    if info.id == name:
                        return info.handle
                return None
        raise KeyError(name)

    async def health(self) -> dict[str, bool]:
        """Each component's health: its ``health()`` if defined, else whether it runs.

        A health check that raises counts as unhealthy (the error is logged). A checkpoint.
        """
        states = {info.id: info.state for info in self._supervisor.which_children()}
        result: dict[str, bool] = {}
        for comp in self._order:
            check = getattr(comp, "health", None)
            if states.get(comp.name) != "running":
                result[comp.name] = False
            elif check is None:
                result[comp.name] = True
            else:
                try:
                    result[comp.name] = bool(await check())
                except Exception:
                    # Unhealthy, not fatal; Cancelled is not an Exception and propagates.
                    logger.exception("health check of component %r raised", comp.name)
                    result[comp.name] = False
        await trio.lowlevel.checkpoint()
        return result

    async def run(self, *, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        """Start the components in order, each once the previous reported ready; serve.

        ``task_status.started`` is called with the app when every component is ready.
        A checkpoint; on cancellation the components are stopped in reverse order (each
        given its grace period) before ``Cancelled`` propagates.

        Cancellation does not wait for a component that has not reported ready yet: it is
        stopped like a running one. The whole stop takes at most the sum of the grace
        periods (``shutdown``, and those inside :class:`Supervised` components).

        Raises:
            AppStartError: a component failed to start (the others were stopped).
            ComponentFailedError: a running component raised (all were stopped).
            KeyboardInterrupt, SystemExit: raised by a component; all the others were
                stopped in reverse order first; re-raised unwrapped.
        """
        try:
            await self._supervisor.run(
                task_status=_CallbackStatus(lambda _: task_status.started(self))
            )
        except ChildStartError as exc:
            raise AppStartError(self._name, exc.child_id, exc.cause) from exc.cause
        except SupervisorEscalation as exc:
            cause = exc.causes[-1] if exc.causes else None
            raise ComponentFailedError(self._name, exc.child_id, cause) from cause

    async def aclose(self) -> None:
        """Stop every component in reverse order and wait until ``run()`` returned."""
        await self._supervisor.aclose()


@asynccontextmanager
async def open_app(
    components: Iterable[Component],
    *,
    start_timeout: float | None = 30.0,
    shutdown: float = 5.0,
    handlers: Sequence[SupervisionHandler] = (),
    name: str = "app",
) -> AsyncIterator[App]:
    """Run an :class:`App` for the duration of an ``async with`` block.

    Every component is ready when the block is entered; they are stopped in reverse order
    when it ends. A component failure cancels the block and raises out of it.

    Raises:
        AppStartError: a component failed to start; the started ones were stopped.
        ComponentFailedError: a running component failed; all were stopped.
        KeyboardInterrupt, SystemExit: from a component or the block, unwrapped, after
            every component was stopped in reverse order.
        TypeError, ValueError: as :class:`App`.
    """
    app = App(
        components, start_timeout=start_timeout, shutdown=shutdown, handlers=handlers, name=name
    )
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(app.run)
            try:
                yield app
            finally:
                app._supervisor._request_shutdown()
    except BaseExceptionGroup as group:
        leaf = unwrap_group(group)
        if leaf is group:
            raise
        raise leaf from leaf.__cause__
