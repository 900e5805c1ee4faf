"""Components and apps: dependency order, readiness, reverse stop, failures, supervision."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs
import pytest
import trio
import trio.testing

from trio_foundation import FoundationError
from trio_foundation.services import (
    App,
    AppStartError,
    Component,
    ComponentFailedError,
    Supervised,
    dependency_order,
    open_app,
)
from trio_foundation.supervision import SupervisorEscalation, current_child


class Boom(Exception):
    pass


@attrs.define(eq=False)
class Svc:
    name: str
    dependencies: Sequence[str] = ()
    log: list[str] = attrs.Factory(list)
    start_delay: float = 0.0
    fail_start: bool = False
    never_ready: bool = False
    healthy: bool = True
    crash: trio.Event = attrs.Factory(trio.Event)
    runs: int = 0

    async def run(self, *, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        self.runs += 1
        await trio.sleep(self.start_delay)
        if self.fail_start:
            raise Boom(self.name)
        if self.never_ready:
            await trio.sleep_forever()
        self.log.append(f"start {self.name}")
        task_status.started(f"{self.name}#{self.runs}")
        try:
            await self.crash.wait()
            self.crash = trio.Event()
            raise Boom(self.name)
        finally:
            self.log.append(f"stop {self.name}")

    async def health(self) -> bool:
        await trio.lowlevel.checkpoint()
        return self.healthy


def graph(log: list[str], **extra: Any) -> list[Svc]:
    # given in a scrambled order: api -> cache -> db, api -> db, worker -> db
    return [
        Svc("api", ("cache", "db"), log),
        Svc("worker", ("db",), log),
        Svc("cache", ("db",), log),
        Svc("db", (), log, **extra),
    ]


def test_dependency_order_is_topological_and_stable() -> None:
    order = [c.name for c in dependency_order(graph([]))]
    assert order == ["db", "worker", "cache", "api"]
    assert isinstance(Svc("x"), Component)


def test_cycle_is_an_error_naming_the_cycle() -> None:
    comps = [Svc("a", ("b",)), Svc("b", ("c",)), Svc("c", ("a",)), Svc("d")]
    with pytest.raises(ValueError, match="dependency cycle: a -> b -> c -> a"):
        App(comps)
    with pytest.raises(ValueError, match="dependency cycle: s -> s"):
        App([Svc("s", ("s",))])


@pytest.mark.parametrize(
    ("comps", "error", "message"),
    [
        ([Svc("a", ("zz",))], ValueError, "component 'a' depends on unknown 'zz'"),
        ([Svc("a"), Svc("a")], ValueError, "duplicate component name 'a'"),
        ([object()], TypeError, "non-empty str name"),
        ([Svc("a", "b")], TypeError, "dependencies must be a sequence"),
    ],
)
def test_bad_components_are_refused(comps: list[Any], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        App(comps)


async def test_app_starts_in_order_and_stops_in_reverse() -> None:
    log: list[str] = []
    async with open_app(graph(log)) as app:
        assert log == ["start db", "start worker", "start cache", "start api"]
        assert app.order == ["db", "worker", "cache", "api"]
        assert app["cache"] == "cache#1"
        with pytest.raises(KeyError):
            app["nope"]
        assert await app.health() == {"db": True, "worker": True, "cache": True, "api": True}
    assert log[4:] == ["stop api", "stop cache", "stop worker", "stop db"]
    assert not app.running


async def test_start_failure_stops_started_ones_and_names_the_component() -> None:
    log: list[str] = []
    comps = graph(log)
    comps[2].fail_start = True  # cache
    with pytest.raises(AppStartError, match="component 'cache' failed to start") as info:
        async with open_app(comps):
            pytest.fail("must not be reached")
    assert isinstance(info.value, FoundationError)
    assert info.value.component == "cache" and isinstance(info.value.cause, Boom)
    assert log == ["start db", "start worker", "stop worker", "stop db"]


async def test_readiness_timeout(autojump_clock: trio.abc.Clock) -> None:
    log: list[str] = []
    comps = graph(log)
    comps[1].never_ready = True  # worker
    with pytest.raises(AppStartError, match="'worker' failed to start: did not report ready"):
        async with open_app(comps, start_timeout=2.0):
            pass
    assert trio.current_time() == pytest.approx(2.0)
    assert log == ["start db", "stop db"]


async def test_running_component_failure_stops_all_in_reverse() -> None:
    log: list[str] = []
    comps = graph(log)
    with pytest.raises(ComponentFailedError, match="component 'worker' failed") as info:
        async with open_app(comps):
            comps[1].crash.set()
            await trio.sleep_forever()
    assert isinstance(info.value.cause, Boom)
    assert log[4:] == ["stop worker", "stop api", "stop cache", "stop db"]


async def test_supervised_component_restarts_and_handle_follows() -> None:
    log: list[str] = []
    comps = graph(log)
    db = comps[3]
    comps[3] = Supervised(db, intensity=2, period=60)  # type: ignore[call-overload]
    async with open_app(comps) as app:
        assert app["db"] == "db#1"
        db.crash.set()
        await trio.testing.wait_all_tasks_blocked()
        assert db.runs == 2 and app["db"] == "db#2"
        assert await app.health() == {"db": True, "worker": True, "cache": True, "api": True}
        db.healthy = False
        assert (await app.health())["db"] is False
    assert log[-1] == "stop db"


async def test_supervised_component_escalation_fails_the_app() -> None:
    log: list[str] = []
    comps = graph(log)
    db = comps[3]
    comps[3] = Supervised(db, intensity=0)  # type: ignore[call-overload]
    with pytest.raises(ComponentFailedError, match="component 'db' failed") as info:
        async with open_app(comps):
            db.crash.set()
            await trio.sleep_forever()
    assert isinstance(info.value.cause, SupervisorEscalation)
    assert log[-4:] == ["stop db", "stop api", "stop cache", "stop worker"]


async def test_component_gets_a_grace_period(autojump_clock: trio.abc.Clock) -> None:
    done: list[float] = []

    @attrs.define
    class Graceful:
        name: str = "g"
        dependencies: Sequence[str] = ()

        async def run(
            self, *, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED
        ) -> None:
            stop = current_child().trap_stop()
            task_status.started()
            await stop.wait()
            await trio.sleep(1)  # flush
            done.append(trio.current_time())

    async with open_app([Graceful()], shutdown=3):
        pass
    assert done == [1.0]


async def test_app_in_a_nursery_and_cancellation() -> None:
    log: list[str] = []
    app = App(graph(log), name="svc")
    assert repr(app) == "App(name='svc', components=['db', 'worker', 'cache', 'api'])"
    with trio.move_on_after(0.5):
        async with trio.open_nursery() as nursery:
            assert await nursery.start(app.run) is app
            await trio.sleep_forever()
    assert log[4:] == ["stop api", "stop cache", "stop worker", "stop db"]
