"""Ledger trace validation on the node drivers' trace hook (verify/traces/ledger.py).

Simulated runs of the real ``Ledger`` behind the real ``LedgerNode`` (made durable by
``DurableLedgerNode``) — clients minting, burning, transferring, holding, settling and
releasing, valid or not, retrying; lost, duplicated and reordered messages; crashes of
the ledger node restored from its last Persist — are recorded through the drivers'
trace hook, mapped to ``specs/LedgerTrace.tla`` records and checked by TLC against
``specs/Ledger.tla``: fresh runs are accepted in one TLC run (the default selection's
one TLC run); a tampered copy is rejected at the tampered record; ledgers that create
credit in a transfer, settle a released hold, apply a keyed retry again or answer
before persisting — defined here, never in the library — are rejected at the bug's
record naming the invariant; the bare ``LedgerNode`` is rejected at its first ``Ok``
(nothing durable); a self-transfer (where the core and the spec disagreed: the core
now refuses it) and a reused hold id (where they still do, docs/economy.md) are pinned
by hand-driven runs.
"""

from __future__ import annotations

import itertools
import os
import random
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from trio_foundation.protocols.auction import LedgerAnswer, LedgerRequest
from trio_foundation.protocols.effects import Effect, Persist, Send
from trio_foundation.protocols.ledger import (
    Command,
    Hold,
    Ledger,
    LedgerConfig,
    Mint,
    Open,
    Release,
    Settle,
    Transfer,
)
from trio_foundation.runtime.driver import Start, Transition
from trio_foundation.runtime.transport import Envelope
from trio_foundation.verify.tla_values import Record
from trio_foundation.verify.traces import ledger as lt

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"
DOC = ROOT / "docs" / "economy.md"


def fresh_seed() -> int:
    return random.SystemRandom().randrange(2**32)


# ---------------------------------------------------------------------- broken ledgers


class _Broken:
    """A durable ledger node whose ``on_message`` a subclass bends."""

    def __init__(self, ledger: Ledger) -> None:
        self.inner = lt.DurableLedgerNode(ledger)

    @property
    def ledger(self) -> Ledger:
        return self.inner.ledger

    def on_start(self, now: float, rng: random.Random) -> list[Effect]:
        return self.inner.on_start(now, rng)

    def on_message(self, now: float, src: int, msg: Any) -> list[Effect]:
        return self.inner.on_message(now, src, msg)

    def on_timer(self, now: float, name: str) -> list[Effect]:
        return []

    def on_client(self, now: float, request: Any) -> list[Effect]:
        return self.inner.on_client(now, request)

    def snapshot_persistent(self) -> Any:
        return self.inner.snapshot_persistent()

    def restore(self, snapshot: Any) -> None:
        self.inner.restore(snapshot)


class TransferCreatesCredit(_Broken):
    """Broken: a funded transfer credits the payee without debiting the payer (it is
    applied as a mint to the payee)."""

    def on_message(self, now: float, src: int, msg: Any) -> list[Effect]:
        c = getattr(msg, "command", None)
        balances = self.ledger.balances()
        if (
            isinstance(c, Transfer)
            and type(c.amount) is int
            and 1 <= c.amount <= balances.get(c.src, -1)
            and c.dst in balances
            and c.src != c.dst
        ):
            effects = self.inner.on_message(
                now, src, LedgerRequest(Mint(lt.AUTHORITY, c.dst, c.amount))
            )
            return [
                Send(e.to, LedgerAnswer(c, e.msg.result)) if isinstance(e, Send) else e
                for e in effects
            ]
        return self.inner.on_message(now, src, msg)


class SettlesReleasedHold(_Broken):
    """Broken: a settle of a hold it released re-opens the hold and settles it. The hold's
    credits are found anew (a mint, then a hold under the same id: every journal entry is
    one the ledger can fold and restore), so the settle pays out credits the release
    already gave back."""

    def __init__(self, ledger: Ledger) -> None:
        super().__init__(ledger)
        self.released: dict[str, tuple[str, int]] = {}

    def on_message(self, now: float, src: int, msg: Any) -> list[Effect]:
        c = getattr(msg, "command", None)
        ledger = self.ledger
        if isinstance(c, Release) and c.hold in ledger.holds():
            self.released[c.hold] = ledger.holds()[c.hold]
        elif (
            isinstance(c, Settle)
            and c.hold in self.released
            and c.hold not in ledger.holds()
            and c.payee in ledger.balances()
            and c.amount <= self.released[c.hold][1]
        ):
            account, amount = self.released.pop(c.hold)
            ledger._closed.pop(c.hold, None)
            ledger.apply(Mint(lt.AUTHORITY, account, amount))
            ledger.apply(Hold(c.hold, account, amount))
        return self.inner.on_message(now, src, msg)


class ForgetsKeys(_Broken):
    """Broken: a keyed transfer is applied as an unkeyed one (a retry applies again)."""

    def on_message(self, now: float, src: int, msg: Any) -> list[Effect]:
        c = getattr(msg, "command", None)
        if not (isinstance(c, Transfer) and c.key):
            return self.inner.on_message(now, src, msg)
        effects = self.inner.on_message(now, src, LedgerRequest(Transfer(c.src, c.dst, c.amount)))
        return [
            Send(e.to, LedgerAnswer(c, e.msg.result)) if isinstance(e, Send) else e for e in effects
        ]


class AnswersBeforePersist(_Broken):
    """Broken: the answer is emitted before the Persist of the entry it reports."""

    def on_message(self, now: float, src: int, msg: Any) -> list[Effect]:
        effects = self.inner.on_message(now, src, msg)
        return [e for e in effects if not isinstance(e, Persist)] + [
            e for e in effects if isinstance(e, Persist)
        ]


def _first(trace: list[Record], pick: Callable[[int, Record], bool]) -> int | None:
    return next((k for k, r in enumerate(trace) if pick(k, r)), None)


def _created_credit(trace: list[Record]) -> int | None:
    return _first(trace, lambda _k, r: r["action"] == "Transfer")


def _settled_released(trace: list[Record]) -> int | None:
    def pick(k: int, r: Record) -> bool:
        return r["action"] == "Settle" and any(
            x["action"] == "Release" and x["h"] == r["h"] for x in trace[:k]
        )

    return _first(trace, pick)


def _keyed_twice(trace: list[Record]) -> int | None:
    def pick(k: int, r: Record) -> bool:
        return (
            r["action"] == "Transfer"
            and r["key"] != ""
            and any(x["action"] == "Transfer" and x["key"] == r["key"] for x in trace[:k])
        )

    return _first(trace, pick)


def _answered_early(trace: list[Record]) -> int | None:
    """The first record that sends an Ok whose entry is not durable yet."""
    stored = 0
    for k, r in enumerate(trace):
        for e in r["effects"]:  # type: ignore[union-attr]
            if e["kind"] == "persist":  # type: ignore[index]
                stored = e["seq"]  # type: ignore[index]
            elif e["ok"] and e["seq"] > stored:  # type: ignore[index,operator]
                return k
    return None


BROKEN: dict[str, tuple[type[_Broken], Callable[[list[Record]], int | None], str]] = {
    "creates credit in a transfer": (TransferCreatesCredit, _created_credit, "Conservation"),
    "settles a released hold": (SettlesReleasedHold, _settled_released, "HoldsSettledOnce"),
    "applies a keyed retry again": (ForgetsKeys, _keyed_twice, "KeyedOnce"),
    "answers before persisting": (AnswersBeforePersist, _answered_early, "AnswersDurable"),
}


# ---------------------------------------------------------------------- the mapping


def _restarted(transitions: list[Transition]) -> bool:
    return sum(1 for t in transitions if t.node == lt.LEDGER and isinstance(t.input, Start)) > 1


def test_runs_are_deterministic_per_seed() -> None:
    seed = fresh_seed()
    assert lt.simulated_trace(seed) == lt.simulated_trace(seed)


def test_a_restarted_node_comes_back_with_the_state_it_answered() -> None:
    """The durable node's restart restores its last Persist: no Ignored record changes
    the logged state, and every record's effects persist before they answer Ok."""
    for _ in range(20):
        transitions = lt.simulated_run(fresh_seed())
        if _restarted(transitions):
            break
    else:
        pytest.fail("20 fresh runs without a restart of the ledger node")
    trace = lt.trace_of(transitions)
    # the command's own fields (key: its idempotency key) are not state
    state = [k for k in trace[0] if k not in ("action", "a", "b", "n", "h", "key", "effects")]
    for before, r in itertools.pairwise(trace):
        if r["action"] in ("Ignored", "Read", "RefuseOverdraft"):
            assert all(r[k] == before[k] for k in state), r
    assert _answered_early(trace) is None


def test_transitions_outside_the_mapping_are_refused() -> None:
    transitions = lt.simulated_run(fresh_seed(), lt.RunParams(duration=3.0))
    later = next(t for t in transitions if t.node == lt.LEDGER and not isinstance(t.input, Start))
    with pytest.raises(ValueError, match="first transition is not its start"):
        lt.trace_of([later])
    bare = Transition(0.0, Start(), (), None, lt.LEDGER)
    with pytest.raises(ValueError, match="without the projection"):
        lt.trace_of([bare])
    minted = Ledger(lt.ledger_config())
    for account in lt.ACCOUNTS:
        minted.apply(Open(account))
    minted.apply(Mint(lt.AUTHORITY, "alice", 3))
    start = Transition(0.0, Start(), (), lt.project(lt.DurableLedgerNode(minted)), lt.LEDGER)
    with pytest.raises(ValueError, match="did not start with"):
        lt.trace_of([start])


def test_run_params_refuse_bad_values() -> None:
    with pytest.raises(ValueError, match="duration must be > 0"):
        lt.RunParams(duration=0)
    with pytest.raises(ValueError, match="loss must be in"):
        lt.RunParams(loss=1.5)
    with pytest.raises(ValueError, match="ops must be >= 0"):
        lt.RunParams(ops=-1)


# ---------------------------------------------------------------------- TLC

REACH: dict[str, Callable[[list[Transition], list[Record]], bool]] = {
    "an overdraft refused": lambda _t, tr: any(r["action"] == "RefuseOverdraft" for r in tr),
    "a hold settled": lambda _t, tr: any(r["action"] == "Settle" for r in tr),
    "a hold released": lambda _t, tr: any(r["action"] == "Release" for r in tr),
    "a checkpoint": lambda _t, tr: any(r["action"] == "Checkpoint" for r in tr),
    "a balance read": lambda _t, tr: any(r["action"] == "Read" for r in tr),
    "a restart": lambda t, _tr: _restarted(t),
}
SMALL = lt.RunParams(duration=10.0, ops=12, reads=5)


@pytest.mark.tlc
def test_simulated_runs_from_fresh_seeds_are_accepted() -> None:
    """Two fresh runs, plus fresh runs until every state of REACH happened in one of
    them, in one TLC run."""
    traces: list[list[Record]] = []
    missing = set(REACH)
    for _ in range(40):
        transitions = lt.simulated_run(fresh_seed(), SMALL)
        trace = lt.trace_of(transitions)
        hits = {name for name in missing if REACH[name](transitions, trace)}
        if trace and (len(traces) < 2 or hits):
            traces.append(trace)
            missing -= hits
        if len(traces) >= 2 and not missing:
            break
    assert not missing, missing
    check = lt.check_traces(traces, specs_dir=SPECS)
    assert check.accepted, (check.failed_trace, check.failed_step, check.violated)
    # one state per record plus one initial state per run: the trace spec never branches
    assert check.tlc.distinct_states == len(traces) + sum(len(t) for t in traces)


def _raised(r: Record) -> Record:
    bal = r["bal"]
    assert isinstance(bal, Record)
    return Record({**r, "bal": Record({**bal, r["b"]: bal[r["b"]] + 1})})  # type: ignore[index,operator]


@pytest.mark.slow
@pytest.mark.tlc
def test_a_tampered_trace_is_rejected_at_the_tampered_record() -> None:
    """A payee's balance raised by one at a transfer: the record is taken with its
    logged state and breaks Conservation there."""
    for _ in range(20):
        trace = lt.simulated_trace(fresh_seed(), SMALL)
        k = _first(trace, lambda _k, r: r["action"] == "Transfer")
        if k is not None:
            break
    else:
        pytest.fail("20 fresh runs without a transfer")
    trace[k] = _raised(trace[k])
    check = lt.check_traces([trace], specs_dir=SPECS)
    assert not check.accepted and check.violated == "Conservation", check.tlc.error_message
    assert (check.failed_trace, check.failed_step, check.failed_action) == (1, k + 1, "Transfer")


def _broken_run(name: str, attempts: int) -> tuple[list[Record], int | None]:
    core, reached, _ = BROKEN[name]
    trace: list[Record] = []
    for _ in range(attempts):
        trace = lt.simulated_trace(fresh_seed(), node_factory=core)
        k = reached(trace)
        if k is not None:
            return trace, k
    return trace, None


@pytest.mark.slow
@pytest.mark.tlc
@pytest.mark.parametrize("name", list(BROKEN))
def test_a_broken_ledgers_run_is_rejected_naming_the_invariant(name: str) -> None:
    """Fresh runs of the broken ledger until one does what it must not; TLC rejects that
    run at that record, naming the invariant."""
    trace, k = _broken_run(name, 40)
    assert k is not None, f"40 fresh runs without the bug of {name!r}"
    check = lt.check_traces([trace], specs_dir=SPECS)
    assert not check.accepted and check.violated == BROKEN[name][2], check.tlc.error_message
    assert (check.failed_trace, check.failed_step) == (1, k + 1)


@pytest.mark.slow
@pytest.mark.tlc
def test_the_bare_ledger_node_is_rejected_at_its_first_ok() -> None:
    """LedgerNode persists nothing: its first Ok answer is not durable."""
    trace = lt.simulated_trace(fresh_seed(), lt.RunParams(durable=False))
    k = _answered_early(trace)
    assert k is not None
    check = lt.check_traces([trace], specs_dir=SPECS)
    assert not check.accepted and check.violated == "AnswersDurable", check.tlc.error_message
    assert (check.failed_trace, check.failed_step) == (1, k + 1)


CATCH_RUNS = int(os.environ.get("CATCH_RUNS", "20"))


@pytest.mark.slow
@pytest.mark.tlc
@pytest.mark.timeout(3600)
@pytest.mark.parametrize("name", list(BROKEN))
def test_catch_rate_of_a_broken_ledger_on_fresh_runs(
    name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """CATCH_RUNS fresh runs of the broken ledger, each checked alone: every run that
    reaches the bug is rejected at the bug's record naming the invariant, every other
    one accepted."""
    core, reached, invariant = BROKEN[name]
    hits = caught = passed = 0
    for _ in range(CATCH_RUNS):
        trace = lt.simulated_trace(fresh_seed(), node_factory=core)
        k = reached(trace)
        check = lt.check_traces([trace], specs_dir=SPECS)
        hits += k is not None
        caught += (
            k is not None
            and not check.accepted
            and check.violated == invariant
            and check.failed_step == k + 1
        )
        passed += k is None and check.accepted
    with capsys.disabled():
        print(
            f"\n{name}: {CATCH_RUNS} fresh runs, {hits} reach the bug ({caught} rejected at "
            f"its record naming {invariant}), {CATCH_RUNS - hits} do not ({passed} accepted)"
        )
    assert caught == hits and passed == CATCH_RUNS - hits
    assert hits >= CATCH_RUNS // 5


@pytest.mark.slow
def test_how_often_fresh_runs_reach_the_states_the_tests_need(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The rates behind the tests' attempt bounds (no TLC): each state of REACH in fresh
    runs of SMALL, and each broken ledger's bug in its fresh runs."""
    runs = 200
    rates: dict[str, int] = dict.fromkeys(REACH, 0)
    records = 0
    for _ in range(runs):
        transitions = lt.simulated_run(fresh_seed(), SMALL)
        trace = lt.trace_of(transitions)
        records += len(trace)
        for name, reach in REACH.items():
            rates[name] += reach(transitions, trace)
    for name, (core, reached, _) in BROKEN.items():
        rates[f"bug: {name}"] = sum(
            reached(lt.simulated_trace(fresh_seed(), node_factory=core)) is not None
            for _ in range(runs)
        )
    with capsys.disabled():
        print(f"\n{runs} fresh runs each ({records} records in the SMALL runs): {rates}")
    assert all(n >= runs // 20 for n in rates.values()), rates


# ---------------------------------------------------------------------- where they disagree


def _driven(commands: list[Command], config: LedgerConfig | None = None) -> list[Transition]:
    """The transitions of a durable ledger node handed ``commands`` one by one (client 2)."""
    ledger = Ledger(config or lt.ledger_config())
    for account in lt.ACCOUNTS:
        ledger.apply(Open(account))
    node = lt.DurableLedgerNode(ledger)
    out = [
        Transition(0.0, Start(), tuple(node.on_start(0.0, random.Random(0))), lt.project(node), 0)
    ]
    for k, command in enumerate(commands, 1):
        msg = LedgerRequest(command)
        effects = tuple(node.on_message(float(k), 2, msg))
        out.append(Transition(float(k), Envelope(2, msg), effects, lt.project(node), 0))
    return out


@pytest.mark.slow
@pytest.mark.tlc
def test_a_self_transfer_is_refused_as_the_spec_requires() -> None:
    """Ledger.tla's Transfer requires a # b. The core applied Transfer(a, a, n) as a
    journaled no-op until this trace validation found the difference (the run was
    rejected there, FollowsSpec); it now refuses it ``same_account``, changing nothing,
    and the run is accepted."""
    mint = Mint(lt.AUTHORITY, "alice", 5)
    transitions = _driven([mint, Transfer("alice", "alice", 3), Transfer("alice", "bob", 3)])
    answer = transitions[2].effects[-1].msg  # [0] is the start, [1] the mint
    assert answer.result.code == "same_account", answer
    trace = lt.trace_of(transitions)
    assert [r["action"] for r in trace] == ["Mint", "Transfer"]
    check = lt.check_traces([trace], specs_dir=SPECS)
    assert check.accepted, check.tlc.error_message


@pytest.mark.slow
@pytest.mark.tlc
def test_a_forgotten_closed_hold_id_is_reused_where_the_spec_never_reuses_one() -> None:
    """With max_closed=1 the core forgets h1 was closed once h2 closes, and a new Hold
    under h1 is accepted: Ledger.tla never reopens a hold id (a delayed duplicate
    settle of the old h1 would then close the new one). Rejected at the re-hold."""
    config = LedgerConfig(authorities=(lt.AUTHORITY,), journal_window=3, max_closed=1)
    commands: list[Command] = [
        Mint(lt.AUTHORITY, "alice", 9),
        Hold("h1", "alice", 2),
        Release("h1"),
        Hold("h2", "alice", 2),
        Release("h2"),
        Hold("h1", "alice", 3),
    ]
    trace = lt.trace_of(_driven(commands, config))
    k = len(trace) - 1 - [r["action"] for r in trace][::-1].index("PutHold")
    check = lt.check_traces([trace], specs_dir=SPECS)
    assert not check.accepted and check.violated == "FollowsSpec", check.tlc.error_message
    assert (check.failed_step, check.failed_action) == (k + 1, "PutHold")


# ---------------------------------------------------------------------- docs and CLI


@pytest.mark.slow
@pytest.mark.tlc
def test_the_docs_example_runs(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    (code,) = [b for b in blocks if b.startswith("# example: ledger-trace\n")]
    monkeypatch.chdir(ROOT)
    exec(compile(code, str(DOC), "exec"), {"__name__": "__main__"})
    printed = capsys.readouterr().out
    assert re.fullmatch(r"True 3 \d+\nFalse Conservation \d+ Transfer\n", printed)
    for line in printed.splitlines():
        assert f"`{line}`" in DOC.read_text(encoding="utf-8")


@pytest.mark.slow
@pytest.mark.tlc
def test_the_command_line_accepts_runs_and_rejects_an_edited_module(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from trio_foundation.cli import main

    monkeypatch.chdir(ROOT)
    module = tmp_path / "LedgerTraceData.tla"
    args = ["specs", "trace", "Ledger", "--traces", "2", "--duration", "8", "--write", str(module)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert re.search(r"Ledger: 2 runs \(seeds 0..1\), \d+ records: every trace is a", out)
    text = module.read_text(encoding="utf-8")
    found = re.search(r'action \|-> "Mint",.*?supply \|-> (\d+)', text, re.S)
    assert found is not None
    edited = text[: found.start(1)] + str(int(found.group(1)) + 1) + text[found.end(1) :]
    module.write_text(edited, encoding="utf-8")
    assert main(["specs", "trace", "Ledger", "--module", str(module)]) == 1
    assert re.search(
        r"REJECTED: trace \d (violates \w+|cannot go past step)", capsys.readouterr().out
    )


def test_a_flag_of_the_other_modules_runs_is_refused(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from trio_foundation.cli import main

    monkeypatch.chdir(ROOT)
    assert main(["specs", "trace", "Ledger", "--ttl", "9"]) == 2
    assert "--ttl does not apply to Ledger's trace runs" in capsys.readouterr().err
