"""A guest-mode trio run with cancellations injected at chosen checkpoints.

Used by the resilience property tests (``property_tests/test_rate_limiter.py`` and the
others) until ``trio_foundation.verify.cancellation`` lands on main.

* :class:`GuestDriver` runs trio in guest mode with ``MockClock(rate=0)``: nothing
  happens between two calls of the test; :meth:`GuestDriver.do` runs an action inside
  the run and pumps until every task is blocked; :meth:`GuestDriver.advance` moves the
  clock and lets sleepers wake.
* :class:`CancelInjector` is a trio instrument: a task spawned with ``cancel_after=k``
  has its cancel scope cancelled just before its ``k``-th step, so ``Cancelled`` arrives
  at whichever checkpoint the task reaches next — blocking or not, chosen by Hypothesis.
  Importing Hypothesis makes trio's scheduler a seeded shuffle, so the interleaving is
  explored too.
"""

from __future__ import annotations

import queue
from collections.abc import Awaitable, Callable
from typing import Any

import trio
import trio.abc
import trio.lowlevel
import trio.testing


class CancelInjector(trio.abc.Instrument):
    """Cancel a task's scope just before its k-th scheduling step."""

    def __init__(self) -> None:
        self.plans: dict[trio.lowlevel.Task, list[Any]] = {}
        self.injected = 0

    def plan(self, steps: int, scope: trio.CancelScope) -> None:
        self.plans[trio.lowlevel.current_task()] = [steps, scope]

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        plan = self.plans.get(task)
        if plan is None:
            return
        plan[0] -= 1
        if plan[0] <= 0:
            del self.plans[task]
            plan[1].cancel()
            self.injected += 1

    def task_exited(self, task: trio.lowlevel.Task) -> None:
        self.plans.pop(task, None)


class Handle:
    """A task started by :meth:`GuestDriver.spawn`."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.scope = trio.CancelScope()
        self.done = False
        self.cancelled = False
        self.result: Any = None
        self.error: BaseException | None = None


class GuestDriver:
    """A trio run in guest mode, advanced only when the test pumps it."""

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

    def pump_until(self, condition: Callable[[], bool]) -> None:
        while not condition():
            self.queue.get(timeout=30)()

    def do(self, fn: Callable[[], Awaitable[Any]]) -> Any:
        """Run ``fn`` in the guest, wait until every task there is blocked, return its result."""
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

        assert self.token is not None and self.nursery is not None
        nursery = self.nursery
        self.token.run_sync_soon(lambda: nursery.start_soon(step))
        self.pump_until(lambda: settled)
        if errors:
            raise errors[0]
        return out[0]

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run a synchronous ``fn`` inside the run (so ``trio.current_time`` works)."""

        async def wrapped() -> Any:
            return fn()

        return self.do(wrapped)

    def spawn(
        self,
        name: str,
        fn: Callable[[], Awaitable[Any]],
        cancel_after: int | None = None,
    ) -> Handle:
        """Start ``fn`` in its own cancel scope; cancel it before its step ``cancel_after``."""
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
            with handle.scope:
                if cancel_after is not None:
                    self.injector.plan(cancel_after, handle.scope)
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
        async def go() -> None:
            handle.scope.cancel()

        self.do(go)

    def advance(self, seconds: float) -> None:
        """Move the clock by ``seconds`` and let every task that wakes run until blocked."""
        self.clock.jump(seconds)

        async def nothing() -> None:
            return None

        self.do(nothing)

    def now(self) -> float:
        return float(self.clock.current_time())

    def close(self) -> None:
        if self.finished or self.token is None or self.nursery is None:
            return
        nursery = self.nursery
        self.token.run_sync_soon(nursery.cancel_scope.cancel)
        self.pump_until(lambda: self.finished)
        self.outcome.unwrap()
