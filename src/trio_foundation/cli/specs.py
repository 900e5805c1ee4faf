"""``foundation specs``: list the TLA+ specs and model-check them with TLC.

``foundation specs list [--dir DIR]`` shows every check in the directory
(default ``./specs``): each ``NAME.tla`` with a ``NAME.cfg`` or
``NAME.VARIANT.cfg`` beside it (these must pass), each mutant in ``broken/`` and
each reachability check in ``reach/`` (these must fail, violating what their
config declares with ``\\* expect-violation: NAME``).

``foundation specs check [NAME ...]`` runs TLC on the named specs (default: all;
``NAME`` is every config of module ``NAME``, ``NAME.VARIANT`` one of them),
shows a live status line (a plain progress line at least every 10 s when the
output is not a terminal), prints a summary table and, for every failure, the
counterexample step by step. ``--mutants`` and ``--reach`` check the variants
under ``broken/`` and ``reach/`` instead: each passes only when TLC reports the
violation its config declares. Exit code 0 when every check passed, 1 when any
failed, 2 on bad input (unknown name, no spec directory, no Java).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
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
    find_variants,
    run_tlc,
)

__all__ = ["register"]

_DEFAULT_WORKERS = min(2, os.cpu_count() or 1)
_DEFAULT_TIMEOUT = 300.0
# When the output is not a terminal, a progress line at least this often (seconds):
# TLC itself reports only once a minute.
_PROGRESS_EVERY = 10.0
_VIOLATIONS = (TLCStatus.INVARIANT_VIOLATED, TLCStatus.PROPERTY_VIOLATED, TLCStatus.DEADLOCK)

_STATUS_STYLE = {
    TLCStatus.OK: "bold green",
    TLCStatus.TIMEOUT: "bold yellow",
}


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add the ``specs`` command group to the top-level parser."""
    parser = subparsers.add_parser(
        "specs",
        help="list and model-check the TLA+ specs",
        description="List the TLA+ specs (NAME.tla with NAME.cfg or NAME.VARIANT.cfg beside it), "
        "the mutants in broken/ and the reachability checks in reach/, and model-check them "
        "with TLC.",
    )
    commands = parser.add_subparsers(dest="specs_command", metavar="SUBCOMMAND")
    commands.required = True

    list_parser = commands.add_parser(
        "list", help="list the specs, mutants and reachability checks, and their configs"
    )
    _add_dir(list_parser)
    list_parser.set_defaults(handler=_list)

    check = commands.add_parser(
        "check",
        help="model-check specs with TLC",
        description="Model-check specs with TLC. NAME is every config of module NAME "
        "(NAME.cfg and NAME.*.cfg); NAME.VARIANT is one. Exit code 0 if every check passed, "
        "1 if any failed, 2 on bad input.",
    )
    check.add_argument(
        "names",
        nargs="*",
        metavar="NAME",
        help="modules or NAME.VARIANT checks, as listed (default: all)",
    )
    _add_dir(check)
    check.add_argument(
        "--mutants",
        action="store_true",
        help="check the mutants in DIR/broken/ instead: each must violate what its config "
        "declares (\\* expect-violation: NAME)",
    )
    check.add_argument(
        "--reach",
        action="store_true",
        help="check the reachability configs in DIR/reach/ instead: each must violate its "
        "declared Never... invariant",
    )
    check.add_argument(
        "--full",
        action="store_true",
        help="also check the large configs (NAME.full*.cfg), which take minutes each and "
        "are left out of the default runs and of CI",
    )
    check.add_argument(
        "--workers",
        type=_positive_int,
        default=_DEFAULT_WORKERS,
        metavar="N",
        help=f"TLC worker threads (default: {_DEFAULT_WORKERS})",
    )
    check.add_argument(
        "--jobs",
        type=_positive_int,
        default=1,
        metavar="J",
        help="run J checks at once, each a TLC process with --workers threads "
        "(default: 1); small configs spend most of their time starting a JVM, so "
        "--jobs 2 --workers 1 finishes the mutants and reachability checks sooner",
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


_KINDS = {"mutant": "broken", "reach": "reach"}


def _variants(directory: Path, kind: str, *, required: bool) -> list[SpecPair]:
    """The configs of ``DIR/broken`` (``kind="mutant"``) or ``DIR/reach``."""
    folder = directory / _KINDS[kind]
    if not folder.is_dir():
        if required:
            flag = "--mutants" if kind == "mutant" else "--reach"
            raise VerificationError(f"no {folder} directory: nothing to check for {flag}")
        return []
    pairs = find_variants(folder)
    if required and not pairs:
        raise VerificationError(f"no configs in {folder}")
    return pairs


def _kind(pair: SpecPair, directory: Path) -> str:
    parent = pair.config.parent
    if parent == directory / "broken":
        return "mutant"
    if parent == directory / "reach":
        return "reach"
    return "spec"


# --------------------------------------------------------------------------- list


def _console() -> Console:
    console = Console(highlight=False)
    if not console.is_terminal:
        # Logs and CI: no terminal width to respect, and truncated names help nobody.
        console.width = 200
    return console


def _relative(path: Path, directory: Path) -> str:
    try:
        return str(path.relative_to(directory))
    except ValueError:
        return str(path)


def _list(args: argparse.Namespace) -> int:
    directory, pairs = _specs(args.dir)
    pairs += _variants(directory, "mutant", required=False)
    pairs += _variants(directory, "reach", required=False)
    console = _console()
    table = Table(title=f"specs in {directory}", title_justify="left")
    table.add_column("check", style="bold")
    table.add_column("kind")
    table.add_column("module")
    table.add_column("config")
    table.add_column("must")
    for pair in pairs:
        kind = _kind(pair, directory)
        must: str | Text
        if kind == "spec":
            must = "pass"
        elif pair.expect:
            must = "violate " + " or ".join(pair.expect)
        else:
            must = Text("? no expect-violation declared", style="bold red")
        table.add_row(
            pair.name,
            f"{kind} (--full)" if is_full(pair) else kind,
            _relative(pair.module, directory),
            _relative(pair.config, directory),
            must,
        )
    console.print(table)
    return 0


# --------------------------------------------------------------------------- check


@final
@attrs.frozen
class _Outcome:
    """One row of the summary: a TLC result, or why TLC was not run.

    A spec passes when TLC finds no error; a mutant or reachability check (``kind``
    is ``"mutant"`` or ``"reach"``) passes when TLC reports a violation its config
    declares (``pair.expect``).
    """

    pair: SpecPair
    result: TLCResult | None
    problem: str = ""
    kind: str = "spec"

    @property
    def ok(self) -> bool:
        if self.result is None:
            return False
        if self.kind == "spec":
            return self.result.ok
        return self.caught

    @property
    def caught(self) -> bool:
        """For a variant: TLC reported one of the declared violations."""
        result = self.result
        if result is None or result.status not in _VIOLATIONS:
            return False
        if result.status is TLCStatus.DEADLOCK:
            return "deadlock" in self.pair.expect
        return result.violated in self.pair.expect

    @property
    def status(self) -> str:
        if self.result is None:
            return self.problem_status
        status = self.result.status
        if self.kind == "spec":
            return status.value
        found = "deadlock" if status is TLCStatus.DEADLOCK else self.result.violated
        verb = "reached" if self.kind == "reach" else "caught"
        if self.caught:
            return f"{verb}: {found}"
        if status in _VIOLATIONS:
            return f"not {verb}: {found or 'an unnamed property'} instead"
        return f"not {verb}: {status.value}"

    @property
    def problem_status(self) -> str:
        if self.kind != "spec" and not self.pair.expect:
            return "no expect-violation"
        return TLCStatus.CONFIG_ERROR.value

    @property
    def style(self) -> str:
        if self.result is None:
            return "bold red"
        if self.kind != "spec":
            return "bold green" if self.ok else "bold red"
        return _STATUS_STYLE.get(self.result.status, "bold red")


@attrs.define
class _Running:
    """The checks running now (several with ``--jobs``): name -> start time and the
    latest TLC progress report. Shared by the live line and the heartbeat thread."""

    _checks: dict[str, tuple[float, TLCProgress | None]] = attrs.Factory(dict)
    _lock: threading.Lock = attrs.Factory(threading.Lock)

    def begin(self, name: str) -> None:
        with self._lock:
            self._checks[name] = (time.monotonic(), None)

    def report(self, name: str, progress: TLCProgress) -> None:
        with self._lock:
            if name in self._checks:
                self._checks[name] = (self._checks[name][0], progress)

    def end(self, name: str) -> None:
        with self._lock:
            self._checks.pop(name, None)

    def snapshot(self) -> list[tuple[str, float, TLCProgress | None]]:
        with self._lock:
            return [(name, started, prog) for name, (started, prog) in self._checks.items()]


@attrs.define
class _LiveLine:
    """The live status line: a spinner, each running spec, states so far, elapsed time."""

    running: _Running
    spinner: Spinner = attrs.Factory(lambda: Spinner("dots"))

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        now = time.monotonic()
        text = Text("checking ")
        for i, (name, started, progress) in enumerate(self.running.snapshot()):
            if i:
                text.append("; ")
            text.append(name, style="bold")
            if progress is not None:
                text.append(f": {progress.distinct_states:,} distinct states")
            text.append(f", {now - started:.0f} s", style="dim")
        self.spinner.update(text=text)
        yield self.spinner


def is_full(pair: SpecPair) -> bool:
    """Whether a config is a large one kept out of the default runs: its variant starts
    with ``full`` (``NAME.full.cfg``, ``NAME.full_nodrift.cfg``, ``NAME.full_NeverX.cfg``)."""
    parts = pair.name.split(".", 1)
    return len(parts) == 2 and parts[1].startswith("full")


def _select(pairs: list[SpecPair], names: Sequence[str], *, full: bool = False) -> list[SpecPair]:
    """``NAME`` selects every config of module ``NAME``; ``NAME.VARIANT`` selects one.

    Large configs (:func:`is_full`) are left out unless ``full`` or named as ``NAME.VARIANT``.
    """
    if not full:
        named = set(names)
        pairs = [pair for pair in pairs if not is_full(pair) or pair.name in named]
    if not names:
        return pairs
    chosen: dict[int, SpecPair] = {}
    unknown = []
    for name in dict.fromkeys(names):
        if "." in name:
            matching = [i for i, pair in enumerate(pairs) if pair.name == name]
        else:
            matching = [i for i, pair in enumerate(pairs) if pair.name.split(".")[0] == name]
        if not matching:
            unknown.append(name)
        for i in matching:
            chosen.setdefault(i, pairs[i])
    if unknown:
        known = ", ".join(dict.fromkeys(pair.name for pair in pairs))
        label = "spec" if len(unknown) == 1 else "specs"
        raise VerificationError(f"unknown {label} {', '.join(unknown)}: known specs are {known}")
    return [chosen[i] for i in sorted(chosen)]


@attrs.define
class _Heartbeat:
    """When the output is not a terminal: a plain line every ``_PROGRESS_EVERY`` seconds
    for each running check, so that a log never goes quiet for TLC's minute between
    reports."""

    console: Console
    running: _Running
    _stop: threading.Event = attrs.Factory(threading.Event)

    def run(self) -> None:
        printed: dict[tuple[str, float], float] = {}
        while not self._stop.wait(_PROGRESS_EVERY / 20):
            now = time.monotonic()
            current = self.running.snapshot()
            live = {(name, started) for name, started, _ in current}
            printed = {key: at for key, at in printed.items() if key in live}
            for name, started, progress in current:
                if now - printed.get((name, started), started) < _PROGRESS_EVERY:
                    continue
                printed[(name, started)] = now
                line = f"  {name}: still checking, {now - started:.0f} s"
                if progress is not None:
                    line += f", {progress.distinct_states:,} distinct states so far"
                self.console.print(line, markup=False)

    def stop(self) -> None:
        self._stop.set()


def _check(args: argparse.Namespace) -> int:
    directory, pairs = _specs(args.dir)
    if args.mutants or args.reach:
        pairs = []
        if args.mutants:
            pairs += _variants(directory, "mutant", required=True)
        if args.reach:
            pairs += _variants(directory, "reach", required=True)
    selected = _select(pairs, args.names, full=args.full)
    java, jar = find_java(), find_jar()
    console = _console()
    running = _Running()
    print_lock = threading.Lock()

    def run(pair: SpecPair) -> _Outcome:
        kind = _kind(pair, directory)
        if kind != "spec" and not pair.expect:
            problem = (
                f"{pair.config} declares no expected violation: add a comment line "
                "\\* expect-violation: InvariantName (a PROPERTY name, or deadlock)"
            )
            return _Outcome(pair, None, problem, kind)

        def on_progress(progress: TLCProgress) -> None:
            running.report(pair.name, progress)
            if not console.is_terminal and progress.seconds >= 30:
                with print_lock:
                    console.print(
                        f"  {pair.name}: {progress.distinct_states:,} distinct states, "
                        f"{progress.queue:,} on the queue, {progress.seconds:.0f} s",
                        markup=False,
                    )

        running.begin(pair.name)
        try:
            result = run_tlc(
                pair.module,
                pair.config,
                workers=args.workers,
                timeout=args.timeout,
                java=java,
                jar=jar,
                on_progress=on_progress,
                module_dirs=[directory] if pair.module.parent != directory else [],
            )
        except VerificationError as exc:
            return _Outcome(pair, None, str(exc), kind)
        finally:
            running.end(pair.name)
        return _Outcome(pair, result, kind=kind)

    def run_all(started: Callable[[SpecPair], None], done: Callable[[_Outcome], None]) -> None:
        # Checks are started in the order listed and reported as they finish; the
        # summary below keeps the listed order. With --jobs 1 this is a plain loop.
        if args.jobs == 1:
            for pair in selected:
                started(pair)
                done(run(pair))
            return
        with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:

            def submit(pair: SpecPair) -> concurrent.futures.Future[_Outcome]:
                started(pair)
                return pool.submit(run, pair)

            pending = {submit(pair) for pair in selected[: args.jobs]}
            queue = iter(selected[args.jobs :])
            while pending:
                finished, pending = concurrent.futures.wait(
                    pending, return_when=concurrent.futures.FIRST_COMPLETED
                )
                for future in finished:
                    done(future.result())
                    following = next(queue, None)
                    if following is not None:
                        pending.add(submit(following))

    by_pair: dict[Path, _Outcome] = {}
    if console.is_terminal:
        with Live(
            _LiveLine(running), console=console, refresh_per_second=8, transient=True
        ) as live:

            def live_done(outcome: _Outcome) -> None:
                by_pair[outcome.pair.config] = outcome
                live.console.print(_one_line(outcome))

            run_all(lambda pair: None, live_done)
    else:
        heartbeat = _Heartbeat(console, running)
        beating = threading.Thread(target=heartbeat.run, name="specs-progress", daemon=True)
        beating.start()

        def plain_started(pair: SpecPair) -> None:
            with print_lock:
                console.print(f"checking {pair.name} ...", markup=False)

        def plain_done(outcome: _Outcome) -> None:
            by_pair[outcome.pair.config] = outcome
            with print_lock:
                console.print(_one_line(outcome))

        try:
            run_all(plain_started, plain_done)
        finally:
            heartbeat.stop()
            beating.join()
    outcomes = [by_pair[pair.config] for pair in selected]

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


def _must(outcome: _Outcome) -> str:
    if outcome.kind == "spec":
        return "pass"
    if not outcome.pair.expect:
        return "?"
    return "violate " + " or ".join(outcome.pair.expect)


def _summary(outcomes: list[_Outcome]) -> Table:
    table = Table(title="TLC results", title_justify="left")
    table.add_column("spec", style="bold", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("distinct states", justify="right")
    table.add_column("depth", justify="right")
    table.add_column("seconds", justify="right")
    variants = any(outcome.kind != "spec" for outcome in outcomes)
    if variants:
        table.add_column("must")
    for outcome in outcomes:
        result = outcome.result
        status = Text(outcome.status, style=outcome.style)
        cells: list[str | Text]
        if result is None:
            cells = [outcome.pair.name, status, "-", "-", "-"]
        else:
            cells = [
                outcome.pair.name,
                status,
                f"{result.distinct_states:,}",
                f"{result.depth:,}",
                f"{result.seconds:.1f}",
            ]
        if variants:
            cells.append(_must(outcome))
        table.add_row(*cells)
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
    if outcome.kind != "spec":
        expected = " or ".join(outcome.pair.expect)
        verb = "reached" if outcome.kind == "reach" else "caught"
        if status is TLCStatus.OK:
            return text.append(
                f"not {verb}: TLC found no violation of {expected} "
                f"in {result.distinct_states:,} distinct states",
                style=outcome.style,
            )
        if status in _VIOLATIONS:
            found = "a deadlock" if status is TLCStatus.DEADLOCK else result.violated
            return text.append(
                f"not {verb}: TLC reports {found or 'an unnamed temporal property'}, "
                f"but the config declares expect-violation: {expected}"
                + ("" if found else " (list one PROPERTY per config, so TLC's report names it)"),
                style=outcome.style,
            )
        text.append(f"not {verb}: ", style=outcome.style)
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

_TRACEABLE = ("LeaseLock", "Raft", "ContractNet", "Ledger", "Auction", "AuctionOpen")


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
        "--steps",
        type=_positive_int,
        default=None,
        metavar="N",
        help="LeaseLock: steps per run (default: 80)",
    )
    trace.add_argument(
        "--duration",
        type=_positive_float,
        default=None,
        metavar="S",
        help="Raft: simulated seconds per run (default: 5); ContractNet: likewise (default: 30);"
        " Ledger: likewise (default: 20); Auction, AuctionOpen (Dutch): likewise (default: 12)",
    )
    trace.add_argument(
        "--format",
        default=None,
        metavar="F",
        help="Auction: the sealed format, first_price, second_price or uniform"
        " (default: second_price)",
    )
    trace.add_argument(
        "--ttl",
        type=_positive_int,
        default=None,
        metavar="T",
        help="LeaseLock: lease TTL in the spec's time units; with D=2, Delta=1 it must be a "
        "multiple of 3 (default: 9)",
    )
    trace.add_argument(
        "--write", type=Path, metavar="FILE", help="also save the generated trace module"
    )
    trace.add_argument(
        "--module",
        type=Path,
        metavar="FILE",
        help="check this NAMETraceData module (e.g. one --write saved) instead of generating runs",
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
    if not (directory / f"{args.name}Trace.tla").is_file():
        raise VerificationError(f"{directory} has no {args.name}Trace.tla: pass --dir")
    # each flag sizes one module's runs: refuse one that would be silently ignored
    simulated = args.name in ("Raft", "ContractNet", "Ledger", "Auction", "AuctionOpen")
    foreign = ("--steps", "--ttl") if simulated else ("--duration",)
    for flag in foreign:
        if getattr(args, flag.removeprefix("--")) is not None:
            raise VerificationError(
                f"{flag} does not apply to {args.name}'s trace runs"
                f" ({args.name} runs are sized by"
                f" {'--duration' if simulated else '--steps and --ttl'})"
            )
    if args.format is not None and args.name != "Auction":
        raise VerificationError(f"--format does not apply to {args.name}'s trace runs (Auction's)")
    if args.module is not None and args.write is not None:
        raise VerificationError("--write saves generated runs; with --module nothing is generated")
    if args.name == "Raft":
        return _trace_raft(args, directory)
    if args.name == "ContractNet":
        return _trace_contract_net(args, directory)
    if args.name == "Ledger":
        return _trace_ledger(args, directory)
    if args.name == "Auction":
        return _trace_auction(args, directory)
    if args.name == "AuctionOpen":
        return _trace_auction_open(args, directory)
    params = llt.SpecParams(ttl=9 if args.ttl is None else args.ttl)
    console = _console()
    if args.module is not None:
        text = args.module.read_text(encoding="utf-8")
        check = llt.check_trace_module(text, params, specs_dir=directory, timeout=args.timeout)
        what = str(args.module)
    else:
        traces = [
            llt.random_trace(seed, 80 if args.steps is None else args.steps, params)
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


def _trace_raft(args: argparse.Namespace, directory: Path) -> int:
    from ..verify.traces import raft as rt

    if args.module is not None:
        text = args.module.read_text(encoding="utf-8")
        check = rt.check_trace_module(text, specs_dir=directory, timeout=args.timeout)
        what = str(args.module)
    else:
        params = rt.RunParams(duration=5.0 if args.duration is None else args.duration)
        traces = [
            rt.simulated_trace(seed, params) for seed in range(args.seed, args.seed + args.traces)
        ]
        if args.write is not None:
            rt.write_trace_module(traces, args.write)
        check = rt.check_traces(traces, specs_dir=directory, timeout=args.timeout)
        what = f"{check.traces} runs (seeds {args.seed}..{args.seed + args.traces - 1}), "
        what += f"{check.steps} steps"
    return _verdict(args.name, what, check)


def _trace_contract_net(args: argparse.Namespace, directory: Path) -> int:
    from ..verify.traces import contract_net as cn

    params = cn.RunParams(duration=30.0 if args.duration is None else args.duration)
    config = cn.task_config(params.max_rounds)
    return _trace_runs(args, directory, cn, config, lambda seed: cn.simulated_trace(seed, params))


def _trace_auction(args: argparse.Namespace, directory: Path) -> int:
    from ..verify.traces import auction as at

    fmt = "second_price" if args.format is None else args.format
    if fmt not in at.SEALED_FORMATS:
        raise VerificationError(f"--format must be one of {', '.join(at.SEALED_FORMATS)}")
    params = at.RunParams(duration=12.0 if args.duration is None else args.duration)
    config = at.auction_config(fmt)
    return _trace_runs(
        args, directory, at, config, lambda seed: at.simulated_trace(seed, fmt, params)
    )


def _trace_auction_open(args: argparse.Namespace, directory: Path) -> int:
    from ..verify.traces import auction as at
    from ..verify.traces import auction_open as ao

    params = at.RunParams(duration=12.0 if args.duration is None else args.duration)
    config = ao.dutch_config()
    return _trace_runs(args, directory, ao, config, lambda seed: ao.simulated_trace(seed, params))


def _trace_runs(
    args: argparse.Namespace, directory: Path, mapping: Any, config: Any, run: Callable[[int], Any]
) -> int:
    """Check ``--module``, or ``--traces`` runs of ``run(seed)`` (saved with ``--write``),
    with a trace mapping module of verify/traces (contract-net, auctions, the ledger);
    ``config`` goes to its ``write_trace_module`` and ``check_traces`` when not None."""
    if args.module is not None:
        text = args.module.read_text(encoding="utf-8")
        check = mapping.check_trace_module(text, specs_dir=directory, timeout=args.timeout)
        what = str(args.module)
    else:
        traces = [run(seed) for seed in range(args.seed, args.seed + args.traces)]
        given = (traces,) if config is None else (traces, config)
        if args.write is not None:
            mapping.write_trace_module(*given, args.write)
        check = mapping.check_traces(*given, specs_dir=directory, timeout=args.timeout)
        what = f"{check.traces} runs (seeds {args.seed}..{args.seed + args.traces - 1}), "
        what += f"{check.steps} records"
    return _verdict(args.name, what, check)


def _trace_ledger(args: argparse.Namespace, directory: Path) -> int:
    from ..verify.traces import ledger as lt

    params = lt.RunParams(duration=20.0 if args.duration is None else args.duration)
    return _trace_runs(args, directory, lt, None, lambda seed: lt.simulated_trace(seed, params))


def _verdict(name: str, what: str, check: Any) -> int:
    console = _console()
    seconds = check.tlc.seconds
    states = check.tlc.distinct_states
    if check.accepted:
        console.print(
            f"{name}: {what}: every trace is a behaviour of the spec "
            f"({states:,} states, {seconds:.1f} s)"
        )
        return 0
    if check.violated is not None:
        where = f"trace {check.failed_trace} violates {check.violated} at step {check.failed_step}"
    elif check.failed_trace is not None:
        where = f"trace {check.failed_trace} cannot go past step {check.failed_step}"
    else:
        where = "a trace cannot be followed"
    if check.failed_action is not None and check.violated is None:
        where += f" (the next logged action, {check.failed_action}, is not allowed there)"
    console.print(f"{name}: {what}: REJECTED: {where} ({seconds:.1f} s)")
    return 1
