"""The lease-lock client's telemetry through ``connect_lock_service(url, telemetry=)``,
and its fallback to ``default_telemetry()`` like the library's other components."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from trio_foundation.coordination.connect import connect_lock_service
from trio_foundation.coordination.lease_lock import open_lock_service
from trio_foundation.coordination.lock_server import serve_lock_service
from trio_foundation.telemetry import Event, Telemetry, default_telemetry

EVENTS = ["lease_lock.acquired", "lease_lock.released"]


async def _serve(nursery: trio.Nursery, data_dir: Path) -> str:
    address = await nursery.start(
        lambda task_status: serve_lock_service(("127.0.0.1", 0), data_dir, task_status=task_status)
    )
    return f"tcp://{address[0]}:{address[1]}"


async def test_connect_lock_service_takes_telemetry_for_tcp(tmp_path: Path) -> None:
    telemetry = Telemetry()
    seen: list[Event] = []
    with trio.fail_after(30), telemetry.attached("t", EVENTS, seen.append):
        async with trio.open_nursery() as nursery:
            url = await _serve(nursery, tmp_path / "d")
            async with connect_lock_service(url, telemetry=telemetry) as service:
                async with service.acquire(ttl=2, name="jobs") as lease:
                    pass
            nursery.cancel_scope.cancel()
    assert [e.name for e in seen] == EVENTS
    assert all(e.metadata["name"] == "jobs" and e.metadata["token"] == lease.token for e in seen)


async def test_etcd_refuses_telemetry_it_would_not_emit() -> None:
    with pytest.raises(ValueError, match="telemetry is for tcp://"):
        async with connect_lock_service("etcd://127.0.0.1:1", telemetry=Telemetry()):
            pass


async def test_clients_fall_back_to_default_telemetry(tmp_path: Path) -> None:
    seen: list[str] = []
    with (
        trio.fail_after(30),
        default_telemetry().attached("t", EVENTS, lambda e: seen.append(e.name)),
    ):
        async with open_lock_service() as service, service.connect() as lock:
            async with lock.acquire(ttl=2):
                pass
        async with trio.open_nursery() as nursery:
            url = await _serve(nursery, tmp_path / "d")
            async with connect_lock_service(url) as remote:
                async with remote.acquire(ttl=2):
                    pass
            nursery.cancel_scope.cancel()
    assert seen == EVENTS * 2
