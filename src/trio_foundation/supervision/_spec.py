"""Child specifications, restart backoff and the public value types of supervision.

Everything here is a frozen value checked at construction: a bad child spec is
refused before any supervisor exists, with a ``TypeError`` for a wrong type and a
``ValueError`` for a wrong value.
"""

from __future__ import annotations

import inspect
import math
import random
from collections.abc import Awaitable, Callable
from typing import Any, Final, Literal, Protocol, final, runtime_checkable

import attrs
import trio

__all__ = [
    "AUTO_SHUTDOWNS",
    "AutoShutdown",
    "Backoff",
    "ChildCounts",
    "ChildInfo",
    "ChildSpec",
    "ChildState",
    "ExitReason",
    "RESTARTS",
    "Restart",
    "STRATEGIES",
    "Service",
    "Strategy",
    "is_async_callable",
]

Restart = Literal["permanent", "transient", "temporary"]
"""When a child is restarted: always, only after an abnormal exit, or never."""

Strategy = Literal["one_for_one", "one_for_all", "rest_for_one"]
"""Which children a restart takes with it."""

AutoShutdown = Literal["never", "any_significant", "all_significant"]
"""Whether the exit of significant children shuts the supervisor down (OTP 24+)."""

ExitReason = Literal["normal", "shutdown", "abnormal"]
"""How a child ended: returned, was stopped by its supervisor, or raised."""

ChildState = Literal["running", "restarting", "stopped"]
"""What :meth:`Supervisor.which_children` reports for a child."""

RESTARTS: Final = ("permanent", "transient", "temporary")
STRATEGIES: Final = ("one_for_one", "one_for_all", "rest_for_one")
AUTO_SHUTDOWNS: Final = ("never", "any_significant", "all_significant")


@runtime_checkable
class Service(Protocol):
    """Anything with ``async def run(self, *, task_status)``: a component or a supervisor.

    A service child is started with ``nursery.start``: the supervisor waits until it calls
    ``task_status.started(handle)`` before starting the next child.
    """

    def run(self, *, task_status: trio.TaskStatus[Any] = ...) -> Awaitable[None]:
        """Run the service, calling ``task_status.started(handle)`` once it is ready."""
        ...


def is_async_callable(obj: object) -> bool:
    """Whether calling ``obj`` returns a coroutine (async def, its partial, async ``__call__``)."""
    if inspect.iscoroutinefunction(obj):
        return True
    call = getattr(type(obj), "__call__", None)  # noqa: B004 - we want the async-ness of __call__
    return call is not None and inspect.iscoroutinefunction(call)


def _is_service(obj: object) -> bool:
    run = getattr(obj, "run", None)
    return run is not None and is_async_callable(run)


def _check_id(_: object, __: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, str):
        raise TypeError(f"child id must be a str, got {type(value).__name__}")
    if not value:
        raise ValueError("child id must not be empty")


def _check_start(_: object, __: attrs.Attribute[Any], value: object) -> None:
    if not (is_async_callable(value) or _is_service(value)):
        raise TypeError(
            f"child start must be an async callable or have 'async def run(*, task_status)', "
            f"got {value!r}"
        )


def _check_restart(_: object, __: attrs.Attribute[Any], value: object) -> None:
    if value not in RESTARTS:
        raise ValueError(f"restart must be one of {', '.join(RESTARTS)}; got {value!r}")


def _check_shutdown(_: object, __: attrs.Attribute[Any], value: object) -> None:
    if value == "brutal_kill":
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"shutdown must be a number of seconds or 'brutal_kill', got {value!r}")
    if math.isnan(value) or value < 0:
        raise ValueError(f"shutdown must be >= 0, got {value}")


def _check_start_timeout(_: object, __: attrs.Attribute[Any], value: object) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"start_timeout must be a number of seconds or None, got {value!r}")
    if math.isnan(value) or value <= 0:
        raise ValueError(f"start_timeout must be > 0, got {value}")


@final
@attrs.frozen
class ChildSpec:
    """How to run, restart and stop one child of a supervisor.

    Attributes:
        id: the child's name, unique within its supervisor.
        start: an async callable (``async def``, a ``functools.partial`` of one, an object
            with ``async def __call__``), called as ``await start(*args)``; or a *service*
            (a component, or another :class:`Supervisor`) with
            ``async def run(self, *, task_status)``, started with ``nursery.start`` so the
            next child starts only once it has reported ready.
        args: positional arguments for an async-callable ``start``.
        restart: ``"permanent"`` (always restarted), ``"transient"`` (restarted only after
            an abnormal exit, i.e. when it raised) or ``"temporary"`` (never restarted, and
            forgotten once it ends).
        shutdown: grace period in seconds a child that called
            :meth:`ChildContext.trap_stop` gets to return after being asked to stop, before
            it is cancelled; ``"brutal_kill"`` or ``0`` cancels at once. A child that did not
            trap stop requests is cancelled at once whatever this says.
        significant: whether the child's own exit can shut the supervisor down
            (see ``auto_shutdown``); only for ``transient`` and ``temporary`` children.
        start_timeout: for a service, how long it may take to report ready, else ``None``.
    """

    id: str = attrs.field(validator=_check_id)
    start: Callable[..., Awaitable[object]] | Service = attrs.field(validator=_check_start)
    args: tuple[object, ...] = attrs.field(default=(), converter=tuple)
    restart: Restart = attrs.field(default="permanent", validator=_check_restart)
    shutdown: float | Literal["brutal_kill"] = attrs.field(default=5.0, validator=_check_shutdown)
    significant: bool = attrs.field(default=False)
    start_timeout: float | None = attrs.field(default=None, validator=_check_start_timeout)
    _service: bool = attrs.field(init=False, default=False, repr=False, eq=False)

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "_service", not is_async_callable(self.start))
        if not isinstance(self.significant, bool):
            raise TypeError(f"significant must be a bool, got {self.significant!r}")
        if self.significant and self.restart == "permanent":
            raise ValueError(f"child {self.id!r}: a permanent child cannot be significant")
        if self.args and _is_service(self.start) and not is_async_callable(self.start):
            raise ValueError(f"child {self.id!r}: args are not passed to a service's run()")

    @property
    def is_service(self) -> bool:
        """Whether the child is started with ``nursery.start`` (it has ``run(*, task_status)``)."""
        return self._service

    @property
    def grace(self) -> float:
        """The shutdown grace period in seconds (``0`` for ``"brutal_kill"``)."""
        return 0.0 if self.shutdown == "brutal_kill" else float(self.shutdown)


def _check_positive(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{attribute.name} must be a number, got {value!r}")
    if math.isnan(value) or value <= 0:
        raise ValueError(f"{attribute.name} must be > 0, got {value}")


def _check_jitter(_: object, __: attrs.Attribute[Any], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"jitter must be a number, got {value!r}")
    if not 0 <= value <= 1:
        raise ValueError(f"jitter must be within [0, 1], got {value}")


@final
@attrs.frozen(eq=False)
class Backoff:
    """Delay before a restart: exponential in the number of recent restarts, with jitter.

    The delay before the *n*-th restart inside the intensity window is
    ``min(maximum, initial * multiplier ** (n - 1))``, multiplied by a factor drawn
    uniformly from ``[1 - jitter, 1 + jitter]`` with the injected ``rng``.

    Attributes:
        initial: delay before the first restart in the window, seconds.
        maximum: cap on the delay, seconds.
        multiplier: growth factor per further restart in the window (``>= 1``).
        jitter: relative jitter in ``[0, 1]``.
        rng: the random source (inject a seeded one for reproducible runs).
    """

    initial: float = attrs.field(default=0.01, validator=_check_positive)
    maximum: float = attrs.field(default=1.0, validator=_check_positive)
    multiplier: float = attrs.field(default=2.0, validator=_check_positive)
    jitter: float = attrs.field(default=0.1, validator=_check_jitter)
    rng: random.Random = attrs.field(factory=random.Random)

    def __attrs_post_init__(self) -> None:
        if self.multiplier < 1:
            raise ValueError(f"multiplier must be >= 1, got {self.multiplier}")
        if self.maximum < self.initial:
            raise ValueError(f"maximum must be >= initial, got {self.maximum} < {self.initial}")

    def delay(self, attempt: int) -> float:
        """The delay in seconds before restart number ``attempt`` (1-based) in the window."""
        base = min(self.maximum, self.initial * self.multiplier ** max(0, attempt - 1))
        if self.jitter:
            base *= self.rng.uniform(1 - self.jitter, 1 + self.jitter)
        return base


@final
@attrs.frozen
class ChildInfo:
    """One row of :meth:`Supervisor.which_children`.

    Attributes:
        id: the child's id.
        state: ``"running"``, ``"restarting"`` (waiting out a backoff) or ``"stopped"``
            (ended and not restarted, or terminated with ``terminate_child``).
        restart: the child's restart type.
        significant: the child's ``significant`` flag.
        kind: ``"supervisor"`` for a nested supervisor, else ``"worker"``.
        restarts: how many times this supervisor has restarted the child.
        handle: the value a service child passed to ``task_status.started`` in its current
            run, else ``None``.
    """

    id: str
    state: ChildState
    restart: Restart
    significant: bool
    kind: Literal["worker", "supervisor"]
    restarts: int
    handle: object = attrs.field(default=None, eq=False)


@final
@attrs.frozen
class ChildCounts:
    """What :meth:`Supervisor.count_children` reports (as OTP's ``count_children``).

    Attributes:
        specs: children known to the supervisor, running or not.
        active: children currently running.
        supervisors: children that are supervisors, running or not.
        workers: children that are not supervisors, running or not.
    """

    specs: int
    active: int
    supervisors: int
    workers: int
