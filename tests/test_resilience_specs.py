"""specs/RateLimiter.tla and specs/SingleFlight.tla under TLC.

The default configuration holds (here, with a floor on the states explored, under
``slow``: CI checks it in the project-wide ``foundation specs check`` run). Every
config under specs/broken/ and specs/reach/ must be violated, naming the invariant its
``\\* expect-violation:`` line gives: that is checked once, for every spec of the
project, by ``foundation specs check --mutants --reach``
(``tests/test_cli_specs.py::test_the_projects_mutants_and_reachability_checks_are_caught``);
this file checks, without TLC, that the CLI's run picks up every one of these configs
with the expectation its line declares, and that every invariant has a mutant.
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


# CI checks these configs once, in tests/test_cli_specs.py's project-wide run.
@pytest.mark.slow
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


def test_the_cli_run_checks_every_config_as_declared() -> None:
    """The CLI's ``--mutants --reach`` run covers each config with its declared violation."""
    from trio_foundation.cli.specs import _variants

    covered = {
        pair.config.resolve(): pair.expect
        for kind in ("mutant", "reach")
        for pair in _variants(SPECS, kind, required=True)
    }
    for config in EXPECTED:
        assert config.resolve() in covered, f"{config} is not checked by the CLI"
        assert covered[config.resolve()] == (_expected(config),), config
        assert (SPECS / f"{config.name.split('.')[0]}.tla").is_file()
    assert len(EXPECTED) >= 15
