"""Request/reply (``call``) and fire-and-forget (``cast``) over mailboxes.

A message travels in an :class:`Envelope` (an immutable named tuple: the message, the
reply slot of a call, the sender's trace context). ``call`` makes a one-shot
:class:`ReplySlot`, sends the envelope and parks on the slot; the server answers with
``envelope.reply(value)``. When the caller leaves without a reply (timeout, cancellation),
the slot is *abandoned*: a late reply is dropped and nothing stays registered anywhere —
the slot is referenced only by the envelope, which itself is bounded by the mailbox.

Addressing by registry key: an :class:`Address` names a key of a registry whose entry's
``value`` is the mailbox; it is resolved at every send, so a restarted server that
registered again under the same key is found.
"""

from __future__ import annotations

import math
from collections.abc import Hashable
from typing import Any, TypeAlias, final

import attrs
import msgspec
import outcome
import trio
import trio.lowlevel

from ..registry import Backend
from ..telemetry._trace import TraceContext, _current
from ._errors import CallTimeoutError, MailboxFullError, NotRegisteredError
from ._mailbox import Mailbox

__all__ = ["Address", "Envelope", "ReplySlot", "Target", "call", "cast", "cast_nowait", "resolve"]


@final
class ReplySlot:
    """The one-shot place a call's reply is delivered to.

    States: pending -> replied (a value or an error) | abandoned (the caller left).
    """

    __slots__ = ("_outcome", "_state", "_task")

    def __init__(self) -> None:
        self._state = "pending"
        self._task: trio.lowlevel.Task | None = None
        self._outcome: outcome.Outcome[Any] | None = None

    @property
    def state(self) -> str:
        """``"pending"``, ``"replied"`` or ``"abandoned"``."""
        return self._state

    def _settle(self, result: outcome.Outcome[Any]) -> bool:
        if self._state != "pending":
            return False
        self._state = "replied"
        task = self._task
        if task is not None:
            self._task = None
            trio.lowlevel.reschedule(task, result)
        else:
            self._outcome = result
        return True

    def set(self, value: object) -> bool:
        """Deliver a reply. Returns ``False`` (and drops it) if already replied or abandoned."""
        return self._settle(outcome.Value(value))

    def fail(self, error: BaseException) -> bool:
        """Deliver an error, raised in the caller. ``False`` if already replied or abandoned."""
        return self._settle(outcome.Error(error))

    def abandon(self) -> None:
        """The caller has left: later replies are dropped; the held reply is released."""
        if self._state == "pending":
            self._state = "abandoned"
        self._task = None
        self._outcome = None

    async def wait(self) -> Any:
        """Wait for the reply. A checkpoint; if cancelled, the slot is abandoned."""
        if self._outcome is not None:
            result, self._outcome = self._outcome, None
            await trio.lowlevel.cancel_shielded_checkpoint()
            return result.unwrap()
        if self._state != "pending":
            raise RuntimeError(f"reply slot is {self._state}; nothing to wait for")
        await trio.lowlevel.checkpoint_if_cancelled()
        self._task = trio.lowlevel.current_task()

        def abort(_: Any) -> trio.lowlevel.Abort:
            self.abandon()
            return trio.lowlevel.Abort.SUCCEEDED

        return await trio.lowlevel.wait_task_rescheduled(abort)


class Envelope(msgspec.Struct, frozen=True):
    """A message in transit (immutable).

    A ``msgspec.Struct`` rather than a ``NamedTuple``: it is built in C in one
    allocation (a named tuple takes two, plus a Python-level ``__new__``), which is most
    of the cost of a cast when many messages are queued (``benchmarks/bench_messaging.py``).
    It is not a tuple: read its fields by name.

    Attributes:
        message: the payload.
        reply_to: the caller's reply slot, or ``None`` for a cast.
        trace: the sender's trace context when it sent, or ``None``.
    """

    message: Any
    reply_to: ReplySlot | None = None
    trace: TraceContext | None = None

    def reply(self, value: object) -> bool:
        """Answer a call. Returns whether the caller was still waiting.

        Raises:
            RuntimeError: this envelope is a cast (nobody to answer).
        """
        if self.reply_to is None:
            raise RuntimeError("this envelope was cast, not called: there is nobody to reply to")
        return self.reply_to.set(value)

    def fail(self, error: BaseException) -> bool:
        """Answer a call with an error raised in the caller. Returns whether it waited."""
        if self.reply_to is None:
            raise RuntimeError("this envelope was cast, not called: there is nobody to reply to")
        return self.reply_to.fail(error)

    @property
    def abandoned(self) -> bool:
        """Whether the caller has already left (a server may skip the work)."""
        return self.reply_to is not None and self.reply_to.state == "abandoned"


@final
@attrs.frozen
class Address:
    """A mailbox named by a registry key (resolved at every send).

    Attributes:
        registry: the registry holding the key.
        key: the key whose entry's ``value`` is the mailbox.
    """

    registry: Backend = attrs.field(eq=False)
    key: Hashable


Target: TypeAlias = "Mailbox[Envelope] | Address"


def resolve(target: Target) -> Mailbox[Envelope]:
    """The mailbox ``target`` names.

    Raises:
        NotRegisteredError: an address whose key has no entry.
        TypeError: the target is neither a mailbox nor an address, or the registered
            value is not a mailbox.
    """
    if isinstance(target, Mailbox):
        return target
    if isinstance(target, Address):
        entry = target.registry.lookup(target.key)
        if entry is None:
            raise NotRegisteredError(target.key)
        if not isinstance(entry.value, Mailbox):
            raise TypeError(
                f"key {target.key!r} is registered with a {type(entry.value).__name__},"
                " not a Mailbox"
            )
        return entry.value
    raise TypeError(f"target must be a Mailbox or an Address, got {type(target).__name__}")


def cast_nowait(target: Target, message: object) -> bool:
    """Send ``message`` without waiting for room or for an answer.

    Returns:
        Whether it was queued (``False``: a ``drop_newest`` mailbox discarded it).

    Raises:
        trio.WouldBlock: the mailbox is full under the ``"block"`` policy.
        MailboxFullError: the mailbox is full under the ``"raise"`` policy.
        NotRegisteredError, TypeError: as :func:`resolve`.
        trio.ClosedResourceError: the mailbox is closed.
    """
    if type(target) is Mailbox:
        # Fast path (a cast is the hot path of an actor system): queue the envelope
        # directly when there is room; anything else goes through send_nowait.
        buffer = target._buffer
        if len(buffer) < target._capacity and not target._receivers and not target._closed:
            buffer.append(Envelope(message, None, _current.get()))
            return True
        mailbox: Mailbox[Envelope] = target
    else:
        mailbox = resolve(target)
    return mailbox.send_nowait(Envelope(message, None, _current.get()))


async def cast(target: Target, message: object, *, wait: bool = False) -> bool:
    """Send ``message`` without waiting for an answer.

    By default this never blocks (a full ``"block"`` mailbox raises ``trio.WouldBlock``);
    with ``wait=True`` it waits for room. A checkpoint; if cancelled, nothing was sent.

    Returns, Raises:
        As :func:`cast_nowait`.
    """
    mailbox = resolve(target)
    envelope = Envelope(message, None, _current.get())
    if wait:
        return await mailbox.send(envelope)
    await trio.lowlevel.checkpoint_if_cancelled()
    queued = mailbox.send_nowait(envelope)
    await trio.lowlevel.cancel_shielded_checkpoint()
    return queued


async def call(target: Target, message: object, *, timeout: float = math.inf) -> Any:  # noqa: ASYNC109
    """Send ``message`` and wait for the reply.

    Waits for room in the mailbox if its policy is ``"block"`` (counted in the timeout).
    A checkpoint. If cancelled or timed out, the reply slot is abandoned: a late reply is
    dropped and nothing is left registered for this call.

    Args:
        target: a mailbox or an address.
        message: the request.
        timeout: seconds to wait for the reply (> 0), including the wait for room.

    Returns:
        The server's reply.

    Raises:
        CallTimeoutError: no reply within ``timeout``.
        MailboxFullError: the mailbox is full under the ``"raise"`` policy, or a
            ``"drop_newest"`` mailbox discarded the request. (A request evicted later from
            a ``"drop_oldest"`` mailbox is noticed only through the timeout.)
        NotRegisteredError, TypeError: as :func:`resolve`.
        ValueError: ``timeout`` is not positive.
        Exception: whatever the server passed to ``envelope.fail``.
    """
    if not timeout > 0:
        raise ValueError(f"timeout must be > 0 seconds, got {timeout!r}")
    mailbox = resolve(target)
    slot = ReplySlot()
    envelope = Envelope(message, slot, _current.get())
    try:
        if timeout == math.inf:
            if not await mailbox.send(envelope):
                raise MailboxFullError(mailbox.capacity, mailbox.name)
            return await slot.wait()
        with trio.fail_after(timeout):
            if not await mailbox.send(envelope):
                raise MailboxFullError(mailbox.capacity, mailbox.name)
            return await slot.wait()
    except trio.TooSlowError:
        raise CallTimeoutError(timeout) from None
    finally:
        slot.abandon()
