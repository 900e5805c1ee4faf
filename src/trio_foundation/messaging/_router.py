"""Pub/sub with topic patterns and a bounded queue per subscriber.

Topics are dot-separated segments (``"agents.a1.health"``). A pattern is a topic whose
segments may also be ``*`` (exactly one segment) or, as the last segment only, ``**`` (one
or more segments): ``"agents.a1.health"`` (exact), ``"agents.**"`` (prefix),
``"agents.*.health"`` (wildcard segment).

Subscriptions live in a trie keyed by pattern segments (literal children, a ``*`` child,
and the ``**`` subscribers of each node), so publishing walks one path per wildcard
alternative and costs O(segments * wildcard branches + matching subscribers) — never a
scan of every subscription.

Publishing never waits. Each subscription has its own bounded queue; a full queue only
affects its own subscriber, by its policy:

* ``"drop"``: the new signal is discarded for that subscriber and counted in ``dropped``;
* ``"disconnect"``: the new signal is discarded; if the queue is still full ``deadline``
  seconds after it first filled, the subscription is removed and its receiver gets
  :class:`SubscriberDisconnected` once the queued signals are taken.

A slow subscriber therefore stalls neither publishers nor other subscribers, and holds at
most ``capacity`` signals.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal, NamedTuple, TypeAlias, final

import attrs
import trio
import trio.lowlevel

from ..telemetry._trace import TraceContext, _current
from ._errors import PatternError, SubscriberDisconnected

__all__ = [
    "RouterStatistics",
    "Signal",
    "SignalRouter",
    "SlowPolicy",
    "Subscription",
    "parse_pattern",
]

SlowPolicy: TypeAlias = Literal["drop", "disconnect"]


class Signal(NamedTuple):
    """One published signal.

    Attributes:
        topic: where it was published.
        payload: what was published.
        trace: the publisher's trace context, or ``None``.
    """

    topic: str
    payload: Any
    trace: TraceContext | None = None


def parse_pattern(pattern: str) -> tuple[str, ...]:
    """Split and validate a subscription pattern.

    Raises:
        PatternError: not a str, empty, an empty segment, ``*``/``**`` mixed with other
            characters in a segment, or ``**`` anywhere but last.
    """
    if not isinstance(pattern, str):
        raise PatternError(pattern, f"a pattern is a str, got {type(pattern).__name__}")
    if not pattern:
        raise PatternError(pattern, "empty pattern")
    segments = tuple(pattern.split("."))
    for position, segment in enumerate(segments):
        if not segment:
            raise PatternError(pattern, f"empty segment at position {position}")
        if "*" in segment and segment not in ("*", "**"):
            raise PatternError(pattern, f"segment {segment!r} mixes '*' with other characters")
        if segment == "**" and position != len(segments) - 1:
            raise PatternError(pattern, "'**' may only be the last segment")
    return segments


def _parse_topic(topic: str) -> list[str]:
    if not isinstance(topic, str):
        raise PatternError(topic, f"a topic is a str, got {type(topic).__name__}")
    segments = topic.split(".")
    for segment in segments:
        if not segment or "*" in segment:
            raise PatternError(topic, "a topic has non-empty segments without '*'")
    return segments


@final
class Subscription:
    """One subscriber's bounded queue of signals; iterate it or call :meth:`receive`.

    Created by :meth:`SignalRouter.subscribe`; removed from the router when its ``with``
    block ends.
    """

    __slots__ = (
        "_buffer",
        "_capacity",
        "_closed",
        "_deadline",
        "_disconnected",
        "_full_since",
        "_lot",
        "_router",
        "delivered",
        "dropped",
        "pattern",
        "policy",
    )

    def __init__(
        self,
        router: SignalRouter,
        pattern: str,
        capacity: int,
        policy: SlowPolicy,
        deadline: float,
    ) -> None:
        self._router: SignalRouter | None = router
        self.pattern = pattern
        self.policy: SlowPolicy = policy
        self._capacity = capacity
        self._deadline = deadline
        self._buffer: deque[Signal] = deque()
        self._lot = trio.lowlevel.ParkingLot()
        self._full_since: float | None = None
        self._closed = False
        self._disconnected = False
        #: signals queued for this subscriber since it subscribed.
        self.delivered = 0
        #: signals discarded because this subscriber's queue was full.
        self.dropped = 0

    @property
    def capacity(self) -> int:
        """The most signals queued for this subscriber."""
        return self._capacity

    def pending(self) -> int:
        """Signals queued, not yet received."""
        return len(self._buffer)

    @property
    def disconnected(self) -> bool:
        """Whether the router disconnected this subscription for staying full."""
        return self._disconnected

    def _offer(self, signal: Signal) -> bool:
        buffer = self._buffer
        if len(buffer) < self._capacity:
            buffer.append(signal)
            self.delivered += 1
            if self._lot:
                self._lot.unpark()
            return True
        self.dropped += 1
        if self.policy == "disconnect":
            now = trio.current_time()
            router = self._router
            if self._full_since is None:
                self._full_since = now
            elif now - self._full_since >= self._deadline and router is not None:
                router._remove(self)
                router._disconnected += 1
                self._disconnected = True
                self._close()
        return False

    def _close(self) -> None:
        self._closed = True
        self._router = None
        self._lot.unpark_all()

    def receive_nowait(self) -> Signal:
        """Take the oldest queued signal without waiting.

        Raises:
            trio.WouldBlock: nothing is queued.
            SubscriberDisconnected: disconnected for staying full, and drained.
            trio.ClosedResourceError: the subscription was closed, and drained.
        """
        if self._buffer:
            signal = self._buffer.popleft()
            self._full_since = None
            return signal
        if self._disconnected:
            raise SubscriberDisconnected(self.pattern, self._deadline)
        if self._closed:
            raise trio.ClosedResourceError("this subscription is closed")
        raise trio.WouldBlock

    async def receive(self) -> Signal:
        """Wait for the next signal. A checkpoint; if cancelled, nothing was taken.

        Raises:
            SubscriberDisconnected, trio.ClosedResourceError: as :meth:`receive_nowait`.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        parked = False
        while True:
            try:
                signal = self.receive_nowait()
            except trio.WouldBlock:
                parked = True
                await self._lot.park()
                continue
            break
        if not parked:
            await trio.lowlevel.cancel_shielded_checkpoint()
        return signal

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Signal:
        try:
            return await self.receive()
        except trio.ClosedResourceError:
            raise StopAsyncIteration from None


@final
class _Node:
    __slots__ = ("children", "exact", "rest", "star")

    def __init__(self) -> None:
        self.children: dict[str, _Node] = {}
        self.star: _Node | None = None
        self.exact: dict[Subscription, None] = {}
        self.rest: dict[Subscription, None] = {}

    def empty(self) -> bool:
        return not (self.children or self.star or self.exact or self.rest)


@final
@attrs.frozen
class RouterStatistics:
    """A snapshot of a router.

    Attributes:
        subscriptions: live subscriptions.
        published: signals published.
        delivered: signals queued for some subscriber (one per subscriber).
        dropped: signals discarded because a subscriber's queue was full.
        disconnected: subscriptions disconnected for staying full.
    """

    subscriptions: int
    published: int
    delivered: int
    dropped: int
    disconnected: int


@final
class SignalRouter:
    """Publish signals by topic to the subscriptions whose pattern matches.

    Args:
        max_subscriptions: the most live subscriptions (> 0).

    Raises:
        ValueError: ``max_subscriptions`` is not positive.
    """

    _subscription_class: type[Subscription] = Subscription

    def __init__(self, *, max_subscriptions: int = 100_000) -> None:
        if not isinstance(max_subscriptions, int) or max_subscriptions <= 0:
            raise ValueError(f"max_subscriptions must be a positive int, got {max_subscriptions!r}")
        self._max = max_subscriptions
        self._root = _Node()
        self._count = 0
        self._published = 0
        self._delivered = 0
        self._dropped = 0
        self._disconnected = 0

    def statistics(self) -> RouterStatistics:
        """A frozen snapshot of the router's counters."""
        return RouterStatistics(
            subscriptions=self._count,
            published=self._published,
            delivered=self._delivered,
            dropped=self._dropped,
            disconnected=self._disconnected,
        )

    def open_subscription(
        self,
        pattern: str,
        *,
        capacity: int = 100,
        policy: SlowPolicy = "drop",
        deadline: float = 1.0,
    ) -> Subscription:
        """Subscribe; the caller must :meth:`close_subscription`. Prefer :meth:`subscribe`.

        Args:
            pattern: see the module docs.
            capacity: the most signals queued for this subscriber (> 0).
            policy: ``"drop"`` or ``"disconnect"`` (see the module docs).
            deadline: for ``"disconnect"``, seconds the queue may stay full (> 0).

        Raises:
            PatternError: the pattern does not parse.
            ValueError: ``capacity`` or ``deadline`` is not positive, or ``policy`` unknown.
            RuntimeError: the router holds ``max_subscriptions`` subscriptions.
        """
        segments = parse_pattern(pattern)
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity <= 0:
            raise ValueError(f"capacity must be a positive int, got {capacity!r}")
        if policy not in ("drop", "disconnect"):
            raise ValueError(f"policy must be 'drop' or 'disconnect', got {policy!r}")
        if not deadline > 0:
            raise ValueError(f"deadline must be > 0 seconds, got {deadline!r}")
        if self._count >= self._max:
            raise RuntimeError(f"too many subscriptions: max_subscriptions={self._max}")
        subscription = self._subscription_class(self, pattern, capacity, policy, deadline)
        node = self._root
        for segment in segments:
            if segment == "**":
                node.rest[subscription] = None
                break
            if segment == "*":
                if node.star is None:
                    node.star = _Node()
                node = node.star
            else:
                child = node.children.get(segment)
                if child is None:
                    child = node.children[segment] = _Node()
                node = child
        else:
            node.exact[subscription] = None
        self._count += 1
        return subscription

    def _remove(self, subscription: Subscription) -> None:
        if subscription._router is not self:
            return
        segments = parse_pattern(subscription.pattern)
        path: list[tuple[_Node, str]] = []
        node = self._root
        for segment in segments:
            if segment == "**":
                node.rest.pop(subscription, None)
                break
            path.append((node, segment))
            nxt = node.star if segment == "*" else node.children.get(segment)
            assert nxt is not None
            node = nxt
        else:
            node.exact.pop(subscription, None)
        for parent, segment in reversed(path):
            child = parent.star if segment == "*" else parent.children[segment]
            if child is None or not child.empty():
                break
            if segment == "*":
                parent.star = None
            else:
                del parent.children[segment]
        self._count -= 1

    def close_subscription(self, subscription: Subscription) -> None:
        """Remove a subscription; its receiver drains what is queued, then stops. Idempotent."""
        if subscription._router is self:
            self._remove(subscription)
        subscription._close()

    @contextmanager
    def subscribe(
        self,
        pattern: str,
        *,
        capacity: int = 100,
        policy: SlowPolicy = "drop",
        deadline: float = 1.0,
    ) -> Iterator[Subscription]:
        """Subscribe for the duration of a ``with`` block.

        Arguments and errors as :meth:`open_subscription`.
        """
        subscription = self.open_subscription(
            pattern, capacity=capacity, policy=policy, deadline=deadline
        )
        try:
            yield subscription
        finally:
            self.close_subscription(subscription)

    def _matching(self, segments: list[str]) -> list[Subscription]:
        found: list[Subscription] = []
        nodes = [self._root]
        for segment in segments:
            following: list[_Node] = []
            for node in nodes:
                if node.rest:
                    found.extend(node.rest)
                child = node.children.get(segment)
                if child is not None:
                    following.append(child)
                if node.star is not None:
                    following.append(node.star)
            if not following:
                return found
            nodes = following
        for node in nodes:
            if node.exact:
                found.extend(node.exact)
        return found

    def publish(self, topic: str, payload: object = None) -> int:
        """Queue a signal for every matching subscription. Never waits.

        Must be called from inside a trio run (``"disconnect"`` reads trio's clock).

        Returns:
            How many subscribers it was queued for.

        Raises:
            PatternError: ``topic`` is not a valid topic (empty segment, or a ``*``).
        """
        segments = _parse_topic(topic)
        self._published += 1
        signal = Signal(topic, payload, _current.get())
        matched = self._matching(segments)
        queued = 0
        for subscription in matched:
            if subscription._offer(signal):
                queued += 1
        self._delivered += queued
        self._dropped += len(matched) - queued
        return queued
