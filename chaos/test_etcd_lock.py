"""Chaos for the lease lock on etcd: a real etcd, real clients, a seeded nemesis.

Three contenders in this process each reach etcd through their own loopback
proxy and loop: acquire the lock ``x`` (ttl 2 s), write to a
:class:`FencedResource` under the token, hold it for up to 3 s (so renewals
matter), release. A nemesis, seeded, keeps doing one of: cut every connection
of one contender's proxy; partition one contender (often the current holder)
(its proxy refuses and cuts) for 0.5-4 s; delay one contender's traffic;
SIGSTOP etcd for 0.3-3 s.

Checked afterwards, on this process's clock (all contenders share it): no two
bodies overlapped in time (mutual exclusion of the entitled intervals), tokens
strictly increase in the order the bodies began, and the resource refused no
write of a holder while it was inside its body. The broken variant —
keep-alives that never cancel the body — is caught by the same run.

The seed is fresh each run and printed; ``FOUNDATION_CHAOS_SEED=N`` replays its
fault choices (real I/O makes the exact interleaving differ between runs);
``FOUNDATION_CHAOS_SECONDS`` lengthens the run (default 20 s).
"""

from __future__ import annotations

import itertools
import math
import os
import random
from collections.abc import Iterator

import attrs
import pytest
import trio
from loopback_proxy import LoopbackProxy

from trio_foundation import LeaseLostError, StaleTokenError
from trio_foundation.etcd import EtcdClient, EtcdError, EtcdLock, open_etcd_client
from trio_foundation.etcd.testing import EtcdCluster
from trio_foundation.protocols.lease_lock import FencedResource

pytestmark = [pytest.mark.etcd, pytest.mark.timeout(240)]

SECONDS = float(os.environ.get("FOUNDATION_CHAOS_SECONDS", "20"))


@attrs.define
class Run:
    seed: int
    bodies: list[tuple[float, float, int, int]] = attrs.Factory(list)  # start, end, token, who
    refused_inside: list[tuple[int, int]] = attrs.Factory(list)
    faults: dict[str, int] = attrs.Factory(dict)
    lost: int = 0
    unavailable: int = 0
    holder: int | None = None
    holder_changed: trio.Event = attrs.Factory(trio.Event)

    acquisitions: int = 0

    def set_holder(self, who: int | None) -> None:
        self.holder = who
        self.acquisitions += who is not None
        self.holder_changed.set()
        self.holder_changed = trio.Event()


@pytest.fixture
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    with EtcdCluster.start(tmp_path_factory.mktemp("etcd")) as cluster:
        yield cluster


async def _broken_keep_alive(self: EtcdClient, lease, margin, body, lost, on_renew) -> None:  # type: ignore[no-untyped-def]
    """The broken variant: the body runs on whatever happens to the lease."""
    body.deadline = math.inf
    while True:
        await trio.sleep(lease.ttl / 3)
        try:
            await self.keep_alive_once(lease.id)
        except EtcdError:
            continue


async def run_chaos(cluster: EtcdCluster, seed: int, seconds: float) -> Run:
    rng = random.Random(seed)
    run = Run(seed)
    resource = FencedResource()
    host, port = cluster.endpoints[0].removeprefix("http://").rsplit(":", 1)
    proxies = [LoopbackProxy((host, int(port))) for _ in range(3)]

    def fault(name: str) -> None:
        run.faults[name] = run.faults.get(name, 0) + 1

    async def contender(who: int, proxy: LoopbackProxy) -> None:
        assert proxy.listen_address is not None
        endpoint = "http://{}:{}".format(*proxy.listen_address)
        async with open_etcd_client(endpoint, timeout=1.0) as client:
            lock = EtcdLock(client, prefix=f"/chaos-{seed}", margin=0.5)
            while True:
                try:
                    async with lock.acquire(ttl=2, name="x") as lease:
                        start = trio.current_time()
                        run.set_holder(who)
                        try:
                            for _ in range(rng.randint(5, 16)):
                                try:
                                    resource.check(lease.token)
                                except StaleTokenError:
                                    run.refused_inside.append((lease.token, resource.highest))
                                await trio.sleep(rng.uniform(0.2, 0.5))
                        finally:
                            run.set_holder(None)
                            run.bodies.append((start, trio.current_time(), lease.token, who))
                except LeaseLostError:
                    run.lost += 1
                except EtcdError:
                    run.unavailable += 1
                await trio.sleep(rng.uniform(0, 0.2))

    async def nemesis() -> None:
        while True:
            await trio.sleep(rng.uniform(0.2, 0.6))
            kind = rng.choice(["cut", "partition", "delay", "pause"] + ["partition-holder"] * 3)
            who = rng.randrange(3)
            longest = 4.0
            if kind == "partition-holder":
                # catch the next holder right as its body begins, and cut it off long
                # enough for etcd to expire its lease (ttl 2 s)
                seen = run.acquisitions
                with trio.move_on_after(3):
                    while run.acquisitions == seen or run.holder is None:
                        await run.holder_changed.wait()
                if run.holder is None:
                    continue
                who, kind, longest = run.holder, "partition", 5.0
            fault(kind)
            victim = proxies[who]
            if kind == "cut":
                victim.cut_all()
            elif kind == "partition":
                victim.refusing = True
                victim.cut_all()
                await trio.sleep(rng.uniform(longest - 3.5, longest))
                victim.refusing = False
            elif kind == "delay":
                victim.delay = rng.uniform(0.05, 0.4)
                await trio.sleep(rng.uniform(0.5, 3.0))
                victim.delay = 0.0
            else:
                cluster.pause(0)
                try:
                    await trio.sleep(rng.uniform(0.3, 3.0))
                finally:
                    cluster.resume(0)

    async with trio.open_nursery() as nursery:
        for proxy in proxies:
            await nursery.start(proxy.run)
        for who, proxy in enumerate(proxies):
            nursery.start_soon(contender, who, proxy)
        nursery.start_soon(nemesis)
        await trio.sleep(seconds)
        nursery.cancel_scope.cancel()
    return run


def check(run: Run) -> None:
    bodies = sorted(run.bodies)
    for (_, e1, t1, w1), (s2, _, t2, w2) in itertools.pairwise(bodies):
        assert e1 <= s2, (
            f"seed {run.seed}: contender {w1} (token {t1}) held until {e1:.3f} but "
            f"contender {w2} (token {t2}) began at {s2:.3f}"
        )
        assert t2 > t1, f"seed {run.seed}: token {t2} began after token {t1}"
    assert not run.refused_inside, f"seed {run.seed}: holders' writes refused: {run.refused_inside}"


@pytest.mark.parametrize("variant", ["correct", "broken-keepalive"])
async def test_etcd_lock_under_chaos(
    etcd: EtcdCluster, variant: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed = int(os.environ.get("FOUNDATION_CHAOS_SEED", random.randrange(2**32)))
    if variant == "broken-keepalive":
        monkeypatch.setattr(EtcdClient, "_keep_alive", _broken_keep_alive)
    run = await run_chaos(etcd, seed, SECONDS)
    print(
        f"seed {seed}: {len(run.bodies)} bodies, faults {run.faults}, "
        f"{run.lost} leases lost, {run.unavailable} etcd errors"
    )
    assert len(run.bodies) >= 4, f"seed {seed}: too few acquisitions to mean anything"
    if variant == "correct":
        check(run)
    else:
        with pytest.raises(AssertionError):
            check(run)
