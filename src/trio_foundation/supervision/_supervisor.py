"""Supervisors: a nursery plus OTP's restart policy.

Theory of operation
-------------------
``run()`` owns two nurseries. The inner one holds the children, each in its own cancel
scope, and sits inside a *shielded* scope, so a cancellation of the supervisor never
reaches the children directly. The outer one holds a watcher task that sleeps forever;
when the supervisor is cancelled, the watcher turns that into a shutdown request and the
control loop stops the children one at a time in reverse start order, each with its
grace period, before ``run()`` lets the ``Cancelled`` continue. Hence: no child outlives
its supervisor, and every shutdown is ordered.

The shield is safe only because no wait inside it can outlast a shutdown request: every
child runs in the inner nursery from its first step (a service is spawned there and
then waited for until it reports ready, never started with ``nursery.start``), and each
wait the supervisor makes on a child's account (a start, a backoff) sits in a scope that
``_request_shutdown`` cancels (``_interruptible``). What remains is each stop's grace
period and the children's own unwinding. A worker's first step runs before the next
child is spawned (the worker wakes its starter), so children begin in start order.

Nothing escapes a child's task: an ``Exception`` is an abnormal exit; a
``KeyboardInterrupt``/``SystemExit`` is recorded, triggers the ordered shutdown, and is
re-raised unwrapped by ``run()`` afterwards.

Each child's wrapper reports its exit synchronously to the supervisor (``_child_exited``).
An exit the supervisor caused (it was stopping that child) only wakes the stopper; any
other exit is queued and handled by the control loop, which holds ``_lock`` while it
applies the restart rule, counts the restart against the intensity, stops and restarts
the children the strategy names, or escalates. The child API takes the same lock, so
every change to the child list is serialised as in OTP's single supervisor process.

Restart rules (OTP): ``permanent`` always restarts, ``transient`` only after an abnormal
exit, ``temporary`` never (and is forgotten). Intensity: every restart is timestamped
with ``trio.current_time()``; if more than ``intensity`` restarts fall within the last
``period`` seconds (``now - t <= period``: OTP's ``supervisor.erl`` keeps a restart
``R`` while ``R >= Now - Period``), the supervisor stops everything and raises
:class:`SupervisorEscalation`.
"""

from __future__ import annotations

import collections
import math
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any, Final, final

import trio

from ..telemetry import Telemetry, default_telemetry
from ._errors import ChildStartError, MaxChildrenError, SupervisorEscalation
from ._spec import (
    AUTO_SHUTDOWNS,
    STRATEGIES,
    AutoShutdown,
    Backoff,
    ChildCounts,
    ChildInfo,
    ChildSpec,
    ChildState,
    ExitReason,
    Strategy,
)
from ._telemetry import (
    EXIT,
    RESTART,
    SHUTDOWN,
    START,
    STOP,
    ChildExited,
    ChildRestarted,
    ChildStarted,
    Escalated,
    SupervisionHandler,
    notify,
)

__all__ = ["ChildContext", "Supervisor", "current_child", "open_supervisor"]

# The run of every supervised child task that is alive, by task (cheaper than a
# ContextVar.set per child, which costs about as much as spawning the task).
# Invariant: an entry exists exactly while the child's wrapper runs.
_CHILD_TASKS: Final[dict[trio.lowlevel.Task, ChildContext]] = {}


@final
class ChildContext:
    """One run of one child, as seen from inside it (see :func:`current_child`).

    A child that wants a graceful shutdown calls :meth:`trap_stop` and watches the event
    it returns; when its supervisor stops it, the event is set and the child has its
    spec's ``shutdown`` grace period to return before it is cancelled. A child that never
    calls :meth:`trap_stop` is cancelled at once.
    """

    __slots__ = (
        "_began",
        "_done",
        "_fatal",
        "_finished",
        "_handle",
        "_ready",
        "_scope",
        "_start_error",
        "_started",
        "_starter",
        "_stop_event",
        "_stopping",
        "id",
    )

    def __init__(self, child_id: str) -> None:
        self.id: Final = child_id
        self._scope = trio.CancelScope()
        self._stop_event: trio.Event | None = None
        self._done: trio.Event | None = None
        # Invariant: _finished is True once the child's wrapper has returned or raised.
        self._finished = False
        # Invariant: _stopping is True once the supervisor decided to stop this run.
        self._stopping = False
        self._handle: object = None
        # Invariant: _began is True once the child's task has run its first step.
        self._began = False
        # The task waiting for this worker's first step, until the step wakes it.
        self._starter: trio.lowlevel.Task | None = None
        # For a service: set when it reports ready or ends, whichever comes first.
        self._ready: trio.Event | None = None
        self._started = False
        self._start_error: BaseException | None = None
        # Invariant: _fatal is True if the run ended with a BaseException that is not
        # Cancelled (KeyboardInterrupt, SystemExit); the supervisor then stops.
        self._fatal = False

    def trap_stop(self) -> trio.Event:
        """Ask for a graceful stop: return the event set when the supervisor wants us gone.

        Returns:
            A ``trio.Event``, set when the supervisor asks this child to stop; the child
            then has its grace period to return before it is cancelled.
        """
        if self._stop_event is None:
            self._stop_event = trio.Event()
        return self._stop_event

    @property
    def stop_requested(self) -> bool:
        """Whether the supervisor has asked this run to stop."""
        return self._stopping


def current_child() -> ChildContext:
    """The :class:`ChildContext` of the supervised child running the calling task.

    Tasks the child spawned in its own nurseries see the same context.

    Raises:
        RuntimeError: if the calling task does not run inside a supervised child.
    """
    try:
        task: trio.lowlevel.Task | None = trio.lowlevel.current_task()
    except RuntimeError:
        task = None
    while task is not None:
        ctx = _CHILD_TASKS.get(task)
        if ctx is not None:
            return ctx
        nursery = task.parent_nursery
        task = nursery.parent_task if nursery is not None else None
    raise RuntimeError("current_child() called outside a supervised child")


class _ReadyStatus:
    """The ``task_status`` a service child gets: records its handle, wakes the starter."""

    __slots__ = ("_ctx",)

    def __init__(self, ctx: ChildContext) -> None:
        self._ctx = ctx

    def started(self, value: object = None) -> None:
        ctx = self._ctx
        if ctx._started:
            raise RuntimeError("called 'started' twice on the same task status")
        ctx._started = True
        ctx._handle = value
        assert ctx._ready is not None
        ctx._ready.set()


def _cannot_abort(_: Any) -> trio.lowlevel.Abort:
    return trio.lowlevel.Abort.FAILED


class _StartInterrupted(Exception):
    """A start was cut short by a shutdown request (internal; never escapes ``run()``)."""


def _called_from_within(ctx: ChildContext) -> bool:
    """Whether the calling task is ``ctx``'s child task or runs (indirectly) inside it."""
    try:
        task: trio.lowlevel.Task | None = trio.lowlevel.current_task()
    except RuntimeError:
        return False
    while task is not None:
        if _CHILD_TASKS.get(task) is ctx:
            return True
        nursery = task.parent_nursery
        task = nursery.parent_task if nursery is not None else None
    return False


class _Child:
    """The supervisor's record of one child spec and its current run."""

    __slots__ = ("ctx", "restarting", "restarts", "spec")

    def __init__(self, spec: ChildSpec) -> None:
        self.spec = spec
        # Invariant: ctx is the current run, or None when the child is not running.
        self.ctx: ChildContext | None = None
        self.restarting = False
        self.restarts = 0

    @property
    def state(self) -> ChildState:
        if self.ctx is not None and not self.ctx._finished:
            return "running"
        return "restarting" if self.restarting else "stopped"


def _check_int(name: str, value: object, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def _check_specs(children: Iterable[ChildSpec]) -> list[ChildSpec]:
    specs = list(children)
    seen: set[str] = set()
    for spec in specs:
        if not isinstance(spec, ChildSpec):
            raise TypeError(f"children must be ChildSpec instances, got {spec!r}")
        if spec.id in seen:
            raise ValueError(f"duplicate child id {spec.id!r}")
        seen.add(spec.id)
    return specs


def _is_supervisor(obj: object) -> bool:
    return isinstance(obj, _SupervisorBase) or isinstance(
        getattr(obj, "_core", None), _SupervisorBase
    )


class _SupervisorBase:
    """The supervisor machinery shared by :class:`Supervisor` and ``DynamicSupervisor``."""

    def __init__(
        self,
        children: Iterable[ChildSpec] = (),
        *,
        strategy: Strategy = "one_for_one",
        intensity: int = 1,
        period: float = 5.0,
        auto_shutdown: AutoShutdown = "never",
        backoff: Backoff | None = None,
        handlers: Sequence[SupervisionHandler] = (),
        name: str = "supervisor",
        max_children: int | None = None,
        dynamic: bool = False,
        telemetry: Telemetry | None = None,
    ) -> None:
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}; got {strategy!r}")
        self._intensity = _check_int("intensity", intensity, minimum=0)
        if isinstance(period, bool) or not isinstance(period, int | float):
            raise TypeError(f"period must be a number of seconds, got {period!r}")
        if math.isnan(period) or period <= 0:
            raise ValueError(f"period must be > 0, got {period}")
        if auto_shutdown not in AUTO_SHUTDOWNS:
            raise ValueError(
                f"auto_shutdown must be one of {', '.join(AUTO_SHUTDOWNS)}; got {auto_shutdown!r}"
            )
        if backoff is not None and not isinstance(backoff, Backoff):
            raise TypeError(f"backoff must be a Backoff or None, got {backoff!r}")
        if not isinstance(name, str):
            raise TypeError(f"name must be a str, got {name!r}")
        self._max_children = (
            None if max_children is None else _check_int("max_children", max_children, minimum=0)
        )
        for handler in handlers:
            if not callable(handler):
                raise TypeError(f"handlers must be callables, got {handler!r}")
        if telemetry is not None and not isinstance(telemetry, Telemetry):
            raise TypeError(f"telemetry must be a Telemetry or None, got {telemetry!r}")
        specs = _check_specs(children)
        if auto_shutdown == "never":
            for spec in specs:
                if spec.significant:
                    raise ValueError(
                        f"child {spec.id!r} is significant but auto_shutdown is 'never'"
                    )
        if self._max_children is not None and len(specs) > self._max_children:
            raise ValueError(f"{len(specs)} children exceed max_children={self._max_children}")
        self._specs: Final = tuple(specs)
        self._strategy: Final[Strategy] = strategy
        self._period: Final = float(period)
        self._auto_shutdown: Final[AutoShutdown] = auto_shutdown
        self._backoff: Final = backoff
        self._handlers: Final = tuple(handlers)
        self._telemetry: Final = default_telemetry() if telemetry is None else telemetry
        self._name: Final = name
        self._dynamic: Final = dynamic
        # Runtime state, reset by every run().
        self._children: list[_Child] = [_Child(spec) for spec in self._specs]
        self._nursery: trio.Nursery | None = None
        self._lock = trio.Lock()
        self._pending: collections.deque[tuple[_Child, ChildContext, ExitReason]] = (
            collections.deque()
        )
        self._causes: dict[ChildContext, BaseException] = {}
        # Invariant: (time, key, exception) of every restart still inside the period.
        self._restarts: collections.deque[tuple[float, str | None, BaseException | None]] = (
            collections.deque()
        )
        self._wake = trio.Event()
        self._shutdown_requested = False
        self._running = False
        self._stopped = trio.Event()
        self._escalated = False
        # Cancel scopes of the waits a shutdown request cuts short (backoff, starts).
        self._interruptibles: set[trio.CancelScope] = set()
        # The first KeyboardInterrupt/SystemExit of this run, re-raised by run().
        self._fatal: BaseException | None = None
        # An escalation or start failure of this run, raised by run().
        self._error: SupervisorEscalation | ChildStartError | None = None

    # ----------------------------------------------------------------- properties

    @property
    def name(self) -> str:
        """The supervisor's name (used in telemetry and errors)."""
        return self._name

    @property
    def running(self) -> bool:
        """Whether ``run()`` has started its children and not yet stopped them."""
        return self._running

    @property
    def escalated(self) -> bool:
        """Whether the last run ended by escalation."""
        return self._escalated

    # ------------------------------------------------------------ hooks (private)

    def _intensity_key(self, child_id: str) -> str | None:
        """Which restarts count together; ``None``: all of them, per supervisor (OTP)."""
        return None

    # ------------------------------------------------------------------- running

    async def run(self, *, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        """Start the children in order, supervise them, stop them in reverse order.

        Use as ``await nursery.start(sup.run)`` (``started`` is called with the supervisor
        once every child has started), or as a child of another supervisor. A supervisor
        object can be run again after a run ended (that is how a parent restarts it); each
        run starts from the declared children.

        This is a checkpoint. When cancelled, it stops the children in reverse start order,
        each with its grace period, then returns (the caller's next checkpoint raises
        ``Cancelled``): nothing is left running. Every wait inside (a service starting,
        a backoff, a child API call holding the lock) is cut short by the cancellation, so
        the whole stop takes at most the sum of the children's grace periods (recursively
        for nested supervisors), whatever the children do short of shielding themselves
        from cancellation.

        Raises:
            SupervisorEscalation: restart intensity was exceeded (all children stopped).
            ChildStartError: a service child failed to start at startup (the ones already
                started were stopped in reverse order).
            KeyboardInterrupt, SystemExit: raised by a child (or inside this task); every
                other child was stopped first, in reverse order with its grace period.
                The exception is re-raised as it is, never wrapped in an exception group
                (any ``BaseException`` that is neither ``Exception`` nor ``Cancelled``
                follows this rule).
            RuntimeError: the supervisor is already running.
        """
        if self._running:
            raise RuntimeError(f"supervisor {self._name!r} is already running")
        self._reset()
        self._running = True
        cancelled: BaseException | None = None
        try:
            cancelled = await self._supervise(task_status)
        finally:
            self._running = False
            self._nursery = None
            self._stopped.set()
        error, self._error = self._error, None
        if self._fatal is not None:
            fatal, self._fatal = self._fatal, None
            raise fatal
        if error is not None:
            raise error
        if cancelled is not None:
            raise cancelled  # the caller's own cancellation, bare (not in a group)

    async def _supervise(self, task_status: trio.TaskStatus[Any]) -> BaseException | None:
        """The body of :meth:`run`; returns the caller's ``Cancelled`` if there was one."""
        try:
            async with trio.open_nursery() as outer:
                outer.start_soon(self._watch_cancellation)
                with trio.CancelScope(shield=True):
                    async with trio.open_nursery() as nursery:
                        self._nursery = nursery
                        try:
                            await self._start_initial()
                            task_status.started(self)
                            await self._control_loop()
                        except (SupervisorEscalation, ChildStartError) as exc:
                            self._error = exc
                        except trio.Cancelled:  # pragma: no cover - shielded; not ours
                            raise
                        except BaseException as exc:
                            # KeyboardInterrupt/SystemExit raised in this very task: the
                            # same rule as for a child's (ordered shutdown, re-raise).
                            if self._fatal is None:
                                self._fatal = exc
                            self._request_shutdown()
                            await self._stop_all()
                outer.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            # Only the watcher can raise here, and only the caller's Cancelled (the
            # children's nursery lets nothing out): hand that back unwrapped.
            cancelled, rest = group.split(trio.Cancelled)
            if rest is not None or cancelled is None:  # pragma: no cover - defensive
                raise
            return _first_leaf(cancelled)
        return None

    async def aclose(self) -> None:
        """Stop every child in reverse start order and wait until ``run()`` has returned.

        A checkpoint. If cancelled while waiting, the shutdown still proceeds in ``run()``.
        Does nothing if the supervisor is not running.
        """
        if not self._running:
            await trio.lowlevel.checkpoint()
            return
        self._request_shutdown()
        await self._stopped.wait()

    def _reset(self) -> None:
        self._children = [_Child(spec) for spec in self._specs]
        self._pending.clear()
        self._causes.clear()
        self._restarts.clear()
        self._wake = trio.Event()
        self._shutdown_requested = False
        self._stopped = trio.Event()
        self._escalated = False
        self._fatal = None
        self._error = None

    async def _watch_cancellation(self) -> None:
        try:
            await trio.sleep_forever()
        finally:
            self._request_shutdown()

    def _request_shutdown(self) -> None:
        self._shutdown_requested = True
        self._wake.set()
        for scope in self._interruptibles:
            scope.cancel()

    async def _start_initial(self) -> None:
        for index, child in enumerate(self._children):
            if self._shutdown_requested:
                return  # cancelled while starting: the control loop stops what runs
            try:
                await self._start(child)
            except _StartInterrupted:
                return  # the control loop stops what runs, this child included
            except ChildStartError:
                self._request_shutdown()  # the child API refuses from now on
                for started in reversed(self._children[:index]):
                    await self._stop(started)
                raise

    async def _control_loop(self) -> None:
        while True:
            if not self._pending and not self._shutdown_requested:
                self._wake = trio.Event()
                await self._wake.wait()
            async with self._lock:
                while self._pending and not self._shutdown_requested:
                    child, ctx, reason = self._pending.popleft()
                    await self._handle_exit(child, ctx, reason)
                if self._shutdown_requested:
                    await self._stop_all()
                    return

    @contextmanager
    def _interruptible(self) -> Iterator[trio.CancelScope]:
        """A cancel scope that a shutdown request cancels (at once if one is pending)."""
        scope = trio.CancelScope()
        if self._shutdown_requested:
            scope.cancel()
        self._interruptibles.add(scope)
        try:
            with scope:
                yield scope
        finally:
            self._interruptibles.discard(scope)

    # ------------------------------------------------------------ child lifecycle

    async def _start(self, child: _Child) -> None:
        """Start one run of ``child`` and wait until it has begun (a service: is ready).

        The child's task is spawned in the children's nursery at once, so a child being
        started is stopped like any other (ask, grace, cancel). A worker's first step (up
        to its first checkpoint) has run when this returns, so children begin in the order
        they are started. A service is waited for until it reports ready, its
        ``start_timeout`` ends, a shutdown is requested, or the caller is cancelled.

        Raises:
            ChildStartError: a service raised or returned before reporting ready, or did
                not report ready within its ``start_timeout`` (it was stopped).
            _StartInterrupted: a shutdown was requested first; the child is left to the
                ordered shutdown.
            trio.Cancelled: the caller was cancelled; the child (never ready) was
                cancelled at once and is no longer the child's current run.
        """
        assert self._nursery is not None
        ctx = ChildContext(child.spec.id)
        child.ctx = ctx
        child.restarting = False
        service = child.spec._service
        if service:
            ctx._ready = trio.Event()
        self._nursery.start_soon(self._run_child, child, ctx, name=child.spec.id)
        if not service:
            # Park until the child's task has run its first step (up to its first
            # checkpoint), so the next child is spawned only after it: children begin in
            # start order. The child's task is runnable and wakes us before anything else,
            # so this takes one scheduler batch and cannot block; hence no abort.
            ctx._starter = trio.lowlevel.current_task()
            await trio.lowlevel.wait_task_rescheduled(_cannot_abort)
            if self._handlers or self._telemetry.listening(START):
                self._notify(ChildStarted(self._name, child.spec.id), restarts=child.restarts)
            return
        assert ctx._ready is not None
        timeout = child.spec.start_timeout
        interrupted = False
        try:
            with trio.move_on_after(math.inf if timeout is None else timeout):
                with self._interruptible() as scope:
                    await ctx._ready.wait()
                interrupted = scope.cancelled_caught
        except trio.Cancelled:
            # The caller left: abandon the start. The child never became ready, so nothing
            # depends on it; it is cancelled at once rather than given a grace period.
            if child.ctx is ctx:
                child.ctx = None
            ctx._stopping = True
            ctx._scope.cancel()
            raise
        if ctx._started:
            if self._handlers or self._telemetry.listening(START):
                self._notify(ChildStarted(self._name, child.spec.id), restarts=child.restarts)
            return
        if ctx._finished and not ctx._fatal:
            if child.ctx is ctx:
                child.ctx = None
            cause = ctx._start_error
            self._notify(ChildExited(self._name, child.spec.id, "abnormal", cause))
            raise ChildStartError(self._name, child.spec.id, cause)
        if interrupted or ctx._finished:
            raise _StartInterrupted
        # start_timeout: stop it like any child (ask, grace, cancel), then report.
        await self._stop(child)
        self._notify(ChildExited(self._name, child.spec.id, "abnormal", None))
        raise ChildStartError(self._name, child.spec.id, None)

    async def _run_child(self, child: _Child, ctx: ChildContext) -> None:
        """One run of a child, worker or service: the task the supervisor owns for it.

        Nothing escapes it: an ``Exception`` is an abnormal exit, the end of the child's
        cancel scope is a shutdown, and any other ``BaseException`` (``KeyboardInterrupt``,
        ``SystemExit``) is recorded for ``run()`` to re-raise after the ordered shutdown.
        """
        task = trio.lowlevel.current_task()
        _CHILD_TASKS[task] = ctx
        ctx._began = True
        if ctx._starter is not None:
            trio.lowlevel.reschedule(ctx._starter)
            ctx._starter = None
        spec = child.spec
        reason: ExitReason = "normal"
        exc: BaseException | None = None
        try:
            with ctx._scope:
                if spec._service:
                    await spec.start.run(task_status=_ReadyStatus(ctx))  # type: ignore[union-attr]
                else:
                    await spec.start(*spec.args)  # type: ignore[operator]
            if ctx._scope.cancelled_caught:
                reason = "shutdown"
        except Exception as error:
            reason, exc = "abnormal", error
        except trio.Cancelled:
            # Only a cancellation of the children's nursery itself gets here (the
            # supervisor never does that); keep the books straight and let it through.
            del _CHILD_TASKS[task]
            self._child_exited(child, ctx, "shutdown", None)
            raise
        except BaseException as error:
            reason, exc = "abnormal", error
            ctx._fatal = True
        del _CHILD_TASKS[task]
        self._child_exited(child, ctx, reason, exc)

    def _child_exited(
        self, child: _Child, ctx: ChildContext, reason: ExitReason, exc: BaseException | None
    ) -> None:
        ctx._finished = True
        before_ready = ctx._ready is not None and not ctx._started
        if ctx._stopping:
            reason, exc = "shutdown", None
        if ctx._fatal:
            # KeyboardInterrupt, SystemExit...: the whole supervisor stops, in order, and
            # run() re-raises the first one.
            if self._fatal is None:
                self._fatal = exc
            self._request_shutdown()
        if before_ready and reason != "shutdown" and not ctx._fatal:
            # A failed start: _start reports it (ChildStartError); not an exit to handle.
            ctx._start_error = exc or RuntimeError(
                f"child {child.spec.id!r} returned before reporting ready"
            )
        elif self._handlers or self._telemetry.listening(EXIT):
            self._notify(ChildExited(self._name, child.spec.id, reason, exc))
        if ctx._done is not None:
            ctx._done.set()
        if ctx._ready is not None:
            ctx._ready.set()
        if ctx._stopping or ctx._fatal or before_ready:
            return
        if exc is not None:
            self._causes[ctx] = exc
        self._pending.append((child, ctx, reason))
        self._wake.set()

    async def _stop(self, child: _Child) -> float | None:
        """Stop ``child``'s current run, if any: ask, wait its grace, cancel, wait.

        Returns how long the stop took (seconds of ``trio.current_time``; 0.0 when no
        handler listens to the stop or shutdown events, which then go unmeasured), or
        ``None`` if there was no live run to stop. If the caller is cancelled during the
        grace period, the child is cancelled at once and the wait for its end is abandoned
        (it ends on its own inside the children's nursery; it is already off the books, so
        nothing restarts it).
        """
        ctx = child.ctx
        child.ctx = None
        child.restarting = False
        if ctx is None or ctx._finished:
            return None
        ctx._stopping = True
        ctx._done = trio.Event()
        grace = child.spec.grace
        telemetry = self._telemetry
        timed = telemetry.listening(STOP) or telemetry.listening(SHUTDOWN)
        began = trio.current_time() if timed else 0.0
        cancelled = True
        try:
            if ctx._stop_event is not None and grace > 0:
                ctx._stop_event.set()
                with trio.move_on_after(grace):
                    await ctx._done.wait()
                cancelled = not ctx._done.is_set()
        finally:
            ctx._scope.cancel()
        await ctx._done.wait()
        if not timed:
            return 0.0
        duration = trio.current_time() - began
        if telemetry.listening(STOP):
            telemetry.emit(
                STOP,
                {"duration": duration, "grace": grace},
                {"supervisor": self._name, "child_id": child.spec.id, "cancelled": cancelled},
            )
        return duration

    async def _stop_all(self) -> None:
        timed = self._telemetry.listening(SHUTDOWN)
        began = trio.current_time() if timed else 0.0
        order: list[str] = []
        durations: list[float] = []
        for child in reversed(self._children):
            took = await self._stop(child)
            if took is not None:
                order.append(child.spec.id)
                durations.append(took)
        if timed and self._telemetry.listening(SHUTDOWN):
            cause = (
                "escalation"
                if self._escalated
                else "interrupt"
                if self._fatal is not None
                else "shutdown"
            )
            self._telemetry.emit(
                SHUTDOWN,
                {"duration": trio.current_time() - began, "children": len(order)},
                {
                    "supervisor": self._name,
                    "order": tuple(order),
                    "durations": tuple(durations),
                    "cause": cause,
                },
            )

    def _notify(
        self,
        event: ChildStarted | ChildExited | ChildRestarted | Escalated,
        **measurements: float,
    ) -> None:
        notify(self._handlers, self._telemetry, event, measurements)

    def _remove(self, child: _Child) -> None:
        self._children.remove(child)

    # ------------------------------------------------------------- restart policy

    async def _handle_exit(self, child: _Child, ctx: ChildContext, reason: ExitReason) -> None:
        exc = self._causes.pop(ctx, None)
        if child.ctx is not ctx or child not in self._children:
            return  # stale: this run was already replaced or stopped
        child.ctx = None
        restart = child.spec.restart
        if not (restart == "permanent" or (restart == "transient" and reason == "abnormal")):
            if restart == "temporary" or self._dynamic:
                self._remove(child)
            self._check_auto_shutdown(child)
            return
        now = trio.current_time()
        key = self._intensity_key(child.spec.id)
        self._restarts.append((now, key, exc))
        # OTP (supervisor.erl, add_restart/3): keep the restarts R with R >= Now - Period,
        # so a restart exactly `period` seconds old still counts.
        while self._restarts and now - self._restarts[0][0] > self._period:
            self._restarts.popleft()
        window = [entry for entry in self._restarts if entry[1] == key]
        if len(window) > self._intensity:
            await self._escalate(
                child, [cause for _, _, cause in window if cause is not None], len(window)
            )
        if self._strategy == "one_for_one":
            targets = [child]
        else:
            index = self._children.index(child)
            others = self._children if self._strategy == "one_for_all" else self._children[index:]
            for other in reversed(others):
                if other is not child:
                    await self._stop(other)
            for other in [o for o in others if o is not child and o.spec.restart == "temporary"]:
                self._remove(other)
            index = self._children.index(child)
            targets = (
                list(self._children) if self._strategy == "one_for_all" else self._children[index:]
            )
        if self._backoff is not None:
            for target in targets:
                target.restarting = True
            with self._interruptible():  # a shutdown cuts it short
                await trio.sleep(self._backoff.delay(len(window)))
            if self._shutdown_requested:
                for target in targets:
                    target.restarting = False
                return
        for target in targets:
            if self._shutdown_requested:
                return  # the control loop stops what runs
            if target.ctx is not None and not target.ctx._finished:
                continue
            target.restarts += 1
            try:
                await self._start(target)
            except _StartInterrupted:
                return
            except ChildStartError as error:
                # OTP retries a failed restart as a fresh abnormal exit of that child.
                retry = ChildContext(target.spec.id)
                retry._finished = True
                target.ctx = retry
                if error.cause is not None:
                    self._causes[retry] = error.cause
                self._pending.append((target, retry, "abnormal"))
                continue
            if self._handlers or self._telemetry.listening(RESTART):
                self._notify(
                    ChildRestarted(self._name, target.spec.id, child.spec.id),
                    restarts_in_period=len(window),
                )

    async def _escalate(self, child: _Child, causes: list[BaseException], restarts: int) -> None:
        self._escalated = True
        # From here on the child API refuses ("not running"): a call that was waiting for
        # the lock must not start a child in a nursery that is about to close.
        self._request_shutdown()
        await self._stop_all()
        self._notify(
            Escalated(self._name, child.spec.id, tuple(causes)),
            restarts_in_period=restarts,
            intensity=self._intensity,
            period=self._period,
        )
        raise SupervisorEscalation(self._name, child.spec.id, self._intensity, self._period, causes)

    def _check_auto_shutdown(self, child: _Child) -> None:
        if not child.spec.significant or self._auto_shutdown == "never":
            return
        if self._auto_shutdown == "any_significant" or not any(
            other.spec.significant and other.state == "running" for other in self._children
        ):
            self._shutdown_requested = True

    # ------------------------------------------------------------------ child API

    def _find(self, child_id: str) -> _Child:
        for child in self._children:
            if child.spec.id == child_id:
                return child
        raise LookupError(f"supervisor {self._name!r} has no child {child_id!r}")

    def _check_running(self) -> None:
        if not self._running or self._nursery is None or self._shutdown_requested:
            raise RuntimeError(f"supervisor {self._name!r} is not running")

    def which_children(self) -> list[ChildInfo]:
        """Every child, in start order, with its state (OTP ``which_children``)."""
        return [
            ChildInfo(
                id=child.spec.id,
                state=child.state,
                restart=child.spec.restart,
                significant=child.spec.significant,
                kind="supervisor" if _is_supervisor(child.spec.start) else "worker",
                restarts=child.restarts,
                handle=child.ctx._handle if child.ctx is not None else None,
            )
            for child in self._children
        ]

    def count_children(self) -> ChildCounts:
        """How many children there are, are running, are supervisors and are workers."""
        supervisors = sum(_is_supervisor(child.spec.start) for child in self._children)
        return ChildCounts(
            specs=len(self._children),
            active=sum(child.state == "running" for child in self._children),
            supervisors=supervisors,
            workers=len(self._children) - supervisors,
        )

    async def terminate_child(self, child_id: str) -> None:
        """Stop a child (grace period, then cancel) without restarting it.

        The child stays known (state ``"stopped"``) unless it is ``temporary`` or the
        supervisor is dynamic, in which case it is forgotten. A checkpoint. ``Cancelled``
        while waiting for the supervisor's lock leaves nothing done; once the lock is held
        the child is off the books (stopped, never restarted), and a cancellation during
        its grace period cancels it at once instead of waiting.

        Raises:
            LookupError: no child has this id.
            RuntimeError: the supervisor is not running, or the caller runs inside the
                child it wants to terminate (a child ends itself by returning).
        """
        async with self._lock:
            self._check_running()
            child = self._find(child_id)
            if child.ctx is not None and _called_from_within(child.ctx):
                raise RuntimeError(
                    f"child {child_id!r} cannot terminate itself; return from it instead"
                )
            if child.spec.restart == "temporary" or self._dynamic:
                self._remove(child)
            await self._stop(child)

    async def restart_child(self, child_id: str) -> object:
        """Start a stopped child again (does not count toward the intensity).

        A checkpoint. ``Cancelled`` (while waiting for the lock or for a service to report
        ready) leaves the child stopped: a start the caller abandoned is cancelled at once.

        Returns:
            The handle a service child reported ready with, else ``None``.

        Raises:
            LookupError: no child has this id.
            RuntimeError: the child is running or restarting, or the supervisor is not running.
            ChildStartError: a service child failed to start (it stays stopped).
        """
        async with self._lock:
            self._check_running()
            child = self._find(child_id)
            if child.state != "stopped":
                raise RuntimeError(f"child {child_id!r} is {child.state}")
            ctx = await self._start_for_caller(child)
        return ctx._handle

    async def delete_child(self, child_id: str) -> None:
        """Forget a stopped child's spec.

        A checkpoint (acquires the supervisor's lock); ``Cancelled`` leaves nothing done.

        Raises:
            LookupError: no child has this id.
            RuntimeError: the child is running or restarting, or the supervisor is not running.
        """
        async with self._lock:
            self._check_running()
            child = self._find(child_id)
            if child.state != "stopped":
                raise RuntimeError(f"child {child_id!r} is {child.state}; terminate it first")
            self._remove(child)

    async def start_child(self, spec: ChildSpec) -> object:
        """Add a child after the existing ones and start it.

        A checkpoint. ``Cancelled`` (while waiting for the lock or for a service to report
        ready) leaves nothing done: the spec is not kept and the abandoned start is
        cancelled at once.

        Returns:
            The handle a service child reported ready with, else ``None``.

        Raises:
            TypeError: ``spec`` is not a :class:`ChildSpec`.
            ValueError: a child with this id exists, or it is significant while
                ``auto_shutdown`` is ``"never"``.
            MaxChildrenError: a dynamic supervisor is at ``max_children``; nothing started.
            ChildStartError: a service child failed to start (its spec is not kept).
            RuntimeError: the supervisor is not running, or shut down during the start.
        """
        if not isinstance(spec, ChildSpec):
            raise TypeError(f"start_child needs a ChildSpec, got {spec!r}")
        if spec.significant and self._auto_shutdown == "never":
            raise ValueError(f"child {spec.id!r} is significant but auto_shutdown is 'never'")
        async with self._lock:
            self._check_running()
            if any(child.spec.id == spec.id for child in self._children):
                raise ValueError(f"duplicate child id {spec.id!r}")
            if self._max_children is not None and len(self._children) >= self._max_children:
                raise MaxChildrenError(self._name, spec.id, self._max_children)
            child = _Child(spec)
            self._children.append(child)
            try:
                ctx = await self._start_for_caller(child)
            except (ChildStartError, trio.Cancelled):
                self._remove(child)
                raise
        return ctx._handle

    async def _start_for_caller(self, child: _Child) -> ChildContext:
        """``_start`` on behalf of a child API caller (who holds the lock)."""
        try:
            await self._start(child)
        except _StartInterrupted:
            raise RuntimeError(
                f"supervisor {self._name!r} shut down while child {child.spec.id!r} was starting"
            ) from None
        assert child.ctx is not None
        return child.ctx


@final
class Supervisor(_SupervisorBase):
    """A nursery plus OTP's restart policy: strategies, restart types, intensity, ordering.

    Nothing runs until :meth:`run` (or :func:`open_supervisor`); the constructor only
    validates.

    Args:
        children: the child specs, in start order; ids must be unique.
        strategy: ``"one_for_one"`` (restart only the exited child), ``"one_for_all"``
            (stop all others in reverse order, restart all in order) or ``"rest_for_one"``
            (stop the children started after it in reverse, restart it and them in order).
        intensity: maximum restarts within ``period`` (OTP default 1); one more escalates.
        period: the intensity window in seconds (OTP default 5).
        auto_shutdown: ``"never"``, ``"any_significant"`` or ``"all_significant"``.
        backoff: optional :class:`Backoff` delay before each restart.
        handlers: legacy synchronous handlers of the four frozen events (see
            ``trio_foundation.supervision``).
        name: used in telemetry and errors.
        telemetry: where the supervision events go (``supervisor.child.start`` ...;
            see ``docs/supervision.md``); ``None``: :func:`default_telemetry`.

    Raises:
        TypeError: a child is not a :class:`ChildSpec`, or a parameter has the wrong type.
        ValueError: duplicate child id, negative intensity, period <= 0, unknown strategy
            or auto_shutdown, or a significant child while ``auto_shutdown="never"``.
    """

    def __init__(
        self,
        children: Iterable[ChildSpec] = (),
        *,
        strategy: Strategy = "one_for_one",
        intensity: int = 1,
        period: float = 5.0,
        auto_shutdown: AutoShutdown = "never",
        backoff: Backoff | None = None,
        handlers: Sequence[SupervisionHandler] = (),
        name: str = "supervisor",
        telemetry: Telemetry | None = None,
    ) -> None:
        super().__init__(
            children,
            strategy=strategy,
            intensity=intensity,
            period=period,
            auto_shutdown=auto_shutdown,
            backoff=backoff,
            handlers=handlers,
            name=name,
            telemetry=telemetry,
        )

    def __repr__(self) -> str:
        return (
            f"Supervisor(name={self._name!r}, strategy={self._strategy!r}, "
            f"intensity={self._intensity}, period={self._period:g}, "
            f"children={[spec.id for spec in self._specs]!r})"
        )


def _first_leaf(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The first exception in ``group`` that is not itself a group."""
    first = group.exceptions[0]
    return _first_leaf(first) if isinstance(first, BaseExceptionGroup) else first


def _find_interrupt(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    """The first ``KeyboardInterrupt`` or ``SystemExit`` in ``group``, at any depth."""
    for exc in group.exceptions:
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            return exc
        if isinstance(exc, BaseExceptionGroup):
            found = _find_interrupt(exc)
            if found is not None:
                return found
    return None


def _unwrap_group(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """What an ``open_*`` context manager raises for its nursery's exception group.

    ``KeyboardInterrupt``/``SystemExit`` anywhere in the group win, unwrapped; else a
    single leaf that is not ``Cancelled`` (an escalation, a start error, the block's own
    exception) is unwrapped; anything else stays a group.
    """
    interrupt = _find_interrupt(group)
    if interrupt is not None:
        return interrupt
    leaves = [exc for exc in group.exceptions if not isinstance(exc, trio.Cancelled)]
    if len(leaves) == 1 and not isinstance(leaves[0], BaseExceptionGroup):
        return leaves[0]
    return group


@asynccontextmanager
async def open_supervisor(
    children: Iterable[ChildSpec] = (),
    *,
    strategy: Strategy = "one_for_one",
    intensity: int = 1,
    period: float = 5.0,
    auto_shutdown: AutoShutdown = "never",
    backoff: Backoff | None = None,
    handlers: Sequence[SupervisionHandler] = (),
    name: str = "supervisor",
    telemetry: Telemetry | None = None,
) -> AsyncIterator[Supervisor]:
    """Run a :class:`Supervisor` for the duration of an ``async with`` block.

    The children have all started when the block is entered; when the block ends the
    children are stopped in reverse order. If the supervisor escalates, the block is
    cancelled and :class:`SupervisorEscalation` is raised out of the ``async with``
    (unwrapped from the nursery's exception group). If ``auto_shutdown`` stops the
    supervisor, the block keeps running. A ``KeyboardInterrupt`` or ``SystemExit`` from a
    child or from the block leaves the ``async with`` unwrapped, after the ordered
    shutdown. When the block's scope is cancelled, the ``async with`` returns within the
    sum of the children's grace periods.

    Args and raises are those of :class:`Supervisor` and :meth:`Supervisor.run`.
    """
    sup = Supervisor(
        children,
        strategy=strategy,
        intensity=intensity,
        period=period,
        auto_shutdown=auto_shutdown,
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
                sup._request_shutdown()
    except BaseExceptionGroup as group:
        leaf = _unwrap_group(group)
        if leaf is group:
            raise
        raise leaf from leaf.__cause__
