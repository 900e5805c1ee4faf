"""Sans-IO core of Raft: elections, replication, reads, transfer, snapshots, membership.

Theory of operation
-------------------

The algorithm is Raft as in Ongaro & Ousterhout, "In Search of an Understandable
Consensus Algorithm" (2014, "the paper") and Ongaro's thesis "Consensus: Bridging
Theory and Practice" (2014, "the thesis"); the shape of the core — pure, driven
by inputs, drained as effects with stated persistence duties — is etcd-io/raft's.

* **Roles** are ``follower``, ``pre_candidate``, ``candidate`` and ``leader``. A
  *learner* is a follower that is not in the voter set: it receives the log but
  never votes in its own favour, never campaigns and is never counted in a quorum.
* **Elections** (paper §5.2) use a randomised timeout drawn from ``[T, 2T)`` of
  the node's local clock, ``T = election_timeout``, with the injected
  ``random.Random``. With **PreVote** (thesis §9.6) a node whose timer fires first
  asks, without changing its term, whether a majority *would* vote for it at
  ``term + 1``; only then does it bump its term. A node that was partitioned away
  therefore cannot force a healthy leader to step down when it returns.
* **CheckQuorum** (thesis §6.2): a leader that has not heard from a majority of
  voters within one ``T`` steps down. Conversely a node that heard from a leader
  less than ``T`` ago ignores RequestVote (and refuses PreVote) — the leader
  "lease" that makes PreVote effective — except for a leadership transfer. A
  node restarted from durable state with a term > 0 keeps that lease for ``T``
  from its start, leader unknown: it may have acknowledged a leader just before
  it stopped (etcd-io/raft forgets it — ``lead`` is ``None`` after a restart —
  and leaves the wait to the application; here the core keeps the promise).
* **Replication** (paper §5.3): AppendEntries carries the consistency check
  ``(prev_log_index, prev_log_term)``; a follower that fails it answers with a
  *conflict hint* (``conflict_term`` and the first index it holds of that term,
  or its log length) so the leader skips a whole term per round trip (the
  paper's "fast backtracking" optimisation, as etcd implements it). A follower
  only truncates its log at the first entry that *conflicts* (same index,
  different term), so a duplicated or reordered AppendEntries never removes
  entries it already acknowledged. Per follower the leader keeps a progress
  record in one of three states (etcd's ``Progress``): ``probe`` (one append in
  flight, resent by the heartbeat), ``replicate`` (up to ``max_inflight``
  pipelined appends of at most ``max_batch`` entries) and ``snapshot`` (an
  InstallSnapshot outstanding).
* **Commit rule** (paper §5.4.2, Figure 8): the leader advances its commit index
  to ``N`` only if a majority of voters hold entry ``N`` **and** entry ``N`` is of
  the leader's current term; older entries are committed indirectly. A new leader
  appends a ``noop`` entry at the start of its term so that it can commit.
* **Safety of a vote** rests on the vote being durable before it is announced:
  see *persistence duties* below.
* **Reads** use ReadIndex (thesis §6.4): the leader records ``read_index = max(
  commit_index, index of its term's noop)``, then confirms it is still leader by a
  heartbeat round — every AppendEntries carries the latest ``read_id`` and every
  response echoes it; once a majority of voters (itself included) answered a
  round ``>= read_id`` in the current term, and the state machine has applied up
  to ``read_index``, the read is answered from the local state machine.
* **Leadership transfer** (thesis §3.10): the leader stops taking proposals,
  brings the target up to date and sends it ``TimeoutNow``; the target starts an
  election at once (no PreVote, lease ignored by voters). Abandoned after ``T``.
* **Membership change** one server at a time (thesis §4.1): ``add_server``,
  ``add_learner``, ``remove_server``. A configuration entry takes effect on every
  node as soon as it is *appended* (not committed); a leader accepts a new change
  only when the previous one is committed **and** it has committed an entry of
  its own term (the fix Ongaro posted to raft-dev in 2015). A leader that removed
  itself steps down once the change is committed.
* **Snapshots and log compaction** (paper §7): ``compact`` (or a log longer than
  ``max_log_entries``) snapshots the state machine at the applied index and drops
  the log prefix; a follower that needs a dropped entry receives InstallSnapshot.
* **Client sessions** (thesis §6.3): a ``propose`` carries a client id and a
  request id; the *replicated* session table (part of every snapshot) remembers
  each client's last request id and result, so a retried command is applied once.
  The table keeps the ``max_sessions`` most recently used clients.

Persistence duties (the contract with the runtime, as etcd-io/raft's ``Ready``)
--------------------------------------------------------------------------------

Every method returns a list of effects. When the durable state changed, the
list **starts** with one ``Persist(RaftPersist(...))``: an *incremental* record
that the storage applies as :func:`apply_persist` does — (1) the hard state
``(term, voted_for)`` replaces the stored one; (2) if ``snapshot`` is set it
replaces the stored snapshot and every stored entry with an index ``<=`` its
``last_included_index`` is discarded; (3) if ``truncate_from`` is set every
stored entry with an index ``>=`` it is discarded; (4) ``entries`` are appended
(their indexes follow the stored log contiguously). **The record must be durable
(fsynced) before any later effect of the same list is executed**: the
``Send`` s after it (a vote granted, an append acknowledged, the leader's own
entries counted towards commit) depend on it. ``Reply`` s likewise follow it.
:meth:`RaftNode.snapshot_persistent` returns the full durable state
(:class:`RaftDurable`) that these records add up to, for harnesses.

After a crash, build a fresh node, :meth:`RaftNode.restore` the durable state and
call :meth:`RaftNode.on_start`. Commit and applied indexes are volatile: the
state machine restarts from the snapshot and is re-fed the committed entries as
the leader re-establishes the commit index.

Inputs and errors
-----------------

Messages from peers that are malformed, stale or impossible in the current state
are **counted** (:attr:`RaftNode.ignored`) and dropped; they never raise. Misuse
by the local runtime — an input before :meth:`~RaftNode.on_start`, an unknown
timer, an unknown client operation, ``restore`` after start — raises
:class:`RaftStateError` naming the state and the input.

Bounds: pending proposals (``max_pending_proposals``), pending reads
(``max_pending_reads``), uncommitted entries at a leader (``max_uncommitted``),
appends in flight per follower (``max_inflight``), entries per append
(``max_batch``), log length (``max_log_entries`` triggers compaction; a follower's
log can exceed it by at most the uncommitted tail a leader sends), and sessions
(``max_sessions``).
"""

from __future__ import annotations

import random
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable, Iterable
from typing import Any, Final, Literal, Protocol, TypeAlias, final, runtime_checkable

import attrs

from .effects import (
    CancelTimer,
    ClientRequest,
    CoreFactory,
    Effect,
    Persist,
    Reply,
    Send,
    SetTimer,
)

__all__ = [
    "CHECK_QUORUM_TIMER",
    "ELECTION_TIMER",
    "HEARTBEAT_TIMER",
    "TRANSFER_TIMER",
    "AppendEntries",
    "AppendEntriesResponse",
    "Config",
    "Entry",
    "EntryKind",
    "InstallSnapshot",
    "InstallSnapshotResponse",
    "NotLeader",
    "Proposal",
    "RaftDurable",
    "RaftMessage",
    "RaftNode",
    "RaftPersist",
    "RaftStateError",
    "RaftStatus",
    "Rejected",
    "RequestVote",
    "RequestVoteResponse",
    "Role",
    "Snapshot",
    "StateMachine",
    "TimeoutNow",
    "apply_persist",
    "raft_factory",
]

Role: TypeAlias = Literal["follower", "pre_candidate", "candidate", "leader"]
EntryKind: TypeAlias = Literal["command", "config", "noop"]
_ProgressState: TypeAlias = Literal["probe", "replicate", "snapshot"]

ELECTION_TIMER: Final = "election"
HEARTBEAT_TIMER: Final = "heartbeat"
CHECK_QUORUM_TIMER: Final = "check_quorum"
TRANSFER_TIMER: Final = "transfer"
_TIMERS: Final = frozenset({ELECTION_TIMER, HEARTBEAT_TIMER, CHECK_QUORUM_TIMER, TRANSFER_TIMER})

CLIENT_OPS: Final = frozenset(
    {
        "propose",
        "read",
        "transfer_leadership",
        "add_server",
        "add_learner",
        "remove_server",
        "compact",
    }
)


class RaftStateError(RuntimeError):
    """The local runtime gave the core an input that is impossible in its state.

    The message names the node, its state and the input, e.g. ``"node 2
    (follower, term 3) can't take on_message before on_start"``.
    """


def _nat(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


# --------------------------------------------------------------------------- values


@final
@attrs.frozen
class Config:
    """A cluster configuration.

    Attributes:
        voters: the voting members, sorted, non-empty.
        learners: non-voting members, sorted, disjoint from ``voters``.
    """

    voters: tuple[int, ...] = attrs.field()
    learners: tuple[int, ...] = attrs.field(default=())

    @voters.validator
    def _check_voters(self, _a: attrs.Attribute[tuple[int, ...]], v: tuple[int, ...]) -> None:
        if not v:
            raise ValueError("a configuration needs at least one voter")
        self._check_ids("voters", v)

    @learners.validator
    def _check_learners(self, _a: attrs.Attribute[tuple[int, ...]], v: tuple[int, ...]) -> None:
        self._check_ids("learners", v)
        if set(v) & set(self.voters):
            raise ValueError(f"nodes {sorted(set(v) & set(self.voters))} are voters and learners")

    @staticmethod
    def _check_ids(what: str, ids: tuple[int, ...]) -> None:
        if not isinstance(ids, tuple) or not all(_nat(i) for i in ids):
            raise ValueError(f"{what} must be a tuple of node ids >= 0, got {ids!r}")
        if list(ids) != sorted(set(ids)):
            raise ValueError(f"{what} must be sorted and distinct, got {ids!r}")

    @classmethod
    def of(cls, voters: Iterable[int], learners: Iterable[int] = ()) -> Config:
        """Build a configuration from any iterables of node ids (sorted for you)."""
        return cls(tuple(sorted(set(voters))), tuple(sorted(set(learners))))

    @property
    def quorum(self) -> int:
        """The size of a majority of the voters."""
        return len(self.voters) // 2 + 1

    @property
    def members(self) -> tuple[int, ...]:
        """Voters and learners, sorted."""
        return tuple(sorted(self.voters + self.learners))

    def has_quorum(self, nodes: Iterable[int]) -> bool:
        """Whether ``nodes`` include a majority of the voters."""
        voters = set(self.voters)
        return len(voters.intersection(nodes)) >= self.quorum


@final
@attrs.frozen
class Proposal:
    """A command proposed by a client, with its session identity.

    Attributes:
        client_id: the client's identity in the replicated session table, or
            ``None`` for a command that is not deduplicated.
        request_id: the client's request number; a client's request ids
            increase. A request id equal to the last applied one is a retry:
            answered with the remembered result, not applied again.
        command: the state machine's command.
    """

    client_id: Hashable | None
    request_id: int
    command: Any


@final
@attrs.frozen
class Entry:
    """One log entry.

    Attributes:
        term: the term of the leader that created it.
        index: its position in the log, from 1.
        kind: ``command`` (``command`` is a :class:`Proposal`), ``config``
            (``command`` is the new :class:`Config`) or ``noop``.
        command: see ``kind``.
    """

    term: int
    index: int
    kind: EntryKind
    command: Any = None


@final
@attrs.frozen
class Snapshot:
    """The state machine and session table as of ``last_included_index``.

    Attributes:
        last_included_index: the last log index the snapshot covers.
        last_included_term: that entry's term.
        config: the configuration in effect at that index.
        data: the state machine's :meth:`StateMachine.snapshot`.
        sessions: the session table: ``(client_id, request_id, result)`` in
            least- to most-recently-used order.
    """

    last_included_index: int
    last_included_term: int
    config: Config
    data: bytes
    sessions: tuple[tuple[Hashable, int, Any], ...] = ()


@final
@attrs.frozen
class RaftPersist:
    """An incremental durable-state record; see the module docstring for its semantics."""

    term: int
    voted_for: int | None
    truncate_from: int | None = None
    entries: tuple[Entry, ...] = ()
    snapshot: Snapshot | None = None


@final
@attrs.frozen
class RaftDurable:
    """A node's whole durable state: hard state, snapshot and the log after it."""

    term: int = 0
    voted_for: int | None = None
    snapshot: Snapshot | None = None
    log: tuple[Entry, ...] = ()


def apply_persist(durable: RaftDurable, record: RaftPersist) -> RaftDurable:
    """The durable state after ``record`` is applied to ``durable`` (the storage contract).

    Raises:
        ValueError: if the record's entries do not follow the remaining log
            contiguously (a storage adapter must refuse such a record).
    """
    snap = durable.snapshot
    log = list(durable.log)
    if record.snapshot is not None:
        snap = record.snapshot
        log = [e for e in log if e.index > snap.last_included_index]
    if record.truncate_from is not None:
        log = [e for e in log if e.index < record.truncate_from]
    for e in record.entries:
        expected = log[-1].index + 1 if log else (snap.last_included_index + 1 if snap else 1)
        if e.index != expected:
            raise ValueError(f"entry index {e.index} does not follow the log (expected {expected})")
        log.append(e)
    return RaftDurable(record.term, record.voted_for, snap, tuple(log))


# --------------------------------------------------------------------------- messages


@final
@attrs.frozen
class RequestVote:
    """Candidate → voter: vote for me in ``term`` (paper §5.2; PreVote, thesis §9.6).

    ``pre_vote``: a PreVote probe for ``term`` (the candidate's term + 1), which
    changes nobody's term. ``transfer``: the election follows a leadership
    transfer, so voters ignore their leader lease.
    """

    term: int
    candidate: int
    last_log_index: int
    last_log_term: int
    pre_vote: bool = False
    transfer: bool = False


@final
@attrs.frozen
class RequestVoteResponse:
    """Voter → candidate: ``granted`` or not, in ``term``."""

    term: int
    granted: bool
    pre_vote: bool = False


@final
@attrs.frozen
class AppendEntries:
    """Leader → follower: append ``entries`` after ``(prev_log_index, prev_log_term)``.

    ``read_id`` is the leader's latest ReadIndex round; the response echoes it.
    """

    term: int
    leader: int
    prev_log_index: int
    prev_log_term: int
    entries: tuple[Entry, ...]
    leader_commit: int
    read_id: int = 0


@final
@attrs.frozen
class AppendEntriesResponse:
    """Follower → leader.

    On success ``match_index`` is the last index known to match the leader's
    log. On failure ``match_index`` is the ``prev_log_index`` rejected, and the
    conflict hint is ``conflict_term`` (the follower's term at that index, 0 if
    it has no entry there) and ``conflict_index`` (the first index the follower
    holds of ``conflict_term``, or its last index + 1).
    """

    term: int
    success: bool
    match_index: int
    conflict_index: int = 0
    conflict_term: int = 0
    read_id: int = 0


@final
@attrs.frozen
class InstallSnapshot:
    """Leader → follower: replace your state with this snapshot (paper §7)."""

    term: int
    leader: int
    last_included_index: int
    last_included_term: int
    config: Config
    data: bytes
    sessions: tuple[tuple[Hashable, int, Any], ...] = ()
    read_id: int = 0


@final
@attrs.frozen
class InstallSnapshotResponse:
    """Follower → leader: my log now matches yours up to ``match_index``."""

    term: int
    match_index: int
    read_id: int = 0


@final
@attrs.frozen
class TimeoutNow:
    """Leader → transfer target: start an election now (thesis §3.10)."""

    term: int


RaftMessage: TypeAlias = (
    RequestVote
    | RequestVoteResponse
    | AppendEntries
    | AppendEntriesResponse
    | InstallSnapshot
    | InstallSnapshotResponse
    | TimeoutNow
)


# --------------------------------------------------------------------------- reply values


@final
@attrs.frozen
class NotLeader:
    """Reply value (``ok=False``): this node is not the leader; try ``leader``.

    The request certainly took no effect.
    """

    leader: int | None


@final
@attrs.frozen
class Rejected:
    """Reply value (``ok=False``): the request certainly took no effect, for ``reason``."""

    reason: str


@final
@attrs.frozen
class RaftStatus:
    """A node's observable state, for status displays and tests."""

    node: int
    role: Role
    term: int
    leader: int | None
    commit_index: int
    last_applied: int
    last_index: int
    snapshot_index: int
    config: Config
    ignored: int


@runtime_checkable
class StateMachine(Protocol):
    """The replicated state machine a :class:`RaftNode` drives.

    Every method must be deterministic: replicas applying the same commands in
    the same order must reach the same state and return the same results.
    """

    def apply(self, command: Any) -> Any:
        """Apply a committed command; return its result."""
        ...

    def query(self, query: Any) -> Any:
        """Answer a read-only query from the current state."""
        ...

    def snapshot(self) -> bytes:
        """Serialise the current state."""
        ...

    def restore(self, data: bytes) -> None:
        """Replace the current state with a :meth:`snapshot`'s."""
        ...


# --------------------------------------------------------------------------- leader bookkeeping


@attrs.define
class _Progress:
    """The leader's view of one follower (etcd's Progress)."""

    next: int
    match: int = 0
    state: _ProgressState = "probe"
    #: probe: an append is outstanding (cleared by a response or the heartbeat)
    probe_sent: bool = False
    # Invariant: increasing last indexes of the appends in flight; len <= max_inflight.
    inflight: deque[int] = attrs.field(factory=deque)
    #: heard from in the current CheckQuorum period
    recent_active: bool = False
    #: highest ReadIndex round the follower answered in this term
    read_ack: int = 0


@attrs.frozen
class _Read:
    read_id: int
    read_index: int
    client: Hashable
    query: Any


@attrs.frozen
class _Pending:
    term: int
    client: Hashable
    client_id: Hashable | None
    request_id: int


# --------------------------------------------------------------------------- the core


@final
class RaftNode:
    """One Raft server's core; implements :class:`~trio_foundation.protocols.effects.Core`.

    Client operations (:class:`ClientRequest` ``op`` and ``value``):

    * ``propose``: value a :class:`Proposal` (or any other value: a command
      without a session). Answered with the state machine's result once the
      entry is applied here; ``ok=False`` with :class:`NotLeader` or
      :class:`Rejected` when it certainly did not take effect. If leadership is
      lost meanwhile, the answer comes when this node learns the entry's fate
      (applied, or overwritten); if it never does (a snapshot covered it and the
      session table forgot it, or the node crashed) there is no answer and the
      client's own timeout applies — retry with the same request id.
    * ``read``: value a query for :meth:`StateMachine.query`; linearizable (ReadIndex).
    * ``transfer_leadership``: value the target node id.
    * ``add_server`` / ``add_learner`` / ``remove_server``: value a node id;
      answered with the new :class:`Config` once the change is committed.
    * ``compact``: snapshot at the applied index now; answered with that index.

    Followers answer every operation but ``compact`` with ``NotLeader(leader)``.

    Args:
        node: this node's id (>= 0).
        voters: the initial voters (used until a snapshot or a config entry says otherwise).
        state_machine: the replicated state machine (fresh, empty).
        learners: the initial learners.
        election_timeout: ``T`` in seconds of local time; elections fire after ``[T, 2T)``.
        heartbeat_interval: seconds between heartbeats (default ``T / 10``); must be < ``T``.
        pre_vote: use PreVote.
        check_quorum: use CheckQuorum and the leader lease on votes.
        max_batch: entries per AppendEntries.
        max_inflight: pipelined appends per follower.
        max_pending_proposals: proposals awaiting their outcome at this node.
        max_pending_reads: reads awaiting confirmation.
        max_uncommitted: entries a leader holds beyond its commit index before it
            refuses proposals.
        max_log_entries: log length that triggers compaction.
        max_sessions: clients remembered by the session table.

    Raises:
        ValueError: for a bad id or bound.
        TypeError: if ``state_machine`` lacks the :class:`StateMachine` methods.
    """

    def __init__(
        self,
        node: int,
        voters: Iterable[int],
        state_machine: StateMachine,
        *,
        learners: Iterable[int] = (),
        election_timeout: float = 1.0,
        heartbeat_interval: float | None = None,
        pre_vote: bool = True,
        check_quorum: bool = True,
        max_batch: int = 64,
        max_inflight: int = 8,
        max_pending_proposals: int = 1024,
        max_pending_reads: int = 1024,
        max_uncommitted: int = 1024,
        max_log_entries: int = 10_000,
        max_sessions: int = 10_000,
    ) -> None:
        if not _nat(node):
            raise ValueError(f"node id must be an int >= 0, got {node!r}")
        if not isinstance(state_machine, StateMachine):
            raise TypeError("state_machine needs apply, query, snapshot and restore methods")
        if not election_timeout > 0:
            raise ValueError(f"election_timeout must be > 0, got {election_timeout!r}")
        hb = election_timeout / 10 if heartbeat_interval is None else heartbeat_interval
        if not 0 < hb < election_timeout:
            raise ValueError(f"heartbeat_interval must be in (0, {election_timeout}), got {hb!r}")
        for name, value in (
            ("max_batch", max_batch),
            ("max_inflight", max_inflight),
            ("max_pending_proposals", max_pending_proposals),
            ("max_pending_reads", max_pending_reads),
            ("max_uncommitted", max_uncommitted),
            ("max_log_entries", max_log_entries),
            ("max_sessions", max_sessions),
        ):
            if not (_nat(value) and value > 0):
                raise ValueError(f"{name} must be an int > 0, got {value!r}")
        self.id: Final = node
        self.sm: Final = state_machine
        self.initial_config: Final = Config.of(voters, learners)
        self.election_timeout: Final = float(election_timeout)
        self.heartbeat_interval: Final = float(hb)
        self.pre_vote: Final = pre_vote
        self.check_quorum: Final = check_quorum
        self.max_batch: Final = max_batch
        self.max_inflight: Final = max_inflight
        self.max_pending_proposals: Final = max_pending_proposals
        self.max_pending_reads: Final = max_pending_reads
        self.max_uncommitted: Final = max_uncommitted
        self.max_log_entries: Final = max_log_entries
        self.max_sessions: Final = max_sessions

        # -- durable (mirrored by every Persist record emitted)
        self.term = 0
        self.voted_for: int | None = None
        self._snapshot: Snapshot | None = None
        # Invariant: contiguous indexes, starting at snapshot_index + 1.
        self._log: list[Entry] = []

        # -- volatile
        self.role: Role = "follower"
        self.leader_id: int | None = None
        # Invariant: snapshot_index <= last_applied <= commit_index <= last_index.
        self.commit_index = 0
        self.last_applied = 0
        self.config = self.initial_config
        self.config_index = 0
        self._sessions: OrderedDict[Hashable, tuple[int, Any]] = OrderedDict()
        self._started = False
        self._rng = random.Random(0)
        self._last_leader_contact = float("-inf")
        #: local time until which a restarted node keeps the lease it may have granted
        self._restart_lease_end = float("-inf")
        self._votes: set[int] = set()
        self._progress: dict[int, _Progress] = {}
        self._pending: dict[int, _Pending] = {}
        self._reads: deque[_Read] = deque()
        self._read_seq = 0
        self._noop_index = 0
        self._transfer: tuple[int, Hashable] | None = None
        self._timeout_now_sent = False

        # -- the effects of the step being handled
        self._dirty = False
        self._truncate: int | None = None
        self._new_entries: list[Entry] = []
        self._new_snapshot: Snapshot | None = None
        self._out: list[Effect] = []

        #: malformed, stale or out-of-place messages dropped
        self.ignored = 0
        #: vote requests ignored because a leader was heard from within T
        self.lease_ignored = 0
        #: snapshots received from a leader and installed
        self.snapshots_installed = 0
        #: appends refused because they would overwrite a committed entry
        #: (impossible unless another node is broken)
        self.overwrite_refused = 0

    # ------------------------------------------------------------------ observation

    @property
    def snapshot_index(self) -> int:
        """The last index covered by the snapshot (0 without one)."""
        return self._snapshot.last_included_index if self._snapshot else 0

    @property
    def snapshot_term(self) -> int:
        """The term of the snapshot's last entry (0 without one)."""
        return self._snapshot.last_included_term if self._snapshot else 0

    @property
    def snapshot(self) -> Snapshot | None:
        """The current snapshot, if any."""
        return self._snapshot

    @property
    def last_index(self) -> int:
        """The index of the last log entry (or of the snapshot)."""
        return self._log[-1].index if self._log else self.snapshot_index

    @property
    def last_term(self) -> int:
        """The term of the last log entry (or of the snapshot)."""
        return self._log[-1].term if self._log else self.snapshot_term

    @property
    def log(self) -> tuple[Entry, ...]:
        """The log entries after the snapshot."""
        return tuple(self._log)

    def term_at(self, index: int) -> int | None:
        """The term of entry ``index``; ``None`` if compacted away (below the
        snapshot) or beyond the log; 0 for index 0."""
        si = self.snapshot_index
        if index == si:
            return self.snapshot_term
        if index < si or index > self.last_index:
            return None
        return self._log[index - si - 1].term

    def entry(self, index: int) -> Entry | None:
        """Entry ``index`` if it is in the log (not compacted, not beyond the end)."""
        si = self.snapshot_index
        if index <= si or index > self.last_index:
            return None
        return self._log[index - si - 1]

    def status(self) -> RaftStatus:
        """A frozen summary of the node's state."""
        return RaftStatus(
            node=self.id,
            role=self.role,
            term=self.term,
            leader=self.leader_id,
            commit_index=self.commit_index,
            last_applied=self.last_applied,
            last_index=self.last_index,
            snapshot_index=self.snapshot_index,
            config=self.config,
            ignored=self.ignored,
        )

    @property
    def pending_proposals(self) -> int:
        """Proposals awaiting their outcome here."""
        return len(self._pending)

    @property
    def pending_reads(self) -> int:
        """Reads awaiting confirmation here."""
        return len(self._reads)

    def inflight(self, peer: int) -> int:
        """Appends in flight to ``peer`` (leader only; 0 otherwise)."""
        pr = self._progress.get(peer)
        return len(pr.inflight) if pr else 0

    # ------------------------------------------------------------------ Core: durability

    def snapshot_persistent(self) -> RaftDurable:
        """The full durable state the emitted ``Persist`` records add up to."""
        return RaftDurable(self.term, self.voted_for, self._snapshot, tuple(self._log))

    def restore(self, snapshot: Any) -> None:
        """Load durable state into this fresh node, before :meth:`on_start`.

        Raises:
            RaftStateError: after :meth:`on_start`.
            TypeError: if ``snapshot`` is not a :class:`RaftDurable`.
        """
        if self._started:
            raise self._misuse("restore")
        if not isinstance(snapshot, RaftDurable):
            raise TypeError(f"expected RaftDurable, got {type(snapshot).__name__}")
        self.term = snapshot.term
        self.voted_for = snapshot.voted_for
        self._snapshot = snapshot.snapshot
        self._log = list(snapshot.log)
        if snapshot.snapshot is not None:
            self._load_snapshot(snapshot.snapshot)
        self._recompute_config()

    # ------------------------------------------------------------------ Core: inputs

    def on_start(self, now: float, rng: random.Random) -> list[Effect]:
        """Start as a follower and arm the election timer.

        Raises:
            RaftStateError: if already started.
        """
        if self._started:
            raise self._misuse("on_start")
        self._started = True
        self._rng = rng
        if self.term > 0:
            # It may have acknowledged a leader just before it stopped, promising no
            # vote for T (CheckQuorum's lease): keep the promise from now, unknown leader.
            self._last_leader_contact = now
            self._restart_lease_end = now + self.election_timeout
        self._begin()
        self._out.append(SetTimer(ELECTION_TIMER, self._election_delay()))
        return self._flush()

    def on_timer(self, now: float, name: str) -> list[Effect]:
        """A timer fired. Timers of a role the node has left are ignored.

        Raises:
            RaftStateError: before :meth:`on_start`, or for an unknown timer name.
        """
        if not self._started or name not in _TIMERS:
            raise self._misuse(f"timer {name!r}")
        self._begin()
        if name == ELECTION_TIMER:
            if self.role != "leader":
                self._election_timeout(now)
        elif self.role == "leader":
            if name == HEARTBEAT_TIMER:
                for p in sorted(self._progress):
                    self._progress[p].probe_sent = False
                    self._send_append(p, heartbeat=True)
                self._out.append(SetTimer(HEARTBEAT_TIMER, self.heartbeat_interval))
            elif name == CHECK_QUORUM_TIMER:
                self._check_quorum()
            elif name == TRANSFER_TIMER and self._transfer is not None:
                _, client = self._transfer
                self._transfer = None
                self._out.append(Reply(client, Rejected("leadership transfer timed out"), ok=False))
        return self._flush()

    def on_client(self, now: float, request: ClientRequest) -> list[Effect]:
        """A client operation (see the class docstring).

        Raises:
            RaftStateError: before :meth:`on_start`, or for an unknown operation.
        """
        if not self._started or request.op not in CLIENT_OPS:
            raise self._misuse(f"client operation {request.op!r}")
        self._begin()
        op = request.op
        if op == "compact":
            if self._compact():
                self._out.append(Reply(request.client, self.snapshot_index))
            else:
                self._out.append(Reply(request.client, Rejected("nothing to compact"), ok=False))
        elif self.role != "leader":
            self._out.append(Reply(request.client, NotLeader(self.leader_id), ok=False))
        elif op == "propose":
            self._propose(request)
        elif op == "read":
            self._read(request)
        elif op == "transfer_leadership":
            self._start_transfer(request)
        else:
            self._change_membership(request)
        return self._flush()

    def on_message(self, now: float, src: int, msg: Any) -> list[Effect]:
        """A message from peer ``src``; malformed or stale ones are counted and dropped.

        Raises:
            RaftStateError: before :meth:`on_start`.
        """
        if not self._started:
            raise self._misuse(f"message {type(msg).__name__}")
        self._begin()
        if not _nat(src) or src == self.id or not _well_formed(msg, src):
            self.ignored += 1
            return self._flush()
        if not self._handle_term(now, src, msg):
            return self._flush()
        if isinstance(msg, RequestVote):
            self._on_request_vote(now, src, msg)
        elif isinstance(msg, RequestVoteResponse):
            self._on_vote_response(src, msg)
        elif isinstance(msg, AppendEntries):
            self._on_append(now, src, msg)
        elif isinstance(msg, AppendEntriesResponse):
            self._on_append_response(src, msg)
        elif isinstance(msg, InstallSnapshot):
            self._on_install_snapshot(now, src, msg)
        elif isinstance(msg, InstallSnapshotResponse):
            self._on_snapshot_response(src, msg)
        else:
            self._on_timeout_now(src, msg)
        return self._flush()

    # ------------------------------------------------------------------ step plumbing

    def _misuse(self, what: str) -> RaftStateError:
        state = self.role if self._started else "not started"
        return RaftStateError(f"node {self.id} ({state}, term {self.term}) can't take {what}")

    def _begin(self) -> None:
        self._dirty = False
        self._truncate = None
        self._new_entries = []
        self._new_snapshot = None
        self._out = []

    def _flush(self) -> list[Effect]:
        """The step's effects: the Persist record first, then everything else in order."""
        effects: list[Effect] = []
        if self._dirty:
            effects.append(Persist(self._persist_record()))
        effects.extend(self._out)
        self._begin()
        return effects

    def _persist_record(self) -> RaftPersist:
        return RaftPersist(
            self.term,
            self.voted_for,
            self._truncate,
            tuple(self._new_entries),
            self._new_snapshot,
        )

    def _send(self, to: int, msg: RaftMessage) -> None:
        self._out.append(Send(to, msg))

    def _election_delay(self) -> float:
        return self.election_timeout * (1.0 + self._rng.random())

    def _set_hard_state(self, term: int, voted_for: int | None) -> None:
        if (term, voted_for) != (self.term, self.voted_for):
            self.term, self.voted_for = term, voted_for
            self._dirty = True

    # ------------------------------------------------------------------ log plumbing

    def _append(self, entries: Iterable[Entry]) -> None:
        for e in entries:
            self._log.append(e)
            self._new_entries.append(e)
            self._dirty = True
            if e.kind == "config":
                self._set_config(e.command, e.index)

    def _truncate_from(self, index: int) -> None:
        """Drop entries >= index (never committed ones: the caller checked)."""
        si = self.snapshot_index
        del self._log[max(0, index - si - 1) :]
        if not self._new_entries or index < self._new_entries[0].index:
            self._truncate = index if self._truncate is None else min(self._truncate, index)
        self._new_entries = [e for e in self._new_entries if e.index < index]
        self._dirty = True
        for i in sorted(i for i in self._pending if i >= index):
            p = self._pending.pop(i)
            self._out.append(
                Reply(p.client, Rejected("entry overwritten by a newer leader"), False)
            )
        if self.config_index >= index:
            self._recompute_config()

    def _config_at(self, index: int) -> tuple[Config, int]:
        """The configuration in effect at ``index`` (>= snapshot_index) and its entry's index."""
        si = self.snapshot_index
        for e in reversed(self._log[: max(0, index - si)]):
            if e.kind == "config":
                return e.command, e.index
        if self._snapshot is not None:
            return self._snapshot.config, si
        return self.initial_config, 0

    def _recompute_config(self) -> None:
        cfg, idx = self._config_at(self.last_index)
        self._set_config(cfg, idx)

    def _set_config(self, config: Config, index: int) -> None:
        self.config = config
        self.config_index = index
        if self.role == "leader":
            for p in config.members:
                if p != self.id and p not in self._progress:
                    self._progress[p] = _Progress(next=self.last_index + 1)
            for p in [p for p in self._progress if p not in config.members]:
                del self._progress[p]

    def _load_snapshot(self, snap: Snapshot) -> None:
        self.sm.restore(snap.data)
        self._sessions = OrderedDict((c, (r, res)) for c, r, res in snap.sessions)
        self.commit_index = self.last_applied = snap.last_included_index

    # ------------------------------------------------------------------ terms and roles

    def _in_lease(self, now: float) -> bool:
        if not self.check_quorum:
            return False
        if self.leader_id is None and now >= self._restart_lease_end:
            return False
        return self.role == "leader" or now - self._last_leader_contact < self.election_timeout

    def _handle_term(self, now: float, src: int, msg: RaftMessage) -> bool:
        """Apply the term rules; return whether the message still needs handling."""
        if msg.term > self.term:
            if isinstance(msg, RequestVote):
                if self._in_lease(now) and not msg.transfer:
                    self.lease_ignored += 1
                    return False
                if not msg.pre_vote:
                    self._become_follower(msg.term, None)
            elif isinstance(msg, RequestVoteResponse) and msg.pre_vote and msg.granted:
                pass  # a PreVote grant carries the term the candidate asked about
            elif isinstance(msg, AppendEntries | InstallSnapshot):
                self._become_follower(msg.term, msg.leader)
            else:
                self._become_follower(msg.term, None)
            return True
        if msg.term < self.term:
            if isinstance(msg, AppendEntries | InstallSnapshot):
                # Tell the stale leader about the newer term, so it steps down.
                self._send(src, AppendEntriesResponse(self.term, False, 0))
            elif isinstance(msg, RequestVote):
                self._send(src, RequestVoteResponse(self.term, False, msg.pre_vote))
            else:
                self.ignored += 1
            return False
        return True

    def _become_follower(self, term: int, leader: int | None) -> None:
        if term > self.term:
            self._set_hard_state(term, None)
        was = self.role
        self.role = "follower"
        self.leader_id = leader
        self._votes = set()
        if was == "leader":
            self._out += [CancelTimer(HEARTBEAT_TIMER), CancelTimer(CHECK_QUORUM_TIMER)]
            self._out.append(CancelTimer(TRANSFER_TIMER))
            self._progress.clear()
            while self._reads:
                r = self._reads.popleft()
                self._out.append(Reply(r.client, NotLeader(leader), ok=False))
            if self._transfer is not None:
                _, client = self._transfer
                self._transfer = None
                if self._timeout_now_sent:
                    self._out.append(Reply(client, leader))
                else:
                    reply = Reply(client, Rejected("leadership lost before the transfer"), ok=False)
                    self._out.append(reply)
        self._out.append(SetTimer(ELECTION_TIMER, self._election_delay()))

    def _election_timeout(self, now: float) -> None:
        if self.id not in self.config.voters:
            self._out.append(SetTimer(ELECTION_TIMER, self._election_delay()))
            return
        if self.pre_vote:
            self._become_pre_candidate()
        else:
            self._become_candidate(transfer=False)

    def _request_votes(self, term: int, pre_vote: bool, transfer: bool) -> None:
        msg = RequestVote(term, self.id, self.last_index, self.last_term, pre_vote, transfer)
        for v in self.config.voters:
            if v != self.id:
                self._send(v, msg)

    def _become_pre_candidate(self) -> None:
        self.role = "pre_candidate"
        self.leader_id = None
        self._votes = {self.id}
        self._out.append(SetTimer(ELECTION_TIMER, self._election_delay()))
        if self.config.has_quorum(self._votes):
            self._become_candidate(transfer=False)
            return
        self._request_votes(self.term + 1, pre_vote=True, transfer=False)

    def _become_candidate(self, transfer: bool) -> None:
        self._set_hard_state(self.term + 1, self.id)
        self.role = "candidate"
        self.leader_id = None
        self._votes = {self.id}
        self._out.append(SetTimer(ELECTION_TIMER, self._election_delay()))
        if self.config.has_quorum(self._votes):
            self._become_leader()
            return
        self._request_votes(self.term, pre_vote=False, transfer=transfer)

    def _become_leader(self) -> None:
        self.role = "leader"
        self.leader_id = self.id
        self._votes = set()
        self._transfer = None
        self._timeout_now_sent = False
        self._reads.clear()
        self._progress = {
            p: _Progress(next=self.last_index + 1) for p in self.config.members if p != self.id
        }
        self._out += [
            CancelTimer(ELECTION_TIMER),
            SetTimer(HEARTBEAT_TIMER, self.heartbeat_interval),
            SetTimer(CHECK_QUORUM_TIMER, self.election_timeout),
        ]
        self._noop_index = self.last_index + 1
        self._append([Entry(self.term, self._noop_index, "noop")])
        for p in sorted(self._progress):
            self._send_append(p)
        self._maybe_commit()

    def _check_quorum(self) -> None:
        active = {self.id} | {p for p, pr in self._progress.items() if pr.recent_active}
        for pr in self._progress.values():
            pr.recent_active = False
        if self.check_quorum and not self.config.has_quorum(active):
            self._become_follower(self.term, None)
        else:
            self._out.append(SetTimer(CHECK_QUORUM_TIMER, self.election_timeout))

    # ------------------------------------------------------------------ votes

    def _up_to_date(self, msg: RequestVote) -> bool:
        return (msg.last_log_term, msg.last_log_index) >= (self.last_term, self.last_index)

    def _on_request_vote(self, now: float, src: int, msg: RequestVote) -> None:
        if msg.candidate != src:
            self.ignored += 1
            return
        if msg.pre_vote:
            grant = msg.term > self.term and self._up_to_date(msg) and not self._in_lease(now)
            self._send(src, RequestVoteResponse(msg.term if grant else self.term, grant, True))
            return
        can_vote = self.voted_for == src or (self.voted_for is None and self.leader_id is None)
        grant = can_vote and self._up_to_date(msg)
        if grant:
            self._set_hard_state(self.term, src)
            self._out.append(SetTimer(ELECTION_TIMER, self._election_delay()))
        self._send(src, RequestVoteResponse(self.term, grant, False))

    def _on_vote_response(self, src: int, msg: RequestVoteResponse) -> None:
        if src not in self.config.voters or not msg.granted:
            return
        if msg.pre_vote and self.role == "pre_candidate" and msg.term == self.term + 1:
            self._votes.add(src)
            if self.config.has_quorum(self._votes):
                self._become_candidate(transfer=False)
        elif not msg.pre_vote and self.role == "candidate" and msg.term == self.term:
            self._votes.add(src)
            if self.config.has_quorum(self._votes):
                self._become_leader()

    def _on_timeout_now(self, src: int, msg: TimeoutNow) -> None:
        if self.role != "follower" or src != self.leader_id or self.id not in self.config.voters:
            self.ignored += 1
            return
        self._become_candidate(transfer=True)

    # ------------------------------------------------------------------ follower: appends

    def _heard_from_leader(self, now: float, leader: int) -> None:
        if self.role != "follower":
            self._become_follower(self.term, leader)
        else:
            self._out.append(SetTimer(ELECTION_TIMER, self._election_delay()))
        self.leader_id = leader
        self._last_leader_contact = now

    def _on_append(self, now: float, src: int, msg: AppendEntries) -> None:
        if self.role == "leader":  # two leaders in one term: impossible unless a peer is broken
            self.ignored += 1
            return
        self._heard_from_leader(now, src)
        prev = msg.prev_log_index
        if prev > self.last_index:
            self._send(
                src,
                AppendEntriesResponse(self.term, False, prev, self.last_index + 1, 0, msg.read_id),
            )
            return
        si = self.snapshot_index
        if prev >= si and self.term_at(prev) != msg.prev_log_term:
            conflict_term = self.term_at(prev) or 0
            first = prev
            while first - 1 > si and self.term_at(first - 1) == conflict_term:
                first -= 1
            self._send(
                src,
                AppendEntriesResponse(self.term, False, prev, first, conflict_term, msg.read_id),
            )
            return
        # The log matches the leader's up to prev (entries <= snapshot are committed).
        new = [e for e in msg.entries if e.index > si]
        for k, e in enumerate(new):
            mine = self.term_at(e.index)
            if mine == e.term:
                continue
            if mine is not None:
                if e.index <= self.commit_index:
                    self.overwrite_refused += 1
                    self.ignored += 1
                    return
                self._truncate_from(e.index)
            self._append(new[k:])
            break
        match = max(prev + len(msg.entries), si)
        if msg.leader_commit > self.commit_index:
            self._commit_to(min(msg.leader_commit, match))
        self._send(src, AppendEntriesResponse(self.term, True, match, 0, 0, msg.read_id))

    def _on_install_snapshot(self, now: float, src: int, msg: InstallSnapshot) -> None:
        if self.role == "leader":
            self.ignored += 1
            return
        self._heard_from_leader(now, src)
        idx = msg.last_included_index
        if idx <= self.commit_index:
            self._send(src, InstallSnapshotResponse(self.term, self.commit_index, msg.read_id))
            return
        snap = Snapshot(idx, msg.last_included_term, msg.config, msg.data, msg.sessions)
        keep = self.term_at(idx) == msg.last_included_term
        if keep:  # the log after the snapshot matches the leader's: keep it
            self._log = [e for e in self._log if e.index > idx]
            self._new_entries = [e for e in self._new_entries if e.index > idx]
        else:  # every entry we hold conflicts with the committed ones: none can commit
            for i in sorted(i for i in self._pending if i > idx):
                p = self._pending.pop(i)
                reply = Reply(p.client, Rejected("entry overwritten by a newer leader"), ok=False)
                self._out.append(reply)
            self._log = []
            self._new_entries = []
            self._truncate = idx + 1 if self._truncate is None else min(self._truncate, idx + 1)
        self._snapshot = snap
        self._new_snapshot = snap
        self._dirty = True
        self._load_snapshot(snap)
        for i in sorted(i for i in self._pending if i <= idx):
            self._resolve_from_sessions(self._pending.pop(i))
        self._recompute_config()
        self.snapshots_installed += 1
        self._send(src, InstallSnapshotResponse(self.term, idx, msg.read_id))

    def _resolve_from_sessions(self, p: _Pending) -> None:
        session = self._sessions.get(p.client_id) if p.client_id is not None else None
        if session is not None and session[0] == p.request_id:
            self._out.append(Reply(p.client, session[1]))
        # otherwise the outcome is unknown here: no answer (the client's timeout applies)

    # ------------------------------------------------------------------ commit and apply

    def _commit_to(self, index: int) -> None:
        if index <= self.commit_index:
            return
        self.commit_index = index
        self._apply_committed()

    def _apply_committed(self) -> None:
        while self.last_applied < self.commit_index:
            i = self.last_applied + 1
            e = self.entry(i)
            if e is None:  # cannot happen: commit_index <= last_index
                raise AssertionError(f"node {self.id}: committed entry {i} missing")
            ok, result = True, None
            if e.kind == "command":
                ok, result = self._apply_command(e.command)
            elif e.kind == "config":
                result = e.command
            self.last_applied = i
            p = self._pending.pop(i, None)
            if p is not None:
                if p.term == e.term:
                    self._out.append(Reply(p.client, result, ok))
                else:
                    self._out.append(Reply(p.client, Rejected("entry overwritten"), ok=False))
        if (
            self.role == "leader"
            and self.id not in self.config.voters
            and self.config_index <= self.commit_index
        ):
            self._become_follower(self.term, None)
        if self.role == "leader":
            self._serve_reads()
        if len(self._log) > self.max_log_entries:
            self._compact()

    def _apply_command(self, command: Any) -> tuple[bool, Any]:
        if not isinstance(command, Proposal):
            return True, self.sm.apply(command)
        cid = command.client_id
        if cid is None:
            return True, self.sm.apply(command.command)
        session = self._sessions.get(cid)
        if session is not None:
            self._sessions.move_to_end(cid)
            if command.request_id == session[0]:
                return True, session[1]
            if command.request_id < session[0]:
                return False, Rejected(f"stale request id {command.request_id} of client {cid!r}")
        result = self.sm.apply(command.command)
        self._sessions[cid] = (command.request_id, result)
        self._sessions.move_to_end(cid)
        while len(self._sessions) > self.max_sessions:
            self._sessions.popitem(last=False)
        return True, result

    def _compact(self) -> bool:
        idx = self.last_applied
        if idx <= self.snapshot_index:
            return False
        term = self.term_at(idx)
        assert term is not None
        config, _ = self._config_at(idx)
        sessions = tuple((c, r, res) for c, (r, res) in self._sessions.items())
        snap = Snapshot(idx, term, config, self.sm.snapshot(), sessions)
        self._log = [e for e in self._log if e.index > idx]
        self._snapshot = snap
        self._new_snapshot = snap
        self._new_entries = [e for e in self._new_entries if e.index > idx]
        self._dirty = True
        return True

    # ------------------------------------------------------------------ leader: replication

    def _may_commit_by_counting(self, index: int) -> bool:
        """Figure 8: only entries of the current term are committed by counting replicas."""
        return self.term_at(index) == self.term

    def _maybe_commit(self) -> None:
        """Commit the highest index a majority of voters holds, if the rule allows it."""
        matches = sorted(
            (
                self.last_index
                if v == self.id
                else self._progress[v].match
                if v in self._progress
                else 0
            )
            for v in self.config.voters
        )
        n = matches[len(matches) - self.config.quorum]
        if n > self.commit_index and self._may_commit_by_counting(n):
            self._commit_to(n)

    def _send_append(self, p: int, heartbeat: bool = False) -> bool:
        """Send what follower ``p`` needs; return whether entries (or a snapshot) went out."""
        pr = self._progress[p]
        if pr.next <= self.snapshot_index or pr.state == "snapshot":
            if pr.state != "snapshot" or heartbeat:
                snap = self._snapshot
                assert snap is not None
                pr.state = "snapshot"
                pr.inflight.clear()
                self._send(
                    p,
                    InstallSnapshot(
                        self.term,
                        self.id,
                        snap.last_included_index,
                        snap.last_included_term,
                        snap.config,
                        snap.data,
                        snap.sessions,
                        self._read_seq,
                    ),
                )
                return True
            return False
        may_send = (pr.state == "probe" and not pr.probe_sent) or (
            pr.state == "replicate" and len(pr.inflight) < self.max_inflight
        )
        entries: tuple[Entry, ...] = ()
        if may_send and pr.next <= self.last_index:
            lo = pr.next - self.snapshot_index - 1
            entries = tuple(self._log[lo : lo + self.max_batch])
        elif not heartbeat:
            return False
        prev = pr.next - 1
        prev_term = self.term_at(prev)
        assert prev_term is not None
        self._send(
            p,
            AppendEntries(
                self.term, self.id, prev, prev_term, entries, self.commit_index, self._read_seq
            ),
        )
        if entries:
            if pr.state == "replicate":
                pr.next = entries[-1].index + 1
                pr.inflight.append(entries[-1].index)
            else:
                pr.probe_sent = True
            return True
        return False

    def _on_append_response(self, src: int, msg: AppendEntriesResponse) -> None:
        pr = self._progress.get(src)
        if self.role != "leader" or pr is None or msg.match_index > self.last_index:
            self.ignored += 1
            return
        pr.recent_active = True
        pr.read_ack = max(pr.read_ack, msg.read_id)
        if msg.success:
            if msg.match_index > pr.match:
                pr.match = msg.match_index
            while pr.inflight and pr.inflight[0] <= pr.match:
                pr.inflight.popleft()
            if pr.state == "probe":
                pr.state = "replicate"
                pr.inflight.clear()
                pr.next = pr.match + 1
            pr.next = max(pr.next, pr.match + 1)
            pr.probe_sent = False
            self._maybe_commit()
            self._maybe_send_timeout_now(src)
            if self.role == "leader":
                while src in self._progress and self._send_append(src):
                    pass
        else:
            rejected = msg.match_index
            if rejected <= pr.match or (pr.state == "probe" and rejected != pr.next - 1):
                pass  # stale rejection
            else:
                nxt = msg.conflict_index
                if msg.conflict_term > 0:
                    k = min(rejected, self.last_index)
                    while k > self.snapshot_index and (self.term_at(k) or 0) > msg.conflict_term:
                        k -= 1
                    if k > self.snapshot_index and self.term_at(k) == msg.conflict_term:
                        nxt = k + 1
                pr.next = max(pr.match + 1, min(nxt, rejected))
                pr.state = "probe"
                pr.inflight.clear()
                pr.probe_sent = False
                self._send_append(src)
        if self.role == "leader":
            self._serve_reads()

    def _on_snapshot_response(self, src: int, msg: InstallSnapshotResponse) -> None:
        pr = self._progress.get(src)
        if self.role != "leader" or pr is None or msg.match_index > self.last_index:
            self.ignored += 1
            return
        pr.recent_active = True
        pr.read_ack = max(pr.read_ack, msg.read_id)
        pr.match = max(pr.match, msg.match_index)
        pr.next = pr.match + 1
        pr.state = "probe"
        pr.inflight.clear()
        pr.probe_sent = False
        self._maybe_commit()
        if self.role == "leader" and src in self._progress:
            self._send_append(src)
            self._serve_reads()

    # ------------------------------------------------------------------ leader: clients

    def _busy(self) -> str | None:
        if len(self._pending) >= self.max_pending_proposals:
            return f"too many pending proposals ({self.max_pending_proposals})"
        if self.last_index - self.commit_index >= self.max_uncommitted:
            return f"too many uncommitted entries ({self.max_uncommitted})"
        return None

    def _append_as_leader(self, kind: EntryKind, command: Any, request: ClientRequest) -> None:
        e = Entry(self.term, self.last_index + 1, kind, command)
        cid, rid = (
            (command.client_id, command.request_id) if isinstance(command, Proposal) else (None, 0)
        )
        self._pending[e.index] = _Pending(self.term, request.client, cid, rid)
        self._append([e])
        for p in sorted(self._progress):
            self._send_append(p)
        self._maybe_commit()

    def _propose(self, request: ClientRequest) -> None:
        reason = "leadership transfer in progress" if self._transfer else self._busy()
        if reason is not None:
            self._out.append(Reply(request.client, Rejected(reason), ok=False))
            return
        command = request.value
        if isinstance(command, Proposal) and not _nat(command.request_id):
            raise ValueError(f"request_id must be an int >= 0, got {command.request_id!r}")
        if not isinstance(command, Proposal):
            command = Proposal(None, 0, command)
        self._append_as_leader("command", command, request)

    def _read(self, request: ClientRequest) -> None:
        if len(self._reads) >= self.max_pending_reads:
            reason = f"too many pending reads ({self.max_pending_reads})"
            self._out.append(Reply(request.client, Rejected(reason), ok=False))
            return
        self._read_seq += 1
        read_index = max(self.commit_index, self._noop_index)
        self._reads.append(_Read(self._read_seq, read_index, request.client, request.value))
        for p in sorted(self._progress):
            if p in self.config.voters:
                self._send_append(p, heartbeat=True)
        self._serve_reads()

    def _read_confirmed(self, read_id: int) -> bool:
        """ReadIndex: a majority of voters answered a heartbeat round >= ``read_id``."""
        acked = {self.id} | {p for p, pr in self._progress.items() if pr.read_ack >= read_id}
        return self.config.has_quorum(acked)

    def _serve_reads(self) -> None:
        while self._reads:
            r = self._reads[0]
            if self.last_applied < r.read_index or not self._read_confirmed(r.read_id):
                return
            self._reads.popleft()
            self._out.append(Reply(r.client, self.sm.query(r.query)))

    def _start_transfer(self, request: ClientRequest) -> None:
        target = request.value
        if target == self.id:
            self._out.append(Reply(request.client, self.id))
            return
        if not _nat(target) or target not in self.config.voters:
            reason = f"transfer target {target!r} is not a voter of {self.config.voters}"
            self._out.append(Reply(request.client, Rejected(reason), ok=False))
            return
        if self._transfer is not None:
            reason = f"a transfer to {self._transfer[0]} is in progress"
            self._out.append(Reply(request.client, Rejected(reason), ok=False))
            return
        self._transfer = (target, request.client)
        self._timeout_now_sent = False
        self._out.append(SetTimer(TRANSFER_TIMER, self.election_timeout))
        if not self._maybe_send_timeout_now(target):
            self._send_append(target, heartbeat=True)

    def _maybe_send_timeout_now(self, peer: int) -> bool:
        if self._transfer is None or self._transfer[0] != peer or self._timeout_now_sent:
            return False
        pr = self._progress.get(peer)
        if pr is None or pr.match != self.last_index:
            return False
        self._timeout_now_sent = True
        self._send(peer, TimeoutNow(self.term))
        return True

    def _change_membership(self, request: ClientRequest) -> None:
        node, op = request.value, request.op
        cfg = self.config
        reason: str | None = None
        if not _nat(node):
            reason = f"node id must be an int >= 0, got {node!r}"
        elif self._transfer is not None:
            reason = "leadership transfer in progress"
        elif self.term_at(self.commit_index) != self.term:
            reason = "the leader has not yet committed an entry of its term; retry"
        elif self.config_index > self.commit_index:
            reason = "a configuration change is in progress"
        else:
            reason = self._busy()
        new: Config | None = None
        if reason is None:
            voters, learners = set(cfg.voters), set(cfg.learners)
            if op == "add_server":
                if node in voters:
                    reason = f"node {node} is already a voter"
                voters.add(node)
                learners.discard(node)
            elif op == "add_learner":
                if node in voters or node in learners:
                    reason = f"node {node} is already a member"
                learners.add(node)
            else:
                if node not in voters and node not in learners:
                    reason = f"node {node} is not a member"
                elif voters == {node}:
                    reason = "cannot remove the last voter"
                voters.discard(node)
                learners.discard(node)
            if reason is None:
                new = Config.of(voters, learners)
        if reason is not None or new is None:
            self._out.append(Reply(request.client, Rejected(reason or "no change"), ok=False))
            return
        self._append_as_leader("config", new, request)


# --------------------------------------------------------------------------- validation


def _well_formed_entries(entries: object, prev: int, term: int) -> bool:
    if not isinstance(entries, tuple):
        return False
    last_term = 0
    for k, e in enumerate(entries):
        if not (
            isinstance(e, Entry)
            and e.index == prev + 1 + k
            and _nat(e.term)
            and last_term <= e.term <= term
            and e.kind in ("command", "config", "noop")
            and (e.kind != "config" or isinstance(e.command, Config))
        ):
            return False
        last_term = e.term
    return True


def _well_formed(msg: object, src: int) -> bool:
    """Field types and ranges of a peer's message (its meaning is judged by the handler)."""
    if isinstance(msg, RequestVote):
        return (
            _nat(msg.term)
            and msg.candidate == src
            and _nat(msg.last_log_index)
            and _nat(msg.last_log_term)
            and isinstance(msg.pre_vote, bool)
            and isinstance(msg.transfer, bool)
        )
    if isinstance(msg, RequestVoteResponse):
        return _nat(msg.term) and isinstance(msg.granted, bool) and isinstance(msg.pre_vote, bool)
    if isinstance(msg, AppendEntries):
        return (
            _nat(msg.term)
            and msg.leader == src
            and _nat(msg.prev_log_index)
            and _nat(msg.prev_log_term)
            and msg.prev_log_term <= msg.term
            and _nat(msg.leader_commit)
            and _nat(msg.read_id)
            and _well_formed_entries(msg.entries, msg.prev_log_index, msg.term)
            and (not msg.entries or msg.entries[0].term >= msg.prev_log_term)
        )
    if isinstance(msg, AppendEntriesResponse):
        return (
            _nat(msg.term)
            and isinstance(msg.success, bool)
            and _nat(msg.match_index)
            and _nat(msg.conflict_index)
            and _nat(msg.conflict_term)
            and _nat(msg.read_id)
        )
    if isinstance(msg, InstallSnapshot):
        return (
            _nat(msg.term)
            and msg.leader == src
            and _nat(msg.last_included_index)
            and msg.last_included_index > 0
            and _nat(msg.last_included_term)
            and msg.last_included_term <= msg.term
            and isinstance(msg.config, Config)
            and isinstance(msg.data, bytes)
            and isinstance(msg.sessions, tuple)
            and all(isinstance(s, tuple) and len(s) == 3 for s in msg.sessions)
            and _nat(msg.read_id)
        )
    if isinstance(msg, InstallSnapshotResponse):
        return _nat(msg.term) and _nat(msg.match_index) and _nat(msg.read_id)
    if isinstance(msg, TimeoutNow):
        return _nat(msg.term)
    return False


def raft_factory(state_machine: Callable[[], StateMachine], **options: Any) -> CoreFactory:
    """A :data:`~trio_foundation.protocols.effects.CoreFactory` for a cluster of Raft nodes.

    ``factory(node_id, n_nodes)`` builds a :class:`RaftNode` whose initial voters
    are ``0 .. n_nodes - 1``, with a fresh ``state_machine()`` and ``options``
    passed on (see :class:`RaftNode`).
    """

    def build(node: int, n_nodes: int) -> RaftNode:
        return RaftNode(node, range(n_nodes), state_machine(), **options)

    return build
