"""One opener per data directory: ``open_locked_data_dir`` holds an exclusive
``flock`` for the life of a lock server's store or a Raft log, so a second
``foundation lock serve`` on the same ``--data-dir`` cannot issue the same tokens."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from trio_foundation.cli import main
from trio_foundation.coordination.lock_server import ServerStore
from trio_foundation.protocols.lease_lock import ServerDurable
from trio_foundation.runtime.raft_log import RaftLog
from trio_foundation.runtime.storage import (
    CorruptStateError,
    DataDirLockedError,
    lock_data_dir,
    open_data_dir,
    open_locked_data_dir,
)

FOUNDATION = [sys.executable, "-m", "trio_foundation.cli"]


def test_a_second_opener_is_refused_until_the_first_closes(tmp_path: Path) -> None:
    d = tmp_path / "d"
    first = open_locked_data_dir(d, kind="k")
    assert first.held and first.directory == str(d)
    with pytest.raises(DataDirLockedError) as info:
        open_locked_data_dir(d, kind="k")
    assert info.value.pid == os.getpid()
    assert str(d) in str(info.value) and f"pid {os.getpid()}" in str(info.value)
    first.close()
    first.close()  # idempotent
    assert not first.held
    again = open_locked_data_dir(d, kind="k")  # released on close
    again.close()
    # the lock file does not make the directory look foreign to open_data_dir
    assert open_data_dir(d, kind="k") == str(d)


def test_a_failed_format_check_releases_the_lock(tmp_path: Path) -> None:
    d = tmp_path / "d"
    open_data_dir(d, kind="a")
    with pytest.raises(Exception, match="expected kind 'b'"):
        open_locked_data_dir(d, kind="b")
    lock_data_dir(d).close()  # not left held


def test_the_lock_server_store_holds_its_dir(tmp_path: Path) -> None:
    store = ServerStore(tmp_path / "d")
    with pytest.raises(DataDirLockedError):
        ServerStore(tmp_path / "d")
    store.close()
    ServerStore(tmp_path / "d").close()


def test_a_raft_log_holds_its_dir(tmp_path: Path) -> None:
    log = RaftLog(tmp_path / "d")
    with pytest.raises(DataDirLockedError, match="in use"):
        RaftLog(tmp_path / "d")
    log.close()
    RaftLog(tmp_path / "d").close()


def test_kv_serve_on_a_held_dir_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    held = RaftLog(data)
    try:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        code = main(
            ["kv", "serve", "--id", "1", "--peers", f"1=127.0.0.1:{port}",
             "--data-dir", str(data)]
        )  # fmt: skip
    finally:
        held.close()
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1, err
    assert "in use" in err and str(data) in err and "Traceback" not in err, err


def test_two_lock_serve_processes_on_one_data_dir(tmp_path: Path) -> None:
    data = tmp_path / "data"
    ready = tmp_path / "ready"
    first = subprocess.Popen(
        [*FOUNDATION, "lock", "serve", "--listen", "127.0.0.1:0", "--data-dir", str(data),
         "--ready-file", str(ready)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not ready.exists():
            assert first.poll() is None and time.monotonic() < deadline, "did not start"
            time.sleep(0.05)
        second = subprocess.run(
            [*FOUNDATION, "lock", "serve", "--listen", "127.0.0.1:0", "--data-dir", str(data)],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert first.poll() is None  # the first one is unharmed
    finally:
        first.kill()
        first.wait(timeout=20)
    assert second.returncode == 2, second.stderr
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1, second.stderr
    assert str(data) in lines[0] and f"pid {first.pid}" in lines[0], lines
    # SIGKILL released the lock: a new server starts on the same dir
    again = subprocess.Popen(
        [*FOUNDATION, "lock", "serve", "--listen", "127.0.0.1:0", "--data-dir", str(data),
         "--ready-file", str(tmp_path / "ready2")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not (tmp_path / "ready2").exists():
            assert again.poll() is None and time.monotonic() < deadline, "did not restart"
            time.sleep(0.05)
    finally:
        again.kill()
        again.wait(timeout=20)


def test_a_formatted_dir_without_its_state_file_is_refused(tmp_path: Path) -> None:
    """A missing state.log would silently restart the tokens at 1 (issue 10)."""
    d = tmp_path / "d"
    store = ServerStore(d, block=1)
    store.persist(ServerDurable(5, 1.0))
    store.close()
    (d / "state.log").unlink()
    with pytest.raises(CorruptStateError, match="missing") as info:
        ServerStore(d)
    assert info.value.path == str(d / "state.log")
    lock_data_dir(d).close()  # the refusal released the directory
    done = subprocess.run(
        [*FOUNDATION, "lock", "serve", "--listen", "127.0.0.1:0", "--data-dir", str(d)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and str(d / "state.log") in lines[0] and "missing" in lines[0], lines
