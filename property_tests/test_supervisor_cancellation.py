"""Cancellation injection against supervisors and apps (issue 7, "check the Trio layer").

Each example draws a supervision tree whose children misbehave in the ways that matter
for teardown — services that are slow to report ready, fail to start, or never do;
children that crash, return, trap stop requests and overrun their grace period, raise
``SystemExit`` — plus a script of child API calls, and runs it with
:func:`trio_foundation.verify.cancellation.run_injected`: Hypothesis also draws where
cancellations and deadlines land (any checkpoint of any task under test, on the
supervisor's own scope or on the scope of one API call) and seeds trio's scheduler.
A final deadline (the *horizon*) always cancels the supervisor in the end.

Every supervisor scenario also runs with hostile handlers attached to the default
telemetry (which the supervisors emit through): one raises on every supervision event
(never detached), one calls back into the supervisor's sync API and emits a nested
event, and an async one calls the supervisor's async API (taking its lock) on every
exit. The rules below must hold all the same: a handler can neither break, block nor
deadlock a supervisor, even while cancellations land anywhere.

Checked after every step of every task under test, and at the end:

* ``ReturnsWithinGrace``: once the scope around a supervisor/app is cancelled, it has
  returned within the sum of the grace periods of its children (every child that could
  be stopped, recursively) — never later, whatever the children do short of shielding.
* ``NoChildOutlivesItsSupervisor``: once ``open_supervisor``/``open_app`` has returned,
  no child task is alive (and the harness checks no task outlives the scenario).
* ``CancelledCallLeavesNothing``: a ``start_child`` whose caller was cancelled left no
  child behind.
* Only documented exceptions escape, unwrapped (the harness checks the exact top-level
  type): ``SupervisorEscalation``, ``ChildStartError``, ``AppStartError``,
  ``ComponentFailedError``, ``SystemExit``.

On the code before issue 7's fix this finds the never-ready service (fault 4: the run
is stuck) and the cancelled supervisor waiting for a failing restart (fault 5: returns
after its grace); see docs/supervision.md for the measured catch rates.
"""

from __future__ import annotations

import logging
import random
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any, Literal

import attrs
import pytest
import trio
import trio.lowlevel
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from trio_foundation.services import (
    AppStartError,
    ComponentFailedError,
    Supervised,
    open_app,
)
from trio_foundation.supervision import (
    Backoff,
    ChildSpec,
    ChildStartError,
    DynamicSupervisor,
    SupervisorEscalation,
    current_child,
    open_dynamic_supervisor,
    open_supervisor,
)
from trio_foundation.supervision._supervisor import _SupervisorBase, _unwrap_group
from trio_foundation.supervision._telemetry import EVENTS
from trio_foundation.telemetry import Event, default_telemetry
from trio_foundation.verify.cancellation import (
    InjectionFailure,
    InjectionPlan,
    Injector,
    RunResult,
    injection_plans,
    run_injected,
)

HORIZON = 40.0  # virtual seconds after which the scenario cancels the supervisor itself
DOCUMENTED = (
    SupervisorEscalation,
    ChildStartError,
    AppStartError,
    ComponentFailedError,
    SystemExit,
)


# ------------------------------------------------------------------ what children do


@attrs.frozen
class RunPlan:
    """What one run of a child does (a child's runs cycle through its plans)."""

    start_delay: float  # before reporting ready (services) / before living (workers)
    start: Literal["ok", "fail", "hang"]  # services only: report ready, raise, or never
    life: float | None  # seconds after ready before it ends; None: until stopped
    end: Literal["crash", "return", "exit"]  # "exit": raise SystemExit
    trap: bool  # calls trap_stop() and cleans up when asked
    cleanup: float  # seconds of cleanup when asked to stop (may overrun the grace)


@attrs.frozen
class ChildPlan:
    cid: str
    service: bool
    restart: Literal["permanent", "transient", "temporary"]
    grace: float
    start_timeout: float | None
    runs: tuple[RunPlan, ...]


@attrs.define
class World:
    """What the scenario observes: child tasks alive, cancel times, supervisor returns."""

    alive: set[str] = attrs.Factory(set)
    starts: dict[str, int] = attrs.Factory(dict)
    cancelled_at: dict[str, float] = attrs.Factory(dict)
    scopes: dict[str, trio.CancelScope] = attrs.Factory(dict)
    bounds: dict[str, float] = attrs.Factory(dict)
    returned: dict[str, float] = attrs.Factory(dict)
    problems: list[str] = attrs.Factory(list)
    # Reachability: runs of services that have begun but not reported ready, restarts
    # under way, and what happened when a supervisor/app scope was cancelled.
    starting: set[str] = attrs.Factory(set)
    seen: set[str] = attrs.Factory(set)
    # Hostile telemetry handlers: the supervisor they call back into, nested emits seen.
    supervisor: Any = None
    nested: int = 0

    def check(self) -> None:
        now = trio.current_time()
        for name, scope in self.scopes.items():
            if name not in self.cancelled_at and scope.cancel_called:
                self.cancelled_at[name] = min(now, scope.deadline)
                if self.starting:
                    self.seen.add("cancelled while a service was starting")
                if any(not key.endswith("#0") for key in self.starting):
                    self.seen.add("cancelled while a restart was starting")
            since = self.cancelled_at.get(name)
            if since is not None:
                end = self.returned.get(name, now)
                if name in self.returned and end > since:
                    self.seen.add("a cancelled supervisor took time to stop its children")
                assert end - since <= self.bounds[name] + 1e-9, (
                    f"ReturnsWithinGrace violated: {name} cancelled at t={since:g}, "
                    f"{'returned' if name in self.returned else 'still running'} at "
                    f"t={end:g} (grace {self.bounds[name]:g}s)"
                )
        if self.returned and self.alive:
            raise AssertionError(
                f"NoChildOutlivesItsSupervisor violated: {sorted(self.alive)} alive after "
                f"{sorted(self.returned)} returned"
            )
        assert not self.problems, self.problems[0]


def _body(world: World, plan: ChildPlan, tag: str) -> Any:
    """The child's code: a worker (async callable) or a service/component object."""

    async def live(run: RunPlan, key: str, task_status: trio.TaskStatus[Any] | None) -> None:
        stop = current_child().trap_stop() if run.trap else None
        if task_status is not None:
            world.starting.add(key)
            try:
                await trio.sleep(run.start_delay)
                if run.start == "fail":
                    raise RuntimeError(f"{plan.cid} failed to start")
                if run.start == "hang":
                    await trio.sleep_forever()
            finally:
                world.starting.discard(key)
            task_status.started(tag)
        else:
            await trio.sleep(run.start_delay)
        with trio.move_on_after(run.life if run.life is not None else float("inf")):
            if stop is not None:
                await stop.wait()
                await trio.sleep(run.cleanup)
                return
            await trio.sleep_forever()
        if run.end == "crash":
            raise RuntimeError(f"{plan.cid} crashed")
        if run.end == "exit":
            raise SystemExit(f"{plan.cid} exits")

    async def one_run(task_status: trio.TaskStatus[Any] | None) -> None:
        n = world.starts.get(tag, 0)
        world.starts[tag] = n + 1
        key = f"{tag}#{n}"
        world.alive.add(key)
        try:
            await live(plan.runs[n % len(plan.runs)], key, task_status)
        finally:
            world.alive.discard(key)

    if not plan.service:

        async def worker() -> None:
            await one_run(None)

        return worker

    @attrs.define(eq=False)
    class Service:
        name: str = plan.cid
        dependencies: Sequence[str] = ()

        async def run(
            self, *, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED
        ) -> None:
            await one_run(task_status)

    return Service()


# ----------------------------------------------------------------------- strategies

run_plans = st.builds(
    RunPlan,
    start_delay=st.sampled_from([0.0, 0.0, 0.5, 30.0]),
    start=st.sampled_from(["ok"] * 6 + ["fail", "hang"]),
    life=st.sampled_from([None, 1.0, 3.0]),
    end=st.sampled_from(["crash"] * 4 + ["return"] * 2 + ["exit"]),
    trap=st.booleans(),
    cleanup=st.sampled_from([0.0, 1.0, 10.0]),
)


@st.composite
def child_plans(draw: st.DrawFn, cid: str, *, services_only: bool = False) -> ChildPlan:
    return ChildPlan(
        cid=cid,
        service=True if services_only else draw(st.booleans()),
        restart=draw(st.sampled_from(["permanent", "permanent", "transient", "temporary"])),
        grace=draw(st.sampled_from([0.0, 1.0, 2.0])),
        start_timeout=draw(st.sampled_from([None, None, 5.0])),
        runs=tuple(draw(st.lists(run_plans, min_size=1, max_size=3))),
    )


Op = tuple[Literal["sleep", "terminate", "restart", "start_child"], Any]


@attrs.frozen
class SupervisorScript:
    children: tuple[ChildPlan, ...]
    extra: tuple[ChildPlan, ...]  # for start_child
    strategy: str
    intensity: int
    backoff: bool
    ops: tuple[Op, ...]
    dynamic: bool = False  # a DynamicSupervisor, its children added with start_child


@st.composite
def supervisor_scripts(draw: st.DrawFn) -> SupervisorScript:
    n = draw(st.integers(1, 3))
    children = tuple(draw(child_plans(f"c{i}")) for i in range(n))
    extra = tuple(draw(child_plans(f"x{i}")) for i in range(draw(st.integers(0, 2))))
    ids = [c.cid for c in children] + [c.cid for c in extra]
    op = st.one_of(
        st.tuples(st.just("sleep"), st.sampled_from([0.5, 2.0, 5.0])),
        st.tuples(st.sampled_from(["terminate", "restart"]), st.sampled_from(ids)),
        *([st.tuples(st.just("start_child"), st.integers(0, len(extra) - 1))] if extra else []),
    )
    return SupervisorScript(
        children=children,
        extra=extra,
        strategy=draw(st.sampled_from(["one_for_one", "one_for_all", "rest_for_one"])),
        intensity=draw(st.sampled_from([1, 3, 100])),
        backoff=draw(st.booleans()),
        ops=tuple(draw(st.lists(op, max_size=5))),
        dynamic=draw(st.booleans()),
    )


def _spec(world: World, plan: ChildPlan) -> ChildSpec:
    return ChildSpec(
        plan.cid,
        _body(world, plan, plan.cid),
        restart=plan.restart,
        shutdown=plan.grace,
        start_timeout=plan.start_timeout if plan.service else None,
    )


# ------------------------------------------------------------------------ scenarios


@asynccontextmanager
async def _open_dynamic(children: Sequence[ChildSpec], **kwargs: Any) -> AsyncIterator[Any]:
    """A DynamicSupervisor holding ``children``, each added with ``start_child``."""
    kwargs.pop("strategy")
    async with open_dynamic_supervisor(**kwargs) as dyn:
        for spec in children:
            try:
                await dyn.start_child(spec)
            except ChildStartError:
                pass  # documented: a service that failed to start is not kept
            except RuntimeError as exc:
                if "not running" not in str(exc) and "shut down" not in str(exc):
                    raise
                break  # documented: the supervisor is shutting down (it was cancelled)
        yield dyn


@asynccontextmanager
async def hostile_handlers(world: World) -> AsyncIterator[None]:
    """Attach hostile handlers to the default telemetry for the duration of a scenario."""
    telemetry = default_telemetry()
    tag = f"hostile-{id(world)}"

    def raises(event: Event) -> None:
        raise RuntimeError(f"hostile handler on {event.name}")

    def calls_back(event: Event) -> None:
        sup = world.supervisor
        if sup is not None:
            sup.which_children()
            sup.count_children()
        telemetry.emit(f"{tag}.nested", {"n": 1})

    def nested(event: Event) -> None:
        world.nested += 1

    async def async_calls_back(event: Event) -> None:
        sup = world.supervisor
        if sup is None:
            return
        try:  # takes the supervisor's lock
            await sup.terminate_child("no such child")
        except (LookupError, RuntimeError):
            pass

    # The raising handler fails on every event; its log records (with tracebacks) would
    # cost more than the run itself, so the telemetry's logger is quiet meanwhile.
    log = logging.getLogger("trio_foundation.telemetry")
    level = log.level
    log.setLevel(logging.CRITICAL)
    try:
        with (
            telemetry.attached(f"{tag}.raises", EVENTS, raises, max_failures=10**9),
            telemetry.attached(f"{tag}.calls_back", EVENTS, calls_back),
            telemetry.attached(f"{tag}.nested", f"{tag}.nested", nested),
        ):
            async with telemetry.attach_async(
                f"{tag}.async", "supervisor.child.exit", async_calls_back
            ):
                yield
    finally:
        log.setLevel(level)
    assert not any(h.handler_id.startswith(tag) for h in telemetry.handlers())


def supervisor_scenario(script: SupervisorScript, world: World, opener: Any = None) -> Any:
    if opener is None:
        opener = _open_dynamic if script.dynamic else open_supervisor

    async def scenario(inj: Injector) -> None:
        try:
            async with hostile_handlers(world):
                await supervise(inj)
        except BaseExceptionGroup as group:  # the async handler's nursery wrapped it
            leaf = _unwrap_group(group)
            if leaf is group:
                raise
            raise leaf from None

    async def supervise(inj: Injector) -> None:
        # Grace bound: every child that may be running is stopped one at a time.
        world.bounds["supervisor"] = sum(c.grace for c in (*script.children, *script.extra))
        with trio.CancelScope(deadline=trio.current_time() + HORIZON) as horizon:
            world.scopes["horizon"] = horizon
            world.bounds["horizon"] = world.bounds["supervisor"]
            with inj.scope("supervisor") as scope:
                world.scopes["supervisor"] = scope
                try:
                    async with opener(
                        [_spec(world, c) for c in script.children],
                        strategy=script.strategy,  # type: ignore[arg-type]
                        intensity=script.intensity,
                        period=5,
                        backoff=Backoff(initial=0.5, maximum=4, rng=random.Random(0))
                        if script.backoff
                        else None,
                    ) as sup:
                        world.supervisor = sup
                        for kind, arg in script.ops:
                            with inj.scope(kind):
                                await _op(world, sup, script, kind, arg)
                        await trio.sleep_forever()
                finally:
                    now = trio.current_time()
                    world.returned.update({"supervisor": now, "horizon": now})

    return scenario


async def _op(world: World, sup: Any, script: SupervisorScript, kind: str, arg: Any) -> None:
    if kind == "sleep":
        await trio.sleep(arg)
        return
    try:
        if kind == "terminate":
            await sup.terminate_child(arg)
        elif kind == "restart":
            if isinstance(sup, DynamicSupervisor):
                await trio.lowlevel.checkpoint()  # a dynamic supervisor has no restart_child
            else:
                await sup.restart_child(arg)
        else:
            plan = script.extra[arg]
            known = any(i.id == plan.cid for i in sup.which_children())
            try:
                await sup.start_child(_spec(world, plan))
            except trio.Cancelled:
                if not known and any(i.id == plan.cid for i in sup.which_children()):
                    world.problems.append(
                        f"CancelledCallLeavesNothing violated: {plan.cid} kept after a "
                        "cancelled start_child"
                    )
                raise
    except (LookupError, ValueError, ChildStartError):
        pass  # documented refusals: unknown/duplicate id, a start that failed
    except RuntimeError as exc:
        # Documented misuse errors: the child is running / the supervisor is not running.
        if not any(
            s in str(exc) for s in ("is running", "is restarting", "not running", "shut down")
        ):
            raise


@attrs.frozen
class AppScript:
    components: tuple[ChildPlan, ...]
    supervised: tuple[bool, ...]
    shutdown: float
    start_timeout: float | None
    health_checks: int


@st.composite
def app_scripts(draw: st.DrawFn) -> AppScript:
    n = draw(st.integers(1, 3))
    return AppScript(
        components=tuple(draw(child_plans(f"k{i}", services_only=True)) for i in range(n)),
        supervised=tuple(draw(st.booleans()) for _ in range(n)),
        shutdown=draw(st.sampled_from([0.0, 1.0, 2.0])),
        start_timeout=draw(st.sampled_from([None, 5.0])),
        health_checks=draw(st.integers(0, 2)),
    )


def app_scenario(script: AppScript, world: World) -> Any:
    async def scenario(inj: Injector) -> None:
        comps: list[Any] = []
        bound = 0.0
        for plan, supervised in zip(script.components, script.supervised, strict=True):
            comp = _body(world, plan, plan.cid)
            comp.dependencies = tuple(c.name for c in comps[-1:])  # a chain
            if supervised:
                comps.append(
                    Supervised(
                        comp, intensity=2, start_timeout=plan.start_timeout, shutdown=plan.grace
                    )
                )
                bound += plan.grace
            else:
                comps.append(comp)
                bound += script.shutdown
        world.bounds["app"] = world.bounds["horizon"] = bound
        with trio.CancelScope(deadline=trio.current_time() + HORIZON) as horizon:
            world.scopes["horizon"] = horizon
            with inj.scope("app") as scope:
                world.scopes["app"] = scope
                try:
                    async with open_app(
                        comps, start_timeout=script.start_timeout, shutdown=script.shutdown
                    ) as app:
                        for _ in range(script.health_checks):
                            with inj.scope("health"):
                                await app.health()
                            await trio.sleep(1)
                        await trio.sleep_forever()
                finally:
                    now = trio.current_time()
                    world.returned.update({"app": now, "horizon": now})

    return scenario


# ---------------------------------------------------------------------------- tests

# Steps measured with these scenarios (300 runs each): median about 20, 90th percentile
# about 35 steps of the tasks under test; actions are drawn within the first 40.
plans = injection_plans(max_injections=3, max_step=40, max_target=3, max_delay=20.0)
# 300 examples per test in every profile: about 9 s each on the shared 2-core machine.
ci_settings = settings(
    max_examples=300,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    deadline=None,
)


def _run(scenario: Any, world: World, plan: InjectionPlan) -> RunResult:
    return run_injected(
        scenario,
        plan,
        check=world.check,
        allowed=DOCUMENTED,
        time_limit=HORIZON + 200,
        idle_grace=0.1,
        real_time_limit=20,
    )


@ci_settings
@given(script=supervisor_scripts(), plan=plans)
def test_supervisor_under_injected_cancellation(
    script: SupervisorScript, plan: InjectionPlan
) -> None:
    world = World()
    _run(supervisor_scenario(script, world), world, plan)


@ci_settings
@given(script=app_scripts(), plan=plans)
def test_app_under_injected_cancellation(script: AppScript, plan: InjectionPlan) -> None:
    world = World()
    _run(app_scenario(script, world), world, plan)


def test_injection_failure_is_what_a_broken_run_raises() -> None:
    """The checks can fail: a supervisor held past its grace is reported (sanity)."""
    world = World()
    world.bounds["s"] = 0.0

    async def scenario(inj: Injector) -> None:
        with inj.scope("s") as scope:
            world.scopes["s"] = scope
            scope.cancel()
            with trio.CancelScope(shield=True):
                await trio.sleep(1)  # "returns" 1 s after its cancellation
        world.returned["s"] = trio.current_time()

    with pytest.raises(InjectionFailure, match="ReturnsWithinGrace violated"):
        run_injected(scenario, InjectionPlan(), check=world.check)


# ------------------------------------------------------------------- reachability


class _AllSeen(Exception):
    """Ends the reachability search early."""


WANTED = {
    "cancelled while a service was starting",
    "cancelled while a restart was starting",
    "a cancelled supervisor took time to stop its children",
    "an injection hit the supervisor's scope",
    "an injection hit a child API call",
    "SystemExit escaped unwrapped",
    "SupervisorEscalation escaped",
}


def test_reachability() -> None:
    """The interesting cases happen in generated runs (else the checks above prove little)."""
    seen: set[str] = set()

    @settings(max_examples=2000, phases=[Phase.generate], database=None, deadline=None)
    @given(script=supervisor_scripts(), plan=plans)
    def search(script: SupervisorScript, plan: InjectionPlan) -> None:
        world = World()
        result = _run(supervisor_scenario(script, world), world, plan)
        seen.update(world.seen)
        labels = {applied.label for applied in result.applied}
        if "supervisor" in labels:
            seen.add("an injection hit the supervisor's scope")
        if labels & {"terminate", "restart", "start_child"}:
            seen.add("an injection hit a child API call")
        if result.error is not None:
            seen.add(
                f"{type(result.error).__name__} escaped"
                + (" unwrapped" if isinstance(result.error, SystemExit) else "")
            )
        if WANTED <= seen:
            raise _AllSeen

    with pytest.raises(_AllSeen):
        search()


# ----------------------------------------------------------------- broken variant


class _UninterruptibleWaits(_SupervisorBase):
    """Broken on purpose: a shutdown request does not cut the supervisor's own waits
    short (a service's start, a backoff), as before issue 7 (faults 4 and 5)."""

    @contextmanager
    def _interruptible(self) -> Iterator[trio.CancelScope]:
        with trio.CancelScope() as scope:
            yield scope


@asynccontextmanager
async def _open_broken(children: Sequence[ChildSpec], **kwargs: Any) -> AsyncIterator[Any]:
    sup = _UninterruptibleWaits(children, **kwargs)
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
        raise leaf from None


UNINTERRUPTIBLE_CAUGHT = r"ReturnsWithinGrace violated|is stuck|still running after"


def search_uninterruptible() -> None:
    """One fresh search (random seed, no database, generation only) of up to 1,000
    scripts and plans against the broken variant; raises ``InjectionFailure`` when it
    finds a supervisor that does not return within its grace."""

    @settings(max_examples=1000, phases=[Phase.generate], database=None, deadline=None)
    @given(script=supervisor_scripts(), plan=plans)
    def search(script: SupervisorScript, plan: InjectionPlan) -> None:
        world = World()
        _run(supervisor_scenario(script, world, _open_broken), world, plan)

    search()


def test_uninterruptible_waits_are_caught() -> None:
    """The same search, against the broken variant, must find a supervisor that does not
    return within its grace (fresh random seeds; generation only, no shrinking; catch
    rate: ``python benchmarks/catch_rates_audit.py small``)."""
    with pytest.raises(InjectionFailure, match=UNINTERRUPTIBLE_CAUGHT):
        search_uninterruptible()
