"""The lock server's telemetry: events in one process, and ``--metrics-listen`` on a
real ``foundation lock serve`` process scraped over HTTP with httpx."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from trio_foundation import LeaseRefusedError
from trio_foundation.coordination.lock_monitor import SWEEP_INTERVAL, LockServerMonitor
from trio_foundation.coordination.lock_server import serve_lock_service
from trio_foundation.coordination.tcp_lock import open_remote_lock_service
from trio_foundation.telemetry import Event, MetricRegistry, Telemetry

FOUNDATION = [sys.executable, "-m", "trio_foundation.cli"]


async def test_the_server_emits_an_event_per_transition(tmp_path: Path) -> None:
    telemetry = Telemetry(slow_handler=None)
    events: list[Event] = []
    for name in ("granted", "renewed", "released", "expired", "refused", "token_mark"):
        telemetry.attach(f"t-{name}", f"lock_server.{name}", events.append)
    monitor = LockServerMonitor(telemetry, MetricRegistry())
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            host, port = await nursery.start(
                lambda task_status: serve_lock_service(
                    ("127.0.0.1", 0),
                    tmp_path / "d",
                    max_ttl=10,
                    monitor=monitor,
                    task_status=task_status,
                )
            )
            url = f"tcp://{host}:{port}"
            async with open_remote_lock_service(url) as a, open_remote_lock_service(url) as b:
                async with a.acquire(ttl=1.0, name="x") as first:
                    with trio.move_on_after(0.3):
                        async with b.acquire(ttl=1.0, name="x"):
                            pytest.fail("two holders")
                    await trio.sleep(0.8)  # a renewal at a third of the validity
                with pytest.raises(LeaseRefusedError, match="max_ttl"):
                    async with b.acquire(ttl=60, name="x"):
                        pass
                async with b.acquire(ttl=1.0, name="x") as second:
                    pass
            nursery.cancel_scope.cancel()
    kinds = [(e.name.removeprefix("lock_server."), e.metadata.get("reason")) for e in events]
    assert kinds[0] == ("token_mark", None) and events[0].measurements["mark"] == 1000
    assert ("granted", None) in kinds and ("renewed", None) in kinds
    assert ("refused", "held") in kinds
    # the reason is the metric label's code; the server's text is in detail
    too_long = [e for e in events if e.metadata.get("reason") == "ttl_too_long"]
    assert len(too_long) == 1 and "exceeds max_ttl" in too_long[0].metadata["detail"]
    refused = {e.metadata["reason"] for e in events if e.name == "lock_server.refused"}
    assert refused <= {"held", "quiet", "ttl_too_long", "not_holder", "too_many_locks", "other"}
    granted = [e for e in events if e.name == "lock_server.granted"]
    assert [e.measurements["token"] for e in granted] == [first.token, second.token]
    assert all(e.metadata["name"] == "x" for e in granted)
    released = [e.measurements["token"] for e in events if e.name == "lock_server.released"]
    assert released == [first.token, second.token]
    # released, never expired: every lease was handed back in time
    assert not [e for e in events if e.name == "lock_server.expired"]


def test_monitor_refuses_bad_configuration() -> None:
    with pytest.raises(ValueError, match="max_named must be an int >= 1, got 0"):
        LockServerMonitor(max_named=0)


# ------------------------------------------------------------ a real process, over HTTP

HOLDER = """
import sys, trio
from trio_foundation.coordination.tcp_lock import open_remote_lock_service

async def main():
    async with open_remote_lock_service(sys.argv[1]) as c:
        async with c.acquire(ttl=1.0, name="crashy"):
            print("holding", flush=True)
            await trio.sleep_forever()

trio.run(main)
"""


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    body = httpx.get(url, timeout=10).text
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], metric: str, **labels: str
) -> float:
    return samples.get((metric, tuple(sorted(labels.items()))), float("nan"))


@pytest.mark.timeout(120)
def test_metrics_listen_serves_prometheus_and_health(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    server = subprocess.Popen(
        [*FOUNDATION, "lock", "serve", "--listen", "127.0.0.1:0",
         "--data-dir", str(tmp_path / "data"), "--ready-file", str(ready),
         "--metrics-listen", "127.0.0.1:0", "--max-ttl", "5"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    holder: subprocess.Popen[str] | None = None
    try:
        assert server.stderr is not None
        first, second = server.stderr.readline(), server.stderr.readline()
        assert "listening on 127.0.0.1:" in first
        assert "metrics on http://127.0.0.1:" in second
        metrics_url = second.split("metrics on ", 1)[1].strip()
        health_url = metrics_url.removesuffix("/metrics") + "/health"
        deadline = time.monotonic() + 30
        while not ready.exists():
            assert time.monotonic() < deadline and server.poll() is None
            time.sleep(0.05)
        address = f"tcp://{ready.read_text().strip()}"
        assert httpx.get(health_url, timeout=10).status_code == 200

        async def contend() -> dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]]:
            seen = {}
            async with (
                open_remote_lock_service(address) as a,
                open_remote_lock_service(address) as b,
            ):
                async with trio.open_nursery() as nursery:
                    waiter_done = trio.Event()

                    async def wait_for_it() -> None:
                        async with b.acquire(ttl=1.5, name="x"):
                            pass
                        waiter_done.set()

                    async with a.acquire(ttl=1.5, name="x"):
                        nursery.start_soon(wait_for_it)
                        await trio.sleep(SWEEP_INTERVAL * 1.5)  # b retries; a renews
                        seen["contended"] = await trio.to_thread.run_sync(scrape, metrics_url)
                        assert not waiter_done.is_set()
                    # a released: b gets the lock and releases it
            await trio.sleep(SWEEP_INTERVAL * 1.5)
            seen["after"] = await trio.to_thread.run_sync(scrape, metrics_url)
            return seen

        seen = trio.run(contend)
        during, after = seen["contended"], seen["after"]
        assert value(during, "foundation_lock_held", name="x") == 1
        assert value(during, "foundation_lock_holders") == 1
        assert value(during, "foundation_lock_waiters", name="x") == 1
        assert value(during, "foundation_lock_refusals_total", reason="held") >= 1
        assert value(during, "foundation_lock_grants_total") == 1
        assert value(during, "foundation_lock_renewals_total") >= 1
        assert value(during, "foundation_lock_connections_open") == 2
        assert value(during, "foundation_lock_token_mark") == 1000
        assert value(after, "foundation_lock_grants_total") == 2
        assert value(after, "foundation_lock_tokens_issued") == 2
        assert value(after, "foundation_lock_releases_total") == 2
        assert value(after, "foundation_lock_held", name="x") == 0
        assert value(after, "foundation_lock_waiters", name="x") == 0
        assert value(after, "foundation_lock_connections_accepted_total") == 2
        assert value(after, "foundation_lock_connections_lost_total") == 2
        assert value(after, "foundation_lock_expiries_total") == 0

        # a holder killed with SIGKILL never releases: its lease expires on the server
        holder = subprocess.Popen(
            [sys.executable, "-c", HOLDER, address], stdout=subprocess.PIPE, text=True
        )
        assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=20)
        deadline = time.monotonic() + 20
        while value(scrape(metrics_url), "foundation_lock_expiries_total") != 1:
            assert time.monotonic() < deadline, "the expiry was never reported"
            time.sleep(0.2)
        final = scrape(metrics_url)
        assert value(final, "foundation_lock_held", name="crashy") == 0
        assert value(final, "foundation_lock_releases_total") == 2
        assert value(final, "foundation_lock_names") == 2
        assert httpx.get(health_url, timeout=10).status_code == 200
        assert httpx.get(metrics_url.removesuffix("/metrics") + "/nope").status_code == 404
    finally:
        for proc in (holder, server):
            if proc is not None and proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
            if proc is not None:
                proc.wait(timeout=20)
                for stream in (proc.stdout, proc.stderr):
                    if stream is not None:
                        stream.close()


def test_a_bad_metrics_address_is_one_line_and_exit_2(tmp_path: Path) -> None:
    done = subprocess.run(
        [*FOUNDATION, "lock", "serve", "--listen", "127.0.0.1:0",
         "--data-dir", str(tmp_path / "d"), "--metrics-listen", "8.8.8.8:1"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "foundation lock serve: error: [Errno 99] cannot listen on 8.8.8.8:1:"
        " Cannot assign requested address"
    ]


def test_the_docs_example_runs(capsys: pytest.CaptureFixture[str]) -> None:
    import re

    doc = (Path(__file__).resolve().parent.parent / "docs" / "lease-lock.md").read_text()
    section = doc.split("## The lock server's metrics and events", 1)[1]
    code, expected = re.search(
        r"```python\n(.*?)```\n\nprints\n\n```\n(.*?)```", section, re.S
    ).groups()  # type: ignore[union-attr]
    exec(compile(code, "docs/lease-lock.md", "exec"), {"__name__": "__doc__"})
    assert capsys.readouterr().out == expected


def test_per_name_series_are_bounded_and_the_rest_summed() -> None:
    """Driven without a network: the monitor watches real server cores step by step."""
    import random

    from trio_foundation.protocols.effects import Send
    from trio_foundation.protocols.lease_lock import AcquireRequest, LockServer, ReleaseRequest

    metrics = MetricRegistry(max_series=100)
    monitor = LockServerMonitor(None, metrics, max_named=1)
    cores = {}
    for name in ("first", "second", "third"):
        cores[name] = core = LockServer(0, max_ttl=10)
        core.on_start(0.0, random.Random(0))
        monitor.watch(name, core)

    def step(name: str, now: float, src: int, msg: object) -> None:
        before = monitor.before(name, now)
        effects = cores[name].on_message(now, src, msg)
        sent = [(e.to, e.msg) for e in effects if isinstance(e, Send)]
        monitor.after(name, now, src, msg, before, sent)

    for i, name in enumerate(("first", "second", "third")):
        step(name, 0.0, 1, AcquireRequest((1, i + 1), 5.0))
    step("third", 0.5, 2, AcquireRequest((1, 1), 5.0))  # refused: held
    monitor.sweep(1.0, None)
    series = {(f.name, values): s.value for f in metrics.families() for values, s in f.series()}
    assert series[("foundation_lock_held", ("first",))] == 1
    assert series[("foundation_lock_held", ("_other",))] == 2  # second and third
    assert series[("foundation_lock_waiters", ("_other",))] == 1
    assert ("foundation_lock_held", ("second",)) not in series
    assert series[("foundation_lock_holders", ())] == 3
    assert series[("foundation_lock_grants", ())] == 3
    assert series[("foundation_lock_refusals", ("held",))] == 1
    # "second" expires (no renewal): seen by the sweep, counted once
    step("first", 2.0, 1, ReleaseRequest(1))
    monitor.sweep(6.0, None)
    monitor.sweep(7.0, None)
    series = {(f.name, values): s.value for f in metrics.families() for values, s in f.series()}
    assert series[("foundation_lock_releases", ())] == 1
    assert series[("foundation_lock_expiries", ())] == 2  # second and third lapsed
    assert series[("foundation_lock_holders", ())] == 0
    assert series[("foundation_lock_waiters", ("_other",))] == 0  # the refusal is 6.5 s old
    assert metrics.series_count < 30
