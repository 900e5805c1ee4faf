"""Chaos suite for the ABD register: seeded random nemeses, histories checked.

The correct register must be linearizable on every seed; each broken variant
must be caught (not linearizable) within a bounded search of **fresh** seeds (drawn
from the operating system, each printed so it replays), and the failing seed must
replay to the same event-log digest. The share of searches that catch each variant
is measured by ``python benchmarks/catch_rates_audit.py register-chaos`` (figures in
``docs/verification.md``, "Audit: every other broken variant").
"""

from __future__ import annotations

import random

import pytest

from trio_foundation.cli.chaos import DEFAULT_FAULTS, run_chaos
from trio_foundation.verify.lincheck import check_history

SEEDS = range(12)
SEARCH_SEEDS = 40  # fresh seeds a search may use
OPS = 150

BROKEN: list[tuple[str, tuple[str, ...]]] = [
    ("register-stale-read", DEFAULT_FAULTS),
    ("register-lost-write", DEFAULT_FAULTS),
    ("register-split-brain", DEFAULT_FAULTS),
    ("register-split-brain", ("partition",)),
    ("register-lost-write", ("crash",)),
]


@pytest.mark.parametrize("seed", SEEDS)
def test_correct_register_is_linearizable(seed: int) -> None:
    run = run_chaos("register", seed=seed, ops=OPS)
    result = check_history(run.history, "register", timeout=30)
    assert result.verdict == "linearizable", f"replay: {run.replay}"
    assert sum(run.fault_counts.values()) > 0
    assert run.statuses["ok"] > OPS // 2


def search(scenario: str, faults: tuple[str, ...]) -> tuple[int | None, list[int]]:
    """One search: up to ``SEARCH_SEEDS`` fresh seeds until a history is not
    linearizable. Returns the catching seed (``None`` if none did) and the seeds tried."""
    draw = random.SystemRandom()
    tried: list[int] = []
    for _ in range(SEARCH_SEEDS):
        seed = draw.randrange(2**32)
        tried.append(seed)
        run = run_chaos(scenario, seed=seed, ops=OPS, faults=faults)
        if check_history(run.history, "register", timeout=30).verdict == "not-linearizable":
            return seed, tried
    return None, tried


@pytest.mark.parametrize(("scenario", "faults"), BROKEN)
def test_broken_register_is_caught(scenario: str, faults: tuple[str, ...]) -> None:
    seed, tried = search(scenario, faults)
    assert seed is not None, f"{scenario} with faults {faults} was not caught by seeds {tried}"
    print(f"{scenario} {faults}: caught by seed {seed} ({len(tried)} tried)")
    run = run_chaos(scenario, seed=seed, ops=OPS, faults=faults)
    again = run_chaos(scenario, seed=seed, ops=OPS, faults=faults)
    assert again.digest == run.digest
    assert again.history == run.history
