"""``connect_lock_service(url)``: the lease lock API on a service named by URL.

Schemes:

* ``etcd://HOST:PORT[,HOST:PORT...]`` (``etcds://`` for TLS): the lock on etcd
  (:class:`trio_foundation.etcd.EtcdLock`), fencing tokens from etcd's revisions.

The project's own lock server over TCP (``tcp://``) and the Raft-replicated one
(``raft://``) will be served through the same call.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Protocol

from .lease_lock import Lease

__all__ = ["LockClient", "connect_lock_service"]

SCHEMES = ("etcd", "etcds")


class LockClient(Protocol):
    """What every lock backend's client offers: named locks with fencing tokens."""

    def acquire(self, *, ttl: float, name: str = "default") -> AbstractAsyncContextManager[Lease]:
        """Wait for the lock ``name``, hold it for the block (see the backend's docs)."""
        ...


@asynccontextmanager
async def connect_lock_service(
    url: str,
    *,
    timeout: float = 5.0,  # noqa: ASYNC109 - the per-call timeout of the client
    prefix: str | None = None,
) -> AsyncIterator[LockClient]:
    """Connect to the lock service at ``url`` for the duration of the block.

    Args:
        url: ``etcd://HOST:PORT[,HOST:PORT...]`` or ``etcds://...``.
        timeout: seconds each call to the service may take (connection included).
        prefix: (etcd) where lock keys live; default ``/trio-foundation/``.

    Raises:
        ValueError: an unknown scheme or a malformed address (the message names it).
    """
    if not isinstance(url, str):
        raise TypeError(f"url must be a str, got {type(url).__name__}")
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in SCHEMES:
        known = ", ".join(f"{s}://" for s in SCHEMES)
        raise ValueError(
            f"lock service URL {url!r}: unknown scheme {scheme if sep else '(none)'!r} "
            f"(supported: {known})"
        )
    if not (isinstance(timeout, int | float) and math.isfinite(timeout) and timeout > 0):
        raise ValueError(f"timeout must be > 0 seconds, got {timeout!r}")
    from ..etcd import EtcdLock, open_etcd_client

    endpoints = [f"{scheme}://{e.strip()}" for e in rest.split(",") if e.strip()]
    async with open_etcd_client(endpoints, timeout=timeout) as client:
        if prefix is None:
            yield EtcdLock(client)
        else:
            yield EtcdLock(client, prefix=prefix)
