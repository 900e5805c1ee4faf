"""The Raft service's wire protocol and its storage encoding (msgspec; never pickle).

One TCP port per node carries both kinds of traffic:

* **peer messages** — the core's :class:`~trio_foundation.protocols.raft.RaftMessage`
  values mirrored as :class:`~trio_foundation.runtime.codec.WireMessage` structs
  (:func:`to_wire` / :func:`from_wire`);
* **client messages** — :class:`CSubmit`, :class:`CSubmitBatch`, :class:`CRead`,
  :class:`CStatus` to a node, :class:`CReply` / :class:`CBatchReply` /
  :class:`CStatusReply` back. A client is a transport
  node whose id is above :data:`MAX_MEMBER_ID`; members have ids at or below it.

Commands, queries and results travel as opaque ``bytes``: the service layer
encodes the user's values (MessagePack through msgspec) before they reach the
core, so the core's entries, snapshots and session table hold only bytes, ints
and :class:`~trio_foundation.protocols.raft.Config` values, which this module
encodes for the durable log (:func:`encode_entry`, :func:`encode_snapshot` and
their inverses).
"""

from __future__ import annotations

import functools
from typing import Annotated, Any, Final, Literal, TypeAlias

import attrs
import msgspec

from ..protocols import raft as core
from ..runtime.codec import WireMessage, WireProtocol

__all__ = [
    "MAX_MEMBER_ID",
    "RAFT_PROTOCOL",
    "MAX_BATCH",
    "DEFAULT_MAX_FRAME",
    "FRAME_MARGIN",
    "MIN_FRAME",
    "SnapshotAssembler",
    "WSnapshotChunk",
    "max_command_bytes",
    "raft_protocol",
    "snapshot_blob",
    "snapshot_chunk",
    "snapshot_chunks",
    "split_append",
    "CAdmin",
    "CBatchItem",
    "CBatchReply",
    "CBatchResult",
    "CSnapshot",
    "CRead",
    "CReply",
    "CStatus",
    "CStatusReply",
    "CSubmit",
    "CSubmitBatch",
    "decode_entry",
    "decode_snapshot",
    "encode_entry",
    "encode_snapshot",
    "from_wire",
    "to_wire",
]

MAX_MEMBER_ID: Final = (1 << 32) - 1
"""The largest id of a cluster member; clients pick ids above it."""

Nat = Annotated[int, msgspec.Meta(ge=0)]
Kind: TypeAlias = Literal["command", "config", "noop"]


class WEntry(msgspec.Struct, frozen=True, array_like=True):
    """A log entry: ``command``-kind entries carry the session and the command bytes;
    ``config``-kind ones the voters and learners."""

    term: Nat
    index: Nat
    kind: Kind
    client_id: int | None = None
    request_id: Nat = 0
    command: bytes = b""
    voters: tuple[Nat, ...] = ()
    learners: tuple[Nat, ...] = ()


class WSession(msgspec.Struct, frozen=True, array_like=True):
    """One row of the replicated session table."""

    client_id: int
    request_id: Nat
    result: bytes


class WSnapshot(msgspec.Struct, frozen=True, array_like=True):
    """A snapshot as stored."""

    index: Nat
    term: Nat
    voters: tuple[Nat, ...]
    learners: tuple[Nat, ...]
    data: bytes
    sessions: tuple[WSession, ...]


class WRequestVote(WireMessage, tag="rv", frozen=True):
    """:class:`~trio_foundation.protocols.raft.RequestVote`."""

    term: Nat
    candidate: Nat
    last_log_index: Nat
    last_log_term: Nat
    pre_vote: bool
    transfer: bool


class WRequestVoteResponse(WireMessage, tag="rvr", frozen=True):
    """:class:`~trio_foundation.protocols.raft.RequestVoteResponse`."""

    term: Nat
    granted: bool
    pre_vote: bool


class WAppendEntries(WireMessage, tag="ae", frozen=True):
    """:class:`~trio_foundation.protocols.raft.AppendEntries`."""

    term: Nat
    leader: Nat
    prev_log_index: Nat
    prev_log_term: Nat
    entries: tuple[WEntry, ...]
    leader_commit: Nat
    read_id: Nat


class WAppendEntriesResponse(WireMessage, tag="aer", frozen=True):
    """:class:`~trio_foundation.protocols.raft.AppendEntriesResponse`."""

    term: Nat
    success: bool
    match_index: Nat
    conflict_index: Nat
    conflict_term: Nat
    read_id: Nat


class WInstallSnapshot(WireMessage, tag="is", frozen=True):
    """:class:`~trio_foundation.protocols.raft.InstallSnapshot`."""

    term: Nat
    leader: Nat
    snapshot: WSnapshot
    read_id: Nat


class WInstallSnapshotResponse(WireMessage, tag="isr", frozen=True):
    """:class:`~trio_foundation.protocols.raft.InstallSnapshotResponse`."""

    term: Nat
    match_index: Nat
    read_id: Nat


class WTimeoutNow(WireMessage, tag="tn", frozen=True):
    """:class:`~trio_foundation.protocols.raft.TimeoutNow`."""

    term: Nat


class CSubmit(WireMessage, tag="submit", frozen=True):
    """Client → node: propose ``command`` under the session ``(client_id, request_id)``.

    ``req`` identifies the request on this connection; the reply echoes it.
    """

    req: Nat
    client_id: int
    request_id: Nat
    command: bytes


MAX_BATCH: Final = 1024
"""The most commands one :class:`CSubmitBatch` carries."""


class CBatchItem(msgspec.Struct, frozen=True, array_like=True):
    """One command of a :class:`CSubmitBatch`, under its own session."""

    client_id: int
    request_id: Nat
    command: bytes


class CSubmitBatch(WireMessage, tag="submit_batch", frozen=True):
    """Client → node: propose each command as its own log entry, in order (one
    request for many; at most :data:`MAX_BATCH`). The reply is a :class:`CBatchReply`."""

    req: Nat
    items: tuple[CBatchItem, ...]


class CBatchResult(msgspec.Struct, frozen=True, array_like=True):
    """The outcome of one command of a batch (the fields of :class:`CReply`)."""

    outcome: Literal["ok", "not_leader", "rejected", "unknown"]
    value: bytes = b""
    leader: int | None = None
    reason: str = ""


class CBatchReply(WireMessage, tag="batch_reply", frozen=True):
    """Node → client: one :class:`CBatchResult` per command of a :class:`CSubmitBatch`."""

    req: Nat
    results: tuple[CBatchResult, ...]


class CRead(WireMessage, tag="read", frozen=True):
    """Client → node: answer ``query`` linearizably (ReadIndex)."""

    req: Nat
    query: bytes


class CAdmin(WireMessage, tag="admin", frozen=True):
    """Client → node: a membership change of one server (the core's operation ``op``)."""

    req: Nat
    op: Literal["add_server", "add_learner", "remove_server"]
    node: Nat


class CSnapshot(WireMessage, tag="snapshot", frozen=True):
    """Client → node: snapshot your state machine now and send it (a backup).

    The reply's ``value`` is :func:`encode_snapshot`'s bytes (empty: nothing
    applied yet)."""

    req: Nat


class CStatus(WireMessage, tag="status", frozen=True):
    """Client → node: report your :class:`CStatusReply`."""

    req: Nat


class CReply(WireMessage, tag="reply", frozen=True):
    """Node → client: the outcome of a :class:`CSubmit` or :class:`CRead`.

    ``outcome``: ``ok`` (``value`` is the result), ``not_leader`` (try
    ``leader``; the request certainly took no effect), ``rejected`` (certainly no
    effect, ``reason`` says why — with one exception: a reason starting
    ``reply of`` says the reply was too big for a frame, and a submitted command
    *was* applied, only its result is lost), ``unknown`` (the node lost track of
    it — it may or may not have been applied: retry with the same session).
    """

    req: Nat
    outcome: Literal["ok", "not_leader", "rejected", "unknown"]
    value: bytes = b""
    leader: int | None = None
    reason: str = ""


class CStatusReply(WireMessage, tag="status_reply", frozen=True):
    """Node → client: a node's :class:`~trio_foundation.protocols.raft.RaftStatus`."""

    req: Nat
    node: Nat
    role: str
    term: Nat
    leader: int | None
    commit_index: Nat
    last_applied: Nat
    last_index: Nat
    voters: tuple[Nat, ...]
    learners: tuple[Nat, ...] = ()


class WSnapshotChunk(WireMessage, tag="isc", frozen=True):
    """One piece of an :class:`~trio_foundation.protocols.raft.InstallSnapshot` too
    big for one frame (Raft paper §7: snapshots are sent in chunks).

    The chunks of one snapshot carry the same ``term``, ``leader``, ``read_id``,
    ``index`` / ``snap_term`` (the snapshot's last included index and term) and
    ``total`` (the byte length of the whole :class:`WSnapshot` encoding); ``data``
    is the slice ``[offset, offset + len(data))`` of that encoding. The receiving
    member's service reassembles them (:class:`SnapshotAssembler`) and hands its
    core the one ``InstallSnapshot`` the chunks encode.
    """

    term: Nat
    leader: Nat
    read_id: Nat
    index: Nat
    snap_term: Nat
    total: Nat
    offset: Nat
    data: bytes


DEFAULT_MAX_FRAME: Final = 16 << 20
"""The Raft service's frame limit in bytes (16 MiB)."""

MIN_FRAME: Final = 4096
"""The smallest frame limit :func:`raft_protocol` accepts (bytes)."""

FRAME_MARGIN: Final = 512
"""Bytes of a frame kept for a message's fields around its payload (entries,
snapshot chunk, command): a payload of ``max_frame - FRAME_MARGIN`` bytes fits."""


def max_command_bytes(max_frame: int) -> int:
    """The largest encoded command (bytes) a member accepts under ``max_frame``:
    one log entry holding it must fit one ``AppendEntries`` frame."""
    return max_frame - FRAME_MARGIN


@functools.cache
def raft_protocol(max_frame: int = DEFAULT_MAX_FRAME) -> WireProtocol:
    """The Raft service's protocol with frames of at most ``max_frame`` bytes
    (one instance per limit; every member and client of a cluster must use the
    same limit).

    Raises:
        ValueError: ``max_frame`` is not an int of at least :data:`MIN_FRAME`.
    """
    if not isinstance(max_frame, int) or isinstance(max_frame, bool) or max_frame < MIN_FRAME:
        raise ValueError(f"max_frame must be an int >= {MIN_FRAME} bytes, got {max_frame!r}")
    return WireProtocol(
        "raft",
        1,
        [
            WRequestVote,
            WRequestVoteResponse,
            WAppendEntries,
            WAppendEntriesResponse,
            WInstallSnapshot,
            WInstallSnapshotResponse,
            WTimeoutNow,
            CSubmit,
            CRead,
            CAdmin,
            CSnapshot,
            CStatus,
            CReply,
            CStatusReply,
            CSubmitBatch,
            CBatchReply,
            WSnapshotChunk,
        ],
        max_frame=max_frame,
    )


RAFT_PROTOCOL: Final = raft_protocol()
"""Name and version checked in the TCP handshake; frames up to 16 MiB (bigger
snapshots travel in :class:`WSnapshotChunk` pieces)."""


# --------------------------------------------------------------------------- entries


def _entry_to_wire(e: core.Entry) -> WEntry:
    if e.kind == "command":
        p = e.command
        if not isinstance(p, core.Proposal) or not isinstance(p.command, bytes):
            raise TypeError(f"entry {e.index}: the service logs bytes proposals, got {p!r}")
        cid = p.client_id
        if cid is not None and not isinstance(cid, int):
            raise TypeError(f"entry {e.index}: client id must be an int, got {cid!r}")
        return WEntry(e.term, e.index, "command", cid, p.request_id, p.command)
    if e.kind == "config":
        cfg = e.command
        return WEntry(e.term, e.index, "config", voters=cfg.voters, learners=cfg.learners)
    return WEntry(e.term, e.index, "noop")


def _entry_from_wire(w: WEntry) -> core.Entry:
    if w.kind == "command":
        return core.Entry(
            w.term, w.index, "command", core.Proposal(w.client_id, w.request_id, w.command)
        )
    if w.kind == "config":
        return core.Entry(w.term, w.index, "config", core.Config(w.voters, w.learners))
    return core.Entry(w.term, w.index, "noop")


def _sessions_to_wire(sessions: tuple[tuple[Any, int, Any], ...]) -> tuple[WSession, ...]:
    out = []
    for cid, rid, result in sessions:
        if not isinstance(cid, int) or not isinstance(result, bytes):
            raise TypeError(f"session {cid!r}: the service keeps int ids and bytes results")
        out.append(WSession(cid, rid, result))
    return tuple(out)


def _snapshot_to_wire(s: core.Snapshot) -> WSnapshot:
    return WSnapshot(
        s.last_included_index,
        s.last_included_term,
        s.config.voters,
        s.config.learners,
        s.data,
        _sessions_to_wire(s.sessions),
    )


def _snapshot_from_wire(w: WSnapshot) -> core.Snapshot:
    return core.Snapshot(
        w.index,
        w.term,
        core.Config(w.voters, w.learners),
        w.data,
        tuple((s.client_id, s.request_id, s.result) for s in w.sessions),
    )


_entry_decoder: Final = msgspec.msgpack.Decoder(WEntry)
_snapshot_decoder: Final = msgspec.msgpack.Decoder(WSnapshot)


def encode_entry(entry: core.Entry) -> bytes:
    """The stored form of a log entry (for ``RaftLog.save_record``)."""
    return msgspec.msgpack.encode(_entry_to_wire(entry))


def decode_entry(data: bytes) -> core.Entry:
    """The entry :func:`encode_entry` stored.

    Raises:
        msgspec.ValidationError, msgspec.DecodeError: not such an entry.
    """
    return _entry_from_wire(_entry_decoder.decode(data))


def encode_snapshot(snapshot: core.Snapshot) -> bytes:
    """The stored form of a snapshot (state machine, configuration, sessions)."""
    return msgspec.msgpack.encode(_snapshot_to_wire(snapshot))


def decode_snapshot(data: bytes) -> core.Snapshot:
    """The snapshot :func:`encode_snapshot` stored.

    Raises:
        msgspec.ValidationError, msgspec.DecodeError: not such a snapshot.
    """
    return _snapshot_from_wire(_snapshot_decoder.decode(data))


# --------------------------------------------------------------------------- messages


def to_wire(msg: Any) -> WireMessage:
    """The wire form of a core's message.

    Raises:
        TypeError: ``msg`` is not a Raft peer message.
    """
    if isinstance(msg, core.AppendEntries):
        return WAppendEntries(
            msg.term,
            msg.leader,
            msg.prev_log_index,
            msg.prev_log_term,
            tuple(_entry_to_wire(e) for e in msg.entries),
            msg.leader_commit,
            msg.read_id,
        )
    if isinstance(msg, core.AppendEntriesResponse):
        return WAppendEntriesResponse(
            msg.term,
            msg.success,
            msg.match_index,
            msg.conflict_index,
            msg.conflict_term,
            msg.read_id,
        )
    if isinstance(msg, core.RequestVote):
        return WRequestVote(
            msg.term,
            msg.candidate,
            msg.last_log_index,
            msg.last_log_term,
            msg.pre_vote,
            msg.transfer,
        )
    if isinstance(msg, core.RequestVoteResponse):
        return WRequestVoteResponse(msg.term, msg.granted, msg.pre_vote)
    if isinstance(msg, core.InstallSnapshot):
        snap = core.Snapshot(
            msg.last_included_index, msg.last_included_term, msg.config, msg.data, msg.sessions
        )
        return WInstallSnapshot(msg.term, msg.leader, _snapshot_to_wire(snap), msg.read_id)
    if isinstance(msg, core.InstallSnapshotResponse):
        return WInstallSnapshotResponse(msg.term, msg.match_index, msg.read_id)
    if isinstance(msg, core.TimeoutNow):
        return WTimeoutNow(msg.term)
    raise TypeError(f"{type(msg).__name__} is not a Raft peer message")


def from_wire(msg: Any) -> core.RaftMessage | None:
    """The core's message for a decoded peer message; ``None`` for a client message.

    Raises:
        ValueError: the message decodes but cannot be a core value (a bad
            configuration); the caller drops it.
    """
    if isinstance(msg, WAppendEntries):
        return core.AppendEntries(
            msg.term,
            msg.leader,
            msg.prev_log_index,
            msg.prev_log_term,
            tuple(_entry_from_wire(e) for e in msg.entries),
            msg.leader_commit,
            msg.read_id,
        )
    if isinstance(msg, WAppendEntriesResponse):
        return core.AppendEntriesResponse(
            msg.term,
            msg.success,
            msg.match_index,
            msg.conflict_index,
            msg.conflict_term,
            msg.read_id,
        )
    if isinstance(msg, WRequestVote):
        return core.RequestVote(
            msg.term,
            msg.candidate,
            msg.last_log_index,
            msg.last_log_term,
            msg.pre_vote,
            msg.transfer,
        )
    if isinstance(msg, WRequestVoteResponse):
        return core.RequestVoteResponse(msg.term, msg.granted, msg.pre_vote)
    if isinstance(msg, WInstallSnapshot):
        s = _snapshot_from_wire(msg.snapshot)
        return core.InstallSnapshot(
            msg.term,
            msg.leader,
            s.last_included_index,
            s.last_included_term,
            s.config,
            s.data,
            s.sessions,
            msg.read_id,
        )
    if isinstance(msg, WInstallSnapshotResponse):
        return core.InstallSnapshotResponse(msg.term, msg.match_index, msg.read_id)
    if isinstance(msg, WTimeoutNow):
        return core.TimeoutNow(msg.term)
    return None


# --------------------------------------------------------------------------- frames


def split_append(msg: core.AppendEntries, max_frame: int) -> list[WAppendEntries]:
    """``msg`` as consecutive ``AppendEntries`` that each fit a frame of ``max_frame``.

    One message when it fits. Otherwise the entries are cut into runs, in order,
    each of at most ``max_frame - FRAME_MARGIN`` encoded bytes; a run's
    ``prev_log_index`` / ``prev_log_term`` are those of the entry before it (for
    the first run, the message's own), and every run keeps ``leader_commit`` and
    ``read_id``. Each part is a valid ``AppendEntries`` the leader could have
    sent by itself: a follower applies the consistency check to each, commits at
    most ``min(leader_commit, last index of the part)``, and answers each (the
    leader's progress takes the highest match). See ``docs/consensus.md``.

    Raises:
        ValueError: one entry alone does not fit a frame (named with its size).
    """
    head = WAppendEntries(
        msg.term, msg.leader, msg.prev_log_index, msg.prev_log_term, (), msg.leader_commit,
        msg.read_id,
    )  # fmt: skip
    budget = max_frame - FRAME_MARGIN
    payloads = [
        len(e.command.command)
        if e.kind == "command" and isinstance(e.command, core.Proposal)
        and isinstance(e.command.command, bytes)
        else 0
        for e in msg.entries
    ]  # fmt: skip
    # fast path: each entry's fields take far less than FRAME_MARGIN // 4 bytes
    # besides its command (a config entry lists its members: measured below)
    if sum(payloads) + len(payloads) * (FRAME_MARGIN // 4) <= budget and all(
        e.kind != "config" for e in msg.entries
    ):  # fmt: skip
        wire = to_wire(msg)
        assert isinstance(wire, WAppendEntries)
        return [wire]
    wires = [_entry_to_wire(e) for e in msg.entries]
    sizes = [len(msgspec.msgpack.encode(w)) for w in wires]
    parts: list[WAppendEntries] = []
    prev_index, prev_term = msg.prev_log_index, msg.prev_log_term
    run: list[WEntry] = []
    used = 0
    for w, size in zip(wires, sizes, strict=True):
        if size > budget:
            raise ValueError(
                f"log entry {w.index} encodes to {size} bytes, above the "
                f"{budget} an AppendEntries frame of {max_frame} bytes carries"
            )
        if run and used + size > budget:
            parts.append(_with_prev(head, prev_index, prev_term, tuple(run)))
            prev_index, prev_term = run[-1].index, run[-1].term
            run, used = [], 0
        run.append(w)
        used += size
    parts.append(_with_prev(head, prev_index, prev_term, tuple(run)))
    return parts


def _with_prev(
    head: WAppendEntries, prev_index: int, prev_term: int, entries: tuple[WEntry, ...]
) -> WAppendEntries:
    """``head`` with its previous index and term and its entries replaced."""
    return WAppendEntries(
        head.term, head.leader, prev_index, prev_term, entries, head.leader_commit, head.read_id
    )


def snapshot_blob(msg: core.InstallSnapshot) -> bytes:
    """The encoding of ``msg``'s snapshot that :class:`WSnapshotChunk` pieces carry
    (and :class:`SnapshotAssembler` decodes)."""
    snap = core.Snapshot(
        msg.last_included_index, msg.last_included_term, msg.config, msg.data, msg.sessions
    )
    return msgspec.msgpack.encode(_snapshot_to_wire(snap))


def snapshot_chunk(
    msg: core.InstallSnapshot, blob: bytes, offset: int, step: int
) -> WSnapshotChunk:
    """The piece of ``blob`` (:func:`snapshot_blob` of ``msg``) at ``offset``: at
    most ``step`` data bytes (at most ``max_frame - FRAME_MARGIN`` to fit a
    frame), with ``msg``'s term, leader and read id. The receiver's
    :class:`SnapshotAssembler` takes chunks of any size, in offset order.

    Raises:
        ValueError: ``step`` is not positive, or ``offset`` is not a chunk
            boundary inside ``blob``.
    """
    if step <= 0:
        raise ValueError(f"step must be > 0, got {step}")
    if offset < 0 or offset >= len(blob) or offset % step:
        raise ValueError(f"offset {offset} is not a chunk boundary of a {len(blob)}-byte blob")
    return WSnapshotChunk(
        msg.term,
        msg.leader,
        msg.read_id,
        msg.last_included_index,
        msg.last_included_term,
        len(blob),
        offset,
        blob[offset : offset + step],
    )


def snapshot_chunks(msg: core.InstallSnapshot, max_frame: int) -> list[WireMessage]:
    """``msg`` as one :class:`WInstallSnapshot` if it fits a frame of ``max_frame``,
    else as :class:`WSnapshotChunk` pieces of at most ``max_frame - FRAME_MARGIN``
    data bytes each, in offset order."""
    blob = snapshot_blob(msg)
    if len(blob) <= max_frame - FRAME_MARGIN:
        snap = core.Snapshot(
            msg.last_included_index, msg.last_included_term, msg.config, msg.data, msg.sessions
        )
        return [WInstallSnapshot(msg.term, msg.leader, _snapshot_to_wire(snap), msg.read_id)]
    step = max_frame - FRAME_MARGIN
    return [snapshot_chunk(msg, blob, off, step) for off in range(0, len(blob), step)]


@attrs.define
class _Partial:
    key: tuple[int, int, int, int, int, int]  # term, leader, read_id, index, snap_term, total
    parts: list[bytes]
    received: int
    touched: float


class SnapshotAssembler:
    """Reassembles :class:`WSnapshotChunk` pieces into the core's ``InstallSnapshot``.

    Bounded: at most one partial snapshot per sender and at most ``max_senders``
    senders at once (the stalest partial is dropped for a new sender); a
    snapshot whose ``total`` is above ``max_bytes`` is refused (its chunks are
    dropped, counted in :attr:`refused`); a partial untouched for ``timeout``
    seconds is dropped. A chunk that does not continue its sender's partial
    (a lost chunk, a different snapshot) drops that partial; a chunk at offset 0
    starts a new one. Nothing is acknowledged per chunk: a lost chunk means the
    leader's core sends the snapshot again (its heartbeat retry). Sans-IO: the
    caller passes the time.

    Args:
        max_bytes: the largest snapshot encoding accepted, in bytes.
        timeout: seconds after which an untouched partial is dropped.
        max_senders: partial snapshots kept at once.
    """

    def __init__(self, max_bytes: int, timeout: float, max_senders: int = 4) -> None:
        if max_bytes <= 0 or timeout <= 0 or max_senders <= 0:
            raise ValueError("max_bytes, timeout and max_senders must be > 0")
        self.max_bytes = max_bytes
        self.timeout = timeout
        self.max_senders = max_senders
        self._partials: dict[int, _Partial] = {}
        #: snapshots reassembled and handed on
        self.assembled = 0
        #: chunks dropped (out of order, stale, over the byte limit, undecodable)
        self.dropped = 0
        #: chunks of snapshots refused for their size
        self.refused = 0

    @property
    def pending_bytes(self) -> int:
        """Bytes held in partial snapshots."""
        return sum(p.received for p in self._partials.values())

    def add(self, src: int, chunk: WSnapshotChunk, now: float) -> core.InstallSnapshot | None:
        """Take one chunk from ``src`` at time ``now``; the whole snapshot once its
        last chunk arrived, else ``None``. Not a checkpoint; never raises."""
        for s in [s for s, p in self._partials.items() if now - p.touched > self.timeout]:
            del self._partials[s]
        if chunk.total > self.max_bytes:
            self.refused += 1
            self._partials.pop(src, None)
            return None
        key = (chunk.term, chunk.leader, chunk.read_id, chunk.index, chunk.snap_term, chunk.total)
        partial = self._partials.get(src)
        if chunk.offset == 0:
            if partial is None and len(self._partials) >= self.max_senders:
                stalest = min(self._partials, key=lambda s: self._partials[s].touched)
                del self._partials[stalest]
            partial = self._partials[src] = _Partial(key, [], 0, now)
        elif partial is None or partial.key != key or partial.received != chunk.offset:
            self.dropped += 1
            self._partials.pop(src, None)
            return None
        if partial.received + len(chunk.data) > chunk.total or not chunk.data:
            self.dropped += 1
            del self._partials[src]
            return None
        partial.parts.append(chunk.data)
        partial.received += len(chunk.data)
        partial.touched = now
        if partial.received < chunk.total:
            return None
        del self._partials[src]
        try:
            snap = _snapshot_from_wire(_snapshot_decoder.decode(b"".join(partial.parts)))
        except (msgspec.DecodeError, msgspec.ValidationError, ValueError):
            self.dropped += 1
            return None
        if (snap.last_included_index, snap.last_included_term) != (chunk.index, chunk.snap_term):
            self.dropped += 1
            return None
        self.assembled += 1
        return core.InstallSnapshot(
            chunk.term,
            chunk.leader,
            snap.last_included_index,
            snap.last_included_term,
            snap.config,
            snap.data,
            snap.sessions,
            chunk.read_id,
        )
