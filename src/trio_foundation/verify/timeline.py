"""Timelines of checked histories, as standalone SVG (or an HTML page around it).

One lane per process; each operation is a bar from its invocation to its
completion, labelled ``f(value) -> result`` and coloured by outcome (``ok``,
``fail``, ``info``). An ``info`` operation, or one never completed, has a dashed
tail to the right edge: it may take effect at any later time. When the history
is not linearizable, the operation that could not be linearized is filled red,
the operations concurrent with it are outlined red, a red line marks its
completion (the point where the search got stuck), and the operations of the
longest linearizable prefix carry their position in it (``#1``, ``#2``, ...).
Each operation is a ``<g data-op="INDEX">`` group (``INDEX``: its
``Operation.index``) whose ``<title>`` is the browser's tooltip.

Long histories are cut to a window of operations around the failure. The
horizontal axis is event order, not wall-clock time: invocations and
completions are spaced evenly in the order the history records them.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from typing import Final

import attrs

from .history import HistoryEvent
from .lincheck import LinearizabilityResult, Operation, freeze, pair_operations

__all__ = ["render_timeline_html", "render_timeline_svg"]

_COLOURS: Final = {"ok": "#7cc47f", "fail": "#b8b8b8", "info": "#f2c84b"}
_RED: Final = "#d62728"
_UNIT: Final = 34  # pixels per event step, at least
_MAX_UNIT: Final = 140
_CHAR: Final = 7  # approximate width of one 11px monospace character
_LANE: Final = 36  # pixels per process lane
_LEFT: Final = 70
_TOP: Final = 58
_BAR: Final = 22


def _pick(
    ops: list[Operation], result: LinearizabilityResult, max_operations: int
) -> list[Operation]:
    if result.failing_key is not None:
        keyed = [op for op in ops if op.key == freeze(result.failing_key)]
        ops = keyed or ops
    if len(ops) <= max_operations:
        return ops
    if not result.unplaceable:
        return ops[:max_operations]
    wanted = {op.index for op in result.unplaceable}
    centre = next(n for n, op in enumerate(ops) if op.index == result.unplaceable[0].index)
    lo = max(0, centre - (2 * max_operations) // 3)
    window = ops[lo : lo + max_operations]
    extra = [op for op in ops if op.index in wanted and op not in window]
    return sorted(window + extra, key=lambda op: op.invoke_at)


def _label(op: Operation) -> str:
    text = op.describe()
    return text.split(" ", 1)[1] if " " in text else text


def render_timeline_svg(
    events: Sequence[HistoryEvent],
    result: LinearizabilityResult,
    *,
    max_operations: int = 60,
) -> str:
    """Draw a checked history as a standalone SVG document.

    Args:
        events: the history that was checked.
        result: what :func:`~trio_foundation.verify.lincheck.check_history` said
            about it.
        max_operations: draw at most about this many operations (a window
            around the failure, or the start of the history).

    Returns:
        The SVG document as text.

    Raises:
        ValueError: if ``max_operations`` is not positive.
    """
    if max_operations <= 0:
        raise ValueError(f"max_operations must be > 0, got {max_operations}")
    ops = _pick(pair_operations(events), result, max_operations)
    stuck = result.unplaceable[0].index if result.unplaceable else None
    concurrent = {op.index for op in result.unplaceable[1:]}
    order = {op.index: n for n, op in enumerate(result.linearized, start=1)}

    # Compress the event positions the drawn operations use into even steps.
    points = sorted(
        {op.invoke_at for op in ops} | {op.complete_at for op in ops if op.complete_at is not None}
    )
    rank = {p: n for n, p in enumerate(points)}
    labels = {op.index: _label(op) for op in ops}
    for op in ops:
        if op.index in order:
            labels[op.index] = f"#{order[op.index]} {labels[op.index]}"
    # Wide enough steps that every label fits inside its bar (within reason).
    unit = _UNIT
    for op in ops:
        steps = rank[op.complete_at] - rank[op.invoke_at] if op.complete_at is not None else 1
        unit = max(unit, min(_MAX_UNIT, (len(labels[op.index]) * _CHAR + 8) // max(steps, 1)))
    x_of = {p: _LEFT + (n + 1) * unit for n, p in enumerate(points)}
    right = _LEFT + (len(points) + 2) * unit
    processes = sorted({op.process for op in ops})
    y_of = {p: _TOP + n * _LANE for n, p in enumerate(processes)}
    width = max(right + 20, 700)
    height = _TOP + len(processes) * _LANE + 30

    title = f"{result.model}: {result.verdict}, {result.operation_count} operations"
    if result.failing_key is not None:
        title += f" (key {result.failing_key!r})"
    if len(ops) < result.operation_count:
        title += f"; showing {len(ops)}"
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="monospace" font-size="11">',
        f"<title>{escape(title)}</title>",
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="white"/>',
        f'<text x="10" y="18" font-size="13" font-weight="bold">{escape(title)}</text>',
    ]
    legend_x = 10
    for name, colour in _COLOURS.items():
        out.append(
            f'<rect x="{legend_x}" y="28" width="14" height="10" fill="{colour}" stroke="#555"/>'
            f'<text x="{legend_x + 18}" y="37">{name}</text>'
        )
        legend_x += 60
    if stuck is not None:
        out.append(
            f'<rect x="{legend_x}" y="28" width="14" height="10" fill="{_RED}"/>'
            f'<text x="{legend_x + 18}" y="37">cannot be linearized '
            f"(red outline: concurrent; #n: order in the longest linearizable prefix)</text>"
        )
    for proc in processes:
        y = y_of[proc]
        out.append(
            f'<text x="10" y="{y + _BAR // 2 + 4}">p{proc}</text>'
            f'<line x1="{_LEFT}" y1="{y + _BAR // 2}" x2="{right}" y2="{y + _BAR // 2}" '
            f'stroke="#eee"/>'
        )
    for op in ops:
        y = y_of[op.process]
        x0 = x_of[op.invoke_at]
        x1 = x_of[op.complete_at] if op.complete_at is not None else x0 + unit // 2
        fill = _RED if op.index == stuck else _COLOURS[op.status]
        stroke = _RED if op.index in concurrent else "#555"
        stroke_width = 2.5 if op.index in concurrent else 1
        label = labels[op.index]
        out.append(f'<g data-op="{op.index}"><title>{escape(op.describe())}</title>')
        if op.status == "info":
            out.append(
                f'<line x1="{x1}" y1="{y + _BAR // 2}" x2="{right}" y2="{y + _BAR // 2}" '
                f'stroke="{_COLOURS["info"]}" stroke-width="3" stroke-dasharray="6 4"/>'
            )
        out.append(
            f'<rect x="{x0}" y="{y}" width="{max(x1 - x0, 6)}" height="{_BAR}" rx="3" '
            f'fill="{fill}" stroke="{stroke}" stroke-width="{stroke_width}"/>'
        )
        colour = "white" if op.index == stuck else "black"
        out.append(
            f'<text x="{x0 + 3}" y="{y + _BAR // 2 + 4}" fill="{colour}">{escape(label)}</text></g>'
        )
    if stuck is not None:
        blocked = result.unplaceable[0]
        if blocked.complete_at is not None and blocked.complete_at in x_of:
            x = x_of[blocked.complete_at]
            out.append(
                f'<line x1="{x}" y1="{_TOP - 8}" x2="{x}" y2="{height - 20}" stroke="{_RED}" '
                f'stroke-width="2" stroke-dasharray="4 3" pointer-events="none"/>'
                f'<text x="{x + 4}" y="{height - 8}" fill="{_RED}">stuck here</text>'
            )
    out.append("</svg>")
    return "\n".join(out) + "\n"


_MAX_SECTIONS: Final = 20  # partitions drawn in one page


def render_timeline_html(
    events: Sequence[HistoryEvent],
    result: LinearizabilityResult,
    *,
    max_operations: int = 60,
) -> str:
    """The timeline of :func:`render_timeline_svg` in a minimal HTML page.

    A history checked key by key gets one section per key (the failing or
    undecided ones first, at most 20), each with its own timeline: the
    longest partial linearization found for that key numbered in order, the
    operation that blocks it in red and those concurrent with it outlined.

    Args:
        events: the history that was checked.
        result: the checker's result for it.
        max_operations: as for :func:`render_timeline_svg`, per section.

    Returns:
        The HTML document as text.
    """
    lines = [f"<li>{escape(op.describe())}</li>" for op in result.unplaceable]
    failure = f"<p>Could not be linearized:</p><ul>{''.join(lines)}</ul>" if lines else ""
    if not result.partitioned:
        body = render_timeline_svg(events, result, max_operations=max_operations)
    else:
        rank = {"not-linearizable": 0, "unknown": 1, "linearizable": 2}
        parts = sorted(result.partitions, key=lambda p: rank[p.verdict])[:_MAX_SECTIONS]
        sections = []
        for part in parts:
            view = attrs.evolve(
                result,
                verdict=part.verdict,
                failing_key=part.key,
                linearized=part.linearized,
                unplaceable=part.unplaceable,
                reason=part.reason,
            )
            why = f" ({part.reason})" if part.reason else ""
            sections.append(
                f"<section><h2>key {escape(repr(part.key))}: {escape(part.verdict)}{escape(why)}, "
                f"{part.operation_count} operations</h2>\n"
                f"{render_timeline_svg(events, view, max_operations=max_operations)}</section>\n"
            )
        more = len(result.partitions) - len(parts)
        tail = f"<p>{more} more keys not drawn.</p>\n" if more > 0 else ""
        body = "".join(sections) + tail
    return (
        "<!DOCTYPE html>\n<html><head><meta charset='utf-8'>"
        f"<title>lincheck: {escape(result.verdict)}</title></head>\n"
        f"<body style='font-family: sans-serif'>\n<h1>{escape(result.model)}: "
        f"{escape(result.verdict)}</h1>\n{failure}\n{body}</body></html>\n"
    )
