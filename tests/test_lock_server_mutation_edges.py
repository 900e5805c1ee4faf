"""coordination/lock_server.py and lease_lock.py: refusals as a monitor sees them, and the
client's per-name handles (mutation survivors).

A TCP lock server in this process on a free loopback port with a
:class:`~trio_foundation.coordination.lock_monitor.LockServerMonitor`; a client
from :func:`~trio_foundation.coordination.tcp_lock.open_remote_lock_service`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio

from trio_foundation import LeaseRefusedError
from trio_foundation.coordination.lease_lock import LockHandle
from trio_foundation.coordination.lock_monitor import LockServerMonitor
from trio_foundation.coordination.lock_server import serve_lock_service
from trio_foundation.coordination.tcp_lock import open_remote_lock_service
from trio_foundation.protocols.lease_lock import LockClient
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
            async with open_remote_lock_service(url) as client:
                async with client.acquire(ttl=1, name="a"):
                    pass
                with pytest.raises(LeaseRefusedError, match=r"too many locks \(max 1\)"):
                    async with client.acquire(ttl=1, name="b"):
                        pass
                me = client.node_id
            nursery.cancel_scope.cancel()
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
