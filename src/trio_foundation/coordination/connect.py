"""``connect_lock_service(url)``: the lease lock API on a service named by URL.

Schemes:

* ``etcd://HOST:PORT[,HOST:PORT...]`` (``etcds://`` for TLS): the lock on etcd
  (:class:`trio_foundation.etcd.EtcdLock`), fencing tokens from etcd's revisions.
* ``tcp://HOST:PORT``: the project's own lock server process (``foundation lock
  serve``; :mod:`trio_foundation.coordination.tcp_lock`), authenticated with the
  shared secret in ``secret_file`` if given.
* ``raft://[ID=]HOST:PORT,...``: the lock service of a Raft cluster (``foundation
  kv serve`` members; :mod:`trio_foundation.coordination.raft_lock`), fault
  tolerant, fencing tokens from the Raft log index; ``secret_file`` is the
  cluster's shared secret.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Protocol

from ..telemetry import Telemetry
from .lease_lock import Lease

__all__ = ["LockClient", "connect_lock_service"]

SCHEMES = ("etcd", "etcds", "tcp", "raft")


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
    secret_file: str | None = None,
    telemetry: Telemetry | None = None,
) -> AsyncIterator[LockClient]:
    """Connect to the lock service at ``url`` for the duration of the block.

    Args:
        url: ``etcd://HOST:PORT[,HOST:PORT...]``, ``etcds://...``, ``tcp://HOST:PORT``
            or ``raft://[ID=]HOST:PORT,...`` (any of the members).
        timeout: seconds each call to the service may take (connection included);
            for ``tcp://`` and ``raft://``, the seconds to wait for the first
            connection (and for ``raft://`` also to close: see
            :func:`~trio_foundation.coordination.raft_lock.open_raft_lock_service`).
        prefix: (etcd) where lock keys live; default ``/trio-foundation/``.
        secret_file: (tcp, raft) the shared secret file, as the server's ``--secret-file``.
        telemetry: (tcp, raft) where the client emits its ``lease_lock.*`` events
            (``docs/telemetry.md``); ``None``:
            :func:`~trio_foundation.telemetry.default_telemetry`. The etcd
            backend emits no ``lease_lock.*`` events, so it refuses this argument.

    Raises:
        ValueError: an unknown scheme or a malformed address (the message names
            it), or ``secret_file`` or ``telemetry`` given for ``etcd://``.
        ConnectionError: (tcp, raft) no connection within ``timeout``.
        EtcdUnavailableError: (etcd) no endpoint answered within ``timeout``; the
            service is reached once (a status call) before the block starts.
    """
    if not isinstance(url, str):
        raise TypeError(f"url must be a str, got {type(url).__name__}")
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in SCHEMES:
        known = ", ".join(f"{s}://" for s in SCHEMES)
        if sep:
            raise ValueError(
                f"lock service URL {url!r}: unknown scheme {scheme!r} (supported: {known})"
            )
        raise ValueError(
            f"lock service URL {url!r} has no scheme: write SCHEME://ADDRESS,"
            f" e.g. tcp://127.0.0.1:7000 (supported: {known})"
        )
    if not (isinstance(timeout, int | float) and math.isfinite(timeout) and timeout > 0):
        raise ValueError(f"timeout must be > 0 seconds, got {timeout!r}")
    if scheme == "tcp":
        from ..runtime.auth import load_secret_file
        from .tcp_lock import open_remote_lock_service

        secret = None if secret_file is None else load_secret_file(secret_file)
        async with open_remote_lock_service(
            url, secret=secret, timeout=timeout, telemetry=telemetry
        ) as remote:
            yield remote
        return
    if scheme == "raft":
        from ..runtime.auth import load_secret_file
        from .raft_lock import open_raft_lock_service

        secret = None if secret_file is None else load_secret_file(secret_file)
        async with open_raft_lock_service(
            url, secret=secret, timeout=timeout, telemetry=telemetry
        ) as raft:
            yield raft
        return
    if secret_file is not None:
        raise ValueError(f"secret_file is for tcp:// and raft:// lock services, not {scheme}://")
    if telemetry is not None:
        raise ValueError(
            f"telemetry is for tcp:// and raft:// lock services; the {scheme}:// lock emits no"
            " lease_lock.* events"
        )
    from ..etcd import EtcdLock, open_etcd_client

    endpoints = [f"{scheme}://{e.strip()}" for e in rest.split(",") if e.strip()]
    async with open_etcd_client(endpoints, timeout=timeout) as client:
        # Reach the service once before handing it out, as tcp:// does: a caller's
        # own deadline on acquire() then bounds the wait for the lock, never the
        # discovery that no endpoint answers (EtcdUnavailableError names them).
        await client.status()
        if prefix is None:
            yield EtcdLock(client)
        else:
            yield EtcdLock(client, prefix=prefix)
