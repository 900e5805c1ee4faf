"""TLC checks of specs/Supervisor.tla: every config passes, every mutant in
specs/broken/ is caught naming the invariant its config declares, and every
reachability config in specs/reach/ reaches its state."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from trio_foundation.verify.tlc import TLCStatus, run_tlc

pytestmark = pytest.mark.tlc

SPECS = Path(__file__).resolve().parent.parent / "specs"
SPEC = SPECS / "Supervisor.tla"
CONFIGS = sorted(SPECS.glob("Supervisor*.cfg"))
MUTANTS = sorted((SPECS / "broken").glob("Supervisor.*.cfg"))
REACH = sorted((SPECS / "reach").glob("Supervisor.*.cfg"))
INVARIANTS = (
    "RestartsOnlyPerPolicy",
    "IntensityBound",
    "EscalationOnlyWhenExceeded",
    "OrderedShutdown",
    "NoChildAfterSupervisorDown",
)


def _declared(config: Path) -> list[str]:
    return re.findall(r"^\\\* expect-violation: (\w+)", config.read_text(), re.MULTILINE)


def test_every_strategy_has_a_config() -> None:
    text = "\n".join(config.read_text() for config in CONFIGS)
    for strategy in ("one_for_one", "one_for_all", "rest_for_one"):
        assert f'Strategy = "{strategy}"' in text


def test_every_invariant_has_a_mutant() -> None:
    declared = {name for config in MUTANTS for name in _declared(config)}
    assert set(INVARIANTS) <= declared


@pytest.mark.parametrize("config", CONFIGS, ids=[c.name for c in CONFIGS])
def test_spec_config_passes(config: Path) -> None:
    result = run_tlc(SPEC, config, workers=2, timeout=240)
    assert result.status is TLCStatus.OK, result.error_message
    assert result.distinct_states > 10_000


@pytest.mark.parametrize("config", MUTANTS, ids=[c.name for c in MUTANTS])
def test_mutant_is_caught(config: Path) -> None:
    declared = _declared(config)
    assert declared, f"{config.name} declares no expected violation"
    result = run_tlc(SPEC, config, workers=2, timeout=240)
    assert result.status is TLCStatus.INVARIANT_VIOLATED, result.error_message
    assert result.violated in declared
    assert result.counterexample


@pytest.mark.parametrize("config", REACH, ids=[c.name for c in REACH])
def test_interesting_state_is_reachable(config: Path) -> None:
    """Each Never* invariant is violated: the state it denies does happen."""
    result = run_tlc(SPEC, config, workers=2, timeout=240)
    assert result.status is TLCStatus.INVARIANT_VIOLATED, result.error_message
    assert result.violated in _declared(config)
