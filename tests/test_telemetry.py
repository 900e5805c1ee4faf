"""Telemetry: emit, isolated handlers, metrics, the trio instrument, tracing."""

from __future__ import annotations

import logging
import math
import random
import time

import pytest
import trio
import trio.lowlevel
import trio.testing

from trio_foundation.messaging import Envelope, Mailbox, call
from trio_foundation.telemetry import (
    Event,
    Histogram,
    MetricRegistry,
    Rate,
    Telemetry,
    TooManySeriesError,
    TraceContext,
    TrioInstrument,
    current_trace,
    default_telemetry,
    start_span,
)

# ---------------------------------------------------------------------- handlers


def test_emit_without_handlers_does_nothing() -> None:
    telemetry = Telemetry()
    telemetry.emit("nobody.listens", {"x": 1.0})
    assert telemetry.statistics().emitted == 0


def test_handlers_receive_their_events_only() -> None:
    telemetry = Telemetry()
    got: list[Event] = []
    telemetry.attach("h", ["a", "b"], got.append)
    telemetry.emit("a", {"n": 1}, {"k": "v"})
    telemetry.emit("c")
    telemetry.emit("b")
    assert [e.name for e in got] == ["a", "b"]
    assert got[0] == Event("a", {"n": 1}, {"k": "v"})
    assert telemetry.detach("h") and not telemetry.detach("h")
    telemetry.emit("a")
    assert len(got) == 2


def test_bad_attachments_are_refused() -> None:
    telemetry = Telemetry()
    telemetry.attach("h", "a", lambda e: None)
    with pytest.raises(ValueError, match="id 'h' is already attached"):
        telemetry.attach("h", "b", lambda e: None)
    with pytest.raises(ValueError, match="at least one event name"):
        telemetry.attach("g", [], lambda e: None)
    with pytest.raises(TypeError, match="handler must be callable"):
        telemetry.attach("g", "a", 42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_failures must be a positive int, got -1"):
        Telemetry(max_failures=-1)
    with pytest.raises(ValueError, match="max_failures must be a positive int, got 0"):
        telemetry.attach("g", "a", lambda e: None, max_failures=0)


def test_failing_handler_is_logged_then_detached(caplog: pytest.LogCaptureFixture) -> None:
    telemetry = Telemetry(max_failures=3)
    good: list[Event] = []

    def bad(event: Event) -> None:
        raise RuntimeError("handler bug")

    telemetry.attach("bad", "e", bad)
    telemetry.attach("good", "e", good.append)
    with caplog.at_level(logging.ERROR, logger="trio_foundation.telemetry"):
        for _ in range(5):
            telemetry.emit("e")
    assert len(good) == 5
    assert [h.handler_id for h in telemetry.handlers()] == ["good"]
    assert telemetry.statistics().detached == 1
    assert "handler bug" in caplog.text and "detached after 3 consecutive failures" in caplog.text


def test_slow_sync_handler_counts_as_failure(caplog: pytest.LogCaptureFixture) -> None:
    telemetry = Telemetry(max_failures=2, slow_handler=0.001)
    telemetry.attach("slow", "e", lambda e: time.sleep(0.005))
    with caplog.at_level(logging.WARNING, logger="trio_foundation.telemetry"):
        telemetry.emit("e")
        telemetry.emit("e")
    assert telemetry.handlers() == ()
    assert "took longer than 0.001 s" in caplog.text


def test_scope_bound_handler_is_detached_however_the_scope_ends() -> None:
    telemetry = Telemetry()
    with pytest.raises(KeyError), telemetry.attached("scoped", "e", lambda e: None):
        assert telemetry.statistics().handlers == 1
        raise KeyError
    assert telemetry.statistics().handlers == 0


def test_handler_emitting_again_is_deferred_not_reentrant() -> None:
    telemetry = Telemetry(max_pending=5)
    order: list[str] = []
    depth = 0

    def chain(event: Event) -> None:
        nonlocal depth
        depth += 1
        assert depth == 1, "handler re-entered"
        order.append(event.name)
        if event.name == "a":
            telemetry.emit("b")
            telemetry.emit("a")  # would recurse forever if delivered inline
        depth -= 1

    telemetry.attach("chain", ["a", "b"], chain)
    telemetry.emit("a")  # returns although the chain never ends by itself
    assert order[:3] == ["a", "b", "a"]
    assert len(order) == 1 + 5  # the first event, then at most max_pending deferred ones
    assert telemetry.statistics().dropped > 0


async def test_async_handler_calling_back_into_the_emitter_never_deadlocks(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The original flaw: a handler calls the component that emitted the event."""
    telemetry = Telemetry()
    box: Mailbox[Envelope] = Mailbox(10)
    served: list[object] = []

    async def server(task_status: trio.TaskStatus[None]) -> None:
        task_status.started()
        async for envelope in box:
            served.append(envelope.message)
            telemetry.emit("server.served", {}, {"message": envelope.message})
            if envelope.reply_to is not None:
                envelope.reply(envelope.message)

    async def handler(event: Event) -> None:
        if event.metadata["message"] == "from-client":
            assert await call(box, "from-handler", timeout=5) == "from-handler"

    async with trio.open_nursery() as nursery:
        await nursery.start(server)
        async with telemetry.attach_async("callback", "server.served", handler) as queue:
            with trio.fail_after(1):
                assert await call(box, "from-client") == "from-client"
                await trio.testing.wait_all_tasks_blocked()
            assert served == ["from-client", "from-handler"]
            assert queue.statistics().dropped == 0
        assert telemetry.statistics().handlers == 0
        nursery.cancel_scope.cancel()


async def test_stuck_async_handler_drops_instead_of_blocking() -> None:
    telemetry = Telemetry()

    async def stuck(event: Event) -> None:
        await trio.sleep_forever()

    async with telemetry.attach_async("stuck", "e", stuck, capacity=4) as queue:
        for _ in range(100):
            telemetry.emit("e")
        await trio.testing.wait_all_tasks_blocked()
        stats = queue.statistics()
        assert stats.pending == 3 and stats.dropped == 96  # the handler holds one


async def test_failing_async_handler_is_detached(caplog: pytest.LogCaptureFixture) -> None:
    telemetry = Telemetry(max_failures=2)

    async def broken(event: Event) -> None:
        raise ValueError("nope")

    with caplog.at_level(logging.ERROR, logger="trio_foundation.telemetry"):
        async with telemetry.attach_async("broken", "e", broken):
            for _ in range(3):
                telemetry.emit("e")
                await trio.testing.wait_all_tasks_blocked()
            assert telemetry.statistics().handlers == 0
    assert "detached after 2 consecutive failures" in caplog.text


# ----------------------------------------------------------------------- metrics


def test_histogram_percentiles_within_relative_error() -> None:
    rng = random.Random(7)
    hist = Histogram(lowest=1e-6, highest=100.0, sub_buckets=16)
    values = [rng.lognormvariate(-5, 2) for _ in range(20_000)]
    for value in values:
        hist.observe(min(value, 99.0))
    values = sorted(min(v, 99.0) for v in values)
    for q in (0.5, 0.9, 0.99, 0.999):
        exact = values[math.ceil(q * len(values)) - 1]
        got = hist.percentile(q)
        assert exact <= got <= exact * (1 + 1 / 16) + 1e-12, (q, exact, got)
    assert hist.percentile(0) == values[0] and hist.percentile(1) == values[-1]
    assert hist.count == len(values) and hist.buckets == 27 * 16 + 2  # ceil(log2(1e8)) octaves
    assert list(hist.cumulative())[-1] == (math.inf, len(values))


def test_histogram_refuses_bad_input() -> None:
    hist = Histogram()
    with pytest.raises(ValueError, match="values must be >= 0, got -1"):
        hist.observe(-1)
    with pytest.raises(ValueError, match="values must be >= 0, got nan"):
        hist.observe(math.nan)
    with pytest.raises(ValueError, match="q must be within"):
        hist.percentile(1.5)
    with pytest.raises(ValueError, match="highest must be > lowest"):
        Histogram(lowest=1, highest=1)
    assert math.isnan(hist.percentile(0.5))
    hist.observe(1e9)
    assert hist.percentile(0.5) == 1e9


def test_rate_over_a_sliding_window() -> None:
    now = [0.0]
    rate = Rate(window=10, slots=10, clock=lambda: now[0])
    for second in range(20):
        now[0] = second + 0.5
        rate.mark(second)
    assert rate.total() == sum(range(10, 20))
    assert rate.rate() == sum(range(10, 20)) / 10
    now[0] = 100.0
    assert rate.total() == 0


def test_registry_is_bounded_and_refuses_bad_names() -> None:
    metrics = MetricRegistry(max_series=3)
    requests = metrics.counter("requests_total", "requests", labels=["code"])
    requests.labels("200").inc()
    requests.labels(200).inc()  # type: ignore[arg-type]
    assert requests.labels("200").value == 2
    metrics.gauge("queue_depth").value.set(3)
    requests.labels("500").inc()
    with pytest.raises(TooManySeriesError, match="max_series=3"):
        requests.labels("404")
    with pytest.raises(ValueError, match="metric names match"):
        metrics.counter("bad name")
    with pytest.raises(ValueError, match="already exists as a counter"):
        metrics.gauge("requests_total")
    with pytest.raises(ValueError, match="has labels"):
        requests.labels()
    with pytest.raises(ValueError, match="a counter only goes up"):
        requests.labels("200").inc(-1)
    with pytest.raises(ValueError, match="max_series must be a positive int"):
        MetricRegistry(max_series=-1)


# -------------------------------------------------------------------- instrument


def test_trio_instrument_reports_tasks_batches_and_long_steps() -> None:
    metrics = MetricRegistry()
    telemetry = Telemetry()
    long_steps: list[Event] = []
    telemetry.attach("long", "trio.long_step", long_steps.append)
    instrument = TrioInstrument(metrics, telemetry, long_step=0.02)

    async def hog() -> None:
        time.sleep(0.03)  # noqa: ASYNC251 - the checkpoint-free stretch under test
        await trio.lowlevel.checkpoint()

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            for _ in range(5):
                nursery.start_soon(trio.sleep, 0)
            nursery.start_soon(hog, name="hog")

    trio.run(main, instruments=[instrument])
    values = {f.name: f.value for f in metrics.families()}
    assert values["trio_tasks_spawned_total"].value >= 7  # type: ignore[union-attr]
    assert values["trio_tasks"].value == 0  # type: ignore[union-attr]
    assert values["trio_scheduler_batches_total"].value >= 1  # type: ignore[union-attr]
    assert values["trio_long_steps_total"].value >= 1  # type: ignore[union-attr]
    assert values["trio_task_step_seconds"].count > 7  # type: ignore[union-attr]
    assert any(e.metadata["task"] == "hog" for e in long_steps)


# ----------------------------------------------------------------------- tracing


async def test_spans_nest_and_travel_in_envelopes() -> None:
    telemetry = Telemetry()
    ended: list[Event] = []
    telemetry.attach("spans", "span.end", ended.append)
    assert current_trace() is None
    with start_span("outer", telemetry=telemetry) as outer:
        assert current_trace() == outer and outer.parent_span_id is None
        with start_span("inner", telemetry=telemetry) as inner:
            assert inner.trace_id == outer.trace_id and inner.parent_span_id == outer.span_id
        box: Mailbox[Envelope] = Mailbox(1)
        from trio_foundation.messaging import cast_nowait

        cast_nowait(box, "m")
    assert current_trace() is None
    envelope = box.receive_nowait()
    assert envelope.trace == outer
    with start_span("handle", parent=envelope.trace) as handled:
        assert handled.trace_id == outer.trace_id
    assert [e.metadata["name"] for e in ended] == ["inner", "outer"]
    assert ended[0].measurements["duration"] >= 0
    assert outer.traceparent == f"00-{outer.trace_id:032x}-{outer.span_id:016x}-01"
    assert isinstance(TraceContext.new_root(), TraceContext)


def test_listening_and_the_live_view_follow_attach_and_detach() -> None:
    telemetry = Telemetry()
    view = telemetry.listened
    assert not telemetry.listening("a.b") and "a.b" not in view
    with telemetry.attached("h", ["a.b", "c.d"], lambda event: None):
        assert telemetry.listening("a.b") and "a.b" in view and "c.d" in view
        with telemetry.attached("h2", "a.b", lambda event: None):
            telemetry.detach("h")
            assert "a.b" in view and "c.d" not in view
        assert "a.b" not in view
    assert not view
    with pytest.raises(TypeError):
        view["x"] = ()  # type: ignore[index]


def test_default_telemetry_is_one_instance() -> None:
    assert default_telemetry() is default_telemetry()
    assert isinstance(default_telemetry(), Telemetry)
