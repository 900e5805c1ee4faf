"""A Raft node on Trio: a replicated state machine with submit, linearizable reads,
an observable leader and leadership scopes.

Theory of operation
-------------------

``async with open_raft_node(node_id, peers, data_dir, state_machine) as node:``
runs, in a nursery scoped to the block:

* the sans-IO core (:class:`~trio_foundation.protocols.raft.RaftNode`) on a
  :class:`~trio_foundation.runtime.driver.NodeDriver` in push mode: the TCP
  transport's reader hands every peer message to the core synchronously;
* a TCP transport (:func:`~trio_foundation.runtime.tcp.open_tcp_transport`) on
  the node's own address, for peers **and** clients (one port per node);
* a *persister* over :class:`~trio_foundation.runtime.raft_log.RaftLog`. The
  driver's persist callback is synchronous, so it only queues the core's
  ``RaftPersist`` record; the persister writes the queued records (consecutive
  ones merged into one save, so a burst costs one fsync) and **every message the
  core sends after a record is held until that record is durable** ("persist
  before send"; the held messages are released in order) — except a leader's
  ``AppendEntries`` that depends on nothing not yet durable (its term is durable,
  its ``leader_commit`` at most the last durable index here): it goes out at once,
  so the leader's fsync runs in parallel with the followers' (Raft thesis
  §10.2.1). Replies to local callers are returned only once the record queued by
  their request's step (the entry) is durable, and a successful one only once
  this node's log is durable up to its commit index (the core counts its own,
  possibly not yet durable, copy towards a commit: no reply reveals such a commit).
  A save that fails ends the node (its ``async with`` raises).

Commands, queries and results are encoded with msgspec MessagePack (``types``
given to :func:`open_raft_node` decode them); the core replicates bytes.

**Exactly once.** Each :meth:`RaftNodeHandle.submit` draws a fresh random 63-bit
session id and uses request id 1 in the core's replicated session table
(thesis §6.3): a retry after a timeout, a lost reply or a leader change carries
the same pair, so it is applied at most once while the table remembers the
session (the ``max_sessions`` most recently used; 10 000 by default).

**Leadership** (:meth:`RaftNodeHandle.leadership`): see ``docs/leader-election.md``.
The body starts only after a ReadIndex round (a heartbeat acknowledged by a
majority, sent after the round began at local time ``s``) confirmed this node
leads, and it runs under a deadline ``s + lease`` with ``lease = T (1 - rho) / (1
+ rho)`` (``T`` the election timeout, ``rho`` ``max_clock_drift``), which each
further confirmed round pushes forward. It is cancelled (and
:class:`~trio_foundation.LeadershipLostError` raised) at that deadline, or as
soon as the core steps down. A follower that acknowledged a heartbeat refuses
votes (and PreVotes) for ``T`` of its own clock after it (the core's
CheckQuorum lease), so no majority can elect another leader before the deadline
while clocks drift apart by at most ``rho``. A node restarted from a data dir
waits ``T (1 + rho)`` before it starts, because its lease memory was lost.
"""

from __future__ import annotations

import functools
import itertools
import logging
import os
import random
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any, Final, Literal, final

import attrs
import msgspec
import trio
import trio_util

from .._errors import FoundationError, LeadershipLostError
from ..protocols import raft as core
from ..protocols.effects import Reply
from ..runtime.driver import NO_STATE, NodeDriver
from ..runtime.raft_log import RaftLog, open_raft_log
from ..runtime.tcp import TcpTransport, open_tcp_transport
from ..runtime.transport import Envelope
from .raft_monitor import RaftNodeMonitor
from .raft_wire import (
    DEFAULT_MAX_FRAME,
    FRAME_MARGIN,
    MAX_BATCH,
    MAX_MEMBER_ID,
    MIN_FRAME,
    CAdmin,
    CBatchItem,
    CBatchReply,
    CBatchResult,
    CRead,
    CReply,
    CSnapshot,
    CStatus,
    CStatusReply,
    CSubmit,
    CSubmitBatch,
    SnapshotAssembler,
    WSnapshotChunk,
    decode_entry,
    decode_snapshot,
    encode_entry,
    encode_snapshot,
    from_wire,
    max_command_bytes,
    raft_protocol,
    snapshot_blob,
    snapshot_chunk,
    snapshot_chunks,
    split_append,
    to_wire,
)

__all__ = [
    "Codec",
    "RaftClient",
    "RaftNodeHandle",
    "RaftRequestError",
    "open_raft_client",
    "open_raft_node",
]

logger = logging.getLogger("trio_foundation.coordination.consensus")

_LEASE_PROBE: Final = b""
_MAX_HELD: Final = 8192


class RaftRequestError(FoundationError):
    """A request the cluster refused for good (a command that does not decode).

    Attributes:
        reason: the node's reason.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(f"raft request refused: {reason}")
        self.reason = reason


@final
@attrs.frozen
class Codec:
    """How user values become the bytes the core replicates (msgspec MessagePack).

    Attributes:
        command: the type commands decode to on the replicas (``Any``: builtins).
        result: the type results decode to for the caller.
        query: the type queries decode to on the replicas.
        answer: the type query answers decode to for the caller.
    """

    command: Any = Any
    result: Any = Any
    query: Any = Any
    answer: Any = Any

    def decoders(self) -> tuple[Any, Any, Any, Any]:
        """msgspec decoders for the four types."""
        d = msgspec.msgpack.Decoder
        return d(self.command), d(self.result), d(self.query), d(self.answer)


_encoder: Final = msgspec.msgpack.Encoder()


class _BytesMachine:
    """The user's state machine behind a bytes interface (what the core replicates).

    A state machine with an ``apply_at(index, command)`` method is given each
    entry's log index (e.g. as a fencing token,
    :class:`~trio_foundation.protocols.lock_machine.LockMachine`): the core
    applies entry ``last_applied + 1`` and only then advances ``last_applied``.
    """

    def __init__(self, sm: core.StateMachine, command: Any, query: Any) -> None:
        self.sm = sm
        self._command = command
        self._query = query
        self._apply_at: Callable[[int, Any], Any] | None = getattr(sm, "apply_at", None)
        #: the core applying the entries (set once it is built)
        self.core: core.RaftNode | None = None

    def apply(self, command: Any) -> Any:
        decoded = self._command.decode(command)
        if self._apply_at is not None and self.core is not None:
            return _encoder.encode(self._apply_at(self.core.last_applied + 1, decoded))
        return _encoder.encode(self.sm.apply(decoded))

    def query(self, query: Any) -> Any:
        if query == _LEASE_PROBE:
            return _LEASE_PROBE
        return _encoder.encode(self.sm.query(self._query.decode(query)))

    def snapshot(self) -> bytes:
        return self.sm.snapshot()

    def restore(self, data: bytes) -> None:
        self.sm.restore(data)


def _merge(a: core.RaftPersist, b: core.RaftPersist) -> core.RaftPersist | None:
    """One record with the effect of ``a`` then ``b`` (``apply_persist`` semantics),
    or ``None`` when ``b`` installs a snapshot (saved on its own)."""
    if b.snapshot is not None:
        return None
    if b.truncate_from is None:
        return core.RaftPersist(
            b.term, b.voted_for, a.truncate_from, a.entries + b.entries, a.snapshot
        )
    t = b.truncate_from
    if a.entries and t >= a.entries[0].index:
        kept = tuple(e for e in a.entries if e.index < t)
        return core.RaftPersist(b.term, b.voted_for, a.truncate_from, kept + b.entries, a.snapshot)
    trunc = t if a.truncate_from is None else min(a.truncate_from, t)
    return core.RaftPersist(b.term, b.voted_for, trunc, b.entries, a.snapshot)


class _FrameGuard:
    """The last safety net of the send paths: a message the codec refuses for its
    size (``ValueError``) is dropped, counted per message type and logged once
    per type, never raised into the member's nursery."""

    def __init__(self, tcp: TcpTransport) -> None:
        self._tcp = tcp
        #: message type name -> messages dropped for exceeding the frame limit
        self.oversize: dict[str, int] = {}

    def dropped(self, kind: str, detail: str) -> None:
        first = kind not in self.oversize
        self.oversize[kind] = self.oversize.get(kind, 0) + 1
        if first:
            logger.error("raft: dropped a %s too big for a frame: %s", kind, detail)

    def send(self, dst: int, wire: Any) -> bool:
        try:
            return self._tcp.send_nowait(dst, wire)
        except ValueError as exc:
            self.dropped(type(wire).__name__, str(exc))
            return False


@attrs.define
class _SnapshotStream:
    """One follower's chunked snapshot in flight: the core's message it carries
    (its term, leader and read id go on every chunk), the snapshot's encoding
    (shared by every stream of that snapshot), the next offset to send, when the
    core last asked for it, and when its last chunk was queued (``None``: not yet)."""

    msg: core.InstallSnapshot
    blob: bytes
    offset: int
    asked: float
    finished: float | None = None

    @property
    def key(self) -> tuple[int, int, int]:
        return (self.msg.term, self.msg.last_included_index, self.msg.last_included_term)


class _Persister:
    """Queues the core's records; writes them in order; holds sends until durable.

    One exception to "hold every send until the records queued before it are
    durable": a leader's ``AppendEntries`` goes out at once (the leader writes
    its log in parallel with replicating it, Raft thesis §10.2.1) when it
    depends on nothing that is not yet durable — its ``term`` is the durable
    term, and its ``leader_commit`` is at most :attr:`durable_last`, the last
    log index known durable here (so every commit it reveals counted a durable
    copy on this node) — and nothing is held for that destination (the link
    stays FIFO). The entries it carries need not be durable here: a follower
    that stores them durably before acknowledging is what counts; the core may
    count its own copy towards a commit before that copy is durable, so no
    reply and no ``leader_commit`` reveals a commit above :attr:`durable_last`
    (see :meth:`wait_index` and ``RaftNodeHandle._local``).
    """

    def __init__(
        self,
        log: RaftLog,
        tcp: TcpTransport,
        *,
        last_index: Callable[[], int],
        durable_term: int = 0,
        durable_last: int = 0,
        guard: _FrameGuard | None = None,
        snapshot_resend: float = 0.3,
        stream_budget: int = 4 << 20,
        leading: Callable[[], bool] = lambda: True,
    ) -> None:
        self._log = log
        self._tcp = tcp
        self.guard = guard if guard is not None else _FrameGuard(tcp)
        self._max_frame = tcp.protocol.max_frame
        self._snapshot_resend = snapshot_resend
        self._stream_budget = stream_budget
        # chunk size of a stream: two fit the budget, so the transport's queue
        # (twice the budget) never overflows with chunks
        self._chunk_step = max(1024, min(self._max_frame - FRAME_MARGIN, stream_budget // 2))
        self._leading = leading
        # destination -> the chunked snapshot streaming to it (at most one each)
        self._streams: dict[int, _SnapshotStream] = {}
        # the last snapshot encoded for chunks: ((index, term), encoding)
        self._blob: tuple[tuple[int, int], bytes] | None = None
        self._streams_wake = trio.Event()
        # destination -> bytes of snapshot chunks held for durability
        self._held_chunk_bytes: dict[int, int] = {}
        #: AppendEntries split into several frames
        self.appends_split = 0
        #: chunked snapshot streams started (from chunk 0)
        self.snapshots_chunked = 0
        #: snapshot chunks handed to the transport
        self.snapshot_chunks_sent = 0
        #: snapshots encoded for chunking (once per snapshot, not per request)
        self.snapshot_encodes = 0
        self._queue: deque[core.RaftPersist] = deque()
        self.queued = 0
        self.durable = 0
        self._wake = trio.Event()
        self._durable_changed = trio.Event()
        # (sequence number that must be durable, destination, wire message)
        self._held: deque[tuple[int, int, Any]] = deque()
        self._held_for: dict[int, int] = {}  # destination -> messages held for it
        self.held_dropped = 0
        #: called after each save with (records merged, seconds it took); None: not timed
        self.on_saved: Callable[[int, float], None] | None = None
        self._last_index = last_index
        # the core's last log index after each queued record, in queue order
        self._last_after: deque[int] = deque()
        #: the term of the latest durable record
        self.durable_term = durable_term
        #: the last log index of the latest durable record
        self.durable_last = durable_last
        #: AppendEntries sent before the records queued ahead of them were durable
        self.sent_early = 0

    def enqueue(self, record: Any) -> None:
        self._queue.append(record)
        # the driver persists a step's record once the core's step returned: the
        # core's last index now is the log's last index after this record
        self._last_after.append(self._last_index())
        self.queued += 1
        self._wake.set()

    def _wires(self, dst: int, msg: Any) -> list[Any]:
        """``msg`` as the frames that carry it now: an oversized ``AppendEntries``
        split into consecutive ones; an oversized ``InstallSnapshot`` streamed
        (:meth:`_stream`: the chunks that fit the budget now, the rest later);
        nothing (counted, logged) if it cannot be cut to fit."""
        limit = self._max_frame
        try:
            if isinstance(msg, core.AppendEntries):
                parts = split_append(msg, limit)
                if len(parts) > 1:
                    self.appends_split += 1
                return list(parts)
            if isinstance(msg, core.InstallSnapshot):
                return self._stream(dst, msg)
        except ValueError as exc:
            self.guard.dropped(type(msg).__name__, str(exc))
            return []
        return [to_wire(msg)]

    def _stream(self, dst: int, msg: core.InstallSnapshot) -> list[Any]:
        """The core asks (again) to send ``msg`` to ``dst``. A snapshot that fits
        one frame goes whole. A bigger one is streamed: encoded once per snapshot,
        its chunks queued only while the transport holds less than the budget
        for ``dst`` (the rest on later asks or the stream timer, :meth:`run_streams`);
        restarted from chunk 0 only for a different snapshot or term, or when it
        finished an election timeout ago and the follower has not answered."""
        now = trio.current_time()
        key = (msg.last_included_index, msg.last_included_term)
        if self._blob is None or self._blob[0] != key:
            if len(msg.data) <= self._max_frame - FRAME_MARGIN:
                # probably one frame: no need to keep the encoding
                whole = snapshot_chunks(msg, self._max_frame)
                if not isinstance(whole[0], WSnapshotChunk):
                    self._streams.pop(dst, None)
                    return whole
            self._blob = (key, snapshot_blob(msg))
            self.snapshot_encodes += 1
        blob = self._blob[1]
        if len(blob) <= self._max_frame - FRAME_MARGIN:
            self._streams.pop(dst, None)
            return snapshot_chunks(msg, self._max_frame)
        stream = self._streams.get(dst)
        if (
            stream is None
            or stream.key != (msg.term, *key)
            or (stream.finished is not None and now - stream.finished >= self._snapshot_resend)
        ):
            stream = self._streams[dst] = _SnapshotStream(msg, blob, 0, now)
            self.snapshots_chunked += 1
            self._streams_wake.set()
        stream.asked = now
        return self._next_chunks(dst, stream, now)

    def _next_chunks(self, dst: int, stream: _SnapshotStream, now: float) -> list[Any]:
        """The chunks of ``stream`` that fit under the budget now: while the bytes
        queued in the transport (and held here) for ``dst`` plus one more chunk
        stay within the budget."""
        out: list[Any] = []
        step = self._chunk_step
        queued = self._tcp.queued_bytes(dst) + self._held_chunk_bytes.get(dst, 0)
        total = len(stream.blob)
        while stream.offset < total and queued + step <= self._stream_budget:
            out.append(snapshot_chunk(stream.msg, stream.blob, stream.offset, step))
            stream.offset += step
            queued += step
        if stream.offset >= total and stream.finished is None:
            stream.finished = now
        self.snapshot_chunks_sent += len(out)
        return out

    def snapshot_answered(self, src: int) -> None:
        """``src`` answered an ``InstallSnapshot``: its stream is done. Not a checkpoint."""
        self._streams.pop(src, None)

    async def run_streams(self, tick: float) -> None:
        """Push the streams' next chunks every ``tick`` seconds while any is open,
        so a snapshot goes at the pace the connection drains it; drop every stream
        when this member is no longer leader, and a stream the core stopped asking
        for an election timeout ago. A checkpoint; runs until cancelled."""
        while True:
            if not self._streams:
                await self._streams_wake.wait()
                self._streams_wake = trio.Event()
                continue
            await trio.sleep(tick)
            now = trio.current_time()
            if not self._leading():
                self._streams.clear()
                continue
            for dst, stream in list(self._streams.items()):
                if now - stream.asked >= 2 * self._snapshot_resend:
                    del self._streams[dst]
                    continue
                if stream.finished is None:
                    self._send_wires(dst, stream.msg, self._next_chunks(dst, stream, now))

    def send(self, dst: int, msg: Any) -> bool:
        return self._send_wires(dst, msg, self._wires(dst, msg))

    def _send_wires(self, dst: int, msg: Any, wires: list[Any]) -> bool:
        if self.durable >= self.queued:
            return all([self.guard.send(dst, wire) for wire in wires])
        if (
            isinstance(msg, core.AppendEntries)
            and msg.term == self.durable_term
            and msg.leader_commit <= self.durable_last
            and not self._held_for.get(dst)
        ):
            self.sent_early += 1
            return all([self.guard.send(dst, wire) for wire in wires])
        for wire in wires:
            self._held.append((self.queued, dst, wire))
            self._held_for[dst] = self._held_for.get(dst, 0) + 1
            self._count_held(dst, wire, 1)
            if len(self._held) > _MAX_HELD:  # a lossy link: Raft retries on its timers
                _, dropped, dropped_wire = self._held.popleft()
                self._held_for[dropped] -= 1
                self._count_held(dropped, dropped_wire, -1)
                self.held_dropped += 1
        return True

    def _count_held(self, dst: int, wire: Any, sign: int) -> None:
        if isinstance(wire, WSnapshotChunk):
            held = self._held_chunk_bytes.get(dst, 0) + sign * len(wire.data)
            if held:
                self._held_chunk_bytes[dst] = held
            else:
                self._held_chunk_bytes.pop(dst, None)

    async def wait_durable(self, seq: int) -> None:
        while self.durable < seq:
            await self._durable_changed.wait()

    async def wait_index(self, index: int) -> None:
        """Wait until the log up to ``index`` is durable here (:attr:`durable_last`)."""
        while self.durable_last < index:
            await self._durable_changed.wait()

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake = trio.Event()
            while self._queue:
                record = self._queue.popleft()
                upto = self.durable + 1
                while self._queue:
                    merged = _merge(record, self._queue[0])
                    if merged is None:
                        break
                    record = merged
                    self._queue.popleft()
                    upto += 1
                started = trio.current_time() if self.on_saved is not None else 0.0
                await self._log.save_record(
                    record, encode_entry=encode_entry, encode_snapshot=encode_snapshot
                )
                if self.on_saved is not None:
                    self.on_saved(upto - self.durable, trio.current_time() - started)
                for _ in range(upto - self.durable):
                    last = self._last_after.popleft()
                self.durable_last = last
                self.durable_term = record.term
                self.durable = upto
                while self._held and self._held[0][0] <= upto:
                    _, dst, wire = self._held.popleft()
                    self._held_for[dst] -= 1
                    self._count_held(dst, wire, -1)
                    self.guard.send(dst, wire)
                changed, self._durable_changed = self._durable_changed, trio.Event()
                changed.set()


@final
class _Transport:
    """The driver's view of the network: sends go through the persister's gate."""

    def __init__(self, node_id: int, persister: _Persister) -> None:
        self._node_id = node_id
        self._persister = persister

    @property
    def node_id(self) -> int:
        return self._node_id

    def send_nowait(self, dst: int, msg: Any) -> bool:
        return self._persister.send(dst, msg)

    async def receive(self) -> Envelope:
        raise RuntimeError("the raft node's messages are pushed to its driver")


@attrs.define
class _Call:
    done: trio.Event = attrs.field(factory=trio.Event)
    reply: CReply | CBatchReply | None = None


class _Caller:
    """Client side of the request protocol: find the leader, retry, dedupe by session."""

    def __init__(
        self,
        tcp: TcpTransport,
        members: list[int],
        codec: Codec,
        request_timeout: float,
        rng: random.Random,
        max_frame: int = DEFAULT_MAX_FRAME,
    ) -> None:
        self._tcp = tcp
        self._max_frame = max_frame
        self._members = members
        self._codec = codec
        self._command_dec, self._result_dec, self._query_dec, self._answer_dec = codec.decoders()
        self._request_timeout = request_timeout
        self._rng = rng
        self._calls: dict[int, _Call] = {}
        self._reqs = itertools.count(1)
        self._hint: int | None = None
        self._status_calls: dict[int, tuple[trio.Event, list[CStatusReply]]] = {}

    def _check_command(self, size: int) -> None:
        limit = max_command_bytes(self._max_frame)
        if size > limit:
            raise ValueError(_command_too_big(size, limit))

    def _on_reply(self, msg: CReply | CBatchReply | CStatusReply) -> None:
        if isinstance(msg, CStatusReply):
            waiting = self._status_calls.get(msg.req)
            if waiting is not None:
                waiting[1].append(msg)
                waiting[0].set()
            return
        call = self._calls.get(msg.req)
        if call is not None:
            call.reply = msg
            call.done.set()

    async def _local(self, op: str, value: Any) -> CReply | None:
        """Run the request on this process's own core, if it has one and leads."""
        return None

    def _local_leads(self) -> bool:
        return False

    async def _remote(self, target: int, make: Callable[[int], Any]) -> CReply | None:
        """Send a request to ``target`` and wait for its reply; ``None`` if the
        connection is down or drops, or no reply came within ``request_timeout``."""
        reply = await self._exchange(target, make)
        return reply if isinstance(reply, CReply) else None

    async def _local_batch(self, items: list[CBatchItem]) -> list[CBatchResult] | None:
        """Run a batch on this process's own core, if it has one and leads."""
        return None

    async def _exchange(
        self, target: int, make: Callable[[int], Any]
    ) -> CReply | CBatchReply | None:
        if not self._tcp.is_connected(target):
            await trio.sleep(0.005)
            return None
        req = next(self._reqs)
        call = self._calls[req] = _Call()
        try:
            self._tcp.send_nowait(target, make(req))
            with trio.move_on_after(self._request_timeout):
                while not call.done.is_set():
                    with trio.move_on_after(0.05):
                        await call.done.wait()
                    if not self._tcp.is_connected(target):  # it crashed: try another
                        break
            return call.reply
        finally:
            del self._calls[req]

    async def _call(self, op: str, value: Any) -> bytes:
        backoff = 0.01
        while True:
            if self._local_leads():
                reply = await self._local(op, value)
            else:
                target = self._hint
                if target is None or not self._tcp.is_connected(target):
                    up = [m for m in self._members if self._tcp.is_connected(m)]
                    target = self._rng.choice(up or self._members)
                if op == "propose":
                    p: core.Proposal = value
                    reply = await self._remote(target, _submit_maker(p))
                elif op == "read":
                    reply = await self._remote(target, lambda r: CRead(r, value))
                else:
                    reply = await self._remote(target, lambda r: CAdmin(r, op, value))  # type: ignore[arg-type]
                if reply is None:
                    self._hint = None
            if reply is not None:
                if reply.outcome == "ok":
                    return reply.value
                if reply.outcome == "not_leader":
                    self._hint = reply.leader
                    if reply.leader is not None and reply.leader in self._members:
                        continue  # a leader we can reach: ask it at once
                    # no leader known, or one whose address this caller lacks: back
                    # off (retrying at once would spin against the follower)
                elif reply.outcome == "rejected" and (
                    _final(reply.reason)
                    or (op not in ("propose", "read") and not _retryable(reply.reason))
                ):
                    raise RaftRequestError(reply.reason)
            await trio.sleep(backoff * (0.5 + self._rng.random()))
            backoff = min(backoff * 2, 0.5)

    async def submit(self, command: Any) -> Any:
        """Replicate ``command``; return its result once committed and applied.

        Retries (leader changes, lost replies, timeouts) until it succeeds; put a
        deadline on it (``trio.fail_after``). A checkpoint. **Cancellation:** a
        cancelled submit may or may not be applied (it may be committed later);
        nothing is kept for the caller.

        Raises:
            RaftRequestError: the cluster cannot decode the command.
            TypeError: ``command`` cannot be encoded.
            ValueError: ``command`` does not decode as the codec's command type,
                or it encodes above the command limit (the frame limit less
                :data:`~trio_foundation.coordination.raft_wire.FRAME_MARGIN`).
        """
        data = _encoder.encode(command)
        try:  # the replicas decode it when they apply it: refuse what they could not
            self._command_dec.decode(data)
        except msgspec.DecodeError as exc:
            raise ValueError(f"command {command!r} does not fit the codec: {exc}") from None
        self._check_command(len(data))
        proposal = core.Proposal(self._rng.getrandbits(63), 1, data)
        return self._result_dec.decode(await self._call("propose", proposal))

    async def submit_many(self, commands: list[Any]) -> list[Any]:
        """Replicate each command as its own log entry, in order, in one request;
        return their results once all are committed and applied.

        The pipelined form of :meth:`submit` (one round trip, one task and one
        group commit at the leader for up to :data:`MAX_BATCH` commands): each
        command has its own session, so each is applied exactly once however the
        batch is retried; the commands the leader could not take (not the leader,
        busy, a leader change) are sent again, the others are not. Commands of
        one batch are applied in list order, but other clients' commands may
        come between them (a batch is not a transaction).

        A checkpoint. **Cancellation:** as :meth:`submit`, for each command.

        Raises:
            RaftRequestError: the cluster cannot decode a command.
            TypeError: a command cannot be encoded.
            ValueError: a command does not decode as the codec's command type,
                more than :data:`MAX_BATCH` commands, a command above the command
                limit, or a batch that does not fit one frame (named with its
                size and the limit).
        """
        if len(commands) > MAX_BATCH:
            raise ValueError(f"at most {MAX_BATCH} commands per batch, got {len(commands)}")
        items = []
        for command in commands:
            data = _encoder.encode(command)
            try:
                self._command_dec.decode(data)
            except msgspec.DecodeError as exc:
                raise ValueError(f"command {command!r} does not fit the codec: {exc}") from None
            self._check_command(len(data))
            items.append(CBatchItem(self._rng.getrandbits(63), 1, data))
        size = sum(len(item.command) for item in items) + _ITEM_OVERHEAD * len(items)
        if size > self._max_frame - FRAME_MARGIN:
            raise ValueError(
                f"a batch of {size} bytes exceeds the frame limit of "
                f"{self._max_frame} bytes; send fewer commands per batch"
            )
        results: list[Any] = [None] * len(items)
        todo = list(range(len(items)))
        backoff = 0.01
        while todo:
            batch = [items[i] for i in todo]
            got: list[CBatchResult] | None = None
            if self._local_leads():
                got = await self._local_batch(batch)
            else:
                target = self._hint
                if target is None or not self._tcp.is_connected(target):
                    up = [m for m in self._members if self._tcp.is_connected(m)]
                    target = self._rng.choice(up or self._members)
                reply = await self._exchange(
                    target, functools.partial(CSubmitBatch, items=tuple(batch))
                )
                if isinstance(reply, CBatchReply) and len(reply.results) == len(batch):
                    got = list(reply.results)
                elif isinstance(reply, CReply) and reply.outcome == "not_leader":
                    got = [CBatchResult("not_leader", leader=reply.leader)] * len(batch)
                else:
                    self._hint = None
            retry_now = False
            if got is not None:
                left = []
                for i, result in zip(todo, got, strict=True):
                    if result.outcome == "ok":
                        results[i] = self._result_dec.decode(result.value)
                        continue
                    if result.outcome == "rejected" and _final(result.reason):
                        raise RaftRequestError(result.reason)
                    if result.outcome == "not_leader":
                        self._hint = result.leader
                        retry_now = result.leader is not None and result.leader in self._members
                    left.append(i)
                if len(left) < len(todo):
                    backoff = 0.01  # progress
                todo = left
            if todo and not retry_now:
                await trio.sleep(backoff * (0.5 + self._rng.random()))
                backoff = min(backoff * 2, 0.5)
        return results

    async def read(self, query: Any) -> Any:
        """Answer ``query`` from the state machine, linearizably (ReadIndex at the leader).

        A checkpoint; cancelling it has no effect on the cluster. Retries as
        :meth:`submit`.
        """
        data = _encoder.encode(query)
        try:
            self._query_dec.decode(data)
        except msgspec.DecodeError as exc:
            raise ValueError(f"query {query!r} does not fit the codec: {exc}") from None
        return self._answer_dec.decode(await self._call("read", data))

    async def change_membership(
        self, op: Literal["add_server", "add_learner", "remove_server"], node: int
    ) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """Add a voter or a learner, or remove a member (one server at a time).

        The new member must be running (started with ``join=True``) and connected
        to the cluster. Returns ``(voters, learners)`` once the change is
        committed. A checkpoint; a cancelled change may or may not happen.

        Raises:
            RaftRequestError: refused for good (already a member, not a member,
                the last voter).
        """
        if op not in ("add_server", "add_learner", "remove_server"):
            raise ValueError(f"unknown membership operation {op!r}")
        if not isinstance(node, int) or not 0 <= node <= MAX_MEMBER_ID:
            raise ValueError(f"node must be an int in [0, {MAX_MEMBER_ID}], got {node!r}")
        voters, learners = msgspec.msgpack.decode(await self._call(op, node))
        return tuple(voters), tuple(learners)

    async def fetch_snapshot(self, node: int) -> bytes:
        """Member ``node``'s snapshot taken now, as ``encode_snapshot`` bytes
        (empty: it has applied nothing). A checkpoint; retried until answered.

        Raises:
            RaftRequestError: the snapshot does not fit one reply frame.
        """
        while True:
            reply = await self._remote(node, lambda r: CSnapshot(r))
            if reply is not None and reply.outcome == "ok":
                return reply.value
            if reply is not None and _final(reply.reason):
                raise RaftRequestError(reply.reason)
            await trio.sleep(0.05)

    async def node_status(self, node: int, *, wait: float = 1.0) -> CStatusReply | None:
        """Node ``node``'s status, or ``None`` if it did not answer within ``wait`` s.

        A checkpoint; cancelling it has no effect.
        """
        req = next(self._reqs)
        waiting: tuple[trio.Event, list[CStatusReply]] = (trio.Event(), [])
        self._status_calls[req] = waiting
        try:
            with trio.move_on_after(wait):
                while True:
                    self._tcp.send_nowait(node, CStatus(req))
                    with trio.move_on_after(0.2):
                        await waiting[0].wait()
                    if waiting[1]:
                        return waiting[1][0]
            return None
        finally:
            del self._status_calls[req]


@final
class RaftNodeHandle(_Caller):
    """A running Raft member; build it with :func:`open_raft_node`.

    Attributes:
        node_id: this member's id.
        leader: the leader as this node knows it (``None``: unknown), a
            ``trio_util.AsyncValue``: ``await node.leader.wait_value(lambda v: v
            is not None)``.
        core: the sans-IO core (read-only use: :meth:`status`).
    """

    def __init__(
        self,
        node_id: int,
        members: list[int],
        tcp: TcpTransport,
        raft: core.RaftNode,
        codec: Codec,
        request_timeout: float,
        max_clock_drift: float,
        max_client_requests: int,
        max_snapshot_bytes: int = 1 << 30,
    ) -> None:
        others = [m for m in members if m != node_id] or members
        super().__init__(
            tcp, others, codec, request_timeout, random.Random(), tcp.protocol.max_frame
        )
        self.node_id = node_id
        self.core = raft
        self.leader: trio_util.AsyncValue[int | None] = trio_util.AsyncValue(None)
        self._role_term: trio_util.AsyncValue[tuple[str, int]] = trio_util.AsyncValue(
            ("follower", 0)
        )
        self.lease = raft.election_timeout * (1 - max_clock_drift) / (1 + max_clock_drift)
        self._max_client_requests = max_client_requests
        self._client_requests = 0
        self.driver: NodeDriver | None = None
        self.persister: _Persister | None = None
        self.nursery: trio.Nursery | None = None
        self.guard = _FrameGuard(tcp)
        self._assembler = SnapshotAssembler(
            max_snapshot_bytes, timeout=max(10 * raft.election_timeout, 1.0)
        )

    # ------------------------------------------------------------------ plumbing

    def _observe(self) -> None:
        c = self.core
        self.leader.value = c.leader_id
        self._role_term.value = (c.role, c.term)

    def _reply(self, src: int, msg: CReply | CBatchReply | CStatusReply) -> None:
        """Send a reply to a client; one too big for a frame becomes an error reply
        naming its size (in a batch, the largest results become errors)."""
        try:
            self._tcp.send_nowait(src, msg)
            return
        except ValueError:
            pass
        limit = self._max_frame
        size = len(_encoder.encode(msg))
        fallback: CReply | CBatchReply | CStatusReply
        if isinstance(msg, CReply):
            fallback = CReply(msg.req, "rejected", reason=_reply_too_big(size, limit))
        elif isinstance(msg, CBatchReply):
            results = list(msg.results)
            order = sorted(range(len(results)), key=lambda i: -len(results[i].value))
            for i in order:
                if size <= limit - FRAME_MARGIN:
                    break
                big = len(results[i].value)
                results[i] = CBatchResult("rejected", reason=_reply_too_big(big, limit))
                size -= big
            fallback = CBatchReply(msg.req, tuple(results))
        else:
            fallback = msg
        self.guard.send(src, fallback)

    def frame_stats(self) -> dict[str, int]:
        """Counters of the frame limit's effects (not a checkpoint): messages
        dropped for their size (``oversize.<type>``), appends split, snapshots
        streamed in chunks (streams started, chunks sent, snapshots encoded),
        snapshots reassembled,
        chunks dropped, and snapshots refused for ``max_snapshot_bytes``."""
        out = {f"oversize.{k}": v for k, v in sorted(self.guard.oversize.items())}
        p = self.persister
        if p is not None:
            out["appends_split"] = p.appends_split
            out["snapshots_chunked"] = p.snapshots_chunked
            out["snapshot_chunks_sent"] = p.snapshot_chunks_sent
            out["snapshot_encodes"] = p.snapshot_encodes
        out["snapshots_assembled"] = self._assembler.assembled
        out["snapshot_chunks_dropped"] = self._assembler.dropped
        out["snapshots_refused"] = self._assembler.refused
        return out

    def _on_message(self, env: Envelope) -> None:
        msg = env.msg
        if isinstance(msg, CReply | CBatchReply | CStatusReply):
            self._on_reply(msg)
            return
        if isinstance(msg, CStatus):
            s = self.core.status()
            reply = CStatusReply(
                msg.req,
                s.node,
                s.role,
                s.term,
                s.leader,
                s.commit_index,
                s.last_applied,
                s.last_index,
                s.config.voters,
                s.config.learners,
            )
            self._reply(env.src, reply)
            return
        if isinstance(msg, CSnapshot):
            if self.nursery is not None:
                self.nursery.start_soon(self._serve_snapshot, env.src, msg.req)
            return
        if isinstance(msg, CSubmit | CRead | CAdmin | CSubmitBatch):
            if self._client_requests >= self._max_client_requests or self.nursery is None:
                self._reply(env.src, CReply(msg.req, "rejected", reason="busy"))
                return
            self._client_requests += 1
            self.nursery.start_soon(self._serve_client, env.src, msg)
            return
        if env.src > MAX_MEMBER_ID or self.driver is None:
            return
        if isinstance(msg, WSnapshotChunk):
            whole = self._assembler.add(env.src, msg, trio.current_time())
            if whole is not None:
                self.driver.deliver(env.src, whole)
            return
        try:
            core_msg = from_wire(msg)
        except ValueError:
            return
        if core_msg is not None:
            if isinstance(core_msg, core.InstallSnapshotResponse) and self.persister is not None:
                self.persister.snapshot_answered(env.src)
            self.driver.deliver(env.src, core_msg)

    async def _serve_snapshot(self, src: int, req: int) -> None:
        driver = self.driver
        if driver is None or not driver.running:
            self._reply(src, CReply(req, "rejected", reason="not running"))
            return
        key = driver.submit("compact", None)  # answered in the same step
        driver.forget(key)
        snap = self.core.snapshot
        if snap is not None and self.persister is not None:
            await self.persister.wait_index(snap.last_included_index)
        data = b"" if snap is None else encode_snapshot(snap)
        self._reply(src, CReply(req, "ok", value=data))

    async def _serve_client(self, src: int, msg: CSubmit | CRead | CAdmin | CSubmitBatch) -> None:
        try:
            if isinstance(msg, CSubmitBatch):
                if len(msg.items) > MAX_BATCH:
                    reason = f"a batch of {len(msg.items)} commands (at most {MAX_BATCH})"
                    self._reply(src, CReply(msg.req, "rejected", reason=reason))
                    return
                results = await self._local_batch(list(msg.items))
                self._reply(src, CBatchReply(msg.req, tuple(results)))
                return
            if isinstance(msg, CSubmit):
                try:
                    self._command_dec.decode(msg.command)
                except msgspec.DecodeError as exc:
                    reply = CReply(msg.req, "rejected", reason=f"undecodable command: {exc}")
                    self._reply(src, reply)
                    return
                limit = max_command_bytes(self._max_frame)
                if len(msg.command) > limit:
                    reason = _command_too_big(len(msg.command), limit)
                    self._reply(src, CReply(msg.req, "rejected", reason=reason))
                    return
                value: Any = core.Proposal(msg.client_id, msg.request_id, msg.command)
                op = "propose"
            elif isinstance(msg, CAdmin):
                value, op = msg.node, msg.op
            else:
                try:
                    if msg.query != _LEASE_PROBE:
                        self._query_dec.decode(msg.query)
                except msgspec.DecodeError as exc:
                    reply = CReply(msg.req, "rejected", reason=f"undecodable query: {exc}")
                    self._reply(src, reply)
                    return
                value, op = msg.query, "read"
            with trio.move_on_after(self._request_timeout):
                answer = await self._local(op, value)
                if answer is not None and self._forwardable(src, answer):
                    # A client that may not know the leader's address: ask the leader
                    # for it (same session ids: a submit is still applied at most
                    # once). One hop only: requests from members are not forwarded.
                    assert answer.leader is not None
                    answer = await self._remote(answer.leader, _forward_maker(msg))
                if answer is not None:
                    self._reply(src, _with_req(answer, msg.req))
                    return
            self._reply(src, CReply(msg.req, "unknown"))
        finally:
            self._client_requests -= 1

    def _forwardable(self, src: int, answer: CReply) -> bool:
        leader = answer.leader
        return (
            answer.outcome == "not_leader"
            and src > MAX_MEMBER_ID
            and leader is not None
            and leader != self.node_id
            and self._tcp.is_connected(leader)
        )

    def _local_leads(self) -> bool:
        return self.driver is not None and self.driver.running and self.core.role == "leader"

    async def _local_batch(self, items: list[CBatchItem]) -> list[CBatchResult]:
        """Propose every command in one synchronous burst (their records merge into
        one group commit); wait up to ``request_timeout`` for their outcomes (in log
        order: the last one committed, the others mostly answered too), then for
        durability as :meth:`_local` does. Unanswered commands are ``unknown``."""
        driver, persister = self.driver, self.persister
        if driver is None or persister is None or not driver.running:
            return [CBatchResult("not_leader")] * len(items)
        results = [CBatchResult("unknown")] * len(items)
        keys: list[tuple[int, Any]] = []
        limit = max_command_bytes(self._max_frame)
        for i, item in enumerate(items):
            if len(item.command) > limit:
                reason = _command_too_big(len(item.command), limit)
                results[i] = CBatchResult("rejected", reason=reason)
                continue
            try:
                self._command_dec.decode(item.command)
            except msgspec.DecodeError as exc:
                results[i] = CBatchResult("rejected", reason=f"undecodable command: {exc}")
                continue
            proposal = core.Proposal(item.client_id, item.request_id, item.command)
            keys.append((i, driver.submit("propose", proposal)))
        seq = persister.queued  # the records of these steps (see _local)
        replies: list[tuple[int, Reply]] = []
        try:
            with trio.move_on_after(self._request_timeout):
                for i, key in keys:
                    reply = driver.reply_nowait(key)
                    if reply is None:
                        reply = await driver.wait_reply(key)
                    replies.append((i, reply))
        except trio.BrokenResourceError:
            pass  # stopped: the rest stay unknown
        finally:
            for _, key in keys:
                driver.forget(key)
        await persister.wait_durable(seq)
        if any(reply.ok for _, reply in replies):
            await persister.wait_index(self.core.commit_index)
        for i, reply in replies:
            r = _reply_to_wire(reply)
            results[i] = CBatchResult(r.outcome, r.value, r.leader, r.reason)
        return results

    async def _local(self, op: str, value: Any) -> CReply | None:
        driver, persister = self.driver, self.persister
        if driver is None or persister is None or not driver.running:
            return CReply(0, "not_leader", leader=None)
        key = driver.submit(op, value)
        # The records the reply can depend on were queued by this step: the entry
        # (and, on a single voter, its commit). A later commit needs acks of
        # followers, which the held sends let out only once the entry was durable.
        seq = persister.queued
        try:
            reply: Reply = await driver.wait_reply(key)
        except trio.BrokenResourceError:
            return None
        finally:
            driver.forget(key)
        await persister.wait_durable(seq)
        if reply.ok:
            # the core counts its own log towards a commit before it is durable here
            # (the persister sends appends early): reveal no state whose entries
            # are not durable on this node too
            await persister.wait_index(self.core.commit_index)
        return _reply_to_wire(reply)

    # ------------------------------------------------------------------ public

    def status(self) -> core.RaftStatus:
        """This node's :class:`~trio_foundation.protocols.raft.RaftStatus`. Not a checkpoint."""
        return self.core.status()

    @property
    def role_term(self) -> trio_util.AsyncValue[tuple[str, int]]:
        """This node's ``(role, term)`` after each step, as a ``trio_util.AsyncValue``
        (read-only use: ``await node.role_term.wait_value(lambda rt: rt[0] == "leader")``)."""
        return self._role_term

    @asynccontextmanager
    async def leadership(self) -> AsyncIterator[int]:
        """Run the body only while this node leads; yields the term (a fencing token).

        Waits until this node is leader and a ReadIndex round confirmed it, then
        runs the body under the lease deadline (see the module docstring),
        renewing it every heartbeat interval. A checkpoint on entry (cancelling
        the wait leaves nothing behind).

        Raises:
            LeadershipLostError: leadership was lost (the core stepped down, or
                the lease could not be renewed in time); the body was cancelled
                first, at its next checkpoint.
        """
        name = f"raft node {self.node_id}"
        while True:
            await self._role_term.wait_value(lambda rt: rt[0] == "leader")
            term = self.core.term
            start = trio.current_time()
            answer = await self._local("read", _LEASE_PROBE)
            if answer is not None and answer.outcome == "ok" and self.core.term == term:
                break
            await trio.sleep(self.core.heartbeat_interval)
        nursery = self.nursery
        if nursery is None:
            raise RuntimeError(f"{name} is closing")
        lost: list[str] = []
        with trio.CancelScope(deadline=start + self.lease) as scope:
            helpers = trio.CancelScope()
            nursery.start_soon(self._guard, helpers, scope, term, lost)
            try:
                yield term
            finally:
                helpers.cancel()
        if scope.cancelled_caught:
            if not lost:
                lost.append(f"lease of {self.lease:.3f} s not renewed by a quorum in time")
            raise LeadershipLostError(name, str(self.node_id), lost[0])

    async def _guard(
        self, helpers: trio.CancelScope, scope: trio.CancelScope, term: int, lost: list[str]
    ) -> None:
        """Cancel ``scope`` when the core steps down; push its deadline on each confirmed round."""

        async def watch_role() -> None:
            await self._role_term.wait_value(lambda rt: rt != ("leader", term))
            lost.append("stepped down (a newer term, or no quorum heard)")
            scope.cancel()

        async def renew() -> None:
            while True:
                await trio.sleep(self.core.heartbeat_interval)
                s = trio.current_time()
                answer = await self._local("read", _LEASE_PROBE)
                if answer is not None and answer.outcome == "ok" and self.core.term == term:
                    scope.deadline = max(scope.deadline, s + self.lease)

        with helpers:
            async with trio.open_nursery() as inner:
                inner.start_soon(watch_role)
                inner.start_soon(renew)


_ITEM_OVERHEAD: Final = 32  # bytes of a CBatchItem besides its command (at most 23)


def _command_too_big(size: int, limit: int) -> str:
    return (
        f"command of {size} bytes exceeds the limit of {limit} bytes "
        "(one log entry must fit one Raft frame)"
    )


def _reply_too_big(size: int, limit: int) -> str:
    return (
        f"reply of {size} bytes exceeds the frame limit {limit}: the result is lost"
        " (a submitted command was applied all the same; a read had no effect);"
        " narrow the range"
    )


def _final(reason: str) -> bool:
    """A refusal that retrying cannot change (the client raises it)."""
    return reason.startswith(("undecodable", "command of", "reply of"))


def _retryable(reason: str) -> bool:
    return reason.startswith(
        (
            "the leader has not yet committed",
            "a configuration change is in progress",
            "leadership transfer",
            "too many",
            "busy",
        )
    )


def _submit_maker(p: core.Proposal) -> Callable[[int], CSubmit]:
    cid, rid, cmd = p.client_id, p.request_id, p.command
    assert isinstance(cid, int) and isinstance(cmd, bytes)
    return lambda req: CSubmit(req, cid, rid, cmd)


def _reply_to_wire(reply: Reply) -> CReply:
    """A core's reply to a client request as the wire's :class:`CReply` (``req`` 0)."""
    if reply.ok:
        if isinstance(reply.value, core.Config):
            config = reply.value
            return CReply(0, "ok", value=_encoder.encode([config.voters, config.learners]))
        return CReply(0, "ok", value=reply.value)
    if isinstance(reply.value, core.NotLeader):
        return CReply(0, "not_leader", leader=reply.value.leader)
    reason = reply.value.reason if isinstance(reply.value, core.Rejected) else str(reply.value)
    return CReply(0, "rejected", reason=reason)


def _forward_maker(msg: CSubmit | CRead | CAdmin) -> Callable[[int], Any]:
    if isinstance(msg, CSubmit):
        return lambda req: CSubmit(req, msg.client_id, msg.request_id, msg.command)
    if isinstance(msg, CRead):
        return lambda req: CRead(req, msg.query)
    return lambda req: CAdmin(req, msg.op, msg.node)


def _with_req(reply: CReply, req: int) -> CReply:
    return CReply(req, reply.outcome, reply.value, reply.leader, reply.reason)


def _parse_peers(peers: Mapping[int, tuple[str, int]], node_id: int) -> dict[int, tuple[str, int]]:
    if node_id not in peers:
        raise ValueError(f"peers must include this node's own id {node_id}")
    for n in peers:
        if not isinstance(n, int) or not 0 <= n <= MAX_MEMBER_ID:
            raise ValueError(f"member ids must be ints in [0, {MAX_MEMBER_ID}], got {n!r}")
    return dict(peers)


@asynccontextmanager
async def open_raft_node(
    node_id: int,
    peers: Mapping[int, tuple[str, int]],
    data_dir: str | os.PathLike[str],
    state_machine: core.StateMachine,
    *,
    codec: Codec | None = None,
    secret: bytes | None = None,
    election_timeout: float = 0.3,
    heartbeat_interval: float | None = None,
    max_clock_drift: float = 0.05,
    request_timeout: float = 2.0,
    max_client_requests: int = 1024,
    max_log_entries: int = 10_000,
    listen: tuple[str, int] | None = None,
    join: bool = False,
    monitor: RaftNodeMonitor | None = None,
    max_frame: int = DEFAULT_MAX_FRAME,
    max_snapshot_bytes: int = 1 << 30,
    send_queue_bytes: int = 8 << 20,
) -> AsyncIterator[RaftNodeHandle]:
    """Run one Raft member for the body of an ``async with``.

    Args:
        node_id: this member's id (a key of ``peers``).
        peers: every member's id → ``(host, port)``, this one included: it
            listens on its own address (or ``listen``) for peers and clients.
        data_dir: the durable log's directory (created if missing; carries a
            format version).
        state_machine: the deterministic state machine (fresh; restored from the
            snapshot on restart). Its commands and results pass through ``codec``.
            If it has ``apply_at(index, command)``, that is called instead of
            ``apply`` with the entry's log index.
        codec: the msgspec types of commands, results, queries and answers
            (default: builtins).
        secret: the shared secret of the TCP transport (``None``: no auth).
        election_timeout: ``T`` in seconds (elections after ``[T, 2T)``).
        heartbeat_interval: seconds (default ``T / 10``).
        max_clock_drift: ``rho``, the bound on the relative rate difference of
            the members' clocks that leadership scopes rely on.
        request_timeout: seconds before a forwarded request is retried.
        max_client_requests: client requests served at once (more are refused
            as busy; clients retry).
        max_log_entries: log length that triggers a snapshot.
        listen: the address to bind instead of ``peers[node_id]`` (port 0: free).
        join: this node is not in the cluster's configuration yet: its initial
            voters are the other members of ``peers``; it never campaigns until
            a member adds it (:meth:`RaftNodeHandle.change_membership`). It dials
            the members, so they can reach it before they know its address.
        monitor: reports this member's events and metrics
            (:class:`~trio_foundation.coordination.raft_monitor.RaftNodeMonitor`;
            ``None``: nothing is observed, at no cost).
        max_frame: the largest frame in bytes (16 MiB; every member and client
            of a cluster must use the same). Bigger snapshots travel in chunks,
            bigger appends split; commands above ``max_frame - FRAME_MARGIN``
            are refused (see ``docs/consensus.md``, "Large snapshots and frames").
        max_snapshot_bytes: the largest snapshot (encoded, bytes) this member
            reassembles from chunks (1 GiB); a bigger one is refused.
        send_queue_bytes: the most payload bytes the transport queues per peer
            (8 MiB; the oldest are dropped beyond it). A chunked snapshot is
            streamed so that at most half of it is queued at once.

    Entering is a checkpoint (opening the log runs in a thread). On exit the
    node stops (peers see a crash; what was saved is on disk).

    Raises:
        ValueError: a bad argument, named.
        ~trio_foundation.runtime.raft_log.CorruptLogError: the data dir is damaged.
        OSError: the address cannot be bound.
    """
    members = _parse_peers(peers, node_id)
    protocol = raft_protocol(max_frame)
    if not isinstance(max_snapshot_bytes, int) or max_snapshot_bytes <= 0:
        raise ValueError(f"max_snapshot_bytes must be an int > 0, got {max_snapshot_bytes!r}")
    if (
        not isinstance(send_queue_bytes, int)
        or isinstance(send_queue_bytes, bool)
        or send_queue_bytes < MIN_FRAME
    ):
        raise ValueError(
            f"send_queue_bytes must be an int >= {MIN_FRAME}, got {send_queue_bytes!r}"
        )
    if not 0 <= max_clock_drift < 1:
        raise ValueError(f"max_clock_drift must be in [0, 1), got {max_clock_drift!r}")
    codec = codec if codec is not None else Codec()
    command_dec, _, query_dec, _ = codec.decoders()
    voters = sorted(m for m in members if not (join and m == node_id))
    if not voters:
        raise ValueError("a joining node needs at least one other member in peers")
    machine = _BytesMachine(state_machine, command_dec, query_dec)
    raft = core.RaftNode(
        node_id,
        voters,
        machine,
        election_timeout=election_timeout,
        heartbeat_interval=heartbeat_interval,
        max_log_entries=max_log_entries,
    )
    machine.core = raft
    async with open_raft_log(data_dir) as log:
        state = log.load()
        restored: Any = NO_STATE
        if state.hard_state.term or state.snapshot or state.entries:
            restored = core.RaftDurable(
                state.hard_state.term,
                state.hard_state.voted_for,
                decode_snapshot(state.snapshot.data) if state.snapshot else None,
                tuple(decode_entry(e.data) for e in state.entries),
            )
        handle: RaftNodeHandle | None = None

        def on_message(env: Envelope) -> None:
            if handle is not None:
                handle._on_message(env)

        address = listen if listen is not None else members[node_id]
        dial = {n: a for n, a in members.items() if n != node_id}
        async with open_tcp_transport(
            protocol,
            node_id,
            listen=address,
            peers=dial,
            secret=secret,
            on_message=on_message,
            backoff_max=0.5,
            send_queue_bytes=send_queue_bytes,
        ) as tcp:
            handle = RaftNodeHandle(
                node_id,
                sorted(members),
                tcp,
                raft,
                codec,
                request_timeout,
                max_clock_drift,
                max_client_requests,
                max_snapshot_bytes,
            )
            persister = _Persister(
                log,
                tcp,
                last_index=lambda: raft.last_index,
                durable_term=state.hard_state.term,
                durable_last=log.last_index,
                guard=handle.guard,
                snapshot_resend=election_timeout,
                stream_budget=send_queue_bytes // 2,
                leading=lambda: raft.role == "leader",
            )
            driver = NodeDriver(
                raft,
                _Transport(node_id, persister),
                persist=persister.enqueue,
                restored=restored,
                pull=False,
                trace=None if monitor is None else monitor.on_step,
            )
            driver.after_event.append(handle._observe)
            if monitor is not None:
                monitor.watch(raft)
                persister.on_saved = monitor.on_saved
            handle.persister = persister
            async with trio.open_nursery() as nursery:
                handle.nursery = nursery
                nursery.start_soon(persister.run)
                nursery.start_soon(persister.run_streams, min(0.005, election_timeout / 50))
                if restored is not NO_STATE:
                    # the lease the core kept in memory is gone: stay silent for T
                    await trio.sleep(election_timeout * (1 + max_clock_drift))
                await nursery.start(driver.run)
                handle.driver = driver
                try:
                    yield handle
                finally:
                    handle.nursery = None
                    nursery.cancel_scope.cancel()


@final
class RaftClient(_Caller):
    """A client of a Raft cluster (no member); build it with :func:`open_raft_client`.

    :meth:`submit`, :meth:`read` and :meth:`status` as on a member.
    """

    @property
    def members(self) -> list[int]:
        """The members' ids."""
        return list(self._members)

    async def wait_connected(self) -> None:
        """Wait until a connection to some member is up. A checkpoint; put a
        deadline on it (it waits forever while no member is reachable)."""
        while not any(self._tcp.is_connected(m) for m in self._members):  # noqa: ASYNC110
            await trio.sleep(0.01)
        await trio.lowlevel.checkpoint()


@asynccontextmanager
async def open_raft_client(
    members: Mapping[int, tuple[str, int]],
    *,
    codec: Codec | None = None,
    secret: bytes | None = None,
    request_timeout: float = 2.0,
    max_frame: int = DEFAULT_MAX_FRAME,
) -> AsyncIterator[RaftClient]:
    """Connect to the members ``id → (host, port)`` for the body of an ``async with``.

    The client's transport id is random above the members' range. Entering is
    a checkpoint; connections are made in the background. ``max_frame`` must be
    the members' frame limit (bytes; 16 MiB by default).
    """
    protocol = raft_protocol(max_frame)
    if not members:
        raise ValueError("a raft client needs at least one member address")
    client: RaftClient | None = None

    def on_message(env: Envelope) -> None:
        if client is not None and isinstance(env.msg, CReply | CBatchReply | CStatusReply):
            client._on_reply(env.msg)

    rng = random.Random()
    my_id = rng.randrange(MAX_MEMBER_ID + 1, 1 << 63)
    async with open_tcp_transport(
        protocol,
        my_id,
        peers=dict(members),
        secret=secret,
        on_message=on_message,
        backoff_max=0.5,
    ) as tcp:
        client = RaftClient(tcp, sorted(members), codec or Codec(), request_timeout, rng, max_frame)
        yield client
