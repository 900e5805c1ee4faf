"""Contract-net trace validation on the node drivers' trace hook (verify/traces/contract_net.py).

Simulated runs of the real contract-net Manager (contractors that are slow, fail, stay
silent, refuse, propose late, twice or over budget, lose messages, crash and restart;
duplicated and reordered messages; manager crashes) are recorded through the drivers'
trace hook, mapped to ``specs/ContractNetTrace.tla`` records and checked by TLC against
``specs/ContractNet.tla``: runs from fresh seeds are accepted in one TLC run, and so are
runs of the chaos harness (``tests/market_chaos.py``: lying contractors and a stranger);
tampered copies are rejected at the tampered record naming the invariant the tampering
breaks; a manager that pays a revoked award, or counts a proposal of an earlier round, is
rejected at the record where it does, naming ``PaidOnlyForLiveAward`` or
``NoProposalAfterDeadline``. The broken managers are defined here, never in the library.
"""

from __future__ import annotations

import random
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from trio_foundation.protocols.contract_net import InformDone, Manager, Paid
from trio_foundation.protocols.effects import Effect, Persist, Send
from trio_foundation.protocols.ledger import Settle
from trio_foundation.runtime.driver import Start, Transition
from trio_foundation.runtime.sim import Simulation
from trio_foundation.verify.tla_values import Record
from trio_foundation.verify.traces import contract_net as cn

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"
DOC = ROOT / "docs" / "contract-net.md"
sys.path.insert(0, str(Path(__file__).resolve().parent))

import market_chaos as mc  # noqa: E402


class PaysRevokedAward(Manager):  # type: ignore[misc]  # subclassing a @final core on purpose
    """Broken: the late result of a revoked award is paid (and the task marked done)."""

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        self.awarded: dict[tuple[int, int], int] = {}  # (round, node) -> price

    def _evaluate(self, now: float) -> list[Effect]:
        effects: list[Effect] = super()._evaluate(now)
        if self.state == "awarded":
            self.awarded[(self.round, self.winner)] = self.price
        return effects

    def _on_done(self, src: int, msg: InformDone) -> list[Effect]:
        if (msg.round, src) in self.revoked and self.state in ("cfp", "awarded"):
            price = self.awarded.get((msg.round, src), 1)
            self.state, self.winner, self.price = "done", src, price
            settle = Settle(self.config.task, self._info[src].account, price)
            self._unanswered["settle"] = settle
            paid = Paid(msg.task, msg.round, price)
            return [self._persist(), self._to_ledger(settle), Send(src, paid)]
        effects: list[Effect] = super()._on_done(src, msg)
        return effects


class AcceptsLateProposal(Manager):  # type: ignore[misc]
    """Broken: a proposal is counted while a round is open, whatever its round number."""

    def _open_for(self, round_: int) -> bool:
        return self.state == "cfp"


class AwardBeforePersist(Manager):  # type: ignore[misc]
    """Broken: an evaluation's award is emitted before the Persist that records it."""

    def _evaluate(self, now: float) -> list[Effect]:
        effects: list[Effect] = super()._evaluate(now)
        if self.state != "awarded":
            return effects
        return [e for e in effects if not isinstance(e, Persist)] + [
            e for e in effects if isinstance(e, Persist)
        ]


def fresh_seed() -> int:
    return random.SystemRandom().randrange(2**32)


def chaos_run(seed: int, variant: str = "correct") -> tuple[Any, list[Transition], mc.ChaosRun]:
    """A run of the chaos harness, every transition recorded with the trace projection."""
    transitions: list[Transition] = []

    def simulation(factory: Any, **kwargs: Any) -> Simulation:
        hook: Callable[[Transition], None] = kwargs["trace"]

        def both(t: Transition) -> None:
            transitions.append(t)
            hook(t)

        return Simulation(factory, **{**kwargs, "trace": both, "projection": cn.project})

    original = mc.Simulation
    mc.Simulation = simulation  # type: ignore[assignment,misc]
    try:
        chaos = mc.ContractNetChaos(seed, variant)
    finally:
        mc.Simulation = original  # type: ignore[misc]
    return chaos.config, transitions, chaos.run()


# ---------------------------------------------------------------------- the mapping


def test_runs_are_deterministic_per_seed() -> None:
    seed = fresh_seed()
    assert cn.simulated_trace(seed) == cn.simulated_trace(seed)


def test_each_proposal_is_sent_once_before_it_is_received_and_a_result_reported_once() -> None:
    for _ in range(5):
        trace = cn.simulated_trace(fresh_seed())
        sent: set[Any] = set()
        reported: set[Any] = set()
        for r in trace:
            action, msg = r["action"], r["msg"]
            if action == "SendPropose":
                assert msg not in sent
                sent.add(msg)
            elif action == "ReceivePropose":
                assert msg in sent
            elif action == "Report":
                assert msg not in reported
                reported.add(msg)
            elif action == "ReceiveResult":
                assert msg in reported
        assert trace[-1]["phase"] in ("cfp", "awarded", "done", "failed")


def test_transitions_outside_the_mapping_are_refused() -> None:
    config, transitions = cn.simulated_run(fresh_seed(), cn.RunParams(duration=5.0))
    later = next(t for t in transitions if t.node == cn.MANAGER and not isinstance(t.input, Start))
    with pytest.raises(ValueError, match="first transition is not its start"):
        cn.trace_of([later], config)
    bare = Transition(0.0, Start(), (), None, cn.MANAGER)
    with pytest.raises(ValueError, match="without the projection"):
        cn.trace_of([bare], config)


def test_a_run_whose_escrow_is_refused_has_no_trace() -> None:
    """The chaos harness funds the buyer below the budget in about one run in four."""
    for _ in range(60):
        config, transitions, _ = chaos_run(fresh_seed())
        views = [t.state for t in transitions if t.node == mc.CORE]
        if views[-1].phase == "failed" and all(v.round == 0 for v in views):
            assert cn.trace_of(transitions, config) == []
            return
    pytest.fail("60 fresh chaos runs without a refused escrow")


# ---------------------------------------------------------------------- TLC


def _late(trace: list[Record]) -> bool:
    return any(
        r["action"] == "ReceivePropose" and r["msg"]["r"] < r["round"]  # type: ignore[index,operator]
        for r in trace
    )


def _revoked_result(trace: list[Record]) -> bool:
    return any(
        r["action"] == "ReceiveResult" and r["msg"]["r"] < r["round"]  # type: ignore[index,operator]
        for r in trace
    )


REACH: dict[str, Callable[[list[Record]], bool]] = {
    "timeout": lambda t: any(r["action"] == "Timeout" for r in t),
    "failed": lambda t: t[-1]["phase"] == "failed",
    "done": lambda t: t[-1]["phase"] == "done",
    "a proposal of an earlier round": _late,
    "a revoked award's result": _revoked_result,
}


@pytest.mark.tlc
def test_simulated_runs_from_fresh_seeds_are_accepted() -> None:
    """Six fresh runs, plus fresh runs until every state of REACH happened in one of
    them (the rarest, a failed task, in about 9 % of runs; docs/contract-net.md), in one
    TLC run."""
    traces: list[list[Record]] = []
    missing = set(REACH)
    for _ in range(100):
        trace = cn.simulated_trace(fresh_seed())
        hits = {name for name in missing if REACH[name](trace)}
        if len(traces) < 6 or hits:
            traces.append(trace)
            missing -= hits
        if len(traces) >= 6 and not missing:
            break
    assert not missing, missing
    check = cn.check_traces(traces, cn.task_config(), specs_dir=SPECS)
    assert check.accepted, (check.failed_trace, check.failed_step, check.violated)
    # one state per record plus one initial state per run: the trace spec never branches
    assert check.tlc.distinct_states == len(traces) + sum(len(t) for t in traces)


@pytest.mark.tlc
def test_a_run_of_the_chaos_harness_is_accepted() -> None:
    """Lying contractors and a stranger (messages outside the spec's alphabet), manager
    pauses, skewed clocks: a fresh run of tests/market_chaos.py whose escrow was granted."""
    for _ in range(20):
        config, transitions, run = chaos_run(fresh_seed())
        trace = cn.trace_of(transitions, config)
        if trace:
            break
    else:
        pytest.fail("20 fresh chaos runs without an escrow granted")
    assert not run.violations
    check = cn.check_traces([trace], config, specs_dir=SPECS)
    assert check.accepted, (run.replay, check.failed_step, check.violated)


def _winner_changed(r: Record) -> Record:
    return Record({**r, "winner": 2 if r["winner"] != 2 else 3})


def _amount_raised(r: Record) -> Record:
    (payment,) = r["paid"]  # type: ignore[misc]
    raised = Record({**payment, "amt": payment["amt"] + 1})
    return Record({**r, "paid": frozenset({raised})})


TAMPER: dict[str, tuple[Callable[[Record], bool], Callable[[Record], Record], str]] = {
    "an award given to another contractor": (
        lambda r: r["action"] == "Evaluate" and r["phase"] == "awarded",
        _winner_changed,
        "AwardedToValidProposal",
    ),
    "a payment raised": (
        lambda r: r["action"] == "ReceiveResult" and r["phase"] == "done",
        _amount_raised,
        "PaidOnlyForLiveAward",
    ),
}


@pytest.mark.tlc
@pytest.mark.parametrize("name", list(TAMPER))
def test_a_tampered_trace_is_rejected_at_the_tampered_record(name: str) -> None:
    pick, tamper, invariant = TAMPER[name]
    for _ in range(20):
        trace = cn.simulated_trace(fresh_seed())
        k = next((k for k, r in enumerate(trace) if pick(r)), None)
        if k is not None:
            break
    else:
        pytest.fail("20 fresh runs without a record to tamper with")
    trace[k] = tamper(trace[k])
    check = cn.check_traces([trace], cn.task_config(), specs_dir=SPECS)
    assert not check.accepted and check.violated == invariant, check.tlc.error_message
    assert (check.failed_trace, check.failed_step) == (1, k + 1)


def _paid_revoked(trace: list[Record]) -> int | None:
    return next(
        (
            k
            for k, r in enumerate(trace)
            if r["action"] == "ReceiveResult"
            and r["msg"]["r"] < r["round"]  # type: ignore[index,operator]
            and r["phase"] == "done"
        ),
        None,
    )


def _counted_late(trace: list[Record]) -> int | None:
    return next(
        (
            k
            for k, r in enumerate(trace)
            if r["action"] == "ReceivePropose"
            and r["msg"]["r"] < r["round"]  # type: ignore[index,operator]
            and Record(c=r["msg"]["c"], p=r["msg"]["p"]) in r["props"]  # type: ignore[index,operator]
        ),
        None,
    )


def _awarded_first(trace: list[Record]) -> int | None:
    """The first record whose effects send an award before any Persist."""
    for k, r in enumerate(trace):
        kinds = [(e["kind"], e.get("msg")) for e in r["effects"]]  # type: ignore[union-attr,attr-defined]
        for kind, msg in kinds:
            if kind == "persist":
                break
            if msg["what"] == "award":  # type: ignore[index]
                return k
    return None


BROKEN: dict[str, tuple[type[Manager], Callable[[list[Record]], int | None], str]] = {
    "pays a revoked award": (PaysRevokedAward, _paid_revoked, "PaidOnlyForLiveAward"),
    "counts a late proposal": (AcceptsLateProposal, _counted_late, "NoProposalAfterDeadline"),
    "awards before persisting": (AwardBeforePersist, _awarded_first, "SendsDurable"),
}


def _broken_run(name: str, attempts: int) -> tuple[list[Record], int | None]:
    core, reached, _ = BROKEN[name]
    for _ in range(attempts):
        trace = cn.simulated_trace(fresh_seed(), manager_factory=core)
        k = reached(trace)
        if k is not None:
            return trace, k
    return trace, None


@pytest.mark.tlc
@pytest.mark.parametrize("name", list(BROKEN))
def test_a_broken_managers_run_is_rejected_naming_the_invariant(name: str) -> None:
    """Fresh runs of the broken manager until one does what it must not (the mapping
    logs it faithfully); TLC rejects that run at that record, naming the invariant."""
    trace, k = _broken_run(name, 60)  # each reaches its bug in about 15 % of runs
    assert k is not None, f"60 fresh runs without the bug of {name!r}"
    check = cn.check_traces([trace], cn.task_config(), specs_dir=SPECS)
    assert not check.accepted and check.violated == BROKEN[name][2], check.tlc.error_message
    assert (check.failed_trace, check.failed_step) == (1, k + 1)


@pytest.mark.tlc
def test_the_docs_example_runs(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    (code,) = [b for b in blocks if b.startswith("# example: contract-net-trace\n")]
    monkeypatch.chdir(ROOT)
    exec(compile(code, str(DOC), "exec"), {"__name__": "__main__"})
    printed = capsys.readouterr().out
    assert re.fullmatch(r"True 3 \d+\n", printed)
    assert f"prints `{printed.strip()}`" in DOC.read_text(encoding="utf-8")


@pytest.mark.tlc
def test_the_command_line_accepts_runs_and_rejects_an_edited_module(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from trio_foundation.cli import main

    monkeypatch.chdir(ROOT)
    module = tmp_path / "ContractNetTraceData.tla"
    args = ["specs", "trace", "ContractNet", "--traces", "2", "--write", str(module)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert re.search(r"ContractNet: 2 runs \(seeds 0..1\), \d+ records: every trace is a", out)
    text = module.read_text(encoding="utf-8")
    assert 'phase |-> "done"' in text
    edited = text.replace('phase |-> "done"', 'phase |-> "failed"', 1)
    module.write_text(edited, encoding="utf-8")
    assert main(["specs", "trace", "ContractNet", "--module", str(module)]) == 1
    assert re.search(r"REJECTED: trace \d violates \w+ at step \d+", capsys.readouterr().out)


def test_a_flag_of_the_other_modules_runs_is_refused(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from trio_foundation.cli import main

    monkeypatch.chdir(ROOT)
    assert main(["specs", "trace", "ContractNet", "--steps", "10"]) == 2
    assert "--steps does not apply to ContractNet's trace runs" in capsys.readouterr().err


# ---------------------------------------------------------------------- slow: rates

CATCH_RUNS = 20


@pytest.mark.slow
@pytest.mark.tlc
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("name", list(BROKEN))
def test_catch_rate_of_a_broken_manager_on_fresh_runs(
    name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """CATCH_RUNS fresh runs of the broken manager, each checked alone: every run that
    reaches the bug is rejected naming the invariant, every other one accepted."""
    core, reached, invariant = BROKEN[name]
    hits = caught = passed = 0
    for _ in range(CATCH_RUNS):
        trace = cn.simulated_trace(fresh_seed(), manager_factory=core)
        hit = reached(trace) is not None
        check = cn.check_traces([trace], cn.task_config(), specs_dir=SPECS)
        hits += hit
        caught += hit and not check.accepted and check.violated == invariant
        passed += not hit and check.accepted
    with capsys.disabled():
        print(f"\n{name}: {CATCH_RUNS} fresh runs, {hits} reach the bug ({caught} rejected "
              f"naming {invariant}), {CATCH_RUNS - hits} do not ({passed} accepted)")  # fmt: skip
    assert caught == hits and passed == CATCH_RUNS - hits
    assert hits >= CATCH_RUNS // 10


@pytest.mark.slow
@pytest.mark.tlc
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("variant", mc.VARIANTS["contract_net"])
def test_trace_validation_agrees_with_the_chaos_observer(
    variant: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Fresh chaos-harness runs of each manager (the correct one and its broken variants),
    each checked alone: every run whose violation the harness's observer finds is
    rejected, and a run it finds nothing in is accepted unless the trace shows a step
    outside the spec that no invariant names yet (``FollowsSpec``: an unqualified
    proposal counted but not awarded)."""
    runs = rejected = earlier = 0
    for _ in range(12):
        config, transitions, run = chaos_run(fresh_seed(), variant)
        trace = cn.trace_of(transitions, config)
        if not trace:
            continue
        runs += 1
        check = cn.check_traces([trace], config, specs_dir=SPECS)
        rejected += not check.accepted
        if run.violations:
            assert not check.accepted, run.replay
        elif not check.accepted:
            assert check.violated == "FollowsSpec", (run.replay, check.violated)
            earlier += 1
    with capsys.disabled():
        print(
            f"\n{variant}: {runs} chaos runs traced, {rejected} rejected ({earlier} of them "
            "where the observer found nothing)"
        )
    if variant == "correct":
        assert rejected == 0


@pytest.mark.slow
def test_how_often_fresh_runs_reach_the_states_the_tests_need(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The rates behind the CI tests' attempt bounds (no TLC): each state of REACH in
    fresh runs of the correct manager, and each broken manager's bug in its fresh runs."""
    runs = 200
    traces = [cn.simulated_trace(fresh_seed()) for _ in range(runs)]
    rates = {name: sum(reach(t) for t in traces) for name, reach in REACH.items()}
    for name, (core, reached, _) in BROKEN.items():
        rates[f"bug: {name}"] = sum(
            reached(cn.simulated_trace(fresh_seed(), manager_factory=core)) is not None
            for _ in range(runs)
        )
    records = sum(len(t) for t in traces)
    with capsys.disabled():
        print(f"\n{runs} fresh runs each ({records} records for the correct manager): {rates}")
    assert all(n >= runs // 20 for n in rates.values()), rates
