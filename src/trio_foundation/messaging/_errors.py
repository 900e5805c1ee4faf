"""Errors raised by messaging."""

from __future__ import annotations

from collections.abc import Hashable

import trio

from .._errors import FoundationError

__all__ = [
    "CallTimeoutError",
    "MailboxFullError",
    "NotRegisteredError",
    "PatternError",
    "SubscriberDisconnected",
]


class MailboxFullError(FoundationError):
    """A mailbox with the ``"raise"`` overflow policy was full.

    Attributes:
        capacity: the mailbox's capacity.
        name: the mailbox's name (may be ``None``).
    """

    def __init__(self, capacity: int, name: str | None) -> None:
        label = f"mailbox {name!r}" if name else "mailbox"
        super().__init__(f"{label} is full (capacity {capacity})")
        self.capacity = capacity
        self.name = name


class CallTimeoutError(FoundationError, trio.TooSlowError):
    """A ``call`` got no reply within its timeout; the reply slot was abandoned.

    Attributes:
        timeout: the timeout, in seconds.
    """

    def __init__(self, timeout: float) -> None:
        super().__init__(f"no reply within {timeout} s")
        self.timeout = timeout


class NotRegisteredError(FoundationError, LookupError):
    """An address names a registry key with no entry.

    Attributes:
        key: the key looked up.
    """

    def __init__(self, key: Hashable) -> None:
        super().__init__(f"no mailbox registered under key {key!r}")
        self.key = key


class PatternError(ValueError):
    """A subscription pattern or a published topic does not parse.

    Attributes:
        pattern: the text refused.
        reason: what is wrong with it.
    """

    def __init__(self, pattern: object, reason: str) -> None:
        super().__init__(f"bad topic pattern {pattern!r}: {reason}")
        self.pattern = pattern
        self.reason = reason


class SubscriberDisconnected(FoundationError):
    """The router disconnected a subscription that stayed full past its deadline.

    Attributes:
        pattern: the subscription's pattern.
        deadline: how long, in seconds, it was allowed to stay full.
    """

    def __init__(self, pattern: str, deadline: float) -> None:
        super().__init__(
            f"subscription {pattern!r} was disconnected: its queue stayed full for"
            f" more than {deadline} s"
        )
        self.pattern = pattern
        self.deadline = deadline
