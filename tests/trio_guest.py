"""A trio run in guest mode, advanced step by step by a test, with cancellation injection.

Hypothesis state machines keep one live trio run across rules: ``GuestRun`` starts it in
guest mode (a queue as ``run_sync_soon_threadsafe``, ``MockClock(rate=0)`` so time moves
only when a rule says so) and every operation pumps the queue until
``wait_all_tasks_blocked`` returns, so the code under test has reacted completely before
invariants are checked.

Cancellation injection (the project's harness ``trio_foundation.verify.cancellation`` is
not on main yet): ``start(fn, cancel_after=k)`` runs ``fn`` in its own cancel scope and an
instrument cancels that scope after the task's ``k``-th step, so the ``Cancelled`` lands at
the next checkpoint the task reaches; ``k == 0`` cancels before the first step. Drawing
``k`` with Hypothesis puts the cancellation at an arbitrary checkpoint of the operation.
"""

from __future__ import annotations

import queue
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
import trio
import trio.lowlevel
import trio.testing


@attrs.define(eq=False)
class Handle:
    """A task started in the guest run, with what became of it."""

    scope: trio.CancelScope | None = None
    task: trio.lowlevel.Task | None = None
    done: bool = False
    cancelled: bool = False
    result: Any = None
    error: BaseException | None = None
    data: dict[str, Any] = attrs.Factory(dict)


class _CancelInjector(trio.abc.Instrument):
    def __init__(self) -> None:
        self.armed: dict[trio.lowlevel.Task, list[Any]] = {}

    def after_task_step(self, task: trio.lowlevel.Task) -> None:
        slot = self.armed.get(task)
        if slot is None:
            return
        slot[1] -= 1
        if slot[1] <= 0:
            slot[0].cancel()
            del self.armed[task]

    def task_exited(self, task: trio.lowlevel.Task) -> None:
        self.armed.pop(task, None)


class GuestRun:
    """One live trio run, pumped by the test."""

    def __init__(self) -> None:
        self.queue: queue.Queue[Callable[[], object]] = queue.Queue()
        self.clock = trio.testing.MockClock(rate=0)
        self.injector = _CancelInjector()
        self.nursery: trio.Nursery | None = None
        self.token: trio.lowlevel.TrioToken | None = None
        self.finished = False
        self.outcome: Any = None

        async def main() -> None:
            trio.lowlevel.add_instrument(self.injector)
            async with trio.open_nursery() as nursery:
                self.nursery = nursery
                self.token = trio.lowlevel.current_trio_token()
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
        )
        self.pump_until(lambda: self.nursery is not None)

    def pump_until(self, condition: Callable[[], bool]) -> None:
        while not condition():
            self.queue.get(timeout=30)()

    def settle(self) -> None:
        """Pump until every task in the run is blocked."""
        settled = False

        async def wait() -> None:
            nonlocal settled
            await trio.testing.wait_all_tasks_blocked()
            settled = True

        self._spawn(wait)
        self.pump_until(lambda: settled)

    def _spawn(self, fn: Callable[[], Awaitable[object]]) -> None:
        assert self.token is not None and self.nursery is not None
        nursery = self.nursery
        self.token.run_sync_soon(lambda: nursery.start_soon(fn))

    def start(
        self,
        fn: Callable[[Handle], Awaitable[object]],
        *,
        cancel_after: int | None = None,
    ) -> Handle:
        """Start ``fn(handle)`` as a task, cancelled after ``cancel_after`` steps; settle.

        Exceptions (not ``Cancelled``) are caught into ``handle.error``.
        """
        handle = Handle()

        async def wrapper() -> None:
            task = trio.lowlevel.current_task()
            handle.task = task
            with trio.CancelScope() as scope:
                handle.scope = scope
                if cancel_after == 0:
                    scope.cancel()
                elif cancel_after is not None:
                    self.injector.armed[task] = [scope, cancel_after]
                try:
                    handle.result = await fn(handle)
                except Exception as exc:
                    handle.error = exc
            self.injector.armed.pop(task, None)
            handle.cancelled = scope.cancelled_caught
            handle.done = True

        self._spawn(wrapper)
        self.settle()
        return handle

    def run_sync(self, fn: Callable[[], object]) -> None:
        """Run a synchronous ``fn`` inside the run (e.g. set an event), then settle."""
        ran = False

        async def call() -> None:
            nonlocal ran
            fn()
            ran = True

        self._spawn(call)
        self.pump_until(lambda: ran)
        self.settle()

    def advance(self, seconds: float) -> None:
        """Move the mock clock forward and let timers fire."""
        self.clock.jump(seconds)
        self.settle()

    def close(self) -> None:
        if self.finished or self.nursery is None or self.token is None:
            return
        nursery = self.nursery
        self.token.run_sync_soon(nursery.cancel_scope.cancel)
        self.pump_until(lambda: self.finished)
        self.outcome.unwrap()
