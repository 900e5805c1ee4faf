"""The ABD register under Hypothesis-chosen seeds and fault schedules.

Safety: every recorded history is linearizable (``register`` model). Reachability:
the searched runs do suffer faults and do complete operations, so the property is
not vacuous. Mutation: the ``split-brain`` variant fails the same property, and
Hypothesis shrinks the failing schedule to a handful of faults.
"""

from __future__ import annotations

from hypothesis import HealthCheck, event, find, given, settings
from hypothesis import strategies as st

from trio_foundation.cli.chaos import run_chaos
from trio_foundation.verify.lincheck import check_history
from trio_foundation.verify.nemesis import FaultEvent, FaultSchedule, schedule_to_json
from trio_foundation.verify.strategies import fault_schedules

OPS = 30
NODES = 3


def verdict(scenario: str, seed: int, schedule: FaultSchedule) -> str:
    run = run_chaos(scenario, seed=seed, ops=OPS, nodes=NODES, schedule=schedule)
    result = check_history(run.history, "register", timeout=10)
    return result.verdict


clusters = st.sampled_from([3, 5]).flatmap(
    lambda n: st.tuples(st.just(n), fault_schedules(n, max_faults=8, horizon=0.8))
)


@settings(deadline=None)
@given(seed=st.integers(0, 2**32 - 1), cluster=clusters)
def test_abd_register_is_linearizable(seed: int, cluster: tuple[int, FaultSchedule]) -> None:
    nodes, schedule = cluster
    run = run_chaos("register", seed=seed, ops=2 * OPS, nodes=nodes, schedule=schedule)
    result = check_history(run.history, "register", timeout=10)
    applied = sum(run.fault_counts.values())
    event(f"faults applied: {applied if applied < 3 else '3 or more'}")
    event(f"ok operations > 0: {run.statuses['ok'] > 0}")
    assert result.verdict == "linearizable", (
        f"save as SCHEDULE.json: {schedule_to_json(schedule)}\nreplay: {run.replay}"
    )


def test_faulty_runs_are_reached() -> None:
    """The searched space includes runs with crashes, partitions and completed operations."""
    crash_run = run_chaos("register", seed=1, ops=4 * OPS, faults=["crash", "partition"])
    assert crash_run.fault_counts.get("crash", 0) > 0
    assert crash_run.statuses["ok"] > 0
    assert check_history(crash_run.history, "register").verdict == "linearizable"


def test_split_brain_is_caught_and_shrinks_to_a_short_schedule() -> None:
    seed = 0
    assert verdict("register-split-brain", seed, ()) == "linearizable"  # needs a fault

    def fails(schedule: FaultSchedule) -> bool:
        return verdict("register-split-brain", seed, schedule) == "not-linearizable"

    shrunk = find(
        fault_schedules(NODES, max_faults=8, horizon=0.6, kinds=["partition", "crash", "pause"]),
        fails,
        settings=settings(
            max_examples=300,
            database=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        ),
    )
    assert 1 <= len(shrunk) <= 3, shrunk
    assert all(isinstance(ev, FaultEvent) for ev in shrunk)
    # The correct register survives the very schedule that breaks the mutant.
    assert verdict("register", seed, shrunk) == "linearizable"
