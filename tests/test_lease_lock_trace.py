"""Lease lock trace validation on the node drivers' trace hook (verify/traces/lease_lock.py).

The trace cluster runs every core on a ``NodeDriver``; the recorded transitions
are mapped (``effects_of``) to the server's persist/send effects in the order
the core emitted them, and ``specs/LeaseLockTrace.tla`` replays them checking
``GrantsDurable``: a core that sends a grant before persisting its token is
rejected, although the driver would have executed its ``Persist`` first.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from lease_lock_mutants import SendBeforePersistServer

from trio_foundation.protocols.effects import Persist, Send
from trio_foundation.protocols.lease_lock import Granted, LockServer, ServerDurable
from trio_foundation.runtime.driver import Transition
from trio_foundation.runtime.transport import Envelope
from trio_foundation.verify.tla_values import Record
from trio_foundation.verify.traces.lease_lock import (
    LeaseLockCluster,
    SpecParams,
    check_traces,
    effects_of,
    random_trace,
)

SPECS = Path(__file__).resolve().parent.parent / "specs"
PARAMS = SpecParams(ttl=9, d=2, delta=1, clients=2)


def broken_cluster() -> LeaseLockCluster:
    return LeaseLockCluster(
        PARAMS, server_factory=lambda node, p: SendBeforePersistServer(node, max_ttl=p.ttl)
    )


def test_the_mapping_keeps_the_emitted_order_of_the_server_effects() -> None:
    granted = Granted((1, 1), 4, 9.0)
    step = Transition(
        0.0, Envelope(1, None), (Send(1, granted), Persist(ServerDurable(4, 9.0))), None, 0
    )
    assert effects_of(step) == (
        Record(kind="send", token=4),
        Record(kind="persist", token=4),
    )
    assert effects_of(Transition(0.0, None, (Send(0, granted),), None, 1)) == ()


def test_the_cluster_records_every_transition_through_the_drivers() -> None:
    cluster = LeaseLockCluster(PARAMS)
    started = cluster.take_transitions()
    assert sorted(t.node for t in started) == [0, 1, 2, 3]  # server, 2 clients, resource
    assert cluster.client_acquire(1)
    (acquire,) = cluster.take_transitions()
    assert acquire.node == 1 and acquire.input.op == "acquire"
    cluster.deliver(0)
    (grant,) = cluster.take_transitions()
    assert grant.node == 0
    assert [type(e) for e in grant.effects] == [Persist, Send]  # the correct core's order
    assert effects_of(grant) == (Record(kind="persist", token=1), Record(kind="send", token=1))


def test_the_broken_core_emits_send_first_but_the_driver_persists_first() -> None:
    cluster = broken_cluster()
    cluster.client_acquire(1)
    cluster.take_transitions()
    cluster.deliver(0)
    (grant,) = cluster.take_transitions()
    assert [type(e) for e in grant.effects] == [Send, Persist]  # recorded as emitted
    assert isinstance(cluster.server, LockServer)
    assert cluster.server.token == 1


@pytest.mark.tlc
def test_traces_of_the_correct_core_are_accepted() -> None:
    traces = [random_trace(seed, 60, PARAMS) for seed in range(6)]
    assert sum(1 for t in traces for s in t for e in s.effects if e["kind"] == "send") >= 6
    check = check_traces(traces, PARAMS, specs_dir=SPECS)
    assert check.accepted, check.tlc.error_message


@pytest.mark.tlc
@pytest.mark.timeout(600)
def test_a_core_that_sends_before_persisting_is_rejected_on_fresh_seeds() -> None:
    """Each run: a trace from a fresh random seed; TLC must reject it naming GrantsDurable."""
    fresh = random.SystemRandom()
    runs, caught = 3, 0
    for _ in range(runs):
        seed = fresh.randrange(2**32)
        trace = random_trace(seed, 40, PARAMS, broken_cluster())
        if not any(step.action == "ServerOnAcquire" for step in trace):
            continue  # no grant, nothing to order (counted as a miss)
        check = check_traces([trace], PARAMS, specs_dir=SPECS)
        if not check.accepted and check.violated == "GrantsDurable":
            caught += 1
    assert caught == runs
