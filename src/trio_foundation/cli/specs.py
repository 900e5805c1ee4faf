"""``foundation specs``: list the TLA+ specs and model-check them with TLC.

``foundation specs list [--dir DIR]`` shows every spec in the directory (default
``./specs``): each ``NAME.tla`` with a ``NAME.cfg`` or ``NAME.VARIANT.cfg``
beside it. ``foundation specs check [NAME ...]`` runs TLC on the named specs
(default: all), shows a live status line, prints a summary table and, for every
failure, the counterexample step by step. Exit code 0 when every check passed,
1 when any failed, 2 on bad input (unknown name, no spec directory, no Java).
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, final

import attrs
from rich.console import Console, ConsoleOptions, RenderResult
from rich.live import Live
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

from .._errors import VerificationError
from ..verify.tla_values import TLAValue, to_tla
from ..verify.tlc import (
    SpecPair,
    TLCProgress,
    TLCResult,
    TLCStatus,
    TraceStep,
    default_specs_dir,
    find_jar,
    find_java,
    find_specs,
    run_tlc,
)

__all__ = ["register"]

_DEFAULT_WORKERS = min(2, os.cpu_count() or 1)
_DEFAULT_TIMEOUT = 300.0

_STATUS_STYLE = {
    TLCStatus.OK: "bold green",
    TLCStatus.TIMEOUT: "bold yellow",
}


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add the ``specs`` command group to the top-level parser."""
    parser = subparsers.add_parser(
        "specs",
        help="list and model-check the TLA+ specs",
        description="List the TLA+ specs (NAME.tla with NAME.cfg or NAME.VARIANT.cfg beside it) "
        "and model-check them with TLC.",
    )
    commands = parser.add_subparsers(dest="specs_command", metavar="SUBCOMMAND")
    commands.required = True

    list_parser = commands.add_parser("list", help="list the specs and their configs")
    _add_dir(list_parser)
    list_parser.set_defaults(handler=_list)

    check = commands.add_parser(
        "check",
        help="model-check specs with TLC",
        description="Model-check specs with TLC. Exit code 0 if every check passed, "
        "1 if any failed, 2 on bad input.",
    )
    check.add_argument(
        "names", nargs="*", metavar="NAME", help="specs to check, as listed (default: all)"
    )
    _add_dir(check)
    check.add_argument(
        "--workers",
        type=_positive_int,
        default=_DEFAULT_WORKERS,
        metavar="N",
        help=f"TLC worker threads (default: {_DEFAULT_WORKERS})",
    )
    check.add_argument(
        "--timeout",
        type=_positive_float,
        default=_DEFAULT_TIMEOUT,
        metavar="S",
        help=f"seconds before a check is stopped (default: {_DEFAULT_TIMEOUT:g})",
    )
    check.set_defaults(handler=_check)
    _register_trace(commands)


def _add_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="the spec directory (default: ./specs)",
    )


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _specs(directory: Path | None) -> tuple[Path, list[SpecPair]]:
    directory = default_specs_dir() if directory is None else directory
    pairs = find_specs(directory)
    if not pairs:
        raise VerificationError(
            f"no specs in {directory}: a spec is NAME.tla with NAME.cfg beside it"
        )
    return directory, pairs


# --------------------------------------------------------------------------- list


def _console() -> Console:
    console = Console(highlight=False)
    if not console.is_terminal:
        # Logs and CI: no terminal width to respect, and truncated names help nobody.
        console.width = 160
    return console


def _list(args: argparse.Namespace) -> int:
    directory, pairs = _specs(args.dir)
    console = _console()
    table = Table(title=f"specs in {directory}", title_justify="left")
    table.add_column("spec", style="bold")
    table.add_column("module")
    table.add_column("config")
    for pair in pairs:
        table.add_row(pair.name, pair.module.name, pair.config.name)
    console.print(table)
    return 0


# --------------------------------------------------------------------------- check


@final
@attrs.frozen
class _Outcome:
    """One row of the summary: a TLC result, or why TLC was not run."""

    pair: SpecPair
    result: TLCResult | None
    problem: str = ""

    @property
    def ok(self) -> bool:
        return self.result is not None and self.result.ok

    @property
    def status(self) -> str:
        if self.result is None:
            return TLCStatus.CONFIG_ERROR.value
        return self.result.status.value

    @property
    def style(self) -> str:
        if self.result is None:
            return "bold red"
        return _STATUS_STYLE.get(self.result.status, "bold red")


@attrs.define
class _LiveLine:
    """The live status line: a spinner, the spec, states so far, elapsed time."""

    name: str = ""
    started: float = attrs.Factory(time.monotonic)
    progress: TLCProgress | None = None
    spinner: Spinner = attrs.Factory(lambda: Spinner("dots"))

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        elapsed = time.monotonic() - self.started
        text = Text.assemble(("checking ", ""), (self.name, "bold"))
        if self.progress is not None:
            text.append(f": {self.progress.distinct_states:,} distinct states")
        text.append(f", {elapsed:.0f} s", style="dim")
        self.spinner.update(text=text)
        yield self.spinner


def _select(pairs: list[SpecPair], names: Sequence[str]) -> list[SpecPair]:
    if not names:
        return pairs
    by_name = {pair.name: pair for pair in pairs}
    unknown = [name for name in names if name not in by_name]
    if unknown:
        known = ", ".join(by_name)
        label = "spec" if len(unknown) == 1 else "specs"
        raise VerificationError(f"unknown {label} {', '.join(unknown)}: known specs are {known}")
    return [by_name[name] for name in dict.fromkeys(names)]


def _check(args: argparse.Namespace) -> int:
    _directory, pairs = _specs(args.dir)
    selected = _select(pairs, args.names)
    java, jar = find_java(), find_jar()
    console = _console()
    outcomes: list[_Outcome] = []
    line = _LiveLine()

    def run(pair: SpecPair) -> _Outcome:
        try:
            result = run_tlc(
                pair.module,
                pair.config,
                workers=args.workers,
                timeout=args.timeout,
                java=java,
                jar=jar,
                on_progress=on_progress,
            )
        except VerificationError as exc:
            return _Outcome(pair, None, str(exc))
        return _Outcome(pair, result)

    def on_progress(progress: TLCProgress) -> None:
        line.progress = progress
        if not console.is_terminal and progress.seconds >= 30:
            console.print(
                f"  {progress.spec}: {progress.distinct_states:,} distinct states, "
                f"{progress.queue:,} on the queue, {progress.seconds:.0f} s",
                markup=False,
            )

    if console.is_terminal:
        line.name = selected[0].name
        with Live(line, console=console, refresh_per_second=8, transient=True) as live:
            for pair in selected:
                line.name, line.started, line.progress = pair.name, time.monotonic(), None
                outcome = run(pair)
                outcomes.append(outcome)
                live.console.print(_one_line(outcome))
    else:
        for pair in selected:
            console.print(f"checking {pair.name} ...", markup=False)
            outcome = run(pair)
            outcomes.append(outcome)
            console.print(_one_line(outcome))

    console.print()
    console.print(_summary(outcomes))
    for outcome in outcomes:
        if not outcome.ok:
            console.print()
            for renderable in _details(outcome, console.width):
                console.print(renderable)
    return 0 if all(outcome.ok for outcome in outcomes) else 1


def _one_line(outcome: _Outcome) -> Text:
    mark = ("✓ ", "green") if outcome.ok else ("✗ ", "red")
    text = Text.assemble(mark, (outcome.pair.name, "bold"), " ", (outcome.status, outcome.style))
    if outcome.result is not None:
        result = outcome.result
        text.append(f"  {result.distinct_states:,} distinct states, {result.seconds:.1f} s")
    return text


def _summary(outcomes: list[_Outcome]) -> Table:
    table = Table(title="TLC results", title_justify="left")
    table.add_column("spec", style="bold", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("distinct states", justify="right")
    table.add_column("depth", justify="right")
    table.add_column("seconds", justify="right")
    for outcome in outcomes:
        result = outcome.result
        status = Text(outcome.status, style=outcome.style)
        if result is None:
            table.add_row(outcome.pair.name, status, "-", "-", "-")
        else:
            table.add_row(
                outcome.pair.name,
                status,
                f"{result.distinct_states:,}",
                f"{result.depth:,}",
                f"{result.seconds:.1f}",
            )
    passed = sum(outcome.ok for outcome in outcomes)
    table.caption = f"{passed} of {len(outcomes)} passed"
    table.caption_justify = "left"
    return table


# --------------------------------------------------------------------------- failure details


def _headline(outcome: _Outcome) -> Text:
    text = Text.assemble((outcome.pair.name, "bold"), ": ")
    result = outcome.result
    if result is None:
        return text.append(outcome.status, style=outcome.style)
    status = result.status
    if status is TLCStatus.INVARIANT_VIOLATED:
        text.append(f"invariant {result.violated or '?'} is violated", style=outcome.style)
    elif status is TLCStatus.PROPERTY_VIOLATED:
        what = f"property {result.violated}" if result.violated else "a temporal property"
        text.append(f"{what} is violated", style=outcome.style)
    elif status is TLCStatus.DEADLOCK:
        text.append("deadlock: a reachable state has no successor", style=outcome.style)
    elif status is TLCStatus.CHECK_NOT_EVALUABLE:
        what = result.violated or "an invariant or property"
        text.append(f"{what} cannot be evaluated", style=outcome.style)
    else:
        text.append(status.value, style=outcome.style)
    return text


def _details(outcome: _Outcome, width: int) -> Iterator[Text]:
    yield _headline(outcome)
    result = outcome.result
    if result is None:
        yield Text(f"  {outcome.problem}")
        return
    message = result.error_message
    if result.status is TLCStatus.TIMEOUT:
        message += "; raise --timeout or make the model's constants smaller"
    if result.status not in (
        TLCStatus.INVARIANT_VIOLATED,
        TLCStatus.PROPERTY_VIOLATED,
        TLCStatus.DEADLOCK,
    ):
        for text in message.splitlines():
            yield Text(f"  {text}")
    if result.status is TLCStatus.TLC_ERROR and not message:
        yield Text("  tlc failed without a message; its output follows")
        yield Text(result.output)
    if result.counterexample:
        count = len(result.counterexample)
        yield Text(f"counterexample ({count} step{'s' if count != 1 else ''}):", style="dim")
        yield from _counterexample(result.counterexample, result.back_to_state, width)


def _step_title(step: TraceStep) -> Text:
    text = Text(f"Step {step.number} — ", style="bold")
    if step.stuttering:
        return text.append("stuttering: the state above repeats forever", style="bold")
    if step.action is None:
        return text.append("initial state", style="bold")
    text.append(step.action, style="bold cyan")
    if step.location is not None:
        text.append(f" ({step.location})")
    return text


def _counterexample(steps: Sequence[TraceStep], back_to: int | None, width: int) -> Iterator[Text]:
    previous: Mapping[str, TLAValue] | None = None
    for step in steps:
        yield _step_title(step)
        if step.stuttering:
            continue
        for name in sorted(step.state):
            value = step.state[name]
            changed = previous is not None and (name not in previous or previous[name] != value)
            line = Text()
            line.append("  * " if changed else "    ", style="bold yellow" if changed else "")
            head = f"{name} = "
            text = to_tla(value, width=width, indent=len(line) + len(head))
            line.append(head + text, style="bold" if changed else "")
            yield line
        previous = step.state
    if back_to is not None:
        yield Text(f"Back to step {back_to}: the behaviour loops from here forever", style="bold")


# --------------------------------------------------------------------------- trace

_TRACEABLE = ("LeaseLock",)


def _register_trace(commands: argparse._SubParsersAction[Any]) -> None:
    trace = commands.add_parser(
        "trace",
        help="check runs of the implementation against a spec (trace validation)",
        description="Run the real protocol cores under the spec's model of the network and "
        "clocks, write each run as a TLA+ trace, and ask TLC whether every trace is a "
        "behaviour of the spec. Exit code 0 if all are, 1 if one is not, 2 on bad input.",
    )
    trace.add_argument("name", metavar="NAME", help=f"the spec ({', '.join(_TRACEABLE)})")
    _add_dir(trace)
    trace.add_argument("--seed", type=int, default=0, help="seed of the first run (default: 0)")
    trace.add_argument(
        "--traces", type=_positive_int, default=20, metavar="N", help="runs (default: 20)"
    )
    trace.add_argument(
        "--steps", type=_positive_int, default=80, metavar="N", help="steps per run (default: 80)"
    )
    trace.add_argument(
        "--ttl",
        type=_positive_int,
        default=9,
        metavar="T",
        help="lease TTL in the spec's time units; with D=2, Delta=1 it must be a multiple "
        "of 3 (default: 9)",
    )
    trace.add_argument(
        "--write", type=Path, metavar="FILE", help="also save the generated trace module"
    )
    trace.add_argument(
        "--module",
        type=Path,
        metavar="FILE",
        help="check this LeaseLockTraceData module instead of generating runs",
    )
    trace.add_argument(
        "--timeout",
        type=_positive_float,
        default=_DEFAULT_TIMEOUT,
        metavar="S",
        help=f"seconds before TLC is stopped (default: {_DEFAULT_TIMEOUT:g})",
    )
    trace.set_defaults(handler=_trace)


def _trace(args: argparse.Namespace) -> int:
    from ..verify import lease_lock_trace as llt

    if args.name not in _TRACEABLE:
        raise VerificationError(
            f"no trace validation for {args.name!r}: available for {', '.join(_TRACEABLE)}"
        )
    directory = default_specs_dir() if args.dir is None else args.dir
    if not (directory / "LeaseLockTrace.tla").is_file():
        raise VerificationError(f"{directory} has no LeaseLockTrace.tla: pass --dir")
    params = llt.SpecParams(ttl=args.ttl)
    console = _console()
    if args.module is not None:
        text = args.module.read_text(encoding="utf-8")
        check = llt.check_trace_module(text, params, specs_dir=directory, timeout=args.timeout)
        what = str(args.module)
    else:
        traces = [
            llt.random_trace(seed, args.steps, params)
            for seed in range(args.seed, args.seed + args.traces)
        ]
        if args.write is not None:
            llt.write_trace_module(traces, args.write)
        check = llt.check_traces(traces, params, specs_dir=directory, timeout=args.timeout)
        what = f"{check.traces} runs (seeds {args.seed}..{args.seed + args.traces - 1}), "
        what += f"{check.steps} steps"
    seconds = check.tlc.seconds
    if check.accepted:
        console.print(
            f"{args.name}: {what}: every trace is a behaviour of the spec ({seconds:.1f} s)"
        )
        return 0
    where = (
        f"trace {check.failed_trace} cannot go past step {check.failed_step}"
        if check.failed_trace is not None
        else "a trace cannot be followed"
    )
    if check.failed_action is not None:
        where += f" (the next logged action, {check.failed_action}, is not allowed there)"
    console.print(f"{args.name}: {what}: REJECTED: {where} ({seconds:.1f} s)")
    return 1
