"""The HTML timeline, rendered by a real browser (Debian's ``chromium``, headless).

The page ``foundation lincheck --svg OUT.html`` writes is opened in headless
chromium with a probe script appended to a copy of it. The probe asks the
browser's layout engine (not the markup) where each operation's bar was drawn,
with which computed fill and stroke, and which element is on top at the bar's
centre, and writes that into the DOM, which ``--dump-dom`` prints. The test
then checks, against the checker's own result: one section per partition,
failing first; every operation of a partition drawn, visible and in its
process's lane, real-time order kept left to right; the largest partial
linearization numbered ``#1..#n`` in linearization order; the operation that
blocks it filled red and the operations concurrent with it outlined red.

Marker ``browser``: deselected by default (like ``slow``), so the README's test
command passes on a machine without chromium; CI (``.ci/run``) installs
chromium and runs ``pytest -m browser``. When chromium is missing this test
FAILS, it does not skip: a run that asked for the browser test must not pass
without a browser.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from trio_foundation.cli import main
from trio_foundation.verify.history import read_history
from trio_foundation.verify.lincheck import Operation, check_history, pair_operations

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]

RED = "rgb(214, 39, 40)"  # the timeline's #d62728, as the browser computes it

# Appended to a copy of the page: runs after the page is laid out, and leaves
# what the layout engine computed in <pre id="probe"> for --dump-dom to print.
PROBE = """
<script>
(() => {
  const sections = [...document.querySelectorAll('section')];
  const roots = sections.length ? sections : [document.body];
  const out = [];
  for (const root of roots) {
    const svg = root.querySelector('svg');
    const heading = root.querySelector('h2');
    const box = svg.getBoundingClientRect();
    const ops = [];
    for (const g of svg.querySelectorAll('g')) {
      const rect = g.querySelector('rect');
      rect.scrollIntoView({block: 'center', inline: 'center'});
      const b = rect.getBoundingClientRect();
      const s = svg.getBoundingClientRect();
      const hit = document.elementFromPoint(b.left + b.width / 2, b.top + b.height / 2);
      const style = getComputedStyle(rect);
      ops.push({
        index: parseInt(g.dataset.op, 10),
        title: g.querySelector('title').textContent,
        label: g.querySelector('text').textContent,
        left: b.left - s.left, right: b.right - s.left,
        top: b.top - s.top, bottom: b.bottom - s.top,
        fill: style.fill, stroke: style.stroke, strokeWidth: parseFloat(style.strokeWidth),
        onTop: hit !== null && hit.closest('g') === g,
        hit: hit === null ? null : hit.tagName + ' ' + (hit.textContent || '').slice(0, 60),
      });
    }
    out.push({
      heading: heading ? heading.textContent : null,
      width: box.width, height: box.height, ops,
    });
  }
  const pre = document.createElement('pre');
  pre.id = 'probe';
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
})();
</script>
"""


def chromium() -> str:
    found = os.environ.get("CHROMIUM") or shutil.which("chromium")
    if found is None:
        pytest.fail(
            "chromium is not installed (Debian: apt-get install chromium; or set CHROMIUM "
            "to a chromium binary): the browser test cannot run without it"
        )
    return found


def render(page: Path, tmp_path: Path) -> list[dict[str, Any]]:
    """Lay ``page`` out in headless chromium and return what the probe measured."""
    probed = tmp_path / "probed.html"
    text = page.read_text(encoding="utf-8")
    assert text.count("</body>") == 1
    probed.write_text(text.replace("</body>", PROBE + "</body>"), encoding="utf-8")
    command = [
        chromium(),
        "--headless",
        "--no-sandbox",  # CI runs as root, where chromium's sandbox refuses to start
        "--disable-gpu",
        "--no-first-run",
        "--no-default-browser-check",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--window-size=1600,1200",
        "--dump-dom",
        probed.as_uri(),
    ]
    # Its own session, so a hang is ended with the whole process group it started.
    proc = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail("chromium did not finish rendering the timeline in 120 s")
    found = re.search(r'<pre id="probe">(.*?)</pre>', out, re.DOTALL)
    assert found is not None, f"chromium exited {proc.returncode} without the probe: {err[-2000:]}"
    result: list[dict[str, Any]] = json.loads(html.unescape(found.group(1)))
    return result


def keyed_history(tmp_path: Path) -> Path:
    """Three keys: 'b' is not linearizable (a stale read concurrent with a write)."""
    rows = [
        (0, "invoke", "write", "a", 1),
        (0, "ok", "write", "a", 1),
        (2, "invoke", "write", "b", 1),
        (2, "ok", "write", "b", 1),
        (1, "invoke", "read", "a", None),
        (3, "invoke", "write", "b", 2),
        (1, "ok", "read", "a", 1),
        (4, "invoke", "write", "b", 3),
        (3, "ok", "write", "b", 2),
        (4, "ok", "write", "b", 3),
        (6, "invoke", "write", "c", 7),
        (2, "invoke", "read", "b", None),
        (5, "invoke", "write", "b", 4),
        (6, "info", "write", "c", 7),
        (2, "ok", "read", "b", 1),
        (5, "ok", "write", "b", 4),
        (7, "invoke", "read", "c", None),
        (7, "ok", "read", "c", 7),
    ]
    path = tmp_path / "history.jsonl"
    path.write_text(
        "".join(
            json.dumps({"process": p, "type": t, "f": f, "key": k, "value": v}) + "\n"
            for p, t, f, k, v in rows
        ),
        encoding="utf-8",
    )
    return path


def check_section(section: dict[str, Any], ops: list[Operation], part: Any) -> None:
    drawn = {bar["index"]: bar for bar in section["ops"]}
    # Every operation of the partition is drawn once, labelled, with a bar of
    # positive size inside the drawing that a pointer at its centre reaches
    # (its tooltip), not something drawn over it.
    assert len(drawn) == len(section["ops"])
    assert set(drawn) == {op.index for op in ops}
    for op in ops:
        assert drawn[op.index]["title"] == op.describe()
    for bar in drawn.values():
        assert bar["right"] - bar["left"] > 0 and bar["bottom"] - bar["top"] > 0, bar
        assert 0 <= bar["left"] and bar["right"] <= section["width"], bar
        assert 0 <= bar["top"] and bar["bottom"] <= section["height"], bar
        assert bar["onTop"], f"{bar['title']} is hidden under {bar['hit']}"
    # One lane per process; real-time order is kept from left to right.
    for a in ops:
        for b in ops:
            bar_a, bar_b = drawn[a.index], drawn[b.index]
            assert (bar_a["top"] == bar_b["top"]) == (a.process == b.process)
            if a.complete_at is not None and a.complete_at < b.invoke_at:
                assert bar_a["right"] <= bar_b["left"], (bar_a, bar_b)
    # The largest partial linearization (the whole witness when linearizable),
    # numbered in linearization order.
    numbered = {}
    for bar in drawn.values():
        mark = re.match(r"#(\d+) ", bar["label"])
        if mark:
            numbered[int(mark.group(1))] = bar["index"]
    assert sorted(numbered) == list(range(1, len(part.linearized) + 1))
    assert [numbered[n] for n in sorted(numbered)] == [op.index for op in part.linearized]
    # The blocking operation filled red, those concurrent with it outlined red,
    # no other bar red.
    blocked = part.unplaceable[0].index if part.unplaceable else None
    outlined = {op.index for op in part.unplaceable[1:]}
    for index, bar in drawn.items():
        assert (bar["fill"] == RED) == (index == blocked), bar
        assert (bar["stroke"] == RED) == (index in outlined), bar
        if index in outlined:
            assert bar["strokeWidth"] > 1


def test_html_timeline_renders_each_partition_in_chromium(tmp_path: Path) -> None:
    history = keyed_history(tmp_path)
    page = tmp_path / "timeline.html"
    code = main(["lincheck", "--model", "cas-register", str(history), "--svg", str(page)])
    assert code == 1
    events = list(read_history(history).events)
    result = check_history(events, "cas-register")
    assert result.verdict == "not-linearizable" and result.failing_key == "b"
    assert len(result.linearized) >= 2 and len(result.unplaceable) >= 2

    sections = render(page, tmp_path)

    # One section per key, the failing key first.
    assert len(sections) == len(result.partitions) == 3
    assert sections[0]["heading"].startswith("key 'b': not-linearizable")
    by_key = {part.key: part for part in result.partitions}
    ops = pair_operations(events)
    for section in sections:
        key = re.match(r"key '(\w)'", section["heading"])
        assert key is not None, section["heading"]
        part = by_key[key.group(1)]
        assert f": {part.verdict}" in section["heading"]
        check_section(section, [op for op in ops if op.key == part.key], part)


def test_unpartitioned_timeline_renders_in_chromium(tmp_path: Path) -> None:
    rows = [
        {"process": 0, "type": "invoke", "f": "write", "value": 1},
        {"process": 1, "type": "invoke", "f": "read", "value": None},
        {"process": 0, "type": "ok", "f": "write", "value": 1},
        {"process": 1, "type": "ok", "f": "read", "value": 1},
        {"process": 0, "type": "invoke", "f": "write", "value": 2},
        {"process": 0, "type": "ok", "f": "write", "value": 2},
        {"process": 2, "type": "invoke", "f": "write", "value": 3},
        {"process": 1, "type": "invoke", "f": "read", "value": None},
        {"process": 1, "type": "ok", "f": "read", "value": 1},
        {"process": 2, "type": "ok", "f": "write", "value": 3},
    ]
    history = tmp_path / "history.jsonl"
    history.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    page = tmp_path / "timeline.html"
    assert main(["lincheck", "--model", "register", str(history), "--svg", str(page)]) == 1
    events = list(read_history(history).events)
    result = check_history(events, "register")
    assert not result.partitioned and result.unplaceable

    sections = render(page, tmp_path)

    assert len(sections) == 1 and sections[0]["heading"] is None
    check_section(sections[0], pair_operations(events), result.partitions[0])
