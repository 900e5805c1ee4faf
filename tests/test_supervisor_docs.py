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
    "supervisor.child.start careful -\n"
    "supervisor.child.start flaky -\n"
    "supervisor.child.exit flaky abnormal\n"
    "supervisor.child.start flaky -\n"
    "supervisor.child.restart flaky -\n"
    "supervisor.child.exit flaky shutdown\n"
    "supervisor.child.stop flaky 0.0 True\n"
    "supervisor.child.exit careful shutdown\n"
    "supervisor.child.stop careful 0.5 False\n"
    "supervisor.shutdown ('flaky', 'careful') [0.0, 0.5]",
]


def test_every_example_is_checked() -> None:
    assert len(BLOCKS) == len(EXPECTED)


@pytest.mark.parametrize(("code", "expected"), list(zip(BLOCKS, EXPECTED, strict=True)))
def test_example_runs(code: str, expected: str, capsys: pytest.CaptureFixture[str]) -> None:
    exec(compile(code, str(DOC), "exec"), {"__name__": "__main__"})
    assert expected in capsys.readouterr().out
