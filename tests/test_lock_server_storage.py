"""Disk failures in the lock server: it stops with one clear line, never a traceback,
and never sends a grant for a token that was not durable.

In one process, through an injected failing filesystem (ENOSPC on write, EIO on
fsync); as real ``foundation lock serve`` processes: the data directory removed
while serving, a real ENOSPC on a tiny tmpfs, and a read-only data directory
(the last two need a private mount namespace, i.e. CAP_SYS_ADMIN).
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from trio_foundation.cli.lock_serve import EXIT_STORAGE
from trio_foundation.coordination.lock_monitor import LockServerMonitor
from trio_foundation.coordination.lock_server import (
    ServerStore,
    StorageFailedError,
    serve_lock_service,
)
from trio_foundation.coordination.tcp_lock import open_remote_lock_service
from trio_foundation.runtime.storage import OsFileOps
from trio_foundation.telemetry import Event, Telemetry

FOUNDATION = [sys.executable, "-m", "trio_foundation.cli"]


class FailingOps:
    """The real filesystem, until :attr:`broken` is set: then ``write`` or
    ``sync`` (per :attr:`where`) raises ``OSError(code)``."""

    def __init__(self, code: int, where: str) -> None:
        self._os = OsFileOps()
        self.code = code
        self.where = where
        self.broken = False
        self.failures = 0

    def _maybe_fail(self, op: str) -> None:
        if self.broken and op == self.where:
            self.failures += 1
            raise OSError(self.code, os.strerror(self.code))

    def write(self, handle: int, data: bytes) -> None:
        self._maybe_fail("write")
        self._os.write(handle, data)

    def sync(self, handle: int) -> None:
        self._maybe_fail("sync")
        self._os.sync(handle)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._os, name)


@pytest.mark.parametrize(
    ("code", "where"), [(errno.ENOSPC, "write"), (errno.EIO, "sync"), (errno.EROFS, "write")]
)
async def test_a_failed_persist_stops_the_server_and_sends_no_grant(
    tmp_path: Path, code: int, where: str
) -> None:
    ops = FailingOps(code, where)
    tokens: list[int] = []
    telemetry = Telemetry(slow_handler=None)
    reported: list[Event] = []
    telemetry.attach("failures", "lock_server.storage_failed", reported.append)
    monitor = LockServerMonitor(telemetry)
    data_dir = tmp_path / "d"
    raised: list[BaseException] = []

    async def server(task_status: trio.TaskStatus[tuple[str, int]]) -> None:
        try:
            await serve_lock_service(
                ("127.0.0.1", 0),
                data_dir,
                block=2,  # a new mark every second grant
                file_ops=ops,  # type: ignore[arg-type]
                monitor=monitor,
                task_status=task_status,
            )
        except BaseException as exc:
            raised.append(exc)
            raise

    with trio.fail_after(30), pytest.raises(ExceptionGroup):
        async with trio.open_nursery() as nursery:
            host, port = await nursery.start(server)
            url = f"tcp://{host}:{port}"
            async with open_remote_lock_service(url) as a:
                for _ in range(3):  # tokens 1..3: marks 2 and 4 written
                    async with a.acquire(ttl=5) as lease:
                        tokens.append(lease.token)
                ops.broken = True
                async with a.acquire(ttl=5) as lease:  # token 4: no write needed
                    tokens.append(lease.token)
                # token 5 needs mark 6: the write fails, the grant is never sent
                with trio.move_on_after(20):
                    async with a.acquire(ttl=5) as lease:
                        tokens.append(lease.token)
                pytest.fail("the acquire should have been cut off by the server's stop")
    (exc,) = raised
    assert isinstance(exc, StorageFailedError)  # itself, not wrapped in a group
    assert exc.errno == code and exc.path == str(data_dir / "state.log")
    assert os.strerror(code) in str(exc) and errno.errorcode[code] in str(exc)
    assert ops.failures == 1  # nothing was attempted after the failure
    assert [(e.measurements["errno"], e.metadata["path"]) for e in reported] == [(code, exc.path)]
    assert tokens == [1, 2, 3, 4]
    # every token sent is at most the mark a restart reads
    again = ServerStore(data_dir, block=2)
    assert again.mark >= max(tokens)
    again.close()


def test_the_store_notices_its_file_was_removed(tmp_path: Path) -> None:
    from trio_foundation.protocols.lease_lock import ServerDurable

    store = ServerStore(tmp_path / "d", block=10)
    store.persist(ServerDurable(1, 1.0))
    shutil.rmtree(tmp_path / "d")
    with pytest.raises(FileNotFoundError):
        store.persist(ServerDurable(11, 1.0))
    assert store.mark == 10  # the new mark was not adopted
    store.close()


# ----------------------------------------------------------------- real processes


def start_server(
    tmp: Path, data: Path, *, wrap: list[str] | None = None, extra: tuple[str, ...] = ()
) -> tuple[subprocess.Popen[str], str]:
    ready = tmp / f"ready-{time.monotonic_ns()}"
    argv = [
        *FOUNDATION,
        *("lock", "serve", "--listen", "127.0.0.1:0", "--data-dir", str(data)),
        *("--ready-file", str(ready), *extra),
    ]
    proc = subprocess.Popen(
        [*(wrap or []), *argv],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while not ready.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            err = proc.stderr.read() if proc.stderr is not None else ""
            reap(proc)
            raise AssertionError(f"the lock server did not start: {err}")
        time.sleep(0.05)
    return proc, ready.read_text().strip()


def reap(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=20)
    if proc.stderr is not None:
        proc.stderr.close()


async def try_acquire(proc: subprocess.Popen[str], address: str, times: int = 1) -> list[int]:
    """Take and release the lock up to ``times`` times, until the server exits;
    return the tokens granted."""
    got: list[int] = []
    with trio.move_on_after(20):
        async with trio.open_nursery() as nursery:

            async def watch() -> None:
                while proc.poll() is None:  # noqa: ASYNC110 - polling another process
                    await trio.sleep(0.05)
                nursery.cancel_scope.cancel()

            nursery.start_soon(watch)
            async with open_remote_lock_service(f"tcp://{address}") as client:
                for _ in range(times):
                    async with client.acquire(ttl=5) as lease:
                        got.append(lease.token)
            nursery.cancel_scope.cancel()
    return got


def finished(proc: subprocess.Popen[str]) -> tuple[int, list[str]]:
    code = proc.wait(timeout=20)
    assert proc.stderr is not None
    err = proc.stderr.read()
    assert "Traceback" not in err, err
    return code, [line for line in err.splitlines() if "error" in line]


def test_the_data_dir_removed_while_serving_stops_the_process(tmp_path: Path) -> None:
    data = tmp_path / "data"
    proc, address = start_server(tmp_path, data)
    try:
        shutil.rmtree(data)
        tokens = trio.run(try_acquire, proc, address)
        code, errors = finished(proc)
    finally:
        reap(proc)
    assert tokens == []
    assert code == EXIT_STORAGE
    assert len(errors) == 1, errors
    assert str(data / "state.log") in errors[0] and "ENOENT" in errors[0], errors


def _can_mount() -> bool:
    if not (shutil.which("unshare") and shutil.which("nsenter")):
        return False
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True, timeout=10, check=False)
    return probe.returncode == 0


needs_mount = pytest.mark.skipif(
    not _can_mount(), reason="needs a private mount namespace (CAP_SYS_ADMIN)"
)


@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "tiny"
    path.mkdir()
    yield path


@needs_mount
def test_a_full_disk_stops_the_process_with_one_line(tmp_path: Path, tiny_fs: Path) -> None:
    data = tiny_fs / "data"
    # the server runs in its own mount namespace, on a 256 KiB tmpfs
    wrap = [
        "unshare", "-m", "--propagation", "private", "sh", "-c",
        f'mount -t tmpfs -o size=256k tmpfs "{tiny_fs}" && exec "$0" "$@"',
    ]  # fmt: skip
    # one fdatasync'd record per token, so the state file outgrows its last free page
    proc, address = start_server(tmp_path, data, wrap=wrap, extra=("--token-block", "1"))
    try:
        fill = subprocess.run(
            ["nsenter", "-t", str(proc.pid), "-m",
             "dd", "if=/dev/zero", f"of={tiny_fs}/fill", "bs=4k"],
            capture_output=True, timeout=30, check=False,
        )  # fmt: skip
        assert b"No space left" in fill.stderr, fill.stderr
        tokens = trio.run(try_acquire, proc, address, 1000)
        code, errors = finished(proc)
    finally:
        reap(proc)
    # grants went on while the state file's page had room (about 4 KiB of records)
    assert 50 < len(tokens) < 1000 and tokens == list(range(1, len(tokens) + 1))
    assert code == EXIT_STORAGE
    assert len(errors) == 1, errors
    assert str(data / "state.log") in errors[0] and "ENOSPC" in errors[0], errors


@needs_mount
def test_a_read_only_data_dir_is_refused_at_start_with_one_line(tmp_path: Path) -> None:
    data = tmp_path / "data"
    ServerStore(data).close()  # a valid data dir with its state file
    wrap = [
        "unshare", "-m", "--propagation", "private", "sh", "-c",
        f'mount --bind "{data}" "{data}" && mount -o remount,bind,ro "{data}"'
        ' && exec "$0" "$@"',
    ]  # fmt: skip
    proc = subprocess.Popen(
        [*wrap, *FOUNDATION, "lock", "serve", "--listen", "127.0.0.1:0", "--data-dir", str(data)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        code, errors = finished(proc)
    finally:
        reap(proc)
    assert code == 2
    assert len(errors) == 1, errors
    assert "Read-only file system" in errors[0] and str(data) in errors[0], errors
