"""The lease lock on a Raft cluster: ``connect_lock_service("raft://H1:P1,H2:P2,H3:P3")``.

::

    async with connect_lock_service("raft://127.0.0.1:7401,127.0.0.1:7402,127.0.0.1:7403") as locks:
        async with locks.acquire(ttl=10, name="reports") as lease:
            resource.write(lease.token, data)   # token: the grant's Raft log index

The members are ``foundation kv serve`` processes (or :func:`open_lock_node`):
they serve the key-value store and the locks from one replicated log
(:class:`~trio_foundation.protocols.lock_machine.ServiceMachine`). The
protocol and its safety argument are in
:mod:`trio_foundation.protocols.lock_machine`.

The client is :class:`~trio_foundation.coordination.lease_lock.LeaseLock`, the
same class as the in-process and ``tcp://`` clients: each lock name runs a
:class:`~trio_foundation.protocols.lease_lock.LockClient` core on a
:class:`~trio_foundation.runtime.driver.NodeDriver` whose transport turns the
core's requests into Raft submits (:class:`_RaftLockChannel`) and the replicated
results back into the core's messages. So the body runs in a cancel scope
cancelled before the lease's safe local deadline, renewals move it, a lost
lease raises :class:`~trio_foundation.LeaseLostError`, and a grant for an
abandoned acquire is handed back at once.

The leader runs :func:`keep_leases`: it proposes the expiry of every lease whose
ttl has passed on its clock since it first saw the lease's latest grant or
renewal in its replica (a new leader starts every count afresh).
"""

from __future__ import annotations

import math
import os
import random
import secrets
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from typing import Any, Final, final

import trio

from .._errors import ProtocolError
from ..protocols import lock_machine as lm
from ..protocols.lease_lock import (
    AcquireRequest,
    Denied,
    Granted,
    LockClient,
    ReleaseRequest,
    Renewed,
    RenewRequest,
)
from ..runtime.driver import NodeDriver, Transition
from ..runtime.tcp import parse_address
from ..runtime.transport import Envelope
from ..telemetry import Telemetry
from .consensus import Codec, RaftClient, RaftNodeHandle, open_raft_client, open_raft_node
from .lease_lock import LeaseLock, LockHandle

__all__ = [
    "SERVICE_CODEC",
    "keep_leases",
    "open_lock_node",
    "open_raft_lock_service",
    "parse_raft_url",
    "resolve_members",
]

SERVICE_CODEC: Final = Codec(
    command=lm.ServiceRequest,
    result=lm.ServiceResult,
    query=lm.ServiceQuery,
    answer=lm.ServiceResult,
)
"""The codec of a cluster serving :class:`~trio_foundation.protocols.lock_machine.ServiceMachine`
(key-value clients with :data:`~trio_foundation.coordination.raft_kv.KV_CODEC` talk to it too)."""

SERVER_NODE: Final = 0
_MAX_INFLIGHT: Final = 256


# --------------------------------------------------------------------------- server side


async def keep_leases(
    node: RaftNodeHandle,
    held: Callable[[], Iterable[lm.HeldLock]],
    *,
    tick: float | None = None,
    max_inflight: int = 64,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """While ``node`` leads, propose the expiry of every lease whose ttl ran out.

    A lease's count starts when this node, as leader in its current term, first
    sees the lease's latest grant or renewal (:attr:`HeldLock.since`) among
    ``held()`` — read from its own replica, so after the entry was applied —
    and the expiry is proposed ``ttl`` seconds of the local clock later; see
    :mod:`trio_foundation.protocols.lock_machine` for why that is safe. The
    counts are dropped whenever the node stops leading (a later term starts
    them afresh).

    Args:
        node: the member.
        held: the held locks of the member's replica (e.g.
            ``lambda: machine.locks.held()``).
        tick: seconds between scans (default the heartbeat interval): an
            expiry is proposed up to ``tick`` late. A scan costs one step per
            held lock.
        max_inflight: expiry proposals outstanding at once.

    Runs until cancelled (reports started at once). Cancellation leaves nothing
    behind: an expiry proposal cut short may or may not be applied, and is
    safe either way.
    """
    period = node.core.heartbeat_interval if tick is None else tick
    if not period > 0:
        raise ValueError(f"tick must be > 0, got {tick!r}")
    task_status.started()
    while True:
        await node.role_term.wait_value(lambda rt: rt[0] == "leader")
        await _keep_for_term(node, held, period, max_inflight)


async def _keep_for_term(
    node: RaftNodeHandle,
    held: Callable[[], Iterable[lm.HeldLock]],
    period: float,
    max_inflight: int,
) -> None:
    """:func:`keep_leases` for one term of leadership; returns when it ends."""
    term = node.role_term.value
    # Invariant: the local time this term first saw each held (name, token, since).
    seen: dict[tuple[str, int, int], float] = {}
    proposing: set[tuple[str, int, int]] = set()

    async def step_down(nursery: trio.Nursery) -> None:
        await node.role_term.wait_value(lambda rt: rt != term)
        nursery.cancel_scope.cancel()

    async def expire(key: tuple[str, int, int]) -> None:
        try:
            with trio.move_on_after(2 * node.core.election_timeout):
                await node.submit((lm.LOCK_TAG, lm.LockExpire(*key)))
        finally:
            proposing.discard(key)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(step_down, nursery)
        while True:
            now = trio.current_time()
            current: dict[tuple[str, int, int], float] = {}
            for lock in held():
                key = (lock.name, lock.token, lock.since)
                first = current[key] = seen.get(key, now)
                if (
                    now - first >= lock.ttl
                    and key not in proposing
                    and len(proposing) < max_inflight
                ):
                    proposing.add(key)
                    nursery.start_soon(expire, key)
            seen = current
            await trio.sleep(period)


@asynccontextmanager
async def open_lock_node(
    node_id: int,
    peers: Mapping[int, tuple[str, int]],
    data_dir: str | os.PathLike[str],
    *,
    machine: lm.ServiceMachine | None = None,
    **options: Any,
) -> AsyncIterator[RaftNodeHandle]:
    """Run a member serving the key-value store and the locks (what ``foundation kv serve`` runs).

    :func:`~trio_foundation.coordination.consensus.open_raft_node` with a
    :class:`~trio_foundation.protocols.lock_machine.ServiceMachine` and
    :data:`SERVICE_CODEC`, plus :func:`keep_leases` beside it.

    Args:
        node_id: this member's id.
        peers: every member's id → ``(host, port)``.
        data_dir: the member's data directory.
        machine: the state machine, fresh (default: a
            :class:`~trio_foundation.protocols.lock_machine.ServiceMachine` with
            the default bounds; pass one to choose them, e.g. ``max_ttl``, or
            to inspect it).
        options: passed to ``open_raft_node`` (``secret``, ``election_timeout``...).

    Entering is a checkpoint; exit stops the member (as ``open_raft_node``).
    """
    machine = lm.ServiceMachine() if machine is None else machine
    async with (
        open_raft_node(node_id, peers, data_dir, machine, codec=SERVICE_CODEC, **options) as node,
        trio.open_nursery() as nursery,
    ):
        await nursery.start(
            lambda task_status: keep_leases(
                node, lambda: machine.locks.held(), task_status=task_status
            )
        )
        try:
            yield node
        finally:
            nursery.cancel_scope.cancel()


# --------------------------------------------------------------------------- client side


def parse_raft_url(url: str) -> list[tuple[int | None, tuple[str, int]]]:
    """The members named by ``raft://[ID=]HOST:PORT,...`` (or without the scheme).

    Raises:
        ValueError: a malformed entry (named), another scheme, a member id given
            twice, or no entry.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        rest = url
        if url.startswith("raft:"):
            raise ValueError(f"raft URL {url!r}: write raft://[ID=]HOST:PORT,...")
    elif scheme != "raft":
        raise ValueError(
            f"raft URL {url!r}: unknown scheme {scheme!r} (write raft://[ID=]HOST:PORT,...)"
        )
    out: list[tuple[int | None, tuple[str, int]]] = []
    for part in rest.split(","):
        part = part.strip()
        if not part:
            continue
        ident, sep, addr = part.partition("=")
        if sep:
            if not ident.isdigit():
                raise ValueError(f"raft member {part!r} must be HOST:PORT or ID=HOST:PORT")
            if any(int(ident) == known for known, _ in out):
                raise ValueError(f"raft URL {url!r} names member {int(ident)} twice")
            out.append((int(ident), parse_address(addr, dial=True)))
        else:
            out.append((None, parse_address(part, dial=True)))
    if not out:
        raise ValueError(f"lock service URL {url!r} names no member (raft://HOST:PORT,...)")
    return out


async def _probe_id(host: str, port: int) -> int:
    """A member's id, from the hello frame it sends first on every connection."""
    from ..runtime.codec import Crc32Seal, FrameDecoder
    from ..runtime.tcp import HANDSHAKE_PROTOCOL, Hello

    stream = await trio.open_tcp_stream(host, port)
    async with stream:
        decoder = FrameDecoder(HANDSHAKE_PROTOCOL, Crc32Seal())
        while (msg := decoder.next_message()) is None:
            data = await stream.receive_some(65536)
            if not data:
                raise OSError(f"{host}:{port} closed the connection before its hello")
            decoder.feed(data)
    if not isinstance(msg, Hello) or msg.protocol != "raft":
        raise OSError(f"{host}:{port} is not a raft member")
    return int(msg.node)


async def resolve_members(
    entries: list[tuple[int | None, tuple[str, int]]],
    *,
    timeout: float = 2.0,  # noqa: ASYNC109 - per member
    on_skip: Callable[[str], None] | None = None,
) -> dict[int, tuple[str, int]]:
    """Member id → address; an id not given is read from the member's handshake.

    The members whose id is not given are probed at once, each for at most
    ``timeout`` seconds, so the whole call takes at most about ``timeout``. A
    member that does not answer in time, refuses the connection or is not a Raft
    member (it sends something other than a Raft hello) is skipped, and
    ``on_skip`` is told why, naming its address. A checkpoint; cancellation
    leaves nothing open.

    Raises:
        OSError: no member could be resolved (the message names each failure).
    """
    out: dict[int, tuple[str, int]] = {}
    failures: list[str] = []
    for ident, address in entries:
        if ident is not None:
            out[ident] = address

    async def probe(host: str, port: int) -> None:
        try:
            with trio.fail_after(timeout):
                out.setdefault(await _probe_id(host, port), (host, port))
        except trio.TooSlowError:
            skip(f"{host}:{port} unreachable (no hello within {timeout:g} s)")
        except (OSError, ProtocolError) as exc:
            skip(f"{host}:{port} unreachable ({exc.__class__.__name__}: {exc})")

    def skip(reason: str) -> None:
        failures.append(reason)
        if on_skip is not None:
            on_skip(reason)

    async with trio.open_nursery() as nursery:
        for ident, (host, port) in entries:
            if ident is None:
                nursery.start_soon(probe, host, port)
    if not out:
        raise OSError("no raft member is reachable: " + "; ".join(failures))
    return out


@final
class _RaftLockChannel:
    """One lock name's transport: the core's requests become Raft submits.

    ``send_nowait`` starts a task (in the connection's nursery) that submits
    the command, with a deadline, and delivers the translated result to the
    name's driver. At most ``_MAX_INFLIGHT`` submits per connection are
    outstanding; beyond that a request is dropped (``False``) and the core's
    retry timer sends it again.
    """

    def __init__(self, conn: _Connection, name: str) -> None:
        self._conn = conn
        self._name = name
        self.driver: NodeDriver | None = None

    @property
    def node_id(self) -> int:
        return self._conn.owner

    def send_nowait(self, dst: int, msg: Any) -> bool:
        name, owner = self._name, self._conn.owner
        command: lm.LockCommand
        if isinstance(msg, AcquireRequest):
            command = lm.LockAcquire(name, owner, msg.req, msg.ttl)
        elif isinstance(msg, RenewRequest):
            command = lm.LockRenew(name, owner, msg.req, msg.token, msg.ttl)
        elif isinstance(msg, ReleaseRequest):
            command = lm.LockRelease(name, owner, msg.token)
        else:
            return False
        return self._conn.spawn(command, self._deliver)

    def _deliver(self, result: Any) -> None:
        driver = self.driver
        if driver is None or not driver.running:
            return
        if isinstance(result, lm.LockGranted):
            driver.deliver(SERVER_NODE, Granted(result.req, result.token, result.ttl))
        elif isinstance(result, lm.LockRenewed):
            driver.deliver(SERVER_NODE, Renewed(result.req, result.token, result.ttl))
        elif isinstance(result, lm.LockDenied):
            driver.deliver(SERVER_NODE, Denied(result.req, result.reason))

    async def receive(self) -> Envelope:
        raise RuntimeError("a raft lock channel pushes its results to the driver")


@final
class _Connection:
    """The submits of one ``raft://`` connection, in its nursery."""

    def __init__(
        self, client: RaftClient, owner: int, nursery: trio.Nursery, deadline: float
    ) -> None:
        self.client = client
        self.owner = owner
        self._nursery = nursery
        self._deadline = deadline
        self.inflight = 0
        #: requests dropped because ``_MAX_INFLIGHT`` submits were outstanding
        self.dropped = 0

    def spawn(self, command: lm.LockCommand, deliver: Callable[[Any], None]) -> bool:
        if self.inflight >= _MAX_INFLIGHT:
            self.dropped += 1
            return False
        self.inflight += 1
        self._nursery.start_soon(self._submit, command, deliver)
        return True

    async def _submit(self, command: lm.LockCommand, deliver: Callable[[Any], None]) -> None:
        try:
            with trio.move_on_after(self._deadline):
                deliver(await self.client.submit((lm.LOCK_TAG, command)))
        finally:
            self.inflight -= 1


@asynccontextmanager
async def open_raft_lock_service(
    url: str,
    *,
    secret: bytes | None = None,
    timeout: float = 5.0,  # noqa: ASYNC109 - the connection timeout of the client
    max_drift: float = 0.001,
    retry_interval: float = 0.5,
    retry_delay: float = 0.05,
    request_deadline: float = 5.0,
    max_locks: int = 1024,
    seed: int | None = None,
    telemetry: Telemetry | None = None,
    trace: Callable[[Transition], None] | None = None,
) -> AsyncIterator[LeaseLock]:
    """Connect to the lock service of a Raft cluster (``raft://HOST:PORT,...``).

    Entering resolves the members' ids (each member's handshake; ``ID=HOST:PORT``
    skips that) and waits until one is connected, at most ``timeout`` seconds;
    afterwards requests go to the leader, found and re-found by the Raft client.
    A checkpoint; if cancelled on entry, nothing is left running.

    On exit the connection proposes :class:`~trio_foundation.protocols.
    lock_machine.LockClose` for its client id and waits for it (shielded, at
    most ``timeout`` seconds): every lock it still holds is released and every
    acquire of it still in flight in the cluster will be refused. If the
    cluster cannot be reached in that time, its leases expire after their ttl.

    Args:
        url: ``raft://[ID=]HOST:PORT,...``: some or all members.
        secret: the cluster's shared secret (``foundation kv serve --secret-file``).
        timeout: seconds to reach the cluster on entry, and to close on exit.
        max_drift: the bound on clock drift the lease's safety assumes.
        retry_interval: seconds before an unanswered request is re-sent as a new one.
        retry_delay: first backoff after a refusal (doubles, jittered).
        request_deadline: seconds one request is retried by the Raft client
            before it is given up (the core's retry sends a new one meanwhile).
        max_locks: bound on the lock names this connection uses.
        seed: seed of the backoff jitter and the client id (tests).
        telemetry: where the client emits its ``lease_lock.*`` events.
        trace: the trace hook of every lock name's driver.

    Raises:
        ValueError: a malformed URL or parameter.
        ConnectionError: no member reachable within ``timeout``.
    """
    entries = parse_raft_url(url)
    if not (isinstance(timeout, int | float) and math.isfinite(timeout) and timeout > 0):
        raise ValueError(f"timeout must be > 0 seconds, got {timeout!r}")
    if not retry_delay > 0:
        raise ValueError(f"retry_delay must be > 0, got {retry_delay!r}")
    if not request_deadline > 0:
        raise ValueError(f"request_deadline must be > 0, got {request_deadline!r}")
    rng = random.Random(seed) if seed is not None else random.Random()
    owner = rng.randrange(1, 2**63) if seed is not None else secrets.randbelow(2**63 - 1) + 1
    try:
        members = await resolve_members(entries, timeout=timeout)
    except OSError as exc:
        raise ConnectionError(f"lock service {url}: {exc}") from None
    handles: dict[str, LockHandle] = {}
    # The client's transport runs shielded in a task of its own, so that the
    # closing LockClose still reaches the cluster when the connection is torn
    # down by a cancellation; it is stopped (with a deadline) once that is done.
    client_scope = trio.CancelScope(shield=True)
    own_error: BaseException | None = None  # the body's, or this function's own
    try:
        async with trio.open_nursery() as keeper:
            # Not keeper.start(): when the caller is cancelled while a task is
            # starting, trio leaves the task in start()'s own nursery and start()
            # waits for it to exit, which this shielded task never does by itself
            # (it hung a cancelled connect forever). start_soon plus an Event keeps
            # the wait cancellable, and the finally below cancels client_scope.
            opened: list[RaftClient] = []
            ready = trio.Event()

            async def run_client() -> None:
                nonlocal own_error
                with client_scope:
                    try:
                        async with open_raft_client(
                            members, codec=SERVICE_CODEC, secret=secret
                        ) as started:
                            opened.append(started)
                            ready.set()
                            await trio.sleep_forever()
                    except OSError as exc:
                        if ready.is_set():
                            raise
                        # the documented error of a connection that cannot open
                        own_error = ConnectionError(f"lock service {url}: {exc}")
                        raise own_error from exc
                    except Exception as exc:
                        if not ready.is_set():
                            own_error = exc  # raised by itself, not in a group
                        raise

            keeper.start_soon(run_client)
            try:
                await ready.wait()
                client: RaftClient = opened[0]
                with trio.move_on_after(timeout) as waiting:
                    await client.wait_connected()
                if waiting.cancelled_caught:
                    own_error = ConnectionError(
                        f"lock service {url}: no connection to any member within {timeout:g} s"
                    )
                    raise own_error
                try:
                    async with trio.open_nursery() as nursery:
                        conn = _Connection(client, owner, nursery, request_deadline)

                        def open_lock(name: str) -> LockHandle:
                            core = LockClient(
                                owner,
                                server=SERVER_NODE,
                                max_drift=max_drift,
                                retry_interval=retry_interval,
                            )
                            channel = _RaftLockChannel(conn, name)
                            driver = NodeDriver(
                                core, channel, persist=_ignore, pull=False, rng=rng, trace=trace
                            )
                            channel.driver = driver
                            driver.start_in(nursery)
                            handle = handles[name] = LockHandle(core, driver)
                            return handle

                        try:
                            yield LeaseLock(
                                node_id=owner,
                                open_lock=open_lock,
                                retry_delay=retry_delay,
                                rng=rng,
                                max_locks=max_locks,
                                telemetry=telemetry,
                            )
                        except BaseException as exc:
                            own_error = exc
                            raise
                        finally:
                            nursery.cancel_scope.cancel()
                finally:
                    closing = trio.current_time() + timeout
                    client_scope.deadline = closing
                    if handles:
                        with trio.CancelScope(shield=True, deadline=closing):
                            await client.submit((lm.LOCK_TAG, lm.LockClose(owner)))
            finally:
                client_scope.cancel()
    except BaseExceptionGroup as group:
        # Our own exception comes back wrapped by the nurseries: unwrap it.
        if own_error is None or _carried(group) != _carried(own_error):
            raise
    else:
        return
    raise own_error


def _carried(exc: BaseException) -> set[int]:
    """The ids of the exceptions other than ``Cancelled`` that ``exc`` carries."""
    if isinstance(exc, BaseExceptionGroup):
        return set().union(*(_carried(e) for e in exc.exceptions))
    return set() if isinstance(exc, trio.Cancelled) else {id(exc)}


def _ignore(data: Any) -> None:
    """A client keeps no durable state: its id is fresh per connection."""
