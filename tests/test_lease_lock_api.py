"""The lease lock's Trio API (coordination/lease_lock.py), under MockClock."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import trio
import trio.testing

from trio_foundation import LeaseLostError, LeaseRefusedError, StaleTokenError
from trio_foundation.coordination.lease_lock import FencedResource, open_lock_service
from trio_foundation.runtime.local import NodeStorage
from trio_foundation.telemetry import Event, Telemetry


@pytest.fixture
def autojump_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)


async def test_acquire_gives_a_token_and_release_frees_the_lock(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_lock_service() as service, service.connect() as lock:
        async with lock.acquire(ttl=5) as lease:
            assert lease.token == 1
            assert service.server.holder == lock.node_id
        await trio.sleep(0.01)  # let the release arrive
        assert service.server.holder is None
        async with lock.acquire(ttl=5) as lease:
            assert lease.token == 2


async def test_two_clients_never_hold_the_lock_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    inside: list[int] = []
    log: list[tuple[int, int]] = []

    async def worker(lock_id: int, lock: object) -> None:
        for _ in range(5):
            async with lock.acquire(ttl=2) as lease:  # type: ignore[attr-defined]
                inside.append(lock_id)
                assert len(inside) == 1, f"two holders: {inside}"
                log.append((lock_id, lease.token))
                await trio.sleep(0.3)
                inside.remove(lock_id)

    async with open_lock_service() as service:
        async with service.connect(seed=1) as a, service.connect(seed=2) as b:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(worker, 1, a)
                nursery.start_soon(worker, 2, b)
    tokens = [t for _, t in log]
    assert tokens == sorted(tokens) and len(set(tokens)) == 10
    assert {who for who, _ in log} == {1, 2}


async def test_renewals_keep_a_long_body_running(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_lock_service() as service, service.connect() as lock:
        async with lock.acquire(ttl=1) as lease:
            await trio.sleep(10)  # ten times the ttl
            assert lease.renewals >= 10
            assert lease.deadline > trio.current_time()


async def test_losing_the_server_cancels_the_body_before_the_deadline(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_lock_service() as service, service.connect(max_drift=0.01) as lock:
        reached_end = False
        with pytest.raises(LeaseLostError, match="lease with token 1 lost") as info:
            async with lock.acquire(ttl=1, margin=0.1) as lease:
                service.network.cut(lock.node_id, 0)  # renewals no longer reach the server
                deadline = lease.deadline
                await trio.sleep(100)
                reached_end = True
        assert not reached_end
        assert info.value.token == 1
        assert trio.current_time() <= deadline - 0.1 + 1e-9
        # meanwhile the server let the lease expire and can grant it again
        service.network.heal()
        async with lock.acquire(ttl=1) as lease:
            assert lease.token == 2


async def test_waiting_for_a_held_lock_can_be_cancelled(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_lock_service() as service:
        async with service.connect() as a, service.connect() as b:
            async with a.acquire(ttl=5):
                with trio.move_on_after(3) as scope:
                    async with b.acquire(ttl=5):
                        pytest.fail("b got the lock while a held it")
                assert scope.cancelled_caught
            # b's abandoned request leaves it free to try again
            async with b.acquire(ttl=5) as lease:
                assert lease.token == 2


async def test_a_body_cancelled_from_outside_still_releases(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_lock_service() as service, service.connect() as lock:
        with trio.move_on_after(1):
            async with lock.acquire(ttl=5):
                await trio.sleep_forever()
        await trio.sleep(0.01)
        assert service.server.holder is None


async def test_fencing_refuses_the_stale_holder_after_a_regrant(
    autojump_clock: trio.testing.MockClock,
) -> None:
    resource = FencedResource()
    async with open_lock_service() as service:
        async with service.connect() as a, service.connect() as b:
            with pytest.raises(LeaseLostError):
                async with a.acquire(ttl=1) as old:
                    service.network.cut(a.node_id, 0)
                    await trio.sleep_forever()
            async with b.acquire(ttl=1) as new:
                resource.check(new.token)
            # a write a sent while it held the lease arrives late
            with pytest.raises(StaleTokenError):
                resource.check(old.token)


async def test_a_restarted_service_keeps_tokens_increasing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    storage = NodeStorage()
    async with open_lock_service(storage=storage) as service, service.connect() as lock:
        async with lock.acquire(ttl=2) as lease:
            first = lease.token
    async with open_lock_service(storage=storage) as service, service.connect() as lock:
        start = trio.current_time()
        async with lock.acquire(ttl=2) as lease:
            assert lease.token > first
            assert trio.current_time() - start >= 2  # the quiet period


async def test_misuse_is_refused_clearly(autojump_clock: trio.testing.MockClock) -> None:
    async with open_lock_service(max_ttl=10) as service, service.connect() as lock:
        with pytest.raises(ValueError, match="ttl must be > 0"):
            async with lock.acquire(ttl=0):
                pass
        with pytest.raises(ValueError, match="margin must be in"):
            async with lock.acquire(ttl=1, margin=5):
                pass
        async with lock.acquire(ttl=1):
            with pytest.raises(RuntimeError, match="already holds"):
                async with lock.acquire(ttl=1):
                    pass


async def test_the_client_emits_telemetry(autojump_clock: trio.testing.MockClock) -> None:
    telemetry = Telemetry(slow_handler=None)
    seen: list[tuple[str, dict[str, float], dict[str, object]]] = []
    names = [f"lease_lock.{n}" for n in ("acquired", "renewed", "lost", "released", "refused")]

    def record(event: Event) -> None:
        seen.append((event.name, dict(event.measurements), dict(event.metadata)))

    with telemetry.attached("test", names, record):
        async with open_lock_service(max_ttl=10, telemetry=telemetry) as service:
            async with service.connect(seed=1) as a, service.connect(seed=2) as b:
                async with a.acquire(ttl=2) as lease:
                    await trio.sleep(5)  # renewed several times

                async def wait_for_b() -> None:
                    async with b.acquire(ttl=2):
                        pass

                async with trio.open_nursery() as nursery:
                    async with a.acquire(ttl=2):
                        nursery.start_soon(wait_for_b)
                        await trio.sleep(1)
                with pytest.raises(LeaseLostError):
                    async with a.acquire(ttl=2):
                        service.network.cut(a.node_id, 0)
                        await trio.sleep_forever()
                service.network.heal()
                with pytest.raises(LeaseRefusedError):
                    async with a.acquire(ttl=11):
                        pass
    kinds = [name for name, _, _ in seen]
    assert kinds[0] == "lease_lock.acquired" and seen[0][2]["token"] == lease.token
    assert seen[0][2] == {"name": "default", "token": lease.token, "client": a.node_id}
    renewed = [
        m for name, m, meta in seen if name == "lease_lock.renewed" and meta["token"] == lease.token
    ]
    assert len(renewed) == lease.renewals >= 2
    assert [m["renewals"] for m in renewed] == list(range(1, lease.renewals + 1))
    assert kinds.count("lease_lock.released") == 3  # a twice, b once
    b_acquired = [
        m for name, m, meta in seen if name == "lease_lock.acquired" and meta["client"] == b.node_id
    ]
    assert len(b_acquired) == 1 and b_acquired[0]["wait"] >= 0.9  # b waited for a's release
    assert kinds[-2:] == ["lease_lock.lost", "lease_lock.refused"]


def test_the_telemetry_doc_example_runs() -> None:
    doc = Path(__file__).resolve().parent.parent / "docs" / "telemetry.md"
    section = doc.read_text(encoding="utf-8").split("## Lease lock events", 1)[1]
    code = re.findall(r"```python\n(.*?)```", section, re.S)[0]
    exec(compile(code, str(doc), "exec"), {})
