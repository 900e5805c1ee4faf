"""Sans-IO core of the lease lock: a lock server, its clients and a fenced resource.

Theory of operation (``specs/LeaseLock.tla`` is the model-checked version):

* A :class:`LockServer` grants a *lease* of ``ttl`` seconds of its own clock to
  one client at a time. Every grant carries a *fencing token* strictly larger
  than every token granted before, including before a crash (the last token is
  persisted before the grant is sent). A lease ends when its holder releases
  it or when ``ttl`` of server time passes without a renewal.
* A :class:`LockClient` measures its lease from the moment it *sent* the
  request, not from when the grant arrived (the grant happened after the send),
  and treats it as valid for ``ttl * (1 - rho) / (1 + rho)`` of its own clock,
  where ``rho`` is the bound on every node's clock drift. Then the client's
  deadline passes, in real time, no later than ``ttl / (1 + rho)`` after the
  send, while the server cannot consider the lease expired before ``ttl / (1 +
  rho)`` after the grant. So at no moment are two clients *entitled* (holding a
  lease whose local deadline has not passed).
* Request ids are ``(incarnation, seq)`` pairs; the incarnation is persisted
  and bumped on every start, so a grant answering a request from before a
  crash can never be mistaken for the answer to a newer request (whose send
  time is later, which would stretch the lease past its safe end).
* A server that restarts does not know which lease may still be valid, so it
  grants nothing for the longest ttl it ever granted (its *quiet period*).
* Messages may be lost, duplicated, delayed and reordered: the server ignores
  requests it has already answered (per-client highest request id), clients
  ignore answers to anything but their current request, and a release or a
  renewal names its token so a stale one cannot touch a newer lease.
* A grant nobody will use is handed back at once: when a caller abandons an
  acquire (``"abort"``), the client remembers the ids of the requests it sent
  for it (a bounded table, oldest forgotten first) and answers a grant that
  later arrives for one of them with a release of that token. Safe
  because a token is granted to exactly one request, so it is never the token
  of a lease the client holds; without it the lock would stay held on the
  server, for nobody, until the grant's ttl ran out.
* The lease alone cannot stop a write that was *sent* in time from arriving
  late; a :class:`FencedResource` refuses any token lower than the highest it
  has accepted.

All times are local clock readings passed in as ``now``; nothing here reads a
clock, sleeps or does I/O. Each core follows :class:`trio_foundation.runtime.
effects.Core`: the runtime executes :class:`Persist` effects before the rest.
"""

from __future__ import annotations

import random
from collections import OrderedDict
from typing import Any, Final, Literal, TypeAlias, final

import attrs

from .effects import (
    CancelTimer,
    ClientRequest,
    Effect,
    Persist,
    Reply,
    Send,
    SetTimer,
)

__all__ = [
    "AcquireRequest",
    "Denied",
    "FencedResource",
    "Granted",
    "LeaseInfo",
    "LockClient",
    "LockMessage",
    "LockServer",
    "ReleaseRequest",
    "RenewRequest",
    "Renewed",
    "ReqId",
    "WriteAccepted",
    "WriteRefused",
    "WriteRequest",
    "validity",
]

ReqId: TypeAlias = tuple[int, int]
"""A request id: ``(incarnation, sequence number)``, ordered lexicographically."""

RETRY_TIMER: Final = "retry"
RENEW_TIMER: Final = "renew"
EXPIRE_TIMER: Final = "expire"


def validity(ttl: float, max_drift: float) -> float:
    """How long a client may use a lease of ``ttl``, measured on its own clock.

    ``ttl * (1 - max_drift) / (1 + max_drift)``, counted from the send time of
    the request that obtained or renewed the lease. See the module docstring
    for why this is safe when every clock's rate is within ``1 +/- max_drift``
    of real time.

    Raises:
        ValueError: if ``ttl <= 0`` or ``max_drift`` is not in ``[0, 1)``.
    """
    if not ttl > 0:
        raise ValueError(f"ttl must be > 0, got {ttl!r}")
    if not 0 <= max_drift < 1:
        raise ValueError(f"max_drift must be in [0, 1), got {max_drift!r}")
    return ttl * (1 - max_drift) / (1 + max_drift)


# --------------------------------------------------------------------------- messages


@final
@attrs.frozen
class AcquireRequest:
    """Client → server: grant me the lease for ``ttl`` seconds."""

    req: ReqId
    ttl: float


@final
@attrs.frozen
class RenewRequest:
    """Client → server: extend my lease ``token`` by ``ttl`` seconds from now."""

    req: ReqId
    token: int
    ttl: float


@final
@attrs.frozen
class ReleaseRequest:
    """Client → server: I give up lease ``token`` (no answer is sent)."""

    token: int


@final
@attrs.frozen
class Granted:
    """Server → client: request ``req`` obtained the lease with fencing ``token``."""

    req: ReqId
    token: int
    ttl: float


@final
@attrs.frozen
class Renewed:
    """Server → client: renewal ``req`` of lease ``token`` succeeded."""

    req: ReqId
    token: int
    ttl: float


@final
@attrs.frozen
class Denied:
    """Server → client: request ``req`` was refused, for ``reason``."""

    req: ReqId
    reason: str


@final
@attrs.frozen
class WriteRequest:
    """Client → fenced resource: apply ``data`` under fencing ``token``."""

    token: int
    data: Any = None


@final
@attrs.frozen
class WriteAccepted:
    """Fenced resource → client: the write with ``token`` was applied."""

    token: int


@final
@attrs.frozen
class WriteRefused:
    """Fenced resource → client: ``token`` is below ``highest``, the write was refused."""

    token: int
    highest: int


LockMessage: TypeAlias = (
    AcquireRequest
    | RenewRequest
    | ReleaseRequest
    | Granted
    | Renewed
    | Denied
    | WriteRequest
    | WriteAccepted
    | WriteRefused
)


def _valid_req(req: object) -> bool:
    return (
        isinstance(req, tuple)
        and len(req) == 2
        and all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in req)
    )


def _valid_token(token: object) -> bool:
    return isinstance(token, int) and not isinstance(token, bool) and token > 0


def _valid_ttl(ttl: object) -> bool:
    return isinstance(ttl, (int, float)) and not isinstance(ttl, bool) and ttl > 0


# --------------------------------------------------------------------------- server


@final
@attrs.frozen
class ServerDurable:
    """What a :class:`LockServer` persists: the last token and the longest ttl granted."""

    token: int = 0
    max_ttl_granted: float = 0.0


@final
class LockServer:
    """The lock service's core.

    Args:
        node: this node's id.
        max_ttl: the longest lease a client may ask for (seconds of server time).
        max_clients: bound on the per-client duplicate-suppression table; the
            least recently heard-from client is forgotten beyond it (which only
            risks granting an old duplicate request a lease nobody uses, until
            it expires).
    """

    def __init__(self, node: int, *, max_ttl: float = 60.0, max_clients: int = 10_000) -> None:
        if not _valid_ttl(max_ttl):
            raise ValueError(f"max_ttl must be > 0, got {max_ttl!r}")
        if max_clients <= 0:
            raise ValueError(f"max_clients must be > 0, got {max_clients!r}")
        self.node = node
        self.max_ttl = float(max_ttl)
        self.max_clients = max_clients
        self._durable = ServerDurable()
        #: client holding the lease (kept after expiry until released or regranted)
        self.holder: int | None = None
        #: server-local time at which the current lease expires
        self.expiry = 0.0
        #: server-local time before which nothing is granted (after a restart)
        self.quiet_until = 0.0
        # Invariant: holds, per client, the highest request id processed.
        self._last_req: OrderedDict[int, ReqId] = OrderedDict()
        #: count of messages ignored because they were malformed or unexpected
        self.ignored = 0

    @property
    def token(self) -> int:
        """The last fencing token granted (0 before the first grant)."""
        return self._durable.token

    def last_req(self, client: int) -> ReqId | None:
        """The highest request id processed from ``client``, if remembered."""
        return self._last_req.get(client)

    def holds(self, client: int, now: float) -> bool:
        """Whether the server considers ``client``'s lease live at ``now``."""
        return self.holder == client and now < self.expiry

    def snapshot_persistent(self) -> ServerDurable:
        """The persisted state (see :class:`ServerDurable`)."""
        return self._durable

    def restore(self, snapshot: Any) -> None:
        """Load persisted state into a freshly built server, before :meth:`on_start`."""
        if not isinstance(snapshot, ServerDurable):
            raise TypeError(f"expected ServerDurable, got {type(snapshot).__name__}")
        self._durable = snapshot

    def on_start(self, now: float, rng: random.Random) -> list[Effect]:
        """(Re)start: if a lease was ever granted, grant nothing for the longest ttl granted."""
        if self._durable.token > 0:
            self.quiet_until = now + self._durable.max_ttl_granted
        return []

    def on_timer(self, now: float, name: str) -> list[Effect]:
        """The server arms no timers; expiry is evaluated lazily."""
        return []

    def on_client(self, now: float, request: ClientRequest) -> list[Effect]:
        """The server takes no local client requests; answers ``ok=False``."""
        return [Reply(request.client, value="the lock server takes no client operations", ok=False)]

    def _fresh(self, src: int, req: ReqId) -> bool:
        last = self._last_req.get(src)
        if last is not None and req <= last:
            return False
        self._last_req[src] = req
        self._last_req.move_to_end(src)
        while len(self._last_req) > self.max_clients:
            self._last_req.popitem(last=False)
        return True

    def _grantable(self, src: int, now: float) -> bool:
        if now < self.quiet_until:
            return False
        return self.holder is None or now >= self.expiry or self.holder == src

    def on_message(self, now: float, src: int, msg: Any) -> list[Effect]:
        """Handle a client's request. Malformed or unexpected messages are counted and ignored."""
        if isinstance(msg, AcquireRequest):
            if not (_valid_req(msg.req) and _valid_ttl(msg.ttl)):
                self.ignored += 1
                return []
            if not self._fresh(src, msg.req):
                return []
            if msg.ttl > self.max_ttl:
                return [Send(src, Denied(msg.req, f"ttl {msg.ttl} exceeds max_ttl {self.max_ttl}"))]
            if not self._grantable(src, now):
                reason = "quiet period after restart" if now < self.quiet_until else "held"
                return [Send(src, Denied(msg.req, reason))]
            token = self._durable.token + 1
            self._durable = ServerDurable(token, max(self._durable.max_ttl_granted, msg.ttl))
            self.holder = src
            self.expiry = now + msg.ttl
            return [Persist(self._durable), Send(src, Granted(msg.req, token, msg.ttl))]
        if isinstance(msg, RenewRequest):
            if not (_valid_req(msg.req) and _valid_token(msg.token) and _valid_ttl(msg.ttl)):
                self.ignored += 1
                return []
            if not self._fresh(src, msg.req):
                return []
            if msg.ttl > self.max_ttl:
                return [Send(src, Denied(msg.req, f"ttl {msg.ttl} exceeds max_ttl {self.max_ttl}"))]
            if not (self.holds(src, now) and msg.token == self._durable.token):
                return [Send(src, Denied(msg.req, "not the holder of a live lease"))]
            effects: list[Effect] = []
            if msg.ttl > self._durable.max_ttl_granted:
                self._durable = attrs.evolve(self._durable, max_ttl_granted=msg.ttl)
                effects.append(Persist(self._durable))
            self.expiry = now + msg.ttl
            effects.append(Send(src, Renewed(msg.req, msg.token, msg.ttl)))
            return effects
        if isinstance(msg, ReleaseRequest):
            if not _valid_token(msg.token):
                self.ignored += 1
                return []
            if self.holder == src and msg.token == self._durable.token:
                self.holder = None
                self.expiry = now
            return []
        self.ignored += 1
        return []


# --------------------------------------------------------------------------- client


@final
@attrs.frozen
class LeaseInfo:
    """A lease as the client sees it.

    Attributes:
        token: the fencing token.
        ttl: the ttl the server granted.
        deadline: local time until which the client is entitled to act.
    """

    token: int
    ttl: float
    deadline: float


@final
class LockClient:
    """A lock client's core.

    Client operations (:class:`ClientRequest` ``op``):

    * ``"acquire"`` (value: ttl): answered with ``Reply(ok=True, value=LeaseInfo)``
      on a grant, ``Reply(ok=False, value=reason)`` on a refusal. Unanswered
      requests are re-sent (as new requests) every ``retry_interval``.
    * ``"release"``: drops the lease at once and tells the server.
    * ``"abort"``: gives up an outstanding acquire. The ids of the requests
      sent for it are remembered (at most ``max_abandoned``, oldest forgotten
      first); a grant that arrives for one of them is answered with a
      :class:`ReleaseRequest` of its token, so the lock is free again one
      round trip later instead of after the grant's ttl.

    While a lease is held it is renewed automatically every
    ``renew_fraction`` of its validity; the local deadline moves only when a
    renewal is acknowledged. :attr:`lease` is ``None`` once the deadline passes.

    Args:
        node: this client's node id.
        server: the lock server's node id.
        max_drift: the assumed bound on clock drift (see :func:`validity`).
        retry_interval: local seconds before an unanswered request is re-sent.
        renew_fraction: renew after this fraction of the validity has elapsed.
        max_abandoned: bound on the remembered ids of abandoned acquire
            requests (each retry of an acquire is one more id).
    """

    def __init__(
        self,
        node: int,
        *,
        server: int = 0,
        max_drift: float = 0.0,
        retry_interval: float = 1.0,
        renew_fraction: float = 1 / 3,
        max_abandoned: int = 64,
    ) -> None:
        validity(1.0, max_drift)  # validates max_drift
        if not retry_interval > 0:
            raise ValueError(f"retry_interval must be > 0, got {retry_interval!r}")
        if not 0 < renew_fraction < 1:
            raise ValueError(f"renew_fraction must be in (0, 1), got {renew_fraction!r}")
        if (
            not (isinstance(max_abandoned, int) and not isinstance(max_abandoned, bool))
            or max_abandoned < 1
        ):
            raise ValueError(f"max_abandoned must be an int >= 1, got {max_abandoned!r}")
        self.node = node
        self.server = server
        self.max_drift = max_drift
        self.retry_interval = retry_interval
        self.renew_fraction = renew_fraction
        #: persisted: bumped on every start so request ids never repeat
        self.incarnation = 0
        self._seq = 0
        self.state: Literal["idle", "acquiring", "held"] = "idle"
        #: the outstanding acquire: (request id, local send time, ttl, caller)
        self._acquire: tuple[ReqId, float, float, Any] | None = None
        #: the lease held, if any
        self.lease: LeaseInfo | None = None
        #: the outstanding renewal: (request id, local send time)
        self._renew: tuple[ReqId, float] | None = None
        self.max_abandoned = max_abandoned
        # Invariant: ids of the acquire requests sent for the outstanding
        # acquire (its retries included), at most max_abandoned, oldest first.
        self._attempt: list[ReqId] = []
        # Invariant: ids of acquire requests whose caller gave up, at most
        # max_abandoned, oldest first; a grant for one is released on arrival.
        self._abandoned: OrderedDict[ReqId, None] = OrderedDict()
        #: grants for abandoned requests handed back unused
        self.released_unused = 0
        self.ignored = 0

    # -- observable state (read by drivers, tests and trace export)

    @property
    def last_req(self) -> ReqId:
        """The id of the last request this client issued."""
        return (self.incarnation, self._seq)

    @property
    def acquire_sent_at(self) -> float | None:
        """Local send time of the outstanding acquire, if any."""
        return None if self._acquire is None else self._acquire[1]

    @property
    def abandoned(self) -> tuple[ReqId, ...]:
        """Ids of abandoned acquire requests still remembered, oldest first."""
        return tuple(self._abandoned)

    @property
    def renewal(self) -> tuple[ReqId, float] | None:
        """The outstanding renewal's id and local send time, if any."""
        return self._renew

    def entitled(self, now: float) -> bool:
        """Whether the client may act on the guarded resource at local time ``now``."""
        return self.state == "held" and self.lease is not None and now < self.lease.deadline

    def validity(self, ttl: float) -> float:
        """Local validity of a lease of ``ttl``; see :func:`validity`."""
        return validity(ttl, self.max_drift)

    # -- Core protocol

    def snapshot_persistent(self) -> int:
        """The persisted incarnation number."""
        return self.incarnation

    def restore(self, snapshot: Any) -> None:
        """Load the persisted incarnation number into a freshly built client."""
        if not isinstance(snapshot, int):
            raise TypeError(f"expected an int incarnation, got {type(snapshot).__name__}")
        self.incarnation = snapshot

    def on_start(self, now: float, rng: random.Random) -> list[Effect]:
        """(Re)start under a new incarnation, persisted before anything is sent."""
        self.incarnation += 1
        self._seq = 0
        return [Persist(self.incarnation)]

    def _next_req(self) -> ReqId:
        self._seq += 1
        return (self.incarnation, self._seq)

    def _drop_lease(self) -> list[Effect]:
        self.state = "idle"
        self.lease = None
        self._renew = None
        return [CancelTimer(RENEW_TIMER), CancelTimer(EXPIRE_TIMER)]

    def on_client(self, now: float, request: ClientRequest) -> list[Effect]:
        """A local caller's operation; see the class docstring."""
        if request.op == "acquire":
            ttl = request.value
            if not _valid_ttl(ttl):
                return [Reply(request.client, f"ttl must be > 0, got {ttl!r}", ok=False)]
            if self.state != "idle":
                return [Reply(request.client, f"already {self.state}", ok=False)]
            return self._send_acquire(now, float(ttl), request.client)
        if request.op == "release":
            if self.state != "held" or self.lease is None:
                return [Reply(request.client, "no lease held", ok=False)]
            token = self.lease.token
            return [
                *self._drop_lease(),
                Send(self.server, ReleaseRequest(token)),
                Reply(request.client, token),
            ]
        if request.op == "abort":
            if self.state != "acquiring" or self._acquire is None:
                return [Reply(request.client, "no acquire outstanding", ok=False)]
            caller = self._acquire[3]
            self.state = "idle"
            self._acquire = None
            for req in self._attempt:
                self._abandoned[req] = None
            self._attempt.clear()
            while len(self._abandoned) > self.max_abandoned:
                self._abandoned.popitem(last=False)
            return [CancelTimer(RETRY_TIMER), Reply(caller, "aborted", ok=False)]
        return [Reply(request.client, f"unknown operation {request.op!r}", ok=False)]

    def _send_acquire(self, now: float, ttl: float, caller: Any) -> list[Effect]:
        req = self._next_req()
        if self.state == "idle":
            self._attempt.clear()
        self.state = "acquiring"
        self._acquire = (req, now, ttl, caller)
        self._attempt.append(req)
        if len(self._attempt) > self.max_abandoned:
            del self._attempt[0]
        return [
            Send(self.server, AcquireRequest(req, ttl)),
            SetTimer(RETRY_TIMER, self.retry_interval),
        ]

    def _send_renew(self, now: float) -> list[Effect]:
        assert self.lease is not None
        req = self._next_req()
        self._renew = (req, now)
        return [
            Send(self.server, RenewRequest(req, self.lease.token, self.lease.ttl)),
            SetTimer(RENEW_TIMER, self.retry_interval),
        ]

    def on_timer(self, now: float, name: str) -> list[Effect]:
        """Retry an unanswered acquire, renew a lease, or let an expired lease go."""
        if name == RETRY_TIMER and self.state == "acquiring" and self._acquire is not None:
            _, _, ttl, caller = self._acquire
            return self._send_acquire(now, ttl, caller)
        if name == RENEW_TIMER and self.entitled(now):
            return self._send_renew(now)
        if name == EXPIRE_TIMER and self.state == "held" and not self.entitled(now):
            return self._drop_lease()
        return []

    def on_message(self, now: float, src: int, msg: Any) -> list[Effect]:
        """Answers from the server; anything else is counted and ignored."""
        if src != self.server:
            self.ignored += 1
            return []
        if isinstance(msg, Granted):
            if _valid_req(msg.req) and msg.req in self._abandoned and _valid_token(msg.token):
                # Nobody will use this lease: hand it back now (see the class docs).
                self.released_unused += 1
                return [Send(self.server, ReleaseRequest(msg.token))]
            if self.state != "acquiring" or self._acquire is None or msg.req != self._acquire[0]:
                return []
            _, sent_at, _, caller = self._acquire
            self._acquire = None
            self._attempt.clear()
            deadline = sent_at + self.validity(msg.ttl)
            effects: list[Effect] = [CancelTimer(RETRY_TIMER)]
            if deadline <= now:
                self.state = "idle"
                return [
                    *effects,
                    Reply(caller, "grant arrived after its lease had lapsed", ok=False),
                ]
            self.state = "held"
            self.lease = LeaseInfo(msg.token, msg.ttl, deadline)
            return [
                *effects,
                SetTimer(EXPIRE_TIMER, deadline - now),
                SetTimer(RENEW_TIMER, self.validity(msg.ttl) * self.renew_fraction),
                Reply(caller, self.lease),
            ]
        if isinstance(msg, Renewed):
            if (
                self.state != "held"
                or self.lease is None
                or self._renew is None
                or msg.req != self._renew[0]
                or msg.token != self.lease.token
            ):
                return []
            _, sent_at = self._renew
            self._renew = None
            deadline = max(self.lease.deadline, sent_at + self.validity(msg.ttl))
            self.lease = attrs.evolve(self.lease, deadline=deadline)
            return [
                SetTimer(EXPIRE_TIMER, max(0.0, deadline - now)),
                SetTimer(RENEW_TIMER, self.validity(msg.ttl) * self.renew_fraction),
            ]
        if isinstance(msg, Denied):
            if (
                self.state == "acquiring"
                and self._acquire is not None
                and msg.req == self._acquire[0]
            ):
                caller = self._acquire[3]
                self.state = "idle"
                self._acquire = None
                self._attempt.clear()
                return [CancelTimer(RETRY_TIMER), Reply(caller, msg.reason, ok=False)]
            if self.state == "held" and self._renew is not None and msg.req == self._renew[0]:
                self._renew = None
                return [CancelTimer(RENEW_TIMER)]
            return []
        self.ignored += 1
        return []


# --------------------------------------------------------------------------- resource


@final
class FencedResource:
    """A guard for a resource written by lease holders: stale tokens are refused.

    Use it inside whatever owns the resource (a storage server, a file
    writer): call :meth:`check` with the writer's token before applying a
    write. It is also a :class:`~trio_foundation.protocols.effects.Core`, so a
    simulated resource node can run it directly, answering
    :class:`WriteRequest` with :class:`WriteAccepted` or :class:`WriteRefused`.
    """

    def __init__(self, node: int = 0) -> None:
        self.node = node
        # Invariant: the highest token ever accepted; never decreases.
        self.highest = 0
        #: the token of the last accepted write
        self.last_accepted = 0
        self.refused = 0

    def accepts(self, token: int) -> bool:
        """Whether a write with ``token`` would be accepted now (no state change)."""
        return token >= self.highest

    def check(self, token: int) -> None:
        """Record a write with ``token`` or refuse it.

        Raises:
            TypeError: if ``token`` is not an int.
            StaleTokenError: if ``token`` is below the highest accepted token.
        """
        from .._errors import StaleTokenError

        if not isinstance(token, int) or isinstance(token, bool):
            raise TypeError(f"token must be an int, got {type(token).__name__}")
        if not self.accepts(token):
            self.refused += 1
            raise StaleTokenError(token, self.highest)
        self.highest = max(self.highest, token)
        self.last_accepted = token

    def snapshot_persistent(self) -> int:
        """The highest accepted token (a real resource stores it with its data)."""
        return self.highest

    def restore(self, snapshot: Any) -> None:
        """Reload the highest accepted token."""
        if not isinstance(snapshot, int):
            raise TypeError(f"expected an int, got {type(snapshot).__name__}")
        self.highest = self.last_accepted = snapshot

    def on_start(self, now: float, rng: random.Random) -> list[Effect]:
        """Nothing to do on start."""
        return []

    def on_timer(self, now: float, name: str) -> list[Effect]:
        """The resource arms no timers."""
        return []

    def on_client(self, now: float, request: ClientRequest) -> list[Effect]:
        """No local operations; answers ``ok=False``."""
        return [Reply(request.client, "the fenced resource takes writes as messages", ok=False)]

    def on_message(self, now: float, src: int, msg: Any) -> list[Effect]:
        """Apply or refuse a :class:`WriteRequest`; anything else is ignored."""
        from .._errors import StaleTokenError

        if not isinstance(msg, WriteRequest) or not _valid_token(msg.token):
            return []
        try:
            self.check(msg.token)
        except StaleTokenError:
            return [Send(src, WriteRefused(msg.token, self.highest))]
        return [Persist(self.highest), Send(src, WriteAccepted(msg.token))]
