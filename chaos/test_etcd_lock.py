"""Chaos for the lease lock on etcd: a real etcd, real clients, a seeded nemesis.

Three contenders in this process each reach etcd through their own loopback
proxy and loop: acquire the lock ``x`` (ttl 2 s), write to a
:class:`FencedResource` under the token, hold it for 1-8 s (so renewals
matter), release. A nemesis, seeded, keeps doing one of: cut every connection
of one contender's proxy; partition one contender (its proxy refuses and
cuts) for 0.5-4 s; delay one contender's traffic;
SIGSTOP etcd for 0.3-3 s. Six times in ten it waits for the next holder and
partitions it right as its body begins, for ttl + 1 to ttl + 3 s (past the
lease's expiry on etcd).

Checked afterwards, on this process's clock (all contenders share it): no two
bodies overlapped in time (mutual exclusion of the entitled intervals), tokens
strictly increase in the order the bodies began, and the resource refused no
write of a holder while it was inside its body. The broken variant —
keep-alives that never cancel the body — is caught by the same run.

The seed is fresh each run and printed; ``FOUNDATION_CHAOS_SEED=N`` replays its
fault choices (real I/O makes the exact interleaving differ between runs);
``FOUNDATION_CHAOS_SECONDS`` lengthens the run (default 20 s).

Two more attacks below: SIGKILL and restart of members of a 3-member cluster
while three contenders (clients of every member, with failover) contend and
increment a counter in etcd under the lock (no acknowledged increment lost);
and a holder in its own OS process SIGSTOPped past its ttl while a second
process acquires and writes, then SIGCONTed (``chaos/etcd_lock_child.py``):
the second must begin after the first's lease deadline, the first's body must
be cancelled, and the fence must refuse any stale write. The ``slow`` variants
run longer (``FOUNDATION_CHAOS_LONG_SECONDS``, ``FOUNDATION_CHAOS_ROUNDS``).
"""

from __future__ import annotations

import itertools
import json
import math
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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
TTL = 2  # seconds: the lock's lease in the three-contender chaos run


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


def violation(run: Run) -> str | None:
    """The first violation of :func:`check` in ``run`` so far, or ``None``.

    Bodies only ever get added, and a violation among some of a run's bodies is one
    among all of them (an overlap shows between neighbours in start order, a token
    that does not increase likewise): a violation seen early stays in the full run.
    """
    try:
        check(run)
    except AssertionError as exc:
        return str(exc)
    return None


async def run_chaos(
    cluster: EtcdCluster, seed: int, seconds: float, *, stop_early: bool = False
) -> Run:
    """One seeded chaos run of ``seconds`` against ``cluster``'s first member.

    With ``stop_early``, the run ends at the first violation of :func:`check`
    (checked as each body ends): it is caught exactly when the full run would be.
    """
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
                    async with lock.acquire(ttl=TTL, name="x") as lease:
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
                            if stop_early and violation(run) is not None:
                                nursery.cancel_scope.cancel()
                except LeaseLostError:
                    run.lost += 1
                except EtcdError:
                    run.unavailable += 1
                await trio.sleep(rng.uniform(0, 0.2))

    async def nemesis() -> None:
        while True:
            await trio.sleep(rng.uniform(0.2, 0.6))
            kind = rng.choice(["cut", "partition", "delay", "pause"] + ["partition-holder"] * 6)
            who = rng.randrange(3)
            shortest, longest = 0.5, 4.0
            if kind == "partition-holder":
                # catch the next holder right as its body begins, and cut it off for
                # ttl + 1 to ttl + 3 s, so that etcd expires its lease (ttl 2 s, the
                # lessor checking every 0.5 s) while the body may still run
                seen = run.acquisitions
                with trio.move_on_after(3):
                    while run.acquisitions == seen or run.holder is None:
                        await run.holder_changed.wait()
                if run.holder is None:
                    continue
                who, kind, shortest, longest = run.holder, "partition", TTL + 1.0, TTL + 3.0
            fault(kind)
            victim = proxies[who]
            if kind == "cut":
                victim.cut_all()
            elif kind == "partition":
                victim.refusing = True
                victim.cut_all()
                await trio.sleep(rng.uniform(shortest, longest))
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
    fixed = os.environ.get("FOUNDATION_CHAOS_SEED")
    if variant == "broken-keepalive":
        monkeypatch.setattr(EtcdClient, "_keep_alive", _broken_keep_alive)
    # The broken variant gets a second fresh run after a miss: a 20 s run with few
    # acquisitions may see no lease lapse under a body (CI missed it once, with
    # 5 bodies); one caught run of the two is the pass, as for the other suites'
    # broken variants. The correct variant runs once and must never fail.
    misses = []
    for _ in range(1 if variant == "correct" or fixed else 2):
        seed = int(fixed) if fixed else random.randrange(2**32)
        run = await run_chaos(etcd, seed, SECONDS)
        print(
            f"seed {seed}: {len(run.bodies)} bodies, faults {run.faults}, "
            f"{run.lost} leases lost, {run.unavailable} etcd errors"
        )
        assert len(run.bodies) >= 4, f"seed {seed}: too few acquisitions to mean anything"
        if variant == "correct":
            check(run)
            return
        try:
            check(run)
        except AssertionError:
            return  # caught
        misses.append(seed)
    pytest.fail(f"the broken keep-alive was not caught (fresh seeds {misses})")


# --- SIGKILL and restart of members of a 3-member cluster ------------------------------------


@pytest.fixture
def etcd3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    with EtcdCluster.start(tmp_path_factory.mktemp("etcd3"), members=3) as cluster:
        yield cluster


@attrs.define
class KillRun:
    seed: int
    bodies: list[tuple[float, float, int, int]] = attrs.Factory(list)  # start, end, token, who
    refused_inside: list[tuple[int, int]] = attrs.Factory(list)
    kills: int = 0
    acked: int = 0  # counter increments etcd acknowledged
    ambiguous: int = 0  # increments whose put failed without an answer (may have applied)
    stale_reads: list[tuple[int, int, int]] = attrs.Factory(list)  # token, read, expected
    lost: int = 0
    unavailable: int = 0


async def run_member_kills(cluster: EtcdCluster, seed: int, seconds: float) -> KillRun:
    """Three contenders (clients of all three members) under SIGKILL/restart of members.

    Each body reads the counter key, writes it + 1 (no compare-and-swap: only
    the lock keeps increments from being lost), and checks the token against a
    :class:`FencedResource`. A nemesis SIGKILLs one member at a time for
    0.5-3 s and restarts it from its data dir (a majority always stays up).
    """
    rng = random.Random(seed)
    run = KillRun(seed)
    resource = FencedResource()
    counter = f"/chaos-{seed}/counter"
    expected = 0  # the last acknowledged counter value, if no write was ambiguous since

    async def contender(who: int) -> None:
        nonlocal expected
        endpoints = list(cluster.endpoints)
        rng.shuffle(endpoints)
        async with open_etcd_client(endpoints, timeout=2.0) as client:
            lock = EtcdLock(client, prefix=f"/chaos-{seed}", margin=0.5)
            while True:
                try:
                    async with lock.acquire(ttl=2, name="x") as lease:
                        start = trio.current_time()
                        try:
                            for _ in range(rng.randint(1, 4)):
                                try:
                                    resource.check(lease.token)
                                except StaleTokenError:
                                    run.refused_inside.append((lease.token, resource.highest))
                                got = await client.get(counter)
                                value = int(got.value) if got is not None else 0
                                if run.ambiguous == 0 and value != expected:
                                    run.stale_reads.append((lease.token, value, expected))
                                try:
                                    await client.put(counter, str(value + 1))
                                except EtcdError:
                                    run.ambiguous += 1
                                    raise
                                run.acked += 1
                                expected = value + 1
                                await trio.sleep(rng.uniform(0.05, 0.3))
                        finally:
                            run.bodies.append((start, trio.current_time(), lease.token, who))
                except LeaseLostError:
                    run.lost += 1
                except EtcdError:
                    run.unavailable += 1
                await trio.sleep(rng.uniform(0, 0.1))

    async def nemesis() -> None:
        while True:
            await trio.sleep(rng.uniform(0.3, 1.5))
            victim = rng.randrange(len(cluster.members))
            cluster.kill(victim)
            run.kills += 1
            await trio.sleep(rng.uniform(0.5, 3.0))
            await trio.to_thread.run_sync(cluster.restart, victim)

    async with trio.open_nursery() as nursery:
        for who in range(3):
            nursery.start_soon(contender, who)
        nursery.start_soon(nemesis)
        await trio.sleep(seconds)
        nursery.cancel_scope.cancel()
    async with open_etcd_client(list(cluster.endpoints), timeout=10.0) as client:
        final = await client.get(counter)
    final_value = int(final.value) if final is not None else 0
    assert run.acked <= final_value <= run.acked + run.ambiguous, (
        f"seed {seed}: {run.acked} acknowledged increments (+{run.ambiguous} ambiguous) "
        f"but the counter reads {final_value}: an acknowledged write was lost or doubled"
    )
    return run


def check_kills(run: KillRun) -> None:
    bodies = sorted(run.bodies)
    for (_, e1, t1, w1), (s2, _, t2, w2) in itertools.pairwise(bodies):
        assert e1 <= s2, (
            f"seed {run.seed}: contender {w1} (token {t1}) held until {e1:.3f} but "
            f"contender {w2} (token {t2}) began at {s2:.3f}"
        )
        assert t2 > t1, f"seed {run.seed}: token {t2} began after token {t1}"
    assert not run.refused_inside, f"seed {run.seed}: holders' writes refused: {run.refused_inside}"
    assert not run.stale_reads, f"seed {run.seed}: a holder read a stale counter: {run.stale_reads}"


async def _member_kills(cluster: EtcdCluster, seconds: float) -> None:
    seed = int(os.environ.get("FOUNDATION_CHAOS_SEED", random.randrange(2**32)))
    print(f"seed {seed}")
    run = await run_member_kills(cluster, seed, seconds)
    print(
        f"seed {seed}: {len(run.bodies)} bodies, {run.kills} member kills, {run.acked} acked "
        f"increments (+{run.ambiguous} ambiguous), {run.lost} leases lost, "
        f"{run.unavailable} etcd errors"
    )
    assert run.kills >= 2 and run.acked >= 5, f"seed {seed}: too little happened to mean anything"
    check_kills(run)


async def test_etcd_lock_member_kills(etcd3: EtcdCluster) -> None:
    await _member_kills(etcd3, min(SECONDS, 12.0))


@pytest.mark.slow
@pytest.mark.timeout(900)
async def test_etcd_lock_member_kills_long(etcd3: EtcdCluster) -> None:
    await _member_kills(etcd3, float(os.environ.get("FOUNDATION_CHAOS_LONG_SECONDS", "120")))


# --- a holder in another OS process, SIGSTOPped past its ttl ---------------------------------

CHILD = Path(__file__).with_name("etcd_lock_child.py")


@attrs.define
class Child:
    process: trio.Process
    buffer: bytearray = attrs.Factory(bytearray)
    events: list[dict[str, Any]] = attrs.Factory(list)

    async def next_event(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        while b"\n" not in self.buffer:
            chunk = await self.process.stdout.receive_some(4096)
            if not chunk:
                raise AssertionError(f"child {self.process.pid} closed stdout: {self.events}")
            self.buffer += chunk
        line, _, rest = bytes(self.buffer).partition(b"\n")
        self.buffer = bytearray(rest)
        event: dict[str, Any] = json.loads(line)
        self.events.append(event)
        return event


@attrs.define
class PauseRound:
    first_token: int
    first_entitled_until: float  # the first holder's lease deadline as it knew it last
    second_token: int
    second_start: float
    pause: float
    stale_accepted: int  # the first holder's writes accepted after the second's began
    stale_refused: int
    first_outcome: str
    # each refused write: (its time in the writer, the writer's lease deadline then,
    # the time the first was stopped, resumed)
    refused: list[tuple[float, float, float, float]] = attrs.Factory(list)


async def pause_round(
    cluster: EtcdCluster, rng: random.Random, prefix: str, *, broken: bool = False
) -> PauseRound:
    """One round: A holds, is SIGSTOPped past its ttl, B acquires and writes, A is SIGCONTed."""
    endpoints = ",".join(cluster.endpoints)
    resource = FencedResource()
    ttl = 2
    pause = rng.uniform(ttl + 1.0, ttl + 3.0)
    second_began = False
    stale_accepted = stale_refused = 0
    refused: list[tuple[float, float, float, float]] = []
    paused_at = resumed_at = math.nan

    def write(event: dict[str, Any], *, first: bool) -> None:
        nonlocal stale_accepted, stale_refused
        try:
            resource.check(event["token"])
        except StaleTokenError:
            assert first, f"the current holder's write was refused: {event}"
            stale_refused += 1
            at = event.get("at", math.nan)
            refused.append((at, event["deadline"], paused_at, resumed_at))
        else:
            stale_accepted += first and second_began

    async def spawn(writes: int) -> trio.Process:
        command = [sys.executable, str(CHILD), endpoints, prefix, str(ttl), str(writes)]
        command += ["broken"] if broken else []
        return await trio.lowlevel.open_process(command, stdout=subprocess.PIPE)

    a = Child(await spawn(200))  # 20 s of writes: far longer than the round
    b: Child | None = None
    try:
        acquired = await a.next_event()
        assert acquired["event"] == "acquired", acquired
        entitled = acquired["deadline"]
        with trio.move_on_after(rng.uniform(0.2, 1.5)):
            while True:
                event = await a.next_event()
                write(event, first=True)
                entitled = event["deadline"]
        os.kill(a.process.pid, signal.SIGSTOP)
        paused_at = time.monotonic()
        # Drain the lines A printed before it stopped (they were written while entitled).
        with trio.move_on_after(0.2):
            while True:
                event = await a.next_event()
                write(event, first=True)
                entitled = event["deadline"]
        b = Child(await spawn(10))
        second = await b.next_event()
        assert second["event"] == "acquired", second
        second_began = True
        for _ in range(3):
            event = await b.next_event()
            write(event, first=False)
        await trio.sleep(max(0.0, pause - (time.monotonic() - paused_at)))
        os.kill(a.process.pid, signal.SIGCONT)
        resumed_at = time.monotonic()
        for _ in range(10):  # a stale holder that keeps writing is cut short (killed below)
            if (event := await a.next_event())["event"] != "write":
                break
            write(event, first=True)
        else:
            event = {"event": "still-writing"}
        while (done := await b.next_event())["event"] == "write":
            write(done, first=False)
        assert done["event"] == "released", done
        await b.process.wait()
        return PauseRound(
            first_token=acquired["token"],
            first_entitled_until=entitled,
            second_token=second["token"],
            second_start=second["start"],
            pause=pause,
            stale_accepted=stale_accepted,
            stale_refused=stale_refused,
            refused=refused,
            first_outcome=event["event"],
        )
    finally:
        for child in (a, b):
            if child is not None and child.process.returncode is None:
                os.kill(child.process.pid, signal.SIGCONT)
                child.process.kill()
                await child.process.wait()


def round_violations(r: PauseRound) -> list[str]:
    """What went wrong in one round (empty: nothing)."""
    found = []
    if r.second_token <= r.first_token:
        found.append(f"token {r.second_token} after {r.first_token}")
    if r.second_start < r.first_entitled_until:
        found.append("the second holder began while the first was still entitled")
    if r.stale_accepted:
        found.append(f"{r.stale_accepted} stale writes accepted")
    # A write its holder made while entitled (before its own lease deadline) may reach
    # the resource after the successor's: stopped between stamping and printing it, the
    # holder sends it on SIGCONT (seen: made 0.4 ms before the SIGSTOP). The fence
    # refusing it is what the fence is for; a write made past the deadline is not.
    late = [w for w in r.refused if not w[0] < w[1]]
    if late:
        found.append(f"{len(late)} writes made past the writer's lease deadline (fenced)")
    if r.first_outcome != "lost":
        found.append(f"the paused holder's body was not cancelled ({r.first_outcome})")
    return found


async def _paused_holders(cluster: EtcdCluster, rounds: int, *, broken: bool = False) -> int:
    seed = int(os.environ.get("FOUNDATION_CHAOS_SEED", random.randrange(2**32)))
    print(f"seed {seed}")
    rng = random.Random(seed)
    violations = 0
    for n in range(rounds):
        r = await pause_round(cluster, rng, f"/pause-{seed}-{n}", broken=broken)
        found = round_violations(r)
        print(f"seed {seed} round {n}: {r} {found}")
        assert r.stale_accepted == 0, f"seed {seed}: the fence let a stale write through: {r}"
        violations += bool(found)
    print(f"seed {seed}: {rounds} rounds, {violations} with violations (broken={broken})")
    return violations


async def test_etcd_lock_paused_holder_process(etcd: EtcdCluster) -> None:
    assert await _paused_holders(etcd, 2) == 0


async def test_etcd_lock_paused_holder_process_broken_caught(etcd: EtcdCluster) -> None:
    """Keep-alives that never cancel the body: the resumed holder keeps writing; fenced."""
    assert await _paused_holders(etcd, 1, broken=True) == 1


@pytest.mark.slow
@pytest.mark.timeout(1800)
async def test_etcd_lock_paused_holder_process_long(etcd: EtcdCluster) -> None:
    rounds = int(os.environ.get("FOUNDATION_CHAOS_ROUNDS", "30"))
    assert await _paused_holders(etcd, rounds) == 0
    assert await _paused_holders(etcd, rounds, broken=True) == rounds
