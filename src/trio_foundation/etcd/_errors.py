"""Errors of the etcd client.

etcd's gateway answers a failed call with ``{"error", "code", "message"}``,
``code`` being a gRPC status code. Each class below is one kind of failure a
caller acts on differently; every instance names the endpoint and the call.
"""

from __future__ import annotations

from typing import Final

from .._errors import FoundationError, LeaseLostError
from ..coordination.kv import CompactedError

__all__ = [
    "EtcdAuthError",
    "EtcdCompactedError",
    "EtcdError",
    "EtcdLeaseLostError",
    "EtcdLeaseNotFoundError",
    "EtcdProtocolError",
    "EtcdRequestError",
    "EtcdUnavailableError",
]

# gRPC status codes (google.golang.org/grpc/codes) that the gateway reports.
GRPC_INVALID_ARGUMENT: Final = 3
GRPC_NOT_FOUND: Final = 5
GRPC_PERMISSION_DENIED: Final = 7
GRPC_FAILED_PRECONDITION: Final = 9
GRPC_OUT_OF_RANGE: Final = 11
GRPC_UNAVAILABLE: Final = 14
GRPC_UNAUTHENTICATED: Final = 16


class EtcdError(FoundationError):
    """Base class of the etcd client's errors.

    Attributes:
        endpoint: the endpoint URL the failing call went to (``""`` if none was reached).
        call: the gateway path, e.g. ``"/v3/kv/put"``.
    """

    def __init__(self, message: str, *, endpoint: str = "", call: str = "") -> None:
        where = " ".join(p for p in (call, f"at {endpoint}" if endpoint else "") if p)
        super().__init__(f"{message} ({where})" if where else message)
        self.endpoint = endpoint
        self.call = call


class EtcdUnavailableError(EtcdError):
    """No endpoint answered within the timeout, or etcd said it is unavailable.

    ``outcome_unknown`` is true when a request that changes state may have been
    applied (it was sent, but no answer came): the caller must not assume it was not.
    """

    def __init__(
        self, message: str, *, endpoint: str = "", call: str = "", outcome_unknown: bool = False
    ) -> None:
        super().__init__(message, endpoint=endpoint, call=call)
        self.outcome_unknown = outcome_unknown


class EtcdRequestError(EtcdError):
    """etcd refused the request (an invalid argument, a failed precondition...).

    Attributes:
        code: the gRPC status code etcd answered with.
    """

    def __init__(self, message: str, *, code: int, endpoint: str = "", call: str = "") -> None:
        super().__init__(message, endpoint=endpoint, call=call)
        self.code = code


class EtcdLeaseNotFoundError(EtcdRequestError):
    """The lease does not exist (never granted, revoked, or expired).

    Attributes:
        lease_id: the lease's id.
    """

    def __init__(self, lease_id: int, *, endpoint: str = "", call: str = "") -> None:
        super().__init__(
            f"lease {lease_id} not found (expired or revoked)",
            code=GRPC_NOT_FOUND,
            endpoint=endpoint,
            call=call,
        )
        self.lease_id = lease_id


class EtcdCompactedError(EtcdError, CompactedError):
    """The requested revision has been compacted away (a :class:`CompactedError`).

    Attributes:
        compact_revision: the oldest revision etcd still has (0 if etcd did not say).
        requested: the revision that was asked for.
    """

    def __init__(
        self, requested: int, compact_revision: int, *, endpoint: str = "", call: str = ""
    ) -> None:
        have = f"; oldest kept is {compact_revision}" if compact_revision else ""
        where = " ".join(p for p in (call, f"at {endpoint}" if endpoint else "") if p)
        message = f"revision {requested} has been compacted{have}"
        # Both bases chain their __init__; set the attributes of each directly.
        FoundationError.__init__(self, f"{message} ({where})" if where else message)
        self.endpoint = endpoint
        self.call = call
        self.requested = requested
        self.compact_revision = compact_revision


class EtcdAuthError(EtcdError):
    """Authentication failed, or the user lacks permission for the call."""


class EtcdProtocolError(EtcdError):
    """An endpoint answered with something that is not a valid gateway response."""


class EtcdLeaseLostError(LeaseLostError):
    """An etcd lease could no longer be proved alive, so the scope guarded by it was cancelled.

    Attributes:
        lease_id: the etcd lease id.
        token: the fencing token of the work guarded by the lease (the lease id
            itself for a bare lease).
        reason: why it was lost.
    """

    def __init__(self, lease_id: int, reason: str, *, token: int | None = None) -> None:
        super().__init__(lease_id if token is None else token, reason)
        self.lease_id = lease_id
