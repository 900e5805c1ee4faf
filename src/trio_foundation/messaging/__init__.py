"""Bounded mailboxes, call/cast, and a pub/sub router with per-subscriber backpressure.

* :class:`Mailbox`: bounded FIFO with an overflow policy (``block``, ``drop_oldest``,
  ``drop_newest``, ``raise``), ``*_nowait`` twins and a batched drain.
* :func:`call` / :func:`cast` / :func:`cast_nowait`: request/reply with a timeout (the
  reply slot abandoned on cancellation) and fire-and-forget, to a mailbox or to an
  :class:`Address` (a registry key); messages travel in :class:`Envelope` s carrying the
  sender's trace context.
* :class:`SignalRouter`: topics with exact, prefix (``a.**``) and wildcard-segment
  (``a.*.c``) patterns; each subscription has its own bounded queue and a slow-subscriber
  policy (drop with a counter, or disconnect after a deadline).

See ``docs/messaging.md``.
"""

from __future__ import annotations

from ._call import Address, Envelope, ReplySlot, Target, call, cast, cast_nowait, resolve
from ._errors import (
    CallTimeoutError,
    MailboxFullError,
    NotRegisteredError,
    PatternError,
    SubscriberDisconnected,
)
from ._mailbox import Mailbox, MailboxStatistics, OverflowPolicy
from ._router import (
    RouterStatistics,
    Signal,
    SignalRouter,
    SlowPolicy,
    Subscription,
    parse_pattern,
)

__all__ = [
    "Address",
    "CallTimeoutError",
    "Envelope",
    "Mailbox",
    "MailboxFullError",
    "MailboxStatistics",
    "NotRegisteredError",
    "OverflowPolicy",
    "PatternError",
    "ReplySlot",
    "RouterStatistics",
    "Signal",
    "SignalRouter",
    "SlowPolicy",
    "Subscription",
    "SubscriberDisconnected",
    "Target",
    "call",
    "cast",
    "cast_nowait",
    "parse_pattern",
    "resolve",
]
