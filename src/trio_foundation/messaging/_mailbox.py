"""Bounded mailboxes with an overflow policy, and batched draining.

A :class:`Mailbox` is a bounded FIFO shared by any number of senders and receivers. Its
buffer never holds more than ``capacity`` messages; what happens to a message that does
not fit is the mailbox's *overflow policy*:

* ``"block"``: ``send`` waits for room (``send_nowait`` raises ``trio.WouldBlock``);
* ``"drop_oldest"``: the oldest queued message is discarded (counted) to make room;
* ``"drop_newest"``: the new message is discarded (counted);
* ``"raise"``: :class:`MailboxFullError` is raised.

Waiting is strictly FIFO, as in trio's memory channels: a receiver that finds the buffer
empty parks in an insertion-ordered table, and a sender hands its message straight to the
first parked receiver; a blocked sender parks *with its message*, and each slot a receiver
frees admits the first parked sender's message into the buffer. So messages keep their
send order even when the scheduler wakes tasks in another order, and a cancelled waiter
is simply removed from its table (its message never queued, or nothing taken).
"""

from __future__ import annotations

from collections import deque
from typing import Any, Generic, Literal, TypeAlias, TypeVar, final

import attrs
import outcome
import trio
import trio.lowlevel

from ._errors import MailboxFullError

__all__ = ["Mailbox", "MailboxStatistics", "OverflowPolicy"]

T = TypeVar("T")

OverflowPolicy: TypeAlias = Literal["block", "drop_oldest", "drop_newest", "raise"]
_POLICIES = ("block", "drop_oldest", "drop_newest", "raise")


@final
@attrs.frozen
class MailboxStatistics:
    """A snapshot of a mailbox.

    Attributes:
        pending: messages queued.
        capacity: the bound on ``pending``.
        dropped: messages discarded by a drop policy since the mailbox was made.
        waiting_senders: tasks blocked in ``send``.
        waiting_receivers: tasks blocked in ``receive``.
        closed: whether :meth:`Mailbox.close` was called.
    """

    pending: int
    capacity: int
    dropped: int
    waiting_senders: int
    waiting_receivers: int
    closed: bool


@final
class Mailbox(Generic[T]):
    """A bounded multi-producer, multi-consumer FIFO with an overflow policy.

    Args:
        capacity: the most messages queued (>= 1).
        policy: what to do with a message that does not fit (see the module docs).
        name: a label for errors and statistics.

    Raises:
        ValueError: ``capacity`` is not a positive int, or ``policy`` is unknown.
    """

    __slots__ = (
        "_buffer",
        "_capacity",
        "_closed",
        "_dropped",
        "_name",
        "_policy",
        "_receivers",
        "_senders",
    )

    def __init__(
        self, capacity: int, *, policy: OverflowPolicy = "block", name: str | None = None
    ) -> None:
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity <= 0:
            raise ValueError(f"capacity must be a positive int, got {capacity!r}")
        if policy not in _POLICIES:
            raise ValueError(f"policy must be one of {', '.join(_POLICIES)}; got {policy!r}")
        self._capacity = capacity
        self._policy: OverflowPolicy = policy
        self._name = name
        self._buffer: deque[T] = deque()
        self._dropped = 0
        self._closed = False
        # Parked tasks, in arrival order. A receiver's value says how it receives ("one"
        # message handed over, or "batch": woken to take everything); a blocked sender's
        # value is its message.
        self._receivers: dict[trio.lowlevel.Task, str] = {}
        self._senders: dict[trio.lowlevel.Task, T] = {}

    @property
    def capacity(self) -> int:
        """The most messages queued."""
        return self._capacity

    @property
    def policy(self) -> OverflowPolicy:
        """The overflow policy."""
        return self._policy

    @property
    def name(self) -> str | None:
        """The mailbox's label."""
        return self._name

    def __len__(self) -> int:
        return len(self._buffer)

    def __repr__(self) -> str:
        return (
            f"<Mailbox {self._name or hex(id(self))} {len(self._buffer)}/{self._capacity}"
            f" {self._policy}>"
        )

    def statistics(self) -> MailboxStatistics:
        """A frozen snapshot of the mailbox."""
        return MailboxStatistics(
            pending=len(self._buffer),
            capacity=self._capacity,
            dropped=self._dropped,
            waiting_senders=len(self._senders),
            waiting_receivers=len(self._receivers),
            closed=self._closed,
        )

    # ----------------------------------------------------------------------- send

    def send_nowait(self, message: T) -> bool:
        """Queue ``message`` without waiting, applying the overflow policy if full.

        Returns:
            ``True`` if ``message`` was queued; ``False`` if ``drop_newest`` discarded it.

        Raises:
            trio.WouldBlock: full, under the ``"block"`` policy.
            MailboxFullError: full, under the ``"raise"`` policy.
            trio.ClosedResourceError: the mailbox is closed.
        """
        if self._closed:
            raise trio.ClosedResourceError("mailbox is closed")
        if self._receivers:
            self._hand_over(message)
            return True
        buffer = self._buffer
        if len(buffer) >= self._capacity:
            policy = self._policy
            if policy == "drop_oldest":
                buffer.popleft()
                self._dropped += 1
            elif policy == "drop_newest":
                self._dropped += 1
                return False
            elif policy == "block":
                raise trio.WouldBlock
            else:
                raise MailboxFullError(self._capacity, self._name)
        buffer.append(message)
        return True

    def _hand_over(self, message: T) -> None:
        task, mode = next(iter(self._receivers.items()))
        del self._receivers[task]
        if mode == "one":
            trio.lowlevel.reschedule(task, outcome.Value(message))
        else:
            self._buffer.append(message)
            trio.lowlevel.reschedule(task, outcome.Value(None))

    async def send(self, message: T) -> bool:
        """Queue ``message``; under ``"block"``, wait for room.

        A checkpoint. If cancelled, the message was not queued.

        Returns:
            As :meth:`send_nowait`.

        Raises:
            MailboxFullError: full, under the ``"raise"`` policy.
            trio.ClosedResourceError: the mailbox is (or becomes, while waiting) closed.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        try:
            queued = self.send_nowait(message)
        except trio.WouldBlock:
            pass
        else:
            await trio.lowlevel.cancel_shielded_checkpoint()
            return queued
        task = trio.lowlevel.current_task()
        self._senders[task] = message

        def abort(_: object) -> trio.lowlevel.Abort:
            del self._senders[task]
            return trio.lowlevel.Abort.SUCCEEDED

        return bool(await trio.lowlevel.wait_task_rescheduled(abort))

    # -------------------------------------------------------------------- receive

    def _admit(self) -> None:
        """Move parked senders' messages into the room freed, oldest sender first."""
        senders = self._senders
        buffer = self._buffer
        while senders and len(buffer) < self._capacity:
            task, message = next(iter(senders.items()))
            del senders[task]
            buffer.append(message)
            trio.lowlevel.reschedule(task, outcome.Value(True))

    def receive_nowait(self) -> T:
        """Take the oldest message without waiting.

        Raises:
            trio.WouldBlock: nothing is queued.
            trio.EndOfChannel: the mailbox is closed and empty.
        """
        buffer = self._buffer
        if buffer:
            message = buffer.popleft()
            if self._senders:
                self._admit()
            return message
        if self._closed:
            raise trio.EndOfChannel
        raise trio.WouldBlock

    async def receive(self) -> T:
        """Take the oldest message, waiting for one.

        A checkpoint. If cancelled, no message was taken.

        Raises:
            trio.EndOfChannel: the mailbox is closed and empty.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        try:
            message = self.receive_nowait()
        except trio.WouldBlock:
            pass
        else:
            await trio.lowlevel.cancel_shielded_checkpoint()
            return message
        message = await self._park_receiver("one")
        return message

    async def _park_receiver(self, mode: str) -> Any:
        task = trio.lowlevel.current_task()
        self._receivers[task] = mode

        def abort(_: object) -> trio.lowlevel.Abort:
            del self._receivers[task]
            return trio.lowlevel.Abort.SUCCEEDED

        return await trio.lowlevel.wait_task_rescheduled(abort)

    def receive_batch_nowait(self, max_messages: int | None = None) -> list[T]:
        """Take everything queued (at most ``max_messages``), oldest first, without waiting.

        Returns:
            The messages taken; empty if none is queued and the mailbox is open.

        Raises:
            ValueError: ``max_messages`` is not positive.
            trio.EndOfChannel: the mailbox is closed and empty.
        """
        if max_messages is not None and max_messages <= 0:
            raise ValueError(f"max_messages must be positive, got {max_messages}")
        buffer = self._buffer
        if not buffer:
            if self._closed:
                raise trio.EndOfChannel
            return []
        if max_messages is None or max_messages >= len(buffer):
            batch = list(buffer)
            buffer.clear()
        else:
            popleft = buffer.popleft
            batch = [popleft() for _ in range(max_messages)]
        if self._senders:
            self._admit()
        return batch

    async def receive_batch(self, max_messages: int | None = None) -> list[T]:
        """Wait for at least one message, then take everything queued at that checkpoint.

        A checkpoint. If cancelled, nothing was taken.

        Raises:
            ValueError: ``max_messages`` is not positive.
            trio.EndOfChannel: the mailbox is closed and empty.
        """
        if max_messages is not None and max_messages <= 0:
            raise ValueError(f"max_messages must be positive, got {max_messages}")
        await trio.lowlevel.checkpoint_if_cancelled()
        if not self._buffer and not self._closed:
            await self._park_receiver("batch")
        else:
            await trio.lowlevel.cancel_shielded_checkpoint()
        return self.receive_batch_nowait(max_messages)

    def close(self) -> None:
        """Close the mailbox: sends fail; receivers drain what is queued, then get EOF.

        Idempotent.
        """
        if self._closed:
            return
        self._closed = True
        receivers, self._receivers = self._receivers, {}
        for task in receivers:
            trio.lowlevel.reschedule(task, outcome.Error(trio.EndOfChannel()))
        senders, self._senders = self._senders, {}
        for task in senders:
            error = trio.ClosedResourceError("mailbox was closed while waiting to send")
            trio.lowlevel.reschedule(task, outcome.Error(error))

    def __aiter__(self) -> Mailbox[T]:
        return self

    async def __anext__(self) -> T:
        try:
            return await self.receive()
        except trio.EndOfChannel:
            raise StopAsyncIteration from None
