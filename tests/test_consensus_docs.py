"""The examples of docs/consensus.md (Raft node API), docs/leader-election.md and
docs/lease-lock.md (the lock service on Raft) run."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"


def example(doc: str, name: str) -> str:
    blocks = re.findall(r"```python\n(.*?)```", (DOCS / doc).read_text(encoding="utf-8"), re.S)
    found = [b for b in blocks if b.startswith(f"# example: {name}\n")]
    assert found, f"docs/{doc} lost its {name} example"
    return str(found[0])


@pytest.mark.parametrize(
    ("doc", "name", "expected"),
    [
        ("consensus.md", "raft-node", "leader elected: True\n5\n5\n"),
        ("leader-election.md", "leadership", "bodies running: 1\n"),
        ("lease-lock.md", "raft-lock", "token is the grant's log index: True\n"),
    ],
)
def test_example_runs(
    doc: str, name: str, expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    exec(compile(example(doc, name), str(DOCS / doc), "exec"), {"__name__": "__main__"})
    assert capsys.readouterr().out == expected
