"""The replicated key-value store's state machine: pure, deterministic, msgspec on the wire.

Theory of operation
-------------------

Every replica applies the same committed commands in the same order to a
:class:`KVMachine` and so holds the same state and returns the same results:
the machine reads no clock, draws no randomness, never iterates a hash-ordered
collection, and answers **every** input — including a malformed one — with a
result. A bad command gets an :class:`ErrorResult`, which is part of the
replicated state like any other result; an exception would stop one replica
and not the others.

The data model is :class:`~trio_foundation.coordination.kv.MemoryKV`'s (and
etcd's): a store-wide *revision* starting at 1 and incremented by every write;
each key carries ``create_revision``, ``mod_revision`` and ``version``; a delete
publishes an event whose ``kv`` has an empty value and the delete's revision.
The last ``history`` events are kept so a watch can start in the past; a start
revision older than the oldest kept one is answered ``compacted`` (never
skipped silently), exactly as ``MemoryKV.watch`` raises ``CompactedError``.
A :class:`Compact` command drops the events before a revision explicitly.

**Exactly-once writes** (Ongaro's dissertation, §6.3). A client first opens a
*session* (:class:`OpenSession`; the machine assigns the id, so ids never
collide) and then numbers its requests ``1, 2, 3...``. For each session the
machine keeps the last sequence number and the result of the last write; a
request whose number equals the last one is a retry and gets the cached result
without being applied again; an older number is refused (``stale_request``).
Sessions are bounded: at most ``max_sessions`` (opening one more evicts the
least recently used), and a session idle for more than ``session_ttl`` units of
the ``now`` carried by the requests is expired (the leader stamps ``now`` — a
log index or its clock in milliseconds — into each request, so expiry is the
same on every replica; the machine's clock is the largest ``now`` seen). A
request on an unknown, expired or evicted session is refused
(``session_expired``) and **not** applied: it might be the retry of a write that
was applied before the session vanished. Requests with ``client=0`` have no
session and no deduplication.

Reads (:class:`Get`, :class:`Range`, :class:`Watch`) may go through the log too
(they are then linearizable by position) or be answered from a replica with
:meth:`KVMachine.query` after a ReadIndex round; they are never cached.

Everything is bounded: keys (``max_keys``, ``max_key_bytes``), values
(``max_value_bytes``), events (``history``), sessions, and the size of one range
or watch answer (``max_range``; the answer says ``more``/``next_revision``). The
memory, at worst, is about ``(max_keys + 2 * history + max_sessions) *
(max_key_bytes + max_value_bytes)`` (keys; events with their previous value;
one cached result per session).
"""

from __future__ import annotations

import bisect
from collections import OrderedDict, deque
from typing import Any, Final, Literal, TypeAlias, final

import msgspec

__all__ = [
    "KV",
    "Cas",
    "CasResult",
    "CasRevision",
    "CloseSession",
    "Command",
    "Compact",
    "CompactResult",
    "Delete",
    "DeleteResult",
    "ErrorResult",
    "Event",
    "Get",
    "GetResult",
    "KVMachine",
    "KVMachineConfig",
    "OpenSession",
    "Put",
    "PutResult",
    "Range",
    "RangeResult",
    "Request",
    "Result",
    "SessionResult",
    "Watch",
    "WatchResult",
    "decode_request",
    "decode_result",
    "encode",
]

_MAX_INT: Final = (1 << 63) - 1

# --------------------------------------------------------------------------- commands


class Get(msgspec.Struct, frozen=True, tag="get"):
    """Read one key."""

    key: bytes


class Put(msgspec.Struct, frozen=True, tag="put"):
    """Write one key."""

    key: bytes
    value: bytes


class Delete(msgspec.Struct, frozen=True, tag="delete"):
    """Delete one key."""

    key: bytes


class Cas(msgspec.Struct, frozen=True, tag="cas"):
    """Write ``new`` if the key's value is ``expect`` (``None``: the key is absent)."""

    key: bytes
    expect: bytes | None
    new: bytes


class CasRevision(msgspec.Struct, frozen=True, tag="cas_revision"):
    """Write ``new`` if the key's ``mod_revision`` is ``mod_revision`` (0: absent)."""

    key: bytes
    mod_revision: int
    new: bytes


class Range(msgspec.Struct, frozen=True, tag="range"):
    """Every key starting with ``prefix``, in key order; at most ``limit`` (0: all,
    capped by ``max_range``)."""

    prefix: bytes
    limit: int = 0


class Watch(msgspec.Struct, frozen=True, tag="watch"):
    """The events under ``prefix`` from ``start_revision`` on (0: from now), at most
    ``limit`` (0: up to ``max_range``). A watcher polls with the answer's
    ``next_revision``."""

    prefix: bytes
    start_revision: int
    limit: int = 0


class Compact(msgspec.Struct, frozen=True, tag="compact"):
    """Drop the events before ``revision`` (at most the current revision; idempotent)."""

    revision: int


class OpenSession(msgspec.Struct, frozen=True, tag="open_session"):
    """Open a deduplication session; the result carries its id."""


class CloseSession(msgspec.Struct, frozen=True, tag="close_session"):
    """Close the request's session (``Request.client``)."""


Command: TypeAlias = (
    Get | Put | Delete | Cas | CasRevision | Range | Watch | Compact | OpenSession | CloseSession
)
_WRITES: Final = (Put, Delete, Cas, CasRevision, Compact, CloseSession)


class Request(msgspec.Struct, frozen=True):
    """One entry of the replicated log.

    Attributes:
        command: what to do.
        client: the session id (from :class:`OpenSession`), 0 for none.
        seq: the request's number in its session (1, 2, ...; a retry reuses it).
        now: the leader's stamp (log index or milliseconds) for session expiry;
            non-decreasing in practice, and a smaller one is ignored.
    """

    command: Command
    client: int = 0
    seq: int = 0
    now: int = 0


# --------------------------------------------------------------------------- results


class KV(msgspec.Struct, frozen=True):
    """One key as stored (the fields of :class:`~trio_foundation.coordination.kv.KeyValue`)."""

    key: bytes
    value: bytes
    create_revision: int
    mod_revision: int
    version: int
    lease: int = 0


class Event(msgspec.Struct, frozen=True):
    """One change (the fields of :class:`~trio_foundation.coordination.kv.WatchEvent`)."""

    type: Literal["PUT", "DELETE"]
    kv: KV
    prev: KV | None = None


class GetResult(msgspec.Struct, frozen=True, tag="get"):
    """The key (or ``None``) and the revision it was read at."""

    kv: KV | None
    revision: int


class PutResult(msgspec.Struct, frozen=True, tag="put"):
    """The write's revision."""

    revision: int


class DeleteResult(msgspec.Struct, frozen=True, tag="delete"):
    """Whether the key existed, and the store's revision after the call."""

    deleted: bool
    revision: int


class CasResult(msgspec.Struct, frozen=True, tag="cas"):
    """As :class:`~trio_foundation.coordination.kv.CasResult`."""

    succeeded: bool
    revision: int
    current: KV | None


class RangeResult(msgspec.Struct, frozen=True, tag="range"):
    """The keys in key order, the revision, and whether the cap cut the answer."""

    kvs: tuple[KV, ...]
    revision: int
    more: bool = False


class WatchResult(msgspec.Struct, frozen=True, tag="watch"):
    """Events in revision order; poll again from ``next_revision``."""

    events: tuple[Event, ...]
    revision: int
    next_revision: int


class CompactResult(msgspec.Struct, frozen=True, tag="compact"):
    """The oldest revision whose event is kept now (``revision + 1`` if none is)."""

    oldest: int


class SessionResult(msgspec.Struct, frozen=True, tag="session"):
    """The session opened (or closed)."""

    client: int


ErrorCode: TypeAlias = Literal[
    "bad_command", "too_large", "too_many_keys", "compacted", "session_expired", "stale_request"
]


class ErrorResult(msgspec.Struct, frozen=True, tag="error"):
    """A command refused, deterministically.

    Attributes:
        code: ``bad_command`` (malformed or out of range), ``too_large`` (a key
            or value above its limit), ``too_many_keys``, ``compacted`` (the
            revision asked for is older than the events kept; see
            ``compact_revision``), ``session_expired`` (unknown session: not
            applied), ``stale_request`` (a sequence number below the session's
            last: not applied).
        message: a sentence for humans.
        compact_revision: for ``compacted``: the oldest revision still kept.
    """

    code: ErrorCode
    message: str
    compact_revision: int = 0


Result: TypeAlias = (
    GetResult
    | PutResult
    | DeleteResult
    | CasResult
    | RangeResult
    | WatchResult
    | CompactResult
    | SessionResult
    | ErrorResult
)

_ENCODER: Final = msgspec.msgpack.Encoder()
_REQUEST_DECODER: Final = msgspec.msgpack.Decoder(Request)
_RESULT_DECODER: Final = msgspec.msgpack.Decoder(Result)


def encode(value: Request | Result) -> bytes:
    """msgpack bytes of a request or a result."""
    return _ENCODER.encode(value)


def decode_request(data: bytes) -> Request:
    """A request from :func:`encode`'s bytes.

    Raises:
        msgspec.DecodeError: the bytes are not a valid request (``ValidationError``
            is a subclass).
    """
    return _REQUEST_DECODER.decode(data)


def decode_result(data: bytes) -> Result:
    """A result from :func:`encode`'s bytes.

    Raises:
        msgspec.DecodeError: the bytes are not a valid result.
    """
    return _RESULT_DECODER.decode(data)


# --------------------------------------------------------------------------- the machine


class KVMachineConfig(msgspec.Struct, frozen=True):
    """The machine's bounds; every replica must use the same (snapshots carry them).

    Attributes:
        history: events kept for watches that start in the past.
        max_keys: keys the store may hold.
        max_key_bytes: longest key.
        max_value_bytes: longest value.
        max_sessions: open sessions (the least recently used is evicted).
        session_ttl: idle time, in units of :attr:`Request.now`, after which a
            session expires.
        max_range: most keys in one range answer and events in one watch answer.
    """

    history: int = 10_000
    max_keys: int = 1_000_000
    max_key_bytes: int = 4096
    max_value_bytes: int = 1 << 20
    max_sessions: int = 10_000
    session_ttl: int = 3_600_000
    max_range: int = 10_000

    def check(self) -> None:
        """Raise ``ValueError`` naming the first bound that is not a positive int."""
        for name in self.__struct_fields__:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")


class _Session(msgspec.Struct):
    seq: int
    result: Any  # the result of the write numbered ``seq`` (None after a read)
    last_active: int


class _Snapshot(msgspec.Struct, frozen=True):
    version: int
    config: KVMachineConfig
    revision: int
    clock: int
    next_client: int
    data: tuple[KV, ...]  # key order
    history: tuple[Event, ...]  # revision order
    sessions: tuple[
        tuple[int, int, bytes, int], ...
    ]  # (client, seq, result, last_active), LRU order


_SNAPSHOT_VERSION: Final = 1
_SNAPSHOT_DECODER: Final = msgspec.msgpack.Decoder(_Snapshot)


def _error(code: ErrorCode, message: str, compact_revision: int = 0) -> ErrorResult:
    return ErrorResult(code, message, compact_revision)


def _is_int(value: object, low: int = 0) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= _MAX_INT


@final
class KVMachine:
    """The key-value state machine (see the module docstring).

    Args:
        config: the bounds (the same on every replica).

    Raises:
        ValueError: a bound is not a positive int.
    """

    def __init__(self, config: KVMachineConfig | None = None) -> None:
        self._reset(config if config is not None else KVMachineConfig())

    def _reset(self, config: KVMachineConfig) -> None:
        config.check()
        self.config = config
        #: the store's revision: 1 + the number of writes applied
        self.revision = 1
        self._clock = 0
        self._next_client = 1
        self._data: dict[bytes, KV] = {}
        self._keys: list[bytes] = []  # sorted; Invariant: sorted(self._data)
        self._history: deque[Event] = deque(maxlen=config.history)
        self._sessions: OrderedDict[int, _Session] = OrderedDict()  # LRU first

    # ----------------------------------------------------------------- applying

    def apply(self, request: Request | bytes) -> Result:
        """Apply one committed log entry and return its result. Never raises.

        Args:
            request: a :class:`Request`, or its :func:`encode`'d bytes.

        Returns:
            the command's result, or an :class:`ErrorResult` (malformed input,
            a bound exceeded, an unknown session, a stale sequence number).
        """
        if isinstance(request, bytes):
            try:
                request = decode_request(request)
            except msgspec.DecodeError as exc:
                return _error("bad_command", f"undecodable request: {exc}")
        if not isinstance(request, Request):
            return _error("bad_command", f"not a Request: {type(request).__name__}")
        if not (_is_int(request.client) and _is_int(request.seq) and _is_int(request.now)):
            return _error("bad_command", "client, seq and now must be ints in [0, 2**63)")
        self._clock = max(self._clock, request.now)
        self._expire()
        command = request.command
        if isinstance(command, OpenSession):
            return self._open_session()
        if request.client == 0:
            return self._execute(command)
        session = self._sessions.get(request.client)
        if session is None:
            return _error(
                "session_expired", f"session {request.client} is unknown or expired; not applied"
            )
        self._sessions.move_to_end(request.client)
        session.last_active = self._clock
        if request.seq < session.seq:
            return _error(
                "stale_request",
                f"request {request.seq} of session {request.client} is older than"
                f" {session.seq}; not applied",
            )
        if request.seq == session.seq and session.result is not None:
            return session.result  # type: ignore[no-any-return]
        result = self._execute(command)
        if isinstance(command, CloseSession):
            self._sessions.pop(request.client, None)
            return result
        session.seq = request.seq
        session.result = result if isinstance(command, _WRITES) else None
        return result

    def query(self, command: Get | Range | Watch) -> Result:
        """Answer a read without going through the log (after a ReadIndex round).

        Never raises; a command that is not a read gets ``bad_command``.
        """
        if not isinstance(command, Get | Range | Watch):
            return _error("bad_command", f"{type(command).__name__} is not a read")
        return self._execute(command)

    def _open_session(self) -> Result:
        client = self._next_client
        self._next_client += 1
        while len(self._sessions) >= self.config.max_sessions:
            self._sessions.popitem(last=False)
        self._sessions[client] = _Session(0, None, self._clock)
        return SessionResult(client)

    def _expire(self) -> None:
        horizon = self._clock - self.config.session_ttl
        while self._sessions:
            client, session = next(iter(self._sessions.items()))
            if session.last_active >= horizon:
                break
            del self._sessions[client]

    def _execute(self, command: object) -> Result:
        handler = _HANDLERS.get(type(command))
        if handler is None:
            return _error("bad_command", f"unknown command {type(command).__name__}")
        problem = _shape_error(command)
        if problem is not None:
            return _error("bad_command", problem)
        return handler(self, command)  # type: ignore[no-any-return]

    # ----------------------------------------------------------------- commands

    def _key_error(self, key: bytes) -> ErrorResult | None:
        if len(key) > self.config.max_key_bytes:
            return _error(
                "too_large", f"key of {len(key)} bytes, the limit is {self.config.max_key_bytes}"
            )
        return None

    def _write(self, key: bytes, value: bytes) -> KV | ErrorResult:
        problem = self._key_error(key)
        if problem is not None:
            return problem
        if len(value) > self.config.max_value_bytes:
            return _error(
                "too_large",
                f"value of {len(value)} bytes, the limit is {self.config.max_value_bytes}",
            )
        old = self._data.get(key)
        if old is None and len(self._data) >= self.config.max_keys:
            return _error("too_many_keys", f"the store holds {self.config.max_keys} keys already")
        self.revision += 1
        kv = KV(
            key,
            value,
            old.create_revision if old else self.revision,
            self.revision,
            old.version + 1 if old else 1,
        )
        if old is None:
            bisect.insort(self._keys, key)
        self._data[key] = kv
        self._history.append(Event("PUT", kv, old))
        return kv

    def _get(self, c: Get) -> Result:
        return self._key_error(c.key) or GetResult(self._data.get(c.key), self.revision)

    def _put(self, c: Put) -> Result:
        kv = self._write(c.key, c.value)
        return kv if isinstance(kv, ErrorResult) else PutResult(kv.mod_revision)

    def _delete(self, c: Delete) -> Result:
        problem = self._key_error(c.key)
        if problem is not None:
            return problem
        old = self._data.pop(c.key, None)
        if old is None:
            return DeleteResult(False, self.revision)
        del self._keys[bisect.bisect_left(self._keys, c.key)]
        self.revision += 1
        self._history.append(Event("DELETE", KV(c.key, b"", 0, self.revision, 0), old))
        return DeleteResult(True, self.revision)

    def _cas(self, c: Cas) -> Result:
        problem = self._key_error(c.key)
        if problem is not None:
            return problem
        old = self._data.get(c.key)
        if (old.value if old else None) != c.expect:
            return CasResult(False, self.revision, old)
        kv = self._write(c.key, c.new)
        return kv if isinstance(kv, ErrorResult) else CasResult(True, self.revision, kv)

    def _cas_revision(self, c: CasRevision) -> Result:
        problem = self._key_error(c.key)
        if problem is not None:
            return problem
        old = self._data.get(c.key)
        if (old.mod_revision if old else 0) != c.mod_revision:
            return CasResult(False, self.revision, old)
        kv = self._write(c.key, c.new)
        return kv if isinstance(kv, ErrorResult) else CasResult(True, self.revision, kv)

    def _range(self, c: Range) -> Result:
        cap = self.config.max_range
        limit = min(c.limit, cap) if c.limit else cap
        start = bisect.bisect_left(self._keys, c.prefix)
        found: list[KV] = []
        more = False
        for key in self._keys[start : start + limit + 1]:  # one extra: is there more?
            if not key.startswith(c.prefix):
                break
            if len(found) == limit:
                more = True
                break
            found.append(self._data[key])
        return RangeResult(tuple(found), self.revision, more)

    def _oldest(self) -> int:
        """The oldest revision a watch may start at."""
        return self._history[0].kv.mod_revision if self._history else self.revision + 1

    def _watch(self, c: Watch) -> Result:
        if c.start_revision == 0:
            return WatchResult((), self.revision, self.revision + 1)
        oldest = self._oldest()
        if c.start_revision < oldest and c.start_revision <= self.revision:
            return _error(
                "compacted",
                f"revision {c.start_revision} has been compacted; oldest kept is {oldest}",
                oldest,
            )
        cap = self.config.max_range
        limit = min(c.limit, cap) if c.limit else cap
        first = c.start_revision - oldest  # events are one per revision, consecutive
        events: list[Event] = []
        next_revision = max(c.start_revision, self.revision + 1)
        for i in range(max(first, 0), len(self._history)):
            event = self._history[i]
            if event.kv.key.startswith(c.prefix):
                if len(events) == limit:
                    next_revision = event.kv.mod_revision
                    break
                events.append(event)
        return WatchResult(tuple(events), self.revision, next_revision)

    def _compact(self, c: Compact) -> Result:
        if c.revision > self.revision:
            return _error(
                "bad_command", f"cannot compact to {c.revision}, above the revision {self.revision}"
            )
        while self._history and self._history[0].kv.mod_revision < c.revision:
            self._history.popleft()
        return CompactResult(self._oldest())

    def _close_session(self, c: CloseSession) -> Result:
        return SessionResult(0)

    # ----------------------------------------------------------------- snapshots

    def snapshot(self) -> bytes:
        """The whole state as msgpack bytes; equal states give equal bytes."""
        snap = _Snapshot(
            version=_SNAPSHOT_VERSION,
            config=self.config,
            revision=self.revision,
            clock=self._clock,
            next_client=self._next_client,
            data=tuple(self._data[k] for k in self._keys),
            history=tuple(self._history),
            sessions=tuple(
                (c, s.seq, b"" if s.result is None else encode(s.result), s.last_active)
                for c, s in self._sessions.items()
            ),
        )
        return _ENCODER.encode(snap)

    def restore(self, data: bytes) -> None:
        """Replace the whole state (bounds included) with a :meth:`snapshot`'s.

        Raises:
            ValueError: the bytes are not a snapshot of this version, or break
                the machine's invariants (the state is unchanged then).
        """
        try:
            snap = _SNAPSHOT_DECODER.decode(data)
        except msgspec.DecodeError as exc:
            raise ValueError(f"not a key-value machine snapshot: {exc}") from None
        if snap.version != _SNAPSHOT_VERSION:
            raise ValueError(
                f"snapshot version {snap.version}, this library reads {_SNAPSHOT_VERSION}"
            )
        snap.config.check()
        keys = [kv.key for kv in snap.data]
        if keys != sorted(set(keys)) or len(keys) > snap.config.max_keys:
            raise ValueError("snapshot keys are not unique and sorted, or too many")
        if len(snap.history) > snap.config.history or len(snap.sessions) > snap.config.max_sessions:
            raise ValueError("snapshot history or sessions above their bounds")
        revs = [e.kv.mod_revision for e in snap.history]
        if revs and revs != list(range(revs[0], revs[0] + len(revs))):
            raise ValueError("snapshot events are not one per consecutive revision")
        if revs and revs[-1] != snap.revision:
            raise ValueError("snapshot events do not end at the snapshot's revision")
        sessions: OrderedDict[int, _Session] = OrderedDict()
        for client, seq, blob, last_active in snap.sessions:
            try:
                result = decode_result(blob) if blob else None
            except msgspec.DecodeError as exc:
                raise ValueError(f"snapshot session {client}: {exc}") from None
            sessions[client] = _Session(seq, result, last_active)
        self._reset(snap.config)
        self.revision = snap.revision
        self._clock = snap.clock
        self._next_client = snap.next_client
        self._data = {kv.key: kv for kv in snap.data}
        self._keys = keys
        self._history.extend(snap.history)
        self._sessions = sessions

    # ----------------------------------------------------------------- inspection

    def __len__(self) -> int:
        """The number of keys."""
        return len(self._data)

    @property
    def sessions(self) -> int:
        """Open sessions."""
        return len(self._sessions)

    @property
    def events(self) -> int:
        """Events kept for watches."""
        return len(self._history)


def _shape_error(command: object) -> str | None:
    """A description of a field of the wrong type or range (a Struct built in Python
    is not type-checked by msgspec), or ``None``."""
    for name in getattr(command, "__struct_fields__", ()):
        value = getattr(command, name)
        if name in ("key", "value", "new", "prefix"):
            if not isinstance(value, bytes):
                return f"{name} must be bytes, got {type(value).__name__}"
        elif name == "expect":
            if value is not None and not isinstance(value, bytes):
                return f"expect must be bytes or None, got {type(value).__name__}"
        elif not _is_int(value):
            return f"{name} must be an int in [0, 2**63), got {value!r}"
    return None


_HANDLERS: Final[dict[type, Any]] = {
    Get: KVMachine._get,
    Put: KVMachine._put,
    Delete: KVMachine._delete,
    Cas: KVMachine._cas,
    CasRevision: KVMachine._cas_revision,
    Range: KVMachine._range,
    Watch: KVMachine._watch,
    Compact: KVMachine._compact,
    CloseSession: KVMachine._close_session,
}
