"""Peer authentication over a shared secret: HMAC challenge-response and per-frame MACs.

Theory of operation
-------------------

Every node of a deployment holds the same secret (a file, at least 16 bytes,
readable only by its owner). When two nodes connect, each sends a ``Hello``
carrying a fresh 16-byte random nonce (see :mod:`trio_foundation.runtime.tcp`).
Then each proves it knows the secret by sending (the dialer first)::

    proof(role) = HMAC-SHA256(secret, "proof" | role | dialer_hello | listener_hello)

where ``role`` is its own side (``dialer`` or ``listener``) and the hellos are
the exact bytes sent, so a proof is bound to this connection's two nonces and
to one direction: it cannot be replayed on another connection (the other side's
nonce is fresh) nor reflected back to its sender (the role differs). Proofs are
compared in constant time (:func:`hmac.compare_digest`). The dialer proves
first and the listener answers only a correct proof, so a stranger who
connects obtains nothing to attack the secret with offline.

Both sides then derive one key per direction from the same transcript and seal
every later frame with :class:`MacSeal`: a 16-byte keyed-BLAKE2s MAC over a
per-direction sequence number and the payload. A frame an
attacker forged, modified, replayed, reordered, dropped from the middle of the
stream, or moved to another connection fails its check and the connection is
dropped.

What this does **not** give: confidentiality (frames are readable on the
wire), protection against an attacker who holds the secret, or availability
(anyone on the path can cut or delay a connection). See ``docs/runtime.md``.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import stat
import struct
from pathlib import Path
from typing import ClassVar, Final, Literal, final

__all__ = [
    "MIN_SECRET_BYTES",
    "MacSeal",
    "load_secret_file",
    "proof",
    "session_keys",
]

MIN_SECRET_BYTES: Final = 16
"""The shortest accepted secret, in bytes."""

_DOMAIN: Final = b"trio-foundation/auth/v1\x00"
_SEQ: Final = struct.Struct(">Q")
_LEN: Final = struct.Struct(">I")

Role = Literal["dialer", "listener"]


def load_secret_file(path: str | os.PathLike[str]) -> bytes:
    """Read a shared secret from ``path`` (trailing whitespace and newlines stripped).

    Blocking (one small read). Like ssh with its private keys, it refuses a file
    that group or others may read.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is readable by group or others, or the secret is
            shorter than :data:`MIN_SECRET_BYTES`.
    """
    p = Path(path)
    mode = p.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ValueError(
            f"secret file {p} is accessible by group or others (mode {stat.S_IMODE(mode):04o});"
            f" run: chmod 600 {p}"
        )
    secret = p.read_bytes().rstrip()
    check_secret(secret, source=str(p))
    return secret


def check_secret(secret: bytes, *, source: str = "secret") -> None:
    """Raise unless ``secret`` is bytes of at least :data:`MIN_SECRET_BYTES`.

    Raises:
        TypeError: ``secret`` is not bytes.
        ValueError: it is too short.
    """
    if not isinstance(secret, bytes):
        raise TypeError(f"secret must be bytes, got {type(secret).__name__}")
    if len(secret) < MIN_SECRET_BYTES:
        raise ValueError(
            f"{source}: secret has {len(secret)} bytes, at least {MIN_SECRET_BYTES} are needed"
        )


def _transcript(label: bytes, dialer_hello: bytes, listener_hello: bytes) -> bytes:
    # Length-prefixed, so no two different (hello, hello) pairs give the same bytes.
    return b"".join(
        (
            _DOMAIN,
            label,
            _LEN.pack(len(dialer_hello)),
            dialer_hello,
            _LEN.pack(len(listener_hello)),
            listener_hello,
        )
    )


def proof(secret: bytes, role: Role, dialer_hello: bytes, listener_hello: bytes) -> bytes:
    """The 32-byte proof that the ``role`` side of this connection knows ``secret``."""
    label = b"proof:dialer\x00" if role == "dialer" else b"proof:listener\x00"
    return hmac.digest(secret, _transcript(label, dialer_hello, listener_hello), "sha256")


def session_keys(secret: bytes, dialer_hello: bytes, listener_hello: bytes) -> tuple[bytes, bytes]:
    """The two frame keys of a connection: (dialer → listener, listener → dialer)."""
    return (
        hmac.digest(secret, _transcript(b"key:d2l\x00", dialer_hello, listener_hello), "sha256"),
        hmac.digest(secret, _transcript(b"key:l2d\x00", dialer_hello, listener_hello), "sha256"),
    )


@final
class MacSeal:
    """Frame check for one direction of an authenticated connection.

    The tag of the ``i``-th frame is keyed BLAKE2s (RFC 7693's MAC mode, 16-byte
    digest) over ``u64be(i) | payload``; both ends count frames, so a replayed,
    reordered or removed frame fails. Keyed BLAKE2s is used rather than
    HMAC-SHA256 because it costs about 1 µs a frame here instead of about 5.
    Stateful: one instance per direction, every frame sealed or verified
    exactly once, in order.

    Args:
        key: the direction's 32-byte key from :func:`session_keys`.
    """

    tag_size: ClassVar[int] = 16

    def __init__(self, key: bytes) -> None:
        self._mac = hashlib.blake2s(key=key[:32], digest_size=16)
        self._seq = 0

    def _tag(self, payload: bytes) -> bytes:
        mac = self._mac.copy()
        mac.update(_SEQ.pack(self._seq))
        mac.update(payload)
        self._seq += 1
        return mac.digest()

    def seal(self, payload: bytes) -> bytes:
        """The tag of the next frame, ``payload``."""
        return self._tag(payload)

    def verify(self, payload: bytes, tag: bytes) -> bool:
        """Whether ``tag`` is the right tag of the next frame (constant-time compare)."""
        return hmac.compare_digest(self._tag(payload), tag)
