"""``foundation lock acquire`` against a real etcd (marker ``etcd``): the command runs
under the lock with its token, holders never overlap, --timeout and a lost lease
give their documented exit statuses, and stdout is the command's alone."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from trio_foundation.cli.lock import EXIT_LEASE_LOST, EXIT_TIMEOUT
from trio_foundation.etcd import EtcdLock, open_etcd_client
from trio_foundation.etcd.testing import EtcdCluster

pytestmark = pytest.mark.etcd

FOUNDATION = [sys.executable, "-m", "trio_foundation.cli"]


@pytest.fixture(scope="module")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    with EtcdCluster.start(tmp_path_factory.mktemp("etcd")) as cluster:
        yield cluster


def server(etcd: EtcdCluster) -> str:
    return "etcd://" + etcd.endpoints[0].removeprefix("http://")


def test_the_command_runs_with_the_token_and_owns_stdout(etcd: EtcdCluster) -> None:
    done = subprocess.run(
        [*FOUNDATION, "lock", "acquire", "--server", server(etcd), "--ttl", "5", "t1",
         "--", "sh", "-c", 'echo "$FOUNDATION_FENCING_TOKEN"; exit 3'],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 3  # the command's own status
    assert done.stdout.strip().isdigit()  # nothing but the command's output
    assert "holding 't1' with fencing token" in done.stderr


def test_concurrent_holders_do_not_overlap(etcd: EtcdCluster, tmp_path: Path) -> None:
    log = tmp_path / "log"
    script = f'echo "start $FOUNDATION_FENCING_TOKEN" >> {log}; sleep 0.3; echo end >> {log}'
    argv = [*FOUNDATION, "lock", "acquire", "--server", server(etcd), "--ttl", "5", "t2"]
    procs = [
        subprocess.Popen([*argv, "--", "sh", "-c", script], stderr=subprocess.DEVNULL)
        for _ in range(3)
    ]
    assert [p.wait(timeout=60) for p in procs] == [0, 0, 0]
    lines = log.read_text().split("\n")[:-1]
    assert [line.split()[0] for line in lines] == ["start", "end"] * 3
    tokens = [int(line.split()[1]) for line in lines if line.startswith("start")]
    assert tokens == sorted(tokens) and len(set(tokens)) == 3


async def test_timeout_while_waiting_exits_75(etcd: EtcdCluster) -> None:
    async with open_etcd_client(etcd.endpoints) as client:
        async with EtcdLock(client).acquire(ttl=10, name="t3"):
            started = time.monotonic()
            done = await trio.run_process(
                [*FOUNDATION, "lock", "acquire", "--server", server(etcd), "--ttl", "5",
                 "--timeout", "0.5", "t3", "--", "true"],
                capture_stdout=True, capture_stderr=True, check=False,
            )  # fmt: skip
            assert done.returncode == EXIT_TIMEOUT
            assert time.monotonic() - started < 10
            assert b"gave up waiting for 't3' after 0.5 s" in done.stderr
            assert done.stdout == b""


async def test_a_lost_lease_terminates_the_command_and_exits_69(
    etcd: EtcdCluster, tmp_path: Path
) -> None:
    marker = tmp_path / "terminated"
    script = f"trap 'touch {marker}; exit 1' TERM; while true; do sleep 0.05; done"
    proc = await trio.lowlevel.open_process(
        [*FOUNDATION, "lock", "acquire", "--server", server(etcd), "--ttl", "3", "t4",
         "--", "sh", "-c", script],
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        async with open_etcd_client(etcd.endpoints) as client:
            with trio.fail_after(20):
                while True:  # wait until the CLI holds the lock, then end its lease
                    held = await client.range("/trio-foundation/lock/t4/", prefix=True)
                    if held.kvs:
                        break
                    await trio.sleep(0.05)
                await client.revoke_lease(held.kvs[0].lease)
                assert await proc.wait() == EXIT_LEASE_LOST
        assert marker.exists()  # the command got SIGTERM
    finally:
        with trio.CancelScope(shield=True, deadline=trio.current_time() + 5):
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--server", "zk://h:1", "--ttl", "5", "n", "--", "true"], "unknown scheme 'zk'"),
        (["--server", "raft:h:1", "--ttl", "5", "n", "--", "true"], "'raft:h:1' has no scheme"),
        (["--server", "raft://127.0.0.1:0", "--ttl", "5", "n", "--", "true"], "port 0 means"),
        (["--server", "tcp://127.0.0.1:0", "--ttl", "5", "n", "--", "true"], "port 0 means"),
        (["--server", "etcd://h:1", "--ttl", "-5", "n", "--", "true"], "--ttl must be >= 0.5"),
        (["--server", "etcd://h:1", "--ttl", "inf", "n", "--", "true"], "--ttl must be a finite"),
        (["--server", "etcd://h:1", "--ttl", "5", "n"], "no command given"),
    ],
)
def test_bad_usage_is_one_line_and_exit_2(argv: list[str], message: str) -> None:
    done = subprocess.run(
        [*FOUNDATION, "lock", "acquire", *argv], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert message in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize("timeout", [None, "1"])
def test_an_unreachable_server_is_named(tmp_path: Path, timeout: str | None) -> None:
    """Exit 2 naming the endpoint, also when --timeout is shorter than the client's
    timeout (it bounds the wait for the lock, not reaching the service: a dead etcd
    is not reported as contention, exit 75)."""
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    wait = [] if timeout is None else ["--timeout", timeout]
    done = subprocess.run(
        [*FOUNDATION, "lock", "acquire", "--server", f"etcd://127.0.0.1:{port}", "--ttl", "5",
         *wait, "n", "--", "true"],
        capture_output=True, text=True, timeout=60, env={**os.environ},
    )  # fmt: skip
    assert done.returncode == 2
    assert f"127.0.0.1:{port}" in done.stderr and "Traceback" not in done.stderr
