"""Stateful test of the real Raft cores (protocols/raft.py) in an in-test cluster.

The cluster holds every message in flight explicitly; the rules are the
environment's actions: deliver, drop or duplicate a chosen message (or every
message in flight, FIFO: a network round), partition and heal, crash and
restart a node (volatile state lost, durable state kept as the node's own
``Persist`` records built it — and a crash may cut a step short at any effect
boundary, losing what the step had not yet executed), fire a chosen timer, and
the clients' proposals, reads, transfers, membership changes and compactions.

Invariants are checked after every step over ghost records the test keeps as an
observer would (named as in the TLA+ specs):

* ``ElectionSafety``: at most one leader per term, over every leader ever seen.
* ``OneVotePerTerm``: no node votes for two candidates in one term, as seen on
  the wire (a granted vote, or a candidate's own vote when it asks for votes):
  the voter-side premise of ElectionSafety.
* ``LogMatching``: two live logs with an entry of the same index and term are
  identical up to that index.
* ``LeaderCompleteness``: every entry seen committed by some node (at that
  node's term ``t``) is in the log of every leader of a term ``>= t``.
* ``StateMachineSafety``: the sequences of commands the nodes' state machines
  applied are prefixes of one another (and of every sequence applied before),
  with no command applied twice.
* ``LinearizableReads``: the clients' history (writes through ``propose`` with
  sessions, reads through ReadIndex) is linearizable as a register, checked by
  :mod:`trio_foundation.verify.lincheck`.
* ``PersistConsistent``: the durable state built from the ``Persist`` records
  equals the node's own account of it (:meth:`RaftNode.snapshot_persistent`),
  and every record applies to the durable state.
* ``ElectableCompleteness`` (a lemma of Raft's safety proof, checked while the
  voters are the initial ones): a voter whose log is at least as up-to-date as
  the logs (durable ones for crashed nodes) of a quorum could win an election
  on its log alone, so it holds every entry seen committed. It fails at the
  moment an entry is committed without a quorum that would stop such a voter —
  Figure 8's premature commit — without waiting for the overwrite.

``test_interesting_states_are_reached`` checks the states that make the
invariants meaningful are reached (the slow variant measures how often);
``test_broken_core_is_caught_by_a_fresh_search`` runs one fresh random search
per broken core (defined here, never in the library; one per invariant) and
asserts it is caught — all seven, the two hardest (a vote lost in a crash,
Figure 8) through the composite actions ``vote_crash`` and ``leader_churn``,
which string the environment's own actions into the shapes those bugs need;
the directed-schedule tests show three broken cores break an invariant on
their schedule while the real core does not.
``benchmarks/catch_rates_raft.py`` measures the catch rates.
"""

from __future__ import annotations

import json
import random
from collections.abc import Hashable
from typing import Any, ClassVar

import attrs
import pytest
from hypothesis import HealthCheck, Phase, Verbosity, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from trio_foundation.protocols.effects import (
    CancelTimer,
    ClientRequest,
    Effect,
    Persist,
    Reply,
    Send,
    SetTimer,
)
from trio_foundation.protocols.raft import (
    ELECTION_TIMER,
    AppendEntries,
    AppendEntriesResponse,
    Entry,
    InstallSnapshot,
    NotLeader,
    Proposal,
    RaftDurable,
    RaftNode,
    RaftPersist,
    RequestVote,
    RequestVoteResponse,
    apply_persist,
)
from trio_foundation.verify.history import HistoryEvent
from trio_foundation.verify.lincheck import check_history


class Register:
    """The replicated state machine of the test: every value written, in order."""

    def __init__(self) -> None:
        self.values: list[int] = []

    def apply(self, command: Any) -> Any:
        self.values.append(command)
        return len(self.values)

    def query(self, query: Any) -> Any:
        return self.values[-1] if self.values else None

    def snapshot(self) -> bytes:
        return json.dumps(self.values).encode()

    def restore(self, data: bytes) -> None:
        self.values = json.loads(data)


# ---------------------------------------------------------------------- broken cores


class CommitOldTermNode(RaftNode):  # type: ignore[misc]  # subclassing a @final core on purpose
    """Broken (Figure 8): counts replicas of old-term entries toward commit."""

    def _may_commit_by_counting(self, index: int) -> bool:
        return True


class VoteBeforePersistNode(RaftNode):  # type: ignore[misc]
    """Broken: a step that grants a vote lists its Persist after its Sends."""

    def _flush(self) -> list[Effect]:
        effects: list[Effect] = super()._flush()
        votes = any(
            isinstance(e, Send) and isinstance(e.msg, RequestVoteResponse) and e.msg.granted
            for e in effects
        )
        if not votes:
            return effects
        return [e for e in effects if not isinstance(e, Persist)] + [
            e for e in effects if isinstance(e, Persist)
        ]


class ReadWithoutQuorumNode(RaftNode):  # type: ignore[misc]
    """Broken: serves a ReadIndex read without confirming leadership."""

    def _read_confirmed(self, read_id: int) -> bool:
        return True


class DoubleVoteNode(RaftNode):  # type: ignore[misc]
    """Broken: grants its vote to any up-to-date candidate of its term while it knows
    no leader, forgetting whom it voted for (itself included)."""

    def _on_request_vote(self, now: float, src: int, msg: RequestVote) -> None:
        if msg.pre_vote or msg.candidate != src or self.leader_id is not None:
            super()._on_request_vote(now, src, msg)
        elif self._up_to_date(msg):
            self._set_hard_state(self.term, src)
            self._out.append(SetTimer(ELECTION_TIMER, self._election_delay()))
            self._send(src, RequestVoteResponse(self.term, True, False))
        else:
            self._send(src, RequestVoteResponse(self.term, False, False))


class NoConsistencyCheckNode(RaftNode):  # type: ignore[misc]
    """Broken: a follower appends without checking the previous entry's term (the
    real RaftNode._on_append with that check left out)."""

    def _on_append(self, now: float, src: int, msg: AppendEntries) -> None:
        if self.role == "leader":
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


class ApplyOnAppendNode(RaftNode):  # type: ignore[misc]
    """Broken: a follower applies entries to its state machine as they arrive,
    before they are committed."""

    def _on_append(self, now: float, src: int, msg: AppendEntries) -> None:
        super()._on_append(now, src, msg)
        # what was applied stays applied; entries overwritten are applied again
        self.last_applied = max(min(self.last_applied, self.last_index), self.commit_index)
        while self.role == "follower" and self.last_applied < self.last_index:
            e = self.entry(self.last_applied + 1)
            if e is None:
                break
            if e.kind == "command":
                self._apply_command(e.command)
            self.last_applied = e.index

    def _compact(self) -> bool:
        # what it applied early may since have been cut from its log; the real core
        # compacts only committed entries and asserts the entry is there
        if self.term_at(self.last_applied) is None:
            return False
        return bool(super()._compact())


class ForgetsTruncationNode(RaftNode):  # type: ignore[misc]
    """Broken: its Persist records never say to truncate the log (the conflicting
    suffix a new leader overwrote stays on disk)."""

    def _persist_record(self) -> RaftPersist:
        return attrs.evolve(super()._persist_record(), truncate_from=None)


# ---------------------------------------------------------------------- the cluster


class Violation(AssertionError):
    """An invariant failed; the message starts with the invariant's name."""


@attrs.define
class Op:
    """A client operation outstanding."""

    process: int
    seq: int
    f: str
    value: Any
    retried: bool = False
    accepted_by: tuple[int, int] | None = None  # (leader, its term) for reads


@attrs.frozen
class Params:
    n: int
    voters: tuple[int, ...]
    options: tuple[tuple[str, Any], ...]


PROCESSES = 4
MAX_IN_FLIGHT = 80
MEMBERSHIP_OPS = ("add_server", "add_learner", "remove_server")


@attrs.frozen
class LogView:
    """A log as an observer sees it: a live node's, or a crashed node's durable one."""

    snapshot_index: int
    snapshot_term: int
    entries: tuple[Entry, ...]

    @property
    def last(self) -> tuple[int, int]:
        """(last term, last index), the order elections compare logs by."""
        if self.entries:
            return self.entries[-1].term, self.entries[-1].index
        return self.snapshot_term, self.snapshot_index

    def term_at(self, index: int) -> int | None:
        if index == self.snapshot_index:
            return self.snapshot_term
        e = self.entry(index)
        return e.term if e is not None else None

    def entry(self, index: int) -> Entry | None:
        k = index - self.snapshot_index - 1
        return self.entries[k] if 0 <= k < len(self.entries) else None


class RaftCluster:
    """Real RaftNodes, a network of explicit messages, durable storage and ghosts."""

    def __init__(self, params: Params, node_cls: type[RaftNode] = RaftNode) -> None:
        self.params = params
        self.node_cls = node_cls
        self.now = 0.0
        self.nodes: dict[int, RaftNode | None] = {}
        self.durable = {i: RaftDurable() for i in range(params.n)}
        self.timers: dict[int, dict[str, float]] = {i: {} for i in range(params.n)}
        self.net: list[tuple[int, int, Any]] = []
        self.blocked: set[frozenset[int]] = set()
        # -- ghosts
        self.leaders: dict[int, set[int]] = {}
        self.committed: dict[int, tuple[int, Any]] = {}  # index -> (term, entry kind+command)
        self.committed_at: dict[int, int] = {}  # index -> term of the first observer
        self.seen_commit: dict[int, int] = {}
        self.applied: list[int] = []
        self.violations: list[str] = []
        self.events: list[HistoryEvent] = []
        self.ops: dict[int, Op] = {}
        #: per client process, the node it believes leads (clients stick to it and
        #: follow redirects, as real clients do)
        self.preferred: dict[int, int] = {}
        self.next_seq = 0
        self.checked_events = 0
        self.reached: set[str] = set()
        self.snapshots_seen: dict[int, int] = {}
        #: per node, the durable state before its last Persist, while that Persist is
        #: not yet followed by a message or reply (so not necessarily synced)
        self.unsynced: dict[int, RaftDurable] = {}
        self.votes: dict[tuple[int, int], int] = {}  # (voter, term) -> candidate
        #: a leader appended a configuration entry (ElectableCompleteness is
        #: stated for a fixed set of voters, so it is checked only before that)
        self.config_changed = False
        self.crash_any = False
        for i in range(params.n):
            self.start(i, random.Random(i))

    # -- running cores

    def build(self, i: int) -> RaftNode:
        return self.node_cls(i, self.params.voters, Register(), **dict(self.params.options))

    def start(self, i: int, rng: random.Random) -> None:
        node = self.build(i)
        node.restore(self.durable[i])
        self.nodes[i] = node
        self.timers[i] = {}
        self.seen_commit[i] = node.commit_index
        self.snapshots_seen[i] = 0
        self.run(i, node.on_start(self.now, rng))

    def crash(self, i: int, torn: bool = False, outbox: bool = False) -> None:
        """Crash node ``i``; if ``torn``, its last Persist is lost unless something
        visible (a message, a reply) followed it — the runtime syncs before those;
        with ``outbox``, the messages it sent that are still in flight are lost too
        (they had not left its send buffer)."""
        self.nodes[i] = None
        self.timers[i] = {}
        if outbox:
            self.net = [m for m in self.net if m[0] != i]
        before = self.unsynced.pop(i, None)
        if torn and before is not None:
            self.durable[i] = before

    def may_crash(self) -> bool:
        """Crashes take down a minority at a time (as Jepsen's nemeses do), or, in
        runs with ``crash_any``, any number but the last live node."""
        if self.crash_any:
            return len(self.live()) > 1
        return len(self.live()) - 1 > self.params.n // 2

    def live(self) -> list[int]:
        return [i for i, n in self.nodes.items() if n is not None]

    def node(self, i: int) -> RaftNode:
        node = self.nodes[i]
        assert node is not None
        return node

    def run(self, i: int, effects: list[Effect], crash_at: int | None = None) -> None:
        """Execute ``effects`` in the order listed; with ``crash_at``, only the
        first ``crash_at`` of them, then the node crashes."""
        todo = effects if crash_at is None else effects[:crash_at]
        for e in todo:
            if isinstance(e, Persist):
                self.unsynced.setdefault(i, self.durable[i])
                try:
                    self.durable[i] = apply_persist(self.durable[i], e.data)
                except ValueError as exc:
                    self.violations.append(f"PersistConsistent: node {i}'s record {exc}")
            elif isinstance(e, Send):
                self.unsynced.pop(i, None)
                self.net.append((i, e.to, e.msg))
                msg = e.msg
                if isinstance(msg, RequestVoteResponse) and msg.granted and not msg.pre_vote:
                    self._vote(i, msg.term, e.to)
                elif isinstance(msg, RequestVote) and not msg.pre_vote:
                    self._vote(i, msg.term, i)  # a candidate asking for votes voted for itself
            elif isinstance(e, SetTimer):
                self.timers[i][e.name] = self.now + e.delay
            elif isinstance(e, CancelTimer):
                self.timers[i].pop(e.name, None)
            elif isinstance(e, Reply):
                self.unsynced.pop(i, None)
                self.on_reply(i, e)
        if len(self.net) > MAX_IN_FLIGHT:  # a bounded network loses its oldest messages
            del self.net[: len(self.net) - MAX_IN_FLIGHT]
        if crash_at is not None:
            self.crash(i, torn=True)
        elif self.nodes[i] is not None and self.durable[i] != self.node(i).snapshot_persistent():
            self.violations.append(f"PersistConsistent: node {i}'s Persist records disagree")
        self.observe()

    def _vote(self, voter: int, term: int, candidate: int) -> None:
        voted = self.votes.setdefault((voter, term), candidate)
        if voted != candidate:
            self.violations.append(
                f"OneVotePerTerm: node {voter} voted for {voted} and {candidate} in term {term}"
            )

    def deliverable(self) -> list[int]:
        return [
            k
            for k, (src, dst, _) in enumerate(self.net)
            if frozenset((src, dst)) not in self.blocked and self.nodes.get(dst) is not None
        ]

    def deliver(self, k: int, keep: bool = False, cut: st.DataObject | None = None) -> None:
        """Deliver message ``k``; with ``cut``, crash the receiver at an effect
        boundary drawn from it: before the step, after any message or reply it
        sent (what the world saw of it), or after the whole step."""
        src, dst, msg = self.net[k] if keep else self.net.pop(k)
        if isinstance(msg, InstallSnapshot):
            self.snapshots_seen[dst] = self.node(dst).snapshots_installed
        effects = self.node(dst).on_message(self.now, src, msg)
        crash_at = None
        if cut is not None:
            bounds = [0] + [j + 1 for j, e in enumerate(effects) if isinstance(e, Send | Reply)]
            cuts = tuple(sorted({*bounds, len(effects)}))
            crash_at = cut.draw(st.sampled_from(cuts), label="cut")
        self.run(dst, effects, crash_at)

    def settle(self, crash: int | None = None, cut: st.DataObject | None = None) -> None:
        """Deliver every message now in flight, FIFO (a network round); with
        ``crash``, the receiver of the ``crash``-th message crashes during that
        step at an effect boundary drawn from ``cut`` (as :meth:`deliver`)."""
        batch, self.net = self.net, []
        for k, (src, dst, msg) in enumerate(batch):
            if frozenset((src, dst)) in self.blocked or self.nodes.get(dst) is None:
                continue
            if k == crash and self.may_crash():
                self.net.append((src, dst, msg))
                self.deliver(len(self.net) - 1, cut=cut)
            else:
                self.run(dst, self.node(dst).on_message(self.now, src, msg))

    def fire(self, i: int, name: str, crash_at: int | None = None) -> None:
        self.now = max(self.now, self.timers[i].pop(name))
        self.run(i, self.node(i).on_timer(self.now, name), crash_at)

    def request(self, i: int, key: Hashable, op: str, value: Any) -> None:
        config = self.node(i).config
        self.run(i, self.node(i).on_client(self.now, ClientRequest(key, op, value)))
        if op in MEMBERSHIP_OPS and self.nodes[i] is not None and self.node(i).config != config:
            self.config_changed = True

    # -- clients

    def invoke(self, process: int, f: str, value: Any, node: int) -> None:
        self.next_seq += 1
        seq = self.next_seq
        self.ops[process] = Op(process, seq, f, value)
        self.events.append(HistoryEvent(process, "invoke", f, value if f == "write" else None))
        if f == "write":
            leader = self.node(node)
            if leader.role == "leader":
                self.ops[process].accepted_by = (node, leader.term)
            self.request(node, (process, seq, 0), "propose", Proposal(process, seq, value))
        else:
            leader = self.node(node)
            if leader.role == "leader":
                self.ops[process].accepted_by = (node, leader.term)
            self.request(node, (process, seq, 0), "read", None)

    def retry(self, process: int, node: int) -> None:
        op = self.ops[process]
        op.retried = True
        self.request(node, (op.process, op.seq, 1), "propose", Proposal(process, op.seq, op.value))

    def give_up(self, process: int) -> None:
        op = self.ops.pop(process)
        self.events.append(HistoryEvent(process, "info", op.f, None))

    def on_reply(self, node: int, reply: Reply) -> None:
        key = reply.client
        if isinstance(key, tuple) and key and key[0] == "admin":
            if reply.ok and key[1] in ("add_server", "add_learner", "remove_server"):
                self.reached.add("membership_changed")
            if reply.ok and key[1] == "transfer_leadership":
                self.reached.add("leadership_transferred")
            return
        process, seq, _ = key
        if isinstance(reply.value, NotLeader) and reply.value.leader is not None:
            self.preferred[process] = reply.value.leader
        op = self.ops.get(process)
        if op is None or op.seq != seq:
            return
        if op.f == "write":
            if reply.ok:
                self.events.append(HistoryEvent(process, "ok", "write", op.value))
            elif op.retried:
                return  # another attempt may still take effect
            else:
                self.events.append(HistoryEvent(process, "fail", "write", op.value))
        elif reply.ok:
            self.events.append(HistoryEvent(process, "ok", "read", reply.value))
            if self.node(node).term < max(self.leaders, default=0):
                self.reached.add("stale_read_served")
        else:
            self.events.append(HistoryEvent(process, "fail", "read", None))
            if op.accepted_by is not None and max(self.leaders, default=0) > op.accepted_by[1]:
                self.reached.add("stale_read_refused")
        del self.ops[process]

    # -- ghosts

    def observe(self) -> None:
        if len([i for i in self.live() if self.node(i).role == "leader"]) > 1:
            self.reached.add("two_leaders")
        terms = [self.node(i).term for i in self.live() if self.node(i).role == "candidate"]
        if len(terms) != len(set(terms)):
            self.reached.add("split_vote")
        max_commit = max(self.committed, default=0)
        for i in self.live():
            node = self.node(i)
            if node.role == "leader":
                known = self.leaders.setdefault(node.term, set())
                if i not in known:
                    if node.term > max((t for t in self.leaders if t != node.term), default=0):
                        in_flight = any(self.node(j).last_index > max_commit for j in self.live())
                        if self.leaders and in_flight and len(self.leaders) > 1:
                            self.reached.add("leader_changed_in_flight")
                    known.add(i)
                    self.reached.add("leader_elected")
                if len(known) > 1:
                    self.violations.append(
                        f"ElectionSafety: nodes {sorted(known)} both led term {node.term}"
                    )
            self._observe_commits(i, node)
            if node.snapshots_installed > self.snapshots_seen.get(i, 0):
                self.reached.add("snapshot_installed")
            self._observe_applied(i, node)

    def _observe_commits(self, i: int, node: RaftNode) -> None:
        lo = max(self.seen_commit.get(i, 0), node.snapshot_index)
        for idx in range(lo + 1, node.commit_index + 1):
            e = node.entry(idx)
            if e is None:
                continue
            record = (e.term, (e.kind, e.command))
            first = self.committed.setdefault(idx, record)
            self.committed_at.setdefault(idx, node.term)
            if first != record:
                self.violations.append(
                    f"StateMachineSafety: index {idx} committed as {first} and as {record}"
                )
            if e.kind == "command":
                self.reached.add("entry_committed")
        self.seen_commit[i] = node.commit_index

    def _observe_applied(self, i: int, node: RaftNode) -> None:
        values = node.sm.values  # type: ignore[attr-defined]
        n = min(len(values), len(self.applied))
        if values[:n] != self.applied[:n]:
            self.violations.append(
                f"StateMachineSafety: node {i} applied {values} where {self.applied} was applied"
            )
        elif len(values) > len(self.applied):
            if len(set(values)) != len(values):
                self.violations.append(f"StateMachineSafety: node {i} applied twice: {values}")
            self.applied = list(values)

    def check_election_safety(self) -> None:
        for v in self.violations:
            if v.startswith(
                ("ElectionSafety", "OneVotePerTerm", "PersistConsistent", "StateMachineSafety")
            ):
                raise Violation(v)

    def check_log_matching(self) -> None:
        """Over every node's log: a live node's, a crashed node's durable one."""
        views = {i: self._view(i) for i in range(self.params.n)}
        for a, va in views.items():
            for b, vb in views.items():
                if a < b:
                    self._match(a, va, b, vb)

    def _match(self, a: int, va: LogView, b: int, vb: LogView) -> None:
        lo = max(va.snapshot_index, vb.snapshot_index) + 1
        hi = min(va.last[1], vb.last[1])
        top = next((k for k in range(hi, lo - 1, -1) if va.term_at(k) == vb.term_at(k)), None)
        if top is None:
            return
        for k in range(lo, top + 1):
            if va.entry(k) != vb.entry(k):
                raise Violation(
                    f"LogMatching: nodes {a} and {b} agree on index {top}'s term "
                    f"but differ at {k}: {va.entry(k)} vs {vb.entry(k)}"
                )

    def check_leader_completeness(self) -> None:
        for i in self.live():
            node = self.node(i)
            if node.role != "leader":
                continue
            for idx, (term, what) in self.committed.items():
                if node.term < self.committed_at[idx] or idx < node.snapshot_index:
                    continue
                have = node.term_at(idx)
                if have != term:
                    raise Violation(
                        f"LeaderCompleteness: leader {i} of term {node.term} lacks entry {idx} "
                        f"{what} of term {term}, committed by term {self.committed_at[idx]}"
                    )

    def _view(self, i: int) -> LogView:
        node = self.nodes[i]
        if node is not None:
            return LogView(node.snapshot_index, node.snapshot_term, node.log)
        d = self.durable[i]
        snap = d.snapshot
        return LogView(
            snap.last_included_index if snap else 0, snap.last_included_term if snap else 0, d.log
        )

    def check_electable_completeness(self) -> None:
        """Every voter whose log is at least as up-to-date as the logs of a quorum
        (itself included) could win an election on its log alone, so it must hold
        every committed entry (durable logs for crashed nodes)."""
        self.check_log_matching()  # the lemma's premise: a broken one is named as such
        if self.config_changed or not self.committed:
            return
        voters = self.params.voters
        views = {v: self._view(v) for v in voters}
        quorum = len(voters) // 2 + 1
        for c, view in views.items():
            behind = sum(1 for o in voters if o != c and view.last >= views[o].last)
            if behind + 1 < quorum:
                continue
            for idx, (term, what) in self.committed.items():
                if idx > view.snapshot_index and view.term_at(idx) != term:
                    raise Violation(
                        f"ElectableCompleteness: node {c} (last term, index {view.last}) "
                        f"could be elected but lacks entry {idx} {what} of term {term}"
                    )

    def check_linearizable(self) -> None:
        new = self.events[self.checked_events :]
        self.checked_events = len(self.events)
        if not any(e.type == "ok" and e.f == "read" for e in new):
            return  # only a read can expose a non-linearizable history
        result = check_history(self.events, "register", timeout=20)
        if result.verdict == "not-linearizable":
            bad = "; ".join(op.describe() for op in result.unplaceable[:3])
            raise Violation(f"LinearizableReads: history not linearizable at {bad}")


# ---------------------------------------------------------------------- the state machine

# Each step draws one action, named after the spec's actions, with these weights
# among the actions that can act: progress (time passing in deadline order,
# network rounds, client operations) dominates so that runs get far enough for
# leaders to change while entries are in flight; every fault stays common
# enough to happen several times per run.
WEIGHTS: dict[str, int] = {
    "tick": 8,
    "settle": 3,
    "deliver": 4,
    "client_write": 4,
    "client_read": 5,
    "restart": 3,
    "drop": 1,
    "duplicate": 1,
    "crash_in_step": 1,
    "crash_in_round": 1,
    "partition": 2,
    "heal": 1,
    "crash": 1,
    "fire_any_timer": 1,
    "client_retry": 1,
    "client_timeout": 3,
    "admin": 2,
    "isolated_write": 3,
    "elect": 2,
    "race": 1,
    "vote_crash": 2,
    "leader_churn": 2,
}
# Swarm testing (Groce et al., ISSTA 2012): each run multiplies every weight by
# a factor drawn once (SWARM), and switches each of these off with probability
# 1/3, so a run without crashes keeps its nodes' memories, a run heavy in
# isolated writes and elections churns through terms, and so on.
OPTIONAL = (
    "drop",
    "duplicate",
    "crash_in_step",
    "crash_in_round",
    "crash",
    "fire_any_timer",
    "client_retry",
    "deliver",
    "isolated_write",
    "elect",
    "race",
)


#: per run, each action's weight is multiplied by one of these (optional ones may be 0)
SWARM = {False: (1, 3), True: (0, 1, 3)}


#: the cluster's checks behind the machine's invariants
CHECKS = (
    "check_election_safety",
    "check_log_matching",
    "check_leader_completeness",
    "check_electable_completeness",
    "check_linearizable",
)


class RaftMachine(RuleBasedStateMachine):
    """The environment's actions over a cluster of real cores."""

    node_cls: ClassVar[type[RaftNode]] = RaftNode
    seen: ClassVar[dict[str, int]] = {}
    runs: ClassVar[int] = 0
    #: measuring mode (benchmarks/catch_rates_raft.py): a broken invariant is
    #: tallied in ``seen`` under its name at the end of the run instead of raised
    record_only: ClassVar[bool] = False

    def __init__(self) -> None:
        super().__init__()
        self.cluster: RaftCluster | None = None
        self.weights: dict[str, int] = {}
        self.found: str | None = None

    @initialize(data=st.data())
    def environment(self, data: st.DataObject) -> None:
        """Swarm: each run draws its cluster size and the core's options."""
        n = data.draw(st.sampled_from([3, 3, 5]), label="nodes")
        membership = n == 5 and data.draw(st.booleans(), label="start with 3 voters of 5")
        voters = (0, 1, 2) if membership else tuple(range(n))
        options = (
            ("pre_vote", data.draw(st.booleans(), label="pre_vote")),
            ("check_quorum", data.draw(st.booleans(), label="check_quorum")),
            ("max_batch", data.draw(st.sampled_from([1, 1, 2, 64]), label="max_batch")),
            ("max_inflight", data.draw(st.sampled_from([1, 4]), label="max_inflight")),
            ("max_log_entries", data.draw(st.sampled_from([3, 6, 1000]), label="max_log")),
            ("election_timeout", 1.0),
            ("heartbeat_interval", 0.5),
        )
        self.cluster = RaftCluster(Params(n, voters, options), type(self).node_cls)
        self.weights = {
            name: weight * data.draw(st.sampled_from(SWARM[name in OPTIONAL]), label=name)
            for name, weight in WEIGHTS.items()
        }
        self.cluster.crash_any = data.draw(st.booleans(), label="crash a majority too")

    @property
    def c(self) -> RaftCluster:
        assert self.cluster is not None
        return self.cluster

    def _pick(self, data: st.DataObject, items: list[Any], label: str) -> Any:
        # tuples, not lists: Hypothesis caches strategies over hashable arguments
        return data.draw(st.sampled_from(tuple(items)), label=label)

    @rule(data=st.data())
    def step(self, data: st.DataObject) -> None:
        """One action of the environment, drawn by WEIGHTS among those that can act."""
        able = [n for n, w in self.weights.items() if w and getattr(self, f"_can_{n}")()]
        if not able:
            return
        choices = [name for name in able for _ in range(self.weights[name])]
        action = data.draw(st.sampled_from(tuple(choices)), label="action")
        getattr(self, action)(data)

    # -- network

    def _can_deliver(self) -> bool:
        return bool(self.c.deliverable())

    def _message(self, data: st.DataObject, candidates: list[int], label: str) -> int:
        """A message in flight: first its kind (so rare kinds are not drowned by
        appends), then one of that kind."""
        kinds = sorted({type(self.c.net[k][2]).__name__ for k in candidates})
        kind = data.draw(st.sampled_from(tuple(kinds)), label=f"{label} kind")
        same = [k for k in candidates if type(self.c.net[k][2]).__name__ == kind]
        return int(self._pick(data, same, label))

    def deliver(self, data: st.DataObject) -> None:
        """Deliver any one message in flight (reordering)."""
        self.c.deliver(self._message(data, self.c.deliverable(), "message"))

    def _can_settle(self) -> bool:
        return bool(self.c.net)

    def settle(self, data: st.DataObject) -> None:
        """Every message in flight, FIFO: the network making progress."""
        self.c.settle()

    _can_drop = _can_settle

    def drop(self, data: st.DataObject) -> None:
        self.c.net.pop(self._message(data, list(range(len(self.c.net))), "dropped"))

    _can_duplicate = _can_deliver

    def duplicate(self, data: st.DataObject) -> None:
        """Deliver a message and keep it in flight (it may arrive again)."""
        self.c.deliver(self._message(data, self.c.deliverable(), "duplicated"), keep=True)

    def _can_crash_in_step(self) -> bool:
        return self._can_deliver() and self.c.may_crash()

    def crash_in_step(self, data: st.DataObject) -> None:
        """Deliver a message and crash its receiver after some of the step's effects
        (storage keeps only the Persist records executed before the cut); half the
        time it reboots at once (a supervisor restarting the process)."""
        k = self._message(data, self.c.deliverable(), "message")
        dst = self.c.net[k][1]
        self.c.deliver(k, cut=data)
        if data.draw(st.booleans(), label="reboot"):
            seed = data.draw(st.integers(0, 2**32 - 1), label="seed")
            self.c.start(dst, random.Random(seed))

    def _can_crash_in_round(self) -> bool:
        return bool(self.c.net) and self.c.may_crash()

    def crash_in_round(self, data: st.DataObject) -> None:
        """A network round during which one receiver crashes in the middle of its
        step (as :meth:`crash_in_step`); half the time it reboots at once, before
        the rest of the round arrives."""
        k = data.draw(st.integers(0, len(self.c.net) - 1), label="crash at message")
        dst = self.c.net[k][1]
        reboot = data.draw(st.booleans(), label="reboot")
        if not reboot:
            self.c.settle(k, data)
            return
        seed = data.draw(st.integers(0, 2**32 - 1), label="seed")
        batch = self.c.net
        self.c.net = batch[: k + 1]
        self.c.settle(k, data)
        if self.c.nodes[dst] is None:
            self.c.start(dst, random.Random(seed))
        sent, self.c.net = self.c.net, batch[k + 1 :]
        self.c.settle()
        self.c.net = sent + self.c.net

    def _can_partition(self) -> bool:
        return not self.c.blocked  # a partition lasts until it heals

    def partition(self, data: st.DataObject) -> None:
        """Cut a minority off: half the time one that holds a leader (Jepsen's
        isolate-the-primary), else any."""
        nodes = list(range(self.c.params.n))
        leaders = [i for i in self.c.live() if self.c.node(i).role == "leader"]
        if leaders and data.draw(st.booleans(), label="isolate a leader"):
            side = {self._pick(data, leaders, "isolated leader")}
        else:
            side = data.draw(
                st.sets(st.sampled_from(nodes), min_size=1, max_size=len(nodes) // 2),
                label="side",
            )
        self.c.blocked = {frozenset((a, b)) for a in side for b in nodes if b not in side}

    def _can_heal(self) -> bool:
        return bool(self.c.blocked)

    def heal(self, data: st.DataObject) -> None:
        self.c.blocked = set()

    # -- nodes

    def _can_crash(self) -> bool:
        return self.c.may_crash()

    def crash(self, data: st.DataObject) -> None:
        live = self.c.live()
        leaders = [i for i in live if self.c.node(i).role == "leader"]
        if leaders and data.draw(st.booleans(), label="crash a leader"):
            live = leaders
        torn = data.draw(st.booleans(), label="lose the last unsynced Persist")
        outbox = data.draw(st.booleans(), label="lose its messages in flight")
        self.c.crash(self._pick(data, live, "crashed"), torn, outbox)

    def _can_restart(self) -> bool:
        return self.c.params.n > len(self.c.live())

    def restart(self, data: st.DataObject) -> None:
        down = [i for i, n in self.c.nodes.items() if n is None]
        seed = data.draw(st.integers(0, 2**32 - 1), label="seed")
        self.c.start(self._pick(data, down, "restarted"), random.Random(seed))

    def _armed(self) -> list[tuple[float, int, str]]:
        c = self.c
        return sorted((d, i, name) for i in c.live() for name, d in c.timers[i].items())

    def _can_tick(self) -> bool:
        return bool(self._armed())

    def tick(self, data: st.DataObject) -> None:
        """Time passes until the next timer is due anywhere: the messages in flight
        arrive first (network latency is far below timer intervals) unless the
        timer fires ``early`` (1 in 4), then it fires."""
        if data.draw(st.integers(0, 3), label="early") < 3:
            self.c.settle()
        if self._armed():
            _, i, name = self._armed()[0]
            self.c.fire(i, name)

    _can_fire_any_timer = _can_tick

    def fire_any_timer(self, data: st.DataObject) -> None:
        """Any armed timer fires now (time jumps to its deadline): a slow network."""
        _, i, name = self._pick(data, self._armed(), "timer")
        self.c.fire(i, name)

    # -- composite actions: several of the above in one step, so that runs of a
    # few hundred steps reach the states deep bugs need (term churn with entries
    # left on a minority, split votes, stale leaders)

    def _leaders(self) -> list[int]:
        return [i for i in self.c.live() if self.c.node(i).role == "leader"]

    def _can_isolated_write(self) -> bool:
        return bool(self._leaders()) and bool(self._idle())

    def isolated_write(self, data: st.DataObject) -> None:
        """Jepsen's isolate-the-primary with writes in flight: a node that believes it
        leads is cut off with a minority (alone, or with followers that keep the side
        a minority), clients write to it, its side's network makes some rounds
        (what crosses the cut is lost), then it either crashes with its messages in
        flight lost and the partition heals, or the partition stays."""
        c = self.c
        n = c.params.n
        leader = int(self._pick(data, self._leaders(), "isolated leader"))
        others = [i for i in range(n) if i != leader]
        company = data.draw(st.integers(0, (n - 1) // 2 - 1), label="followers with it")
        side = {leader, *data.draw(st.permutations(others), label="order")[:company]}
        c.blocked = {frozenset((a, b)) for a in side for b in range(n) if b not in side}
        idle = self._idle()
        for p in idle[: data.draw(st.integers(1, len(idle)), label="writes")]:
            c.invoke(p, "write", c.next_seq + 1, leader)
            c.preferred[p] = leader
        for _ in range(data.draw(st.integers(0, 2), label="rounds")):
            c.settle()
        then = data.draw(st.sampled_from(["crash", "stay", "move on"]), label="then")
        if then == "crash" and c.may_crash():
            c.crash(leader, torn=False, outbox=True)
            c.blocked = set()
        elif then == "move on":
            self._move_on(data, [i for i in range(n) if i not in side])

    def _move_on(self, data: st.DataObject, nodes: list[int]) -> None:
        """The majority side moves on: its nodes time out (up to three, one after
        the other) until one is elected over a fast network, and a client writes
        to it until answered; meanwhile the clients waiting on the other side time
        out, and may then read again at the node they know."""
        c = self.c
        gave_up = [p for p in sorted(c.ops) if c.preferred.get(p) not in nodes]
        for p in gave_up:
            c.give_up(p)
        for _ in range(3):  # a refused campaign teaches the others it is time
            candidates = [i for i in self._electable() if i in nodes]
            if not candidates:
                return
            new = int(self._pick(data, candidates, "new leader"))
            self._campaign(new)
            if c.node(new).role == "leader":
                break
        idle = self._idle()
        if c.node(new).role != "leader" or not idle:
            return
        p = int(self._pick(data, idle, "writer"))
        c.invoke(p, "write", c.next_seq + 1, new)
        c.preferred[p] = new
        for _ in range(60):
            ready = c.deliverable()
            if not ready or p not in c.ops:
                break
            c.deliver(ready[0])
        if data.draw(st.booleans(), label="those who gave up read again"):
            for q in gave_up:
                if q not in c.ops and c.nodes.get(c.preferred[q]) is not None:
                    c.invoke(q, "read", None, c.preferred[q])

    def _electable(self) -> list[int]:
        c = self.c
        return [i for i in c.live() if "election" in c.timers[i] and i in c.node(i).config.voters]

    def _can_elect(self) -> bool:
        return bool(self._electable())

    def elect(self, data: st.DataObject) -> None:
        """A node's election timer fires and the network is fast until it leads:
        messages are delivered in order, one at a time, until it leads (its first
        appends still in flight) or nothing is left to deliver (at most 60). Then
        (term churn) the new leader may be cut off at once, or crash with its
        messages in flight lost."""
        c = self.c
        i = int(self._pick(data, self._electable(), "candidate"))
        self._campaign(i)
        if c.node(i).role != "leader":
            return
        then = data.draw(st.sampled_from(["lead", "cut off", "crash"]), label="then")
        if then == "cut off":
            c.blocked = {frozenset((i, b)) for b in range(c.params.n) if b != i}
        elif then == "crash" and c.may_crash():
            c.crash(i, torn=False, outbox=True)

    def _campaign(self, i: int) -> None:
        c = self.c
        c.fire(i, "election")
        for _ in range(60):
            ready = c.deliverable()
            if not ready or c.nodes[i] is None or c.node(i).role == "leader":
                break
            c.deliver(ready[0])

    def _can_race(self) -> bool:
        return len(self._electable()) > 1

    def race(self, data: st.DataObject) -> None:
        """Two nodes' election timers fire back to back, before either hears from
        the other (a split vote in the making)."""
        a, b = data.draw(st.permutations(self._electable()), label="racers")[:2]
        self.c.fire(a, "election")
        if "election" in self.c.timers[b]:
            self.c.fire(b, "election")

    def _can_vote_crash(self) -> bool:
        return len(self._electable()) > 1 and self.c.may_crash()

    def vote_crash(self, data: st.DataObject) -> None:
        """A voter crashes while it grants a vote, and another candidate of that term
        asks it: one node's election timer fires (and, half the time, a second
        node's right after it: a split vote in the making); the network delivers in
        order until a candidate's RequestVote reaches the chosen voter, whose step
        is cut at an effect boundary (as :meth:`crash_in_step`); it reboots at once,
        then the second candidate's request arrives, or the voter's own election
        timer fires, or nothing more happens in this step."""
        c = self.c
        a, b = data.draw(st.permutations(self._electable()), label="candidates")[:2]
        v = int(self._pick(data, [i for i in c.live() if i != a], "voter"))
        c.fire(a, "election")
        if b != v and data.draw(st.booleans(), label="race") and "election" in c.timers[b]:
            c.fire(b, "election")
        for _ in range(60):
            asks = [
                k
                for k in c.deliverable()
                if c.net[k][1] == v
                and isinstance(c.net[k][2], RequestVote)
                and not c.net[k][2].pre_vote
            ]
            ready = c.deliverable()
            if asks or not ready:
                break
            c.deliver(ready[0])
        if not asks or c.nodes[v] is None or not c.may_crash():
            return
        c.deliver(asks[0], cut=data)
        if c.nodes[v] is None:
            c.reached.add("voter_crashed_voting")
            c.start(v, random.Random(data.draw(st.integers(0, 2**32 - 1), label="seed")))
        then = data.draw(st.sampled_from(["other candidate", "voter", "stop"]), label="then")
        if then == "voter" and v in self._electable():
            self._campaign(v)
        elif then == "other candidate":
            for _ in range(60):
                ready = c.deliverable()
                if not ready:
                    break
                c.deliver(ready[0])

    def _can_leader_churn(self) -> bool:
        return bool(self._leaders()) and bool(self._idle())

    def leader_churn(self, data: st.DataObject) -> None:
        """Figure 8's shape, each step one of the environment's own: a leader is cut
        off with a minority while clients write to it (its entries stay on that
        side); it crashes (its messages in flight lost; it restarts later in this
        step) or stays cut off; the majority side elects a new leader, which is
        at once cut off alone or crashes with its messages in flight lost (its
        noop stays on its disk only); the old leader rejoins and campaigns. What
        follows (the old entries replicated, perhaps counted) is left to the
        following steps, so the invariants are checked between its deliveries."""
        c = self.c
        n = c.params.n
        old = int(self._pick(data, self._leaders(), "old leader"))
        others = [i for i in range(n) if i != old]
        company = data.draw(st.integers(0, (n - 1) // 2 - 1), label="followers with it")
        side = {old, *data.draw(st.permutations(others), label="order")[:company]}
        c.blocked = {frozenset((a, b)) for a in side for b in range(n) if b not in side}
        idle = self._idle()
        for p in idle[: data.draw(st.integers(1, len(idle)), label="writes")]:
            c.invoke(p, "write", c.next_seq + 1, old)
            c.preferred[p] = old
        for _ in range(data.draw(st.integers(0, 2), label="rounds")):
            c.settle()
        crashed = data.draw(st.booleans(), label="old leader crashes") and c.may_crash()
        if crashed:
            c.crash(old, torn=False, outbox=True)
        rest = [i for i in range(n) if i not in side]
        new = None
        for _ in range(3):  # a refused campaign teaches the others the newer term
            candidates = [i for i in self._electable() if i in rest]
            if not candidates:
                break
            new = int(self._pick(data, candidates, "new leader"))
            self._campaign(new)
            if c.nodes[new] is not None and c.node(new).role == "leader":
                break
        if crashed:
            c.start(old, random.Random(data.draw(st.integers(0, 2**32 - 1), label="seed")))
        if new is None or c.nodes[new] is None or c.node(new).role != "leader":
            c.blocked = set()
            return
        if data.draw(st.booleans(), label="new leader crashes") and c.may_crash():
            c.crash(new, torn=False, outbox=True)
            c.blocked = set()
        else:
            c.blocked = {frozenset((new, b)) for b in range(n) if b != new}
        for _ in range(3):
            if c.nodes[old] is None:
                return
            if c.node(old).role == "leader":  # it learns the newer term from a follower
                if "heartbeat" in c.timers[old]:
                    c.fire(old, "heartbeat")
                for _ in range(2 * n):
                    ready = c.deliverable()
                    if not ready or c.node(old).role != "leader":
                        break
                    c.deliver(ready[0])
            if old in self._electable():
                self._campaign(old)
                if c.nodes[old] is not None and c.node(old).role == "leader":
                    c.reached.add("old_leader_returned")
                    break
        else:
            return
        if c.nodes[old] is None or c.node(old).role != "leader":
            return
        for _ in range(data.draw(st.integers(0, 4 * n), label="deliveries")):
            ready = c.deliverable()
            if not ready or self.found is not None:
                break
            c.deliver(ready[0])
            self._check_all()

    # -- clients

    def _idle(self) -> list[int]:
        return [p for p in range(PROCESSES) if p not in self.c.ops]

    def _target(self, data: st.DataObject) -> int:
        """Mostly a node that believes it leads (any of them, stale ones included)."""
        live = self.c.live()
        leaders = [i for i in live if self.c.node(i).role == "leader"]
        if leaders and data.draw(st.integers(0, 3), label="to any node") < 3:
            return int(self._pick(data, leaders, "leader"))
        return int(self._pick(data, live, "node"))

    def _client_target(self, data: st.DataObject, process: int) -> int:
        """The node the process believes leads, mostly; else as :meth:`_target`."""
        sticky = self.c.preferred.get(process)
        if sticky in self.c.live() and data.draw(st.integers(0, 3), label="elsewhere") < 3:
            return int(sticky)  # type: ignore[arg-type]
        node = self._target(data)
        self.c.preferred[process] = node
        return node

    def _can_client_write(self) -> bool:
        return bool(self._idle())

    def client_write(self, data: st.DataObject) -> None:
        p = self._pick(data, self._idle(), "process")
        self.c.invoke(p, "write", self.c.next_seq + 1, self._client_target(data, p))

    _can_client_read = _can_client_write

    def client_read(self, data: st.DataObject) -> None:
        p = self._pick(data, self._idle(), "process")
        self.c.invoke(p, "read", None, self._client_target(data, p))

    def _writing(self) -> list[int]:
        return sorted(p for p, op in self.c.ops.items() if op.f == "write")

    def _can_client_retry(self) -> bool:
        return bool(self._writing())

    def client_retry(self, data: st.DataObject) -> None:
        """Resend an outstanding write (same session request id) to another node."""
        self.c.retry(self._pick(data, self._writing(), "retrier"), self._target(data))

    def _can_client_timeout(self) -> bool:
        return bool(self.c.ops)

    def client_timeout(self, data: st.DataObject) -> None:
        """A client gives up waiting: the outcome is unknown (info)."""
        self.c.give_up(self._pick(data, sorted(self.c.ops), "giving up"))

    def _can_admin(self) -> bool:
        return True

    def admin(self, data: st.DataObject) -> None:
        """Transfer leadership, change membership or compact, at some node; the
        target is mostly one the operation fits (a non-voter to add, a member to
        remove, a voter to transfer to)."""
        op = data.draw(
            st.sampled_from(
                ["transfer_leadership", "add_server", "add_learner", "remove_server", "compact"]
            ),
            label="admin op",
        )
        node = self._target(data)
        cfg = self.c.node(node).config
        everyone = list(range(self.c.params.n))
        fitting = {
            "add_server": [i for i in everyone if i not in cfg.voters],
            "add_learner": [i for i in everyone if i not in cfg.members],
            "remove_server": list(cfg.members),
        }.get(op, list(cfg.voters))
        if not fitting or data.draw(st.integers(0, 3), label="any target") == 0:
            fitting = everyone  # sometimes a target the operation does not fit
        target = data.draw(st.sampled_from(tuple(fitting)), label="target")
        self.c.next_seq += 1
        self.c.request(node, ("admin", op, self.c.next_seq), op, target)

    # -- invariants

    def _check(self, check: str) -> None:
        if self.cluster is None or self.found is not None:
            return
        try:
            getattr(self.cluster, check)()
        except Violation as exc:
            if not type(self).record_only:
                raise
            self.found = str(exc).split(":", 1)[0]

    def _check_all(self) -> None:
        """Every invariant, now: a composite action checks them between the single
        deliveries it is made of, as the step boundary would."""
        for check in CHECKS:
            self._check(check)

    @invariant()
    def election_safety(self) -> None:
        self._check("check_election_safety")

    @invariant()
    def log_matching(self) -> None:
        self._check("check_log_matching")

    @invariant()
    def leader_completeness(self) -> None:
        self._check("check_leader_completeness")

    @invariant()
    def electable_completeness(self) -> None:
        self._check("check_electable_completeness")

    @invariant()
    def linearizable_reads(self) -> None:
        self._check("check_linearizable")

    def teardown(self) -> None:
        if self.cluster is not None:
            cls = type(self)
            cls.runs += 1
            for state in sorted(self.cluster.reached | ({self.found} if self.found else set())):
                cls.seen[state] = cls.seen.get(state, 0) + 1


# Runs are long enough for two or three leadership changes with entries in flight.
STEPS = 200
TestRaft = RaftMachine.TestCase
TestRaft.settings = settings(stateful_step_count=STEPS // 2, deadline=None)


REACHABLE = (
    "leader_elected",
    "entry_committed",
    "leader_changed_in_flight",
    "stale_read_refused",
    "snapshot_installed",
    "membership_changed",
    "leadership_transferred",
)


def tally(machine: type[RaftMachine], runs: int, steps: int = STEPS) -> tuple[int, dict[str, int]]:
    """Run ``runs`` fresh runs of ``machine`` without stopping at a violation.

    Returns how many runs completed and, per reachable state or broken invariant,
    in how many of them it happened.
    """
    measuring = type(f"Measuring{machine.__name__}", (machine,), {"record_only": True})
    measuring.seen = {}
    measuring.runs = 0
    run_state_machine_as_test(
        measuring,
        settings=settings(
            max_examples=runs,
            stateful_step_count=steps,
            deadline=None,
            database=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        ),
    )
    return measuring.runs, dict(measuring.seen)


def reach_rates(runs: int) -> dict[str, float]:
    """Fraction of ``runs`` fresh runs (invariants checked) reaching each interesting state."""
    RaftMachine.seen = {}
    RaftMachine.runs = 0
    run_state_machine_as_test(
        RaftMachine,
        settings=settings(
            max_examples=runs,
            stateful_step_count=STEPS,
            deadline=None,
            database=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        ),
    )
    total = max(RaftMachine.runs, 1)
    return {state: RaftMachine.seen.get(state, 0) / total for state in REACHABLE}


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_interesting_states_are_reached_in_a_good_fraction_of_runs() -> None:
    """Sometimes-properties, measured: each state in at least 2 % of 500 fresh runs
    (docs/consensus.md has the measured rates)."""
    rates = reach_rates(500)
    print({k: round(v, 3) for k, v in rates.items()})
    assert all(rate >= 0.02 for rate in rates.values()), rates


@pytest.mark.timeout(600)
def test_interesting_states_are_reached() -> None:
    """The ci-sized check: every interesting state is reached within 120 fresh runs."""
    rates = reach_rates(120)
    assert all(rate > 0 for rate in rates.values()), rates


# ---------------------------------------------------------------------- broken variants


class CommitOldTermMachine(RaftMachine):
    node_cls = CommitOldTermNode


class VoteBeforePersistMachine(RaftMachine):
    node_cls = VoteBeforePersistNode


class ReadWithoutQuorumMachine(RaftMachine):
    node_cls = ReadWithoutQuorumNode


class DoubleVoteMachine(RaftMachine):
    node_cls = DoubleVoteNode


class NoConsistencyCheckMachine(RaftMachine):
    node_cls = NoConsistencyCheckNode


class ApplyOnAppendMachine(RaftMachine):
    node_cls = ApplyOnAppendNode


class ForgetsTruncationMachine(RaftMachine):
    node_cls = ForgetsTruncationNode


# Each broken core with the invariants its bug can break: the one it is meant to
# break first, then those its consequences reach (a search reports whichever
# fails first; benchmarks/catch_rates_raft.py counts them apart).
BROKEN: dict[str, tuple[type[RaftMachine], tuple[str, ...]]] = {
    "commit_old_term": (
        CommitOldTermMachine,
        ("ElectableCompleteness", "LeaderCompleteness", "StateMachineSafety"),
    ),
    "vote_before_persist": (
        VoteBeforePersistMachine,
        ("OneVotePerTerm", "ElectionSafety", "LogMatching", "ElectableCompleteness"),
    ),
    "read_without_quorum": (ReadWithoutQuorumMachine, ("LinearizableReads",)),
    "double_vote": (DoubleVoteMachine, ("OneVotePerTerm", "ElectionSafety", "LogMatching")),
    # A read served from a log the bug corrupted, or from a state machine that applied
    # an uncommitted entry, is not linearizable either: 2 of 200 and 1 of 200 measured
    # searches of these two cores failed first on LinearizableReads (the correct core:
    # no violation in 84 + 54 full searches), which a CI search used to call "another
    # reason".
    "no_consistency_check": (
        NoConsistencyCheckMachine,
        (
            "LogMatching",
            "StateMachineSafety",
            "ElectableCompleteness",
            "LeaderCompleteness",
            "LinearizableReads",
        ),
    ),
    "apply_on_append": (
        ApplyOnAppendMachine,
        ("StateMachineSafety", "LeaderCompleteness", "LinearizableReads"),
    ),
    "forgets_truncation": (ForgetsTruncationMachine, ("PersistConsistent",)),
}
# Runs one search may try before it gives up (each of up to STEPS steps; about
# 0.1 s of CPU per run, so a search that finds nothing costs about 10 s on an
# idle machine; most stop at their first failure much sooner).
# benchmarks/catch_rates_raft.py measures whole searches; docs/consensus.md has
# the figures.
SEARCH_EXAMPLES = 100
#: the broken cores CI searches for (one fresh search each): all of them since the
#: composite actions ``vote_crash`` and ``leader_churn`` made the two hard ones
#: (a vote lost in a crash, Figure 8) common (docs/consensus.md: 200 searches each)
CI_SEARCHED = tuple(BROKEN)
#: fresh searches CI allows a core that a measured search missed (a second,
#: independent search after a miss; docs/consensus.md): read_without_quorum ran
#: out of its budget in 9 of 200 searches
CI_SEARCHES = {"read_without_quorum": 2}


def search(machine: type[RaftMachine], max_examples: int = SEARCH_EXAMPLES) -> str | None:
    """One fresh random search (new seed, no example database, no shrinking).

    Returns the failure message, or ``None`` if the search found nothing.
    """
    try:
        run_state_machine_as_test(
            machine,
            settings=settings(
                max_examples=max_examples,
                stateful_step_count=STEPS,
                deadline=None,
                phases=[Phase.generate],
                derandomize=False,
                database=None,
                suppress_health_check=list(HealthCheck),
                print_blob=False,
                verbosity=Verbosity.quiet,
            ),
        )
    except AssertionError as exc:
        return str(exc)
    return None


def _searched(name: str, searches: int) -> None:
    machine, invariants = BROKEN[name]
    for _ in range(searches):
        found = search(machine)
        if found is not None:
            assert found.startswith(invariants), found
            return
    pytest.fail(f"{name} survived {searches} fresh searches of {SEARCH_EXAMPLES} runs each")


@pytest.mark.timeout(300)
@pytest.mark.parametrize("name", CI_SEARCHED)
def test_broken_core_is_caught_by_a_fresh_search(name: str) -> None:
    """One fresh random search per broken core (two for those in CI_SEARCHES),
    asserting it is caught by one of the invariants that core breaks (catch rates
    in docs/consensus.md)."""
    _searched(name, CI_SEARCHES.get(name, 1))


# ---------------------------------------------------------------------- directed schedules
# Regression checks, not searches: the schedule each broken core needs, run on the
# broken core (an invariant must fail) and on the real one (none may).

DIRECTED = (
    ("pre_vote", False),
    ("check_quorum", False),
    ("max_batch", 1),
    ("election_timeout", 1.0),
    ("heartbeat_interval", 0.5),
)


def _violations(c: RaftCluster) -> list[str]:
    found = []
    for check in ("check_election_safety", "check_leader_completeness", "check_log_matching"):
        try:
            getattr(c, check)()
        except Violation as exc:
            found.append(str(exc).split(":", 1)[0])
    return found


def _elect(c: RaftCluster, i: int) -> None:
    for _ in range(3):  # a refused request teaches the candidate the newer term
        c.fire(i, "election")
        c.settle()
        c.settle()
        if c.node(i).role == "leader":
            return
    raise AssertionError(f"node {i} was not elected")


def _figure_8(node_cls: type[RaftNode]) -> list[str]:
    c = RaftCluster(Params(3, (0, 1, 2), DIRECTED), node_cls)
    _elect(c, 0)  # term 1, noop at 1 everywhere
    c.settle()
    c.fire(0, "heartbeat")
    c.settle()
    c.blocked = {frozenset((0, 1)), frozenset((0, 2))}
    c.invoke(0, "write", 1, 0)  # index 2, term 1, on node 0 only
    c.crash(0)
    c.net.clear()
    c.blocked = set()
    _elect(c, 2)  # term 2, its noop at 2 on node 2 only
    c.net.clear()
    c.crash(2)
    c.start(0, random.Random(0))
    _elect(c, 0)  # term 3 with node 1's vote
    for _ in range(6):  # replicate index 2 (alone: max_batch 1), but not the term-3 noop
        c.net = [m for m in c.net if not (m[1] == 1 and c.node(1).last_index >= 2)]
        c.settle()
    c.crash(0)
    c.net.clear()
    c.start(2, random.Random(2))
    _elect(c, 2)  # node 2's last term 2 beats node 1's: index 2 is overwritten
    return _violations(c)


def test_figure_8_schedule_breaks_commit_old_term_only() -> None:
    assert "LeaderCompleteness" in _figure_8(CommitOldTermNode)
    assert _figure_8(RaftNode) == []


def _split_vote(node_cls: type[RaftNode]) -> list[str]:
    c = RaftCluster(Params(3, (0, 1, 2), DIRECTED), node_cls)
    c.fire(0, "election")  # candidate of term 1
    c.fire(2, "election")  # candidate of term 1 too, before hearing of node 0
    k = next(j for j, (s, d, _) in enumerate(c.net) if (s, d) == (0, 1))
    src, _, msg = c.net.pop(k)
    effects = c.node(1).on_message(c.now, src, msg)  # node 1 grants node 0 ...
    last_send = max(j for j, e in enumerate(effects) if isinstance(e, Send))
    c.run(1, effects, crash_at=last_send + 1)  # ... and crashes right after sending it
    c.start(1, random.Random(1))
    c.settle()
    c.settle()
    return _violations(c)


def test_split_vote_schedule_breaks_vote_before_persist_only() -> None:
    found = _split_vote(VoteBeforePersistNode)
    assert "ElectionSafety" in found or "OneVotePerTerm" in found, found
    assert _split_vote(RaftNode) == []


def _stale_read(node_cls: type[RaftNode]) -> list[str]:
    c = RaftCluster(Params(3, (0, 1, 2), DIRECTED), node_cls)
    _elect(c, 0)
    c.invoke(0, "write", 1, 0)
    for _ in range(3):
        c.fire(0, "heartbeat")
        c.settle()
        c.settle()
    c.blocked = {frozenset((0, 1)), frozenset((0, 2))}  # the leader is cut off
    _elect(c, 1)
    c.invoke(1, "write", 2, 1)
    for _ in range(3):
        c.fire(1, "heartbeat")
        c.settle()
        c.settle()
    assert c.events[-1] == HistoryEvent(1, "ok", "write", 2)
    c.invoke(2, "read", None, 0)  # the old leader still believes it leads
    c.settle()
    try:
        c.check_linearizable()
    except Violation as exc:
        return [str(exc).split(":", 1)[0]]
    return []


def test_stale_leader_schedule_breaks_read_without_quorum_only() -> None:
    assert _stale_read(ReadWithoutQuorumNode) == ["LinearizableReads"]
    assert _stale_read(RaftNode) == []
