"""The lease lock and leader election on a real etcd (marker ``etcd``)."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from trio_foundation import LeadershipLostError, LeaseLostError
from trio_foundation.etcd import EtcdLock, open_etcd_client, open_etcd_election
from trio_foundation.etcd.testing import EtcdCluster

pytestmark = pytest.mark.etcd


@pytest.fixture(scope="module")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    with EtcdCluster.start(tmp_path_factory.mktemp("etcd")) as cluster:
        yield cluster


async def test_contenders_hold_the_lock_one_at_a_time_with_increasing_tokens(
    etcd: EtcdCluster,
) -> None:
    holders: list[tuple[float, float, int]] = []  # (entered, left, token)
    inside = 0

    async def contender(i: int) -> None:
        nonlocal inside
        async with open_etcd_client(etcd.endpoints) as client:
            lock = EtcdLock(client, prefix=f"/mutex-{os.getpid()}")
            for _ in range(3):
                async with lock.acquire(ttl=5, name="shared") as lease:
                    inside += 1
                    assert inside == 1, "two holders at once"
                    entered = trio.current_time()
                    await trio.sleep(0.01 * (i % 3))
                    inside -= 1
                    holders.append((entered, trio.current_time(), lease.token))

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            for i in range(5):
                nursery.start_soon(contender, i)
    assert len(holders) == 15
    holders.sort()
    for (_, left, token), (entered, _, next_token) in itertools.pairwise(holders):
        assert left <= entered
        assert next_token > token  # fencing tokens grow with every acquisition


async def test_a_waiter_that_gives_up_leaves_no_queue_entry(etcd: EtcdCluster) -> None:
    prefix = f"/giveup-{os.getpid()}"
    async with open_etcd_client(etcd.endpoints) as client:
        lock = EtcdLock(client, prefix=prefix)
        async with lock.acquire(ttl=5, name="n"):
            with trio.move_on_after(0.3) as waited:
                async with lock.acquire(ttl=5, name="n"):
                    raise AssertionError("acquired a held lock")
            assert waited.cancelled_caught
            queue = await client.range(prefix + "/lock/n/", prefix=True)
            assert len(queue.kvs) == 1  # only the holder's key
        with trio.fail_after(2):  # nobody stale in front of the next caller
            async with lock.acquire(ttl=5, name="n"):
                pass
        assert (await client.range(prefix, prefix=True)).kvs == ()


async def test_independent_names_do_not_block_each_other(etcd: EtcdCluster) -> None:
    async with open_etcd_client(etcd.endpoints) as client:
        lock = EtcdLock(client, prefix=f"/names-{os.getpid()}")
        with trio.fail_after(5):
            async with lock.acquire(ttl=5, name="a"), lock.acquire(ttl=5, name="b"):
                pass


async def test_a_revoked_lease_cancels_the_holder(etcd: EtcdCluster) -> None:
    async with open_etcd_client(etcd.endpoints) as client:
        lock = EtcdLock(client, prefix=f"/revoke-{os.getpid()}")
        with trio.fail_after(10), pytest.raises(LeaseLostError) as info:
            async with lock.acquire(ttl=3) as lease:
                leases = await client.range(f"/revoke-{os.getpid()}", prefix=True)
                await client.revoke_lease(leases.kvs[0].lease)
                await trio.sleep(30)
        assert info.value.token == lease.token


HOLDER = textwrap.dedent(
    """
    import sys, trio
    from trio_foundation.etcd import EtcdLock, open_etcd_client

    async def main():
        async with open_etcd_client(sys.argv[1]) as client:
            async with EtcdLock(client, prefix=sys.argv[2]).acquire(ttl=2, name="x") as lease:
                print(lease.token, flush=True)
                await trio.sleep_forever()

    trio.run(main)
    """
)


async def test_a_killed_holder_process_frees_the_lock_within_its_ttl(
    etcd: EtcdCluster, tmp_path: Path
) -> None:
    prefix = f"/killed-{os.getpid()}"
    proc = await trio.lowlevel.open_process(
        [sys.executable, "-c", HOLDER, etcd.endpoints[0], prefix], stdout=subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        out = b""
        with trio.fail_after(20):
            while not out.endswith(b"\n"):
                chunk = await proc.stdout.receive_some()
                assert chunk, "the holder exited before printing its token"
                out += chunk
        dead_token = int(out)
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
        killed_at = trio.current_time()
        async with open_etcd_client(etcd.endpoints) as client:
            with trio.fail_after(10):
                async with EtcdLock(client, prefix=prefix).acquire(ttl=2, name="x") as lease:
                    waited = trio.current_time() - killed_at
        assert lease.token > dead_token
        assert waited <= 2 + 1.5  # the dead holder's ttl, plus etcd's expiry granularity
    finally:
        with trio.CancelScope(shield=True, deadline=trio.current_time() + 5):
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            if proc.stdout is not None:
                await proc.stdout.aclose()


async def test_election_leader_is_observable_and_hands_over(etcd: EtcdCluster) -> None:
    async with open_etcd_client(etcd.endpoints) as client:
        name = f"e{os.getpid()}"
        async with open_etcd_election(client, name) as election:
            assert election.leader.value is None
            first_in = trio.Event()
            release_first = trio.Event()
            order: list[str] = []

            async def candidate(me: str, started: trio.Event | None) -> None:
                async with election.leadership(me, ttl=3) as term:
                    order.append(me)
                    if started is not None:
                        started.set()
                        await release_first.wait()
                    assert term.candidate == me

            with trio.fail_after(20):
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(candidate, "n1", first_in)
                    await first_in.wait()
                    await election.leader.wait_value("n1")
                    nursery.start_soon(candidate, "n2", None)
                    await trio.sleep(0.3)
                    assert order == ["n1"]  # n2 waits while n1 leads
                    release_first.set()
                await election.leader.wait_value(None)
            assert order == ["n1", "n2"]


async def test_lost_leadership_cancels_the_leader(etcd: EtcdCluster) -> None:
    async with open_etcd_client(etcd.endpoints) as client:
        async with open_etcd_election(client, f"lost{os.getpid()}") as election:
            with trio.fail_after(10), pytest.raises(LeadershipLostError, match="'me'"):
                async with election.leadership("me", ttl=3) as term:
                    await client.revoke_lease(term.lease.id)
                    await trio.sleep(30)


async def test_bad_names_are_refused(etcd: EtcdCluster) -> None:
    async with open_etcd_client(etcd.endpoints) as client:
        with pytest.raises(ValueError, match="contain no '/'"):
            async with EtcdLock(client).acquire(ttl=1, name="a/b"):
                pass
        with pytest.raises(ValueError, match="ttl must be > 0"):
            async with EtcdLock(client).acquire(ttl=-1):
                pass
        with pytest.raises(ValueError, match="election name"):
            async with open_etcd_election(client, ""):
                pass
