"""``foundation kv serve --metrics-listen``: three real processes scraped over HTTP with
httpx, and the monitor's events on a one-member node in this process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families
from raft_cluster import Total, free_ports

from trio_foundation.coordination.consensus import open_raft_node
from trio_foundation.coordination.raft_monitor import RaftNodeMonitor
from trio_foundation.telemetry import Event, MetricRegistry, Telemetry

FOUNDATION = [sys.executable, "-m", "trio_foundation.cli"]

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(url: str) -> Samples:
    body = httpx.get(url, timeout=10).text
    out: Samples = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(samples: Samples, metric: str, **labels: str) -> float:
    return samples.get((metric, tuple(sorted(labels.items()))), float("nan"))


class Cluster:
    """Three ``foundation kv serve --metrics-listen 127.0.0.1:0`` processes."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.ports = dict(zip((1, 2, 3), free_ports(3), strict=True))
        self.peers = ",".join(f"{i}=127.0.0.1:{p}" for i, p in self.ports.items())
        self.cluster = ",".join(f"127.0.0.1:{p}" for p in self.ports.values())
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        self.urls: dict[int, str] = {}

    def start(self, i: int) -> None:
        ready = self.tmp / f"ready{i}"
        log = self.tmp / f"log{i}"
        with open(log, "ab") as out:
            self.procs[i] = subprocess.Popen(
                [*FOUNDATION, "kv", "serve", "--id", str(i), "--peers", self.peers,
                 "--data-dir", str(self.tmp / f"data{i}"), "--ready-file", str(ready),
                 "--metrics-listen", "127.0.0.1:0"],
                stdout=subprocess.DEVNULL, stderr=out,
            )  # fmt: skip
        deadline = time.monotonic() + 20
        while not ready.exists():
            assert self.procs[i].poll() is None, log.read_text()
            assert time.monotonic() < deadline, "node did not get ready"
            time.sleep(0.05)
        lines = log.read_text().splitlines()
        assert lines[0].startswith(f"foundation kv serve: serving node {i} on 127.0.0.1:")
        assert lines[1].startswith("foundation kv serve: metrics on http://127.0.0.1:")
        self.urls[i] = lines[1].split("metrics on ", 1)[1].strip()

    def kill(self, i: int, sig: int = signal.SIGKILL) -> int | None:
        proc = self.procs.pop(i)
        os.kill(proc.pid, sig)
        return proc.wait(timeout=20)

    def kv(self, *args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [*FOUNDATION, "kv", *args, "--cluster", self.cluster, "--timeout", "10"],
            capture_output=True,
            timeout=30,
            check=False,
        )

    def scrape_all(self) -> dict[int, Samples]:
        return {i: scrape(self.urls[i]) for i in self.procs}

    def one_leader(self, *, above_term: float = 0) -> tuple[int, dict[int, Samples]]:
        """Wait until exactly one live node reports the leader role in a term above
        ``above_term`` and every live node names it as leader."""
        deadline = time.monotonic() + 20
        while True:
            seen = self.scrape_all()
            leaders = [
                i for i, s in seen.items() if value(s, "foundation_raft_role", role="leader")
            ]
            if len(leaders) == 1:
                leader = leaders[0]
                if value(seen[leader], "foundation_raft_term") > above_term and all(
                    value(s, "foundation_raft_leader") == leader for s in seen.values()
                ):
                    return leader, seen
            assert time.monotonic() < deadline, seen
            time.sleep(0.1)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path)
    try:
        for i in c.ports:
            c.start(i)
        yield c
    finally:
        for i in list(c.procs):
            c.kill(i)


@pytest.mark.timeout(120)
def test_metrics_follow_elections_writes_and_failover(cluster: Cluster) -> None:
    for url in cluster.urls.values():
        health = httpx.get(url.removesuffix("/metrics") + "/health", timeout=10)
        assert (health.status_code, health.text) == (200, "ok\n")
    leader, before = cluster.one_leader()
    mine = before[leader]
    assert sum(value(mine, "foundation_raft_role", role=r) for r in
               ("follower", "pre_candidate", "candidate", "leader")) == 1  # fmt: skip
    assert value(mine, "foundation_raft_elections_total") >= 1
    assert value(mine, "foundation_raft_leader_changes_total") >= 1
    assert value(mine, "foundation_raft_saves_total") >= 1
    assert value(mine, "foundation_raft_save_seconds_count") == value(
        mine, "foundation_raft_saves_total"
    )

    put = cluster.kv("put", "k", "v1")
    assert put.returncode == 0, put.stderr
    after = scrape(cluster.urls[leader])
    commit = value(after, "foundation_raft_commit_index")
    assert commit > value(mine, "foundation_raft_commit_index")
    assert value(after, "foundation_raft_last_index") >= commit
    assert value(after, "foundation_raft_applied_index") >= commit  # the put was answered
    assert value(after, "foundation_raft_proposals_total") >= 1
    assert value(after, "foundation_raft_proposals_applied_total") >= 1
    assert value(after, "foundation_raft_records_persisted_total") > value(
        mine, "foundation_raft_records_persisted_total"
    )
    assert value(after, "foundation_raft_saves_total") > value(mine, "foundation_raft_saves_total")
    get = cluster.kv("get", "k")
    assert get.stdout == b"v1\n"
    assert value(scrape(cluster.urls[leader]), "foundation_raft_reads_total") >= 1
    # the followers apply the write too
    deadline = time.monotonic() + 10
    while not all(
        value(s, "foundation_raft_applied_index") >= commit for s in cluster.scrape_all().values()
    ):
        assert time.monotonic() < deadline
        time.sleep(0.1)

    old_term = value(after, "foundation_raft_term")
    assert cluster.kill(leader) == -signal.SIGKILL
    new, seen = cluster.one_leader(above_term=old_term)
    assert new != leader
    assert value(seen[new], "foundation_raft_term") > old_term
    assert value(seen[new], "foundation_raft_leader_changes_total") >= 2  # the old one, then it
    for i in seen:
        health = httpx.get(cluster.urls[i].removesuffix("/metrics") + "/health", timeout=10)
        assert health.status_code == 200
    assert cluster.kill(new, signal.SIGTERM) == 0  # the metrics server stops with the member


@pytest.mark.parametrize(
    ("address", "message"),
    [
        ("nonsense", "foundation: error: --metrics-listen: address 'nonsense' must be HOST:PORT"),
        ("127.0.0.1:99999", "--metrics-listen: address '127.0.0.1:99999'"),
        ("8.8.8.8:1", "--metrics-listen: cannot listen on 8.8.8.8:1"),
    ],
)
def test_a_bad_metrics_address_is_one_line_and_exit_2(
    tmp_path: Path, address: str, message: str
) -> None:
    port = free_ports(1)[0]
    done = subprocess.run(
        [*FOUNDATION, "kv", "serve", "--id", "1", "--peers", f"1=127.0.0.1:{port}",
         "--data-dir", str(tmp_path / "d"), "--metrics-listen", address],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], lines
    assert not (tmp_path / "d").exists()  # refused before the member started


async def test_term_and_leader_changes_are_events(tmp_path: Path) -> None:
    telemetry = Telemetry(slow_handler=None)
    events: list[Event] = []
    telemetry.attach("terms", "raft.term_changed", events.append)
    telemetry.attach("leaders", "raft.leader_changed", events.append)
    monitor = RaftNodeMonitor(telemetry, MetricRegistry())
    port = free_ports(1)[0]
    with trio.fail_after(30):
        async with open_raft_node(
            1, {1: ("127.0.0.1", port)}, tmp_path / "d", Total(), monitor=monitor
        ) as node:
            await node.leader.wait_value(lambda v: v == 1)
            assert await node.submit(5) == 5
            assert await node.read(None) == 5
    names = [e.name for e in events]
    assert names[0] == "raft.term_changed" and "raft.leader_changed" in names
    changed = next(e for e in events if e.name == "raft.leader_changed")
    assert changed.metadata == {"node": 1, "leader": 1, "previous": None}
    terms = [e.measurements["term"] for e in events if e.name == "raft.term_changed"]
    assert terms == sorted(terms) and terms[-1] == changed.measurements["term"]
    series = {(f.name, v): s for f in monitor.metrics.families() for v, s in f.series()}
    assert series[("foundation_raft_proposals_applied", ())].value == 1  # type: ignore[union-attr]
    assert series[("foundation_raft_reads", ())].value == 1  # type: ignore[union-attr]
    assert series[("foundation_raft_role", ("leader",))].value == 1  # type: ignore[union-attr]
    assert monitor.metrics.series_count == 17  # fixed, as docs/consensus.md says
    with pytest.raises(RuntimeError, match="watches one member"):
        monitor.watch(node.core)


def test_the_docs_example_runs(capsys: pytest.CaptureFixture[str]) -> None:
    import re

    doc = (Path(__file__).resolve().parent.parent / "docs" / "consensus.md").read_text()
    section = doc.split("### Metrics and health: `--metrics-listen`", 1)[1]
    code, expected = re.search(
        r"```python\n(.*?)```\n\nprints\n\n```\n(.*?)```", section, re.S
    ).groups()  # type: ignore[union-attr]
    exec(compile(code, "docs/consensus.md", "exec"), {"__name__": "__doc__"})
    assert capsys.readouterr().out == expected
