"""The lease lock as a replicated state machine: the lock service of a Raft cluster.

Theory of operation
-------------------

The lease-lock core (:mod:`~trio_foundation.protocols.lease_lock`) keeps its
locks on one server; here the same locks are the state of a deterministic
machine that every replica of a Raft log applies in log order, so whichever
member leads serves them and a crash of any minority loses nothing. The
clients are unchanged: :class:`~trio_foundation.protocols.lease_lock.LockClient`
cores whose ``AcquireRequest`` / ``RenewRequest`` / ``ReleaseRequest`` become
:class:`LockAcquire` / :class:`LockRenew` / :class:`LockRelease` commands,
answered with :class:`LockGranted` / :class:`LockRenewed` / :class:`LockDenied`
results that become the core's ``Granted`` / ``Renewed`` / ``Denied``. The
machine applies them exactly as :class:`~trio_foundation.protocols.lease_lock.
LockServer` handles the messages (per-client highest request id, a re-grant to
the holder, ``held`` while another client holds), with two differences that
replication forces:

* **Fencing tokens are log indexes.** A grant's token is the index of the log
  entry that applied it (the runtime passes it: :meth:`LockMachine.apply_at`).
  Entries are applied in index order on every replica and an index is never
  reused, so tokens strictly increase across grants, leaders and restarts with
  nothing persisted beyond the log itself.
* **Time is not replicated; expiry is a command.** A replica cannot read a clock
  (replicas would disagree), so a lock stays held until a :class:`LockRelease`
  or a :class:`LockExpire` is applied. ``LockExpire(name, token, since)`` is
  proposed by the *leader* (:func:`trio_foundation.coordination.raft_lock.
  keep_leases`) once ``ttl`` seconds of its own clock have passed since it first
  saw, applied in its own replica, the grant or renewal whose entry index is
  ``since``; it takes effect only if that entry is still the lock's latest
  (a renewal applied in between makes it a no-op).

Why this is safe (the lease-lock core's drift arithmetic, etcd's lease design):
a client that sent the request at local time ``s`` uses the lease until ``s +
ttl (1 - rho) / (1 + rho)`` of its clock, i.e. until at most ``ttl / (1 + rho)``
of real time after the send. The entry that grants or renews it is applied
after the send, and the leader looks at its replica later still, so it starts
counting no earlier than the send; ``ttl`` of the leader's clock is at least
``ttl / (1 + rho)`` of real time; the expiry is applied after it is proposed.
So no other client can be granted the lock before the holder's deadline has
passed in real time. A **new leader** inherits the held locks but not its
predecessor's timers: it starts each lock's count when it first sees the lock in
its replica after it took over (so every inherited lease gets at least its full
ttl again — the "wait out the ttl" of etcd's lease renewal on leader change,
and the Raft paper's §8 note that a leader's clock-based decisions must not
outlive its term). A deposed leader's expiry proposals are safe too: each was
timed against the entry it names, and an entry applied after that one voids it.
This replaces the lease-lock server's *quiet period after a restart*: the
replicated state says who holds what, only the timing restarts.

Abandoned requests: a connection that closes proposes :class:`LockClose`, which
releases every lock its client id holds and refuses every later acquire from
that id (a request still in flight in the cluster when the caller left); the
closed ids are a bounded table (``max_clients``, oldest forgotten first: a
request older than that could still be granted, and then expires after its
ttl).

Everything is bounded: locks held (``max_locks``), per-client request ids and
closed clients (``max_clients`` each). The machine never raises on a command:
malformed ones get :class:`LockDenied` with a reason (``bad command: ...``), as
the key-value machine answers :class:`~trio_foundation.protocols.kv_machine.
ErrorResult`.

:class:`ServiceMachine` is the machine ``foundation kv serve`` runs: the
key-value store (:class:`~trio_foundation.protocols.kv_machine.KVMachine`) and
the locks side by side in one log; a lock command travels as ``("lock",
command)``, a key-value one as before, so existing key-value clients are
unaffected. The credit ledger (:class:`~trio_foundation.protocols.ledger.Ledger`)
shares the log too: a ledger command travels as ``("ledger", command)`` and is
answered with a :class:`LedgerOutcome`; :class:`LedgerBalance` and
:class:`LedgerSnapshot` read it (``docs/economy.md``, "Running on Raft").
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Iterator
from typing import Annotated, Any, Final, Literal, TypeAlias, final

import msgspec

from . import kv_machine as kv
from . import ledger as led

__all__ = [
    "LEDGER_READ_LIMIT",
    "LEDGER_TAG",
    "LOCK_TAG",
    "HeldLock",
    "LedgerBalance",
    "LedgerBalanceResult",
    "LedgerOutcome",
    "LedgerSnapshot",
    "LedgerSnapshotResult",
    "LockAcquire",
    "LockClose",
    "LockCommand",
    "LockDenied",
    "LockDone",
    "LockExpire",
    "LockGranted",
    "LockMachine",
    "LockMachineConfig",
    "LockQuery",
    "LockRelease",
    "LockRenew",
    "LockRenewed",
    "LockResult",
    "LockState",
    "ServiceMachine",
    "ServiceQuery",
    "ServiceRequest",
    "ServiceResult",
]

LOCK_TAG: Final = "lock"
"""The first element of a lock command in a :class:`ServiceMachine`'s log: ``("lock", cmd)``."""
LEDGER_TAG: Final = "ledger"
"""The first element of a ledger command in a :class:`ServiceMachine`'s log: ``("ledger", cmd)``."""

_MAX_INT: Final = (1 << 63) - 1
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
ReqId: TypeAlias = tuple[int, int]

# --------------------------------------------------------------------------- commands


class LockAcquire(msgspec.Struct, frozen=True, tag="lock_acquire"):
    """Grant lock ``name`` to client ``owner`` for ``ttl`` seconds (``AcquireRequest``)."""

    name: Name
    owner: int
    req: ReqId
    ttl: float


class LockRenew(msgspec.Struct, frozen=True, tag="lock_renew"):
    """Extend ``owner``'s lease ``token`` of ``name`` by ``ttl`` seconds (``RenewRequest``)."""

    name: Name
    owner: int
    req: ReqId
    token: int
    ttl: float


class LockRelease(msgspec.Struct, frozen=True, tag="lock_release"):
    """``owner`` gives up lease ``token`` of ``name`` (``ReleaseRequest``)."""

    name: Name
    owner: int
    token: int


class LockExpire(msgspec.Struct, frozen=True, tag="lock_expire"):
    """The leader's verdict: lease ``token`` of ``name``, last granted or renewed by
    entry ``since``, has run out. A no-op if a later grant or renewal was applied."""

    name: Name
    token: int
    since: int


class LockClose(msgspec.Struct, frozen=True, tag="lock_close"):
    """Client ``owner`` is gone: release its locks, refuse its later acquires."""

    owner: int


LockCommand: TypeAlias = LockAcquire | LockRenew | LockRelease | LockExpire | LockClose


class LockQuery(msgspec.Struct, frozen=True, tag="lock_query"):
    """Read lock ``name``'s state (a read: linearizable through ReadIndex)."""

    name: Name


# --------------------------------------------------------------------------- results


class LockGranted(msgspec.Struct, frozen=True, tag="lock_granted"):
    """Request ``req`` obtained the lease; ``token`` is the grant's log index."""

    req: ReqId
    token: int
    ttl: float


class LockRenewed(msgspec.Struct, frozen=True, tag="lock_renewed"):
    """Renewal ``req`` of lease ``token`` was applied."""

    req: ReqId
    token: int
    ttl: float


class LockDenied(msgspec.Struct, frozen=True, tag="lock_denied"):
    """Request ``req`` was refused for ``reason`` (the lease-lock core's wording)."""

    req: ReqId
    reason: str


class LockDone(msgspec.Struct, frozen=True, tag="lock_done"):
    """A release, expiry, close or stale request: ``changed`` says whether a lock was freed
    (for a stale request: ``False``, and nothing is answered to the client core)."""

    changed: bool


class LockState(msgspec.Struct, frozen=True, tag="lock_state"):
    """A lock as replicated: ``holder`` 0 when free."""

    name: str
    holder: int
    token: int
    ttl: float
    since: int


LockResult: TypeAlias = LockGranted | LockRenewed | LockDenied | LockDone | LockState


@final
class HeldLock(msgspec.Struct, frozen=True):
    """A held lock as the leader's expiry keeper sees it."""

    name: str
    holder: int
    token: int
    ttl: float
    since: int


class LockMachineConfig(msgspec.Struct, frozen=True):
    """The lock machine's bounds; every replica must use the same (snapshots carry them).

    Attributes:
        max_ttl: the longest lease a client may ask for (seconds).
        max_locks: locks held at once.
        max_clients: per-client request ids and closed clients remembered.
    """

    max_ttl: float = 60.0
    max_locks: int = 10_000
    max_clients: int = 10_000

    def check(self) -> None:
        """Raise ``ValueError`` naming the first bound out of range."""
        if not (
            isinstance(self.max_ttl, int | float)
            and not isinstance(self.max_ttl, bool)
            and math.isfinite(self.max_ttl)
            and self.max_ttl > 0
        ):
            raise ValueError(f"max_ttl must be a finite number > 0, got {self.max_ttl!r}")
        for name in ("max_locks", "max_clients"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")


class _Lock(msgspec.Struct):
    holder: int
    token: int
    ttl: float
    since: int  # index of the entry of the latest grant or renewal


class _LockSnapshot(msgspec.Struct, frozen=True):
    version: int
    config: LockMachineConfig
    locks: tuple[tuple[str, int, int, float, int], ...]  # name order
    last_req: tuple[tuple[str, int, int, int], ...]  # (name, owner, incarnation, seq), LRU order
    closed: tuple[int, ...]  # oldest first
    applied: int


_SNAPSHOT_VERSION: Final = 1
_ENCODER: Final = msgspec.msgpack.Encoder()
_SNAPSHOT_DECODER: Final = msgspec.msgpack.Decoder(_LockSnapshot)
_NO_REQ: Final = (0, 0)


def _is_int(value: object, low: int = 0) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= _MAX_INT


def _is_req(req: object) -> bool:
    return isinstance(req, tuple) and len(req) == 2 and all(_is_int(x) for x in req)


def _is_ttl(ttl: object) -> bool:
    return (
        isinstance(ttl, int | float)
        and not isinstance(ttl, bool)
        and math.isfinite(ttl)
        and ttl > 0
    )


def _is_name(name: object) -> bool:
    return isinstance(name, str) and 1 <= len(name) <= 256


def _shape_error(c: object) -> str | None:
    """A field of the wrong type or range (a Struct built in Python is not checked)."""
    if not _is_name(getattr(c, "name", "x")):
        return "name must be a str of 1 to 256 characters"
    if not _is_int(getattr(c, "owner", 1), 1):
        return "owner must be an int in [1, 2**63)"
    if not _is_req(getattr(c, "req", _NO_REQ)):
        return "req must be a pair of ints >= 0"
    if not _is_ttl(getattr(c, "ttl", 1.0)):
        return "ttl must be a finite number > 0"
    for field in ("token", "since"):
        if not _is_int(getattr(c, field, 1), 1):
            return f"{field} must be an int in [1, 2**63)"
    return None


@final
class LockMachine:
    """The replicated lease locks (see the module docstring).

    Args:
        config: the bounds (the same on every replica).

    Raises:
        ValueError: a bound out of range.
    """

    def __init__(self, config: LockMachineConfig | None = None) -> None:
        self._reset(config if config is not None else LockMachineConfig())

    def _reset(self, config: LockMachineConfig) -> None:
        config.check()
        # an int max_ttl decodes as a float: keep one form, so snapshots compare equal
        self.config = msgspec.structs.replace(config, max_ttl=float(config.max_ttl))
        # Invariant: only held locks; len <= max_locks.
        self._locks: dict[str, _Lock] = {}
        # Invariant: per (name, client), the highest request id applied; LRU first.
        self._last_req: OrderedDict[tuple[str, int], ReqId] = OrderedDict()
        # Invariant: clients that closed, oldest first; len <= max_clients.
        self._closed: OrderedDict[int, None] = OrderedDict()
        #: the index of the last entry applied (0 before any)
        self.applied = 0

    # ----------------------------------------------------------------- applying

    def apply_at(self, index: int, command: object) -> LockResult:
        """Apply the lock command of log entry ``index``; never raises.

        Args:
            index: the entry's log index (the fencing token of a grant). Must
                exceed every index applied before; an entry at or below
                :attr:`applied` is refused as ``bad command`` (a runtime bug).
            command: a :data:`LockCommand`.
        """
        if not _is_int(index, 1) or index <= self.applied:
            return LockDenied(_NO_REQ, f"bad command: log index {index!r} after {self.applied}")
        self.applied = index
        problem = _shape_error(command)
        req = getattr(command, "req", _NO_REQ)
        if problem is not None:
            return LockDenied(req if _is_req(req) else _NO_REQ, f"bad command: {problem}")
        if isinstance(command, LockAcquire):
            return self._acquire(index, command)
        if isinstance(command, LockRenew):
            return self._renew(index, command)
        if isinstance(command, LockRelease):
            lock = self._locks.get(command.name)
            if lock is not None and (lock.holder, lock.token) == (command.owner, command.token):
                del self._locks[command.name]
                return LockDone(True)
            return LockDone(False)
        if isinstance(command, LockExpire):
            lock = self._locks.get(command.name)
            if lock is not None and (lock.token, lock.since) == (command.token, command.since):
                del self._locks[command.name]
                return LockDone(True)
            return LockDone(False)
        if isinstance(command, LockClose):
            return self._close(command.owner)
        return LockDenied(_NO_REQ, f"bad command: unknown lock command {type(command).__name__}")

    def _fresh(self, name: str, owner: int, req: ReqId) -> bool:
        key = (name, owner)
        last = self._last_req.get(key)
        if last is not None and req <= last:
            return False
        self._last_req[key] = req
        self._last_req.move_to_end(key)
        while len(self._last_req) > self.config.max_clients:
            self._last_req.popitem(last=False)
        return True

    def _too_long(self, req: ReqId, ttl: float) -> LockDenied | None:
        if ttl > self.config.max_ttl:
            return LockDenied(req, f"ttl {ttl} exceeds max_ttl {self.config.max_ttl}")
        return None

    def _acquire(self, index: int, c: LockAcquire) -> LockResult:
        if c.owner in self._closed:
            return LockDenied(c.req, "client closed its connection")
        if not self._fresh(c.name, c.owner, c.req):
            return LockDone(False)
        refused = self._too_long(c.req, c.ttl)
        if refused is not None:
            return refused
        lock = self._locks.get(c.name)
        if lock is not None and lock.holder != c.owner:
            return LockDenied(c.req, "held")
        if lock is None and len(self._locks) >= self.config.max_locks:
            return LockDenied(c.req, f"too many locks (max {self.config.max_locks})")
        self._locks[c.name] = _Lock(c.owner, index, float(c.ttl), index)
        return LockGranted(c.req, index, float(c.ttl))

    def _renew(self, index: int, c: LockRenew) -> LockResult:
        if not self._fresh(c.name, c.owner, c.req):
            return LockDone(False)
        refused = self._too_long(c.req, c.ttl)
        if refused is not None:
            return refused
        lock = self._locks.get(c.name)
        if lock is None or (lock.holder, lock.token) != (c.owner, c.token):
            return LockDenied(c.req, "not the holder of a live lease")
        lock.ttl = float(c.ttl)
        lock.since = index
        return LockRenewed(c.req, c.token, float(c.ttl))

    def _close(self, owner: int) -> LockResult:
        freed = [name for name, lock in self._locks.items() if lock.holder == owner]
        for name in freed:
            del self._locks[name]
        self._closed[owner] = None
        self._closed.move_to_end(owner)
        while len(self._closed) > self.config.max_clients:
            self._closed.popitem(last=False)
        return LockDone(bool(freed))

    def query(self, q: LockQuery) -> LockResult:
        """Lock ``q.name``'s state (``holder`` 0: free). Never raises."""
        if not isinstance(q, LockQuery) or not _is_name(q.name):
            return LockDenied(_NO_REQ, "bad command: not a lock query")
        lock = self._locks.get(q.name)
        if lock is None:
            return LockState(q.name, 0, 0, 0.0, 0)
        return LockState(q.name, lock.holder, lock.token, lock.ttl, lock.since)

    def held(self) -> Iterator[HeldLock]:
        """The held locks, in the order they were first granted (the keeper's view)."""
        for name, lock in self._locks.items():
            yield HeldLock(name, lock.holder, lock.token, lock.ttl, lock.since)

    def __len__(self) -> int:
        """The number of held locks."""
        return len(self._locks)

    # ----------------------------------------------------------------- snapshots

    def snapshot(self) -> bytes:
        """The whole state as msgpack bytes; equal states give equal bytes."""
        snap = _LockSnapshot(
            _SNAPSHOT_VERSION,
            self.config,
            tuple(
                (n, lk.holder, lk.token, lk.ttl, lk.since) for n, lk in sorted(self._locks.items())
            ),
            tuple((n, o, r[0], r[1]) for (n, o), r in self._last_req.items()),
            tuple(self._closed),
            self.applied,
        )
        return _ENCODER.encode(snap)

    def restore(self, data: bytes) -> None:
        """Replace the whole state with a :meth:`snapshot`'s.

        Raises:
            ValueError: not a lock snapshot of this version, or one above its bounds
                (the state is unchanged then).
        """
        try:
            snap = _SNAPSHOT_DECODER.decode(data)
        except msgspec.DecodeError as exc:
            raise ValueError(f"not a lock machine snapshot: {exc}") from None
        if snap.version != _SNAPSHOT_VERSION:
            raise ValueError(
                f"lock snapshot version {snap.version}, this library reads {_SNAPSHOT_VERSION}"
            )
        snap.config.check()
        if (
            len(snap.locks) > snap.config.max_locks
            or len(snap.last_req) > snap.config.max_clients
            or len(snap.closed) > snap.config.max_clients
        ):
            raise ValueError("lock snapshot above its bounds")
        self._reset(snap.config)
        # Held locks in grant order, as a replica that applied the log keeps them.
        for name, holder, token, ttl, since in sorted(snap.locks, key=lambda t: t[2]):
            self._locks[name] = _Lock(holder, token, ttl, since)
        for name, owner, inc, seq in snap.last_req:
            self._last_req[(name, owner)] = (inc, seq)
        for owner in snap.closed:
            self._closed[owner] = None
        self.applied = snap.applied


# --------------------------------------------------------------------------- the ledger


class LedgerOutcome(msgspec.Struct, frozen=True, tag="ledger_outcome"):
    """The result of a ``("ledger", command)`` entry, or a refused ledger read.

    (The ledger's own result tags, ``ok`` and ``error``, would collide with the
    key-value results in one union; this wrapper keeps them apart.)
    """

    result: led.Result


class LedgerBalance(msgspec.Struct, frozen=True, tag="ledger_balance"):
    """Read ``account``'s balance (a read: linearizable through ReadIndex)."""

    account: str


class LedgerBalanceResult(msgspec.Struct, frozen=True, tag="ledger_balance"):
    """``account``'s balance (credits not held) and the ledger's last journal ``seq``."""

    account: str
    balance: int
    seq: int


class LedgerSnapshot(msgspec.Struct, frozen=True, tag="ledger_snapshot"):
    """Read the whole ledger as :meth:`~trio_foundation.protocols.ledger.Ledger.snapshot`
    bytes (a read: linearizable through ReadIndex)."""


class LedgerSnapshotResult(msgspec.Struct, frozen=True, tag="ledger_snapshot"):
    """The ledger's snapshot bytes (restore them into a ``Ledger`` to inspect)."""

    data: bytes


_LEDGER_COMMANDS: Final = (
    led.Open,
    led.Mint,
    led.Burn,
    led.Transfer,
    led.Hold,
    led.Settle,
    led.Release,
)

LEDGER_READ_LIMIT: Final = 15 << 20
"""The largest ledger snapshot a :class:`LedgerSnapshot` read answers (bytes): the
answer must fit one Raft wire frame (16 MiB, with room for the reply around it); a
bigger ledger answers ``LedgerOutcome(ErrorResult("limit", ...))`` — read
balances one by one then."""


def _ledger_query(ledger: led.Ledger, query: LedgerBalance | LedgerSnapshot) -> ServiceResult:
    if isinstance(query, LedgerBalance):
        if not isinstance(query.account, str) or query.account not in ledger.balances():
            account = query.account if isinstance(query.account, str) else ""
            return LedgerOutcome(
                led.ErrorResult("unknown_account", f"no account {query.account!r}", account)
            )
        return LedgerBalanceResult(query.account, ledger.balance(query.account), ledger.seq)
    data = ledger.snapshot()
    if len(data) > LEDGER_READ_LIMIT:
        return LedgerOutcome(
            led.ErrorResult(
                "limit",
                f"ledger snapshot of {len(data)} bytes exceeds the read limit "
                f"({LEDGER_READ_LIMIT}); read balances one by one",
            )
        )
    return LedgerSnapshotResult(data)


# --------------------------------------------------------------------------- KV + locks

ServiceRequest: TypeAlias = kv.Request | tuple[Literal["lock", "ledger"], LockCommand | led.Command]
"""A :class:`ServiceMachine` log entry: a key-value request, ``("lock", command)`` or
``("ledger", command)`` (msgspec allows one array-like type in a union, so both
tagged forms share one tuple type; :meth:`ServiceMachine.apply_at` refuses a
command under the other machine's tag)."""
ServiceQuery: TypeAlias = kv.Get | kv.Range | kv.Watch | LockQuery | LedgerBalance | LedgerSnapshot
ServiceResult: TypeAlias = (
    kv.Result | LockResult | LedgerOutcome | LedgerBalanceResult | LedgerSnapshotResult
)


class _ServiceSnapshot(msgspec.Struct, frozen=True, tag="service"):
    version: int  # 1: key-value and locks; 2: and the ledger
    kv: bytes
    locks: bytes
    ledger: bytes = b""  # absent in version 1 (restored as an empty ledger)


# Version 2 carries the ledger: a library that reads only version 1 refuses it
# (by name) instead of dropping the ledger silently.
_SERVICE_VERSION: Final = 2


_SERVICE_DECODER: Final = msgspec.msgpack.Decoder(_ServiceSnapshot)


@final
class ServiceMachine:
    """The key-value store, the lease locks and the credit ledger in one replicated state machine.

    What ``foundation kv serve`` runs. Key-value requests go to
    :attr:`kv` (a :class:`~trio_foundation.protocols.kv_machine.KVMachine`),
    ``("lock", command)`` entries to :attr:`locks` (a :class:`LockMachine`),
    ``("ledger", command)`` entries to :attr:`ledger` (a
    :class:`~trio_foundation.protocols.ledger.Ledger`, answered as
    :class:`LedgerOutcome`). Every part is deterministic (no clock, no
    randomness, insertion- or name-ordered state), so replicas that apply the
    same log hold equal state and give equal results. A snapshot holds all
    three; :meth:`restore` also reads a snapshot from before the ledger (then
    the ledger is empty) and a bare key-value machine's snapshot (a data dir or
    backup from before the locks).

    Args:
        kv_config: the key-value machine's bounds.
        lock_config: the lock machine's bounds.
        ledger_config: the ledger's bounds and authorities (the same on every
            replica; a snapshot carries them).
    """

    def __init__(
        self,
        kv_config: kv.KVMachineConfig | None = None,
        lock_config: LockMachineConfig | None = None,
        ledger_config: led.LedgerConfig | None = None,
    ) -> None:
        self.kv = kv.KVMachine(kv_config)
        self.locks = LockMachine(lock_config)
        self.ledger = led.Ledger(ledger_config)

    def apply_at(self, index: int, command: Any) -> ServiceResult:
        """Apply log entry ``index``'s command (see the class docstring). Never raises."""
        if isinstance(command, tuple):
            if len(command) == 2 and command[0] == LOCK_TAG:
                if isinstance(command[1], _LEDGER_COMMANDS):
                    return LockDenied(_NO_REQ, "bad command: a ledger command under 'lock'")
                return self.locks.apply_at(index, command[1])
            if len(command) == 2 and command[0] == LEDGER_TAG:
                return self._apply_ledger(command[1])
            return kv.ErrorResult(
                "bad_command", "a tuple command must be ('lock', command) or ('ledger', command)"
            )
        return self.kv.apply(command)

    def _apply_ledger(self, command: Any) -> LedgerOutcome:
        if not isinstance(command, _LEDGER_COMMANDS):
            name = type(command).__name__
            return LedgerOutcome(led.ErrorResult("bad_command", f"not a ledger command: {name}"))
        return LedgerOutcome(self.ledger.apply(command))

    def apply(self, command: Any) -> ServiceResult:
        """Apply a key-value request or a ledger command; lock commands need
        :meth:`apply_at` (the log index).

        A lock command applied without its index is refused (``bad command``).
        """
        if isinstance(command, tuple):
            if len(command) == 2 and command[0] == LEDGER_TAG:
                return self._apply_ledger(command[1])
            if len(command) == 2 and command[0] == LOCK_TAG:
                return LockDenied(_NO_REQ, "bad command: a lock command needs its log index")
            return kv.ErrorResult(
                "bad_command", "a tuple command must be ('lock', command) or ('ledger', command)"
            )
        return self.kv.apply(command)

    def query(self, query: Any) -> ServiceResult:
        """A key-value read, a :class:`LockQuery`, a :class:`LedgerBalance` or a
        :class:`LedgerSnapshot`. Never raises."""
        if isinstance(query, LockQuery):
            return self.locks.query(query)
        if isinstance(query, LedgerBalance | LedgerSnapshot):
            return _ledger_query(self.ledger, query)
        return self.kv.query(query)

    def snapshot(self) -> bytes:
        """The three machines' state."""
        return _ENCODER.encode(
            _ServiceSnapshot(
                _SERVICE_VERSION, self.kv.snapshot(), self.locks.snapshot(), self.ledger.snapshot()
            )
        )

    def restore(self, data: bytes) -> None:
        """The machines' state; from a snapshot without a ledger, an empty ledger
        (with this machine's ledger config); from a bare key-value snapshot, no
        lock held and an empty ledger.

        Raises:
            ValueError: none of these (the state is unchanged then).
        """
        try:
            snap = _SERVICE_DECODER.decode(data)
        except msgspec.DecodeError:
            self.kv.restore(data)  # raises ValueError naming the problem
            self.locks = LockMachine(self.locks.config)
            self.ledger = led.Ledger(self.ledger.config)
            return
        if snap.version not in (1, _SERVICE_VERSION):
            raise ValueError(f"service snapshot version {snap.version}, this library reads 1 and 2")
        if snap.version == 1 and snap.ledger:
            raise ValueError("service snapshot version 1 cannot hold a ledger")
        locks = LockMachine(self.locks.config)
        locks.restore(snap.locks)
        ledger = led.Ledger(self.ledger.config)
        if snap.ledger:
            ledger.restore(snap.ledger)
        self.kv.restore(snap.kv)
        self.locks = locks
        self.ledger = ledger
