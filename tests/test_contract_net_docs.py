"""The Python examples in docs/contract-net.md run as written and print what it says."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import trio.testing

DOC = Path(__file__).resolve().parent.parent / "docs" / "contract-net.md"


def _blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)


def test_the_market_example_prints_what_the_doc_says(capsys: pytest.CaptureFixture[str]) -> None:
    code = _blocks()[0].replace("trio.run(main)", "")
    namespace: dict[str, object] = {}
    exec(compile(code, str(DOC), "exec"), namespace)
    trio.run(namespace["main"], clock=trio.testing.MockClock(autojump_threshold=0))  # type: ignore[arg-type]
    printed = capsys.readouterr().out
    shown = re.search(r"prints\n\n```\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    assert shown is not None
    assert printed == shown.group(1)


def test_the_reputation_example_prints_what_the_doc_says(
    capsys: pytest.CaptureFixture[str],
) -> None:
    exec(compile(_blocks()[1], str(DOC), "exec"), {})
    assert capsys.readouterr().out == "0.6 0.5\n"
    assert "prints `0.6 0.5`" in DOC.read_text(encoding="utf-8")
