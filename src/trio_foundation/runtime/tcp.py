"""A TCP transport on Trio streams: framed, schema'd, authenticated, bounded.

Theory of operation
-------------------

``async with open_tcp_transport(protocol, node_id, ...) as transport:`` runs,
in a nursery scoped to the ``async with`` block, an optional listener and one
dialer task per configured peer. Every connection starts with a handshake
(:class:`Hello` both ways: protocol name and version, node id, a fresh nonce,
whether the side authenticates); with a shared secret both sides then exchange
HMAC-SHA256 proofs and every later frame carries a per-direction, sequence-numbered
MAC (:mod:`trio_foundation.runtime.auth`); without one, frames carry a CRC-32.

* **Sending** — :meth:`TcpTransport.send_nowait` encodes the message at once
  (a wrong type or an oversized message is the caller's error, raised there)
  and appends it to the destination's *send queue*, which is bounded in
  messages and in bytes; when full, the **oldest** queued message is dropped
  and counted (``send_queue_overflows``): a slow or absent peer costs a bounded
  amount of memory, and what survives is the freshest. One writer task per
  connection drains the queue in order; a message sent while that writer is
  parked with nothing to send is written at once by ``send_nowait`` itself
  (non-blocking; the writer sends whatever the socket did not take, first).
* **Receiving** — one reader task per connection decodes frames and puts
  :class:`~trio_foundation.runtime.transport.Envelope` values in one bounded
  inbox (or hands each to an ``on_message`` handler); when the inbox is full,
  readers wait, which stops reading from the sockets (TCP backpressure)
  instead of growing memory.
* **Routes** — a *dialed* peer (``peers=`` or :meth:`TcpTransport.add_peer`) has a
  permanent queue and a dialer that reconnects forever with jittered
  exponential backoff; messages queued while it is down are sent after the
  next handshake. A peer that *dialed us* is routable while its connection
  lives, and its queue is discarded when it disconnects (counted in
  ``discarded``). A newer accepted connection from a node id replaces the
  older one, which stops reading first, so a node's messages stay in order
  across its reconnections.
* **Dead peers** — TCP keepalive and ``TCP_USER_TIMEOUT`` declare a silent
  connection lost after ``dead_peer_timeout``.
* **Misbehaving peers** — a frame above the size limit, a bad check, bytes that
  do not decode, an undeclared message type, a failed handshake or
  authentication, or a handshake not finished within ``handshake_timeout``:
  that connection alone is dropped, with one log line (logger
  ``trio_foundation.runtime.tcp``) naming the reason, and ``drops[reason]`` is
  incremented. Every other connection and the listener carry on.

Delivery: per connection, in order and at most once. Across a reconnect, a
message still in the queue is delivered; one already handed to the socket may
be lost; none is sent twice by the transport.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import math
import os
import random
import secrets
import socket
from collections import Counter, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from types import MappingProxyType
from typing import Any, Final, Literal, final

import attrs
import trio

from .auth import MacSeal, check_secret, proof, session_keys
from .codec import (
    Crc32Seal,
    DropReason,
    FrameDecoder,
    FrameSeal,
    RemoteProtocolError,
    WireMessage,
    WireProtocol,
    encode_frame,
)
from .transport import Envelope

__all__ = [
    "HANDSHAKE_PROTOCOL",
    "Hello",
    "Proof",
    "TcpTransport",
    "TransportStatistics",
    "open_tcp_transport",
    "parse_address",
]

logger = logging.getLogger("trio_foundation.runtime.tcp")

MAX_NODE_ID: Final = (1 << 63) - 1
_READ_SIZE: Final = 65536


class Hello(WireMessage, tag="hello", frozen=True):
    """First frame each side sends: who it is and what it speaks.

    Attributes:
        protocol: the application protocol's name.
        version: its version.
        node: the sender's node id.
        nonce: 16 fresh random bytes (binds the authentication to this connection).
        auth: whether the sender authenticates (holds a secret).
    """

    protocol: str
    version: int
    node: int
    nonce: bytes
    auth: bool


class Proof(WireMessage, tag="proof", frozen=True):
    """Second frame when authenticating: ``mac`` is :func:`~trio_foundation.runtime.auth.proof`."""

    mac: bytes


HANDSHAKE_PROTOCOL: Final = WireProtocol(
    "trio-foundation-handshake", 1, [Hello, Proof], max_frame=1024
)
"""The protocol of the handshake frames, shared by every application protocol."""


@final
@attrs.frozen
class TransportStatistics:
    """A snapshot of a :class:`TcpTransport`'s counters (see :meth:`TcpTransport.statistics`).

    Attributes:
        node_id: this node's id.
        listen_address: ``(host, port)`` the listener is bound to, or ``None``.
        connections_open: connections past their handshake right now.
        connections_accepted: handshakes completed on accepted connections.
        connections_dialed: handshakes completed on connections this node dialed.
        connections_lost: established connections that ended (EOF, reset, replaced).
        dial_failures: connection attempts that failed before a handshake.
        drops: connections dropped for a peer's misbehaviour, by reason
            (:data:`~trio_foundation.runtime.codec.DropReason`).
        frames_sent: frames written to sockets.
        frames_received: messages decoded and delivered to the inbox.
        send_queue_overflows: queued messages dropped (oldest first) because a
            send queue was full.
        discarded: queued messages dropped because their route went away.
        unroutable: :meth:`TcpTransport.send_nowait` calls to an unknown node.
        queued: messages waiting in send queues right now.
    """

    node_id: int
    listen_address: tuple[str, int] | None
    connections_open: int
    connections_accepted: int
    connections_dialed: int
    connections_lost: int
    dial_failures: int
    drops: Mapping[str, int]
    frames_sent: int
    frames_received: int
    send_queue_overflows: int
    discarded: int
    unroutable: int
    queued: int


@attrs.define(eq=False)
class _Conn:
    peer: int
    address: str
    scope: trio.CancelScope
    send_seal: FrameSeal
    fd: int = -1  # the socket's descriptor, set by the writer when it starts
    # Invariant: idle only while the writer is parked with an empty queue and no
    # tail, on a socket that is open (it is closed after the writer has exited).
    idle: bool = False
    tail: bytes = b""


@attrs.define(eq=False)
class _Peer:
    node: int
    address: tuple[str, int] | None  # None: reachable only while it is connected to us
    queue: deque[bytes] = attrs.field(factory=deque)
    queued_bytes: int = 0
    conn: _Conn | None = None
    wakeup: trio.Event = attrs.field(factory=trio.Event)
    connected: trio.Event = attrs.field(factory=trio.Event)
    dialer_scope: trio.CancelScope | None = None


def _check_node_id(node: object, what: str) -> int:
    if not isinstance(node, int) or isinstance(node, bool):
        raise TypeError(f"{what} must be an int, got {type(node).__name__}")
    if not 0 <= node <= MAX_NODE_ID:
        raise ValueError(f"{what} must be in [0, 2**63), got {node}")
    return node


def _positive(name: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and value > 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")


@final
class TcpTransport:
    """Framed, schema'd messaging between numbered nodes over TCP.

    Build it with :func:`open_tcp_transport`; the constructor spawns nothing.
    Implements :class:`~trio_foundation.runtime.transport.Transport`.
    """

    def __init__(
        self,
        protocol: WireProtocol,
        node_id: int,
        *,
        secret: bytes | None,
        send_queue: int,
        send_queue_bytes: int,
        inbox: int,
        max_connections: int,
        handshake_timeout: float,
        connect_timeout: float,
        backoff_initial: float,
        backoff_max: float,
        dead_peer_timeout: float | None,
        on_message: Callable[[Envelope], None] | None,
        rng: random.Random,
    ) -> None:
        self.protocol = protocol
        self._on_message = on_message
        self._dead_peer_timeout = dead_peer_timeout
        self._node_id = node_id
        self._secret = secret
        self._send_queue = send_queue
        self._send_queue_bytes = send_queue_bytes
        self._max_connections = max_connections
        self._handshake_timeout = handshake_timeout
        self._connect_timeout = connect_timeout
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._rng = rng
        self._inbox_send, self._inbox = trio.open_memory_channel[Envelope](inbox)
        self._peers: dict[int, _Peer] = {}
        self._inbound: dict[int, _Conn] = {}  # the newest accepted connection per node
        self._nursery: trio.Nursery | None = None
        self._accepted_streams = 0
        self.listen_address: tuple[str, int] | None = None
        self._counts: Counter[str] = Counter()
        self._drops: Counter[str] = Counter()
        self._open = 0

    # ------------------------------------------------------------------ public API

    @property
    def node_id(self) -> int:
        """This node's id."""
        return self._node_id

    @property
    def authenticated(self) -> bool:
        """Whether peers must prove they hold the shared secret."""
        return self._secret is not None

    def statistics(self) -> TransportStatistics:
        """A frozen snapshot of the counters."""
        c = self._counts
        return TransportStatistics(
            node_id=self._node_id,
            listen_address=self.listen_address,
            connections_open=self._open,
            connections_accepted=c["accepted"],
            connections_dialed=c["dialed"],
            connections_lost=c["lost"],
            dial_failures=c["dial_failures"],
            drops=MappingProxyType(dict(self._drops)),
            frames_sent=c["frames_sent"],
            frames_received=c["frames_received"],
            send_queue_overflows=c["overflows"],
            discarded=c["discarded"],
            unroutable=c["unroutable"],
            queued=sum(len(p.queue) for p in self._peers.values()),
        )

    def is_connected(self, node: int) -> bool:
        """Whether a connection to ``node`` that this node can send on is established."""
        peer = self._peers.get(node)
        return peer is not None and peer.conn is not None

    async def wait_connected(self, node: int) -> None:
        """Wait until a connection to ``node`` is established (or return at once).

        A checkpoint; cancelling it changes nothing.

        Waits forever if ``node`` is removed meanwhile: put a deadline on it.

        Raises:
            KeyError: ``node`` is neither a dialed peer nor connected (a node that
                only dials us cannot be waited for before it first connects).
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        peer = self._peers.get(node)
        if peer is None:
            raise KeyError(f"node {node} is not a peer of node {self._node_id}")
        await peer.connected.wait()

    def add_peer(self, node: int, host: str, port: int) -> None:
        """Dial ``node`` at ``host:port`` and keep a connection to it until removed.

        Not a checkpoint: the dialer runs in the transport's nursery.

        Raises:
            TypeError, ValueError: a bad node id or port.
            RuntimeError: the transport is not running, ``node`` is this node, or
                it is already a dialed peer.
        """
        _check_node_id(node, "node id")
        if not isinstance(port, int) or not 0 < port < 65536:
            raise ValueError(f"port must be in 1..65535, got {port!r}")
        if self._nursery is None:
            raise RuntimeError("the transport is not running (use open_tcp_transport)")
        if node == self._node_id:
            raise RuntimeError(f"node {node} cannot dial itself")
        existing = self._peers.get(node)
        if existing is not None and existing.address is not None:
            raise RuntimeError(f"node {node} is already a dialed peer at {existing.address}")
        if existing is not None:  # it dialed us first: keep its queue, dial it from now on
            peer = existing
            peer.address = (host, port)
        else:
            peer = self._peers[node] = _Peer(node, (host, port))
        peer.dialer_scope = trio.CancelScope()
        self._nursery.start_soon(self._dial_forever, peer, peer.dialer_scope)

    def remove_peer(self, node: int) -> None:
        """Stop dialing ``node``, close its connection and discard its queue.

        Not a checkpoint. Does nothing if ``node`` is unknown.
        """
        peer = self._peers.pop(node, None)
        if peer is None:
            return
        if peer.dialer_scope is not None:
            peer.dialer_scope.cancel()
        if peer.conn is not None:
            peer.conn.scope.cancel()
        self._counts["discarded"] += len(peer.queue)
        peer.queue.clear()

    def queued_bytes(self, dst: int) -> int:
        """Payload bytes queued for node ``dst`` and not yet taken by its writer
        (0 for an unknown node). Not a checkpoint. A sender that must not lose
        messages to the queue's overflow (``send_queue_bytes``) keeps this low."""
        peer = self._peers.get(dst)
        return 0 if peer is None else peer.queued_bytes

    def send_nowait(self, dst: int, msg: Any) -> bool:
        """Queue ``msg`` for node ``dst``; never blocks, never a checkpoint.

        Returns ``False`` (and counts ``unroutable``) if ``dst`` is neither a
        dialed peer nor connected. A full queue drops its oldest messages to
        make room (counted in ``send_queue_overflows``).

        Raises:
            TypeError: ``msg`` is not a message type of the protocol.
            ValueError: ``msg`` encodes above the frame size limit.
        """
        payload = self.protocol.encode(msg)
        peer = self._peers.get(dst)
        if peer is None:
            self._counts["unroutable"] += 1
            return False
        peer.queue.append(payload)
        peer.queued_bytes += len(payload)
        while len(peer.queue) > self._send_queue or (
            peer.queued_bytes > self._send_queue_bytes and len(peer.queue) > 1
        ):
            peer.queued_bytes -= len(peer.queue.popleft())
            self._counts["overflows"] += 1
        conn = peer.conn
        if conn is not None and conn.idle and len(peer.queue) == 1:
            # Fast path: the connection's writer is parked with nothing to send, so
            # nothing is in flight on the socket: write this frame now, without
            # waiting for the writer task to be scheduled (a non-blocking write on
            # the socket, which trio also uses non-blocking). Whatever the socket
            # does not take becomes the writer's tail, sent before anything else;
            # the rest of a burst is batched by the writer.
            peer.queue.popleft()
            peer.queued_bytes -= len(payload)
            frame = encode_frame(payload, conn.send_seal)
            try:
                written = os.write(conn.fd, frame)
            except OSError:  # full or broken: the writer's send_all waits or reports it
                written = 0
            if written == len(frame):
                self._counts["frames_sent"] += 1
            else:
                conn.tail = frame[written:]
            conn.idle = False
        peer.wakeup.set()
        return True

    async def receive(self) -> Envelope:
        """The next message from any peer, in arrival order.

        A checkpoint. Cancelling it loses no message.

        Raises:
            trio.EndOfChannel: the transport has shut down.
            RuntimeError: messages go to an ``on_message`` handler instead.
        """
        self._check_no_handler()
        return await self._inbox.receive()

    def receive_nowait(self) -> Envelope:
        """The next message if one is waiting.

        Raises:
            trio.WouldBlock: none is waiting.
            RuntimeError: messages go to an ``on_message`` handler instead.
        """
        self._check_no_handler()
        return self._inbox.receive_nowait()

    def _check_no_handler(self) -> None:
        if self._on_message is not None:
            raise RuntimeError(
                f"node {self._node_id} delivers messages to its on_message handler, not receive()"
            )

    # ------------------------------------------------------------------ listener

    async def _serve(
        self, host: str, port: int, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        assert self._nursery is not None
        listeners = await trio.open_tcp_listeners(port, host=host)
        if port == 0 and len(listeners) > 1:
            # each address family got its own free port: keep the one we report
            for extra in listeners[1:]:
                await extra.aclose()
            listeners = listeners[:1]
        sockname = listeners[0].socket.getsockname()
        self.listen_address = (sockname[0], sockname[1])
        if self._secret is None and not _is_loopback(sockname[0]):
            logger.warning(
                "node %d listens on %s:%d without authentication: anyone who can reach"
                " this address can send it messages (give it a secret file)",
                self._node_id,
                sockname[0],
                sockname[1],
            )
        async with trio.open_nursery() as handlers:
            await handlers.start(trio.serve_listeners, self._on_accept, listeners)
            task_status.started()

    async def _on_accept(self, stream: trio.SocketStream) -> None:
        address = _peername(stream)
        if self._accepted_streams >= self._max_connections:
            self._drop(  # counted before the peer can see the close
                "too-many-connections",
                f"{address}: {self._accepted_streams} accepted connections already open",
            )
            await trio.aclose_forcefully(stream)
            return
        self._accepted_streams += 1
        try:
            await self._run_connection(stream, "listener", address, dialed=None)
        finally:
            self._accepted_streams -= 1

    # ------------------------------------------------------------------ dialer

    def _backoff(self, attempt: int) -> float:
        delay = min(self._backoff_max, self._backoff_initial * 2.0 ** min(attempt, 60))
        return delay * self._rng.uniform(0.5, 1.0)

    async def _dial_forever(self, peer: _Peer, scope: trio.CancelScope) -> None:
        assert peer.address is not None
        host, port = peer.address
        attempt = 0
        with scope:
            while True:
                stream: trio.SocketStream | None = None
                with trio.move_on_after(self._connect_timeout):
                    try:
                        stream = await trio.open_tcp_stream(host, port)
                    except OSError as exc:
                        logger.debug(
                            "node %d: dialing %s:%d failed: %s", self._node_id, host, port, exc
                        )
                if stream is None:
                    self._counts["dial_failures"] += 1
                else:
                    established = await self._run_connection(
                        stream, "dialer", f"{host}:{port}", dialed=peer
                    )
                    if established:
                        attempt = 0
                await trio.sleep(self._backoff(attempt))
                attempt += 1

    # ------------------------------------------------------------------ connections

    def _drop(self, reason: DropReason, detail: str) -> None:
        self._drops[reason] += 1
        level = logging.DEBUG if detail.endswith(_SILENT_CLOSE) else logging.WARNING
        logger.log(level, "node %d dropped a connection: %s: %s", self._node_id, reason, detail)

    async def _run_connection(
        self,
        stream: trio.SocketStream,
        role: Literal["dialer", "listener"],
        address: str,
        *,
        dialed: _Peer | None,
    ) -> bool:
        """Handshake, then read and write until the connection ends; returns whether the
        handshake completed. Closes ``stream``."""
        established = False
        try:
            _set_dead_peer_timeout(stream, self._dead_peer_timeout)
            with trio.move_on_after(self._handshake_timeout) as hs_scope:
                result = await self._handshake(
                    stream, role, None if dialed is None else dialed.node
                )
            if hs_scope.cancelled_caught:
                raise RemoteProtocolError(
                    "timeout", f"handshake not finished within {self._handshake_timeout} s"
                )
            peer_id, send_seal, decoder = result
            established = True
            await self._established(stream, address, peer_id, send_seal, decoder, dialed)
        except RemoteProtocolError as exc:
            self._drop(exc.reason, f"{role} connection with {address}: {exc.detail}")
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            if established:
                self._counts["lost"] += 1
            logger.debug("node %d: connection with %s ended: %r", self._node_id, address, exc)
        finally:
            await trio.aclose_forcefully(stream)
        return established

    async def _handshake(
        self, stream: trio.SocketStream, role: Literal["dialer", "listener"], expected: int | None
    ) -> tuple[int, FrameSeal, FrameDecoder]:
        hello = Hello(
            self.protocol.name,
            self.protocol.version,
            self._node_id,
            secrets.token_bytes(16),
            self._secret is not None,
        )
        hello_bytes = HANDSHAKE_PROTOCOL.encode(hello)
        await stream.send_all(encode_frame(hello_bytes, Crc32Seal()))
        hs = FrameDecoder(HANDSHAKE_PROTOCOL, Crc32Seal())
        theirs_bytes = await _read_frame(stream, hs, first=True)
        theirs = HANDSHAKE_PROTOCOL.decode(theirs_bytes)
        if not isinstance(theirs, Hello):
            raise RemoteProtocolError(
                "handshake-failed", f"expected hello, got {type(theirs).__name__}"
            )
        if (theirs.protocol, theirs.version) != (self.protocol.name, self.protocol.version):
            raise RemoteProtocolError(
                "handshake-failed",
                f"peer speaks {theirs.protocol!r} v{theirs.version},"
                f" this node speaks {self.protocol.name!r} v{self.protocol.version}",
            )
        if len(theirs.nonce) != 16:
            raise RemoteProtocolError(
                "handshake-failed", f"hello nonce of {len(theirs.nonce)} bytes, expected 16"
            )
        if not 0 <= theirs.node <= MAX_NODE_ID or theirs.node == self._node_id:
            raise RemoteProtocolError("peer-mismatch", f"peer claims node id {theirs.node}")
        if expected is not None and theirs.node != expected:
            raise RemoteProtocolError(
                "peer-mismatch", f"dialed node {expected}, the peer is node {theirs.node}"
            )
        if theirs.auth != (self._secret is not None):
            raise RemoteProtocolError(
                "auth-failed",
                "peer authenticates and this node has no secret"
                if theirs.auth
                else "peer does not authenticate and this node requires it",
            )
        send_seal: FrameSeal
        recv_seal: FrameSeal
        if self._secret is None:
            send_seal, recv_seal = Crc32Seal(), Crc32Seal()
        else:
            dialer_hello, listener_hello = (
                (hello_bytes, theirs_bytes) if role == "dialer" else (theirs_bytes, hello_bytes)
            )
            # The dialer proves itself first; the listener answers only a correct
            # proof, so a stranger who connects obtains no proof of the listener's
            # to attack the secret offline with.
            mine = Proof(proof(self._secret, role, dialer_hello, listener_hello))
            other_role: Literal["dialer", "listener"] = "listener" if role == "dialer" else "dialer"
            want = proof(self._secret, other_role, dialer_hello, listener_hello)
            if role == "dialer":
                await stream.send_all(encode_frame(HANDSHAKE_PROTOCOL.encode(mine), Crc32Seal()))
                try:
                    answer = HANDSHAKE_PROTOCOL.decode(await _read_frame(stream, hs))
                except (RemoteProtocolError, trio.BrokenResourceError) as exc:
                    if isinstance(exc, RemoteProtocolError) and exc.reason != "handshake-failed":
                        raise
                    raise RemoteProtocolError(
                        "auth-failed",
                        f"node {theirs.node} closed the connection on our proof"
                        " (do the secrets differ?)",
                    ) from None
            else:
                answer = HANDSHAKE_PROTOCOL.decode(await _read_frame(stream, hs))
            if not isinstance(answer, Proof) or not hmac.compare_digest(answer.mac, want):
                raise RemoteProtocolError("auth-failed", f"node {theirs.node} sent a wrong proof")
            if role == "listener":
                await stream.send_all(encode_frame(HANDSHAKE_PROTOCOL.encode(mine), Crc32Seal()))
            d2l, l2d = session_keys(self._secret, dialer_hello, listener_hello)
            send_key, recv_key = (d2l, l2d) if role == "dialer" else (l2d, d2l)
            send_seal, recv_seal = MacSeal(send_key), MacSeal(recv_key)
        decoder = FrameDecoder(self.protocol, recv_seal)
        decoder.feed(hs.take_buffer())
        return theirs.node, send_seal, decoder

    async def _established(
        self,
        stream: trio.SocketStream,
        address: str,
        peer_id: int,
        send_seal: FrameSeal,
        decoder: FrameDecoder,
        dialed: _Peer | None,
    ) -> None:
        # Which connection carries this node's messages to the peer: to a peer we
        # dial, the dialed connection; to one that dialed us, its newest one.
        scope = trio.CancelScope()
        conn = _Conn(peer_id, address, scope, send_seal)
        peer = dialed if dialed is not None else self._peers.get(peer_id)
        writes = True
        if dialed is None:
            # A newer connection from a node replaces (and stops reading) the older
            # one before it delivers anything, so a node's messages stay in order
            # across its reconnections.
            older = self._inbound.get(peer_id)
            if older is not None:
                logger.info(
                    "node %d: node %d reconnected; replacing its older connection",
                    self._node_id,
                    peer_id,
                )
                older.scope.cancel()
            self._inbound[peer_id] = conn
            if peer is None:
                peer = self._peers[peer_id] = _Peer(peer_id, None)
            elif peer.address is not None:
                writes = False  # we dial this peer and send on that connection
        self._counts["accepted" if dialed is None else "dialed"] += 1
        self._open += 1
        # The first failure of the reader or the writer ends the connection; it is
        # re-raised bare (not in an ExceptionGroup) for _run_connection to classify.
        failure_box: list[RemoteProtocolError | trio.BrokenResourceError | OSError] = []

        async def guarded(
            nursery: trio.Nursery, last: bool, fn: Callable[..., Awaitable[None]], *args: Any
        ) -> None:
            try:
                await fn(*args)
            except (RemoteProtocolError, trio.BrokenResourceError, OSError) as exc:
                failure_box.append(exc)
                nursery.cancel_scope.cancel()
            else:
                if last:
                    nursery.cancel_scope.cancel()

        try:
            with scope:
                async with trio.open_nursery() as nursery:
                    if writes:
                        assert peer is not None
                        peer.conn = conn
                        peer.connected.set()
                        peer.wakeup.set()  # an older writer notices it is replaced
                        nursery.start_soon(
                            guarded, nursery, False, self._writer, stream, peer, conn
                        )
                    await guarded(nursery, True, self._reader, stream, peer_id, decoder)
            if failure_box:
                raise failure_box[0]
            if scope.cancelled_caught:
                self._counts["lost"] += 1  # replaced or removed
        finally:
            self._open -= 1
            if self._inbound.get(peer_id) is conn:
                del self._inbound[peer_id]
            if writes and peer is not None and peer.conn is conn:
                peer.conn = None
                peer.connected = trio.Event()
                if peer.address is None and self._peers.get(peer_id) is peer:
                    del self._peers[peer_id]
                    self._counts["discarded"] += len(peer.queue)
                    peer.queue.clear()

    async def _reader(self, stream: trio.SocketStream, peer_id: int, decoder: FrameDecoder) -> None:
        while True:
            handler = self._on_message
            while (msg := decoder.next_message()) is not None:
                envelope = Envelope(peer_id, msg)
                self._counts["frames_received"] += 1
                if handler is not None:
                    handler(envelope)  # synchronous: the next frame waits for it
                    continue
                try:  # deliver a whole read at once; wait only when the inbox is full
                    self._inbox_send.send_nowait(envelope)
                except trio.WouldBlock:
                    await self._inbox_send.send(envelope)
            data = await stream.receive_some(_READ_SIZE)
            if not data:
                if decoder.buffered:
                    raise RemoteProtocolError(
                        "undecodable",
                        f"connection closed inside a frame ({decoder.buffered} bytes)",
                    )
                self._counts["lost"] += 1
                return
            decoder.feed(data)

    async def _writer(self, stream: trio.SocketStream, peer: _Peer, conn: _Conn) -> None:
        conn.fd = stream.socket.fileno()
        while peer.conn is conn:
            if conn.tail:  # the unsent end of a frame the fast path began
                tail, conn.tail = conn.tail, b""
                await stream.send_all(tail)
                self._counts["frames_sent"] += 1
                continue
            if not peer.queue:
                peer.wakeup = trio.Event()
                conn.idle = True
                try:
                    await peer.wakeup.wait()
                finally:
                    conn.idle = False
                continue
            frames = []
            while peer.queue:
                payload = peer.queue.popleft()
                peer.queued_bytes -= len(payload)
                frames.append(encode_frame(payload, conn.send_seal))
            await stream.send_all(b"".join(frames))
            self._counts["frames_sent"] += len(frames)


# The detail of a drop whose peer closed before sending a single byte: a probe (the
# clients' member-id probe reads the hello and hangs up; a port check). Counted like
# any drop, but logged at debug level, so that every client command does not leave
# a warning in every member's log.
_SILENT_CLOSE = "connection closed before the peer sent anything"


async def _read_frame(
    stream: trio.SocketStream, decoder: FrameDecoder, *, first: bool = False
) -> bytes:
    received = False
    while (frame := decoder.next_frame()) is None:
        data = await stream.receive_some(_READ_SIZE)
        if not data:
            silent = first and not received
            detail = _SILENT_CLOSE if silent else "connection closed during the handshake"
            raise RemoteProtocolError("handshake-failed", detail)
        received = True
        decoder.feed(data)
    return frame


def parse_address(text: str, *, scheme: str | None = None, dial: bool = False) -> tuple[str, int]:
    """``(host, port)`` from ``HOST:PORT``, ``[IPV6]:PORT`` or, with ``scheme="tcp"``,
    ``tcp://HOST:PORT`` (the form ``--listen`` and ``--server`` options take).

    Port 0 is accepted for an address to listen on (bind a free port); with
    ``dial=True`` (an address to connect to, or a peer that others connect to) it
    is refused.

    Raises:
        ValueError: the text is not of that form; the message names it.
    """
    if not isinstance(text, str):
        raise TypeError(f"address must be a str, got {type(text).__name__}")
    rest = text
    if scheme is not None:
        prefix = f"{scheme}://"
        if not text.startswith(prefix):
            raise ValueError(f"address {text!r} must start with {prefix}")
        rest = text[len(prefix) :]
    if rest.startswith("["):
        host, sep, port_text = rest[1:].partition("]:")
    else:
        host, sep, port_text = rest.rpartition(":")
        if ":" in host:
            raise ValueError(f"address {text!r}: write an IPv6 host in brackets, [::1]:PORT")
    if not sep or not host:
        raise ValueError(f"address {text!r} must be HOST:PORT")
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"address {text!r}: port must be a number in 0..65535")
    if dial and int(port_text) == 0:
        raise ValueError(
            f"address {text!r}: port 0 means 'any free port' to a listener;"
            " an address to connect to needs the real port"
        )
    return host, int(port_text)


def _set_dead_peer_timeout(stream: trio.SocketStream, timeout: float | None) -> None:
    # TCP keepalive probes an idle connection, and TCP_USER_TIMEOUT bounds how long
    # written data may stay unacknowledged, so a peer whose machine died or is cut off
    # is detected (and redialed) within about `timeout` s instead of the kernel's
    # default of many minutes. Linux names; skipped where absent.
    if timeout is None:
        return
    sock = stream.socket
    options = [
        (socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1),
        (socket.IPPROTO_TCP, getattr(socket, "TCP_KEEPIDLE", None), max(1, int(timeout / 3))),
        (socket.IPPROTO_TCP, getattr(socket, "TCP_KEEPINTVL", None), max(1, int(timeout / 6))),
        (socket.IPPROTO_TCP, getattr(socket, "TCP_KEEPCNT", None), 3),
        (socket.IPPROTO_TCP, getattr(socket, "TCP_USER_TIMEOUT", None), int(timeout * 1000)),
    ]
    for level, option, value in options:
        if option is not None:
            sock.setsockopt(level, option, value)


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def _peername(stream: trio.SocketStream) -> str:
    try:
        name = stream.socket.getpeername()
    except OSError:
        return "<unknown>"
    return f"{name[0]}:{name[1]}"


@asynccontextmanager
async def open_tcp_transport(
    protocol: WireProtocol,
    node_id: int,
    *,
    listen: tuple[str, int] | None = None,
    peers: Mapping[int, tuple[str, int]] | None = None,
    secret: bytes | None = None,
    send_queue: int = 1024,
    send_queue_bytes: int = 8 << 20,
    inbox: int = 1024,
    max_connections: int = 1024,
    handshake_timeout: float = 5.0,
    connect_timeout: float = 5.0,
    backoff_initial: float = 0.05,
    backoff_max: float = 5.0,
    dead_peer_timeout: float | None = 15.0,
    on_message: Callable[[Envelope], None] | None = None,
    rng: random.Random | None = None,
) -> AsyncIterator[TcpTransport]:
    """Run a TCP transport for the body of an ``async with``.

    On entry the listener (if any) is bound and accepting; dialers start
    connecting in the background (use :meth:`TcpTransport.wait_connected`). On
    exit every task is cancelled and every socket closed; queued messages are
    discarded. Entering is a checkpoint; if cancelled there, nothing is left
    running.

    Args:
        protocol: the application protocol (name and version are checked in
            the handshake; ``protocol.max_frame`` bounds every frame).
        node_id: this node's id, in ``[0, 2**63)``.
        listen: ``(host, port)`` to accept connections on (port 0: a free port;
            read it from :attr:`TcpTransport.listen_address`; if the host
            resolves to several addresses, only the first is served then);
            ``None``: dial only.
        peers: node id → ``(host, port)`` of the peers to dial and keep connected.
        secret: the shared secret (>= 16 bytes; see
            :func:`~trio_foundation.runtime.auth.load_secret_file`); ``None``
            turns authentication off, and a listener on a non-loopback address
            then logs a warning.
        send_queue: the most messages queued per peer (oldest dropped beyond).
        send_queue_bytes: the most payload bytes queued per peer (oldest dropped
            beyond, the newest message is always kept).
        inbox: received messages buffered before readers stop reading.
        max_connections: the most accepted connections open at once; more are
            closed at once (drop reason ``"too-many-connections"``).
        handshake_timeout: seconds a connection may take to finish its handshake.
        connect_timeout: seconds a dial may take.
        backoff_initial: first reconnect delay in seconds (doubles per failed
            attempt up to ``backoff_max``; each delay is jittered to 50-100 %).
        backoff_max: the longest reconnect delay in seconds.
        dead_peer_timeout: seconds after which a connection whose peer stopped
            answering (machine dead, network cut: no FIN or RST ever comes) is
            declared lost and redialed, through TCP keepalive and
            ``TCP_USER_TIMEOUT`` (Linux); ``None`` leaves the kernel's defaults
            (many minutes).
        on_message: if given, every received message is handed to this
            synchronous function by the connection's reader as soon as it is
            decoded, instead of going to the inbox (:meth:`TcpTransport.receive`
            then raises ``RuntimeError``). It must not block; the next frame of
            that connection waits for it to return, which is the backpressure.
            A node driver stepping a sans-IO core can run the core right there
            (and send the answers with ``send_nowait``), saving a task switch
            per message. An exception it raises is not caught: it ends the
            transport and escapes the ``async with``.
        rng: randomness for the jitter (default: a fresh ``random.Random()``).

    Raises:
        TypeError, ValueError: a bad argument (named in the message).
        OSError: the listener could not bind.
    """
    _check_node_id(node_id, "node_id")
    if not isinstance(protocol, WireProtocol):
        raise TypeError(f"protocol must be a WireProtocol, got {type(protocol).__name__}")
    if secret is not None:
        check_secret(secret)
    for name, value in (
        ("send_queue", send_queue),
        ("send_queue_bytes", send_queue_bytes),
        ("inbox", inbox),
        ("max_connections", max_connections),
    ):
        if not isinstance(value, int) or value <= 0:
            raise ValueError(f"{name} must be an int > 0, got {value!r}")
    for name, fvalue in (
        ("handshake_timeout", handshake_timeout),
        ("connect_timeout", connect_timeout),
        ("backoff_initial", backoff_initial),
        ("backoff_max", backoff_max),
    ):
        _positive(name, fvalue)
    if dead_peer_timeout is not None:
        _positive("dead_peer_timeout", dead_peer_timeout)
    dial = dict(peers or {})
    for node in dial:
        _check_node_id(node, "peer node id")
        if node == node_id:
            raise ValueError(f"peers names this node's own id {node_id}")
    transport = TcpTransport(
        protocol,
        node_id,
        secret=secret,
        send_queue=send_queue,
        send_queue_bytes=send_queue_bytes,
        inbox=inbox,
        max_connections=max_connections,
        handshake_timeout=handshake_timeout,
        connect_timeout=connect_timeout,
        backoff_initial=backoff_initial,
        backoff_max=backoff_max,
        dead_peer_timeout=dead_peer_timeout,
        on_message=on_message,
        rng=rng if rng is not None else random.Random(),
    )
    async with trio.open_nursery() as nursery:
        transport._nursery = nursery
        try:
            if listen is not None:
                await nursery.start(transport._serve, listen[0], listen[1])
            for node, (host, port) in dial.items():
                transport.add_peer(node, host, port)
            yield transport
        finally:
            transport._nursery = None
            nursery.cancel_scope.cancel()
            transport._inbox_send.close()
