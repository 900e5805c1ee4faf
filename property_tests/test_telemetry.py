"""Stateful test: Telemetry against a reference model, inside a live component.

A server component (a mailbox and a task that serves calls) emits ``"served"`` after each
request it handles, as the platform's components emit through telemetry. Rules attach and
detach synchronous handlers (well-behaved, raising, or emitting again from inside the
handler), open scope-bound async handlers (well-behaved, stuck forever, raising, or
*calling back into the server that emitted the event*) in owner tasks whose entry is
cancelled at an arbitrary checkpoint, end those owners, emit events, and make clients call
the server (also under injected cancellation).

Invariants, after every step (the run settled: every task blocked):

* ``HandlersAgree``: each sync handler has been called exactly as the model says (nested
  emits deferred, in order), and detached after ``MAX_FAILURES`` consecutive failures;
* ``NoHandlerOutlivesItsScope``: the attached handlers are exactly the model's;
* ``AsyncQueuesBounded``: no async handler holds more than its capacity;
* ``EmitterNeverBlocked``: the server is back waiting for requests and every client call
  that was not cancelled has been answered.

The broken telemetry runs async handlers inline, awaited by the emitter (the original
platform's handlers ran in the emitting process): a stuck handler, or one that calls back
into the emitter, blocks it. ``test_blocking_emitter_is_caught`` runs fresh searches.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio.lowlevel
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    rule,
)
from trio_guest import GuestRun, Handle

from trio_foundation.messaging import Envelope, Mailbox, call
from trio_foundation.telemetry import Event, Telemetry
from trio_foundation.verify.catch_rate import caught_by_fresh_search, measure_catch_rate

MAX_FAILURES = 2
ASYNC_CAPACITY = 2
EVENTS = ["e1", "e2", "nested"]
CANCEL_AFTER = st.one_of(st.none(), st.integers(0, 3))


class HandlerBug(Exception):
    pass


class BlockingTelemetry(Telemetry):  # type: ignore[misc]
    """Runs async handlers inline: the emitter awaits each one."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.inline: dict[str, tuple[tuple[str, ...], Callable[[Event], Awaitable[None]]]] = {}

    @asynccontextmanager
    async def attach_async(  # type: ignore[override]
        self, handler_id: str, events: Any, handler: Any, **kwargs: Any
    ) -> AsyncIterator[Mailbox[Event]]:
        await trio.lowlevel.checkpoint_if_cancelled()
        self.inline[handler_id] = ((events,) if isinstance(events, str) else tuple(events), handler)
        try:
            yield Mailbox(1)
        finally:
            del self.inline[handler_id]

    async def emit_async(self, name: str, measurements: Any, metadata: Any) -> None:
        self.emit(name, measurements, metadata)
        for events, handler in list(self.inline.values()):
            if name in events:
                try:
                    await handler(Event(name, measurements, metadata))
                except HandlerBug:
                    pass


class TelemetryMachine(RuleBasedStateMachine):
    telemetry_factory: Any = Telemetry

    sync_handlers = Bundle("sync_handlers")
    async_owners = Bundle("async_owners")

    def __init__(self) -> None:
        super().__init__()
        self.guest = GuestRun()
        self.tel = self.telemetry_factory(max_failures=MAX_FAILURES, slow_handler=None)
        self.box: Mailbox[Envelope] = Mailbox(100)
        self.server_idle = False
        # model: handler id -> {"events", "behaviour", "calls", "consecutive", "attached"}
        self.model: dict[str, dict[str, Any]] = {}
        self.counter = 0
        self.clients: list[Handle] = []
        self.owners: list[Handle] = []
        emit_async = getattr(self.tel, "emit_async", None)

        async def server(handle: Handle) -> None:
            while True:
                self.server_idle = True
                envelope = await self.box.receive()
                self.server_idle = False
                metadata = {"message": envelope.message}
                if emit_async is not None:
                    await emit_async("served", {}, metadata)
                else:
                    self.tel.emit("served", {}, metadata)
                envelope.reply(envelope.message)

        self.server = self.guest.start(server)

    def teardown(self) -> None:
        self.guest.close()

    def _fresh(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    # --------------------------------------------------------------- model of emit

    def _model_emit(self, name: str) -> None:
        def listeners(event: str) -> list[str]:
            return [
                hid
                for hid, h in self.model.items()
                if h["attached"] and h["kind"] == "sync" and event in h["events"]
            ]

        first = listeners(name)
        if not first:
            return
        deferred: deque[str] = deque()

        def deliver(event: str, ids: list[str]) -> None:
            for hid in ids:
                handler = self.model[hid]
                if not handler["attached"]:
                    continue
                handler["calls"] += 1
                behaviour = handler["behaviour"]
                if behaviour == "raise":
                    handler["consecutive"] += 1
                    if handler["consecutive"] >= MAX_FAILURES:
                        handler["attached"] = False
                    continue
                handler["consecutive"] = 0
                if behaviour == "emit_again" and event != "nested" and listeners("nested"):
                    deferred.append("nested")

        deliver(name, first)
        while deferred:
            event = deferred.popleft()
            ids = listeners(event)
            if ids:
                deliver(event, ids)

    # ----------------------------------------------------------------- sync handlers

    @rule(
        target=sync_handlers,
        events=st.lists(st.sampled_from(EVENTS), min_size=1, max_size=3, unique=True),
        behaviour=st.sampled_from(["ok", "raise", "emit_again"]),
    )
    def AttachSync(self, events: list[str], behaviour: str) -> str:
        hid = self._fresh("sync")
        tel = self.tel

        def handler(event: Event) -> None:
            if behaviour == "raise":
                raise HandlerBug(hid)
            if behaviour == "emit_again" and event.name != "nested":
                tel.emit("nested")

        self.tel.attach(hid, events, handler)
        self.model[hid] = {
            "kind": "sync",
            "events": events,
            "behaviour": behaviour,
            "calls": 0,
            "consecutive": 0,
            "attached": True,
        }
        return hid

    @rule(hid=consumes(sync_handlers))
    def DetachSync(self, hid: str) -> None:
        assert self.tel.detach(hid) == self.model[hid]["attached"]
        self.model[hid]["attached"] = False

    @rule(name=st.sampled_from(EVENTS))
    def Emit(self, name: str) -> None:
        self.guest.run_sync(lambda: self.tel.emit(name))
        self._model_emit(name)

    # ---------------------------------------------------------------- async handlers

    @rule(
        target=async_owners,
        behaviour=st.sampled_from(["ok", "stuck", "raise", "callback"]),
        cancel_after=CANCEL_AFTER,
    )
    def OpenAsyncHandler(self, behaviour: str, cancel_after: int | None) -> Handle:
        hid = self._fresh("async")
        tel, box = self.tel, self.box

        async def handler(event: Event) -> None:
            if behaviour == "stuck":
                await trio.sleep_forever()
            elif behaviour == "raise":
                raise HandlerBug(hid)
            elif behaviour == "callback" and event.metadata["message"] != "from-handler":
                await call(box, "from-handler")

        async def owner(handle: Handle) -> None:
            handle.data["release"] = release = trio.Event()
            async with tel.attach_async(
                hid, "served", handler, capacity=ASYNC_CAPACITY, max_failures=MAX_FAILURES
            ) as queue:
                handle.data["queue"] = queue
                await release.wait()

        handle = self.guest.start(owner, cancel_after=cancel_after)
        handle.data["hid"] = hid
        self.owners.append(handle)
        return handle

    @rule(handle=consumes(async_owners), cancel=st.booleans())
    def CloseAsyncHandler(self, handle: Handle, cancel: bool) -> None:
        if handle.done:
            return
        if cancel:
            assert handle.scope is not None
            self.guest.run_sync(handle.scope.cancel)
        else:
            self.guest.run_sync(handle.data["release"].set)
        assert handle.done

    # ----------------------------------------------------------------------- clients

    @rule(cancel_after=CANCEL_AFTER)
    def ClientCalls(self, cancel_after: int | None) -> None:
        box = self.box
        message = self._fresh("client")

        async def client(handle: Handle) -> Any:
            return await call(box, message)

        handle = self.guest.start(client, cancel_after=cancel_after)
        handle.data["message"] = message
        self.clients.append(handle)

    # -------------------------------------------------------------------- invariants

    @invariant()
    def HandlersAgree(self) -> None:
        stats = {h.handler_id: h for h in self.tel.handlers()}
        for hid, handler in self.model.items():
            if handler["kind"] != "sync":
                continue
            assert (hid in stats) == handler["attached"], hid
            if hid in stats:
                assert stats[hid].calls == handler["calls"], hid

    @invariant()
    def NoHandlerOutlivesItsScope(self) -> None:
        attached = {h.handler_id for h in self.tel.handlers()} | set(
            getattr(self.tel, "inline", {})
        )
        for handle in self.owners:
            if handle.done:
                assert handle.data["hid"] not in attached, "handler outlived its scope"

    @invariant()
    def AsyncQueuesBounded(self) -> None:
        for handle in self.owners:
            queue = handle.data.get("queue")
            if queue is not None:
                assert len(queue) <= queue.capacity

    @invariant()
    def EmitterNeverBlocked(self) -> None:
        assert self.server_idle, "the emitting server is blocked"
        for handle in self.clients:
            if not handle.cancelled:
                assert handle.done, "a client call was never answered"
                assert handle.error is None
                assert handle.result == handle.data["message"]


TestTelemetryMachine = TelemetryMachine.TestCase
TestTelemetryMachine.settings = settings(
    max_examples=settings().max_examples,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


# fresh searches in the slow catch-rate test (`CATCH_RUNS=200 pytest -m slow ...`)
CATCH_RUNS = int(os.environ.get("CATCH_RUNS", "20"))
SEARCH = settings(
    max_examples=200,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)


def _finds_failure() -> bool:
    """One fresh search; True if it sees the emitter blocked by a handler."""
    machine = type(
        "BlockingTelemetryMachine", (TelemetryMachine,), {"telemetry_factory": BlockingTelemetry}
    )
    return caught_by_fresh_search(machine, SEARCH, ("the emitting server is blocked",))


def test_blocking_emitter_is_caught() -> None:
    assert _finds_failure()


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_blocking_emitter_catch_rate() -> None:
    """Catch rate over ``CATCH_RUNS`` fresh searches (recorded in docs/telemetry.md)."""
    rate = measure_catch_rate(_finds_failure, CATCH_RUNS)
    print(f"\nBlockingTelemetry: {rate}")
    assert rate.rate >= 0.95
