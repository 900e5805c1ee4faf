"""Durable storage for one Raft node: a segmented, checksummed write-ahead log with
group-committed fsyncs, and crash-safe snapshots.

Theory of operation
-------------------

**What is stored.** A Raft node must keep three things across a crash: its *hard
state* (current term and vote), its *log* (entries ``(index, term, data)``; the
data is opaque bytes — the caller encodes its own entry type), and its latest
*snapshot* (the index and term it covers and opaque bytes). :meth:`RaftLog.save`
takes one incremental record — a new hard state, a snapshot, a truncation point,
new entries, in that order, each optional — which is what the core's
``Persist(RaftPersist(...))`` carries. :meth:`RaftLog.load` returns what survived.

**Files.** A data directory (with a ``FORMAT`` file naming ``raft-log`` and the
format version, :func:`~trio_foundation.runtime.storage.open_data_dir`) holds

* ``wal-<seq>.log`` segments, numbered consecutively: a header (magic, format
  version, sequence number, a random 32-bit *salt*) and then *batches*. A batch is
  a batch-header frame (its body's length and record count) followed by its
  records, each framed as ``length | crc32 | payload`` with the CRC seeded by the
  segment's salt. Records: ``E`` entry (index, term, data), ``H`` hard state,
  ``T`` truncation (every entry at or above an index is gone), ``S`` snapshot
  marker (index, term, and whether the log was reset to it). A new segment is
  started once the active one passes ``segment_bytes``; it is created atomically
  (temporary file, fsync, rename, fsync of the directory) and starts with a batch
  holding the current hard state, so each segment is readable without the ones
  before it.
* ``snapshot``: the latest snapshot, replaced atomically (temporary file, fsync,
  rename, fsync of the directory), with a header, the data's length and a CRC.

**Truncation is a record, not a rewrite.** When a follower's log conflicts with
its leader's, its suffix is discarded. Appending a ``T`` record costs what an
entry costs and rides in the same batch (and fsync) as the entries that replace
the suffix; rewriting the segment instead would copy up to a whole segment and
add a rename and a directory sync on the path of every leader change. The price
is paid on open (replay applies the truncations), which reads every retained
segment anyway to find the torn tail.

**Group commit.** ``await save(...)`` validates the record and queues it at once
(so the log order is the call order), then waits until it is durable. One task
at a time is the *flusher*: it takes every queued record, writes them as one
batch (one ``write``) and fsyncs once, in a worker thread
(``trio.to_thread.run_sync``); the other callers wait for that flush and, if
their record came after it, one of them flushes next. So ``n`` concurrent saves
cost one or two fsyncs, not ``n``.

**Torn tails and corruption.** A batch is applied on open only if its header and
every record in it pass their checks: a batch is all or nothing. Only the last,
unsynced batch of the newest segment can be damaged by a crash (every earlier
batch was fsynced before the next was written, and a segment before the newest
was complete before the next was created). So on open:

* a damaged batch in the newest segment with no valid batch header after it is a
  *torn tail*: cut off (the file is truncated there and the cut synced), counted
  in :attr:`RaftLogStatistics.repaired_bytes`;
* a damaged batch followed by a valid batch header, a damaged older segment, a
  missing segment, a record that does not follow the log (an entry index out of
  order), a bad snapshot file: :class:`CorruptLogError` naming the file and the
  byte offset — never silently dropped. A later batch header is recognised only
  with the segment's salt, so entry data that happens to contain a copy of a
  frame cannot fake one.

Limitation: damage (bit rot) to the last batch *after* it was synced looks like
a torn tail and is cut; no log format can tell the two apart without another
copy.

**Snapshots and compaction.** A save with a snapshot first makes the records
before it durable, then writes the snapshot file (durable when the rename and the
directory sync returned), then appends an ``S`` marker with the rest of the
record. Raft's rule for an installed snapshot is applied (and recorded in the
marker): if the log holds an entry at the snapshot's index with the snapshot's
term, the entries after it are kept; otherwise the whole log is discarded and the
next entry is ``index + 1``. Only after the marker is durable are the old
segments whose entries are all covered by the snapshot deleted (oldest first,
each deletion synced, so the segments on disk are always consecutive). A crash
between the snapshot and its marker is repaired on open by applying the same
rule and writing the marker.

**Memory.** The object keeps, besides the state :meth:`RaftLog.load` returns
once, only per-segment metadata and the term of each run of equal-term entries
after the snapshot (a list as long as the number of distinct terms in the
retained log). Entries are not kept: the core holds its own log, and the
retained log is bounded by the caller's snapshot cadence.

**Partial saves.** A crash before a save returned leaves its effect all or
nothing at the granularity of a batch, except that a save with a snapshot is three
steps (the hard state; the snapshot; the marker, truncation and entries), so a
crash may keep the first one or two. Each of those states is one the node could
have been in (its term raised; its snapshot installed), and the save was not
acknowledged, so the node promised nothing about it.

All blocking file I/O goes through a :class:`~trio_foundation.runtime.storage.FileOps`
with a ``listdir`` method (:class:`~trio_foundation.runtime.storage.OsFileOps`, or
:class:`~trio_foundation.runtime.simdisk.SimDisk` in tests).
"""

from __future__ import annotations

import bisect
import functools
import os
import random
import re
import secrets
import struct
import zlib
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any, Final, Literal, Protocol, final

import attrs
import trio

from .._errors import FoundationError
from .storage import (
    FORMAT_VERSION,
    MAX_RECORD,
    CorruptStateError,
    DataDirLock,
    FileOps,
    OsFileOps,
    check_data_dir_format,
    open_locked_data_dir,
)

__all__ = [
    "DATA_DIR_KIND",
    "CorruptLogError",
    "HardState",
    "LogEntry",
    "PersistRecord",
    "RaftLog",
    "RaftLogFailedError",
    "RaftLogStatistics",
    "RaftState",
    "Snapshot",
    "open_raft_log",
]

DATA_DIR_KIND: Final = "raft-log"
"""The ``kind`` written in the data directory's ``FORMAT`` file."""

_SEG_MAGIC: Final = b"TFRL"
_SNAP_MAGIC: Final = b"TFRS"
_SEG_HEADER: Final = struct.Struct(">4sHHQI")  # magic, version, flags, sequence, salt
_SNAP_HEADER: Final = struct.Struct(">4sHHQQQ")  # magic, version, flags, index, term, length
_FRAME: Final = struct.Struct(">II")  # payload length, crc32(length bytes + payload, salt)
_BATCH: Final = struct.Struct(">cII")  # b"B", body bytes, records in the body
_ENTRY: Final = struct.Struct(">cQQ")  # b"E", index, term; then the data
_HARD: Final = struct.Struct(">cQq")  # b"H", term, voted_for (-1: none)
_TRUNC: Final = struct.Struct(">cQ")  # b"T", the first index removed
_MARK: Final = struct.Struct(">cQQ?")  # b"S", snapshot index, term, log reset
_CRC: Final = struct.Struct(">I")
_BATCH_PREFIX: Final = _CRC.pack(_BATCH.size)
_SEGMENT_NAME: Final = re.compile(r"^wal-(\d{16})\.log$")
_SNAPSHOT_NAME: Final = "snapshot"
MAX_SNAPSHOT: Final = 1 << 32
"""The largest snapshot data accepted, in bytes (4 GiB)."""


# --------------------------------------------------------------------------- values


def _check_int(name: str, value: object, low: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < low or value >= 1 << 63:
        raise ValueError(f"{name} must be in [{low}, 2**63), got {value}")
    return value


def _check_bytes(name: str, value: object, limit: int) -> bytes:
    if not isinstance(value, bytes):
        raise TypeError(f"{name} must be bytes, got {type(value).__name__}")
    if len(value) > limit:
        raise ValueError(f"{name} of {len(value)} bytes is above the limit of {limit}")
    return value


@final
@attrs.frozen
class HardState:
    """The part of a Raft node's state that is not the log.

    Attributes:
        term: the current term (>= 0).
        voted_for: the node voted for in ``term``, or ``None``.
    """

    term: int = attrs.field(default=0)
    voted_for: int | None = attrs.field(default=None)

    @term.validator
    def _check_term(self, _a: attrs.Attribute[int], value: int) -> None:
        _check_int("term", value, 0)

    @voted_for.validator
    def _check_vote(self, _a: attrs.Attribute[int | None], value: int | None) -> None:
        if value is not None:
            _check_int("voted_for", value, 0)


@final
@attrs.frozen
class LogEntry:
    """One log entry as stored: the caller's encoding of it is ``data``.

    Attributes:
        index: its position in the log (>= 1).
        term: the term it was created in (>= 1).
        data: opaque bytes (at most 16 MiB).
    """

    index: int = attrs.field()
    term: int = attrs.field()
    data: bytes = attrs.field(repr=lambda b: f"<{len(b)} bytes>" if len(b) > 32 else repr(b))

    @index.validator
    def _check_index(self, _a: attrs.Attribute[int], value: int) -> None:
        _check_int("entry index", value, 1)

    @term.validator
    def _check_term(self, _a: attrs.Attribute[int], value: int) -> None:
        _check_int("entry term", value, 1)

    @data.validator
    def _check_data(self, _a: attrs.Attribute[bytes], value: bytes) -> None:
        _check_bytes("entry data", value, MAX_RECORD)


@final
@attrs.frozen
class Snapshot:
    """A snapshot: the state machine (and whatever else the caller needs, such as
    the membership) as of the entry ``index``, encoded by the caller.

    Attributes:
        index: the last entry it covers (>= 1).
        term: that entry's term (>= 1).
        data: opaque bytes (at most :data:`MAX_SNAPSHOT`).
    """

    index: int = attrs.field()
    term: int = attrs.field()
    data: bytes = attrs.field(repr=lambda b: f"<{len(b)} bytes>")

    @index.validator
    def _check_index(self, _a: attrs.Attribute[int], value: int) -> None:
        _check_int("snapshot index", value, 1)

    @term.validator
    def _check_term(self, _a: attrs.Attribute[int], value: int) -> None:
        _check_int("snapshot term", value, 1)

    @data.validator
    def _check_data(self, _a: attrs.Attribute[bytes], value: bytes) -> None:
        _check_bytes("snapshot data", value, MAX_SNAPSHOT)


@final
@attrs.frozen
class RaftState:
    """What survived: the durable state a restarted node starts from.

    Attributes:
        hard_state: term and vote.
        snapshot: the latest snapshot, or ``None``.
        entries: the log after the snapshot, consecutive from
            ``snapshot.index + 1`` (or from 1).
    """

    hard_state: HardState
    snapshot: Snapshot | None
    entries: tuple[LogEntry, ...]

    @property
    def last_index(self) -> int:
        """The index of the last entry (or of the snapshot, or 0)."""
        if self.entries:
            return self.entries[-1].index
        return self.snapshot.index if self.snapshot else 0


@final
@attrs.frozen
class RaftLogStatistics:
    """Counters of one :class:`RaftLog` since it was opened.

    Attributes:
        saves: calls of :meth:`RaftLog.save` that were queued.
        flushes: batches written, each followed by one fsync of the log.
        bytes_written: log bytes written (batches and new segments).
        snapshots: snapshot files written.
        segments: segment files on disk now.
        segments_removed: segments deleted by compaction.
        repaired_bytes: bytes of a torn tail cut off when the log was opened.
        pending: saves queued and not yet written.
    """

    saves: int
    flushes: int
    bytes_written: int
    snapshots: int
    segments: int
    segments_removed: int
    repaired_bytes: int
    pending: int


class CorruptLogError(CorruptStateError):
    """A log or snapshot file is damaged somewhere a crash cannot explain.

    Attributes:
        path: the file.
        offset: the byte offset of the damage (-1 when it is about the file as a whole).
        problem: what is wrong.
    """

    def __init__(self, path: str, offset: int, problem: str) -> None:
        where = f" at offset {offset}" if offset >= 0 else ""
        super().__init__(path, f"{problem}{where}")
        self.offset = offset
        self.problem = problem


class RaftLogFailedError(FoundationError):
    """A write or fsync of the log failed earlier; the log accepts nothing more.

    After a failed fsync the kernel may have dropped the dirty pages, so what is
    on disk is unknown: close the log and reopen it (which recovers the durable
    state) rather than retry. The original error is the ``__cause__``.
    """


class PersistRecord(Protocol):
    """The shape of a Raft core's incremental durable-state record
    (``protocols.raft.RaftPersist``), for :meth:`RaftLog.save_record`."""

    @property
    def term(self) -> int: ...
    @property
    def voted_for(self) -> int | None: ...
    @property
    def truncate_from(self) -> int | None: ...
    @property
    def entries(self) -> Sequence[Any]: ...
    @property
    def snapshot(self) -> Any: ...


class SegmentFileOps(FileOps, Protocol):
    """The :class:`~trio_foundation.runtime.storage.FileOps` a :class:`RaftLog` needs:
    the usual calls and a directory listing."""

    def listdir(self, path: str) -> list[str]:
        """The names in the directory ``path``."""
        ...


# --------------------------------------------------------------------------- encoding


def _frame(payload: bytes, salt: int) -> bytes:
    length = _CRC.pack(len(payload))
    return length + _CRC.pack(zlib.crc32(length + payload, salt)) + payload


def _batch(frames: Sequence[bytes], salt: int) -> bytes:
    body = b"".join(frames)
    return _frame(_BATCH.pack(b"B", len(body), len(frames)), salt) + body


def _encode_hard(hs: HardState, salt: int) -> bytes:
    vote = -1 if hs.voted_for is None else hs.voted_for
    return _frame(_HARD.pack(b"H", hs.term, vote), salt)


def _segment_header(seq: int, salt: int) -> bytes:
    return _SEG_HEADER.pack(_SEG_MAGIC, FORMAT_VERSION, 0, seq, salt)


def _segment_name(seq: int) -> str:
    return f"wal-{seq:016d}.log"


def _frame_at(data: bytes, pos: int, end: int, salt: int) -> tuple[bytes, int] | None:
    """The payload of the valid frame at ``pos`` ending by ``end``, and its end."""
    if pos + _FRAME.size > end:
        return None
    length, crc = _FRAME.unpack_from(data, pos)
    stop = pos + _FRAME.size + length
    if stop > end:
        return None
    payload = data[pos + _FRAME.size : stop]
    if zlib.crc32(data[pos : pos + 4] + payload, salt) != crc:
        return None
    return payload, stop


def _batch_at(data: bytes, pos: int, salt: int) -> tuple[list[tuple[int, bytes]], int] | None:
    """The records of the complete, valid batch at ``pos`` (with their offsets) and its end."""
    header = _frame_at(data, pos, len(data), salt)
    if header is None or len(header[0]) != _BATCH.size or header[0][:1] != b"B":
        return None
    _, body, count = _BATCH.unpack(header[0])
    p, stop = header[1], header[1] + body
    if stop > len(data):
        return None
    records: list[tuple[int, bytes]] = []
    while p < stop:
        frame = _frame_at(data, p, stop, salt)
        if frame is None:
            return None
        records.append((p, frame[0]))
        p = frame[1]
    if len(records) != count:
        return None
    return records, stop


def _later_batch(data: bytes, pos: int, salt: int) -> int:
    """The offset of a valid batch header after ``pos``, or -1."""
    p = data.find(_BATCH_PREFIX, pos + 1)
    while p >= 0:
        header = _frame_at(data, p, len(data), salt)
        if header is not None and header[0][:1] == b"B":
            return p
        p = data.find(_BATCH_PREFIX, p + 1)
    return -1


def _encode_snapshot(s: Snapshot) -> bytes:
    head = _SNAP_HEADER.pack(_SNAP_MAGIC, FORMAT_VERSION, 0, s.index, s.term, len(s.data))
    return head + s.data + _CRC.pack(zlib.crc32(s.data, zlib.crc32(head)))


def _decode_snapshot(path: str, blob: bytes) -> Snapshot:
    if len(blob) < _SNAP_HEADER.size + _CRC.size:
        raise CorruptLogError(path, -1, f"snapshot of {len(blob)} bytes, shorter than a header")
    magic, version, _flags, index, term, length = _SNAP_HEADER.unpack_from(blob)
    if magic != _SNAP_MAGIC:
        raise CorruptLogError(path, 0, f"not a snapshot file (magic {magic!r})")
    if version != FORMAT_VERSION:
        raise CorruptLogError(
            path, 4, f"format version {version}, this library reads {FORMAT_VERSION}"
        )
    end = _SNAP_HEADER.size + length
    if len(blob) != end + _CRC.size:
        raise CorruptLogError(
            path, -1, f"{len(blob)} bytes, the header announces {end + _CRC.size}"
        )
    (crc,) = _CRC.unpack_from(blob, end)
    if crc != zlib.crc32(blob[_SNAP_HEADER.size : end], zlib.crc32(blob[: _SNAP_HEADER.size])):
        raise CorruptLogError(path, -1, "snapshot checksum mismatch")
    if index < 1 or term < 1:
        raise CorruptLogError(path, 8, f"snapshot index {index} term {term}")
    return Snapshot(index, term, blob[_SNAP_HEADER.size : end])


# --------------------------------------------------------------------------- replay


def _trusted_entry(index: int, term: int, data: bytes) -> LogEntry:
    """A :class:`LogEntry` from fields the replay has checked, without re-running the
    validators (they cost about half of the time to open a log)."""
    entry = object.__new__(LogEntry)
    object.__setattr__(entry, "index", index)
    object.__setattr__(entry, "term", term)
    object.__setattr__(entry, "data", data)
    return entry


@attrs.define
class _Replay:
    """Replays records into the log they describe, keeping entries after ``floor``."""

    floor: int  # the snapshot file's index (0: none)
    hard_state: HardState = attrs.Factory(HardState)
    last: int | None = None  # index of the last entry (None: nothing seen yet)
    entries: list[LogEntry] = attrs.Factory(list)  # index > floor, consecutive
    term_at_floor: int | None = None
    marker: int = 0  # index of the last snapshot marker replayed

    def apply(self, payload: bytes) -> str | None:
        """Apply one record; a problem description if it does not fit the log."""
        kind = payload[:1]
        if kind == b"E" and len(payload) >= _ENTRY.size:
            _, index, term = _ENTRY.unpack_from(payload)
            if self.last is not None and index != self.last + 1:
                return f"entry {index} does not follow entry {self.last}"
            if not (1 <= index < 1 << 63 and 1 <= term < 1 << 63):
                return f"entry index {index} term {term}"
            self.last = index
            if index == self.floor:
                self.term_at_floor = term
            elif index > self.floor:
                self.entries.append(_trusted_entry(index, term, payload[_ENTRY.size :]))
            return None
        if kind == b"H" and len(payload) == _HARD.size:
            _, term, vote = _HARD.unpack(payload)
            self.hard_state = HardState(term, None if vote < 0 else vote)
            return None
        if kind == b"T" and len(payload) == _TRUNC.size:
            (_, first) = _TRUNC.unpack(payload)
            if first < 1 or (self.last is not None and first > self.last + 1):
                return f"truncation at {first} beyond the log's end {self.last}"
            self.truncate(first)
            return None
        if kind == b"S" and len(payload) == _MARK.size:
            _, index, term, reset = _MARK.unpack(payload)
            if index > self.floor:
                return f"a snapshot at {index} is marked, the snapshot file covers {self.floor}"
            self.marker = index
            if reset:
                self.reset(index, term)
            return None
        return f"unknown record {payload[:12]!r}"

    def truncate(self, first: int) -> None:
        self.last = first - 1
        if first <= self.floor:
            self.term_at_floor = None
        while self.entries and self.entries[-1].index >= first:
            self.entries.pop()

    def reset(self, index: int, term: int) -> None:
        self.entries.clear()
        self.last = index
        self.term_at_floor = term if index == self.floor else None


# --------------------------------------------------------------------------- the writer


@attrs.define
class _Segment:
    seq: int
    path: str
    salt: int
    size: int
    max_index: int  # the highest entry index written to it (0: none)


@attrs.frozen
class _Records:
    payloads: tuple[bytes, ...]  # framed with the segment's salt when written
    max_index: int
    hard_state: HardState  # the hard state once these records are applied


@attrs.frozen
class _WriteSnapshot:
    snapshot: Snapshot


_Op = _Records | _WriteSnapshot


class _Writer:
    """The file side. Used by one thread at a time (the flusher's, or the opener's)."""

    def __init__(
        self,
        ops: SegmentFileOps,
        directory: str,
        segment_bytes: int,
        salts: random.Random | None,
    ) -> None:
        self.ops = ops
        self.directory = directory
        self.segment_bytes = segment_bytes
        self.salts = salts
        self.segments: list[_Segment] = []
        self.handle = -1
        self.hard_state = HardState()
        self.flushes = 0
        self.bytes_written = 0
        self.snapshots = 0
        self.segments_removed = 0

    def new_salt(self) -> int:
        return self.salts.getrandbits(32) if self.salts is not None else secrets.randbits(32)

    def path(self, name: str) -> str:
        return os.path.join(self.directory, name)

    def start_segment(self) -> None:
        """Create the next segment atomically, starting with the hard state; make it active."""
        seq = self.segments[-1].seq + 1 if self.segments else 1
        salt = self.new_salt()
        blob = _segment_header(seq, salt) + _batch([_encode_hard(self.hard_state, salt)], salt)
        path = self.path(_segment_name(seq))
        tmp = path + ".tmp"
        handle = self.ops.open(tmp, truncate=True)
        try:
            self.ops.write(handle, blob)
            self.ops.sync(handle)
        finally:
            self.ops.close(handle)
        self.ops.rename(tmp, path)
        self.ops.sync_dir(self.directory)
        if self.handle >= 0:
            self.ops.close(self.handle)
        self.handle = self.ops.open(path, truncate=False)
        self.segments.append(_Segment(seq, path, salt, len(blob), 0))
        self.bytes_written += len(blob)

    def append(self, payloads: Sequence[bytes], max_index: int, hard_state: HardState) -> None:
        """Write one batch to the active segment and fsync it."""
        if not payloads:
            return
        if self.segments[-1].size >= self.segment_bytes:
            self.start_segment()
        seg = self.segments[-1]
        blob = _batch([_frame(p, seg.salt) for p in payloads], seg.salt)
        self.ops.write(self.handle, blob)
        self.ops.sync(self.handle)
        seg.size += len(blob)
        seg.max_index = max(seg.max_index, max_index)
        self.hard_state = hard_state
        self.flushes += 1
        self.bytes_written += len(blob)

    def write_snapshot(self, snapshot: Snapshot) -> None:
        """Replace the snapshot file atomically."""
        path = self.path(_SNAPSHOT_NAME)
        tmp = path + ".tmp"
        handle = self.ops.open(tmp, truncate=True)
        try:
            self.ops.write(handle, _encode_snapshot(snapshot))
            self.ops.sync(handle)
        finally:
            self.ops.close(handle)
        self.ops.rename(tmp, path)
        self.ops.sync_dir(self.directory)
        self.snapshots += 1

    def compact(self, covered: int) -> None:
        """Delete the oldest segments whose entries are all at or below ``covered``."""
        while len(self.segments) > 1 and self.segments[0].max_index <= covered:
            self.ops.remove(self.segments[0].path)
            self.ops.sync_dir(self.directory)
            del self.segments[0]
            self.segments_removed += 1

    def write(self, batch: Iterable[_Op]) -> None:
        """Make every operation durable, in order (runs in a worker thread)."""
        payloads: list[bytes] = []
        max_index = 0
        hard_state = self.hard_state
        compact_to = 0
        for op in batch:
            if isinstance(op, _Records):
                payloads.extend(op.payloads)
                max_index = max(max_index, op.max_index)
                hard_state = op.hard_state
            else:
                self.append(payloads, max_index, hard_state)
                payloads, max_index = [], 0
                self.write_snapshot(op.snapshot)
                compact_to = op.snapshot.index
        self.append(payloads, max_index, hard_state)
        if compact_to:
            self.compact(compact_to)

    def close(self) -> None:
        if self.handle >= 0:
            self.ops.close(self.handle)
            self.handle = -1


# --------------------------------------------------------------------------- the log


@final
class RaftLog:
    """The durable state of one Raft node (see the module docstring).

    Opening is blocking (it reads and checks every retained segment, cuts a torn
    tail and creates the directory or the first segment if needed): build it
    through ``await trio.to_thread.run_sync(RaftLog, path)`` in an async
    program. Use it from one Trio run; close it with :meth:`aclose` (or
    :meth:`close` when no save is in flight).

    Args:
        directory: the data directory; created (mode 0700) if missing. It holds
            a ``FORMAT`` file of kind :data:`DATA_DIR_KIND`.
        segment_bytes: a new segment is started once the active one is this
            large (>= 4096); compaction deletes whole segments.
        ops: the filesystem; a :class:`~trio_foundation.runtime.simdisk.SimDisk`
            in tests (then ``directory`` must exist on it or be empty).
        salts: where segment salts come from (a seeded ``random.Random`` makes
            the bytes written deterministic, for simulations); default
            :mod:`secrets`.
        io: ``"thread"`` runs each flush in a worker thread
            (``trio.to_thread.run_sync``); ``"inline"`` runs it in the Trio
            thread, blocking the event loop, then yields as the thread would
            (uncancellably) — for a simulated disk, where it is instant and a
            deterministic simulation wants no threads.

    Raises:
        CorruptLogError: a segment or the snapshot is damaged other than at the
            torn tail, a segment is missing, or the records do not form a log.
        ~trio_foundation.runtime.storage.CorruptStateError: the directory
            belongs to something else or has another format version.
        OSError: the filesystem failed.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        segment_bytes: int = 64 << 20,
        ops: SegmentFileOps | None = None,
        salts: random.Random | None = None,
        io: Literal["thread", "inline"] = "thread",
    ) -> None:
        _check_int("segment_bytes", segment_bytes, 4096)
        if io not in ("thread", "inline"):
            raise ValueError(f"io must be 'thread' or 'inline', got {io!r}")
        self._io = io
        self.directory = os.fspath(directory)
        # the real directory is held exclusively until close; a simulated disk
        # has one opener at a time by construction
        self._dir_lock: DataDirLock | None = None
        if ops is None:
            self._dir_lock = open_locked_data_dir(self.directory, kind=DATA_DIR_KIND)
            ops = OsFileOps()
        else:
            check_data_dir_format(
                self.directory, kind=DATA_DIR_KIND, ops=ops, names=ops.listdir(self.directory)
            )
        self._ops = ops
        try:
            self._w = _Writer(ops, self.directory, segment_bytes, salts)
            self._repaired = 0
            state = self._recover()
        except BaseException:
            if self._dir_lock is not None:
                self._dir_lock.close()
            raise
        self._state: RaftState | None = state
        # the front: the log as every queued save has left it (Invariant: what a
        # reopen would find once every queued save is durable)
        self._hard_state = state.hard_state
        self._snap_index = state.snapshot.index if state.snapshot else 0
        self._snap_term = state.snapshot.term if state.snapshot else 0
        self._last = state.last_index
        self._runs: list[tuple[int, int]] = []  # (first index, term) of entries > snapshot
        for e in state.entries:
            if not self._runs or self._runs[-1][1] != e.term:
                self._runs.append((e.index, e.term))
        # group commit
        self._pending: list[_Op] = []
        self._queued = 0  # saves queued since open
        self._durable = 0  # saves durable since open: the first ``_durable`` of them
        self._flushing = False
        self._flushed = trio.Event()
        self._failure: BaseException | None = None
        self._closed = False
        self._saves = 0

    # ----------------------------------------------------------------- recovery

    def _recover(self) -> RaftState:
        ops, w = self._ops, self._w
        names = ops.listdir(self.directory)
        for name in names:
            if name.endswith(".tmp"):
                ops.remove(w.path(name))  # a segment or snapshot never renamed into place
        snapshot = None
        snap_path = w.path(_SNAPSHOT_NAME)
        blob = ops.read(snap_path)
        if blob is not None:
            snapshot = _decode_snapshot(snap_path, blob)
        seqs = sorted(int(m.group(1)) for n in names if (m := _SEGMENT_NAME.match(n)))
        if seqs and seqs != list(range(seqs[0], seqs[-1] + 1)):
            missing = sorted(set(range(seqs[0], seqs[-1] + 1)) - set(seqs))
            raise CorruptLogError(
                w.path(_segment_name(missing[0])), -1, "segment missing between existing ones"
            )
        replay = _Replay(floor=snapshot.index if snapshot else 0)
        for seq in seqs:
            self._scan(seq, replay, newest=seq == seqs[-1])
        w.hard_state = replay.hard_state
        if not w.segments:
            w.start_segment()
        else:
            w.handle = ops.open(w.segments[-1].path, truncate=False)
        if snapshot is not None and replay.marker != snapshot.index:
            # the snapshot became durable, its marker did not: apply the rule now
            if replay.last is None or replay.last < snapshot.index:
                reset = True
            elif replay.term_at_floor is None:
                raise CorruptLogError(
                    w.segments[0].path, -1, f"log starts after the snapshot at {snapshot.index}"
                )
            else:
                reset = replay.term_at_floor != snapshot.term
            if reset:
                replay.reset(snapshot.index, snapshot.term)
            mark = _MARK.pack(b"S", snapshot.index, snapshot.term, reset)
            w.append([mark], 0, replay.hard_state)
        entries = tuple(replay.entries)
        floor = snapshot.index if snapshot else 0
        if entries and entries[0].index != floor + 1:
            raise CorruptLogError(
                w.segments[0].path,
                -1,
                f"log starts at {entries[0].index}, snapshot ends at {floor}",
            )
        return RaftState(replay.hard_state, snapshot, entries)

    def _scan(self, seq: int, replay: _Replay, *, newest: bool) -> None:
        ops, w = self._ops, self._w
        path = w.path(_segment_name(seq))
        data = ops.read(path)
        assert data is not None
        if len(data) < _SEG_HEADER.size:
            raise CorruptLogError(path, 0, f"only {len(data)} bytes, shorter than a header")
        magic, version, _flags, found_seq, salt = _SEG_HEADER.unpack_from(data)
        if magic != _SEG_MAGIC:
            raise CorruptLogError(path, 0, f"not a raft log segment (magic {magic!r})")
        if version != FORMAT_VERSION:
            raise CorruptLogError(
                path, 4, f"format version {version}, this library reads {FORMAT_VERSION}"
            )
        if found_seq != seq:
            raise CorruptLogError(path, 8, f"segment says it is number {found_seq}")
        pos = _SEG_HEADER.size
        max_index = 0
        while pos < len(data):
            batch = _batch_at(data, pos, salt)
            if batch is None:
                break
            records, end = batch
            for offset, payload in records:
                problem = replay.apply(payload)
                if problem is not None:
                    raise CorruptLogError(path, offset, problem)
                if payload[:1] == b"E":
                    max_index = max(max_index, _ENTRY.unpack_from(payload)[1])
            pos = end
        if pos < len(data):
            later = _later_batch(data, pos, salt)
            if not newest or later >= 0:
                what = (
                    "damaged batch"
                    if later < 0
                    else f"damaged batch (a valid one follows at {later})"
                )
                raise CorruptLogError(path, pos, what)
            # a torn tail: cut it, durably
            handle = ops.open(path, truncate=False)
            try:
                ops.truncate(handle, pos)
                ops.sync(handle)
            finally:
                ops.close(handle)
            self._repaired += len(data) - pos
        self._w.segments.append(_Segment(seq, path, salt, pos, max_index))

    # ----------------------------------------------------------------- reading

    def load(self) -> RaftState:
        """The durable state found when the log was opened (once).

        The state is handed over and not kept (the log holds no entries in
        memory), so a second call raises.

        Raises:
            RuntimeError: called a second time.
        """
        state = self._state
        if state is None:
            raise RuntimeError(
                "RaftLog.load() returns the recovered state once; it was called before"
            )
        self._state = None
        return state

    @property
    def hard_state(self) -> HardState:
        """The hard state as the saves queued so far leave it."""
        return self._hard_state

    @property
    def last_index(self) -> int:
        """The last entry's index as the saves queued so far leave the log (or the
        snapshot's index, or 0)."""
        return self._last

    @property
    def snapshot_index(self) -> int:
        """The latest snapshot's index as queued (0: none)."""
        return self._snap_index

    def term_at(self, index: int) -> int | None:
        """The term of the entry at ``index`` (the snapshot's term at its index),
        ``None`` if the log does not hold it."""
        if index == self._snap_index:
            return self._snap_term if index else 0
        if index < self._snap_index or index > self._last or not self._runs:
            return None
        i = bisect.bisect_right(self._runs, (index, 1 << 64)) - 1
        return self._runs[i][1]

    @property
    def last_term(self) -> int:
        """The last entry's term (or the snapshot's, or 0)."""
        term = self.term_at(self._last)
        return 0 if term is None else term

    def statistics(self) -> RaftLogStatistics:
        """Counters since open (a frozen object)."""
        w = self._w
        return RaftLogStatistics(
            saves=self._saves,
            flushes=w.flushes,
            bytes_written=w.bytes_written,
            snapshots=w.snapshots,
            segments=len(w.segments),
            segments_removed=w.segments_removed,
            repaired_bytes=self._repaired,
            pending=self._queued - self._durable,
        )

    # ----------------------------------------------------------------- writing

    def _check_usable(self) -> None:
        if self._closed:
            raise RuntimeError(f"raft log {self.directory} is closed")
        if self._failure is not None:
            raise RaftLogFailedError(
                f"raft log {self.directory} failed earlier; reopen it"
            ) from self._failure

    def _queue(
        self,
        hard_state: HardState | None,
        truncate_from: int | None,
        entries: Sequence[LogEntry],
        snapshot: Snapshot | None,
    ) -> None:
        """Validate one save against the front, then apply it to the front and queue it."""
        hs = self._hard_state
        if hard_state is not None:
            if not isinstance(hard_state, HardState):
                raise TypeError(f"hard_state must be a HardState, got {type(hard_state).__name__}")
            if hard_state.term < hs.term:
                raise ValueError(f"term must not decrease: {hs.term} -> {hard_state.term}")
            if (
                hard_state.term == hs.term
                and hs.voted_for is not None
                and hard_state.voted_for != hs.voted_for
            ):
                raise ValueError(
                    f"the vote of term {hs.term} went to {hs.voted_for};"
                    f" it cannot change to {hard_state.voted_for}"
                )
            hs = hard_state
        snap_index, snap_term, last = self._snap_index, self._snap_term, self._last
        keep = True
        if snapshot is not None:
            if not isinstance(snapshot, Snapshot):
                raise TypeError(f"snapshot must be a Snapshot, got {type(snapshot).__name__}")
            if snapshot.index <= snap_index:
                raise ValueError(
                    f"snapshot index {snapshot.index} is not above the current {snap_index}"
                )
            if snapshot.term < snap_term or snapshot.term > hs.term:
                raise ValueError(
                    f"snapshot term {snapshot.term} outside [{snap_term}, current term {hs.term}]"
                )
            keep = self.term_at(snapshot.index) == snapshot.term
            snap_index, snap_term = snapshot.index, snapshot.term
            last = last if keep else snapshot.index
        if truncate_from is not None:
            _check_int("truncate_from", truncate_from, 1)
            if not snap_index < truncate_from <= last + 1:
                raise ValueError(
                    f"truncate_from must be in ({snap_index}, {last + 1}] (after the snapshot,"
                    f" at most one past the last entry), got {truncate_from}"
                )
            last = truncate_from - 1
        if isinstance(entries, LogEntry) or not isinstance(entries, Sequence):
            raise TypeError(f"entries must be a sequence of LogEntry, got {type(entries).__name__}")
        prev_term = None
        for e in entries:
            if not isinstance(e, LogEntry):
                raise TypeError(f"entries must hold LogEntry values, got {type(e).__name__}")
            if e.index != last + 1:
                raise ValueError(f"entry {e.index} does not follow the log's last index {last}")
            if e.term > hs.term:
                raise ValueError(
                    f"entry {e.index} has term {e.term}, above the current term {hs.term}"
                )
            if prev_term is None:
                prev_term = self._term_after(last, snap_index, snap_term)
            if e.term < prev_term:
                raise ValueError(
                    f"entry {e.index} has term {e.term}, below the term {prev_term} before it"
                )
            prev_term = e.term
            last = e.index
        # valid: apply to the front
        first: list[bytes] = []
        if hs != self._hard_state:
            first.append(_HARD.pack(b"H", hs.term, -1 if hs.voted_for is None else hs.voted_for))
        rest: list[bytes] = []
        if snapshot is not None:
            if keep:
                self._runs = self._runs_after(snapshot.index)
            else:
                self._runs = []
                self._last = snapshot.index
            self._snap_index, self._snap_term = snapshot.index, snapshot.term
            rest.append(_MARK.pack(b"S", snapshot.index, snapshot.term, not keep))
        if truncate_from is not None:
            while self._runs and self._runs[-1][0] >= truncate_from:
                self._runs.pop()
            self._last = truncate_from - 1
            rest.append(_TRUNC.pack(b"T", truncate_from))
        for e in entries:
            if not self._runs or self._runs[-1][1] != e.term:
                self._runs.append((e.index, e.term))
            self._last = e.index
            rest.append(_ENTRY.pack(b"E", e.index, e.term) + e.data)
        self._hard_state = hs
        max_index = entries[-1].index if entries else 0
        if first:
            self._pending.append(_Records(tuple(first), 0, hs))
        if snapshot is not None:
            self._pending.append(_WriteSnapshot(snapshot))
        if rest:
            self._pending.append(_Records(tuple(rest), max_index, hs))
        self._queued += 1
        self._saves += 1

    def _term_after(self, last: int, snap_index: int, snap_term: int) -> int:
        """The term of entry ``last`` once the snapshot and truncation are applied."""
        if last == snap_index:
            return snap_term
        term = self.term_at(last)
        return 0 if term is None else term

    def _runs_after(self, index: int) -> list[tuple[int, int]]:
        if index >= self._last:
            return []
        runs = [(index + 1, self.term_at(index + 1) or 0)]
        runs.extend(r for r in self._runs if r[0] > index + 1)
        return runs

    async def save(
        self,
        *,
        hard_state: HardState | None = None,
        truncate_from: int | None = None,
        entries: Sequence[LogEntry] = (),
        snapshot: Snapshot | None = None,
    ) -> None:
        """Make one incremental record durable; returns once it (and every save
        queued before it) survives any crash.

        Applied in this order: ``hard_state`` replaces the hard state;
        ``snapshot`` is installed (Raft's rule: the entries after it are kept
        only if the log holds the snapshot's last entry with its term);
        ``truncate_from`` removes every entry at or after that index; ``entries``
        are appended and must continue the log. The record is validated and
        queued before the first checkpoint, so the log order is the call order
        and :attr:`last_index` reflects it at once. Concurrent calls share fsyncs
        (group commit); the fsync runs in a worker thread.

        A checkpoint. **Cancellation:** a cancelled save may or may not become
        durable — its record stays queued (later saves are ordered after it and
        will write it), and a crash before that loses it. The caller must act as
        if the save had not returned: never send anything that depends on it.
        A flusher that is cancelled finishes its write first (the worker thread
        is not abandoned), so a cancelled call returns promptly only when it was
        waiting for another task's flush.

        Args:
            hard_state: the new term and vote (the term never decreases; a vote
                cast in a term cannot change), or ``None`` to keep it.
            truncate_from: the first index to remove (after the snapshot, at most
                one past the last entry), or ``None``.
            entries: entries to append, consecutive from the log's end.
            snapshot: a snapshot above the current one, or ``None``. Its data is
                written to its own file; segments it covers are deleted once the
                record is durable.

        Raises:
            TypeError, ValueError: the record does not fit the log (nothing is
                queued, the log is unchanged).
            RuntimeError: the log is closed.
            RaftLogFailedError: a write or fsync failed (in this flush or an
                earlier one); nothing after it is durable.
        """
        self._check_usable()
        self._queue(hard_state, truncate_from, entries, snapshot)
        mine = self._queued
        while self._durable < mine:
            self._check_usable()  # failed, or closed by a task that gave up on aclose
            if self._flushing:
                await self._flushed.wait()
            else:
                await self._flush()

    async def save_record(
        self,
        record: PersistRecord,
        *,
        encode_entry: Callable[[Any], bytes],
        encode_snapshot: Callable[[Any], bytes],
    ) -> None:
        """:meth:`save` a Raft core's incremental record (``RaftPersist``).

        ``record.term``/``voted_for`` become the hard state; each entry of
        ``record.entries`` (with ``index`` and ``term``) is stored as
        ``encode_entry(entry)``; ``record.snapshot`` (with
        ``last_included_index`` and ``last_included_term``) as
        ``encode_snapshot(snapshot)``. Checkpoint, cancellation and errors as
        :meth:`save`.
        """
        snap = record.snapshot
        truncate_from = record.truncate_from
        if snap is not None and truncate_from is not None:
            # The record's order is snapshot, then truncation: a truncation at or
            # below the snapshot (a step that cut a conflicting suffix and then
            # compacted past the cut) removes every entry after the snapshot.
            truncate_from = max(truncate_from, snap.last_included_index + 1)
        await self.save(
            hard_state=HardState(record.term, record.voted_for),
            truncate_from=truncate_from,
            entries=[LogEntry(e.index, e.term, encode_entry(e)) for e in record.entries],
            snapshot=None
            if snap is None
            else Snapshot(snap.last_included_index, snap.last_included_term, encode_snapshot(snap)),
        )

    async def _flush(self) -> None:
        await (
            trio.lowlevel.checkpoint_if_cancelled()
        )  # not cancelled past here: no yield before the thread
        self._flushing = True
        batch, self._pending = self._pending, []
        upto = self._queued
        try:
            if self._io == "thread":
                await trio.to_thread.run_sync(self._w.write, batch)
            else:
                self._w.write(batch)
                await trio.lowlevel.cancel_shielded_checkpoint()
        except BaseException as exc:
            # what reached the disk is unknown: nothing more may be written
            self._failure = exc
            if not isinstance(exc, Exception):
                raise
        else:
            self._durable = upto
        finally:
            self._flushing = False
            flushed, self._flushed = self._flushed, trio.Event()
            flushed.set()

    async def aclose(self) -> None:
        """Make every queued save durable (those of cancelled callers too), then
        close the files. Idempotent.

        A checkpoint. If cancelled, the log stays open and usable (call again);
        if the log failed, the queued saves are dropped and the files closed.
        """
        await trio.lowlevel.checkpoint()
        while self._failure is None and not self._closed:
            if self._flushing:
                await self._flushed.wait()
            elif self._durable < self._queued:
                await self._flush()
            else:
                break
        self._closed = True
        try:
            self._w.close()
        finally:
            if self._dir_lock is not None:
                self._dir_lock.close()

    def close(self) -> None:
        """Close the files (idempotent), dropping queued saves not yet written (as a
        crash would). Blocking; not while a save is being written.

        Raises:
            RuntimeError: a flush is in progress (use :meth:`aclose`).
        """
        if self._flushing:
            raise RuntimeError("a save is being written; use `await log.aclose()`")
        self._closed = True
        try:
            self._w.close()
        finally:
            if self._dir_lock is not None:
                self._dir_lock.close()

    def __enter__(self) -> RaftLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


CLOSE_GRACE: Final = 10.0
"""Seconds :func:`open_raft_log` lets a cancelled exit spend writing queued saves."""


@asynccontextmanager
async def open_raft_log(
    directory: str | os.PathLike[str],
    *,
    segment_bytes: int = 64 << 20,
    ops: SegmentFileOps | None = None,
    salts: random.Random | None = None,
    io: Literal["thread", "inline"] = "thread",
) -> AsyncIterator[RaftLog]:
    """Open a :class:`RaftLog` in a worker thread; on exit, write the queued saves
    and close it.

    Entering is a checkpoint (the open runs in a thread and is not abandoned if
    cancelled). On exit — also when the body raised or was cancelled — the log
    is closed after :meth:`RaftLog.aclose` has written what was queued, within a
    shielded scope bounded by :data:`CLOSE_GRACE` seconds; if that deadline
    passes (a hung disk), the files are closed only if no write is in flight.

    Args:
        directory, segment_bytes, ops, salts, io: as :class:`RaftLog`.

    Raises:
        as :class:`RaftLog`.
    """
    log = await trio.to_thread.run_sync(
        functools.partial(
            RaftLog, directory, segment_bytes=segment_bytes, ops=ops, salts=salts, io=io
        )
    )
    try:
        yield log
    finally:
        with trio.move_on_after(CLOSE_GRACE, shield=True):
            await log.aclose()
        if not log._flushing:
            log.close()
