"""``foundation lincheck``: check a recorded history for linearizability.

Exit codes: 0 linearizable, 1 not linearizable, 3 unknown (timeout or state
bound reached), 2 bad input (unknown model, malformed or empty history,
unreadable or binary file) — the last through the dispatcher, as one line on
stderr. A timeline (``--svg``) that cannot be written is a warning on stderr;
the exit status stays the verdict's. A standard output closed by its reader
(``foundation lincheck ... | head``) is not an error either: the rest of the
report is dropped quietly and the exit status stays the verdict's.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
from pathlib import Path
from typing import Any, Final

from ..verify.history import (
    FORMATS,
    HistoryError,
    HistoryEvent,
    looks_independent,
    read_history,
    split_independent,
)
from ..verify.lincheck import (
    DEFAULT_MAX_STATES,
    MODELS,
    LinearizabilityResult,
    Operation,
    check_history,
    resolve_model,
)
from ..verify.timeline import render_timeline_html, render_timeline_svg

__all__ = ["EXIT_LINEARIZABLE", "EXIT_NOT_LINEARIZABLE", "EXIT_UNKNOWN", "register"]

EXIT_LINEARIZABLE: Final = 0
EXIT_NOT_LINEARIZABLE: Final = 1
EXIT_UNKNOWN: Final = 3

_SHOW_PREFIX: Final = 8  # linearized operations shown before the failure


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add the ``lincheck`` command to the top-level parser.

    Args:
        subparsers: the ``foundation`` parser's sub-command collection.
    """
    models = "\n".join(f"  {m.name:<13} {m.description}" for m in MODELS.values())
    parser = subparsers.add_parser(
        "lincheck",
        help="check a history (JSON Lines, Jepsen EDN or log) for linearizability",
        description=(
            "Check a Jepsen-style history for linearizability against a sequential model.\n"
            "Reads JSON Lines, Jepsen's history.edn and Jepsen's text logs (detected from\n"
            "the content; --format to force one). Operations with a 'key' are checked key\n"
            "by key.\n"
            "Exit status: 0 linearizable, 1 not linearizable, 3 unknown (timeout or\n"
            "--max-states reached), 2 bad input."
        ),
        epilog=f"models:\n{models}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("history", metavar="HISTORY", help="the history file")
    parser.add_argument(
        "--format",
        choices=FORMATS,
        help="the history's format (default: detected from the content)",
    )
    parser.add_argument(
        "--independent",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="values are jepsen.independent [key value] pairs: split them and check key "
        "by key (default: when the history is unambiguously so, i.e. every invocation and "
        "ok completion is a pair and the reads too)",
    )
    parser.add_argument(
        "--initial",
        metavar="JSON",
        help="the initial value of the register or of every key (default: the model's, "
        "e.g. null); --model kv --initial '\"\"' is Porcupine's key-value model",
    )
    parser.add_argument(
        "--model", required=True, metavar="MODEL", help=f"one of: {', '.join(MODELS)}"
    )
    parser.add_argument(
        "--timeout", type=float, metavar="S", help="give up after S seconds (verdict unknown)"
    )
    parser.add_argument(
        "--max-states",
        type=int,
        default=DEFAULT_MAX_STATES,
        metavar="N",
        help=f"bound on cached search states per key (default {DEFAULT_MAX_STATES})",
    )
    parser.add_argument(
        "--svg",
        metavar="OUT",
        help="write the timeline around the failure to OUT (.svg, or .html for a page)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Run ``foundation lincheck``.

    Args:
        args: the parsed command line.

    Returns:
        0 linearizable, 1 not linearizable, 3 unknown.

    Raises:
        ValueError: for bad input (unknown model, malformed history, bad bounds);
            the dispatcher prints it as one line and exits 2.
        OSError: if the history cannot be read or the timeline written.
    """
    model = resolve_model(args.model)  # ValueError lists the known models
    if args.timeout is not None and not args.timeout > 0:
        raise ValueError(f"--timeout must be > 0, got {args.timeout}")
    if args.max_states <= 0:
        raise ValueError(f"--max-states must be > 0, got {args.max_states}")
    if args.initial is not None:
        try:
            initial = json.loads(args.initial)
        except json.JSONDecodeError as exc:
            raise ValueError(f"--initial must be JSON, got {args.initial!r} ({exc.msg})") from None
        try:
            model = model.with_initial(initial)
        except ValueError as exc:
            raise ValueError(f"--initial: {exc}") from None
    loaded = read_history(args.history, format=args.format)
    events = list(loaded.events)
    if not events:
        skipped = f" ({loaded.skipped} non-client entries skipped)" if loaded.skipped else ""
        raise ValueError(f"{args.history}: the history has no operations to check{skipped}")
    line_of = list(loaded.lines)
    independent = args.independent
    if independent is None:
        independent = looks_independent(events)
        split_note = "detected; --no-independent to check the values whole"
    else:
        split_note = "--independent"
    if independent:
        try:
            events = list(split_independent(events, line_of))
        except HistoryError as exc:
            where = f"{args.history} line {exc.line}" if exc.line else args.history
            raise ValueError(f"{where}: {str(exc).removeprefix(f'line {exc.line}: ')}") from None
        keys = len({ev.key for ev in events})
        split_note = (
            f"values split as jepsen.independent [key value] pairs, {keys} keys ({split_note})"
        )
    else:
        split_note = ""
    result = check_history(events, model, timeout=args.timeout, max_states=args.max_states)
    # The timeline is written before the report is printed, so that a reader
    # that leaves early (`| head`) does not cost the user the file.
    written = _write_timeline(args.svg, events, result) if args.svg else None
    try:
        _report(args, model.name, result, line_of, written, split_note, sys.stdout)
        sys.stdout.flush()
    except BrokenPipeError:
        _stdout_gone()
    if result.verdict == "not-linearizable":
        return EXIT_NOT_LINEARIZABLE
    if result.verdict == "unknown":
        return EXIT_UNKNOWN
    return EXIT_LINEARIZABLE


def _report(
    args: argparse.Namespace,
    model: str,
    result: LinearizabilityResult,
    line_of: list[int],
    written: str | None,
    split_note: str,
    out: Any,
) -> None:
    print(_summary(result), file=out)
    if split_note:
        print(split_note, file=out)
    treated = _treated(result)
    if treated:
        print(treated, file=out)
    if result.verdict == "not-linearizable":
        _print_failure(result, line_of, out)
        if not args.svg:
            print(
                f"to draw the timeline: foundation lincheck --model {model} "
                f"{args.history} --svg timeline.svg",
                file=out,
            )
    if written is not None:
        print(f"timeline written to {written}", file=out)
    if result.verdict == "unknown":
        why = (
            f"timed out after {args.timeout:g} s"
            if result.reason == "timeout"
            else f"reached --max-states {args.max_states}"
        )
        key = "" if result.failing_key is None else f" on key {result.failing_key!r}"
        print(f"undecided: the search {why}{key}", file=out)


def _stdout_gone() -> None:
    # The reader of standard output has gone (`foundation lincheck ... | head`):
    # the rest of the report is lost, nothing else is wrong, and the exit status
    # stays the verdict's. Standard output is pointed at /dev/null so that the
    # interpreter's last flush at exit does not fail again (the recipe of
    # Python's documentation, "Note on SIGPIPE" in the signal module).
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, ValueError, io.UnsupportedOperation):
        return  # not a real file (a test's capture): nothing is flushed at exit
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)


def _summary(result: LinearizabilityResult) -> str:
    parts = f", {len(result.partitions)} keys" if result.partitioned else ""
    return (
        f"{result.verdict}: model {result.model}, {result.operation_count} operations{parts}, "
        f"{result.states} states, {result.seconds:.3f} s"
    )


def _treated(result: LinearizabilityResult) -> str:
    t = result.treated
    parts = []
    if t.indeterminate:
        parts.append(f"{t.indeterminate} indeterminate (info) operations left pending for ever")
    if t.reincarnated:
        parts.append(
            f"{t.reincarnated} operations of a process number reused after its crash "
            "counted as a fresh process"
        )
    if t.ignored:
        parts.append(f"{t.ignored} failed or timed-out operations ignored as having no effect")
    return "crash semantics: " + "; ".join(parts) if parts else ""


def _where(op: Operation, line_of: list[int]) -> str:
    start = line_of[op.invoke_at]
    if not start:
        return f"operation {op.index + 1}"
    if op.complete_at is None:
        return f"line {start}, never completed"
    return f"lines {start}-{line_of[op.complete_at]}"


def _print_failure(result: LinearizabilityResult, line_of: list[int], out: Any) -> None:
    if result.failing_key is not None:
        print(f"key {result.failing_key!r} is not linearizable", file=out)
    if not result.unplaceable:
        return
    first, *concurrent = result.unplaceable
    print(f"cannot linearize: {first.describe()}  ({_where(first, line_of)})", file=out)
    if result.reason == "stale":
        after, *setter = concurrent
        print(
            "  a stale value: every operation that can set it had returned when\n"
            f"  {after.describe()}  ({_where(after, line_of)})\n"
            "  began, which left another value and returned before it began",
            file=out,
        )
        for op in setter:
            print(f"  the last to set it: {op.describe()}  ({_where(op, line_of)})", file=out)
        if not setter:
            print("  (it is the initial value)", file=out)
        return
    if result.reason == "forced-order":
        if concurrent and concurrent[-1] == first:  # a cycle, closed
            print(
                "  it must come before itself: real time and the reads of values only\n"
                "  one operation writes order it in a cycle:",
                file=out,
            )
            for op in concurrent:
                print(f"  => {op.describe()}  ({_where(op, line_of)})", file=out)
            return
        after, *setters = concurrent
        print(
            "  a stale value: every operation that can set it must come before\n"
            f"  {after.describe()}  ({_where(after, line_of)})\n"
            "  which leaves another value and must come before it (forced by real time\n"
            "  and by the reads of values only one operation writes)",
            file=out,
        )
        for op in setters:
            print(f"  setting it: {op.describe()}  ({_where(op, line_of)})", file=out)
        if not setters:
            print("  (it is the initial value)", file=out)
        return
    if result.reason == "lost" and concurrent:
        grower = concurrent[0]
        print(
            "  a lost update: it does not show the effect of\n"
            f"  {grower.describe()}  ({_where(grower, line_of)})\n"
            "  which returned before it began, and nothing that could undo that effect\n"
            "  can come between them",
            file=out,
        )
        return
    if result.reason == "impossible":
        print(
            "  no order of this history's operations reaches a state that allows it",
            file=out,
        )
        return
    for op in concurrent:
        print(f"  concurrent with: {op.describe()}  ({_where(op, line_of)})", file=out)
    lin = result.linearized
    print(f"after the longest linearizable prefix found ({len(lin)} operations):", file=out)
    if len(lin) > _SHOW_PREFIX:
        print(f"  ... {len(lin) - _SHOW_PREFIX} earlier operations", file=out)
    for op in lin[-_SHOW_PREFIX:]:
        print(f"  {op.describe()}  ({_where(op, line_of)})", file=out)


def _write_timeline(
    path: str, events: list[HistoryEvent], result: LinearizabilityResult
) -> str | None:
    # The verdict is decided: a timeline that cannot be written is a warning,
    # and the exit status stays the verdict's. Returns the path written, if any.
    if path.endswith((".html", ".htm")):
        text = render_timeline_html(events, result)
    else:
        text = render_timeline_svg(events, result)
    try:
        Path(path).write_text(text, encoding="utf-8")
    except OSError as exc:
        print(f"foundation: warning: cannot write the timeline to {path}: {exc}", file=sys.stderr)
        return None
    return path
