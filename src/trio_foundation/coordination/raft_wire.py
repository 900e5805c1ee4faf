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

from typing import Annotated, Any, Final, Literal, TypeAlias

import msgspec

from ..protocols import raft as core
from ..runtime.codec import WireMessage, WireProtocol

__all__ = [
    "MAX_MEMBER_ID",
    "RAFT_PROTOCOL",
    "MAX_BATCH",
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
    effect, ``reason`` says why), ``unknown`` (the node lost track of it — it may
    or may not have been applied: retry with the same session).
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


RAFT_PROTOCOL: Final = WireProtocol(
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
    ],
    max_frame=16 << 20,
)
"""Name and version checked in the TCP handshake; frames up to 16 MiB (snapshots)."""


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
