"""The Python examples in docs/supervision.md run and print what the text says."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parent.parent / "docs" / "supervision.md"
BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)

EXPECTED = [
    "[('db', 'running'), ('cache', 'running'), ('job', 'running')]",
    "conn 3",
    "flushed",
    "careful stopped\nKeyboardInterrupt, unwrapped",
    "already at max_children=2",
    "['db', 'api'] {'dsn': 'memory://'} 8080 {'db': True, 'api': True}",
]


def test_every_example_is_checked() -> None:
    assert len(BLOCKS) == len(EXPECTED)


@pytest.mark.parametrize(("code", "expected"), list(zip(BLOCKS, EXPECTED, strict=True)))
def test_example_runs(code: str, expected: str, capsys: pytest.CaptureFixture[str]) -> None:
    exec(compile(code, str(DOC), "exec"), {"__name__": "__main__"})
    assert expected in capsys.readouterr().out
