"""The project's exception hierarchy.

Python's own exceptions mark misuse (``TypeError``, ``ValueError``,
``RuntimeError``); everything below :class:`FoundationError` is a protocol or
operational failure and carries the facts a user needs to act on it.
"""

from __future__ import annotations

__all__ = [
    "FoundationError",
    "LeadershipLostError",
    "LeaseLostError",
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


class LeadershipLostError(FoundationError):
    """A leader could no longer prove its leadership, so the work it did as leader was cancelled.

    Attributes:
        election: the election's name.
        candidate: this process's candidate id.
        reason: why leadership was lost.
    """

    def __init__(self, election: str, candidate: str, reason: str) -> None:
        super().__init__(f"leadership of {election!r} lost by {candidate!r}: {reason}")
        self.election = election
        self.candidate = candidate
        self.reason = reason
