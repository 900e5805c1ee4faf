"""The Python examples in docs/linearizability.md run, and the CLI example's
output is what the command prints."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from trio_foundation.cli import main

DOC = Path(__file__).resolve().parent.parent / "docs" / "linearizability.md"


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)


@pytest.mark.parametrize("code", blocks("python"))
def test_python_examples_run(code: str) -> None:
    exec(compile(code, str(DOC), "exec"), {})


def test_cli_example_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    history = next(b for b in blocks("json") if b.count("\n") == 8)
    (tmp_path / "history.jsonl").write_text(history, encoding="utf-8")
    session = blocks("console")[0].splitlines()
    assert session[0] == "$ foundation lincheck --model cas-register history.jsonl"
    expected = session[1 : session.index("$ echo $?")]
    monkey = pytest.MonkeyPatch()
    monkey.chdir(tmp_path)
    try:
        code = main(["lincheck", "--model", "cas-register", "history.jsonl"])
    finally:
        monkey.undo()
    assert str(code) == session[-1]

    def timeless(lines: list[str]) -> list[str]:
        return [re.sub(r"\d+\.\d+ s$", "T s", line) for line in lines]

    assert timeless(capsys.readouterr().out.splitlines()) == timeless(expected)
