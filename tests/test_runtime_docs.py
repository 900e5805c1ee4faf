"""The examples in docs/runtime.md run and print what the page says they print."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parent.parent / "docs" / "runtime.md"


def example(marker: str) -> tuple[str, str]:
    """The python block containing ``marker`` and the text block right after it."""
    found = re.findall(r"```(\w+)\n(.*?)```", DOC.read_text(encoding="utf-8"), re.DOTALL)
    for index, (lang, code) in enumerate(found):
        if lang == "python" and marker in code:
            lang_out, output = found[index + 1]
            assert lang_out == "text"
            return code, output
    raise AssertionError(f"no python block with {marker!r}")


@pytest.mark.parametrize(
    "marker",
    [
        "class Ping(WireMessage",
        "TokenBlocks(LoggedState",
        "class Wire:",
        "def in_process():",
        "serve_lock_service((",
    ],
)
def test_example_runs_as_written(marker: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, expected = example(marker)
    exec(compile(code, str(DOC), "exec"), {"__name__": "doc_example"})
    assert capsys.readouterr().out == expected
