"""Stateful tests of Mailbox and SignalRouter against reference models.

Both run in one guest-mode trio run (``tests/trio_guest.py``) with cancellations injected
at an arbitrary checkpoint of every async operation (drawn by Hypothesis).

Mailbox invariants: ``Bounded`` (never more than ``capacity`` queued), ``FifoAgrees`` (the
queue, the drop counter and the waiting tasks are the model's), and every receive returns
the model's next message; a cancelled send queued nothing and a cancelled receive took
nothing.

Router invariants: ``SubscriberQueuesBounded`` and ``DeliveryAgrees`` (each subscriber's
queue and drop counter are the model's: a signal goes to exactly the subscriptions whose
pattern matches its topic, and a full queue affects only its own subscriber). The broken
router gives subscribers an unbounded queue — the original platform's signal router with no
backpressure; ``test_unbounded_subscriber_queue_is_caught`` runs fresh random searches.
"""

from __future__ import annotations

import os
from collections import deque
from typing import Any

import pytest
import trio
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)
from trio_guest import GuestRun, Handle

from trio_foundation.messaging import (
    Mailbox,
    MailboxFullError,
    SignalRouter,
    SubscriberDisconnected,
    Subscription,
)
from trio_foundation.verify.catch_rate import caught_by_fresh_search, measure_catch_rate

CANCEL_AFTER = st.one_of(st.none(), st.integers(0, 3))

# --------------------------------------------------------------------------- mailbox


class MailboxMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.guest = GuestRun()
        self.model: deque[int] = deque()
        self.dropped = 0
        self.blocked: list[tuple[Handle, int]] = []  # senders waiting for room, FIFO
        self.waiting: list[Handle] = []  # receivers waiting for a message, FIFO
        self.next_message = 0
        self.served: list[Handle] = []

    @initialize(
        capacity=st.integers(1, 3),
        policy=st.sampled_from(["block", "drop_oldest", "drop_newest", "raise"]),
    )
    def setup(self, capacity: int, policy: str) -> None:
        self.capacity = capacity
        self.policy = policy
        self.box: Mailbox[int] = Mailbox(capacity, policy=policy)  # type: ignore[arg-type]

    def teardown(self) -> None:
        self.guest.close()

    def _fresh(self) -> int:
        self.next_message += 1
        return self.next_message

    def _model_put(self, message: int) -> str:
        """Apply a send to the model; returns "queued", "dropped", "full"."""
        if self.waiting:
            handle = self.waiting.pop(0)
            handle.data["expect"] = [message] if handle.data.get("batch") else message
            self.served.append(handle)
            return "queued"
        if len(self.model) < self.capacity:
            self.model.append(message)
            return "queued"
        if self.policy == "drop_oldest":
            self.model.popleft()
            self.dropped += 1
            self.model.append(message)
            return "queued"
        if self.policy == "drop_newest":
            self.dropped += 1
            return "dropped"
        return "full"

    def _model_freed(self) -> None:
        while self.blocked and len(self.model) < self.capacity:
            handle, message = self.blocked.pop(0)
            self.model.append(message)
            self.served.append(handle)

    @rule()
    def SendNowait(self) -> None:
        message = self._fresh()
        expected = self._model_put(message)
        if expected == "full":
            error = trio.WouldBlock if self.policy == "block" else MailboxFullError
            with pytest.raises(error):
                self.box.send_nowait(message)
            return
        self.guest.run_sync(lambda: self.box.send_nowait(message))

    @rule(cancel_after=CANCEL_AFTER)
    def Send(self, cancel_after: int | None) -> None:
        message = self._fresh()
        box = self.box

        async def send(handle: Handle) -> bool:
            return await box.send(message)

        snapshot = (list(self.model), self.dropped, list(self.waiting))
        handle = self.guest.start(send, cancel_after=cancel_after)
        if handle.done and handle.cancelled:
            assert (list(self.model), self.dropped, list(self.waiting)) == snapshot
            return
        if not handle.done:
            assert self.policy == "block"
            assert len(self.model) == self.capacity and not self.waiting
            self.blocked.append((handle, message))
            return
        expected = self._model_put(message)
        if expected == "full":
            assert isinstance(handle.error, MailboxFullError)
        else:
            assert handle.error is None and handle.result == (expected == "queued")

    @rule(cancel_after=CANCEL_AFTER)
    def Receive(self, cancel_after: int | None) -> None:
        box = self.box

        async def receive(handle: Handle) -> int:
            return await box.receive()

        had = self.model[0] if self.model else None
        handle = self.guest.start(receive, cancel_after=cancel_after)
        if handle.done and handle.cancelled:
            assert (self.model[0] if self.model else None) == had
            return
        if not handle.done:
            assert not self.model
            self.waiting.append(handle)
            return
        assert handle.error is None
        assert handle.result == self.model.popleft()
        self._model_freed()

    @rule(cancel_after=CANCEL_AFTER)
    def ReceiveBatchAsync(self, cancel_after: int | None) -> None:
        box = self.box

        async def receive_batch(handle: Handle) -> list[int]:
            return await box.receive_batch()

        before = list(self.model)
        handle = self.guest.start(receive_batch, cancel_after=cancel_after)
        handle.data["batch"] = True
        if handle.done and handle.cancelled:
            assert list(self.model) == before
            return
        if not handle.done:
            assert not self.model
            self.waiting.append(handle)
            return
        assert handle.error is None
        assert handle.result == before
        self.model.clear()
        self._model_freed()

    @rule(pick=st.integers(0, 5))
    def CancelWaiter(self, pick: int) -> None:
        waiters: list[Handle] = [h for h, _ in self.blocked] + self.waiting
        if not waiters:
            return
        handle = waiters[pick % len(waiters)]
        assert handle.scope is not None
        self.guest.run_sync(handle.scope.cancel)
        assert handle.done and handle.cancelled
        self.blocked = [(h, m) for h, m in self.blocked if h is not handle]
        self.waiting = [h for h in self.waiting if h is not handle]

    @rule(limit=st.one_of(st.none(), st.integers(1, 3)))
    def ReceiveBatch(self, limit: int | None) -> None:
        got = self.box.receive_batch_nowait(limit)
        count = len(self.model) if limit is None else min(limit, len(self.model))
        assert got == [self.model.popleft() for _ in range(count)]
        self.guest.settle()
        self._model_freed()

    @invariant()
    def Bounded(self) -> None:
        if hasattr(self, "box"):
            assert len(self.box) <= self.capacity

    @invariant()
    def FifoAgrees(self) -> None:
        if not hasattr(self, "box"):
            return
        assert list(self.box._buffer) == list(self.model)
        stats = self.box.statistics()
        assert stats.dropped == self.dropped
        assert stats.waiting_senders == len(self.blocked)
        assert stats.waiting_receivers == len(self.waiting)
        for handle in self.waiting:
            assert not handle.done
        for handle, _ in self.blocked:
            assert not handle.done

    @invariant()
    def WaitersServedInOrder(self) -> None:
        """A woken receiver got the model's message; a woken sender's message was queued."""
        for handle in self.served:
            assert handle.done and not handle.cancelled
            assert handle.error is None
            if "expect" in handle.data:
                assert handle.result == handle.data["expect"]
            else:
                assert handle.result is True
        self.served = []


TestMailboxMachine = MailboxMachine.TestCase
TestMailboxMachine.settings = settings(
    max_examples=settings().max_examples,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

# ---------------------------------------------------------------------------- router

PATTERNS = ["a.b", "a.*", "a.**", "*.b", "**", "b.*.c"]
TOPICS = ["a.b", "a.c", "b.b", "b.x.c", "a.b.c", "a"]


def _matches(pattern: list[str], topic: list[str]) -> bool:
    if not pattern:
        return not topic
    head, rest = pattern[0], pattern[1:]
    if head == "**":
        return len(topic) >= 1
    if not topic:
        return False
    return (head in ("*", topic[0])) and _matches(rest, topic[1:])


class UnboundedSubscription(Subscription):  # type: ignore[misc]
    def _offer(self, signal: Any) -> bool:
        self._buffer.append(signal)
        self.delivered += 1
        if self._lot:
            self._lot.unpark()
        return True


class UnboundedRouter(SignalRouter):  # type: ignore[misc]
    _subscription_class = UnboundedSubscription


class RouterMachine(RuleBasedStateMachine):
    router_factory: Any = SignalRouter

    def __init__(self) -> None:
        super().__init__()
        self.guest = GuestRun()
        self.router = self.router_factory()
        self.subs: list[tuple[Subscription, dict[str, Any]]] = []

    def teardown(self) -> None:
        self.guest.close()

    @rule(
        pattern=st.sampled_from(PATTERNS),
        capacity=st.integers(1, 3),
        policy=st.sampled_from(["drop", "disconnect"]),
    )
    def Subscribe(self, pattern: str, capacity: int, policy: str) -> None:
        sub = self.router.open_subscription(
            pattern,
            capacity=capacity,
            policy=policy,
            deadline=1.0,  # type: ignore[arg-type]
        )
        model = {"queue": deque(), "dropped": 0, "full_since": None, "gone": False}
        self.subs.append((sub, model))

    @precondition(lambda self: self.subs)
    @rule(pick=st.integers(0, 20))
    def Unsubscribe(self, pick: int) -> None:
        sub, model = self.subs[pick % len(self.subs)]
        self.router.close_subscription(sub)
        model["gone"] = True

    @rule(topic=st.sampled_from(TOPICS))
    def Publish(self, topic: str) -> None:
        result: list[int] = []
        self.guest.run_sync(lambda: result.append(self.router.publish(topic, topic)))
        now = self.guest.clock.current_time()
        queued = 0
        for sub, model in self.subs:
            if model["gone"] or not _matches(sub.pattern.split("."), topic.split(".")):
                continue
            if len(model["queue"]) < sub.capacity:
                model["queue"].append(topic)
                queued += 1
                continue
            model["dropped"] += 1
            if sub.policy == "disconnect":
                if model["full_since"] is None:
                    model["full_since"] = now
                elif now - model["full_since"] >= 1.0:
                    model["gone"] = True
                    model["disconnected"] = True
        assert result == [queued], (
            f"BoundedDelivery: publish({topic!r}) queued for {result}, the bounded model {queued}"
        )

    @precondition(lambda self: self.subs)
    @rule(pick=st.integers(0, 20), cancel_after=CANCEL_AFTER)
    def Receive(self, pick: int, cancel_after: int | None) -> None:
        sub, model = self.subs[pick % len(self.subs)]
        if not model["queue"]:
            if model.get("disconnected"):
                with pytest.raises(SubscriberDisconnected):
                    sub.receive_nowait()
            return

        async def receive(handle: Handle) -> Any:
            return await sub.receive()

        handle = self.guest.start(receive, cancel_after=cancel_after)
        assert handle.done
        if handle.cancelled:
            return
        assert handle.result.payload == model["queue"].popleft()
        model["full_since"] = None

    @rule()
    def Tick(self) -> None:
        self.guest.advance(0.5)

    @invariant()
    def SubscriberQueuesBounded(self) -> None:
        for sub, _ in self.subs:
            assert sub.pending() <= sub.capacity, "subscriber queue over its capacity"

    @invariant()
    def DeliveryAgrees(self) -> None:
        live = 0
        for sub, model in self.subs:
            assert [s.payload for s in sub._buffer] == list(model["queue"])
            assert sub.dropped == model["dropped"]
            assert sub.disconnected == bool(model.get("disconnected"))
            live += not model["gone"]
        assert self.router.statistics().subscriptions == live


TestRouterMachine = RouterMachine.TestCase
TestRouterMachine.settings = settings(
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


def _finds_failure(router_factory: type[SignalRouter]) -> bool:
    """One fresh search; True if it breaks the bounded delivery the model expects."""
    machine = type("BrokenRouterMachine", (RouterMachine,), {"router_factory": router_factory})
    return caught_by_fresh_search(machine, SEARCH, ("BoundedDelivery",))


def test_unbounded_subscriber_queue_is_caught() -> None:
    assert _finds_failure(UnboundedRouter)


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_unbounded_subscriber_queue_catch_rate() -> None:
    """Catch rate over ``CATCH_RUNS`` fresh searches (recorded in docs/messaging.md)."""
    rate = measure_catch_rate(lambda: _finds_failure(UnboundedRouter), CATCH_RUNS)
    print(f"\nUnboundedRouter: {rate}")
    assert rate.rate >= 0.95
