"""TLC checks of specs/Supervisor.tla: every config passes, the broken variant is caught."""

from __future__ import annotations

from pathlib import Path

import pytest

from trio_foundation.verify.tlc import TLCStatus, run_tlc

pytestmark = pytest.mark.tlc

SPECS = Path(__file__).resolve().parent.parent / "specs"
CONFIGS = sorted(SPECS.glob("Supervisor*.cfg"))


def test_every_strategy_has_a_config() -> None:
    text = "\n".join(config.read_text() for config in CONFIGS)
    for strategy in ("one_for_one", "one_for_all", "rest_for_one"):
        assert f'Strategy = "{strategy}"' in text


@pytest.mark.parametrize("config", CONFIGS, ids=[c.name for c in CONFIGS])
def test_spec_config_passes(config: Path) -> None:
    result = run_tlc(SPECS / "Supervisor.tla", config, workers=2, timeout=120)
    assert result.status is TLCStatus.OK, result.error_message
    assert result.distinct_states > 1000


def test_per_child_intensity_is_caught() -> None:
    broken = SPECS / "broken" / "SupervisorPerChildIntensity.tla"
    result = run_tlc(broken, workers=2, timeout=120)
    assert result.status is TLCStatus.INVARIANT_VIOLATED, result.error_message
    assert result.violated == "IntensityBound"
    assert result.counterexample


@pytest.mark.parametrize(
    ("strategy", "sometimes"),
    [("one_for_one", "NeverEscalates"), ("one_for_all", "NeverEscalates")],
)
def test_escalation_is_reachable(tmp_path: Path, strategy: str, sometimes: str) -> None:
    """The interesting state happens: TLC finds an escalation (a 'sometimes' check)."""
    config = tmp_path / "Supervisor.reach.cfg"
    text = (SPECS / "Supervisor.cfg").read_text()
    text = text.replace('Strategy = "one_for_one"', f'Strategy = "{strategy}"')
    config.write_text(text.split("INVARIANTS")[0] + f"INVARIANTS\n    {sometimes}\n")
    result = run_tlc(SPECS / "Supervisor.tla", config, workers=2, timeout=120)
    assert result.status is TLCStatus.INVARIANT_VIOLATED
    assert result.violated == sometimes
