"""coordination/lock_server.py and lease_lock.py: refusals as a monitor sees them, and the
client's per-name handles (mutation survivors).

A TCP lock server in this process on a free loopback port with a
:class:`~trio_foundation.coordination.lock_monitor.LockServerMonitor`; a client
from :func:`~trio_foundation.coordination.tcp_lock.open_remote_lock_service`.
"""

from __future__ import annotations

import errno
import logging
import os
from pathlib import Path
from typing import Any

import pytest
import trio

from trio_foundation import LeaseRefusedError
from trio_foundation.coordination.lease_lock import LockHandle
from trio_foundation.coordination.lock_monitor import LockServerMonitor
from trio_foundation.coordination.lock_server import (
    ServerStore,
    StorageFailedError,
    serve_lock_service,
)
from trio_foundation.coordination.tcp_lock import open_remote_lock_service
from trio_foundation.protocols.lease_lock import LockClient, ServerDurable
from trio_foundation.runtime.storage import CorruptStateError, OsFileOps
from trio_foundation.telemetry import Event, MetricRegistry, Telemetry


async def _serve(nursery: trio.Nursery, data_dir: Path, **kwargs: Any) -> str:
    address = await nursery.start(
        lambda task_status: serve_lock_service(
            ("127.0.0.1", 0), data_dir, task_status=task_status, **kwargs
        )
    )
    return f"tcp://{address[0]}:{address[1]}"


async def test_a_name_beyond_max_locks_is_refused_to_that_client_and_reported(
    tmp_path: Path,
) -> None:
    telemetry = Telemetry(slow_handler=None)
    refused: list[Event] = []
    telemetry.attach("r", "lock_server.refused", refused.append)
    monitor = LockServerMonitor(telemetry, MetricRegistry())
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            url = await _serve(nursery, tmp_path / "d", max_locks=1, monitor=monitor)
            client_events = Telemetry(slow_handler=None)
            client_refused: list[Event] = []
            client_events.attach("c", "lease_lock.refused", client_refused.append)
            async with open_remote_lock_service(url, telemetry=client_events) as client:
                async with client.acquire(ttl=1, name="a"):
                    pass
                with pytest.raises(LeaseRefusedError, match=r"too many locks \(max 1\)"):
                    async with client.acquire(ttl=1, name="b"):
                        pass
                me = client.node_id
            nursery.cancel_scope.cancel()
    assert [dict(e.metadata) for e in client_refused] == [
        {"name": "b", "token": None, "client": me}
    ]
    assert [(e.metadata, dict(e.measurements)) for e in refused] == [
        (
            {
                "name": "b",
                "client": me,
                "reason": "too_many_locks",
                "detail": "too many locks (max 1)",
            },
            {},
        )
    ]


async def test_the_client_keeps_one_handle_per_name_it_used(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            url = await _serve(nursery, tmp_path / "d")
            async with open_remote_lock_service(url) as client:
                assert client.handle("a") is None
                async with client.acquire(ttl=1, name="a") as lease:
                    handle = client.handle("a")
                    assert isinstance(handle, LockHandle)
                    assert isinstance(handle.core, LockClient)
                    assert handle.busy is True
                    assert handle.core.state == "held"
                    assert handle.core.node == client.node_id
                    assert handle.core.lease is not None
                    assert handle.core.lease.token == lease.token
                assert client.handle("a") is handle
                assert handle.busy is False
                assert handle.core.state == "idle"
                assert client.handle("b") is None
            nursery.cancel_scope.cancel()


def test_a_formatted_directory_without_its_state_file_is_refused(tmp_path: Path) -> None:
    store = ServerStore(tmp_path / "d", block=1)
    store.persist(ServerDurable(1, 2.0))
    assert store.mark == 1  # block 1: every token is its own mark
    store.close()
    (tmp_path / "d" / "state.log").unlink()
    with pytest.raises(
        CorruptStateError,
        match=r"missing, though the directory was formatted by a lock server \(refusing to"
        r" restart at token 1",
    ):
        ServerStore(tmp_path / "d")
    # refused before anything was written, and the directory is not left locked
    assert sorted(p.name for p in (tmp_path / "d").iterdir() if p.name != "LOCK") == ["FORMAT"]
    (tmp_path / "e").mkdir()  # an empty directory is a fresh one
    fresh = ServerStore(tmp_path / "e")
    assert fresh.mark == 0
    fresh.close()


@pytest.mark.parametrize("bad", [0, -1, True, 1.5])
def test_the_block_is_an_int_at_least_one(tmp_path: Path, bad: object) -> None:
    with pytest.raises(ValueError, match=rf"^block must be an int >= 1, got {bad!r}$"):
        ServerStore(tmp_path / "d", block=bad)  # type: ignore[arg-type]


async def test_the_server_logs_where_it_serves_from(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="trio_foundation")
    before = ServerStore(tmp_path / "d", block=500)
    before.persist(ServerDurable(1, 2.5))  # a grant of token 1, ttl 2.5 s: mark 500
    before.close()
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            await _serve(nursery, tmp_path / "d", block=500)
            nursery.cancel_scope.cancel()
    messages = [r.getMessage() for r in caplog.records if r.getMessage().startswith("serving")]
    directory = (tmp_path / "d").resolve()
    assert messages == [
        f"serving locks from {directory} (token mark 500, longest ttl granted 2.5 s)"
    ]


class _Recording:
    """The real filesystem, recording the paths it opens and the directories it syncs."""

    def __init__(self) -> None:
        self._os = OsFileOps()
        self.opened: list[str] = []
        self.synced: list[str] = []

    def open(self, path: str, *, truncate: bool) -> int:
        self.opened.append(os.path.basename(path))
        return self._os.open(path, truncate=truncate)

    def sync_dir(self, path: str) -> None:
        self.synced.append(path)
        self._os.sync_dir(path)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._os, name)


def test_an_injected_filesystem_formats_the_directory_too(tmp_path: Path) -> None:
    ops = _Recording()
    store = ServerStore(tmp_path / "d", ops=ops)
    store.close()
    assert "FORMAT.tmp" in ops.opened  # the format file (written, then renamed) went through ops
    assert "state.log" in ops.opened
    assert str(tmp_path) in ops.synced  # the new directory's entry was made durable


class _FailingClose:
    """The real filesystem, but once :attr:`broken` is set ``close`` closes the file
    and then raises EIO (as a close on NFS may), and ``write`` raises ENOSPC when
    :attr:`full` is set."""

    def __init__(self) -> None:
        self._os = OsFileOps()
        self.broken = False
        self.full = False

    def close(self, handle: int) -> None:
        self._os.close(handle)
        if self.broken:
            raise OSError(errno.EIO, "close failed")

    def write(self, handle: int, data: bytes) -> None:
        if self.full:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self._os.write(handle, data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._os, name)


async def test_a_state_file_that_fails_to_close_is_reported_when_nothing_else_was(
    tmp_path: Path,
) -> None:
    ops = _FailingClose()
    raised: list[BaseException] = []

    async def server(task_status: trio.TaskStatus[tuple[str, int]]) -> None:
        try:
            await serve_lock_service(
                ("127.0.0.1", 0), tmp_path / "d", file_ops=ops, task_status=task_status
            )
        except BaseException as exc:
            raised.append(exc)
            raise

    with trio.fail_after(30), pytest.raises(ExceptionGroup):
        async with trio.open_nursery() as nursery:
            await nursery.start(server)
            ops.broken = True
            nursery.cancel_scope.cancel()
    (exc,) = raised
    assert type(exc) is OSError and exc.errno == errno.EIO


async def test_after_a_storage_failure_a_failed_close_is_only_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ops = _FailingClose()
    raised: list[BaseException] = []

    async def server(task_status: trio.TaskStatus[tuple[str, int]]) -> None:
        try:
            await serve_lock_service(
                ("127.0.0.1", 0),
                tmp_path / "d",
                block=1,  # every grant writes
                file_ops=ops,
                task_status=task_status,
            )
        except BaseException as exc:
            raised.append(exc)
            raise

    caplog.set_level(logging.DEBUG, logger="trio_foundation.coordination.lock_server")
    with trio.fail_after(30), pytest.raises(ExceptionGroup):
        async with trio.open_nursery() as nursery:
            host, port = await nursery.start(server)
            async with open_remote_lock_service(f"tcp://{host}:{port}") as client:
                ops.full = ops.broken = True
                with trio.move_on_after(20):
                    async with client.acquire(ttl=5):
                        pass  # pragma: no cover (the write fails: no grant)
    (exc,) = raised
    assert isinstance(exc, StorageFailedError) and exc.errno == errno.ENOSPC
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors == [str(exc)]  # the one line an operator reads
    closing = [
        r.getMessage() for r in caplog.records if r.getMessage().startswith("closing the state")
    ]
    assert closing == ["closing the state file after a failure: [Errno 5] close failed"]


def test_a_storage_failure_without_a_system_description_names_the_cause() -> None:
    exc = StorageFailedError("/d/state.log", OSError("the disk went away"))
    assert str(exc) == (
        "cannot persist the lock server's state to /d/state.log: the disk went away"
        " (unknown); stopped serving (no grant was sent for an unpersisted token)"
    )
    assert (exc.path, exc.errno, exc.strerror) == ("/d/state.log", None, "the disk went away")
    coded = StorageFailedError("/d/state.log", OSError(errno.ENOSPC, "No space left"))
    assert str(coded).startswith(
        "cannot persist the lock server's state to /d/state.log: No space left (ENOSPC);"
    )


def test_each_save_is_reported_with_its_mark_ttl_and_duration(tmp_path: Path) -> None:
    store = ServerStore(tmp_path / "d", block=1)
    saves: list[tuple[int, float, float]] = []
    store.on_save = lambda mark, ttl, seconds: saves.append((mark, ttl, seconds))
    store.persist(ServerDurable(1, 2.5))
    store.close()
    ((mark, ttl, seconds),) = saves
    assert (mark, ttl) == (1, 2.5)
    assert isinstance(seconds, float) and 0.0 <= seconds < 30.0
