"""Errors raised by the registry."""

from __future__ import annotations

from collections.abc import Hashable

from .._errors import FoundationError

__all__ = [
    "BatchTooLargeError",
    "DuplicateKeyError",
    "RegistryFullError",
]


class DuplicateKeyError(FoundationError, ValueError):
    """A unique registry already holds the key (or a batch names it twice).

    Attributes:
        key: the key that is already registered.
    """

    def __init__(self, key: Hashable) -> None:
        super().__init__(f"key {key!r} is already registered in this unique registry")
        self.key = key


class RegistryFullError(FoundationError):
    """Registering would exceed the registry's ``max_entries``.

    Attributes:
        max_entries: the registry's bound.
        requested: how many entries the refused call would have added.
    """

    def __init__(self, max_entries: int, requested: int) -> None:
        super().__init__(
            f"registry is full: {requested} more entries would exceed max_entries={max_entries}"
        )
        self.max_entries = max_entries
        self.requested = requested


class BatchTooLargeError(FoundationError, ValueError):
    """A batch registration names more entries than the registry's ``batch_limit``.

    Attributes:
        size: the batch's size.
        limit: the registry's ``batch_limit``.
    """

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"batch of {size} registrations exceeds batch_limit={limit}")
        self.size = size
        self.limit = limit
