"""The Python examples in docs/lease-lock.md run as written."""

from __future__ import annotations

import re
from pathlib import Path

import trio.testing

DOC = Path(__file__).resolve().parent.parent / "docs" / "lease-lock.md"


def test_the_first_example_runs(capsys: object) -> None:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    assert blocks, "docs/lease-lock.md lost its example"
    code = blocks[0].replace("trio.run(main)", "")
    namespace: dict[str, object] = {}
    exec(compile(code, str(DOC), "exec"), namespace)
    trio.run(namespace["main"], clock=trio.testing.MockClock(autojump_threshold=0))  # type: ignore[arg-type]
    out = capsys.readouterr().out  # type: ignore[attr-defined]
    assert "holding token 1 until" in out
