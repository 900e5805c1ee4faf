"""Chaos for the key-value store on etcd: a 3-member etcd cluster, a seeded nemesis,
and every client history checked linearizable (no acknowledged write lost, no
stale read).

Four clients, each connected to all three members through one loopback proxy per
member, do reads, writes and compare-and-swaps on three keys through
:class:`EtcdKV`. The nemesis, seeded, keeps doing one of: SIGKILL a member and
restart it from its data dir 0.5-2 s later; SIGSTOP a member for 0.3-2 s; cut
every client connection to a member; delay a member's traffic.

Outcomes are recorded as Jepsen does: ``ok``; ``fail`` for a compare-and-swap
whose comparison failed and for a read that got no answer (reads have no
effect); ``info`` for a write or compare-and-swap whose answer was lost (it may
or may not have taken effect; that client then continues as a fresh process).
Each key's history is checked as a ``cas-register`` by the project's checker.
The broken variant — a client that serves reads from a cache — is caught by the
same check; its run checks the history so far every ``CHECK_EVERY`` seconds and
stops at the first key not linearizable. Catch rates over 200 fresh runs:
``benchmarks/catch_rates_etcd_kv.py --suite chaos`` (docs/verification.md).

The seed is fresh each run and printed; ``FOUNDATION_CHAOS_SEED=N`` replays its
choices; ``FOUNDATION_CHAOS_SECONDS`` lengthens the run (default 10 s).
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from typing import Any

import attrs
import pytest
import trio
from loopback_proxy import LoopbackProxy

from trio_foundation.coordination.kv import KeyValue
from trio_foundation.etcd import EtcdError, EtcdKV, EtcdUnavailableError, open_etcd_client
from trio_foundation.etcd.testing import EtcdCluster
from trio_foundation.verify.history import HistoryEvent
from trio_foundation.verify.lincheck import check_history

pytestmark = [pytest.mark.etcd, pytest.mark.timeout(240)]

SECONDS = float(os.environ.get("FOUNDATION_CHAOS_SECONDS", "10"))
CHECK_EVERY = 2.0  # the broken variant's run checks its history so far this often


@pytest.fixture
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    with EtcdCluster.start(tmp_path_factory.mktemp("etcd"), members=3) as c:
        yield c


@attrs.define
class CachedReads:
    """The broken variant: reads come from a per-client cache that writes do not update."""

    inner: EtcdKV
    cache: dict[bytes, KeyValue | None] = attrs.Factory(dict)

    async def get(self, key: str) -> KeyValue | None:
        k = key.encode()
        if k not in self.cache:
            self.cache[k] = await self.inner.get(key)
        return self.cache[k]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@attrs.define
class Run:
    seed: int
    history: list[HistoryEvent] = attrs.Factory(list)
    faults: dict[str, int] = attrs.Factory(dict)
    counts: dict[str, int] = attrs.Factory(dict)
    stopped_at: float | None = None  # seconds into the run, when stopped at a violation

    def count(self, what: str) -> None:
        self.counts[what] = self.counts.get(what, 0) + 1


async def run_chaos(
    cluster: EtcdCluster,
    seed: int,
    seconds: float,
    *,
    broken: bool,
    stop_at_violation: float | None = None,
) -> Run:
    """Run the clients and the nemesis for ``seconds``; returns the closed history.

    With ``stop_at_violation=S``, every ``S`` seconds the history so far (its pending
    operations closed as at the end) is checked, in a worker thread while the run goes
    on, and the run stops at the first check that finds a key not linearizable: an
    operation still pending may or may not take effect, so no later operation can make
    that history linearizable, and the run's verdict is the one the whole run would
    have reached. ``Run.stopped_at`` then says when.
    """
    rng = random.Random(seed)
    run = Run(seed)
    proxies = []
    for endpoint in cluster.endpoints:
        host, port = endpoint.removeprefix("http://").rsplit(":", 1)
        proxies.append(LoopbackProxy((host, int(port))))
    values = iter(range(1, 10**9))
    processes = iter(range(10**9))

    async def client() -> None:
        urls = ["http://{}:{}".format(*p.listen_address) for p in proxies if p.listen_address]
        async with open_etcd_client(urls, timeout=1.0) as etcd:
            store: Any = EtcdKV(etcd, prefix=f"/chaos-{seed}/")
            if broken:
                store = CachedReads(store)
            process = next(processes)
            last: dict[str, int] = {}  # the last value this client saw per key
            while True:
                key = f"k{rng.randrange(3)}"
                kind = rng.choice(["read", "write", "cas"])
                if kind == "read":
                    run.history.append(HistoryEvent(process, "invoke", "read", None, key))
                    try:
                        kv = await store.get(key)
                    except EtcdError:
                        run.history.append(HistoryEvent(process, "fail", "read", None, key))
                        run.count("read-failed")
                    else:
                        value = int(kv.value) if kv else None
                        if value is not None:
                            last[key] = value
                        run.history.append(HistoryEvent(process, "ok", "read", value, key))
                        run.count("read-ok")
                    continue
                expected = last.get(key, rng.randrange(1, 30))
                arg: Any = next(values) if kind == "write" else [expected, next(values)]
                run.history.append(HistoryEvent(process, "invoke", kind, arg, key))
                try:
                    if kind == "write":
                        await store.put(key, str(arg))
                        done = "ok"
                    else:
                        result = await store.cas(key, str(arg[0]), str(arg[1]))
                        done = "ok" if result.succeeded else "fail"
                except EtcdUnavailableError as exc:
                    done = "info" if exc.outcome_unknown else "fail"
                except EtcdError:
                    done = "fail"
                run.history.append(HistoryEvent(process, done, kind, arg, key))  # type: ignore[arg-type]
                run.count(f"{kind}-{done}")
                if done == "ok":
                    last[key] = arg if kind == "write" else arg[1]
                if done == "info":
                    process = next(processes)  # Jepsen: a crashed process is never reused
                await trio.sleep(rng.uniform(0, 0.01))

    async def nemesis() -> None:
        while True:
            await trio.sleep(rng.uniform(0.3, 1.0))
            kind = rng.choice(["kill", "pause", "cut", "delay"])
            member = rng.randrange(3)
            run.faults[kind] = run.faults.get(kind, 0) + 1
            if kind == "kill":
                cluster.kill(member)
                await trio.sleep(rng.uniform(0.5, 2.0))
                await trio.to_thread.run_sync(cluster.restart, member)
            elif kind == "pause":
                cluster.pause(member)
                try:
                    await trio.sleep(rng.uniform(0.3, 2.0))
                finally:
                    cluster.resume(member)
            elif kind == "cut":
                proxies[member].cut_all()
            else:
                proxies[member].delay = rng.uniform(0.01, 0.2)
                await trio.sleep(rng.uniform(0.5, 2.0))
                proxies[member].delay = 0.0

    async with trio.open_nursery() as nursery:
        for proxy in proxies:
            await nursery.start(proxy.run)
        for _ in range(4):
            nursery.start_soon(client)
        nursery.start_soon(nemesis)
        end = trio.current_time() + seconds
        while (left := end - trio.current_time()) > 0:
            await trio.sleep(min(left, stop_at_violation or left))
            if stop_at_violation is None or trio.current_time() >= end:
                break
            so_far = closed(run.history)
            found = await trio.to_thread.run_sync(verdicts, so_far)
            if "not-linearizable" in found.values():
                run.stopped_at = seconds - (end - trio.current_time())
                break
        nursery.cancel_scope.cancel()
    run.history = closed(run.history)
    return run


def closed(history: list[HistoryEvent]) -> list[HistoryEvent]:
    """The history with each operation still pending closed as indeterminate (a read
    as ``fail``: it had no effect; a write or compare-and-swap as ``info``)."""
    pending: dict[int, HistoryEvent] = {}
    for event in history:
        if event.type == "invoke":
            pending[event.process] = event
        else:
            pending.pop(event.process, None)
    ends = [
        HistoryEvent(e.process, "fail" if e.f == "read" else "info", e.f, e.value, e.key)  # type: ignore[arg-type]
        for e in pending.values()
    ]
    return [*history, *ends]


def verdicts(history: list[HistoryEvent]) -> dict[str, str]:
    keys = sorted({e.key for e in history})
    return {
        k: check_history([e for e in history if e.key == k], "cas-register", timeout=60).verdict
        for k in keys
    }


@pytest.mark.parametrize("variant", ["correct", "cached-reads"])
async def test_etcd_kv_histories_stay_linearizable_under_chaos(
    cluster: EtcdCluster, variant: str
) -> None:
    seed = int(os.environ.get("FOUNDATION_CHAOS_SEED", random.randrange(2**32)))
    broken = variant == "cached-reads"
    run = await run_chaos(
        cluster, seed, SECONDS, broken=broken, stop_at_violation=CHECK_EVERY if broken else None
    )
    found = verdicts(run.history)
    print(
        f"seed {seed}: faults {run.faults}, outcomes {run.counts}, verdicts {found},"
        f" stopped at {run.stopped_at}"
    )
    if broken and "not-linearizable" in found.values():
        return  # caught: a stale read needs no minimum of work to count
    assert run.counts.get("write-ok", 0) >= 20, f"seed {seed}: too little work: {run.counts}"
    if variant == "correct":
        assert set(found.values()) == {"linearizable"}, f"seed {seed}: {found}"
    else:
        assert "not-linearizable" in found.values(), f"seed {seed}: stale reads not caught"
