"""User-facing coordination primitives (each a Trio API over a sans-IO core)."""

from __future__ import annotations

from .lease_lock import FencedResource, Lease, LeaseLock, LockService, open_lock_service

__all__ = ["FencedResource", "Lease", "LeaseLock", "LockService", "open_lock_service"]
