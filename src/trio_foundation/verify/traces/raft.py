"""Raft trace validation: simulated runs of the real core → ``specs/RaftTrace.tla`` → TLC.

:func:`simulated_run` runs three real :class:`~trio_foundation.protocols.raft.RaftNode`
cores in the deterministic simulator (:class:`~trio_foundation.runtime.sim.Simulation`,
every node a :class:`~trio_foundation.runtime.driver.NodeDriver`) under a fault
schedule drawn from the seed — message loss, duplication, delay and reordering,
partitions healed later, crashes followed by restarts from durable storage — with
client proposals sent to random nodes, and records every transition through the
drivers' trace hook. :func:`trace_of` maps the recorded transitions to records of
``specs/RaftTrace.tla``, one per step of ``specs/Raft.tla``; :func:`check_traces`
writes many runs into one module ``RaftTraceData`` and asks TLC, in one run,
whether each is a behaviour of ``Raft`` (with ``Faults = {"crash", "duplicate"}``
and ``Features = {"prevote", "check_quorum", "noop", "lease_expiry", "batching"}``) that
keeps its safety invariants and ``SendsDurable`` (persist before send).

The mapping
-----------

Node ``i`` is the spec's server ``"s{i+1}"``. A core transition becomes:

* a **restart** (``Start`` after a crash) → ``Restart``; the first start of each
  node is the spec's ``Init`` and maps to nothing;
* the **election timer** → ``Timeout`` (PreVote: the node asks for ``term + 1``);
* the **CheckQuorum timer** that makes a leader step down → ``CheckQuorum``;
* a **proposal** the leader appends → ``ClientRequest``; a proposal refused
  (``NotLeader``, busy) changes nothing and maps to nothing;
* a **message** handled → ``Receive`` of the message (also when the core drops
  it: the trace spec takes a record as a loss when no handler of the spec gives
  the logged outcome, and only then, so it never branches);
* every ``AppendEntries`` the transition sends → a following ``AppendEntries``
  record (the spec separates the handler from the sends; a transition that sends
  two appends to one peer is logged as two such records); the **heartbeat
  timer** is only that;
* before any transition of a follower whose leader lease (``T`` since the last
  append heard) has lapsed → ``LeaseExpires``: the core grants pre-votes again
  from then on, while its election timer (random in ``[T, 2T)``) may not have
  fired yet — a step ``Timeout`` alone does not model (see ``Raft.tla``). The
  lease's start is read from the core (:func:`project`, the only private field
  the mapping reads).

Each record logs the node's role, term, commit index and durable state (term,
vote, log of entry terms) after the transition, the messages it sent, and — on
the transition's last record — its ``Persist`` and ``Send`` effects *in the order
the core emitted them*, which the trace spec replays one at a time
(``SendsDurable``): a core that emits a granted vote before the ``Persist`` of the
vote is rejected, although the node driver would have executed the ``Persist``
first anyway.

Abstractions (where the core is finer than the spec)
----------------------------------------------------

* **Messages** map field by field; entries become their terms (an entry is
  identified by index and term in every invariant); the conflict hint of a
  refused append (``conflict_index``/``conflict_term``, fast backtracking) is
  dropped: the spec's leader may send from any ``prev_log_index``, which covers
  where the hint makes the core's leader go next.
* **Batching** (the ``batching`` feature of ``Raft.tla``): an append carries the
  entries after its ``prev_log_index`` up to a bound (``max_batch``), or none (a
  heartbeat, also the probe heartbeat of a peer with an append outstanding);
  the trace spec reads which entries from the logged message and the spec
  computes their contents from its own log. Pipelined appends to one peer in
  one transition are logged as successive ``AppendEntries`` records.
* **The network keeps every message**: a delivered message stays in the spec's
  ``msgs`` (with the ``duplicate`` fault), so a duplicate is a second delivery, a
  lost message one never delivered; nothing needs the simulator's queues.
* **Storage**: the simulator keeps the data of a node's last ``Persist``; the
  cores run inside :class:`DurableRaft`, a storage adapter that folds each
  incremental :class:`~trio_foundation.protocols.raft.RaftPersist` into the
  whole :class:`~trio_foundation.protocols.raft.RaftDurable` (as
  :func:`~trio_foundation.protocols.raft.apply_persist` does) in the effect's
  place, so a restart restores the whole durable state and the trace logs it.
* **A vote refused to a candidate while a leader is known**: a follower that
  heard from the leader of its term and has not voted refuses a vote request of
  that term (as etcd-io/raft does), where the spec's voter would grant it; the
  request is logged as consumed without effect (a loss) and the refusal, which
  no receiver acts on, as never sent (its deliveries map to nothing).
* **Not exercised** (the spec does not model them, or the runs leave them out):
  snapshots and compaction (``max_log_entries`` above any log), membership
  change, leadership transfer, ReadIndex reads (the core's read index — the
  term's no-op entry — is finer than the spec's), torn storage tails.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final, final

import attrs

from ...protocols.effects import ClientRequest, Effect, Persist, Send
from ...protocols.raft import (
    AppendEntries,
    AppendEntriesResponse,
    RaftDurable,
    RaftNode,
    RaftPersist,
    RequestVote,
    RequestVoteResponse,
    apply_persist,
)
from ...runtime.driver import Start, TimerFired, Transition
from ...runtime.faults import Crash, Cut, FaultEvent, Heal, Partition, Restart, UniformDelay
from ...runtime.sim import SimConfig, Simulation
from ...runtime.transport import Envelope
from ..tla_values import Record, to_tla
from .lease_lock import TraceCheck, check_record_traces, traces_tla
from .storage import AccumulatedStorage

__all__ = [
    "FEATURES",
    "INVARIANTS",
    "DurableRaft",
    "NodeView",
    "RunParams",
    "check_trace_module",
    "check_traces",
    "node_factory",
    "raft_node",
    "server",
    "project",
    "simulated_run",
    "simulated_trace",
    "trace_config",
    "trace_module",
    "trace_of",
    "write_trace_module",
]

NIL: Final = "nil"
FEATURES: Final = frozenset({"prevote", "check_quorum", "noop", "lease_expiry", "batching"})
"""The ``Features`` of ``Raft.tla`` the traced cores run with."""
INVARIANTS: Final = (
    "ElectionSafety",
    "LogMatching",
    "LeaderCompleteness",
    "StateMachineSafety",
    "LinearizableReads",
    "TermsOpenedByCandidates",
    "SendsDurable",
)
"""What the trace config checks along every trace."""
_UNBOUNDED: Final = 1_000_000
_ROLES: Final = {
    "follower": "Follower",
    "pre_candidate": "PreCandidate",
    "candidate": "Candidate",
    "leader": "Leader",
}


def server(node: int) -> str:
    """The spec's name of ``node``."""
    return f"s{node + 1}"


def _vote(node: int | None) -> str:
    return NIL if node is None else server(node)


@final
@attrs.frozen
class RunParams:
    """How a simulated run is set up (the fault schedule is drawn from the seed).

    Attributes:
        duration: simulated seconds.
        election_timeout: the cores' ``T`` in seconds (elections after ``[T, 2T)``).
        heartbeat_interval: seconds between a leader's heartbeats.
        proposals: client proposals, each to a random node at a random time.
        partitions: partitions, each healed after 0.3 to 1.5 s.
        crashes: crashes, each followed by a restart after 0.1 to 1 s.
        drop_rate: probability that a message is lost.
        duplicate_rate: probability that a message is delivered twice.
        reorder_rate: probability that a message is held back up to 0.2 s.
        leader_cuts: times (at random) the current leader loses its link to
            one follower, is sent a burst of three proposals, and is cut off
            from the other follower too about one message delay later (healed
            1 to 3 s after): the entries reach at most one follower and their
            acknowledgements may not come back, so the next leader may hold
            entries of an older term that it must commit indirectly (the
            Figure 8 situation) while the other follower lacks them.
        max_batch: the cores' ``max_batch`` (entries per append).
        max_inflight: the cores' ``max_inflight`` (pipelined appends per follower).
    """

    duration: float = 5.0
    election_timeout: float = 1.0
    heartbeat_interval: float = 0.2
    proposals: int = 12
    partitions: int = 1
    crashes: int = 2
    drop_rate: float = 0.05
    duplicate_rate: float = 0.05
    reorder_rate: float = 0.05
    leader_cuts: int = 2
    max_batch: int = 1
    max_inflight: int = 4

    def __attrs_post_init__(self) -> None:
        if not self.duration > 0:
            raise ValueError(f"duration must be > 0, got {self.duration!r}")
        if not 0 < self.heartbeat_interval < self.election_timeout:
            raise ValueError(
                f"need 0 < heartbeat_interval < election_timeout, got {self.heartbeat_interval!r}"
                f" and {self.election_timeout!r}"
            )
        for name in ("proposals", "partitions", "crashes", "leader_cuts"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        for name in ("max_batch", "max_inflight"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")


@final
class _Register:
    """The state machine of the traced runs: remembers the last command."""

    def __init__(self) -> None:
        self.value: Any = None

    def apply(self, command: Any) -> Any:
        self.value = command
        return command

    def query(self, query: Any) -> Any:
        return self.value

    def snapshot(self) -> bytes:
        return repr(self.value).encode()

    def restore(self, data: bytes) -> None:
        self.value = data.decode()


NodeFactory = Callable[[int, int, RunParams], RaftNode]
"""Builds node ``i`` of ``n`` for a run: ``factory(i, n, params)``; tests pass broken cores."""


def raft_node(node: int, nodes: int, params: RunParams) -> RaftNode:
    """The traced runs' core: PreVote and CheckQuorum on, batches of ``params.max_batch``
    entries, no compaction."""
    return node_factory()(node, nodes, params)


def node_factory(core: type[RaftNode] = RaftNode) -> NodeFactory:
    """A :data:`NodeFactory` building ``core`` (a :class:`RaftNode` or a subclass,
    e.g. a deliberately broken one) configured as :func:`raft_node` says."""

    def build(node: int, nodes: int, params: RunParams) -> RaftNode:
        return core(
            node,
            range(nodes),
            _Register(),
            election_timeout=params.election_timeout,
            heartbeat_interval=params.heartbeat_interval,
            pre_vote=True,
            check_quorum=True,
            max_batch=params.max_batch,
            max_inflight=params.max_inflight,
            max_uncommitted=_UNBOUNDED,
            max_log_entries=_UNBOUNDED,
        )

    return build


@final
class DurableRaft(AccumulatedStorage):
    """A :class:`RaftNode` whose ``Persist`` effects carry the whole durable state.

    The storage adapter of the traced runs (see the module docstring): each
    ``Persist(RaftPersist)`` the core emits is replaced, in its place, by
    ``Persist(RaftDurable)``, the durable state it adds up to; :meth:`restore`
    takes that. Every other effect passes through unchanged and in order.
    """

    def __init__(self, core: RaftNode) -> None:
        super().__init__(core, RaftDurable())

    def fold(self, durable: Any, data: Any) -> Any | None:
        return apply_persist(durable, data) if isinstance(data, RaftPersist) else None

    def check(self, snapshot: Any) -> None:
        if not isinstance(snapshot, RaftDurable):
            raise TypeError(f"expected RaftDurable, got {type(snapshot).__name__}")


@final
@attrs.frozen
class NodeView:
    """What the trace needs of a core after a step (the drivers' projection).

    Attributes:
        role, term, voted_for, commit: the core's.
        log: the terms of its log entries.
        leader: the leader it follows, if any.
        contact: local time of the last append heard from a leader.
        election_timeout: its ``T`` (the length of the leader lease).
    """

    role: str
    term: int
    voted_for: int | None
    commit: int
    log: tuple[int, ...]
    leader: int | None
    contact: float
    election_timeout: float

    def leased(self, now: float) -> bool:
        """Whether the core refuses pre-votes at local time ``now`` (follower's lease)."""
        return (
            self.role == "follower"
            and self.leader is not None
            and now - self.contact < self.election_timeout
        )


def project(core: Any) -> NodeView:
    """The drivers' projection of a :class:`DurableRaft` (or a bare :class:`RaftNode`)."""
    node: RaftNode = core.core if isinstance(core, DurableRaft) else core
    durable = node.snapshot_persistent()
    return NodeView(
        role=node.role,
        term=durable.term,
        voted_for=durable.voted_for,
        commit=node.commit_index,
        log=tuple(e.term for e in durable.log),
        leader=node.leader_id,
        contact=node._last_leader_contact,  # the lease's start, read for the mapping only
        election_timeout=node.election_timeout,
    )


# ---------------------------------------------------------------------- the mapping


def _message(src: int, dst: int, msg: Any) -> Record:
    """The spec's record of the core's message ``msg`` from ``src`` to ``dst``."""
    ends = {"from": server(src), "to": server(dst)}
    if isinstance(msg, RequestVote):
        return Record(
            type="RequestVote",
            pre_vote=msg.pre_vote,
            term=msg.term,
            **ends,
            last_log_index=msg.last_log_index,
            last_log_term=msg.last_log_term,
        )
    if isinstance(msg, RequestVoteResponse):
        return Record(
            type="RequestVoteResponse",
            pre_vote=msg.pre_vote,
            term=msg.term,
            **ends,
            granted=msg.granted,
        )
    if isinstance(msg, AppendEntries):
        return Record(
            type="AppendEntries",
            term=msg.term,
            **ends,
            prev_log_index=msg.prev_log_index,
            prev_log_term=msg.prev_log_term,
            entries=tuple(e.term for e in msg.entries),
            leader_commit=msg.leader_commit,
            read_id=msg.read_id,
        )
    if isinstance(msg, AppendEntriesResponse):
        return Record(
            type="AppendEntriesResponse",
            term=msg.term,
            **ends,
            success=msg.success,
            match_index=msg.match_index,
            read_id=msg.read_id,
        )
    raise ValueError(f"message outside the spec: {msg!r} from {src} to {dst}")


def _effects(node: int, effects: Sequence[Effect]) -> tuple[Record, ...]:
    out = []
    for eff in effects:
        if isinstance(eff, Persist):
            if not isinstance(eff.data, RaftDurable):
                raise TypeError(f"node {node}: expected Persist(RaftDurable), got {eff!r}")
            d = eff.data
            out.append(
                Record(
                    kind="persist",
                    term=d.term,
                    vote=_vote(d.voted_for),
                    log=tuple(e.term for e in d.log),
                )
            )
        elif isinstance(eff, Send):
            out.append(Record(kind="send", msg=_message(node, eff.to, eff.msg)))
    return tuple(out)


def _record(
    node: int,
    action: str,
    view: NodeView,
    *,
    msg: Record | str = "none",
    sent: Sequence[Record] = (),
    effects: tuple[Record, ...] = (),
) -> Record:
    return Record(
        node=server(node),
        action=action,
        msg=msg,
        sent=frozenset(sent),
        role=_ROLES[view.role],
        term=view.term,
        commit=view.commit,
        persisted=Record(term=view.term, vote=_vote(view.voted_for), log=view.log),
        effects=effects,
    )


def _main_action(t: Transition, before: NodeView, after: NodeView) -> str | None:
    """The spec action of the transition's first record (``None``: only its appends)."""
    if isinstance(t.input, Start):
        return "Restart"
    if isinstance(t.input, Envelope):
        return "Receive"
    if isinstance(t.input, TimerFired):
        if t.input.name == "election":
            sends = any(isinstance(e, Send) for e in t.effects)
            return "Timeout" if sends or after != before else None
        if t.input.name == "check_quorum" and before.role == "leader" != after.role:
            return "CheckQuorum"
        return None
    if isinstance(t.input, ClientRequest):
        if t.input.op != "propose":
            raise ValueError(f"client operation outside the traced runs: {t.input.op!r}")
        return "ClientRequest" if any(isinstance(e, Persist) for e in t.effects) else None
    raise ValueError(f"unknown transition input {t.input!r}")


def trace_of(transitions: Sequence[Transition]) -> list[Record]:
    """Map transitions recorded with :func:`project` to ``RaftTrace`` records.

    Args:
        transitions: every transition of a run, in the order they were taken,
            starting with each node's first start; ``state`` must be a
            :class:`NodeView`.

    Raises:
        ValueError: a transition outside what the spec models (a message it has
            no record for, a client operation other than ``propose``), or one
            whose effects the mapping cannot split into spec steps.
    """
    views: dict[int, NodeView] = {}
    heard: dict[int, bool] = {}
    # refusals outside the spec (see _refusals), until the spec sends the same message
    unsent: set[Record] = set()
    records: list[Record] = []
    for t in transitions:
        n, after = t.node, t.state
        if not isinstance(after, NodeView):
            raise ValueError(f"transition of node {n} recorded without the projection")
        before = views.get(n)
        views[n] = after
        if before is None:
            if not isinstance(t.input, Start):
                raise ValueError(f"node {n}'s first transition is not its start: {t.input!r}")
            heard[n] = False
            continue
        if isinstance(t.input, Start):
            heard[n] = False
        elif heard[n] and not before.leased(t.now):
            records.append(_record(n, "LeaseExpires", before))
            heard[n] = False
        if isinstance(t.input, Envelope) and _message(t.input.src, n, t.input.msg) in unsent:
            heard[n] = after.leased(t.now)
            continue  # a refusal outside the spec, delivered: the core ignores it
        action = _main_action(t, before, after)
        hidden = _refusals(t, before)
        unsent.update(_message(n, e.to, e.msg) for e in hidden)
        sends = [e for e in t.effects if isinstance(e, Send) and e not in hidden]
        unsent.difference_update(_message(n, e.to, e.msg) for e in sends)
        appends = [e for e in sends if isinstance(e.msg, AppendEntries)]
        others = [_message(n, e.to, e.msg) for e in sends if not isinstance(e.msg, AppendEntries)]
        steps: list[tuple[str, Record | str, list[Record]]] = []
        if action is not None:
            msg: Record | str = "none"
            if isinstance(t.input, Envelope):
                msg = _message(t.input.src, n, t.input.msg)
            steps.append((action, msg, others))
        elif others or after != before:
            raise ValueError(f"node {n}: {t.input!r} changed state or sent {others} unmapped")
        batch: list[Send] = []
        for send in [*appends, None]:
            if send is None or any(b.to == send.to for b in batch):
                if batch:
                    steps.append(
                        ("AppendEntries", "none", [_message(n, b.to, b.msg) for b in batch])
                    )
                batch = []
            if send is not None:
                batch.append(send)
        heard[n] = after.leased(t.now)
        if not steps:
            continue
        mapped = _effects(n, [e for e in t.effects if e not in hidden])
        for k, (name, msg, sent) in enumerate(steps):
            last = k == len(steps) - 1
            records.append(
                _record(n, name, after, msg=msg, sent=sent, effects=mapped if last else ())
            )
    return records


def _refusals(t: Transition, before: NodeView) -> list[Send]:
    """The vote refusals of ``t`` that the spec has no step for.

    A follower that knows the leader of its term and has not voted in it refuses
    a vote request of that term (as etcd-io/raft does); the spec's voter grants
    it. The refusal changes nothing at either end (a candidate ignores refusals
    of its own term), so the mapping logs the request as consumed with no effect
    (the spec's loss) and the refusal as never sent: its deliveries map to nothing.
    """
    msg = t.input.msg if isinstance(t.input, Envelope) else None
    if not (
        isinstance(msg, RequestVote)
        and not msg.pre_vote
        and msg.term == before.term
        and before.role == "follower"
        and before.leader is not None
        and before.voted_for is None
    ):
        return []
    return [
        e
        for e in t.effects
        if isinstance(e, Send) and isinstance(e.msg, RequestVoteResponse) and not e.msg.granted
    ]


# ---------------------------------------------------------------------- runs


def _schedule(rng: random.Random, params: RunParams, nodes: int) -> list[FaultEvent]:
    events: list[FaultEvent] = []
    for _ in range(params.partitions):
        at = rng.uniform(0.5, params.duration)
        alone = rng.randrange(nodes)
        rest = tuple(i for i in range(nodes) if i != alone)
        events.append(FaultEvent(at, Partition(((alone,), rest))))
        events.append(FaultEvent(at + rng.uniform(0.3, 1.5), Heal()))
    for _ in range(params.crashes):
        at = rng.uniform(0.5, params.duration)
        node = rng.randrange(nodes)
        events.append(FaultEvent(at, Crash(node)))
        events.append(FaultEvent(at + rng.uniform(0.1, 1.0), Restart(node)))
    return sorted(events, key=lambda e: e.at)


def _leader_cut(
    sim: Simulation, cut: int, delay: float, healed: float, nodes: int
) -> Callable[[], None]:
    def act() -> None:
        leaders = [
            i
            for i in range(nodes)
            if isinstance(core := sim.core(i), DurableRaft) and core.core.role == "leader"
        ]
        if not leaders:
            return
        leader = leaders[-1]
        rest = tuple(i for i in range(nodes) if i != leader)
        sim.apply_fault(Cut(leader, rest[cut % len(rest)]))
        for k in range(3):
            sim.submit(leader, "propose", f"cut{cut}.{k}")
        sim.apply_fault(Partition(((leader,), rest)), at=sim.now + delay)
        sim.apply_fault(Heal(), at=sim.now + delay + healed)

    return act


def simulated_run(
    seed: int,
    params: RunParams = RunParams(),
    node_factory: NodeFactory = raft_node,
    *,
    nodes: int = 3,
) -> list[Transition]:
    """Run ``nodes`` Raft cores in the simulator and return every transition.

    The fault schedule, the proposals and the network's randomness all derive
    from ``seed``: the same seed gives the same run.

    Args:
        seed: the run's seed.
        params: the run's length, timing, faults and workload.
        node_factory: builds each core (default :func:`raft_node`).
        nodes: the cluster size.
    """
    transitions: list[Transition] = []
    rng = random.Random(f"{seed}:raft-trace")
    config = SimConfig(
        delay=UniformDelay(0.002, 0.03),
        drop_rate=params.drop_rate,
        duplicate_rate=params.duplicate_rate,
        reorder_rate=params.reorder_rate,
        reorder_window=0.2,
    )
    sim = Simulation(
        lambda i, n: DurableRaft(node_factory(i, n, params)),
        nodes=nodes,
        seed=seed,
        config=config,
        schedule=_schedule(rng, params, nodes),
        trace=transitions.append,
        projection=project,
    )
    for k in range(params.proposals):
        sim.submit(rng.randrange(nodes), "propose", f"v{k}", at=rng.uniform(0.0, params.duration))
    for cut in range(params.leader_cuts):
        at = rng.uniform(0.5, params.duration)
        delay, healed = rng.uniform(0.03, 0.1), rng.uniform(1.0, 3.0)
        sim.call_at(at, _leader_cut(sim, cut, delay, healed, nodes))
    sim.run(until=params.duration)
    return transitions


def simulated_trace(
    seed: int, params: RunParams = RunParams(), node_factory: NodeFactory = raft_node
) -> list[Record]:
    """:func:`trace_of` a :func:`simulated_run` of three nodes."""
    return trace_of(simulated_run(seed, params, node_factory))


# ---------------------------------------------------------------------- TLC


def trace_module(traces: Sequence[Sequence[Record]], *, nodes: int = 3) -> str:
    """The text of the module ``RaftTraceData`` holding ``traces``."""
    body = traces_tla(traces)
    servers = to_tla(frozenset(server(i) for i in range(nodes)))
    return (
        "---- MODULE RaftTraceData ----\n"
        "\\* Generated by trio_foundation.verify.traces.raft; do not edit.\n"
        f"TraceServers == {servers}\n"
        f'TraceNil == "{NIL}"\n'
        f"TraceFeatures == {to_tla(FEATURES)}\n"
        f"Traces == <<\n{body}\n>>\n"
        "====\n"
    )


def write_trace_module(traces: Sequence[Sequence[Record]], path: Path) -> None:
    """Write ``traces`` as the module ``RaftTraceData`` at ``path``."""
    path.write_text(trace_module(traces), encoding="utf-8")


def trace_config() -> str:
    """The TLC configuration of ``RaftTrace`` for traces of :func:`trace_module`."""
    invariants = "".join(f"    {name}\n" for name in INVARIANTS)
    return (
        "SPECIFICATION TraceSpec\n"
        "CONSTANTS\n"
        "    Server <- TraceServers\n"
        "    Nil <- TraceNil\n"
        "    Features <- TraceFeatures\n"
        f"    MaxTerm = {_UNBOUNDED}\n"
        f"    MaxLogLen = {_UNBOUNDED}\n"
        f"    MaxMsgs = {_UNBOUNDED}\n"
        f"    MaxReads = {_UNBOUNDED}\n"
        f"    MaxRestarts = {_UNBOUNDED}\n"
        '    Faults = {"crash", "duplicate"}\n'
        '    Variant = "correct"\n'
        f"INVARIANTS\n{invariants}"
    )


def check_traces(
    traces: Sequence[Sequence[Record]],
    *,
    specs_dir: Path,
    workers: int = 1,
    timeout: float = 300,
) -> TraceCheck:
    """Ask TLC, in one run, whether each trace is a behaviour of ``Raft``.

    A trace the spec cannot follow shows up as a deadlock of ``RaftTrace`` at the
    record the core took and the spec does not allow (:attr:`TraceCheck.failed_trace`,
    :attr:`TraceCheck.failed_step` = records matched, :attr:`TraceCheck.failed_action`
    = the next record's action); a trace the spec follows but whose effects send
    a message before what it depends on is durable, or whose observer history
    breaks a safety invariant, is rejected naming the invariant
    (:attr:`TraceCheck.violated`).

    Raises:
        ValueError: no traces, or an empty one.
        VerificationError: Java or TLC is missing, or TLC could not run the check.
    """
    if not traces or any(not t for t in traces):
        raise ValueError("need at least one non-empty trace")
    return check_trace_module(
        trace_module(traces), specs_dir=specs_dir, workers=workers, timeout=timeout, traces=traces
    )


def check_trace_module(
    module_text: str,
    *,
    specs_dir: Path,
    workers: int = 1,
    timeout: float = 300,
    traces: Sequence[Sequence[Record]] | None = None,
) -> TraceCheck:
    """Like :func:`check_traces`, for the text of a ``RaftTraceData`` module (e.g.
    one written by :func:`write_trace_module` and edited by hand).

    ``traces``, when given, are the traces the module holds; they let the verdict
    name the action that could not be taken and count records.
    """

    return check_record_traces(
        "RaftTrace",
        trace_config(),
        module_text,
        specs_dir=specs_dir,
        workers=workers,
        timeout=timeout,
        traces=traces,
    )
