"""specs/LeaseLock.tla under TLC: every invariant has a mutant in specs/broken/, and runs
of the real cores are behaviours of the spec. The configs that must hold are checked by
CI's project-wide ``foundation specs check`` (tests/test_cli_specs.py); here under ``slow``.

The mutants (each caught naming the invariant its config declares) and the
reachability configs of specs/reach/ are run once, by CI's ``foundation specs check
--mutants --reach`` (tests/test_cli_specs.py), which checks each config's result."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from lease_lock_mutants import NoDriftClient

from trio_foundation.verify.lease_lock_trace import (
    LeaseLockCluster,
    SpecParams,
    TraceStep,
    check_traces,
    random_trace,
)
from trio_foundation.verify.tla_values import Record
from trio_foundation.verify.tlc import TLCStatus, run_tlc

pytestmark = pytest.mark.tlc

SPECS = Path(__file__).resolve().parent.parent / "specs"
SPEC = SPECS / "LeaseLock.tla"
# Traces use a longer TTL than the model-checked configuration so that leases
# live long enough to be renewed and written under (validity 3).
TRACE_PARAMS = SpecParams(ttl=9, d=2, delta=1, clients=2)


CONFIGS = sorted(SPECS.glob("LeaseLock.cfg")) + sorted(
    c for c in SPECS.glob("LeaseLock.*.cfg") if not c.name.startswith("LeaseLock.full")
)
FULL = sorted(SPECS.glob("LeaseLock.full*.cfg"))
MUTANTS = sorted((SPECS / "broken").glob("LeaseLock.*.cfg"))
INVARIANTS = (
    "MutualExclusion",
    "IntervalsFollowGrants",
    "FencingMonotonic",
    "AcceptedWritesInLeaseOrder",
    "AcceptedWritesFromHolders",
    "TokenBound",
)


def _declared(config: Path) -> list[str]:
    return re.findall(r"^\\\* expect-violation: (\w+)", config.read_text(), re.MULTILINE)


def test_every_invariant_has_a_mutant() -> None:
    declared = {name for config in MUTANTS for name in _declared(config)}
    assert set(INVARIANTS) <= declared


# CI checks these configs once, in tests/test_cli_specs.py's project-wide run.
@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("config", CONFIGS, ids=[c.name for c in CONFIGS])
def test_spec_holds(config: Path) -> None:
    result = run_tlc(SPEC, config, workers=2, timeout=880)
    assert result.status is TLCStatus.OK, result.error_message
    assert result.distinct_states > 10_000
    assert result.depth > 10


@pytest.mark.slow
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("config", FULL, ids=[c.name for c in FULL])
def test_full_config_holds(config: Path) -> None:
    """The larger configurations, outside CI (see docs/lease-lock.md)."""
    result = run_tlc(SPEC, config, workers=2, timeout=1780)
    assert result.status is TLCStatus.OK, result.error_message


@pytest.fixture(scope="module")
def traces() -> list[list[TraceStep]]:
    return [random_trace(seed, 80, TRACE_PARAMS) for seed in range(12)]


def test_runs_of_the_implementation_are_behaviours_of_the_spec(
    traces: list[list[TraceStep]],
) -> None:
    actions = {step.action for trace in traces for step in trace}
    # the traces exercise the protocol, not just its idle states
    assert {"ClientOnGranted", "ClientOnRenewed", "ResourceOnWrite", "ClientCrash"} <= actions
    check = check_traces(traces, TRACE_PARAMS, specs_dir=SPECS, workers=1)
    assert check.accepted, check.tlc.error_message
    assert check.traces == 12
    assert check.steps == sum(len(t) for t in traces)


def _tamper(trace: list[TraceStep], position: int) -> list[TraceStep]:
    step = trace[position]
    state = dict(step.state)
    state["srvToken"] = int(state["srvToken"]) + 7  # type: ignore[call-overload]
    return [*trace[:position], TraceStep(step.action, Record(state)), *trace[position + 1 :]]


def test_a_tampered_trace_is_rejected_at_the_tampered_step(
    traces: list[list[TraceStep]],
) -> None:
    tampered = _tamper(traces[3], 40)
    check = check_traces([traces[0], tampered], TRACE_PARAMS, specs_dir=SPECS)
    assert not check.accepted
    assert check.tlc.status is TLCStatus.DEADLOCK
    assert check.failed_trace == 2
    assert check.failed_step == 40  # the last state matched is the one before


def test_a_trace_of_a_broken_core_is_rejected() -> None:
    """A client that ignores the drift bound holds leases longer than the spec allows."""

    def broken() -> LeaseLockCluster:
        return LeaseLockCluster(
            TRACE_PARAMS,
            client_factory=lambda node, p: NoDriftClient(node, server=0, max_drift=p.max_drift),
        )

    traces = [random_trace(seed, 60, TRACE_PARAMS, broken()) for seed in range(4)]
    assert any(step.action == "ClientOnGranted" for t in traces for step in t)
    check = check_traces(traces, TRACE_PARAMS, specs_dir=SPECS)
    assert not check.accepted
    assert check.failed_action == "ClientOnGranted"
