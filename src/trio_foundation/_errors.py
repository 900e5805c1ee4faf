"""The project's exception hierarchy.

Python's own exceptions mark misuse (``TypeError``, ``ValueError``,
``RuntimeError``); everything below :class:`FoundationError` is a protocol or
operational failure and carries the facts a user needs to act on it.
"""

from __future__ import annotations

__all__ = [
    "FoundationError",
    "LeaseLostError",
    "LeaseRefusedError",
    "ProtocolError",
    "StaleTokenError",
    "VerificationError",
]


class FoundationError(Exception):
    """Base class of every protocol and operational failure raised by trio-foundation."""


class ProtocolError(FoundationError):
    """A peer sent something the protocol does not allow (malformed or out of place)."""


class LeaseLostError(FoundationError):
    """A lease could no longer be proved held, so the work guarded by it was cancelled.

    Attributes:
        token: the fencing token of the lost lease.
        reason: why the lease was lost, e.g. ``"not renewed before the safe deadline"``.
    """

    def __init__(self, token: int, reason: str) -> None:
        super().__init__(f"lease with token {token} lost: {reason}")
        self.token = token
        self.reason = reason


class LeaseRefusedError(FoundationError):
    """The lock server refused a request that retrying cannot make succeed.

    Raised at once, not retried: for example a ttl above the server's ``max_ttl``.
    A lock that is merely held by another client is waited for, never this.

    Attributes:
        client: the node id of the refused client.
        reason: the server's (or the client core's) reason, e.g.
            ``"ttl 60.0 exceeds max_ttl 30.0"``.
    """

    def __init__(self, client: int, reason: str) -> None:
        super().__init__(f"lock request of client {client} refused: {reason}")
        self.client = client
        self.reason = reason


class StaleTokenError(FoundationError):
    """A fenced resource refused a write whose token is lower than one it already accepted.

    Attributes:
        token: the token presented.
        highest: the highest token the resource has accepted.
    """

    def __init__(self, token: int, highest: int) -> None:
        super().__init__(f"stale fencing token {token}: resource already accepted {highest}")
        self.token = token
        self.highest = highest


class VerificationError(FoundationError):
    """A verification tool could not run (missing Java or jar, bad spec or config, bad input)."""
