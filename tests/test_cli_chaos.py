"""`foundation chaos run`: output, exit codes, history files, replay."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from trio_foundation.cli import main
from trio_foundation.verify.history import load_history
from trio_foundation.verify.nemesis import FaultEvent, Partition, schedule_to_json


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["chaos", "run", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def field(out: str, name: str) -> str:
    match = re.search(rf"^{name}\s+(.*)$", out, re.MULTILINE)
    assert match, f"no {name!r} line in:\n{out}"
    return match.group(1)


def test_correct_register_passes(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    history = tmp_path / "h.jsonl"
    code, out, err = run(
        capsys, "register", "--seed", "3", "--ops", "60", "--history", str(history)
    )
    assert code == 0, out + err
    assert field(out, "verdict").startswith("linearizable")
    assert re.fullmatch(r"[0-9a-f]{64}", field(out, "digest"))
    assert field(out, "operations").startswith("60: ok ")
    assert "replay" not in out
    events = load_history(history)
    assert sum(1 for e in events if e.type == "invoke") == 60


def test_broken_register_fails_with_a_replay_command(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    history = tmp_path / "h.jsonl"
    args = ["register-lost-write", "--seed", "1", "--ops", "60", "--history", str(history)]
    code, out, _ = run(capsys, *args)
    assert code == 1
    assert field(out, "verdict").startswith("not-linearizable")
    assert "cannot linearize" in out
    replay = field(out, "replay")
    assert replay.startswith("foundation chaos run register-lost-write --seed 1 --ops 60 ")
    # The replay command reproduces the run exactly.
    argv = [*replay.split()[3:], "--history", str(tmp_path / "again.jsonl")]
    code2, out2, _ = run(capsys, *argv)
    assert code2 == 1
    assert field(out2, "digest") == field(out, "digest")
    assert (tmp_path / "again.jsonl").read_text() == history.read_text()


def test_default_history_path(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, _ = run(capsys, "register", "--seed", "5", "--ops", "20", "--faults", "none")
    assert code == 0
    assert (tmp_path / "histories" / "register-5.jsonl").exists()
    assert field(out, "faults") == "none"


def test_faults_are_reported_by_kind(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, _ = run(
        capsys,
        "register",
        "--seed",
        "2",
        "--ops",
        "100",
        "--faults",
        "partition,crash",
        "--history",
        str(tmp_path / "h.jsonl"),
    )
    assert code == 0
    kinds = {part.split()[0] for part in field(out, "faults").split(", ")}
    assert kinds and kinds <= {"crash", "restart", "partition", "cut", "heal"}


def test_unknown_outcome_exits_3(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, _ = run(
        capsys,
        "register-stale-read",
        "--seed",
        "1",
        "--ops",
        "400",
        "--clients",
        "20",
        "--check-timeout",
        "0.000001",
        "--history",
        str(tmp_path / "h.jsonl"),
    )
    if code == 1:  # the checker was quicker than the clock: still a valid outcome
        assert field(out, "verdict").startswith("not-linearizable")
    else:
        assert code == 3
        assert field(out, "verdict").startswith("unknown")
        assert "replay" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["register", "--seed", "1", "--faults", "meteor"], "unknown fault kind"),
        (["nope", "--seed", "1"], "invalid choice"),
        (["register"], "--seed"),
    ],
)
def test_bad_arguments_exit_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as info:
        main(["chaos", "run", *argv])
    assert info.value.code == 2
    assert message in capsys.readouterr().err


def test_out_of_range_numbers_are_one_line_errors(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, _out, err = run(capsys, "register", "--seed", "1", "--nodes", "0")
    assert code == 2
    assert err.strip() == "foundation: error: --nodes must be in [1, 15], got 0"


def test_svg_timeline(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    svg = tmp_path / "t.svg"
    code, out, err = run(
        capsys,
        "register-stale-read",
        "--seed",
        "2",
        "--ops",
        "30",
        "--history",
        str(tmp_path / "h.jsonl"),
        "--svg",
        str(svg),
    )
    if importlib.util.find_spec("trio_foundation.verify.timeline") is None:
        assert code == 2
        assert "timeline renderer is not available" in err
    else:
        assert code == 1
        assert svg.read_text().lstrip().startswith("<")
        assert field(out, "timeline") == str(svg)


def test_a_saved_schedule_replays(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    schedule = (FaultEvent(0.0, Partition([[0, 1], [2]])),)
    path = tmp_path / "schedule.json"
    path.write_text(schedule_to_json(schedule))
    argv = ["register-split-brain", "--seed", "0", "--ops", "30", "--schedule", str(path)]
    code, out, _ = run(capsys, *argv, "--history", str(tmp_path / "h.jsonl"))
    assert code == 1
    assert field(out, "faults") == "partition 1"
    replay = field(out, "replay")
    assert replay.endswith(f"--schedule {path}")
    code2, out2, _ = run(capsys, *replay.split()[3:], "--history", str(tmp_path / "h2.jsonl"))
    assert code2 == 1 and field(out2, "digest") == field(out, "digest")


def test_runs_agree_across_processes_with_different_hash_seeds(tmp_path: Path) -> None:
    """No hidden dependence on str-hash (set/dict) iteration order."""
    digests = set()
    for hash_seed in ("0", "1", "12345"):
        history = tmp_path / f"h{hash_seed}.jsonl"
        argv = ["chaos", "run", "register-split-brain", "--seed", "3", "--ops", "60"]
        proc = subprocess.run(
            [sys.executable, "-m", "trio_foundation.cli", *argv, "--history", str(history)],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONHASHSEED": hash_seed},
            check=False,
            timeout=120,
        )
        assert proc.returncode in (0, 1), proc.stderr
        digests.add((field(proc.stdout, "digest"), history.read_text()))
    assert len(digests) == 1


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert re.fullmatch(
        r"foundation \(trio-foundation\) \d+\.\d+\.\d+\S*\n", capsys.readouterr().out
    )


@pytest.mark.parametrize("flag", ["--history", "--svg"])
def test_an_output_folder_is_never_created_silently(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, flag: str
) -> None:
    target = tmp_path / "missing" / "deeper" / "out"
    argv = ["register", "--seed", "1", "--ops", "10", "--history", str(tmp_path / "h.jsonl")]
    code, out, err = run(capsys, *argv, flag, str(target))
    assert code == 2
    assert err == (
        f"foundation: error: {flag} {target}: folder {target.parent} does not exist "
        "(create it first)\n"
    )
    assert out == ""
    assert not (tmp_path / "missing").exists()


def test_an_unwritable_svg_keeps_the_verdicts_exit_code(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if importlib.util.find_spec("trio_foundation.verify.timeline") is None:
        pytest.skip("no timeline renderer")
    svg = tmp_path / "t.svg"

    def refuse(self: Path, *args: object, **kwargs: object) -> int:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "write_text", refuse)
    argv = ["register-stale-read", "--seed", "2", "--ops", "30"]
    code, out, err = run(capsys, *argv, "--history", str(tmp_path / "h.jsonl"), "--svg", str(svg))
    assert code == 1
    assert field(out, "verdict").startswith("not-linearizable")
    assert err == f"foundation: warning: cannot write --svg {svg}: Permission denied\n"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--check-timeout", "-1"], "argument --check-timeout: must be > 0, got -1"),
        (["--check-timeout", "soon"], "argument --check-timeout: expected a number of seconds"),
        (["--intensity", "-1"], "argument --intensity: must be a finite number > 0, got -1"),
        (["--intensity", "0"], "argument --intensity: must be a finite number > 0, got 0"),
        (["--intensity", "inf"], "argument --intensity: must be a finite number > 0, got inf"),
    ],
)
def test_bad_numbers_name_their_flag(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as info:
        main(["chaos", "run", "register", "--seed", "1", *argv])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert message in err
    assert "horizon" not in err and "timeout must" not in err


def test_run_chaos_names_the_intensity() -> None:
    from trio_foundation.cli.chaos import run_chaos

    with pytest.raises(ValueError, match=r"^--intensity must be a finite number > 0, got -1$"):
        run_chaos("register", seed=1, intensity=-1)


@pytest.mark.parametrize(
    ("entries", "problem"),
    [
        ('[{"at": 1.0, "fault": "crash"}]', "entry 1 (crash) has no field 'node'"),
        ('[{"fault": "crash", "node": 1}]', "entry 1 (crash) has no field 'at'"),
        (
            '[{"at": 0, "fault": "heal"}, {"at": 1, "fault": "partition"}]',
            "entry 2 (partition) has no field 'groups'",
        ),
        ('[{"at": 1, "node": 1}]', "entry 1 has no field 'fault' (one of "),
        ('[{"at": 1, "fault": "meteor"}]', "entry 1: unknown fault 'meteor' (one of "),
        ('[{"at": "soon", "fault": "crash", "node": 1}]', "field 'at' must be a number"),
        ('[{"at": 1, "fault": "crash", "node": 1, "nod": 2}]', "unknown field 'nod'"),
        ("[3]", "entry 1 must be a JSON object, got 3"),
        ('{"at": 1}', "a fault schedule must be a JSON array"),
        ("[{", "line 1, col 3: not valid JSON"),
    ],
)
def test_a_bad_schedule_names_the_entry_and_field(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, entries: str, problem: str
) -> None:
    path = tmp_path / "s.json"
    path.write_text(entries)
    argv = ["register", "--seed", "1", "--schedule", str(path)]
    code, _out, err = run(capsys, *argv, "--history", str(tmp_path / "h.jsonl"))
    assert code == 2
    assert err.startswith(f"foundation: error: --schedule {path}")
    assert problem in err
    assert err.count("\n") == 1
    assert "TypeError" not in err and "__init__" not in err


def test_a_binary_schedule_names_the_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "s.json"
    path.write_bytes(b"\xff\xfe\x00binary")
    code, _out, err = run(capsys, "register", "--seed", "1", "--schedule", str(path))
    assert code == 2
    assert err == f"foundation: error: --schedule {path}: not a UTF-8 text file\n"
