"""trio-foundation: concurrent and multi-agent coordination on Trio, proved and tested."""

from __future__ import annotations

from ._errors import (
    FoundationError,
    LeaseLostError,
    ProtocolError,
    StaleTokenError,
    VerificationError,
)

__version__ = "0.1.0"

__all__ = [
    "FoundationError",
    "LeaseLostError",
    "ProtocolError",
    "StaleTokenError",
    "VerificationError",
    "__version__",
]
