"""`foundation chaos run`: a seeded chaos scenario, its history and its verdict.

A scenario runs a protocol in the discrete-event simulator
(:class:`~trio_foundation.runtime.sim.Simulation`) under a random nemesis
(:func:`~trio_foundation.verify.nemesis.random_schedule`) while client processes
record a Jepsen history; the history is written as JSON Lines and checked with
the linearizability checker. Everything derives from ``--seed``, so the replay
command printed on failure reproduces the run exactly (same event-log digest).

Exit codes: 0 linearizable, 1 not linearizable, 3 unknown (checker timeout or
state bound), 2 bad input.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import random
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final, final, get_args

import attrs

from .._errors import VerificationError
from ..protocols.register import RegisterVariant, register_factory
from ..runtime.sim import ClientWorkload, Simulation
from ..verify.history import HistoryEvent, HistoryRecorder, dump_history
from ..verify.nemesis import (
    FAULT_KINDS,
    Fault,
    FaultSchedule,
    fault_from_json,
    random_schedule,
    schedule_from_json,
)

__all__ = ["SCENARIOS", "ChaosRun", "Scenario", "register", "replay_command", "run_chaos"]


@final
@attrs.frozen
class Scenario:
    """A named chaos scenario.

    Attributes:
        name: the command-line name.
        variant: the register variant it runs.
        model: the linearizability model its history is checked against.
        description: one line for ``--help`` and the summary.
    """

    name: str
    variant: RegisterVariant
    model: str
    description: str


SCENARIOS: Final[dict[str, Scenario]] = {
    s.name: s
    for s in (
        Scenario("register", "correct", "register", "ABD replicated register (correct)"),
        Scenario(
            "register-stale-read",
            "stale-read",
            "register",
            "ABD with reads from the local replica (broken)",
        ),
        Scenario(
            "register-lost-write",
            "lost-write",
            "register",
            "ABD acking writes before a quorum, unpersisted (broken)",
        ),
        Scenario(
            "register-split-brain",
            "split-brain",
            "register",
            "ABD with quorums over reachable nodes only (broken)",
        ),
    )
}

DEFAULT_FAULTS: Final = ("drop", "dup", "delay", "reorder", "partition", "crash", "pause", "skew")
DEFAULT_INTENSITY: Final = 2.0
MAX_OPS: Final = 100_000
MAX_NODES: Final = 15
MAX_CLIENTS: Final = 100


@final
@attrs.frozen
class ChaosRun:
    """The outcome of :func:`run_chaos` (before checking).

    Attributes:
        scenario: the scenario run.
        seed: its seed.
        ops: operations requested.
        nodes: cluster size.
        clients: client processes.
        faults: the fault kinds enabled.
        intensity: fault episodes per simulated second.
        schedule: the nemesis schedule (drawn from the seed unless given).
        schedule_given: whether the schedule was passed in rather than drawn.
        history: the recorded history.
        statuses: completed operations by status (``ok``, ``fail``, ``info``).
        fault_counts: faults applied, by kind.
        event_counts: simulator events, by kind.
        digest: the event-log digest.
        sim_time: simulated seconds the run took.
    """

    scenario: Scenario
    seed: int
    ops: int
    nodes: int
    clients: int
    faults: tuple[str, ...]
    intensity: float
    schedule: FaultSchedule
    schedule_given: bool
    history: tuple[HistoryEvent, ...]
    statuses: dict[str, int]
    fault_counts: dict[str, int]
    event_counts: dict[str, int]
    digest: str
    sim_time: float

    @property
    def replay(self) -> str:
        """The one-line command that replays this run.

        For a given schedule it names ``SCHEDULE.json``: save :attr:`schedule`
        there with :func:`~trio_foundation.verify.nemesis.schedule_to_json`.
        """
        return replay_command(
            self.scenario.name,
            seed=self.seed,
            ops=self.ops,
            nodes=self.nodes,
            clients=self.clients,
            faults=self.faults,
            intensity=self.intensity,
            schedule_file="SCHEDULE.json" if self.schedule_given else None,
        )


def replay_command(
    scenario: str,
    *,
    seed: int,
    ops: int,
    nodes: int,
    clients: int,
    faults: Sequence[str],
    intensity: float = DEFAULT_INTENSITY,
    schedule_file: str | None = None,
) -> str:
    """The ``foundation chaos run`` command line that reproduces a run.

    With ``schedule_file`` (a schedule saved with
    :func:`~trio_foundation.verify.nemesis.schedule_to_json`), the command uses
    that schedule instead of drawing one from the seed.
    """
    command = f"foundation chaos run {scenario} --seed {seed} --ops {ops} --nodes {nodes} "
    command += f"--clients {clients}"
    if schedule_file is not None:
        return command + f" --schedule {schedule_file}"
    command += f" --faults {','.join(faults) if faults else 'none'}"
    if intensity != DEFAULT_INTENSITY:
        command += f" --intensity {intensity!r}"
    return command


def _register_op(rng: random.Random, index: int) -> tuple[str, Any]:
    if rng.random() < 0.5:
        return "read", None
    return "write", index + 1  # unique values make violations visible


def run_chaos(
    scenario: str,
    *,
    seed: int,
    ops: int = 200,
    nodes: int = 3,
    clients: int = 5,
    faults: Sequence[str] = DEFAULT_FAULTS,
    intensity: float = DEFAULT_INTENSITY,
    schedule: FaultSchedule | None = None,
) -> ChaosRun:
    """Run ``scenario`` in the discrete-event simulator and record its history.

    Args:
        scenario: a key of :data:`SCENARIOS`.
        seed: the seed; the same arguments give the same run.
        ops: operations the clients invoke in total.
        nodes: cluster size.
        clients: concurrent client processes.
        faults: fault kinds for the random nemesis (see
            :data:`~trio_foundation.verify.nemesis.FAULT_KINDS`).
        intensity: fault episodes per simulated second.
        schedule: a fault schedule to use instead of drawing one from the seed.

    Raises:
        ValueError: on an unknown scenario or fault kind, or numbers out of range.
    """
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; known: {', '.join(SCENARIOS)}")
    if not 0 <= ops <= MAX_OPS:
        raise ValueError(f"--ops must be in [0, {MAX_OPS}], got {ops}")
    if not 1 <= nodes <= MAX_NODES:
        raise ValueError(f"--nodes must be in [1, {MAX_NODES}], got {nodes}")
    if not 1 <= clients <= MAX_CLIENTS:
        raise ValueError(f"--clients must be in [1, {MAX_CLIENTS}], got {clients}")
    if not (intensity > 0 and math.isfinite(intensity)):
        raise ValueError(f"--intensity must be a finite number > 0, got {intensity}")
    spec = SCENARIOS[scenario]
    kinds = tuple(k for k in FAULT_KINDS if k in faults)
    unknown = sorted(set(faults) - set(FAULT_KINDS))
    if unknown:
        raise ValueError(
            f"unknown fault kind(s) {', '.join(unknown)}; known: {', '.join(FAULT_KINDS)}"
        )
    given = schedule is not None
    # About how long the clients take without faults; faults come within it.
    horizon = max(1.0, 0.07 * ops / clients)
    if schedule is None and kinds:
        schedule = random_schedule(
            seed, nodes=nodes, kinds=kinds, horizon=horizon, intensity=intensity
        )
    schedule = schedule or ()
    sim = Simulation(register_factory(spec.variant), nodes=nodes, seed=seed, schedule=schedule)
    recorder = HistoryRecorder(max_events=2 * ops + 2)
    workload = ClientWorkload(sim, recorder, clients=clients, ops=ops, gen_op=_register_op)
    last_fault = max((ev.at for ev in schedule), default=0.0)
    sim.run(stop=lambda: workload.done, until=max(horizon, last_fault) + 10.0 + 2.0 * ops)
    return ChaosRun(
        scenario=spec,
        seed=seed,
        ops=ops,
        nodes=nodes,
        clients=clients,
        faults=kinds,
        intensity=intensity,
        schedule=schedule,
        schedule_given=given,
        history=recorder.events,
        statuses=workload.statuses(),
        fault_counts=sim.fault_counts(),
        event_counts=sim.counts(),
        digest=sim.event_log_digest(),
        sim_time=sim.now,
    )


def _parse_faults(text: str) -> tuple[str, ...]:
    if text.strip() in ("", "none"):
        return ()
    kinds = tuple(k.strip() for k in text.split(",") if k.strip())
    unknown = sorted(set(kinds) - set(FAULT_KINDS))
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown fault kind(s) {', '.join(unknown)}; known: {', '.join(FAULT_KINDS)}"
        )
    return kinds


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _positive_rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


_FAULT_CLASSES: Final = {cls.kind: cls for cls in get_args(Fault)}


def _load_schedule(path: Path) -> FaultSchedule:
    """Read ``--schedule``; every problem names the file, the entry and the field."""
    where = f"--schedule {path}"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise VerificationError(f"{where}: no such file") from None
    except UnicodeDecodeError:
        raise VerificationError(f"{where}: not a UTF-8 text file") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise VerificationError(
            f"{where} line {exc.lineno}, col {exc.colno}: not valid JSON: {exc.msg}"
        ) from None
    if not isinstance(data, list):
        raise VerificationError(f"{where}: a fault schedule must be a JSON array of entries")
    known = ", ".join(sorted(_FAULT_CLASSES))
    for index, item in enumerate(data, 1):
        entry = f"{where}: entry {index}"
        if not isinstance(item, dict):
            raise VerificationError(f"{entry} must be a JSON object, got {item!r}")
        kind = item.get("fault")
        if kind is None:
            raise VerificationError(f"{entry} has no field 'fault' (one of {known})")
        if kind not in _FAULT_CLASSES:
            raise VerificationError(f"{entry}: unknown fault {kind!r} (one of {known})")
        entry += f" ({kind})"
        at = item.get("at")
        if at is None:
            raise VerificationError(f"{entry} has no field 'at' (its time, in simulated seconds)")
        if isinstance(at, bool) or not isinstance(at, int | float) or not math.isfinite(at):
            raise VerificationError(f"{entry}: field 'at' must be a number, got {at!r}")
        fields = attrs.fields(_FAULT_CLASSES[kind])
        for field in fields:
            if field.init and field.default is attrs.NOTHING and field.name not in item:
                raise VerificationError(f"{entry} has no field {field.name!r}")
        names = {field.name for field in fields} | {"at", "fault"}
        extra = sorted(set(item) - names)
        if extra:
            raise VerificationError(
                f"{entry}: unknown field {extra[0]!r} (a {kind} has "
                f"{', '.join(sorted(names - {'at', 'fault'})) or 'no other fields'})"
            )
        try:
            fault_from_json(item)
        except (ValueError, TypeError) as exc:
            raise VerificationError(f"{entry}: {exc}") from None
    return schedule_from_json(text)


def _output_path(flag: str, path: Path) -> Path:
    """An output file the user named: its folder must exist (none is created silently)."""
    if not path.parent.is_dir():
        raise VerificationError(
            f"{flag} {path}: folder {path.parent} does not exist (create it first)"
        )
    if path.is_dir():
        raise VerificationError(f"{flag} {path}: is a folder, not a file")
    return path


def _span(history: Sequence[HistoryEvent], op: Any) -> str:
    """`` at t=a..b`` (simulated seconds) for a checker ``Operation``."""
    start = history[op.invoke_at].time
    end = "?" if op.complete_at is None else f"{history[op.complete_at].time:.3f}"
    return f" at t={start:.3f}..{end}" if start is not None else ""


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in counts.items()) or "none"


def _run(args: argparse.Namespace) -> int:
    from ..verify.lincheck import check_history

    schedule = None
    if args.schedule is not None:
        schedule = _load_schedule(Path(args.schedule))
    if args.history is not None:
        out_path = _output_path("--history", Path(args.history))
    else:
        out_path = Path(f"histories/{args.scenario}-{args.seed}.jsonl")
    svg_path = None if args.svg is None else _output_path("--svg", Path(args.svg))
    run = run_chaos(
        args.scenario,
        seed=args.seed,
        ops=args.ops,
        nodes=args.nodes,
        clients=args.clients,
        faults=args.faults,
        intensity=args.intensity,
        schedule=schedule,
    )
    if args.history is None:
        out_path.parent.mkdir(exist_ok=True)  # the documented default folder, histories/
    with open(out_path, "w", encoding="utf-8") as fh:
        dump_history(run.history, fh)
    result = check_history(run.history, run.scenario.model, timeout=args.check_timeout)
    ev = run.event_counts
    lines = [
        f"scenario    {run.scenario.name}: {run.scenario.description}",
        f"cluster     {run.nodes} nodes, {run.clients} clients, seed {run.seed}",
        f"operations  {run.ops}: ok {run.statuses['ok']}, fail {run.statuses['fail']}, "
        f"info {run.statuses['info']}",
        f"faults      {_counts(run.fault_counts)}",
        f"network     sent {ev.get('send', 0)}, delivered {ev.get('deliver', 0)}, "
        f"dropped {ev.get('drop', 0)}, duplicated {ev.get('dup', 0)}",
        f"simulated   {run.sim_time:.3f} s, {sum(ev.values())} events",
        f"digest      {run.digest}",
        f"history     {out_path}",
        f"verdict     {result.verdict} ({result.seconds:.2f} s"
        + (f", {result.reason})" if result.reason else ")"),
    ]
    if result.verdict == "not-linearizable" and result.unplaceable:
        first, *others = result.unplaceable
        lines.append(f"  cannot linearize {first.describe()}{_span(run.history, first)}")
        for op in others[:3]:
            lines.append(f"  concurrent with  {op.describe()}{_span(run.history, op)}")
    if svg_path is not None:
        try:
            # Imported by name: the renderer ships separately from this command.
            timeline = importlib.import_module("trio_foundation.verify.timeline")
        except ImportError:
            raise VerificationError("the timeline renderer is not available") from None
        render_timeline_svg = timeline.render_timeline_svg
        try:
            svg_path.write_text(render_timeline_svg(list(run.history), result), encoding="utf-8")
        except OSError as exc:
            # The verdict stands: a timeline that cannot be saved does not change it.
            print(
                f"foundation: warning: cannot write --svg {svg_path}: {exc.strerror}",
                file=sys.stderr,
            )
        else:
            lines.append(f"timeline    {svg_path}")
    if result.verdict != "linearizable":
        replay = run.replay.replace("SCHEDULE.json", str(args.schedule))
        lines.append(f"replay      {replay}")
    print("\n".join(lines))
    sys.stdout.flush()
    return {"linearizable": 0, "not-linearizable": 1}.get(result.verdict, 3)


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add the ``chaos`` command group (``chaos run``) to the top-level parser."""
    chaos = subparsers.add_parser(
        "chaos",
        help="run seeded chaos scenarios in the cluster simulator",
        description="Run protocols in the deterministic cluster simulator under faults.",
    )
    sub = chaos.add_subparsers(dest="chaos_command", metavar="SUBCOMMAND")
    sub.required = True
    scenarios = "; ".join(f"{s.name}: {s.description}" for s in SCENARIOS.values())
    run = sub.add_parser(
        "run",
        help="run one scenario and check its history",
        description=(
            "Run a scenario, write its history, check it for linearizability. "
            "Exit 0 linearizable, 1 not linearizable, 3 unknown, 2 bad input."
        ),
    )
    run.add_argument("scenario", choices=list(SCENARIOS), metavar="SCENARIO", help=scenarios)
    run.add_argument("--seed", type=int, required=True, help="the seed (the run replays exactly)")
    run.add_argument("--ops", type=int, default=200, help="operations to invoke (default 200)")
    run.add_argument("--nodes", type=int, default=3, help="cluster size (default 3)")
    run.add_argument("--clients", type=int, default=5, help="client processes (default 5)")
    run.add_argument(
        "--faults",
        type=_parse_faults,
        default=DEFAULT_FAULTS,
        help=f"comma-separated fault kinds, or 'none' (default {','.join(DEFAULT_FAULTS)})",
    )
    run.add_argument(
        "--intensity",
        type=_positive_rate,
        default=DEFAULT_INTENSITY,
        help=f"fault episodes per simulated second (default {DEFAULT_INTENSITY})",
    )
    run.add_argument(
        "--schedule",
        metavar="IN.json",
        help="run this fault schedule (JSON, as schedule_to_json writes it) instead of "
        "drawing one from the seed; --faults and --intensity are then ignored",
    )
    run.add_argument(
        "--history",
        metavar="OUT.jsonl",
        help="history file; its folder must exist (default histories/SCENARIO-SEED.jsonl, "
        "creating histories/ if needed)",
    )
    run.add_argument(
        "--svg",
        metavar="OUT.svg",
        help="also render the history as an SVG timeline (its folder must exist)",
    )
    run.add_argument(
        "--check-timeout",
        type=_positive_seconds,
        default=60.0,
        help="seconds the linearizability check may take before 'unknown' (default 60)",
    )
    run.set_defaults(handler=_run)
