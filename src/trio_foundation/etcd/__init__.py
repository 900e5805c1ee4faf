"""A Trio client for etcd v3 and the etcd backends of the coordination APIs.

::

    async with open_etcd_client("127.0.0.1:2379") as etcd:
        await etcd.put("greeting", "hello")
        kv = await etcd.get("greeting")
        async with etcd.watch("jobs/", prefix=True) as events:
            async for event in events:
                ...

See ``docs/etcd.md``. :mod:`trio_foundation.etcd.testing` starts real etcd
members on loopback for tests.
"""

from __future__ import annotations

from ._client import EtcdClient, EtcdLease, Watch, open_etcd_client, parse_endpoints
from ._errors import (
    EtcdAuthError,
    EtcdCompactedError,
    EtcdError,
    EtcdLeaseLostError,
    EtcdLeaseNotFoundError,
    EtcdProtocolError,
    EtcdRequestError,
    EtcdUnavailableError,
)
from ._kv import EtcdKV
from ._recipes import EtcdElection, EtcdLock, Leadership, open_etcd_election
from ._types import (
    Compare,
    DeleteOp,
    DeleteResult,
    GetOp,
    KeyValue,
    PutOp,
    PutResult,
    RangeResult,
    TxnResult,
    WatchEvent,
    prefix_end,
)

__all__ = [
    "Compare",
    "DeleteOp",
    "DeleteResult",
    "EtcdAuthError",
    "EtcdClient",
    "EtcdElection",
    "EtcdKV",
    "EtcdLock",
    "EtcdCompactedError",
    "EtcdError",
    "EtcdLease",
    "EtcdLeaseLostError",
    "EtcdLeaseNotFoundError",
    "EtcdProtocolError",
    "EtcdRequestError",
    "EtcdUnavailableError",
    "GetOp",
    "KeyValue",
    "Leadership",
    "PutOp",
    "PutResult",
    "RangeResult",
    "TxnResult",
    "Watch",
    "WatchEvent",
    "open_etcd_client",
    "open_etcd_election",
    "parse_endpoints",
    "prefix_end",
]
