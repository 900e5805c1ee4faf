"""Chaos suite for the ABD register: seeded random nemeses, histories checked.

The correct register must be linearizable on every seed; each broken variant
must be caught (not linearizable) by some seed within a bounded search, and the
failing seed must replay to the same event-log digest.
"""

from __future__ import annotations

import pytest

from trio_foundation.cli.chaos import DEFAULT_FAULTS, run_chaos
from trio_foundation.verify.lincheck import check_history

SEEDS = range(12)
SEARCH = range(40)
OPS = 150


@pytest.mark.parametrize("seed", SEEDS)
def test_correct_register_is_linearizable(seed: int) -> None:
    run = run_chaos("register", seed=seed, ops=OPS)
    result = check_history(run.history, "register", timeout=30)
    assert result.verdict == "linearizable", f"replay: {run.replay}"
    assert sum(run.fault_counts.values()) > 0
    assert run.statuses["ok"] > OPS // 2


@pytest.mark.parametrize(
    ("scenario", "faults"),
    [
        ("register-stale-read", DEFAULT_FAULTS),
        ("register-lost-write", DEFAULT_FAULTS),
        ("register-split-brain", DEFAULT_FAULTS),
        ("register-split-brain", ("partition",)),
        ("register-lost-write", ("crash",)),
    ],
)
def test_broken_register_is_caught(scenario: str, faults: tuple[str, ...]) -> None:
    for seed in SEARCH:
        run = run_chaos(scenario, seed=seed, ops=OPS, faults=faults)
        result = check_history(run.history, "register", timeout=30)
        if result.verdict == "not-linearizable":
            again = run_chaos(scenario, seed=seed, ops=OPS, faults=faults)
            assert again.digest == run.digest
            assert again.history == run.history
            return
    pytest.fail(f"{scenario} with faults {faults} was not caught by seeds {SEARCH}")
