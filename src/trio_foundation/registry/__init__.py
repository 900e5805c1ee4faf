"""A registry of entries by key, with secondary indexes and scope-bound registrations.

``async with registry.register(key, meta):`` registers ``key`` for the duration of the
block, so the entry dies with its owner; secondary indexes (single- or multi-valued)
answer criteria queries, paginated; every entry is removed from every index in time
independent of the registry's size; watches are bounded and report a :class:`Resync`
marker instead of growing. See ``docs/registry.md``.
"""

from __future__ import annotations

from ._errors import BatchTooLargeError, DuplicateKeyError, RegistryFullError
from ._registry import (
    Backend,
    Change,
    Entry,
    Index,
    Page,
    Registered,
    Registry,
    RegistryStatistics,
    Resync,
    Unregistered,
    Updated,
    Watch,
)

__all__ = [
    "Backend",
    "BatchTooLargeError",
    "Change",
    "DuplicateKeyError",
    "Entry",
    "Index",
    "Page",
    "Registered",
    "Registry",
    "RegistryFullError",
    "RegistryStatistics",
    "Resync",
    "Unregistered",
    "Updated",
    "Watch",
]
