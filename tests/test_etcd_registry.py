"""The etcd registry beyond the conformance suite: several processes, death, faults, input.

Against a real etcd (marker ``etcd``), started once for the module; each test has its own
prefix. "Another process" is another client with its own registry view (and, for the
death test, a real subprocess killed with SIGKILL).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
from loopback_proxy import LoopbackProxy

from trio_foundation.etcd import EtcdClient, EtcdRegistry, open_etcd_client, open_etcd_registry
from trio_foundation.etcd.testing import EtcdCluster
from trio_foundation.registry import DuplicateKeyError, Index, Registered, Unregistered

pytestmark = pytest.mark.etcd


@pytest.fixture(scope="module")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    with EtcdCluster.start(tmp_path_factory.mktemp("etcd")) as cluster:
        yield cluster


@pytest.fixture
async def prefix(request: pytest.FixtureRequest) -> str:
    return f"/registry-tests/{request.node.name}"


async def _eventually(condition: object, within: float = 5.0) -> None:
    """Poll ``condition`` (another process's view has no event of ours to wait on)."""
    assert callable(condition)
    with trio.fail_after(within):
        while not condition():  # noqa: ASYNC110 - polling a view we do not own
            await trio.sleep(0.01)


async def _keys_under(client: EtcdClient, prefix: str) -> int:
    return (await client.range(prefix + "/", prefix=True, count_only=True)).count


async def test_two_processes_share_entries_unique_keys_and_changes(
    etcd: EtcdCluster, prefix: str
) -> None:
    url = etcd.endpoints[0]
    async with (
        open_etcd_client(url) as ca,
        open_etcd_client(url) as cb,
        open_etcd_registry(ca, prefix=prefix, indexes=[Index("node")]) as a,
        open_etcd_registry(cb, prefix=prefix, indexes=[Index("node")]) as b,
        b.watch(capacity=10) as changes,
    ):
        async with a.register("svc", {"node": "n1"}, value="addr:1") as entry:
            # a reads its own write at once; b follows through its watch
            assert a.lookup("svc") == entry
            await _eventually(lambda: b.lookup("svc") == entry)
            assert b.select({"node": "n1"}).entries == (entry,)
            # the key is unique across processes: etcd's transaction refuses b
            with pytest.raises(DuplicateKeyError, match="'svc' is already registered"):
                async with b.register("svc", {}):
                    raise AssertionError("registered a held key")
            assert await changes.receive() == Registered(entry)
        await _eventually(lambda: b.lookup("svc") is None)
        assert await changes.receive() == Unregistered(entry)
        # freed, b may take it; the ids increase
        async with b.register("svc", {"node": "n2"}) as again:
            assert again.id > entry.id
            await _eventually(lambda: a.lookup("svc") == again)
        assert await _keys_under(ca, prefix) == 0


DYING_OWNER = textwrap.dedent(
    """
    import sys, trio
    from trio_foundation.etcd import open_etcd_client, open_etcd_registry

    async def main(url, prefix):
        async with open_etcd_client(url) as client:
            async with open_etcd_registry(client, prefix=prefix, ttl=2) as reg:
                async with reg.register("owned-by-child", {"pid": 1}):
                    print("registered", flush=True)
                    await trio.sleep_forever()

    trio.run(main, sys.argv[1], sys.argv[2])
    """
)


async def test_an_entry_vanishes_within_the_ttl_when_its_process_dies(
    etcd: EtcdCluster, prefix: str, tmp_path: Path
) -> None:
    script = tmp_path / "owner.py"
    script.write_text(DYING_OWNER, encoding="utf-8")
    child = subprocess.Popen(  # noqa: ASYNC220 - starting it does not block
        [sys.executable, str(script), etcd.endpoints[0], prefix],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        line = await trio.to_thread.run_sync(child.stdout.readline)
        assert line.strip() == "registered"
        async with (
            open_etcd_client(etcd.endpoints[0]) as client,
            open_etcd_registry(client, prefix=prefix) as reg,
        ):
            assert reg.lookup("owned-by-child") is not None
            os.kill(child.pid, signal.SIGKILL)
            killed = trio.current_time()
            # no revoke happened: the entry lives until its lease expires (ttl 2 s, plus
            # etcd's expiry check), then every view drops it
            await _eventually(lambda: reg.lookup("owned-by-child") is None, within=2 + 3)
            gone_after = trio.current_time() - killed
            assert gone_after < 5.0
            print(f"entry of the SIGKILLed owner (ttl 2 s) gone after {gone_after:.2f} s")
            assert await _keys_under(client, prefix) == 0
    finally:
        if child.poll() is None:
            os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
        if child.stdout is not None:
            child.stdout.close()


async def test_non_json_input_is_refused_before_anything_is_written(
    etcd: EtcdCluster, prefix: str
) -> None:
    async with (
        open_etcd_client(etcd.endpoints[0]) as client,
        open_etcd_registry(client, prefix=prefix, indexes=[Index("caps", multi=True)]) as reg,
    ):
        bad: list[tuple[object, object, object, str]] = [
            (("a", "tuple"), {}, None, "must be a JSON scalar"),
            ("k", {"caps": {"a", "set"}}, None, "metadata must be JSON"),
            ("k", {1: "int key"}, None, "metadata keys must be str"),
            ("k", {"x": float("nan")}, None, "metadata must be JSON"),
            ("k", {"t": (1, 2)}, None, "does not survive JSON unchanged"),
            ("k", {}, object(), "value must be JSON"),
        ]
        for key, meta, value, message in bad:
            with pytest.raises(TypeError, match=message):
                async with reg.register(key, meta, value=value):  # type: ignore[arg-type]
                    raise AssertionError("registered bad input")
        assert len(reg) == 0 and await _keys_under(client, prefix) == 0
        with pytest.raises(ValueError, match=r"batch_limit must be in 1\.\.64"):
            async with open_etcd_registry(client, prefix=prefix, batch_limit=100):
                pass
        with pytest.raises(ValueError, match="ttl must be an int >= 2"):
            async with open_etcd_registry(client, prefix=prefix, ttl=1):
                pass


async def test_a_compacted_view_reloads_and_reports_the_difference(
    etcd: EtcdCluster, prefix: str
) -> None:
    """The follower loses etcd, writes happen and history is compacted; it reloads."""
    port = int(etcd.endpoints[0].rsplit(":", 1)[1])
    async with trio.open_nursery() as nursery:
        proxy = LoopbackProxy(("127.0.0.1", port))
        await nursery.start(proxy.run)
        assert proxy.listen_address is not None
        via_proxy = "http://{}:{}".format(*proxy.listen_address)
        async with (
            open_etcd_client(etcd.endpoints[0]) as direct,
            open_etcd_client(via_proxy, timeout=1.0) as cut_client,
            open_etcd_registry(direct, prefix=prefix) as writer,
            open_etcd_registry(cut_client, prefix=prefix) as follower,
            follower.watch() as changes,
            writer.register("old", {}) as old,
        ):
            await _eventually(lambda: follower.lookup("old") == old)
            assert await changes.receive() == Registered(old)
            proxy.refusing = True
            proxy.cut_all()
            async with writer.register("new", {"n": 1}) as new:
                await writer.unregister(old)
                await direct.compact(writer.revision)
                await _eventually(lambda: follower.outages > 0)
                assert follower.lookup("old") == old  # stale while cut off
                proxy.refusing = False
                await _eventually(lambda: follower.lookup("new") == new, within=10)
                assert follower.reloads == 1
                assert follower.lookup("old") is None and len(follower) == 1
                got = [await changes.receive(), await changes.receive()]
                assert sorted(got, key=lambda c: type(c).__name__) == [
                    Registered(new),
                    Unregistered(old),
                ]
        nursery.cancel_scope.cancel()


@pytest.mark.timeout(120)
async def test_random_deadlines_leave_no_entry_for_a_caller_that_left(
    etcd: EtcdCluster, prefix: str
) -> None:
    """Registrations cancelled at random real times: nothing remains once the callers left.

    Each round enters ``register`` under a deadline drawn fresh (0 to 15 ms, around
    a registration's few round trips), sometimes cancelling the block later. Right
    after each caller left, etcd holds no key of the registry: keys are written only
    by the transaction, which needs the lease's id, so the lease is known and revoked
    on the way out (a lease whose grant answer the cancellation cut off holds no key;
    it just expires with its ttl). This process's view drops everything within the
    watch's delay (at once when the block was entered: its exit waits for the view).
    """
    rng = random.Random()  # fresh seed each run
    ttl = 2
    outcomes = {"entered": 0, "cancelled_before": 0}
    async with (
        open_etcd_client(etcd.endpoints[0]) as client,
        open_etcd_registry(client, prefix=prefix, ttl=ttl) as reg,
    ):
        for i in range(60):
            entered = False
            with trio.move_on_after(rng.uniform(0, 0.015)):
                async with reg.register(f"k{i}", {"round": i}):
                    entered = True
                    await trio.sleep(rng.uniform(0, 0.01))
            outcomes["entered" if entered else "cancelled_before"] += 1
            if entered:
                assert reg.lookup(f"k{i}") is None
            assert await _keys_under(client, prefix) == 0, f"round {i}: a key outlived its caller"
        await _eventually(lambda: len(reg) == 0)
    # both paths were exercised, or the test measured nothing
    assert outcomes["entered"] > 0 and outcomes["cancelled_before"] > 0, outcomes
    print(f"outcomes={outcomes}")


async def test_a_registry_is_an_etcd_registry(etcd: EtcdCluster, prefix: str) -> None:
    async with (
        open_etcd_client(etcd.endpoints[0]) as client,
        open_etcd_registry(client, prefix=prefix, keys="duplicate") as reg,
    ):
        assert isinstance(reg, EtcdRegistry) and not reg.unique
        async with reg.register_many([("g", {}), ("g", {})]) as (e1, e2):
            assert e2.id == e1.id + 1  # one transaction, one revision, distinct ids
            assert reg.lookup_all("g") == (e1, e2)
        # a view loaded by a range (not the watch) holds a batch in id order too
        async with reg.register_many([(f"b{i}", {}) for i in range(12)]) as batch:
            async with open_etcd_registry(client, prefix=prefix, keys="duplicate") as late:
                assert late.select(limit=100).entries == batch
                assert [e.key for e in late.select(limit=5, after=batch[4].id).entries] == [
                    f"b{i}" for i in range(5, 10)
                ]


async def test_own_writes_are_visible_when_the_call_returns(etcd: EtcdCluster, prefix: str) -> None:
    """No other await between a write and the read: the write itself waited for the view."""
    async with (
        open_etcd_client(etcd.endpoints[0]) as client,
        open_etcd_registry(client, prefix=prefix, indexes=[Index("node")]) as reg,
        reg.watch() as changes,
    ):
        for _ in range(50):
            async with reg.register("w", {"node": "a"}) as entry:
                assert reg.lookup("w") == entry and changes.pending() == 1
                new = await reg.update(entry, {"node": "b"})
                assert new.meta == {"node": "b"} and reg.select({"node": "b"}).entries == (new,)
                assert changes.pending() == 2
                assert await reg.unregister(entry) is True
                assert reg.get(entry.id) is None and changes.pending() == 3
                while changes.pending():
                    changes.receive_nowait()
            assert await _keys_under(client, prefix) == 0


async def test_concurrent_claims_of_one_unique_key_have_one_winner(
    etcd: EtcdCluster, prefix: str
) -> None:
    """Six contenders in two processes race for one key, round after round."""
    url = etcd.endpoints[0]
    holders: list[int] = []
    overlaps = 0
    async with (
        open_etcd_client(url) as ca,
        open_etcd_client(url) as cb,
        open_etcd_registry(ca, prefix=prefix) as a,
        open_etcd_registry(cb, prefix=prefix) as b,
    ):

        async def contend(reg: EtcdRegistry, me: int, wins: list[int]) -> None:
            nonlocal overlaps
            try:
                async with reg.register("leader", {"me": me}):
                    holders.append(me)
                    overlaps += len(holders) > 1
                    wins.append(me)
                    await trio.sleep(0.005)
                    holders.remove(me)
            except DuplicateKeyError:
                pass

        for _ in range(15):
            wins: list[int] = []
            async with trio.open_nursery() as nursery:
                for me in range(6):
                    nursery.start_soon(contend, a if me % 2 else b, me, wins)
            assert len(wins) >= 1
        assert overlaps == 0
        assert await _keys_under(ca, prefix) == 0


async def test_two_views_converge_under_concurrent_churn(etcd: EtcdCluster, prefix: str) -> None:
    """Writers in two processes register, update and unregister at random; once they
    pause, both views equal a view freshly loaded from etcd (same entries, same order)."""
    rng = random.Random()
    url = etcd.endpoints[0]
    indexes = [Index("node")]
    async with (
        open_etcd_client(url) as ca,
        open_etcd_client(url) as cb,
        open_etcd_registry(ca, prefix=prefix, keys="duplicate", indexes=indexes) as a,
        open_etcd_registry(cb, prefix=prefix, keys="duplicate", indexes=indexes) as b,
    ):
        parked = [0]
        all_parked = trio.Event()
        checked = trio.Event()

        async def writer(reg: EtcdRegistry, me: int) -> None:
            async with reg.register(f"w{me}", {"node": "n0"}) as mine:
                for step in range(15):
                    entries = reg.select(limit=100).entries
                    transient = [e for e in entries if str(e.key).startswith("t")]
                    if transient and rng.random() < 0.3:
                        await reg.unregister(rng.choice(transient))
                    elif entries and rng.random() < 0.5:
                        target = rng.choice(entries)
                        try:
                            await reg.update(target, {"node": f"n{step % 3}"})
                        except KeyError:
                            pass  # unregistered meanwhile by the other process
                    else:
                        async with reg.register(f"t{me}", {"node": "n1"}):
                            await trio.sleep(rng.uniform(0, 0.005))
                parked[0] += 1
                if parked[0] == 4:
                    all_parked.set()
                await checked.wait()
                assert reg.get(mine.id) is not None

        async with trio.open_nursery() as nursery:
            for me in range(4):
                nursery.start_soon(writer, a if me % 2 else b, me)
            await all_parked.wait()
            async with open_etcd_registry(ca, prefix=prefix, keys="duplicate") as fresh:
                truth = fresh.select(limit=1000).entries
                assert sorted(str(e.key) for e in truth) == ["w0", "w1", "w2", "w3"]
                await _eventually(lambda: a.select(limit=1000).entries == truth)
                await _eventually(lambda: b.select(limit=1000).entries == truth)
                assert a.select({"node": "n0"}).entries == b.select({"node": "n0"}).entries
            checked.set()
        assert len(a) == len(b) == 0
