"""``foundation lincheck``: check a recorded history for linearizability.

Exit codes: 0 linearizable, 1 not linearizable, 3 unknown (timeout or state
bound reached), 2 bad input (unknown model, malformed history, unreadable
file) — the last through the dispatcher, as one line on stderr.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Final

from ..verify.history import HistoryError, HistoryEvent, parse_history
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
        help="check a history (JSON Lines) for linearizability",
        description=(
            "Check a Jepsen-style history for linearizability against a sequential model.\n"
            "Exit status: 0 linearizable, 1 not linearizable, 3 unknown (timeout or\n"
            "--max-states reached), 2 bad input."
        ),
        epilog=f"models:\n{models}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("history", metavar="HISTORY.jsonl", help="the history file")
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


def _load(path: str) -> tuple[list[HistoryEvent], list[int]]:
    text = Path(path).read_text(encoding="utf-8")
    lines = text.splitlines()
    try:
        events = parse_history(lines)
    except HistoryError as exc:
        raise ValueError(f"{path} {exc}" if exc.line else f"{path}: {exc}") from None
    numbers = [n for n, line in enumerate(lines, start=1) if line.strip()]
    return events, numbers


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
    events, line_of = _load(args.history)
    result = check_history(events, model, timeout=args.timeout, max_states=args.max_states)
    out = sys.stdout
    print(_summary(result), file=out)
    if result.verdict == "not-linearizable":
        _print_failure(result, line_of, out)
        if args.svg:
            _write_timeline(args.svg, events, result)
            print(f"timeline written to {args.svg}", file=out)
        else:
            print(
                f"to draw the timeline: foundation lincheck --model {model.name} "
                f"{args.history} --svg timeline.svg",
                file=out,
            )
        return EXIT_NOT_LINEARIZABLE
    if args.svg:
        _write_timeline(args.svg, events, result)
        print(f"timeline written to {args.svg}", file=out)
    if result.verdict == "unknown":
        why = (
            f"timed out after {args.timeout:g} s"
            if result.reason == "timeout"
            else f"reached --max-states {args.max_states}"
        )
        key = "" if result.failing_key is None else f" on key {result.failing_key!r}"
        print(f"undecided: the search {why}{key}", file=out)
        return EXIT_UNKNOWN
    return EXIT_LINEARIZABLE


def _summary(result: LinearizabilityResult) -> str:
    parts = f", {len(result.partitions)} keys" if result.partitioned else ""
    return (
        f"{result.verdict}: model {result.model}, {result.operation_count} operations{parts}, "
        f"{result.states} states, {result.seconds:.3f} s"
    )


def _where(op: Operation, line_of: list[int]) -> str:
    start = line_of[op.invoke_at]
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


def _write_timeline(path: str, events: list[HistoryEvent], result: LinearizabilityResult) -> None:
    if path.endswith((".html", ".htm")):
        text = render_timeline_html(events, result)
    else:
        text = render_timeline_svg(events, result)
    Path(path).write_text(text, encoding="utf-8")
