"""Trace validation: runs of the real Supervisor are behaviours of specs/Supervisor.tla.

Seeded random scenarios drive the real supervisor (three children: permanent, transient,
temporary, as the spec's ``PermTransTemp``) under a ``MockClock``: crashes, normal exits,
terminate/restart/delete calls, one-second ticks, and a final shutdown. After each step
the observable state (each child running, stopped or forgotten; the supervisor running,
down or escalated) is logged. The log becomes a TLA+ module; a trace spec that EXTENDS
the protocol spec follows it using only the spec's own actions (the shutdown's cursor
steps are not logged and left to the spec). All traces of one strategy are checked in one
TLC run (the initial state picks the trace). A trace that the spec cannot follow ends in
a state with no successor, so TLC reports a deadlock; a clean run accepts every trace.
"""

from __future__ import annotations

import random
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.lowlevel
import trio.testing

from trio_foundation.supervision import ChildSpec, SupervisorEscalation
from trio_foundation.supervision._supervisor import _SupervisorBase
from trio_foundation.supervision.testing import ControlledChildren as Controls
from trio_foundation.verify.tlc import TLCStatus, run_tlc

pytestmark = pytest.mark.tlc

SPECS = Path(__file__).resolve().parent.parent / "specs"
IDS = ("c1", "c2", "c3")
TYPES = ("permanent", "transient", "temporary")  # the spec's PermTransTemp
INTENSITY, PERIOD = 2, 3
TRACES_PER_STRATEGY = 40

TRACE_SPEC = r"""
---------------------------- MODULE SupervisorTrace ----------------------------
EXTENDS Supervisor, SupervisorTraceData

VARIABLES t, i

Tr == Traces[t]

TInit == Init /\ t \in 1..Len(Traces) /\ i = 0

Logged(e) ==
    CASE e.a = "crash"     -> ChildCrashes(e.c)
      [] e.a = "normal"    -> ChildExitsNormally(e.c)
      [] e.a = "terminate" -> TerminateChild(e.c)
      [] e.a = "restart"   -> RestartChild(e.c)
      [] e.a = "delete"    -> DeleteChild(e.c)
      [] e.a = "tick"      -> Tick
      [] e.a = "shutdown"  -> Shutdown

\* A logged step: the spec's action, and the observable state it leaves behind
\* (a step that ends the supervisor is checked when the shutdown is over).
Follow ==
    /\ i < Len(Tr)
    /\ Logged(Tr[i + 1])
    /\ IF Tr[i + 1].sup = "running"
       THEN status' = Tr[i + 1].st /\ sup' = "running"
       ELSE sup' = "shutting_down" /\ escalating' = (Tr[i + 1].sup = "escalated")
    /\ i' = i + 1
    /\ UNCHANGED t

\* Unlogged: the shutdown's cursor steps.
Silent == (StopNext \/ Down) /\ UNCHANGED <<t, i>>

\* Accepted: every step consumed and the final state is the one observed.
Accepted ==
    /\ i = Len(Tr)
    /\ sup = Tr[Len(Tr)].sup
    /\ status = Tr[Len(Tr)].st
    /\ UNCHANGED <<vars, t, i>>

TNext == Follow \/ Silent \/ Accepted
================================================================================
"""


class _PerChildIntensity(_SupervisorBase):
    """Broken on purpose: intensity counted per child."""

    def _intensity_key(self, child_id: str) -> str | None:
        return child_id


def _observe(sup: _SupervisorBase, escalated: bool) -> tuple[list[str], str]:
    states = {info.id: info.state for info in sup.which_children()}
    status = [states.get(cid, "removed") for cid in IDS]
    return status, ("escalated" if escalated else "running" if sup.running else "down")


async def _record(
    strategy: str, seed: int, clock: trio.testing.MockClock, broken: bool
) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    controls = Controls()
    cls = _PerChildIntensity if broken else _SupervisorBase
    sup = cls(
        [ChildSpec(cid, controls.child(cid), restart=t) for cid, t in zip(IDS, TYPES, strict=True)],  # type: ignore[arg-type]
        strategy=strategy,  # type: ignore[arg-type]
        intensity=INTENSITY,
        period=PERIOD,
    )
    trace: list[dict[str, Any]] = []
    escalated = False

    async def run() -> None:
        nonlocal escalated
        try:
            await sup.run()
        except SupervisorEscalation:
            escalated = True

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run)
        await trio.testing.wait_all_tasks_blocked()
        for _ in range(rng.randint(3, 14)):
            if not sup.running:
                break
            infos = sup.which_children()
            running = [i.id for i in infos if i.state == "running"]
            stopped = [i.id for i in infos if i.state == "stopped"]
            options = ["tick"]
            if running:
                options += ["crash", "crash", "crash", "normal", "terminate"]
            if stopped:
                options += ["restart", "delete"]
            action = rng.choice(options)
            child = None
            if action == "tick":
                clock.jump(1)
                await trio.lowlevel.checkpoint()
            elif action in ("crash", "normal"):
                child = rng.choice(running)
                controls.tell(child, "crash" if action == "crash" else "return")
            elif action == "terminate":
                child = rng.choice(running)
                await sup.terminate_child(child)
            elif action == "restart":
                child = rng.choice(stopped)
                await sup.restart_child(child)
            else:
                child = rng.choice(stopped)
                await sup.delete_child(child)
            await trio.testing.wait_all_tasks_blocked()
            status, state = _observe(sup, escalated)
            trace.append({"a": action, "c": child, "st": status, "sup": state})
        if sup.running:
            await sup.aclose()
            await trio.testing.wait_all_tasks_blocked()
            status, state = _observe(sup, escalated)
            trace.append({"a": "shutdown", "c": None, "st": status, "sup": state})
    return trace


def _tla(value: object) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, list):
        return "<<" + ", ".join(_tla(v) for v in value) + ">>"
    raise TypeError(value)


def _module(traces: Sequence[list[dict[str, Any]]]) -> str:
    rows = []
    for trace in traces:
        steps = [
            f'[a |-> "{e["a"]}", c |-> {IDS.index(e["c"]) + 1 if e["c"] else 0}, '
            f'st |-> {_tla(e["st"])}, sup |-> "{e["sup"]}"]'
            for e in trace
        ]
        rows.append("<<" + ",\n      ".join(steps) + ">>")
    body = ",\n   ".join(rows)
    return (
        "---- MODULE SupervisorTraceData ----\nEXTENDS Sequences\n"
        f"Traces == <<\n   {body}\n>>\n====\n"
    )


def _check(tmp_path: Path, strategy: str, traces: Sequence[list[dict[str, Any]]]) -> Any:
    shutil.copyfile(SPECS / "Supervisor.tla", tmp_path / "Supervisor.tla")
    (tmp_path / "SupervisorTrace.tla").write_text(TRACE_SPEC)
    (tmp_path / "SupervisorTraceData.tla").write_text(_module(traces))
    (tmp_path / "SupervisorTrace.cfg").write_text(
        "CONSTANTS\n    N = 3\n    RestartType <- PermTransTemp\n"
        f'    Strategy = "{strategy}"\n    Intensity = {INTENSITY}\n    Period = {PERIOD}\n'
        "    MaxTime = 100\nINIT TInit\nNEXT TNext\n"
        "INVARIANTS\n    RestartsOnlyPerPolicy\n    OrderedShutdown\n"
        "    NoChildAfterSupervisorDown\n"
    )
    return run_tlc(tmp_path / "SupervisorTrace.tla", workers=2, timeout=120)


def _traces(strategy: str, broken: bool = False) -> list[list[dict[str, Any]]]:
    traces = []
    for seed in range(TRACES_PER_STRATEGY):
        clock = trio.testing.MockClock()
        traces.append(trio.run(_record, strategy, seed, clock, broken, clock=clock))
    return traces


@pytest.mark.parametrize("strategy", ["one_for_one", "one_for_all", "rest_for_one"])
def test_real_runs_are_behaviours_of_the_spec(tmp_path: Path, strategy: str) -> None:
    traces = _traces(strategy)
    assert any(t[-1]["sup"] == "escalated" for t in traces)  # escalations are in the mix
    result = _check(tmp_path, strategy, traces)
    assert result.status is TLCStatus.OK, (result.status, result.error_message)


def test_a_tampered_trace_is_rejected(tmp_path: Path) -> None:
    traces = _traces("one_for_all")
    step = next(e for e in traces[0] if e["sup"] == "running" and "running" in e["st"])
    step["st"] = ["stopped" if s == "running" else s for s in step["st"]]
    result = _check(tmp_path, "one_for_all", traces)
    assert result.status is TLCStatus.DEADLOCK


def test_the_per_child_intensity_variant_is_rejected(tmp_path: Path) -> None:
    traces = _traces("one_for_one", broken=True)
    result = _check(tmp_path, "one_for_one", traces)
    assert result.status is TLCStatus.DEADLOCK
