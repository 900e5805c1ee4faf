"""User-facing coordination primitives (each a Trio API over a sans-IO core)."""

from __future__ import annotations

from .connect import LockClient, connect_lock_service
from .kv import (
    CasResult,
    CompactedError,
    KeyValue,
    KVStore,
    MemoryKV,
    WatchEvent,
    WatchOverflowError,
)
from .lease_lock import FencedResource, Lease, LeaseLock, LockService, open_lock_service
from .market import Allocation, CallForBids, Market, MarketStatistics
from .raft_ledger import RaftLedger, open_raft_ledger

__all__ = [
    "Allocation",
    "CallForBids",
    "CasResult",
    "CompactedError",
    "FencedResource",
    "KVStore",
    "KeyValue",
    "Lease",
    "LeaseLock",
    "LockClient",
    "LockService",
    "Market",
    "MarketStatistics",
    "MemoryKV",
    "RaftLedger",
    "WatchEvent",
    "WatchOverflowError",
    "connect_lock_service",
    "open_raft_ledger",
    "open_lock_service",
]
