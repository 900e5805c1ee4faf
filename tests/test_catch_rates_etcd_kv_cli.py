"""The command line of ``benchmarks/catch_rates_etcd_kv.py``: bad arguments are refused
with a one-line error naming the flag, before any etcd is started."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "catch_rates_etcd_kv.py"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--runs", "0"), "--runs must be at least 1, got 0"),
        (("--runs", "-3"), "--runs must be at least 1, got -3"),
        (("--seconds", "-1"), "--seconds must be > 0, got -1.0"),
        (("--seconds", "nan"), "--seconds must be > 0, got nan"),
        (("--rounds", "0"), "--rounds must be at least 1, got 0"),
    ],
)
def test_bad_counts_are_refused_naming_the_flag(args: tuple[str, ...], message: str) -> None:
    done = run("--suite", "chaos", "--variant", "correct", *args)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].endswith(message)
    assert done.stdout == ""  # nothing ran


@pytest.mark.timeout(60)
def test_unknown_variant_names_the_suites_variants() -> None:
    done = run("--suite", "registry-claim", "--variant", "nope")
    assert done.returncode == 2
    assert "--variant for registry-claim is one of no-claim-comparison, correct" in done.stderr


@pytest.mark.timeout(60)
def test_help_lists_every_suites_variants() -> None:
    done = run("--help")
    assert done.returncode == 0
    flat = "".join(done.stdout.split())  # argparse wraps the help, also at hyphens
    for name in ("lease-not-revoked", "view-ignoring-updates", "unregister-not-waiting"):
        assert name in flat
