"""The command line of ``benchmarks/mutation.py``: bad counts and a missing mutmut are
refused with a one-line error before any scratch copy is made."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "mutation.py"


def load(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    spec = importlib.util.spec_from_file_location("mutation_script_under_test", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # its dataclasses look it up
    spec.loader.exec_module(module)
    return module


def refusal(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    executable: Path,
    *args: str,
) -> str:
    module = load(monkeypatch)
    monkeypatch.setattr(sys, "executable", str(executable))
    monkeypatch.setattr(sys, "argv", ["mutation.py", "lease_lock", *args])
    made = set(Path(module.tempfile.gettempdir()).glob("mutation-*"))
    with pytest.raises(SystemExit) as exit_info:
        module.main()
    assert exit_info.value.code == 2
    assert set(Path(module.tempfile.gettempdir()).glob("mutation-*")) == made  # no copy made
    return capsys.readouterr().err.strip().splitlines()[-1]


@pytest.mark.timeout(60)
def test_missing_mutmut_is_named_with_the_install_command(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    line = refusal(monkeypatch, capsys, tmp_path / "python", "--list")
    assert line == (
        f"mutation.py: error: mutmut is not installed beside {tmp_path / 'python'}:"
        f" {tmp_path / 'pip'} install mutmut"
    )


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--examples", "0"), "--examples must be at least 1, got 0"),
        (("--max-children", "0"), "--max-children must be at least 1, got 0"),
        (("--sample", "-1"), "--sample must be at least 1, got -1"),
    ],
)
def test_bad_counts_are_refused_naming_the_flag(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    args: tuple[str, ...],
    message: str,
) -> None:
    (tmp_path / "mutmut").write_text("")  # mutmut "installed": the counts are what is refused
    assert refusal(monkeypatch, capsys, tmp_path / "python", *args) == (
        f"mutation.py: error: {message}"
    )
