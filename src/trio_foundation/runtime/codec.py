"""Wire codec: length-prefixed, checked frames carrying schema'd MessagePack messages.

Theory of operation
-------------------

A *protocol* (:class:`WireProtocol`) is a name, a version and the closed list of
its message types, each a :class:`WireMessage` (a ``msgspec.Struct`` encoded as a
MessagePack array whose first element is the type's tag). Decoding validates
the bytes against that tagged union, so what comes out is always an instance of
a declared type with fields of the declared types; nothing else is accepted,
and no code runs on the sender's behalf (never pickle).

On the wire every message is one *frame*::

    +----------------+---------------------------+-------------------+
    | length: u32 BE | payload: MessagePack      | check: tag_size B |
    +----------------+---------------------------+-------------------+
                     |<----------- length ------------------------->|

The *check* is a :class:`FrameSeal`'s tag over the payload: a CRC-32 by default
(:class:`Crc32Seal`: catches accidental corruption — every burst of up to 32
bits), or a MAC (keyed BLAKE2s) per connection and direction that also covers a
sequence number once peers have authenticated (see
:mod:`trio_foundation.runtime.auth`: catches forgery, modification, replay and
reordering by an attacker).

:class:`FrameDecoder` is sans-IO: feed it the bytes a stream produced, pull
messages out. Every way a peer can misbehave raises
:class:`RemoteProtocolError` with a :attr:`~RemoteProtocolError.reason` (one of
:data:`DropReason`); a transport drops *that connection* and keeps serving the
others. The decoder never buffers more than one frame's worth of bytes plus one
read: a length prefix above the limit is rejected before its body is read.
"""

from __future__ import annotations

import functools
import operator
import struct
import typing
import zlib
from collections.abc import Iterable
from typing import Any, ClassVar, Final, Literal, NoReturn, Protocol, TypeAlias, final

import attrs
import msgspec

from .._errors import ProtocolError

__all__ = [
    "DEFAULT_MAX_FRAME",
    "Crc32Seal",
    "DropReason",
    "FrameDecoder",
    "FrameSeal",
    "RemoteProtocolError",
    "WireMessage",
    "WireProtocol",
    "encode_frame",
]

DEFAULT_MAX_FRAME: Final = 1 << 20
"""The default limit on a frame's payload, in bytes (1 MiB)."""

_HEADER: Final = struct.Struct(">I")

DropReason: TypeAlias = Literal[
    "frame-too-large",
    "bad-check",
    "undecodable",
    "unknown-type",
    "handshake-failed",
    "auth-failed",
    "peer-mismatch",
    "too-many-connections",
    "timeout",
]
"""Why a connection was dropped because of what the peer sent (or did not send in time)."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something the wire protocol does not allow; drop that connection.

    Attributes:
        reason: the kind of violation, one of :data:`DropReason` (short and stable:
            counters and logs are keyed by it).
        detail: a human-readable explanation naming the offending value.
    """

    def __init__(self, reason: DropReason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason: DropReason = reason
        self.detail = detail


class WireMessage(
    msgspec.Struct, tag=True, array_like=True, frozen=True, forbid_unknown_fields=True
):
    """Base class of every message a :class:`WireProtocol` carries.

    Subclass it with typed fields; the tag is the class name unless the subclass
    passes ``tag="..."``. Instances are frozen (repeat ``frozen=True`` in the
    subclass so type checkers see it) and encode as a MessagePack array
    ``[tag, field1, field2, ...]``::

        class Ping(WireMessage, frozen=True):
            seq: int
    """


class FrameSeal(Protocol):
    """The integrity check appended to every frame of one direction of a connection.

    A seal may be stateful (a MAC seal covers a per-direction sequence number),
    so each direction of each connection has its own instance and every frame
    must pass through it exactly once, in order.
    """

    @property
    def tag_size(self) -> int:
        """Length of the check in bytes."""
        ...

    def seal(self, payload: bytes) -> bytes:
        """The check to send after ``payload``."""
        ...

    def verify(self, payload: bytes, tag: bytes) -> bool:
        """Whether ``tag`` is the right check for the next frame, ``payload``."""
        ...


@final
class Crc32Seal:
    """A CRC-32 of the payload: detects accidental corruption, not an attacker."""

    tag_size: ClassVar[int] = 4

    def seal(self, payload: bytes) -> bytes:
        """The CRC-32 (zlib's polynomial) of ``payload``, big-endian."""
        return _HEADER.pack(zlib.crc32(payload))

    def verify(self, payload: bytes, tag: bytes) -> bool:
        """Whether ``tag`` is the CRC-32 of ``payload``."""
        return tag == _HEADER.pack(zlib.crc32(payload))


def encode_frame(payload: bytes, seal: FrameSeal) -> bytes:
    """One frame carrying ``payload``: length prefix, payload, the seal's check.

    Raises:
        ValueError: the frame would not fit the u32 length prefix.
    """
    tag = seal.seal(payload)
    length = len(payload) + len(tag)
    if length > 0xFFFFFFFF:
        raise ValueError(f"frame of {length} bytes does not fit a u32 length prefix")
    return b"".join((_HEADER.pack(length), payload, tag))


@final
class WireProtocol:
    """A named, versioned protocol and the closed set of messages it carries.

    Args:
        name: the protocol's name, checked in the handshake (e.g. ``"lease-lock"``).
        version: its version (>= 1), checked in the handshake; bump it whenever a
            message type changes shape.
        messages: every message type of the protocol, with distinct names:
            :class:`WireMessage` subclasses, or ``attrs`` classes (a core's own
            message classes). For an attrs class the protocol builds a mirror
            struct from its fields' type annotations (tag: the class name), and
            :meth:`encode` / :meth:`decode` take and return instances of the attrs
            class itself; its validators run on every decoded message. Fields
            annotated ``Any`` carry MessagePack-native values (a tuple comes back
            as a list).
        max_frame: the largest payload in bytes a peer may send or be sent.

    Raises:
        TypeError: a message type is neither a frozen :class:`WireMessage`
            subclass nor an attrs class, or an attrs field cannot be set through
            ``__init__``.
        ValueError: empty name, version < 1, no messages, duplicate tags, or
            ``max_frame`` <= 0.
    """

    def __init__(
        self,
        name: str,
        version: int,
        messages: Iterable[type[Any]],
        *,
        max_frame: int = DEFAULT_MAX_FRAME,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"protocol name must be a non-empty str, got {name!r}")
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise ValueError(f"protocol version must be an int >= 1, got {version!r}")
        if not isinstance(max_frame, int) or max_frame <= 0:
            raise ValueError(f"max_frame must be an int > 0, got {max_frame!r}")
        types = tuple(messages)
        if not types:
            raise ValueError(f"protocol {name!r} declares no message types")
        tags: dict[object, type[Any]] = {}
        wire_types: list[type[WireMessage]] = []
        # attrs class -> (its mirror struct, (field name, init argument name) pairs)
        self._to_wire: dict[type[Any], tuple[type[WireMessage], tuple[tuple[str, str], ...]]] = {}
        self._from_wire: dict[type[WireMessage], type[Any]] = {}
        for t in types:
            if isinstance(t, type) and issubclass(t, WireMessage):
                if not t.__struct_config__.frozen:
                    raise TypeError(f"message type {t.__name__} must be frozen")
                wire = t
            elif isinstance(t, type) and attrs.has(t):
                wire, names = _mirror(t)
                self._to_wire[t] = (wire, names)
                self._from_wire[wire] = t
            else:
                raise TypeError(
                    f"message types must subclass WireMessage or be attrs classes, got {t!r}"
                )
            tag = wire.__struct_config__.tag
            if tag in tags:
                raise ValueError(
                    f"protocol {name!r}: {t.__name__} and {tags[tag].__name__} share tag {tag!r}"
                )
            tags[tag] = t
            wire_types.append(wire)
        self.name = name
        self.version = version
        self.max_frame = max_frame
        self.messages: tuple[type[Any], ...] = types
        self._tags = frozenset(tags)
        self._types = frozenset(types)
        union: Any = functools.reduce(operator.or_, wire_types)
        self._decoder = msgspec.msgpack.Decoder(union)
        self._encoder = msgspec.msgpack.Encoder()

    def __repr__(self) -> str:
        return f"WireProtocol({self.name!r}, {self.version}, {len(self.messages)} messages)"

    def encode(self, msg: object) -> bytes:
        """The MessagePack payload of ``msg``.

        Raises:
            TypeError: ``msg`` is not an instance of one of the declared types,
                or holds a value MessagePack cannot carry.
            ValueError: the payload is larger than ``max_frame``.
        """
        cls = type(msg)
        if cls not in self._types:
            raise TypeError(f"{cls.__name__} is not a message type of protocol {self.name!r}")
        mirror = self._to_wire.get(cls)
        if mirror is not None:
            wire, names = mirror
            msg = wire(*[getattr(msg, field) for field, _arg in names])
        try:
            payload = self._encoder.encode(msg)
        except (TypeError, msgspec.EncodeError) as exc:
            raise TypeError(f"{cls.__name__} cannot be encoded: {exc}") from None
        if len(payload) > self.max_frame:
            raise ValueError(
                f"{type(msg).__name__} encodes to {len(payload)} bytes, "
                f"above the frame limit of {self.max_frame}"
            )
        return payload

    def decode(self, payload: bytes | memoryview) -> Any:
        """The message ``payload`` encodes: an instance of a declared type.

        Raises:
            RemoteProtocolError: ``"unknown-type"`` if it is a well-formed message
                of a type this protocol does not declare, ``"undecodable"`` for
                anything else that is not exactly one valid declared message
                (including one an attrs class's validators refuse).
        """
        try:
            msg: WireMessage = self._decoder.decode(payload)
        except msgspec.DecodeError as exc:
            raise self._explain(payload, exc) from None
        cls = self._from_wire.get(type(msg))
        if cls is None:
            return msg
        names = self._to_wire[cls][1]
        try:
            return cls(**{arg: getattr(msg, field) for field, arg in names})
        except (TypeError, ValueError) as exc:
            raise RemoteProtocolError("undecodable", f"{cls.__name__}: {exc}") from None

    def _explain(
        self, payload: bytes | memoryview, exc: msgspec.DecodeError
    ) -> RemoteProtocolError:
        # Error path only: tell an undeclared message type from plain garbage.
        try:
            raw = msgspec.msgpack.decode(payload)
        except msgspec.DecodeError:
            raw = None
        if isinstance(raw, list) and raw and isinstance(raw[0], (str, int)):
            tag = raw[0]
            if tag not in self._tags:
                return RemoteProtocolError(
                    "unknown-type", f"protocol {self.name!r} has no message type {tag!r}"
                )
        return RemoteProtocolError("undecodable", f"protocol {self.name!r}: {exc}")


def _mirror(cls: type[Any]) -> tuple[type[WireMessage], tuple[tuple[str, str], ...]]:
    """A frozen :class:`WireMessage` with the fields (and annotated types) of attrs ``cls``."""
    try:
        hints = typing.get_type_hints(cls)
    except NameError as exc:
        raise TypeError(f"cannot resolve the annotations of {cls.__name__}: {exc}") from None
    names: list[tuple[str, str]] = []
    for f in attrs.fields(cls):
        if not f.init:
            raise TypeError(f"{cls.__name__}.{f.name} is not set by __init__; it cannot be decoded")
        names.append((f.name, f.alias or f.name))
    wire = typing.cast(
        type[WireMessage],
        msgspec.defstruct(
            cls.__name__,
            [(field, hints.get(field, Any)) for field, _arg in names],
            bases=(WireMessage,),
            tag=cls.__name__,
            frozen=True,
            array_like=True,
            forbid_unknown_fields=True,
            module=cls.__module__,
        ),
    )
    return wire, tuple(names)


@final
class FrameDecoder:
    """Sans-IO reader of one direction of a connection: bytes in, messages out.

    Args:
        protocol: the protocol the frames carry.
        seal: the check every frame ends with (one instance per direction).

    Feed it with :meth:`feed`, then call :meth:`next_message` until it returns
    ``None``. After it raised :class:`RemoteProtocolError` the decoder is
    poisoned (every later call raises the same error): drop the connection.

    Invariant: the buffer holds at most one incomplete frame plus the bytes of
    one :meth:`feed`, and a frame's body is never awaited when its length prefix
    is above the limit.
    """

    def __init__(self, protocol: WireProtocol, seal: FrameSeal) -> None:
        self.protocol = protocol
        self.seal = seal
        self._buffer = bytearray()
        self._pos = 0  # Invariant: bytes before _pos are consumed; compacted on feed
        self._error: RemoteProtocolError | None = None
        #: frames decoded so far
        self.frames = 0

    @property
    def buffered(self) -> int:
        """Bytes received and not yet consumed."""
        return len(self._buffer) - self._pos

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Append bytes received from the peer."""
        if self._pos:
            del self._buffer[: self._pos]
            self._pos = 0
        self._buffer += data

    def next_frame(self) -> bytes | None:
        """The next complete frame's checked payload, or ``None`` if more bytes are needed.

        Raises:
            RemoteProtocolError: ``"frame-too-large"``, ``"undecodable"`` (a frame
                shorter than its check) or ``"bad-check"``.
        """
        if self._error is not None:
            raise self._error
        buf, pos = self._buffer, self._pos
        if len(buf) - pos < _HEADER.size:
            return None
        (length,) = _HEADER.unpack_from(buf, pos)
        tag_size = self.seal.tag_size
        limit = self.protocol.max_frame + tag_size
        if length > limit:
            self._fail(
                "frame-too-large",
                f"frame of {length} bytes announced, the limit is {limit} "
                f"(payload {self.protocol.max_frame} + check {tag_size})",
            )
        if length < tag_size:
            self._fail(
                "undecodable", f"frame of {length} bytes is shorter than its {tag_size}-byte check"
            )
        end = pos + _HEADER.size + length
        if len(buf) < end:
            return None
        payload = bytes(buf[pos + _HEADER.size : end - tag_size])
        tag = bytes(buf[end - tag_size : end])
        if end == len(buf):
            buf.clear()
            self._pos = 0
        else:
            self._pos = end
        if not self.seal.verify(payload, tag):
            self._fail("bad-check", f"frame {self.frames} failed its integrity check")
        self.frames += 1
        return payload

    def take_buffer(self) -> bytes:
        """Remove and return the bytes fed but not consumed (to hand them to another decoder)."""
        data = bytes(self._buffer[self._pos :])
        self._buffer.clear()
        self._pos = 0
        return data

    def next_message(self) -> Any:
        """The next complete message (of a declared type), or ``None`` if more bytes are needed.

        Raises:
            RemoteProtocolError: as :meth:`next_frame` and
                :meth:`WireProtocol.decode`.
        """
        payload = self.next_frame()
        if payload is None:
            return None
        try:
            return self.protocol.decode(payload)
        except RemoteProtocolError as exc:
            self._error = exc
            raise

    def _fail(self, reason: DropReason, detail: str) -> NoReturn:
        self._error = RemoteProtocolError(reason, detail)
        raise self._error
