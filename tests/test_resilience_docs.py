"""The Python examples in docs/resilience.md run as written and print what the doc shows."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest
import trio.testing

DOC = Path(__file__).resolve().parent.parent / "docs" / "resilience.md"
PAIRS = re.findall(
    r"```python\n(.*?)```\s*```text\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S
)


def test_the_doc_has_its_examples() -> None:
    assert len(PAIRS) == 8


@pytest.mark.parametrize("index", range(len(PAIRS)))
def test_example_runs_and_prints_what_the_doc_shows(
    index: int, capsys: pytest.CaptureFixture[str]
) -> None:
    code, expected = PAIRS[index]
    if "import httpx" in code and importlib.util.find_spec("httpx") is None:
        pytest.skip("httpx is not installed")
    namespace: dict[str, object] = {}
    if "trio.run(main, clock=" in code:
        # the example brings its own (deterministic) clock: run it exactly as written
        exec(compile(code, str(DOC), "exec"), namespace)
    else:
        exec(compile(code.replace("trio.run(main)", ""), str(DOC), "exec"), namespace)
        trio.run(namespace["main"], clock=trio.testing.MockClock(autojump_threshold=0))  # type: ignore[arg-type]
    assert capsys.readouterr().out == expected


def test_the_shared_limiter_example_prints_the_same_as_a_user_runs_it() -> None:
    """Run as a user would (a fresh interpreter, the code as written): the numbers in
    the stored state must not depend on the wall clock."""
    (code,) = [c for c, _ in PAIRS if "SharedRateLimiter(store" in c]
    (expected,) = [e for c, e in PAIRS if c == code]
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout == expected
