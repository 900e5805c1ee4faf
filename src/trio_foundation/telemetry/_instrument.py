"""A trio instrument that reports the scheduler's health as metrics and events."""

from __future__ import annotations

import time
from typing import final

import trio
import trio.lowlevel

from ._events import Telemetry
from ._metrics import MetricRegistry

__all__ = ["TrioInstrument"]


@final
class TrioInstrument(trio.abc.Instrument):
    """Task counts, scheduler batches and checkpoint-free stretches, as metrics.

    Install with ``trio.lowlevel.add_instrument(TrioInstrument(metrics))`` or
    ``trio.run(..., instruments=[...])``. It fills, in ``metrics``:

    * ``trio_tasks`` (gauge): tasks alive; ``trio_tasks_spawned_total`` (counter);
    * ``trio_scheduler_batches_total`` (counter): scheduler loop iterations, and
      ``trio_batch_size`` (histogram): task steps run per batch;
    * ``trio_task_step_seconds`` (histogram): how long a task ran between two
      checkpoints, and ``trio_long_steps_total`` (counter): steps longer than
      ``long_step`` seconds — a checkpoint-free stretch that stalls every other task.
      Each long step is also emitted on ``telemetry`` (if given) as event
      ``"trio.long_step"`` with measurement ``duration`` and metadata ``task`` (its name).

    Every hook is O(1) (a clock read and a few additions).

    Args:
        metrics: where to record.
        telemetry: where to emit long steps, or ``None``.
        long_step: seconds (> 0) above which a step counts as a long stretch.

    Raises:
        ValueError: ``long_step`` is not positive.
    """

    def __init__(
        self,
        metrics: MetricRegistry,
        telemetry: Telemetry | None = None,
        *,
        long_step: float = 0.05,
    ) -> None:
        if not long_step > 0:
            raise ValueError(f"long_step must be > 0 seconds, got {long_step!r}")
        self._tasks = metrics.gauge("trio_tasks", "tasks alive").value
        self._spawned = metrics.counter("trio_tasks_spawned_total", "tasks spawned").value
        self._batches = metrics.counter(
            "trio_scheduler_batches_total", "scheduler batches run"
        ).value
        self._batch_size = metrics.histogram(
            "trio_batch_size", "task steps per scheduler batch", lowest=1, highest=1e6
        ).value
        self._steps = metrics.histogram(
            "trio_task_step_seconds", "time a task ran between checkpoints"
        ).value
        self._long = metrics.counter(
            "trio_long_steps_total", "task steps longer than the long_step threshold"
        ).value
        self._telemetry = telemetry
        self._long_step = long_step
        self._step_start = 0.0
        self._in_batch = 0

    def task_spawned(self, task: trio.lowlevel.Task) -> None:
        self._tasks.inc()
        self._spawned.inc()

    def task_exited(self, task: trio.lowlevel.Task) -> None:
        self._tasks.dec()

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self._step_start = time.perf_counter()

    def after_task_step(self, task: trio.lowlevel.Task) -> None:
        duration = time.perf_counter() - self._step_start
        self._in_batch += 1
        self._steps.observe(duration)
        if duration > self._long_step:
            self._long.inc()
            if self._telemetry is not None:
                self._telemetry.emit("trio.long_step", {"duration": duration}, {"task": task.name})

    def before_io_wait(self, timeout: float) -> None:
        if self._in_batch:
            self._batches.inc()
            self._batch_size.observe(self._in_batch)
            self._in_batch = 0
