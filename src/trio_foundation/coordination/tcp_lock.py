"""The client of a lock server process: ``connect_lock_service("tcp://HOST:PORT")``.

::

    async with connect_lock_service("tcp://127.0.0.1:7420", secret_file="lock.secret") as locks:
        async with locks.acquire(ttl=10, name="reports") as lease:
            resource.write(lease.token, data)      # fenced by the token

The client is :class:`~trio_foundation.coordination.lease_lock.LeaseLock`, the
same class as the in-process service's, so the semantics are the same: the
body runs in a cancel scope cancelled ``margin`` seconds before the lease's
safe local deadline, which each acknowledged renewal moves; if renewals stop,
the body is cancelled before the lease can expire and
:class:`~trio_foundation.LeaseLostError` is raised; the lease is released on
every exit. Here each lock name runs its own
:class:`~trio_foundation.protocols.lease_lock.LockClient` core on a
:class:`~trio_foundation.runtime.driver.NodeDriver` over a
:class:`~trio_foundation.coordination.lock_wire.LockChannel` of the
connection's TCP transport (messages pushed from the transport).
"""

from __future__ import annotations

import math
import random
import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import trio

from ..protocols.lease_lock import LockClient
from ..runtime.driver import NodeDriver, Transition
from ..runtime.tcp import open_tcp_transport, parse_address
from ..runtime.transport import Envelope
from ..telemetry import Telemetry
from .lease_lock import RETRYABLE_REFUSALS, LeaseLock, LockHandle
from .lock_wire import LOCK_PROTOCOL, SERVER_NODE, LockChannel, from_wire

__all__ = ["RETRYABLE_REFUSALS", "open_remote_lock_service"]


def _ignore(data: Any) -> None:
    """A client keeps no durable state: its node id is fresh per connection."""


@asynccontextmanager
async def open_remote_lock_service(
    address: str,
    *,
    secret: bytes | None = None,
    timeout: float = 5.0,  # noqa: ASYNC109 - the connection timeout of the client
    max_drift: float = 0.001,
    retry_interval: float = 0.5,
    retry_delay: float = 0.05,
    max_locks: int = 1024,
    seed: int | None = None,
    telemetry: Telemetry | None = None,
    trace: Callable[[Transition], None] | None = None,
) -> AsyncIterator[LeaseLock]:
    """Connect to the lock server at ``address`` (``HOST:PORT`` or ``tcp://HOST:PORT``).

    Entering waits until the connection's handshake is done (at most
    ``timeout`` seconds); afterwards the connection reconnects by itself with
    jittered backoff, and requests lost with a connection are re-sent by the
    cores. A checkpoint; if cancelled on entry, nothing is left running. On
    exit the connection is closed and every lock it held is released (one
    message each, best effort: an unreleased lease expires after its ttl).

    Args:
        address: the server's address.
        secret: the shared secret; ``None``: no authentication (must match the server).
        timeout: seconds to wait for the first connection.
        max_drift: the bound on clock drift the lease's safety assumes.
        retry_interval: seconds before an unanswered request is re-sent.
        retry_delay: first backoff after a refusal (doubles, jittered).
        max_locks: bound on the lock names this connection uses.
        seed: seed of the backoff jitter and the node id (tests).
        telemetry: where the client emits its ``lease_lock.*`` events.
        trace: the trace hook of every lock name's driver.

    Raises:
        ValueError: a malformed address or parameter.
        ConnectionError: no connection within ``timeout``.
    """
    host, port = parse_address(address, scheme="tcp" if "://" in address else None, dial=True)
    if not (isinstance(timeout, int | float) and math.isfinite(timeout) and timeout > 0):
        raise ValueError(f"timeout must be > 0 seconds, got {timeout!r}")
    if not retry_delay > 0:
        raise ValueError(f"retry_delay must be > 0, got {retry_delay!r}")
    rng = random.Random(seed) if seed is not None else random.Random()
    node_id = rng.randrange(1, 2**63) if seed is not None else secrets.randbelow(2**63 - 1) + 1
    handles: dict[str, LockHandle] = {}

    def on_message(envelope: Envelope) -> None:
        name, msg = from_wire(envelope.msg)
        handle = handles.get(name)
        if handle is not None:
            handle.driver.deliver(envelope.src, msg)

    body_error: BaseException | None = None
    unreachable: str | None = None
    try:
        async with trio.open_nursery() as nursery:
            try:
                async with open_tcp_transport(
                    LOCK_PROTOCOL,
                    node_id,
                    peers={SERVER_NODE: (host, port)},
                    secret=secret,
                    on_message=on_message,
                    rng=rng,
                ) as tcp:

                    def open_lock(name: str) -> LockHandle:
                        core = LockClient(
                            node_id,
                            server=SERVER_NODE,
                            max_drift=max_drift,
                            retry_interval=retry_interval,
                        )
                        driver = NodeDriver(
                            core,
                            LockChannel(tcp, name),
                            persist=_ignore,
                            pull=False,
                            rng=rng,
                            trace=trace,
                        )
                        driver.start_in(nursery)
                        handle = handles[name] = LockHandle(core, driver)
                        return handle

                    service = LeaseLock(
                        node_id=node_id,
                        open_lock=open_lock,
                        retry_delay=retry_delay,
                        rng=rng,
                        max_locks=max_locks,
                        telemetry=telemetry,
                    )
                    with trio.move_on_after(timeout) as waiting:
                        await tcp.wait_connected(SERVER_NODE)
                    if waiting.cancelled_caught:
                        stats = tcp.statistics()
                        unreachable = (
                            f"no connection to the lock server at {host}:{port} within"
                            f" {timeout:g} s ({stats.dial_failures} failed dials,"
                            f" drops {dict(stats.drops)})"
                        )
                    else:
                        try:
                            yield service
                        except BaseException as exc:
                            body_error = exc
                            raise
            finally:
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        # The body's own exception comes back wrapped by the nurseries: unwrap it.
        if body_error is None or _carried(group) != _carried(body_error):
            raise
    else:
        if unreachable is not None:
            raise ConnectionError(unreachable)
        return
    raise body_error


def _carried(exc: BaseException) -> set[int]:
    """The ids of the exceptions other than ``Cancelled`` that ``exc`` carries."""
    if isinstance(exc, BaseExceptionGroup):
        return set().union(*(_carried(e) for e in exc.exceptions))
    return set() if isinstance(exc, trio.Cancelled) else {id(exc)}
