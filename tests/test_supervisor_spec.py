"""TLC checks of specs/Supervisor.tla: every invariant has a mutant in specs/broken/.
The configs that must pass are checked by CI's project-wide ``foundation specs check``
(tests/test_cli_specs.py); here under ``slow``.

The mutants (each caught naming the invariant its config declares) and the
reachability configs of specs/reach/ are run once, by CI's ``foundation specs check
--mutants --reach`` (tests/test_cli_specs.py), which checks each config's result."""

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


# CI checks these configs once, in tests/test_cli_specs.py's project-wide run.
@pytest.mark.slow
@pytest.mark.parametrize("config", CONFIGS, ids=[c.name for c in CONFIGS])
def test_spec_config_passes(config: Path) -> None:
    result = run_tlc(SPEC, config, workers=2, timeout=240)
    assert result.status is TLCStatus.OK, result.error_message
    assert result.distinct_states > 10_000
