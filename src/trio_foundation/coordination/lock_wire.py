"""The lease lock's wire protocol over TCP: named locks, one core per name.

The lock cores (:mod:`trio_foundation.protocols.lease_lock`) know nothing of
lock names: a server process runs one :class:`~trio_foundation.protocols.
lease_lock.LockServer` per name and a client one
:class:`~trio_foundation.protocols.lease_lock.LockClient` per name. On the
wire every message carries the lock's name; :class:`LockChannel` is the
:class:`~trio_foundation.runtime.transport.Transport` one core's
:class:`~trio_foundation.runtime.driver.NodeDriver` sends through (it adds the
name), and :func:`from_wire` splits a received message into the name and the
core's message. Messages reach the cores pushed from the TCP transport's
``on_message`` handler.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, TypeAlias, final

import msgspec

from ..protocols.lease_lock import (
    AcquireRequest,
    Denied,
    Granted,
    ReleaseRequest,
    Renewed,
    RenewRequest,
)
from ..runtime.codec import WireMessage, WireProtocol
from ..runtime.tcp import TcpTransport
from ..runtime.transport import Envelope

__all__ = [
    "DEFAULT_LOCK",
    "LOCK_PROTOCOL",
    "MAX_NAME",
    "SERVER_NODE",
    "LockChannel",
    "check_lock_name",
    "from_wire",
    "to_wire",
]

SERVER_NODE: Final = 0
"""The lock server's node id; clients pick random ids above it."""
DEFAULT_LOCK: Final = "default"
MAX_NAME: Final = 256
"""The longest lock name, in characters."""

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_NAME)]
Req = tuple[Annotated[int, msgspec.Meta(ge=0)], Annotated[int, msgspec.Meta(ge=0)]]
Ttl = Annotated[float, msgspec.Meta(gt=0)]
Token = Annotated[int, msgspec.Meta(gt=0)]


class WAcquire(WireMessage, tag="acquire", frozen=True):
    """Client → server: an ``AcquireRequest`` on ``lock``."""

    lock: Name
    req: Req
    ttl: Ttl


class WRenew(WireMessage, tag="renew", frozen=True):
    """Client → server: :class:`~trio_foundation.protocols.lease_lock.RenewRequest` on ``lock``."""

    lock: Name
    req: Req
    token: Token
    ttl: Ttl


class WRelease(WireMessage, tag="release", frozen=True):
    """Client → server: :class:`~trio_foundation.protocols.lease_lock.ReleaseRequest`."""

    lock: Name
    token: Token


class WGranted(WireMessage, tag="granted", frozen=True):
    """Server → client: :class:`~trio_foundation.protocols.lease_lock.Granted` on ``lock``."""

    lock: Name
    req: Req
    token: Token
    ttl: Ttl


class WRenewed(WireMessage, tag="renewed", frozen=True):
    """Server → client: :class:`~trio_foundation.protocols.lease_lock.Renewed` on ``lock``."""

    lock: Name
    req: Req
    token: Token
    ttl: Ttl


class WDenied(WireMessage, tag="denied", frozen=True):
    """Server → client: :class:`~trio_foundation.protocols.lease_lock.Denied` on ``lock``."""

    lock: Name
    req: Req
    reason: Annotated[str, msgspec.Meta(max_length=1024)]


LOCK_PROTOCOL: Final = WireProtocol(
    "lease-lock", 1, [WAcquire, WRenew, WRelease, WGranted, WRenewed, WDenied], max_frame=4096
)
"""The lock service's protocol: name and version are checked in the TCP handshake."""

CoreMessage: TypeAlias = AcquireRequest | RenewRequest | ReleaseRequest | Granted | Renewed | Denied


def check_lock_name(name: object) -> str:
    """Return ``name`` if it is a valid lock name (a str of 1 to 256 characters).

    Raises:
        TypeError: not a str.
        ValueError: empty or longer than :data:`MAX_NAME`.
    """
    if not isinstance(name, str):
        raise TypeError(f"lock name must be a str, got {type(name).__name__}")
    if not 1 <= len(name) <= MAX_NAME:
        raise ValueError(f"lock name must have 1 to {MAX_NAME} characters, got {len(name)}")
    return name


def to_wire(lock: str, msg: Any) -> WireMessage:
    """The wire form of a core's message ``msg`` about ``lock``.

    Raises:
        TypeError: ``msg`` is not a lock message that travels between processes.
    """
    if isinstance(msg, AcquireRequest):
        return WAcquire(lock, msg.req, msg.ttl)
    if isinstance(msg, RenewRequest):
        return WRenew(lock, msg.req, msg.token, msg.ttl)
    if isinstance(msg, ReleaseRequest):
        return WRelease(lock, msg.token)
    if isinstance(msg, Granted):
        return WGranted(lock, msg.req, msg.token, msg.ttl)
    if isinstance(msg, Renewed):
        return WRenewed(lock, msg.req, msg.token, msg.ttl)
    if isinstance(msg, Denied):
        return WDenied(lock, msg.req, msg.reason[:1024])
    raise TypeError(f"{type(msg).__name__} is not a message of the lock service")


def from_wire(msg: Any) -> tuple[str, CoreMessage]:
    """Split a decoded wire message into its lock name and the core's message.

    Raises:
        TypeError: ``msg`` is not a message of :data:`LOCK_PROTOCOL`.
    """
    if isinstance(msg, WAcquire):
        return msg.lock, AcquireRequest(tuple(msg.req), msg.ttl)  # type: ignore[arg-type]
    if isinstance(msg, WRenew):
        return msg.lock, RenewRequest(tuple(msg.req), msg.token, msg.ttl)  # type: ignore[arg-type]
    if isinstance(msg, WRelease):
        return msg.lock, ReleaseRequest(msg.token)
    if isinstance(msg, WGranted):
        return msg.lock, Granted(tuple(msg.req), msg.token, msg.ttl)  # type: ignore[arg-type]
    if isinstance(msg, WRenewed):
        return msg.lock, Renewed(tuple(msg.req), msg.token, msg.ttl)  # type: ignore[arg-type]
    if isinstance(msg, WDenied):
        return msg.lock, Denied(tuple(msg.req), msg.reason)  # type: ignore[arg-type]
    raise TypeError(f"{type(msg).__name__} is not a message of the lock service")


@final
class LockChannel:
    """The :class:`~trio_foundation.runtime.transport.Transport` of one named lock's core.

    Sends go through the shared TCP transport with the lock's name added;
    receiving is push-only (the process's ``on_message`` handler calls the
    core's driver), so :meth:`receive` raises.
    """

    def __init__(self, tcp: TcpTransport, lock: str) -> None:
        self._tcp = tcp
        self.lock = lock

    @property
    def node_id(self) -> int:
        """The process's node id on the TCP transport."""
        return self._tcp.node_id

    def send_nowait(self, dst: int, msg: Any) -> bool:
        """Queue the named wire form of ``msg`` for ``dst``; never blocks."""
        return self._tcp.send_nowait(dst, to_wire(self.lock, msg))

    async def receive(self) -> Envelope:
        """Not supported: a lock's messages are pushed to its driver.

        Raises:
            RuntimeError: always.
        """
        raise RuntimeError("a LockChannel is push-only: run its driver with pull=False")
