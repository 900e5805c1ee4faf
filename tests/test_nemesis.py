"""Nemesis schedules as data: validation, JSON, the random generator and the strategies."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trio_foundation.verify.nemesis import (
    FAULT_KINDS,
    ClockSkew,
    Crash,
    Cut,
    ExponentialDelay,
    FaultEvent,
    FixedDelay,
    Heal,
    Partition,
    Pause,
    Restart,
    Resume,
    SetDelay,
    SetDropRate,
    SetDuplicateRate,
    SetReorderRate,
    UniformDelay,
    fault_from_json,
    fault_to_json,
    random_schedule,
    schedule_from_json,
    schedule_to_json,
)
from trio_foundation.verify.strategies import fault_schedules, faults, partitions

EVERY_FAULT = (
    Partition([[2, 0], [1]]),
    Cut(0, 1),
    Heal(),
    Crash(1),
    Restart(1),
    Pause(2),
    Resume(2),
    ClockSkew(0, -0.5, 0.05),
    SetDropRate(0.1),
    SetDuplicateRate(0.2),
    SetReorderRate(0.3, 0.25),
    SetDelay(FixedDelay(0.01)),
    SetDelay(UniformDelay(0.01, 0.1)),
    SetDelay(ExponentialDelay(0.02, 0.4)),
)


@pytest.mark.parametrize("fault", EVERY_FAULT, ids=repr)
def test_every_fault_round_trips_through_json(fault: object) -> None:
    obj = fault_to_json(fault)  # type: ignore[arg-type]
    assert fault_from_json(json.loads(json.dumps(obj))) == fault


def test_schedule_json_is_plain_and_sorted() -> None:
    schedule = (FaultEvent(1.5, Heal()), FaultEvent(0.5, Partition([[0], [1, 2]])))
    text = schedule_to_json(schedule)
    assert json.loads(text)[1] == {"at": 0.5, "fault": "partition", "groups": [[0], [1, 2]]}
    assert schedule_from_json(text) == tuple(sorted(schedule, key=lambda ev: ev.at))


def test_partition_groups_are_normalised() -> None:
    assert Partition([[2, 0], [1]]).groups == ((0, 2), (1,))


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: SetDropRate(1.5), "p must be in"),
        (lambda: Partition([[0, 1], [1]]), "two partition groups"),
        (lambda: Crash(-1), "node id"),
        (lambda: ClockSkew(0, 0.0, 1.0), "drift"),
        (lambda: UniformDelay(0.3, 0.1), "high must be >= low"),
        (lambda: FaultEvent(-1.0, Heal()), "at must be"),
        (lambda: fault_from_json({"fault": "meteor"}), "not a fault"),
        (lambda: fault_from_json({"fault": "crash", "nod": 1}), "bad fault"),
        (lambda: schedule_from_json("{}"), "JSON array"),
    ],
)
def test_bad_faults_are_rejected(build: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build()  # type: ignore[operator]


def test_random_schedule_is_deterministic_and_uses_only_the_kinds_asked() -> None:
    a = random_schedule(3, nodes=3, kinds=["partition", "crash"], horizon=10.0)
    assert a == random_schedule(3, nodes=3, kinds=["partition", "crash"], horizon=10.0)
    assert a != random_schedule(4, nodes=3, kinds=["partition", "crash"], horizon=10.0)
    kinds = {ev.fault.kind for ev in a}
    assert kinds <= {"partition", "cut", "heal", "crash", "restart", "resume"}
    assert {"heal", "crash", "restart"} <= kinds
    assert [ev.at for ev in a] == sorted(ev.at for ev in a)
    # Everything is undone at the horizon.
    assert a[-1].at == 10.0
    crashed = {ev.fault.node for ev in a if isinstance(ev.fault, Crash)}
    restarted_at_end = {
        ev.fault.node for ev in a if isinstance(ev.fault, Restart) and ev.at == 10.0
    }
    assert crashed <= restarted_at_end


@pytest.mark.parametrize("kind", FAULT_KINDS)
def test_random_schedule_each_kind(kind: str) -> None:
    schedule = random_schedule(1, nodes=3, kinds=[kind], horizon=5.0, intensity=2.0)
    assert schedule
    assert all(0.0 <= ev.at <= 5.0 for ev in schedule)


def test_random_schedule_rejects_unknown_kinds() -> None:
    with pytest.raises(ValueError, match="unknown fault kind"):
        random_schedule(1, nodes=3, kinds=["meteor"], horizon=1.0)
    with pytest.raises(ValueError, match="horizon"):
        random_schedule(1, nodes=3, kinds=["drop"], horizon=0.0)


@settings(max_examples=50)
@given(fault_schedules(4, max_faults=10))
def test_generated_schedules_are_sorted_and_round_trip(schedule: tuple[FaultEvent, ...]) -> None:
    assert len(schedule) <= 10
    assert [ev.at for ev in schedule] == sorted(ev.at for ev in schedule)
    assert schedule_from_json(schedule_to_json(schedule)) == schedule


@settings(max_examples=30)
@given(partitions(5))
def test_generated_partitions_cover_every_node(partition: Partition) -> None:
    nodes = sorted(n for group in partition.groups for n in group)
    assert nodes == list(range(5)) and len(partition.groups) >= 2


@settings(max_examples=30)
@given(st.data())
def test_fault_strategy_respects_kinds(data: st.DataObject) -> None:
    fault = data.draw(faults(3, kinds=["crash"]))
    assert isinstance(fault, Crash | Restart)


def test_strategies_reject_unknown_kinds() -> None:
    with pytest.raises(ValueError, match="unknown fault kind"):
        faults(3, kinds=["meteor"])
