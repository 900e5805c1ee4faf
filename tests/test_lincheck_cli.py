"""``foundation lincheck``: exit codes, output, and the timeline file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from trio_foundation.cli import main

LINEARIZABLE = [
    {"process": 0, "type": "invoke", "f": "write", "value": 1},
    {"process": 1, "type": "invoke", "f": "read", "value": None},
    {"process": 0, "type": "ok", "f": "write", "value": 1},
    {"process": 1, "type": "ok", "f": "read", "value": 1},
]
STALE = [
    *LINEARIZABLE,
    {"process": 0, "type": "invoke", "f": "cas", "value": [1, 2]},
    {"process": 0, "type": "ok", "f": "cas", "value": [1, 2]},
    {"process": 1, "type": "invoke", "f": "read", "value": None},
    {"process": 1, "type": "ok", "f": "read", "value": 1},
]


def write(tmp_path: Path, rows: list[dict[str, Any]], name: str = "history.jsonl") -> str:
    path = tmp_path / name
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def test_linearizable_exits_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, LINEARIZABLE)
    assert main(["lincheck", "--model", "register", path]) == 0
    out = capsys.readouterr().out
    assert out.startswith("linearizable: model register, 2 operations, ")
    assert out.rstrip().endswith(" s")


def test_not_linearizable_exits_1_and_names_the_operation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, STALE)
    assert main(["lincheck", "--model", "cas-register", path]) == 1
    out = capsys.readouterr().out
    assert "not-linearizable: model cas-register, 4 operations" in out
    assert "cannot linearize: p1 read() -> 1  (lines 7-8)" in out
    assert "longest linearizable prefix found (3 operations)" in out
    assert "p0 cas([1, 2]) -> ok  (lines 5-6)" in out
    assert "--svg timeline.svg" in out


def test_svg_written_on_failure(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, STALE)
    svg = tmp_path / "t.svg"
    assert main(["lincheck", "--model", "cas-register", path, "--svg", str(svg)]) == 1
    assert f"timeline written to {svg}" in capsys.readouterr().out
    root = ET.parse(svg).getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg"


def test_html_timeline(tmp_path: Path) -> None:
    path = write(tmp_path, STALE)
    page = tmp_path / "t.html"
    assert main(["lincheck", "--model", "cas-register", path, "--svg", str(page)]) == 1
    text = page.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>") and "<svg" in text


def test_forced_order_is_explained(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows: list[dict[str, Any]] = [
        {"process": p, "type": "invoke", "f": "write", "value": p} for p in range(40)
    ]
    rows += [{"process": p, "type": "ok", "f": "write", "value": p} for p in range(40)]
    rows += [{"process": 40 + i, "type": "invoke", "f": "read"} for i in (0, 1)]
    rows += [{"process": 40 + i, "type": "ok", "f": "read", "value": 1 - i} for i in (0, 1)]
    path = write(tmp_path, rows)
    assert main(["lincheck", "--model", "register", path]) == 1
    out = capsys.readouterr().out
    assert out.startswith("not-linearizable: ")
    assert "it must come before itself" in out
    # the cycle, closed, with the lines of each operation
    assert "  => p1 write(1) -> ok  (lines 2-42)\n" in out
    assert "  => p41 read() -> 0  (lines 82-84)\n  => p0 write(0) -> ok  (lines 1-41)\n" in out


def test_unknown_exits_3(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    writers = 40
    half = writers // 2
    rows: list[dict[str, Any]] = [
        {"process": p, "type": "invoke", "f": "write", "value": p % half} for p in range(writers)
    ]
    rows += [{"process": p, "type": "ok", "f": "write", "value": p % half} for p in range(writers)]
    # two concurrent reads of 1 and 0 after the writes: impossible, but only a
    # full search knows (each value is written twice: no read pins its writer)
    rows += [{"process": writers + i, "type": "invoke", "f": "read"} for i in (0, 1)]
    rows += [{"process": writers + i, "type": "ok", "f": "read", "value": 1 - i} for i in (0, 1)]
    path = write(tmp_path, rows)
    assert main(["lincheck", "--model", "register", path, "--max-states", "500"]) == 3
    out = capsys.readouterr().out
    assert out.startswith("unknown: ")
    assert "undecided: the search reached --max-states 500" in out
    assert (
        main(
            [
                "lincheck",
                "--model",
                "register",
                path,
                "--timeout",
                "0.05",
                "--max-states",
                "100000000",
            ]
        )
        == 3
    )
    assert "undecided: the search timed out after 0.05 s" in capsys.readouterr().out


def test_unknown_model_exits_2_listing_models(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, LINEARIZABLE)
    assert main(["lincheck", "--model", "registr", path]) == 2
    err = capsys.readouterr().err
    assert err == (
        "foundation: error: unknown model 'registr'; known models: "
        "register, cas-register, mutex, fifo-queue, queue, unordered-queue, set, kv, lock, "
        "counter\n"
    )


def test_malformed_line_exits_2_with_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "history.jsonl"
    lines = [json.dumps(r) for r in LINEARIZABLE[:3]]
    lines.insert(1, "")  # blank lines still count
    lines.append('{"process": 1, "type": "ok", "f": "read", "value": 1')
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert main(["lincheck", "--model", "register", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"foundation: error: {path} line 5: not valid JSON")
    assert err.count("\n") == 1


def test_history_rule_break_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = [LINEARIZABLE[0], LINEARIZABLE[0]]
    path = write(tmp_path, rows)
    assert main(["lincheck", "--model", "register", path]) == 2
    err = capsys.readouterr().err
    assert "history.jsonl line 2: process 0 invoked 'write' while 'write' is outstanding" in err


def test_operation_unknown_to_the_model_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, STALE)
    assert main(["lincheck", "--model", "register", path]) == 2
    assert "model 'register' has no operation 'cas'" in capsys.readouterr().err


def test_missing_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lincheck", "--model", "register", str(tmp_path / "nope.jsonl")]) == 2
    assert "No such file" in capsys.readouterr().err


def test_bad_bounds_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, LINEARIZABLE)
    assert main(["lincheck", "--model", "register", path, "--timeout", "0"]) == 2
    assert main(["lincheck", "--model", "register", path, "--max-states", "-1"]) == 2
    err = capsys.readouterr().err
    assert "--timeout must be > 0" in err and "--max-states must be > 0" in err


def test_impossible_operation_is_explained(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [*LINEARIZABLE[:3], {"process": 1, "type": "ok", "f": "read", "value": 9}]
    path = write(tmp_path, rows)
    assert main(["lincheck", "--model", "register", path]) == 1
    out = capsys.readouterr().out
    assert "cannot linearize: p1 read() -> 9  (lines 2-4)" in out
    assert "no order of this history's operations reaches a state that allows it" in out
    assert "prefix" not in out


def test_kv_failure_names_the_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = [
        {"process": 0, "type": "invoke", "f": "put", "key": "x", "value": 1},
        {"process": 0, "type": "ok", "f": "put", "key": "x", "value": 1},
        {"process": 0, "type": "invoke", "f": "get", "key": "x", "value": None},
        {"process": 0, "type": "ok", "f": "get", "key": "x", "value": 2},
    ]
    path = write(tmp_path, rows)
    assert main(["lincheck", "--model", "kv", path]) == 1
    out = capsys.readouterr().out
    assert "1 keys" in out and "key 'x' is not linearizable" in out


def run_into_closed_pipe(args: list[str]) -> subprocess.CompletedProcess[str]:
    """Run ``foundation ARGS`` with its standard output a pipe whose reader has gone."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader left before the command wrote anything (`| head -0`)
    try:
        return subprocess.run(
            [sys.executable, "-m", "trio_foundation.cli", *args],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
    finally:
        os.close(write_end)


@pytest.mark.parametrize(
    ("rows", "model", "code"), [(LINEARIZABLE, "register", 0), (STALE, "cas-register", 1)]
)
def test_closed_stdout_is_not_an_error(
    tmp_path: Path, rows: list[dict[str, Any]], model: str, code: int
) -> None:
    path = write(tmp_path, rows)
    page = tmp_path / "t.html"
    done = run_into_closed_pipe(["lincheck", "--model", model, path, "--svg", str(page)])
    assert done.returncode == code, done.stderr
    assert done.stderr == ""  # no "Broken pipe", no "Exception ignored"
    assert page.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")  # still written


def test_lost_append_is_explained(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = [
        {"process": 0, "type": "invoke", "f": "append", "key": "k", "value": "a"},
        {"process": 0, "type": "ok", "f": "append", "key": "k", "value": "a"},
        {"process": 1, "type": "invoke", "f": "append", "key": "k", "value": "b"},
        {"process": 1, "type": "ok", "f": "append", "key": "k", "value": "b"},
        {"process": 2, "type": "invoke", "f": "get", "key": "k", "value": None},
        {"process": 2, "type": "ok", "f": "get", "key": "k", "value": "a"},
    ]
    path = write(tmp_path, rows)
    assert main(["lincheck", "--model", "kv", "--initial", '""', path]) == 1
    out = capsys.readouterr().out
    assert (
        "cannot linearize: p2 get['k']() -> 'a'  (lines 5-6)\n"
        "  a lost update: it does not show the effect of\n"
        "  p1 append['k']('b') -> ok  (lines 3-4)\n"
        "  which returned before it began, and nothing that could undo that effect\n"
        "  can come between them\n"
    ) in out
