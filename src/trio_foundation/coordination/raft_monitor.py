"""What a Raft member reports: telemetry events and Prometheus-ready metrics.

:class:`RaftNodeMonitor` watches a member from the outside, so the core
(:mod:`trio_foundation.protocols.raft`) stays pure and a member without a monitor
pays nothing: :func:`~trio_foundation.coordination.consensus.open_raft_node`
hands it each step through the driver's trace hook (the input, the effects the
core emitted, then the core's state read after the step) and each durable save
of the persister. It emits these events on a
:class:`~trio_foundation.telemetry.Telemetry` (measurements / metadata):

=======================  ===============================  ==============================
event                    measurements                     metadata
=======================  ===============================  ==============================
``raft.term_changed``    ``term``, ``previous``           ``node``, ``role``
``raft.leader_changed``  ``term``                         ``node``, ``leader``,
                                                          ``previous`` (``None``: none)
=======================  ===============================  ==============================

``raft.leader_changed`` is emitted when this member learns of a leader (itself
included) other than the last one it knew, or the same one in a newer term;
losing track of the leader (an election under way) is not an event.

It keeps these series in a :class:`~trio_foundation.telemetry.MetricRegistry`, a
fixed set (Prometheus adds ``_total`` to counters):

* gauges ``foundation_raft_role{role}`` (1 for the member's role, 0 for the
  other three: ``follower``, ``pre_candidate``, ``candidate``, ``leader``),
  ``foundation_raft_term``, ``foundation_raft_leader`` (the leader's id as this
  member knows it, -1 when unknown), ``foundation_raft_commit_index``,
  ``foundation_raft_applied_index``, ``foundation_raft_last_index``;
* counters ``foundation_raft_proposals`` (proposals handed to this member's
  core: local submits and client requests it serves, refused ones included),
  ``foundation_raft_proposals_applied`` (proposals this core answered with a
  result: committed and applied), ``foundation_raft_reads`` (linearizable reads
  this core answered; the leadership scopes' lease probes are not counted),
  ``foundation_raft_elections`` (campaigns: the member became candidate in a new
  term), ``foundation_raft_leader_changes`` (as ``raft.leader_changed``),
  ``foundation_raft_records_persisted`` (the core's ``Persist`` records),
  ``foundation_raft_saves`` (writes to the log, each ending in an fsync; a burst
  of records is merged into one);
* histogram ``foundation_raft_save_seconds`` (the duration of each save, its
  fsync included).

Requests are matched to their replies by key; at most :data:`MAX_TRACKED`
unanswered requests are remembered (the oldest are forgotten first, and their
late replies not counted), so memory is bounded.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Final, final, get_args

from ..protocols.effects import ClientRequest, Persist, Reply
from ..protocols.raft import RaftNode, Role
from ..runtime.driver import Transition
from ..telemetry import Gauge, MetricRegistry, Telemetry

__all__ = ["MAX_TRACKED", "RaftNodeMonitor"]

MAX_TRACKED: Final = 8192
"""Most unanswered requests the monitor remembers (to count their replies)."""

_ROLES: Final[tuple[str, ...]] = get_args(Role)
_LEASE_PROBE: Final = b""  # the query of a leadership scope's ReadIndex round


@final
class RaftNodeMonitor:
    """Telemetry events and metrics of one Raft member (see the module docstring).

    Pass it to :func:`~trio_foundation.coordination.consensus.open_raft_node`
    (``monitor=``); one monitor watches one member.

    Args:
        telemetry: where events go (``None``: none are emitted).
        metrics: where series are kept (``None``: a private registry; read
            :attr:`metrics`).

    Raises:
        ValueError: the registry already holds one of the metric names with
            another kind.
    """

    def __init__(
        self, telemetry: Telemetry | None = None, metrics: MetricRegistry | None = None
    ) -> None:
        self.telemetry = telemetry
        self.metrics = metrics if metrics is not None else MetricRegistry(max_series=100)
        m = self.metrics
        role = m.gauge("foundation_raft_role", "1 for the member's current role", ["role"])
        self._roles: dict[str, Gauge] = {r: role.labels(r) for r in _ROLES}
        self._term = m.gauge("foundation_raft_term", "the member's current term").value
        self._leader = m.gauge("foundation_raft_leader", "the known leader's id (-1: none)").value
        self._leader.set(-1)
        self._commit = m.gauge("foundation_raft_commit_index", "highest committed index").value
        self._applied = m.gauge("foundation_raft_applied_index", "highest applied index").value
        self._last = m.gauge("foundation_raft_last_index", "index of the last log entry").value
        self._proposals = m.counter(
            "foundation_raft_proposals", "proposals handed to this member's core"
        ).value
        self._proposals_applied = m.counter(
            "foundation_raft_proposals_applied", "proposals answered with their result"
        ).value
        self._reads = m.counter("foundation_raft_reads", "linearizable reads answered").value
        self._elections = m.counter("foundation_raft_elections", "campaigns started").value
        self._leader_changes = m.counter(
            "foundation_raft_leader_changes", "new leaders (or new terms of one) learned"
        ).value
        self._records = m.counter(
            "foundation_raft_records_persisted", "Persist records the core emitted"
        ).value
        self._saves = m.counter("foundation_raft_saves", "fsync'd writes to the log").value
        self._save_seconds = m.histogram(
            "foundation_raft_save_seconds", "duration of a save, fsync included", highest=100.0
        ).value
        self._core: RaftNode | None = None
        self._node = -1
        self._role = ""
        self._term_seen = 0
        #: the last (term, leader) learned; Invariant: leader is not None
        self._known: tuple[int, int] | None = None
        # Invariant: at most MAX_TRACKED keys, oldest first; value: "propose" or "read".
        self._pending: OrderedDict[Any, str] = OrderedDict()

    # ------------------------------------------------------------------ hooks

    def watch(self, core: RaftNode) -> None:
        """Start watching ``core`` (called once, before its driver starts).

        Raises:
            RuntimeError: the monitor already watches a core.
        """
        if self._core is not None:
            raise RuntimeError("a RaftNodeMonitor watches one member; this one already has one")
        self._core = core
        self._node = core.id
        self._refresh(core)

    def on_step(self, transition: Transition) -> None:
        """The driver's trace hook: count the step's requests, replies and records."""
        request = transition.input
        if isinstance(request, ClientRequest):
            if request.op == "propose":
                self._proposals.inc()
                self._track(request.client, "propose")
            elif request.op == "read" and request.value != _LEASE_PROBE:
                self._track(request.client, "read")
        for effect in transition.effects:
            if isinstance(effect, Persist):
                self._records.inc()
            elif isinstance(effect, Reply) and self._pending:
                op = self._pending.pop(effect.client, None)
                if op is not None and effect.ok:
                    (self._proposals_applied if op == "propose" else self._reads).inc()
        if self._core is not None:
            self._refresh(self._core)

    def on_saved(self, records: int, seconds: float) -> None:
        """Report a save of ``records`` merged records that took ``seconds`` (fsync included)."""
        self._saves.inc()
        self._save_seconds.observe(max(seconds, 0.0))

    # ------------------------------------------------------------------ helpers

    def _track(self, key: Any, op: str) -> None:
        self._pending[key] = op
        if len(self._pending) > MAX_TRACKED:
            self._pending.popitem(last=False)

    def _emit(self, event: str, measurements: dict[str, float], metadata: dict[str, Any]) -> None:
        if self.telemetry is not None and self.telemetry.listening(event):
            self.telemetry.emit(event, measurements, metadata)

    def _refresh(self, core: RaftNode) -> None:
        role, term, leader = core.role, core.term, core.leader_id
        if role != self._role:
            if self._role:
                self._roles[self._role].set(0)
            self._roles[role].set(1)
            if role == "candidate":
                self._elections.inc()
            self._role = role
        elif role == "candidate" and term != self._term_seen:
            self._elections.inc()  # a candidate whose election timed out campaigns again
        if term != self._term_seen:
            self._emit(
                "raft.term_changed",
                {"term": term, "previous": self._term_seen},
                {"node": self._node, "role": role},
            )
            self._term_seen = term
            self._term.set(term)
        if leader is not None and self._known != (term, leader):
            previous = None if self._known is None else self._known[1]
            self._leader_changes.inc()
            self._emit(
                "raft.leader_changed",
                {"term": term},
                {"node": self._node, "leader": leader, "previous": previous},
            )
            self._known = (term, leader)
        self._leader.set(-1 if leader is None else leader)
        self._commit.set(core.commit_index)
        self._applied.set(core.last_applied)
        self._last.set(core.last_index)
