"""TLC check of specs/ContractNet.tla: every invariant has a mutant in specs/broken/.
The config that must pass is checked by CI's project-wide ``foundation specs check``
(tests/test_cli_specs.py); here under ``slow``.

The mutants (each caught naming the invariant its config declares) and the
reachability configs of specs/reach/ are run once, by CI's ``foundation specs check
--mutants --reach`` (tests/test_cli_specs.py), which checks each config's result."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from trio_foundation.verify.tlc import TLCStatus, run_tlc

SPECS = Path(__file__).resolve().parent.parent / "specs"
SPEC = SPECS / "ContractNet.tla"
MUTANTS = sorted((SPECS / "broken").glob("ContractNet.*.cfg"))
REACH = sorted((SPECS / "reach").glob("ContractNet.*.cfg"))
INVARIANTS = (
    "AtMostOnePaid",
    "PaidOnlyForLiveAward",
    "AwardedToValidProposal",
    "NoProposalAfterDeadline",
    "EscrowReleasedOnFailure",
)


def _declared(config: Path) -> list[str]:
    return re.findall(r"^\\\* expect-violation: (\w+)", config.read_text(), re.MULTILINE)


def test_every_invariant_has_a_mutant_and_the_main_config_checks_it() -> None:
    declared = {name for config in MUTANTS for name in _declared(config)}
    assert set(INVARIANTS) <= declared
    main = (SPECS / "ContractNet.cfg").read_text()
    assert all(name in main for name in INVARIANTS)
    assert any("double_award_after_reannounce" in c.name for c in MUTANTS)
    assert {n for c in REACH for n in _declared(c)} == {
        "NeverRivalProposals",
        "NeverLateRefused",
        "NeverReannouncedAfterCrash",
    }


# CI checks this config once, in tests/test_cli_specs.py's project-wide run.
@pytest.mark.tlc
@pytest.mark.slow
def test_spec_config_passes() -> None:
    result = run_tlc(SPEC, SPECS / "ContractNet.cfg", workers=2, timeout=240)
    assert result.status is TLCStatus.OK, result.error_message
    assert result.distinct_states > 10_000
