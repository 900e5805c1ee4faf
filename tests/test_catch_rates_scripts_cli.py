"""The command lines of ``benchmarks/catch_rates_{lease_lock,supervisor,raft,audit}.py``: bad
counts and unknown variants are refused with a one-line error naming the flag (exit 2)
before anything runs; they had ended in ``ZeroDivisionError`` or ``ValueError``
tracebacks, or measured nothing and exited 0."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("script", "args", "message"),
    [
        ("lease_lock", ("--searches", "0"), "--searches must be at least 1, got 0"),
        ("supervisor", ("--searches", "0"), "--searches must be at least 1, got 0"),
        ("raft", ("--runs", "-1"), "--runs must be at least 0, got -1"),
        ("raft", ("--runs", "1", "--variant", "nope"), "unknown --variant nope: one of correct, "),
        ("audit", ("small", "--searches", "0"), "--searches must be at least 1, got 0"),
        ("audit", ("small", "--only", "nosuchword"), "--only nosuchword matches none of "),
    ],
)  # fmt: skip
def test_bad_arguments_are_refused_naming_the_flag(
    script: str, args: tuple[str, ...], message: str
) -> None:
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / f"catch_rates_{script}.py"), *args],
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"catch_rates_{script}.py: error: {message}"), last
    assert "Traceback" not in done.stderr
