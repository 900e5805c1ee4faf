"""specs/RateLimiter.tla and specs/SingleFlight.tla under TLC.

The default configuration holds; every config under specs/broken/ and specs/reach/
is violated, naming the invariant its ``\\* expect-violation:`` line gives.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from trio_foundation.verify.tlc import TLCStatus, run_tlc

pytestmark = pytest.mark.tlc

SPECS = Path(__file__).resolve().parent.parent / "specs"
NAMES = ("RateLimiter", "SingleFlight")
EXPECTED = sorted(
    path
    for name in NAMES
    for folder in ("broken", "reach")
    for path in (SPECS / folder).glob(f"{name}.*.cfg")
)


@pytest.mark.parametrize("name", NAMES)
def test_spec_holds(name: str) -> None:
    result = run_tlc(SPECS / f"{name}.tla", workers=1, timeout=120)
    assert result.status is TLCStatus.OK, result.error_message
    assert result.distinct_states > 500


def test_every_invariant_has_a_mutant() -> None:
    for name in NAMES:
        cfg = (SPECS / f"{name}.cfg").read_text(encoding="utf-8")
        invariants = set(cfg.split("INVARIANTS", 1)[1].split()) - {"TypeOK"}
        caught = {
            _expected(p) for p in EXPECTED if p.parent.name == "broken" and p.name.startswith(name)
        }
        assert invariants <= caught, f"{name}: no mutant for {invariants - caught}"


def _expected(config: Path) -> str:
    match = re.search(r"\\\* expect-violation: (\w+)", config.read_text(encoding="utf-8"))
    assert match, f"{config} lacks an expect-violation line"
    return match.group(1)


@pytest.mark.parametrize("config", EXPECTED, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_config_is_violated_as_expected(config: Path) -> None:
    spec = SPECS / f"{config.name.split('.')[0]}.tla"
    result = run_tlc(spec, config, workers=1, timeout=120)
    assert result.status is TLCStatus.INVARIANT_VIOLATED, result.error_message
    assert result.violated == _expected(config)
