"""The Market's auction example in docs/auctions.md runs as written and prints what it says."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import trio.testing

DOC = Path(__file__).resolve().parent.parent / "docs" / "auctions.md"


def test_the_market_auction_example_prints_what_the_doc_says(
    capsys: pytest.CaptureFixture[str],
) -> None:
    text = DOC.read_text(encoding="utf-8")
    section = text[text.index("## Auctions through the Market") :]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    shown = re.search(r"prints\n\n```\n(.*?)```", section, re.S)
    assert code is not None and shown is not None
    namespace: dict[str, object] = {}
    exec(compile(code.group(1).replace("trio.run(main)", ""), str(DOC), "exec"), namespace)
    trio.run(namespace["main"], clock=trio.testing.MockClock(autojump_threshold=0))  # type: ignore[arg-type]
    assert capsys.readouterr().out == shown.group(1)


def test_the_open_market_auction_example_prints_what_the_doc_says(
    capsys: pytest.CaptureFixture[str],
) -> None:
    text = DOC.read_text(encoding="utf-8")
    section = text[text.index("### English and Dutch through the Market") :]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    shown = re.search(r"prints\n\n```\n(.*?)```", section, re.S)
    assert code is not None and shown is not None
    assert 'format="english"' in code.group(1) and 'format="dutch"' in code.group(1)
    namespace: dict[str, object] = {}
    exec(compile(code.group(1).replace("trio.run(main)", ""), str(DOC), "exec"), namespace)
    trio.run(namespace["main"], clock=trio.testing.MockClock(autojump_threshold=0))  # type: ignore[arg-type]
    assert capsys.readouterr().out == shown.group(1)
