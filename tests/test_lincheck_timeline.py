"""SVG timelines of checked histories."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from trio_foundation.verify.history import HistoryEvent
from trio_foundation.verify.lincheck import check_history
from trio_foundation.verify.timeline import render_timeline_html, render_timeline_svg

SVG = "{http://www.w3.org/2000/svg}"


def stale_history() -> list[HistoryEvent]:
    return [
        HistoryEvent(0, "invoke", "write", 1),
        HistoryEvent(1, "invoke", "read", None),
        HistoryEvent(0, "ok", "write", 1),
        HistoryEvent(1, "ok", "read", 1),
        HistoryEvent(2, "invoke", "write", 2),
        HistoryEvent(2, "info", "write", None),
        HistoryEvent(0, "invoke", "write", 3),
        HistoryEvent(0, "fail", "write", 3),
        HistoryEvent(1, "invoke", "read", None),
        HistoryEvent(1, "ok", "read", None),
        HistoryEvent(3, "invoke", "read", None),
    ]


def test_svg_is_valid_and_has_one_lane_per_process() -> None:
    events = stale_history()
    result = check_history(events, "register")
    assert result.verdict == "not-linearizable"
    svg = render_timeline_svg(events, result)
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG}svg"
    texts = [t.text or "" for t in root.iter(f"{SVG}text")]
    for lane in ("p0", "p1", "p2", "p3"):
        assert lane in texts
    # Every operation has a labelled bar.
    assert any("write(1)" in t for t in texts)
    assert any("read() -> null" in t for t in texts)
    assert "stuck here" in texts


def test_svg_colours_by_outcome_and_marks_the_failure_red() -> None:
    events = stale_history()
    result = check_history(events, "register")
    svg = render_timeline_svg(events, result)
    root = ET.fromstring(svg)
    fills = {}
    for group in root.iter(f"{SVG}g"):
        title = group.find(f"{SVG}title")
        rect = group.find(f"{SVG}rect")
        assert title is not None and rect is not None
        fills[title.text] = rect.get("fill")
    assert fills["p1 read() -> null"] == "#d62728"  # cannot be linearized: red
    assert fills["p0 write(1) -> ok"] != fills["p0 write(3) -> fail"]
    assert fills["p2 write(2) -> info"] not in (fills["p0 write(1) -> ok"], "#d62728")
    # The linearized prefix is numbered.
    texts = [t.text or "" for t in root.iter(f"{SVG}text")]
    assert any(t.startswith("#1 ") for t in texts)


def test_labels_are_escaped() -> None:
    events = [
        HistoryEvent(0, "invoke", "write", "<&>"),
        HistoryEvent(0, "ok", "write", "<&>"),
        HistoryEvent(0, "invoke", "read", None),
        HistoryEvent(0, "ok", "read", "x"),
    ]
    result = check_history(events, "register")
    ET.fromstring(render_timeline_svg(events, result))  # parses: escaped


def test_long_history_is_windowed_around_the_failure() -> None:
    events: list[HistoryEvent] = []
    for n in range(500):
        events += [HistoryEvent(0, "invoke", "write", n), HistoryEvent(0, "ok", "write", n)]
    events += [HistoryEvent(1, "invoke", "read", None), HistoryEvent(1, "ok", "read", 3)]
    result = check_history(events, "register")
    assert result.verdict == "not-linearizable"
    svg = render_timeline_svg(events, result, max_operations=20)
    root = ET.fromstring(svg)
    bars = list(root.iter(f"{SVG}g"))
    assert len(bars) <= 21
    titles = {g.find(f"{SVG}title").text for g in bars}  # type: ignore[union-attr]
    assert "p1 read() -> 3" in titles


def test_linearizable_history_draws_too() -> None:
    events = stale_history()[:4]
    result = check_history(events, "register")
    assert result.ok
    ET.fromstring(render_timeline_svg(events, result))
    assert "<svg" in render_timeline_html(events, result)


def test_bad_window() -> None:
    events = stale_history()
    with pytest.raises(ValueError, match="max_operations must be > 0"):
        render_timeline_svg(events, check_history(events, "register"), max_operations=0)


def test_lincheck_does_not_import_the_timeline() -> None:
    # The timeline depends on the checker, never the other way round.
    import subprocess
    import sys

    code = (
        "import sys, trio_foundation.verify.lincheck;"
        "print('trio_foundation.verify.timeline' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_html_has_a_section_per_key_failing_first() -> None:
    events = [
        HistoryEvent(0, "invoke", "put", 1, key="a"),
        HistoryEvent(0, "ok", "put", 1, key="a"),
        HistoryEvent(1, "invoke", "put", 2, key="b"),
        HistoryEvent(1, "ok", "put", 2, key="b"),
        HistoryEvent(1, "invoke", "put", 3, key="b"),
        HistoryEvent(1, "ok", "put", 3, key="b"),
        HistoryEvent(0, "invoke", "get", None, key="b"),
        HistoryEvent(0, "ok", "get", 2, key="b"),
    ]
    result = check_history(events, "kv")
    assert result.verdict == "not-linearizable" and result.failing_key == "b"
    page = render_timeline_html(events, result)
    heads = [line for line in page.splitlines() if line.startswith("<section><h2>")]
    assert len(heads) == 2
    assert heads[0].startswith("<section><h2>key &#x27;b&#x27;: not-linearizable")
    # each section's timeline is a valid SVG drawing that key's operations only
    svgs = page.split("<svg")[1:]
    assert len(svgs) == 2
    first = ET.fromstring("<svg" + svgs[0].split("</svg>")[0] + "</svg>")
    titles = {t.text for t in first.iter(f"{SVG}title")}
    assert "p0 get['b']() -> 2" in titles and not any("'a'" in (t or "") for t in titles)
