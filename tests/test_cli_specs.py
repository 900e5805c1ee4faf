"""``foundation specs list`` and ``foundation specs check``, through the CLI entry point."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from trio_foundation.cli import main

FIXTURES = Path(__file__).parent / "fixtures" / "specs"

needs_java = pytest.mark.skipif(
    shutil.which(os.environ.get("JAVA") or "java") is None, reason="needs java"
)


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
def test_check_passing_spec_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["specs", "check", "Counter", "--dir", str(FIXTURES), "--workers", "1"]) == 0
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
    assert "0 of 2 passed" in out
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
