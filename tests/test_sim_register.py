"""The ABD register core, alone and in the simulator, and what each broken variant breaks."""

from __future__ import annotations

import random
from typing import Any

import pytest

from trio_foundation.protocols.effects import ClientRequest, Persist, Reply, Send
from trio_foundation.protocols.register import (
    INITIAL_TAG,
    MAX_ATTEMPTS,
    QUERY_ATTEMPTS,
    AbdRegister,
    Query,
    QueryAck,
    RegisterState,
    Store,
    register_factory,
)
from trio_foundation.runtime.sim import ClientOutcome, Simulation
from trio_foundation.verify.nemesis import (
    Crash,
    ExponentialDelay,
    FaultEvent,
    Heal,
    Partition,
    Restart,
    SetDelay,
    SetDuplicateRate,
)


def call(sim: Simulation, node: int, op: str, value: Any = None, *, wait: float = 2.0) -> Any:
    """Submit now; run up to ``wait`` seconds; the outcome or ``None`` if none came."""
    outcomes: list[ClientOutcome] = []
    sim.submit(node, op, value, on_done=outcomes.append)
    sim.run(stop=lambda: bool(outcomes), until=sim.now + wait)
    return outcomes[0] if outcomes else None


def test_write_then_read_anywhere() -> None:
    sim = Simulation(register_factory(), nodes=3, seed=1)
    assert call(sim, 0, "read").value is None
    assert call(sim, 0, "write", 7) == ClientOutcome(1, "ok", 7)
    for node in range(3):
        assert call(sim, node, "read").value == 7


def test_single_node_cluster() -> None:
    sim = Simulation(register_factory(), nodes=1, seed=1)
    call(sim, 0, "write", 3)
    assert call(sim, 0, "read").value == 3


def test_store_is_persisted_before_it_is_acknowledged() -> None:
    core = AbdRegister(1, 3)
    core.on_start(0.0, random.Random(0))
    effects = core.on_message(0.0, 0, Store((0, 1, 1), (1, 0, 1, 1), "v"))
    assert isinstance(effects[0], Persist)
    assert effects[0].data == RegisterState((1, 0, 1, 1), "v", 1)
    assert isinstance(effects[1], Send)
    # A duplicate (or an older tag) changes nothing and is acknowledged again.
    again = core.on_message(0.0, 0, Store((0, 1, 1), (1, 0, 1, 1), "v"))
    assert [type(e) for e in again] == [Send]


def test_crash_restart_keeps_the_register() -> None:
    sim = Simulation(register_factory(), nodes=3, seed=1)
    call(sim, 0, "write", 5)
    for node in range(3):
        sim.apply_fault(Crash(node))
    sim.run()
    for node in range(3):
        sim.apply_fault(Restart(node))
    sim.run(until=sim.now + 1)
    assert call(sim, 2, "read").value == 5
    core = sim.core(0)
    assert isinstance(core, AbdRegister)
    assert core.state.incarnation == 2  # bumped and persisted on each start
    assert sim.persisted(0) == (True, core.snapshot_persistent())


def test_minority_fails_majority_proceeds() -> None:
    sim = Simulation(register_factory(), nodes=3, seed=1)
    sim.apply_fault(Partition([[0], [1, 2]]))
    outcome = call(sim, 0, "write", 1)
    assert (outcome.status, outcome.value) == ("fail", "no quorum")  # never stored anywhere
    assert call(sim, 1, "write", 2).status == "ok"
    assert call(sim, 2, "read").value == 2
    sim.apply_fault(Heal())
    assert call(sim, 0, "read").value == 2


def test_duplicates_are_harmless() -> None:
    sim = Simulation(register_factory(), nodes=3, seed=1)
    sim.apply_fault(SetDuplicateRate(1.0))
    for i in range(5):
        assert call(sim, i % 3, "write", i).status == "ok"
        assert call(sim, (i + 1) % 3, "read").value == i


def test_unknown_op_and_busy_fail() -> None:
    core = AbdRegister(0, 3)
    core.on_start(0.0, random.Random(0))
    assert core.on_client(0.0, ClientRequest(1, "cas", (1, 2))) == [
        Reply(1, "unknown op 'cas'", ok=False)
    ]
    for i in range(64):
        core.on_client(0.0, ClientRequest(i, "read"))
    assert core.on_client(0.0, ClientRequest(99, "read")) == [Reply(99, "busy", ok=False)]


def test_store_phase_is_abandoned_silently_after_max_attempts() -> None:
    core = AbdRegister(0, 3)
    core.on_start(0.0, random.Random(0))
    core.on_client(0.0, ClientRequest(1, "write", 5))
    effects = core.on_message(0.0, 1, QueryAck((0, 1, 1), INITIAL_TAG, None))
    assert any(isinstance(e, Send) and isinstance(e.msg, Store) for e in effects)
    replies = []
    for _ in range(MAX_ATTEMPTS):
        replies += [e for e in core.on_timer(0.0, "retry:1") if isinstance(e, Reply)]
    assert replies == [] and core.pending == 0  # outcome unknown: no reply at all


def test_query_phase_gives_up_with_fail() -> None:
    core = AbdRegister(0, 3)
    core.on_start(0.0, random.Random(0))
    core.on_client(0.0, ClientRequest(1, "write", 5))
    replies = []
    for _ in range(QUERY_ATTEMPTS):
        replies += [e for e in core.on_timer(0.0, "retry:1") if isinstance(e, Reply)]
    assert replies == [Reply(1, "no quorum", ok=False)] and core.pending == 0


def test_restore_rejects_garbage() -> None:
    with pytest.raises(TypeError):
        AbdRegister(0, 3).restore({"tag": 1})
    with pytest.raises(ValueError, match="unknown register variant"):
        register_factory("nope")  # type: ignore[arg-type]


# -------------------------------------------------------------- broken variants


def test_stale_read_answers_locally() -> None:
    core = AbdRegister(0, 3, variant="stale-read")
    core.on_start(0.0, random.Random(0))
    assert core.on_client(0.0, ClientRequest(1, "read")) == [Reply(1, None)]


def test_lost_write_acks_before_any_replica_and_persists_nothing() -> None:
    core = AbdRegister(0, 3, variant="lost-write")
    assert core.on_start(0.0, random.Random(0)) == []
    effects = core.on_client(0.0, ClientRequest(1, "write", 9))
    assert effects[0] == Reply(1, 9)
    assert not any(isinstance(e, Send | Persist) for e in effects)
    assert core.snapshot_persistent() is None


def test_split_brain_writes_in_a_minority() -> None:
    sim = Simulation(register_factory("split-brain"), nodes=3, seed=1)
    sim.apply_fault(Partition([[0], [1, 2]]))
    sim.run(until=1.0)  # heartbeats time out: node 0 thinks it is alone
    assert call(sim, 0, "write", 1).status == "ok"
    assert call(sim, 1, "read").value is None  # the other side never saw it


def test_correct_register_query_goes_to_every_peer() -> None:
    core = AbdRegister(0, 3)
    core.on_start(0.0, random.Random(0))
    effects = core.on_client(0.0, ClientRequest(1, "read"))
    sends = [e for e in effects if isinstance(e, Send)]
    assert sorted(e.to for e in sends) == [1, 2]
    assert all(isinstance(e.msg, Query) for e in sends)
    assert core.state.tag == INITIAL_TAG


def test_seeded_register_runs_are_deterministic() -> None:
    def digest(seed: int) -> str:
        sim = Simulation(
            register_factory(),
            nodes=3,
            seed=seed,
            schedule=[
                FaultEvent(0.0, SetDelay(ExponentialDelay(0.02, 0.2))),
                FaultEvent(0.05, Crash(1)),
                FaultEvent(0.3, Restart(1)),
            ],
        )
        for i in range(10):
            sim.submit(i % 3, "write" if i % 2 else "read", i, at=i * 0.03)
        sim.run(until=3.0)
        return sim.event_log_digest()

    assert digest(1) == digest(1)
    assert digest(1) != digest(2)
