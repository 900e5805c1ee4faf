"""coordination/raft_monitor.py: exact events and series, step by step (mutation survivors).

The monitor is driven without a network: a stand-in for the core exposes the
fields the monitor reads (``id``, ``role``, ``term``, ``leader_id``,
``commit_index``, ``last_applied``, ``last_index``), and each step is a
:class:`~trio_foundation.runtime.driver.Transition` as the driver's trace hook
hands it. Every assertion is an exact value: a series, an event's measurements
and metadata, or the documented help text of a series.
"""

from __future__ import annotations

from typing import Any

import attrs
import pytest

from trio_foundation.coordination.raft_monitor import MAX_TRACKED, RaftNodeMonitor
from trio_foundation.protocols.effects import ClientRequest, Persist, Reply
from trio_foundation.runtime.driver import Transition
from trio_foundation.telemetry import Event, MetricRegistry, Telemetry


@attrs.define
class _Core:
    id: int = 2
    role: str = "follower"
    term: int = 0
    leader_id: int | None = None
    commit_index: int = 0
    last_applied: int = 0
    last_index: int = 0


def _series(monitor: RaftNodeMonitor) -> dict[tuple[str, tuple[str, ...]], Any]:
    out: dict[tuple[str, tuple[str, ...]], Any] = {}
    for family in monitor.metrics.families():
        for values, series in family.series():
            out[(family.name, values)] = series
    return out


def _value(monitor: RaftNodeMonitor, name: str, *labels: str) -> float:
    return float(_series(monitor)[(name, labels)].value)


def _step(monitor: RaftNodeMonitor, request: Any = None, *effects: Any) -> None:
    monitor.on_step(Transition(0.0, request, tuple(effects), None, 2))


def _watched() -> tuple[RaftNodeMonitor, _Core, list[Event]]:
    telemetry = Telemetry(slow_handler=None)
    events: list[Event] = []
    telemetry.attach("t", ["raft.term_changed", "raft.leader_changed"], events.append)
    monitor = RaftNodeMonitor(telemetry, MetricRegistry(max_series=100))
    core = _Core()
    monitor.watch(core)  # type: ignore[arg-type]
    return monitor, core, events


def test_the_series_are_the_documented_ones() -> None:
    monitor = RaftNodeMonitor()
    families = {f.name: (f.kind, f.help, f.label_names) for f in monitor.metrics.families()}
    assert families == {
        "foundation_raft_role": ("gauge", "1 for the member's current role", ("role",)),
        "foundation_raft_term": ("gauge", "the member's current term", ()),
        "foundation_raft_leader": ("gauge", "the known leader's id (-1: none)", ()),
        "foundation_raft_commit_index": ("gauge", "highest committed index", ()),
        "foundation_raft_applied_index": ("gauge", "highest applied index", ()),
        "foundation_raft_last_index": ("gauge", "index of the last log entry", ()),
        "foundation_raft_proposals": ("counter", "proposals handed to this member's core", ()),
        "foundation_raft_proposals_applied": (
            "counter",
            "proposals answered with their result",
            (),
        ),
        "foundation_raft_reads": ("counter", "linearizable reads answered", ()),
        "foundation_raft_elections": ("counter", "campaigns started", ()),
        "foundation_raft_leader_changes": (
            "counter",
            "new leaders (or new terms of one) learned",
            (),
        ),
        "foundation_raft_records_persisted": ("counter", "Persist records the core emitted", ()),
        "foundation_raft_saves": ("counter", "fsync'd writes to the log", ()),
        "foundation_raft_save_seconds": ("histogram", "duration of a save, fsync included", ()),
    }
    # before any core is watched: no leader known, every role at 0
    assert _value(monitor, "foundation_raft_leader") == -1
    for role in ("follower", "pre_candidate", "candidate", "leader"):
        assert _value(monitor, "foundation_raft_role", role) == 0
    assert _series(monitor)[("foundation_raft_save_seconds", ())].highest == 100.0


def test_watching_sets_the_role_and_refuses_a_second_core() -> None:
    monitor, core, events = _watched()
    assert _value(monitor, "foundation_raft_role", "follower") == 1
    assert _value(monitor, "foundation_raft_elections") == 0
    assert events == []  # term 0, no leader: nothing to report
    with pytest.raises(
        RuntimeError, match=r"^a RaftNodeMonitor watches one member; this one already has one$"
    ):
        monitor.watch(core)  # type: ignore[arg-type]


def test_terms_roles_elections_and_leaders_step_by_step() -> None:
    monitor, core, events = _watched()
    core.role, core.term = "pre_candidate", 0
    _step(monitor)
    assert _value(monitor, "foundation_raft_role", "follower") == 0
    assert _value(monitor, "foundation_raft_role", "pre_candidate") == 1
    assert _value(monitor, "foundation_raft_elections") == 0  # a pre-vote is no campaign
    core.role, core.term = "candidate", 1
    _step(monitor)
    assert _value(monitor, "foundation_raft_elections") == 1
    assert _value(monitor, "foundation_raft_role", "pre_candidate") == 0
    core.term = 2  # the election timed out: a candidate campaigns again
    _step(monitor)
    assert _value(monitor, "foundation_raft_elections") == 2
    _step(monitor)  # same term, same role: no new campaign
    assert _value(monitor, "foundation_raft_elections") == 2
    core.role, core.leader_id = "leader", 2
    core.commit_index, core.last_applied, core.last_index = 5, 4, 6
    _step(monitor)
    assert _value(monitor, "foundation_raft_role", "leader") == 1
    assert _value(monitor, "foundation_raft_role", "candidate") == 0
    assert _value(monitor, "foundation_raft_leader") == 2
    assert _value(monitor, "foundation_raft_term") == 2
    assert _value(monitor, "foundation_raft_commit_index") == 5
    assert _value(monitor, "foundation_raft_applied_index") == 4
    assert _value(monitor, "foundation_raft_last_index") == 6
    assert _value(monitor, "foundation_raft_elections") == 2
    # deposed: a follower of 3 in term 3, then an election with no leader known
    core.role, core.term, core.leader_id = "follower", 3, 3
    _step(monitor)
    core.term, core.leader_id = 4, None
    _step(monitor)
    assert _value(monitor, "foundation_raft_leader") == -1
    core.leader_id = 3  # the same leader again, in a newer term
    _step(monitor)
    _step(monitor)  # nothing new
    assert _value(monitor, "foundation_raft_leader_changes") == 3
    assert [(e.name, dict(e.measurements), dict(e.metadata)) for e in events] == [
        ("raft.term_changed", {"term": 1, "previous": 0}, {"node": 2, "role": "candidate"}),
        ("raft.term_changed", {"term": 2, "previous": 1}, {"node": 2, "role": "candidate"}),
        ("raft.leader_changed", {"term": 2}, {"node": 2, "leader": 2, "previous": None}),
        ("raft.term_changed", {"term": 3, "previous": 2}, {"node": 2, "role": "follower"}),
        ("raft.leader_changed", {"term": 3}, {"node": 2, "leader": 3, "previous": 2}),
        ("raft.term_changed", {"term": 4, "previous": 3}, {"node": 2, "role": "follower"}),
        ("raft.leader_changed", {"term": 4}, {"node": 2, "leader": 3, "previous": 3}),
    ]


def test_requests_are_matched_to_their_replies() -> None:
    monitor, _core, _events = _watched()
    _step(monitor, ClientRequest("p1", "propose", b"x"))
    _step(monitor, ClientRequest("p2", "propose", b"y"))
    _step(monitor, ClientRequest("r1", "read", b"q"))
    _step(monitor, ClientRequest("probe", "read", b""))  # a leadership scope's lease probe
    _step(monitor, ClientRequest("c", "configure", b""))  # neither a proposal nor a read
    assert _value(monitor, "foundation_raft_proposals") == 2
    _step(
        monitor,
        None,
        Persist("log"),
        Reply("p1", b"ok"),
        Reply("p2", None, ok=False),  # refused: not applied
        Reply("r1", b"v"),
        Reply("probe", b""),
        Reply("c", b""),
        Reply("p1", b"again"),  # a second reply to the same key is not counted
        Persist("log"),
    )
    assert _value(monitor, "foundation_raft_proposals_applied") == 1
    assert _value(monitor, "foundation_raft_reads") == 1
    assert _value(monitor, "foundation_raft_records_persisted") == 2


def test_a_read_answered_ok_is_not_a_proposal_applied() -> None:
    monitor, _core, _events = _watched()
    _step(monitor, ClientRequest("r", "read", b"q"))
    _step(monitor, None, Reply("r", b"v"))
    assert _value(monitor, "foundation_raft_reads") == 1
    assert _value(monitor, "foundation_raft_proposals_applied") == 0
    assert _value(monitor, "foundation_raft_proposals") == 0


def test_the_oldest_unanswered_request_is_forgotten_first() -> None:
    monitor, _core, _events = _watched()
    for i in range(MAX_TRACKED + 1):
        _step(monitor, ClientRequest(i, "propose", b"x"))
    _step(monitor, None, Reply(0, b"late"), Reply(1, b"kept"), Reply(MAX_TRACKED, b"newest"))
    assert _value(monitor, "foundation_raft_proposals") == MAX_TRACKED + 1
    assert _value(monitor, "foundation_raft_proposals_applied") == 2  # 0 was forgotten


def test_saves_are_counted_and_timed() -> None:
    monitor = RaftNodeMonitor()
    monitor.on_saved(3, 0.25)
    monitor.on_saved(1, -0.5)  # a clock that stepped back counts as 0
    assert _value(monitor, "foundation_raft_saves") == 2
    histogram = _series(monitor)[("foundation_raft_save_seconds", ())]
    assert histogram.count == 2
    assert histogram.sum == 0.25
    assert histogram.min == 0.0 and histogram.max == 0.25


def test_no_event_is_built_for_nobody() -> None:
    """Without telemetry, or with nobody listening, the monitor only keeps series."""
    quiet = Telemetry(slow_handler=None)
    heard: list[Event] = []
    quiet.attach("other", "raft.something_else", heard.append)
    for telemetry in (None, quiet):
        monitor = RaftNodeMonitor(telemetry)
        core = _Core(role="leader", term=3, leader_id=2)
        monitor.watch(core)  # type: ignore[arg-type]
        assert _value(monitor, "foundation_raft_leader_changes") == 1
        assert _value(monitor, "foundation_raft_term") == 3
    assert heard == []


def test_the_default_registry_holds_a_hundred_series() -> None:
    assert RaftNodeMonitor(Telemetry(slow_handler=None)).metrics.max_series == 100
