"""A trio run in guest mode, advanced step by step by a test, with cancellation injection.

The one driver of the guest-mode stateful tests (``property_tests/test_supervisor.py``,
the resilience, registry, messaging and telemetry state machines). Hypothesis state
machines keep one live trio run across rules: :class:`GuestRun` starts it in guest mode (a
queue as ``run_sync_soon_threadsafe``, ``MockClock(rate=0)`` unless the test passes its
own clock, so time moves only when a rule says so), and every operation pumps the queue
until ``wait_all_tasks_blocked`` returns, so the code under test has reacted completely
before invariants are checked. Importing Hypothesis makes trio's scheduler a seeded
shuffle, so the interleaving is explored too.

Two ways to run code in the guest:

* :meth:`GuestRun.do` / :meth:`GuestRun.call` run a step and settle, returning its result
  (an exception it raises is re-raised in the test); :meth:`GuestRun.spawn` /
  :meth:`GuestRun.spawn_soon` start a task in its own cancel scope and return a
  :class:`Handle`;
* :meth:`GuestRun.start` starts ``fn(handle)`` (the task can keep per-task facts in
  ``handle.data``) and settles; :meth:`GuestRun.run_sync` runs a synchronous function
  inside the run and settles.

Cancellation injection, at an arbitrary checkpoint drawn by Hypothesis (the project's
harness ``trio_foundation.verify.cancellation`` does the same for whole scenarios), has
two forms, which differ in what they can interrupt:

* ``start(fn, cancel_after=k)`` cancels the task's scope just *after* its ``k``-th step
  (``k == 0``: before the first), so ``Cancelled`` lands at the checkpoint where it then
  waits: a blocked wait is interrupted;
* ``spawn(name, fn, cancel_after=k)`` cancels the scope just *before* its ``k``-th step
  (``k <= 1``: before the first), so the task first takes whatever woke it (a grant, an
  item) and ``Cancelled`` arrives at its next checkpoint: the race of a cancellation with
  a wake-up.
"""

from __future__ import annotations

import queue
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
import trio
import trio.abc
import trio.lowlevel
import trio.testing


@attrs.define(eq=False)
class Handle:
    """A task started in the guest run, with what became of it."""

    name: str = "task"
    scope: trio.CancelScope = attrs.Factory(trio.CancelScope)
    task: trio.lowlevel.Task | None = None
    done: bool = False
    cancelled: bool = False
    result: Any = None
    error: BaseException | None = None
    data: dict[str, Any] = attrs.Factory(dict)


class CancelInjector(trio.abc.Instrument):
    """Cancels a task's scope after its k-th step, or before its k-th step."""

    def __init__(self) -> None:
        #: task -> [steps left, scope]: cancel after the task's last counted step
        self.after: dict[trio.lowlevel.Task, list[Any]] = {}
        #: task -> [steps left, scope]: cancel before the task's last counted step
        self.before: dict[trio.lowlevel.Task, list[Any]] = {}
        self.injected = 0

    def plan_after(self, steps: int, scope: trio.CancelScope) -> None:
        """From inside the task: cancel ``scope`` right after its ``steps``-th step."""
        self.after[trio.lowlevel.current_task()] = [steps, scope]

    def plan_before(self, steps: int, scope: trio.CancelScope) -> None:
        """From inside the task: cancel ``scope`` right before its ``steps``-th step."""
        self.before[trio.lowlevel.current_task()] = [steps, scope]

    def _count(self, plans: dict[trio.lowlevel.Task, list[Any]], task: trio.lowlevel.Task) -> None:
        plan = plans.get(task)
        if plan is None:
            return
        plan[0] -= 1
        if plan[0] <= 0:
            del plans[task]
            plan[1].cancel()
            self.injected += 1

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self._count(self.before, task)

    def after_task_step(self, task: trio.lowlevel.Task) -> None:
        self._count(self.after, task)

    def task_exited(self, task: trio.lowlevel.Task) -> None:
        self.after.pop(task, None)
        self.before.pop(task, None)


class GuestRun:
    """One live trio run in guest mode, advanced only when the test pumps it.

    Args:
        clock: the run's clock (default: a fresh ``MockClock(rate=0)``).
    """

    def __init__(self, clock: trio.testing.MockClock | None = None) -> None:
        self.queue: queue.Queue[Callable[[], object]] = queue.Queue()
        self.clock = clock or trio.testing.MockClock(rate=0)
        self.injector = CancelInjector()
        self.token: trio.lowlevel.TrioToken | None = None
        self.nursery: trio.Nursery | None = None
        self.finished = False
        self.outcome: Any = None

        async def main() -> None:
            self.token = trio.lowlevel.current_trio_token()
            async with trio.open_nursery() as nursery:
                self.nursery = nursery
                await trio.sleep_forever()

        def done(outcome: Any) -> None:
            self.finished = True
            self.outcome = outcome

        trio.lowlevel.start_guest_run(
            main,
            run_sync_soon_threadsafe=self.queue.put,
            run_sync_soon_not_threadsafe=self.queue.put,
            done_callback=done,
            clock=self.clock,
            instruments=[self.injector],
        )
        self.pump_until(lambda: self.nursery is not None)

    # ------------------------------------------------------------------ pumping

    def pump_until(self, condition: Callable[[], bool]) -> None:
        """Run the guest's callbacks until ``condition()`` holds (30 s per callback)."""
        while not condition():
            self.queue.get(timeout=30)()

    def _spawn(self, fn: Callable[[], Awaitable[object]]) -> None:
        assert self.token is not None and self.nursery is not None
        nursery = self.nursery
        self.token.run_sync_soon(lambda: nursery.start_soon(fn))

    def settle(self) -> None:
        """Pump until every task in the run is blocked."""
        settled = False

        async def wait() -> None:
            nonlocal settled
            await trio.testing.wait_all_tasks_blocked()
            settled = True

        self._spawn(wait)
        self.pump_until(lambda: settled)

    def do(self, fn: Callable[[], Awaitable[Any]]) -> Any:
        """Run ``fn`` in the guest, wait until every task there is blocked, return its result.

        An exception ``fn`` raises (not ``Cancelled``) is raised here, after settling.
        """
        settled = False
        out: list[Any] = []
        errors: list[BaseException] = []

        async def step() -> None:
            nonlocal settled
            try:
                out.append(await fn())
            except Exception as exc:
                errors.append(exc)
            await trio.testing.wait_all_tasks_blocked()
            settled = True

        self._spawn(step)
        self.pump_until(lambda: settled)
        if errors:
            raise errors[0]
        return out[0] if out else None

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run a synchronous ``fn`` inside the run (so ``trio.current_time`` works), settle."""

        async def wrapped() -> Any:
            return fn()

        return self.do(wrapped)

    def run_sync(self, fn: Callable[[], object]) -> None:
        """Run a synchronous ``fn`` inside the run (e.g. set an event), then settle."""
        self.call(fn)

    # ------------------------------------------------------------------ tasks

    def start(
        self,
        fn: Callable[[Handle], Awaitable[object]],
        *,
        cancel_after: int | None = None,
    ) -> Handle:
        """Start ``fn(handle)`` as a task, cancelled after its ``cancel_after``-th step; settle.

        Exceptions (not ``Cancelled``) are caught into ``handle.error``.
        """
        handle = Handle()

        async def wrapper() -> None:
            handle.task = trio.lowlevel.current_task()
            with handle.scope:
                if cancel_after == 0:
                    handle.scope.cancel()
                elif cancel_after is not None:
                    self.injector.plan_after(cancel_after, handle.scope)
                try:
                    handle.result = await fn(handle)
                except Exception as exc:
                    handle.error = exc
            self.injector.after.pop(handle.task, None)
            handle.cancelled = handle.scope.cancelled_caught
            handle.done = True

        self._spawn(wrapper)
        self.settle()
        return handle

    def spawn(
        self,
        name: str,
        fn: Callable[[], Awaitable[Any]],
        cancel_after: int | None = None,
    ) -> Handle:
        """Start ``fn`` in its own cancel scope, cancelled before its step ``cancel_after``;
        settle."""
        handle: list[Handle] = []

        async def start() -> None:
            handle.append(self.spawn_soon(fn, cancel_after, name))

        self.do(start)
        return handle[0]

    def spawn_soon(
        self,
        fn: Callable[[], Awaitable[Any]],
        cancel_after: int | None = None,
        name: str = "task",
    ) -> Handle:
        """Inside the run: start ``fn`` now, without waiting for the run to settle."""
        handle = Handle(name)

        async def body() -> None:
            handle.task = trio.lowlevel.current_task()
            with handle.scope:
                if cancel_after is not None:
                    self.injector.plan_before(cancel_after, handle.scope)
                try:
                    handle.result = await fn()
                except trio.Cancelled:
                    handle.cancelled = True
                    raise
                except Exception as exc:
                    handle.error = exc
            if handle.scope.cancelled_caught:
                handle.cancelled = True
            handle.done = True

        assert self.nursery is not None
        self.nursery.start_soon(body)
        return handle

    def cancel(self, handle: Handle) -> None:
        """Cancel the task's scope from inside the run, then settle."""
        self.call(handle.scope.cancel)

    # ------------------------------------------------------------------ time

    def advance(self, seconds: float) -> None:
        """Move the mock clock forward by ``seconds`` and let every task that wakes run."""
        self.clock.jump(seconds)
        self.settle()

    def now(self) -> float:
        return float(self.clock.current_time())

    def close(self) -> None:
        """Cancel everything still running and end the run (its errors are raised here)."""
        if self.finished or self.nursery is None or self.token is None:
            return
        nursery = self.nursery
        self.token.run_sync_soon(nursery.cancel_scope.cancel)
        self.pump_until(lambda: self.finished)
        self.outcome.unwrap()
