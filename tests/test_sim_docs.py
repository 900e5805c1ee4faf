"""The examples in docs/simulation.md run and print what the page says they print."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parent.parent / "docs" / "simulation.md"


def blocks() -> list[tuple[str, str]]:
    """(language, code) of every fenced block, in order."""
    return re.findall(r"```(\w+)\n(.*?)```", DOC.read_text(encoding="utf-8"), re.DOTALL)


def example(marker: str) -> tuple[str, str]:
    """The python block containing ``marker`` and the text block right after it."""
    found = blocks()
    for index, (lang, code) in enumerate(found):
        if lang == "python" and marker in code:
            lang_out, output = found[index + 1]
            assert lang_out == "text"
            return code, output
    raise AssertionError(f"no python block with {marker!r}")


def test_tiny_core_example(capsys: pytest.CaptureFixture[str]) -> None:
    code, expected = example("class Beacon")
    exec(compile(code, str(DOC), "exec"), {"__name__": "doc_example"})
    assert capsys.readouterr().out == expected


def test_trio_example(capsys: pytest.CaptureFixture[str]) -> None:
    namespace: dict[str, object] = {"__name__": "doc_example"}
    exec(compile(example("class Beacon")[0], str(DOC), "exec"), namespace)
    capsys.readouterr()
    code, expected = example("open_sim_cluster(Beacon")
    assert "trio.run(" in code
    exec(compile(code, str(DOC), "exec"), namespace)
    assert capsys.readouterr().out == expected


def test_history_example(capsys: pytest.CaptureFixture[str]) -> None:
    code = next(c for lang, c in blocks() if lang == "python" and "ClientWorkload(" in c)
    exec(compile(code, str(DOC), "exec"), {"__name__": "doc_example"})
    assert capsys.readouterr().out.splitlines()[-1] == "linearizable"


def test_chaos_sample_output(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from trio_foundation.cli import main

    monkeypatch.chdir(tmp_path)
    text = next(c for lang, c in blocks() if lang == "text" and "$ foundation chaos run" in c)
    sessions = re.findall(
        r"^\$ foundation ([^\n]*)\n(.*?)(?=^\$|\Z)", text, re.MULTILINE | re.DOTALL
    )
    assert len(sessions) == 2

    def timeless(output: str) -> str:
        return re.sub(r"\(\d+\.\d+ s", "(T s", output).strip()

    for command, expected in sessions:
        main(command.split())
        assert timeless(capsys.readouterr().out) == timeless(expected)
