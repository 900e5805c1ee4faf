"""Chaos on real processes: three ``foundation kv serve`` members behind loopback
proxies, clients on ``open_raft_client`` + :class:`RaftKV`, a seeded nemesis, and
the client history checked linearizable.

Every link goes through a :class:`LoopbackProxy` on 127.0.0.1: each member is
told its peers' addresses as the proxies of its own outgoing links (six, one per
directed link, so a cut can be one-way), and the clients reach each member
through one more proxy per member. The nemesis, seeded, keeps doing one of:
SIGKILL the leader or a follower and restart it from its data dir 0.3-1.5 s
later; SIGSTOP the leader or a follower for 0.3-2 s, then SIGCONT; isolate a
member (its peer links in both directions cut, new connections refused) for
0.5-2.5 s; cut one directed peer link for as long; cut every client connection
to a member.

Four clients do ``get``, ``put`` and ``cas`` on two keys, each operation under a
3 s deadline: a write or cas cut off by it is ``info`` (the client then
continues as a fresh process), a read cut off is ``fail`` (no effect), a cas whose
comparison failed is ``fail``. Each key's history is checked as a
``cas-register`` by the project's checker.

The seed is fresh each run and printed; ``FOUNDATION_CHAOS_SEED=N`` replays the
nemesis' and the clients' choices (not the processes' timing);
``FOUNDATION_CHAOS_SECONDS`` lengthens the run (default 12 s). Every process is
stopped by its pid in a ``finally``.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import trio
from loopback_proxy import LoopbackProxy

from trio_foundation.coordination.consensus import RaftClient, open_raft_client
from trio_foundation.coordination.raft_kv import KV_CODEC, RaftKV
from trio_foundation.verify.history import HistoryEvent
from trio_foundation.verify.lincheck import check_history

pytestmark = pytest.mark.timeout(180)

SECONDS = float(os.environ.get("FOUNDATION_CHAOS_SECONDS", "12"))
FOUNDATION = [sys.executable, "-m", "trio_foundation.cli"]
IDS = (1, 2, 3)
DEADLINE = 3.0


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


class Members:
    """The three member processes, their peer proxies and their client proxies."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.ports = dict(zip(IDS, free_ports(3), strict=True))
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        self.stopped: set[int] = set()
        # (src, dst) -> proxy carrying src's connection to dst
        self.links = {
            (a, b): LoopbackProxy(("127.0.0.1", self.ports[b])) for a in IDS for b in IDS if a != b
        }
        self.client_proxies = {i: LoopbackProxy(("127.0.0.1", self.ports[i])) for i in IDS}

    def peers_of(self, i: int) -> str:
        parts = []
        for j in IDS:
            if j == i:
                parts.append(f"{j}=127.0.0.1:{self.ports[j]}")
            else:
                addr = self.links[(i, j)].listen_address
                assert addr is not None
                parts.append(f"{j}=127.0.0.1:{addr[1]}")
        return ",".join(parts)

    def spawn(self, i: int) -> Path:
        """Start member ``i``; returns its ready file."""
        ready = self.tmp / f"ready{i}"
        ready.unlink(missing_ok=True)
        with open(self.tmp / f"log{i}", "ab") as log:
            self.procs[i] = subprocess.Popen(
                [
                    *FOUNDATION,
                    *("kv", "serve", "--id", str(i), "--peers", self.peers_of(i)),
                    *("--data-dir", str(self.tmp / f"data{i}"), "--ready-file", str(ready)),
                ],
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        return ready

    async def start(self, i: int) -> None:
        self.spawn(i)
        await self.start_wait(i)

    async def start_wait(self, i: int) -> None:
        ready = self.tmp / f"ready{i}"
        with trio.fail_after(60):
            while not ready.exists():
                assert self.procs[i].poll() is None, (self.tmp / f"log{i}").read_text()
                await trio.sleep(0.05)

    def kill(self, i: int) -> None:
        proc = self.procs.pop(i)
        os.kill(proc.pid, signal.SIGKILL)
        self.stopped.discard(i)
        proc.wait(timeout=20)

    def pause(self, i: int) -> None:
        os.kill(self.procs[i].pid, signal.SIGSTOP)
        self.stopped.add(i)

    def resume(self, i: int) -> None:
        if i in self.stopped and i in self.procs:
            os.kill(self.procs[i].pid, signal.SIGCONT)
        self.stopped.discard(i)

    def stop_all(self) -> None:
        for i in list(self.procs):
            self.resume(i)
            self.kill(i)

    def isolate(self, i: int, on: bool) -> None:
        for (a, b), proxy in self.links.items():
            if i in (a, b):
                proxy.refusing = on
                if on:
                    proxy.cut_all()


async def leader(client: RaftClient) -> int | None:
    for i in IDS:
        status = await client.node_status(i, wait=0.3)
        if status is not None and status.role == "leader":
            return i
    return None


async def run_chaos(
    members: Members, seed: int, seconds: float
) -> tuple[list[HistoryEvent], Counter[str]]:
    rng = random.Random(seed)
    history: list[HistoryEvent] = []
    counts: Counter[str] = Counter()
    values = iter(range(1, 10**9))
    processes = iter(range(10**9))
    members_at: dict[int, tuple[str, int]] = {}  # filled once the proxies listen

    async def client() -> None:
        async with open_raft_client(members_at, codec=KV_CODEC, request_timeout=1.0) as raft:
            store = RaftKV(raft)
            process = next(processes)
            last: dict[str, int] = {}
            while True:
                key = f"k{rng.randrange(2)}"
                kind = rng.choice(["read", "read", "write", "cas"])
                if kind == "read":
                    history.append(HistoryEvent(process, "invoke", "read", None, key))
                    with trio.move_on_after(DEADLINE):
                        kv = await store.get(key)
                        value = int(kv.value) if kv else None
                        if value is not None:
                            last[key] = value
                        history.append(HistoryEvent(process, "ok", "read", value, key))
                        counts["read ok"] += 1
                        continue
                    history.append(HistoryEvent(process, "fail", "read", None, key))
                    counts["read fail"] += 1
                    continue
                expected = last.get(key, rng.randrange(1, 30))
                arg: Any = next(values) if kind == "write" else [expected, next(values)]
                history.append(HistoryEvent(process, "invoke", kind, arg, key))
                done = "info"
                with trio.move_on_after(DEADLINE):
                    if kind == "write":
                        await store.put(key, str(arg))
                        done = "ok"
                    else:
                        result = await store.cas(key, str(arg[0]), str(arg[1]))
                        done = "ok" if result.succeeded else "fail"
                history.append(HistoryEvent(process, done, kind, arg, key))  # type: ignore[arg-type]
                counts[f"{kind} {done}"] += 1
                if done == "ok":
                    last[key] = arg if kind == "write" else arg[1]
                if done == "info":
                    process = next(processes)  # Jepsen: a process with an open op is never reused
                await trio.sleep(rng.uniform(0, 0.01))

    async def nemesis(observer: RaftClient) -> None:
        while True:
            await trio.sleep(rng.uniform(0.3, 1.0))
            kind = rng.choice(["kill", "stop", "isolate", "cut-link", "cut-clients"])
            lead = await leader(observer)
            target = lead if lead is not None and rng.random() < 0.6 else rng.choice(IDS)
            role = "leader" if target == lead else "follower"
            counts[f"nemesis {kind} {role}"] += 1
            if kind == "kill":
                members.kill(target)
                await trio.sleep(rng.uniform(0.3, 1.5))
                await members.start(target)
            elif kind == "stop":
                members.pause(target)
                try:
                    await trio.sleep(rng.uniform(0.3, 2.0))
                finally:
                    members.resume(target)
            elif kind == "isolate":
                members.isolate(target, True)
                try:
                    await trio.sleep(rng.uniform(0.5, 2.5))
                finally:
                    members.isolate(target, False)
            elif kind == "cut-link":
                other = rng.choice([i for i in IDS if i != target])
                proxy = members.links[(target, other)]
                proxy.refusing = True
                proxy.cut_all()
                try:
                    await trio.sleep(rng.uniform(0.5, 2.5))
                finally:
                    proxy.refusing = False
            else:
                members.client_proxies[target].cut_all()

    async with trio.open_nursery() as nursery:
        for proxy in [*members.links.values(), *members.client_proxies.values()]:
            await nursery.start(proxy.run)
        for i, proxy in members.client_proxies.items():
            assert proxy.listen_address is not None
            members_at[i] = ("127.0.0.1", proxy.listen_address[1])
        for i in IDS:
            members.spawn(i)
        for i in IDS:
            await members.start_wait(i)
        async with open_raft_client(members_at, codec=KV_CODEC, request_timeout=1.0) as observer:
            for _ in range(300):
                if await leader(observer) is not None:
                    break
                await trio.sleep(0.1)
            else:
                raise AssertionError("no leader within 30 s")
            async with trio.open_nursery() as work:
                for _ in range(4):
                    work.start_soon(client)
                work.start_soon(nemesis, observer)
                await trio.sleep(seconds)
                work.cancel_scope.cancel()
        nursery.cancel_scope.cancel()
    # Operations cut off by the end of the run are indeterminate.
    pending: dict[int, HistoryEvent] = {}
    for event in history:
        if event.type == "invoke":
            pending[event.process] = event
        else:
            pending.pop(event.process, None)
    for event in pending.values():
        kind = "fail" if event.f == "read" else "info"
        history.append(HistoryEvent(event.process, kind, event.f, event.value, event.key))  # type: ignore[arg-type]
    return history, counts


async def test_kv_serve_processes_stay_linearizable_under_kills_stops_and_cuts(
    tmp_path: Path,
) -> None:
    seed = int(os.environ.get("FOUNDATION_CHAOS_SEED", random.randrange(2**32)))
    members = Members(tmp_path)
    try:
        history, counts = await run_chaos(members, seed, SECONDS)
        # no member ended on its own (only the nemesis kills them)
        for i, proc in sorted(members.procs.items()):
            log = (tmp_path / f"log{i}").read_text(errors="replace")[-2000:]
            assert proc.poll() is None, f"seed {seed}: member {i} exited by itself:\n{log}"
    finally:
        members.stop_all()
    result = check_history(history, "cas-register", timeout=60)
    verdicts = {str(p.key): p.verdict for p in result.partitions}
    print(f"seed {seed}: {dict(sorted(counts.items()))}, verdicts {verdicts}")
    replay = f"FOUNDATION_CHAOS_SEED={seed} pytest chaos/test_raft_processes.py"
    assert set(verdicts.values()) == {"linearizable"}, f"seed {seed}: {verdicts}; replay: {replay}"
    assert counts["write ok"] >= 20, f"seed {seed}: too little work: {dict(counts)}"
    assert sum(v for k, v in counts.items() if k.startswith("nemesis")) >= 3, dict(counts)
