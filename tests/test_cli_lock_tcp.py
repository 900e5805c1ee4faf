"""``foundation lock acquire`` against a real ``foundation lock serve`` process: a
command that cannot be run, a command outliving a SIGKILLed CLI, bad flags."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from trio_foundation import cli
from trio_foundation.cli.lock import EXIT_CANNOT_RUN, EXIT_NOT_FOUND

FOUNDATION = [sys.executable, "-m", "trio_foundation.cli"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("lockserver")
    ready = tmp / "ready"
    proc = subprocess.Popen(
        [*FOUNDATION, "lock", "serve", "--listen", "127.0.0.1:0", "--data-dir",
         str(tmp / "data"), "--ready-file", str(ready)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not ready.exists():
            assert proc.poll() is None and time.monotonic() < deadline, "server did not start"
            time.sleep(0.05)
        yield "tcp://" + ready.read_text().strip()
    finally:
        proc.kill()
        proc.wait(timeout=20)


def acquire(server: str, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*FOUNDATION, "lock", "acquire", "--server", server, *argv],
        capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


@pytest.mark.parametrize("missing", ["/nonexistent", "no-such-command-anywhere"])
def test_a_missing_command_exits_127_with_one_line_and_releases_at_once(
    server: str, missing: str
) -> None:
    done = acquire(server, "--ttl", "60", "m", "--", missing)
    assert done.returncode == EXIT_NOT_FOUND, done.stderr
    errors = [line for line in done.stderr.splitlines() if "cannot run" in line]
    assert len(errors) == 1 and missing in errors[0], done.stderr
    assert "Traceback" not in done.stderr and "ExceptionGroup" not in done.stderr
    # released at once, not left to expire after 60 s
    again = acquire(server, "--ttl", "60", "--timeout", "10", "m", "--", "true")
    assert again.returncode == 0, again.stderr


def test_a_command_that_cannot_be_run_exits_126(server: str, tmp_path: Path) -> None:
    script = tmp_path / "script"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o644)  # not executable
    done = acquire(server, "--ttl", "60", "x", "--", str(script))
    assert done.returncode == EXIT_CANNOT_RUN, done.stderr
    assert "cannot run" in done.stderr and "Traceback" not in done.stderr


def test_main_reports_a_grouped_expected_error_as_the_bare_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def grouped(args: object) -> int:
        raise ExceptionGroup("nursery", [ExceptionGroup("inner", [OSError("disk on fire")])])

    monkeypatch.setattr("trio_foundation.cli.lock._acquire", grouped)
    argv = ["lock", "acquire", "--server", "tcp://h:1", "--ttl", "1", "n", "--", "true"]
    assert cli.main(argv) == 2
    assert capsys.readouterr().err == "foundation: error: disk on fire\n"


def test_main_lets_a_real_bug_in_a_group_propagate(monkeypatch: pytest.MonkeyPatch) -> None:
    def buggy(args: object) -> int:
        raise ExceptionGroup("nursery", [RuntimeError("bug")])

    def two(args: object) -> int:
        raise ExceptionGroup("nursery", [OSError("a"), OSError("b")])

    argv = ["lock", "acquire", "--server", "tcp://h:1", "--ttl", "1", "n", "--", "true"]
    monkeypatch.setattr("trio_foundation.cli.lock._acquire", buggy)
    with pytest.raises(ExceptionGroup):
        cli.main(argv)
    monkeypatch.setattr("trio_foundation.cli.lock._acquire", two)
    with pytest.raises(ExceptionGroup):
        cli.main(argv)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has exited
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_the_command_dies_with_a_sigkilled_cli(server: str, tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    script = f'echo $$ > "{pidfile}.tmp" && mv "{pidfile}.tmp" "{pidfile}" && exec sleep 60'
    cli_proc = subprocess.Popen(
        [*FOUNDATION, "lock", "acquire", "--server", server, "--ttl", "30", "k", "--",
         "sh", "-c", script],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not pidfile.exists():
            assert cli_proc.poll() is None and time.monotonic() < deadline, "did not start"
            time.sleep(0.05)
        child = int(pidfile.read_text())
        assert _alive(child)
        cli_proc.kill()
        cli_proc.wait(timeout=20)
        gone_by = time.monotonic() + 1.0
        while _alive(child) and time.monotonic() < gone_by:
            time.sleep(0.02)
        assert not _alive(child), "the command outlived the SIGKILLed CLI by 1 s"
    finally:
        cli_proc.kill()
        cli_proc.wait(timeout=20)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_the_command_outlives_idle_worker_threads(server: str) -> None:
    """PR_SET_PDEATHSIG fires when the forking *thread* exits: a command forked from
    one of Trio's cached worker threads (idle ones exit after 10 s) would die early."""
    done = acquire(server, "--ttl", "5", "long", "--", "sleep", "15")
    assert done.returncode == 0, done.stderr


def test_a_ttl_below_the_floor_is_refused_naming_the_flag() -> None:
    done = acquire("tcp://127.0.0.1:1", "--ttl", "0.001", "n", "--", "true")
    assert done.returncode == 2
    assert "--ttl must be >= 0.5 seconds, got '0.001'" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("command", ["lock", "kv"])
def test_a_plain_file_as_data_dir_is_named(
    command: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("notadir").write_text("x")
    argv = (
        ["lock", "serve", "--listen", "127.0.0.1:0", "--data-dir", "notadir"]
        if command == "lock"
        else ["kv", "serve", "--id", "1", "--peers", "1=127.0.0.1:1", "--data-dir", "notadir"]
    )
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].endswith("--data-dir: 'notadir' is not a directory"), err
