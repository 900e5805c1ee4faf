"""Cancellation injection: drive a Trio API with cancellations at chosen checkpoints.

A *scenario* is an async function that uses a public async API and marks the
cancel scopes that may be attacked with :meth:`Injector.scope`::

    async def scenario(inj: Injector) -> None:
        with inj.scope("service"):
            async with open_lock_service() as service, service.connect() as lock:
                with inj.scope("acquire"):
                    async with lock.acquire(ttl=5):
                        await trio.sleep(1)

:func:`run_injected` runs it under :class:`trio.testing.MockClock` (autojump)
and counts the *steps* of the tasks under test: a step is one run of a task
between two schedule points (trio's ``after_task_step``), counted over the
scenario's task and every task it spawns, transitively. An
:class:`InjectionPlan` says at which steps to act and on which open scope:
cancel it, or move its deadline ``delay`` seconds ahead (so the cancellation
fires later, wherever the code then waits). Actions land *between* two steps of
the scheduler, so they hit the interleavings a ``move_on_after`` or a sibling's
``cancel()`` can produce, including a cancellation in the same scheduler batch
as the event it races with.

After every step the caller's ``check`` runs; at the end the harness checks
that only exceptions of the ``allowed`` types escaped the scenario (by exact
top-level type: an allowed error wrapped in an ``ExceptionGroup`` is *not*
allowed), that no task it spawned outlived it, and that it returned (a
scenario still running ``time_limit`` virtual seconds after it started is
cancelled and reported; one that then ignores the cancellation forever is
detected as idle with no pending deadline, and abandoned). Any of these raises
:class:`InjectionFailure` naming the step, the virtual time and the plan.

Under Hypothesis, draw plans with :func:`injection_plans`: it also draws
:func:`hypothesis.strategies.random_module`, which seeds trio's scheduler
(trio registers its scheduler's ``random.Random`` with Hypothesis, and shuffles
each batch of runnable tasks with it while Hypothesis is imported). A failing
example is therefore replayed exactly by Hypothesis, and its shrunk plan reads
as Python.

Limits: the scenario runs in a worker thread (so a hung run can be abandoned);
it must not depend on being in the main thread (no signal handling), and real
I/O or threads inside it make "idle with no deadline" a false alarm unless it
outlasts ``idle_grace``.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Final, Literal, final

import attrs
import trio
import trio.testing
from hypothesis import strategies as st

__all__ = [
    "Applied",
    "Injection",
    "InjectionFailure",
    "InjectionPlan",
    "Injector",
    "RunResult",
    "injection_plans",
    "run_injected",
]

Action = Literal["cancel", "deadline"]
Anchor = Literal["run", "opened"]

_ABANDONED_LIMIT: Final = 64


@final
@attrs.frozen
class Injection:
    """One action of a plan.

    Attributes:
        step: with ``anchor="run"``, act right after the ``step``-th step of the
            tasks under test (1-based); with ``anchor="opened"``, right after
            the ``step``-th step since the target scope was opened.
        target: with ``anchor="run"``, which open injectable scope: an index
            into the scopes open at that moment, in the order they were
            opened, modulo their number (``0`` is the outermost, and any value
            hits some open scope). With ``anchor="opened"``, the ``target``-th
            scope opened in the run (0-based, every :meth:`Injector.scope`
            counts); skipped if the run opens fewer or it has closed by then.
        action: ``"cancel"`` cancels the scope; ``"deadline"`` sets its deadline
            to ``delay`` virtual seconds from now (if that is earlier).
        delay: seconds, for ``"deadline"``.
        anchor: ``"run"`` counts steps from the start of the run;
            ``"opened"`` from the opening of one scope, which reaches the
            few steps right after an operation starts (its request sent, its
            answer in flight) in every one of many repeated operations.
    """

    step: int
    target: int = 0
    action: Action = "cancel"
    delay: float = 0.0
    anchor: Anchor = "run"


@final
@attrs.frozen
class InjectionPlan:
    """The actions of one run, sorted by step. ``scheduler`` is informational: the
    seeder Hypothesis used for trio's scheduler (see :func:`injection_plans`)."""

    injections: tuple[Injection, ...] = ()
    scheduler: object = None


@final
@attrs.frozen
class Applied:
    """An injection that was applied: on which scope (its label), at what time."""

    injection: Injection
    label: str
    time: float


@final
@attrs.frozen
class RunResult:
    """What a run did.

    Attributes:
        steps: steps of the tasks under test.
        applied: the injections that hit an open scope, in order.
        error: the (allowed) exception that escaped the scenario, if any.
        time: virtual time at which the scenario returned (it starts at 0).
    """

    steps: int
    applied: tuple[Applied, ...]
    error: BaseException | None
    time: float


class InjectionFailure(AssertionError):
    """A run broke a rule: the caller's check failed, an undocumented exception
    escaped, a task outlived the scenario, or the scenario did not return.

    Attributes:
        step: the step at which it was seen (total steps for end-of-run failures).
        time: the virtual time.
        plan: the plan of the run.
        applied: the injections applied before the failure.
    """

    def __init__(
        self,
        message: str,
        *,
        step: int,
        time: float,
        plan: InjectionPlan,
        applied: tuple[Applied, ...],
    ) -> None:
        hits = ", ".join(
            f"{a.injection.action}({a.label}) at step {a.injection.step}"
            + (" after its opening" if a.injection.anchor == "opened" else "")
            for a in applied
        )
        super().__init__(
            f"{message} [step {step}, t={time:g}; applied: {hits or 'none'}; plan: {plan!r}]"
        )
        self.step = step
        self.time = time
        self.plan = plan
        self.applied = applied


@final
class Injector(trio.abc.Instrument):
    """The handle a scenario receives; also the trio instrument that applies the plan.

    Only :meth:`scope`, :attr:`steps` and :attr:`applied` are for scenarios.
    """

    def __init__(self, plan: InjectionPlan, check: Callable[[], None] | None) -> None:
        self._plan = plan
        self._pending = sorted(
            (i for i in plan.injections if i.anchor == "run"), key=lambda i: i.step
        )
        # anchor="opened": by the index of the scope they wait for
        self._waiting: dict[int, list[Injection]] = {}
        for i in plan.injections:
            if i.anchor == "opened":
                self._waiting.setdefault(i.target, []).append(i)
        self._armed: list[tuple[int, Injection, tuple[str, trio.CancelScope]]] = []
        self._opened = 0
        self._check = check
        self._open: list[tuple[str, trio.CancelScope]] = []
        self._under_test: set[trio.lowlevel.Task] = set()
        self._alive: set[trio.lowlevel.Task] = set()
        self._applied: list[Applied] = []
        self._failure: tuple[str, BaseException | None, int, float] | None = None
        self._idle_since: float | None = None
        self._idle_grace = 0.0
        self._clock: trio.testing.MockClock | None = None
        self.deadlocked = threading.Event()
        #: set when the caller abandons the run: its thread then parks for good
        self.halted = threading.Event()
        self.root_scope = trio.CancelScope()
        self.steps = 0

    @property
    def applied(self) -> tuple[Applied, ...]:
        """The injections applied so far."""
        return tuple(self._applied)

    @contextlib.contextmanager
    def scope(self, label: str) -> Iterator[trio.CancelScope]:
        """A cancel scope the plan may cancel or put a deadline on while it is open.

        A synchronous context manager (no checkpoint). Cancellation it catches
        is absorbed like any :class:`trio.CancelScope`'s.

        Args:
            label: a name for reports (e.g. ``"acquire"``).
        """
        entry = (label, trio.CancelScope())
        self._open.append(entry)
        for injection in self._waiting.pop(self._opened, ()):
            self._armed.append((self.steps + injection.step, injection, entry))
        self._opened += 1
        try:
            with entry[1] as scope:
                yield scope
        finally:
            self._open.remove(entry)

    # -- instrument hooks (called by trio's run loop; they must not raise)

    def task_spawned(self, task: trio.lowlevel.Task) -> None:
        try:
            parent = trio.lowlevel.current_task()
        except RuntimeError:
            return
        if parent in self._under_test:
            self._under_test.add(task)
            self._alive.add(task)

    def task_exited(self, task: trio.lowlevel.Task) -> None:
        self._alive.discard(task)

    def after_task_step(self, task: trio.lowlevel.Task) -> None:
        if self.halted.is_set():
            threading.Event().wait()  # an abandoned run must not keep spinning
        self._idle_since = None
        if task not in self._under_test:
            return
        self.steps += 1
        while self._pending and self._pending[0].step <= self.steps:
            self._apply(self._pending.pop(0))
        if self._armed:
            due = [a for a in self._armed if a[0] <= self.steps]
            self._armed = [a for a in self._armed if a[0] > self.steps]
            for _, injection, entry in due:
                if entry in self._open:
                    self._act(injection, entry)
        self.run_check()

    def before_io_wait(self, timeout: float) -> None:
        if self.halted.is_set():
            threading.Event().wait()
        stats = trio.lowlevel.current_statistics()
        if stats.tasks_runnable or stats.seconds_to_next_deadline != math.inf:
            self._idle_since = None
            return
        now = time.monotonic()
        if self._idle_since is None:
            self._idle_since = now
        elif now - self._idle_since > self._idle_grace and not self.deadlocked.is_set():
            # Nothing can run and no deadline will ever wake anything: stop the
            # autojump spin (the thread then sleeps) and let the caller abandon us.
            self.fail("the run is stuck: no task can run and no deadline is pending")
            if self._clock is not None:
                self._clock.autojump_threshold = math.inf
            self.deadlocked.set()

    # -- internals

    def _apply(self, injection: Injection) -> None:
        if not self._open or self._failure is not None:
            return
        self._act(injection, self._open[injection.target % len(self._open)])

    def _act(self, injection: Injection, entry: tuple[str, trio.CancelScope]) -> None:
        if self._failure is not None:
            return
        label, scope = entry
        now = trio.current_time()
        if injection.action == "cancel":
            scope.cancel()
        else:
            scope.deadline = min(scope.deadline, now + injection.delay)
        self._applied.append(Applied(injection, label, now))

    def run_check(self) -> None:
        """Run the caller's check now, recording (not raising) a failure."""
        if self._check is None or self._failure is not None:
            return
        try:
            self._check()
        except BaseException as exc:  # reported by run_injected, with the step
            self.fail(f"check failed: {exc!r}", exc)

    def fail(self, message: str, cause: BaseException | None = None) -> None:
        """Record the first failure and cancel the scenario."""
        if self._failure is None:
            self._failure = (message, cause, self.steps, trio.current_time())
        self.root_scope.cancel()

    def failure(self) -> InjectionFailure | None:
        """The recorded failure, as an exception (``None`` if the run was clean)."""
        if self._failure is None:
            return None
        message, cause, step, at = self._failure
        exc = InjectionFailure(message, step=step, time=at, plan=self._plan, applied=self.applied)
        exc.__cause__ = cause
        return exc


def injection_plans(
    *,
    min_injections: int = 0,
    max_injections: int = 3,
    max_step: int = 300,
    max_target: int = 4,
    max_delay: float = 10.0,
    max_opened: int = 0,
    max_after_open: int = 12,
) -> st.SearchStrategy[InjectionPlan]:
    """A Hypothesis strategy for plans; it also seeds trio's scheduler.

    Draws ``min_injections..max_injections`` injections. Each is anchored on
    the run (step in ``1..max_step``, target in ``0..max_target``) or, when
    ``max_opened > 0``, with even odds on the opening of a scope (target in
    ``0..max_opened``, step in ``1..max_after_open``). Deadline delays are in
    ``[0, max_delay]`` seconds (halves, which shrink well). It also draws
    :func:`hypothesis.strategies.random_module`, whose seed drives trio's batch
    shuffling for the run (so draw the plan right before :func:`run_injected`,
    and draw nothing that reseeds ``random`` after it).

    Args:
        min_injections: fewest actions per run.
        max_injections: most actions per run.
        max_step: last step at which a run-anchored action may land; pick it
            from the step counts your scenario actually makes (see
            :attr:`RunResult.steps`), or most actions miss.
        max_target: largest open-scope index drawn (taken modulo the open scopes).
        max_delay: longest deadline delay, in virtual seconds.
        max_opened: largest scope-opening index for scope-anchored actions
            (``0``: draw only run-anchored ones); about the number of scopes a
            run opens.
        max_after_open: most steps after the opening for scope-anchored actions.
    """
    delays = st.integers(0, int(max_delay * 2)).map(lambda n: n / 2)
    actions = st.sampled_from(("cancel", "deadline"))
    on_run = st.builds(
        Injection,
        step=st.integers(1, max_step),
        target=st.integers(0, max_target),
        action=actions,
        delay=delays,
    )
    one = on_run
    if max_opened > 0:
        on_open = st.builds(
            Injection,
            step=st.integers(1, max_after_open),
            target=st.integers(0, max_opened),
            action=actions,
            delay=delays,
            anchor=st.just("opened"),
        )
        one = st.one_of(on_run, on_open)
    return st.builds(
        lambda items, seeder: InjectionPlan(
            tuple(sorted(items, key=lambda i: i.step)), scheduler=seeder
        ),
        st.lists(one, min_size=min_injections, max_size=max_injections),
        st.random_module(),
    )


_abandoned: list[threading.Thread] = []
_UNWIND_GRACE = 5.0  # real seconds a failed run gets to unwind before it is abandoned


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    out: list[BaseException] = []
    for exc in group.exceptions:
        out.extend(_leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return out


def run_injected(
    scenario: Callable[[Injector], Awaitable[None]],
    plan: InjectionPlan,
    *,
    check: Callable[[], None] | None = None,
    allowed: tuple[type[BaseException], ...] = (),
    time_limit: float = 10_000.0,
    idle_grace: float = 0.2,
    real_time_limit: float = 60.0,
) -> RunResult:
    """Run ``scenario`` once under ``plan``; raise :class:`InjectionFailure` on a broken rule.

    A synchronous call: it starts its own ``trio.run`` (in a worker thread,
    with a fresh ``MockClock(autojump_threshold=0)``), so call it from a plain
    (not async) test, typically a Hypothesis ``@given`` test.

    Args:
        scenario: ``async def scenario(injector)``; it marks attackable scopes
            with :meth:`Injector.scope`.
        plan: the injections (see :func:`injection_plans`).
        check: called after every step of the tasks under test and once more
            when the scenario has returned (still inside the run); it raises
            (e.g. ``AssertionError``) when an invariant is broken.
            It runs inside the run loop: it must not block or checkpoint.
        allowed: exception types that may escape the scenario (exact top-level
            type, via ``isinstance``; groups are not unwrapped).
        time_limit: virtual seconds after which a still-running scenario is a
            failure (it is then cancelled).
        idle_grace: real seconds the run may sit with no runnable task and no
            pending deadline before it is declared stuck and abandoned.
        real_time_limit: real seconds after which the run is a failure; it is
            then cancelled and given a few real seconds to unwind, and
            abandoned (its thread parked for good) if it does not.

    Returns:
        the :class:`RunResult` of a run that broke no rule.

    Raises:
        InjectionFailure: a rule was broken; its message names the step, the
            virtual time, the injections applied and the plan, and its
            ``__cause__`` is the underlying exception.
    """
    injector = Injector(plan, check)
    injector._idle_grace = idle_grace
    clock = trio.testing.MockClock(autojump_threshold=0)
    injector._clock = clock
    outcome: dict[str, object] = {}

    async def root() -> None:
        injector._under_test.add(trio.lowlevel.current_task())
        try:
            await scenario(injector)
        except BaseException as exc:
            outcome["error"] = exc
        outcome["time"] = trio.current_time()
        injector.run_check()
        outcome["leftover"] = sorted(t.name for t in injector._alive)

    async def main() -> None:
        outcome["token"] = trio.lowlevel.current_trio_token()
        done = trio.Event()

        async def run_root() -> None:
            with injector.root_scope:
                await root()
            done.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(run_root)
            with trio.move_on_after(time_limit):
                await done.wait()
            if not done.is_set():
                injector.fail(f"the scenario was still running after {time_limit:g} virtual s")
                await done.wait()

    def target() -> None:
        try:
            trio.run(main, clock=clock, instruments=[injector])
        except BaseException as exc:  # a harness bug; report it, never lose it
            outcome["crash"] = exc

    thread = threading.Thread(target=target, name="run_injected", daemon=True)
    thread.start()
    started = time.monotonic()
    while thread.is_alive():
        thread.join(0.05)
        if injector.deadlocked.is_set() or time.monotonic() - started > real_time_limit:
            break
    if thread.is_alive():
        failure = injector.failure()
        if failure is None:
            failure = InjectionFailure(
                f"the run did not finish within {real_time_limit:g} real s",
                step=injector.steps,
                time=clock.current_time(),
                plan=plan,
                applied=injector.applied,
            )
        # The verdict is taken. Cancel the scenario and give the run a few real
        # seconds to unwind (a run that was only slow, or stuck in a cancellable
        # wait, then leaves no thread, socket or file behind for later tests).
        token = outcome.get("token")
        if isinstance(token, trio.lowlevel.TrioToken):

            def unwind() -> None:  # in the run's thread
                clock.autojump_threshold = 0  # a stuck run had it set to inf
                injector.root_scope.cancel()

            try:
                token.run_sync_soon(unwind)
            except trio.RunFinishedError:
                pass
            thread.join(_UNWIND_GRACE)
        if thread.is_alive():
            # Abandon the stuck run (its thread is a daemon). Keep a bounded list
            # of them so their frames are not torn down under a live trio run.
            injector.halted.set()
            _abandoned.append(thread)
            del _abandoned[:-_ABANDONED_LIMIT]
        raise failure
    crash = outcome.get("crash")
    if isinstance(crash, BaseException):
        raise crash
    failure = injector.failure()
    if failure is not None:
        raise failure
    error = outcome.get("error")
    at = float(outcome.get("time", clock.current_time()))  # type: ignore[arg-type]

    def fail(message: str, cause: BaseException | None = None) -> InjectionFailure:
        exc = InjectionFailure(
            message, step=injector.steps, time=at, plan=plan, applied=injector.applied
        )
        exc.__cause__ = cause
        return exc

    if isinstance(error, BaseException) and not isinstance(error, allowed):
        described = repr(error)
        if isinstance(error, BaseExceptionGroup):
            described = f"{type(error).__name__} of {_leaves(error)!r}"
        raise fail(f"undocumented exception escaped: {described}", error)
    leftover = outcome.get("leftover")
    if leftover:
        raise fail(f"tasks outlived the scenario: {leftover}")
    return RunResult(
        injector.steps,
        injector.applied,
        error if isinstance(error, BaseException) else None,
        at,
    )
