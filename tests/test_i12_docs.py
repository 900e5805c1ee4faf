"""The Python examples in docs/registry.md, docs/messaging.md and docs/telemetry.md run
as written and print what the docs say they print."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import trio

DOCS = Path(__file__).resolve().parent.parent / "docs"


def _example(doc: str) -> tuple[str, str]:
    text = (DOCS / doc).read_text(encoding="utf-8")
    match = re.search(r"```python\n(.*?)```\n\nprints\n\n```\n(.*?)```", text, re.S)
    assert match, f"docs/{doc} lost its example"
    return match.group(1), match.group(2)


@pytest.mark.parametrize("doc", ["registry.md", "messaging.md", "telemetry.md"])
def test_the_example_runs_and_prints_what_the_doc_says(
    doc: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, expected = _example(doc)
    code = code.replace("trio.run(main)", "")
    namespace: dict[str, object] = {}
    exec(compile(code, str(DOCS / doc), "exec"), namespace)
    trio.run(namespace["main"], clock=trio.testing.MockClock(autojump_threshold=0))  # type: ignore[arg-type]
    assert capsys.readouterr().out == expected
