"""``foundation lock serve`` and ``foundation lock acquire --server tcp://`` as real processes.

Every process is started by the test on 127.0.0.1 (free ports) and reaped by pid.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

SECRET = b"0123456789abcdef-a-process-test-secret"
CLI = [sys.executable, "-m", "trio_foundation.cli"]


class Server:
    def __init__(self, tmp: Path, data_dir: Path, listen: str, *extra: str) -> None:
        self.ready = tmp / f"ready-{time.monotonic_ns()}"
        self.stderr_path = tmp / f"server-{time.monotonic_ns()}.err"
        self.stderr = open(self.stderr_path, "wb")
        self.stdout_path = tmp / f"server-{time.monotonic_ns()}.out"
        self.stdout = open(self.stdout_path, "wb")
        self.proc = subprocess.Popen(
            [
                *CLI,
                *("lock", "serve", "--listen", listen, "--data-dir", str(data_dir)),
                *("--ready-file", str(self.ready), *extra),
            ],
            stdout=self.stdout,
            stderr=self.stderr,
        )
        deadline = time.monotonic() + 30
        while not self.ready.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop(signal.SIGKILL)
                raise AssertionError(f"server did not start: {self.stderr_path.read_text()}")
            time.sleep(0.05)
        self.address = self.ready.read_text().strip()

    @property
    def url(self) -> str:
        return f"tcp://{self.address}"

    def stop(self, signum: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signum)
        try:
            code = self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            code = self.proc.wait(timeout=20)
        self.stderr.close()
        self.stdout.close()
        assert self.stdout_path.read_bytes() == b"", "the server wrote to stdout"
        return code

    def log(self) -> str:
        return self.stderr_path.read_text()


@pytest.fixture
def servers() -> Iterator[list[Server]]:
    started: list[Server] = []
    yield started
    for server in started:
        server.stop(signal.SIGKILL)


def acquire_cmd(
    url: str, name: str, command: str, *extra: str, args: tuple[str, ...] = ()
) -> list[str]:
    return [
        *CLI,
        *("lock", "acquire", "--server", url, "--ttl", "2", "--timeout", "60", *extra),
        *(name, "--", sys.executable, "-c", command, *args),
    ]


HOLD = """
import os, sys, time
token = os.environ["FOUNDATION_FENCING_TOKEN"]
with open(sys.argv[1], "a") as f:
    f.write(f"start {token} {time.time()!r}\\n"); f.flush()
    time.sleep(0.15)
    f.write(f"end {token} {time.time()!r}\\n")
"""


def holds(path: Path) -> list[tuple[int, float, float]]:
    starts: dict[int, float] = {}
    out = []
    for line in path.read_text().splitlines():
        kind, token, at = line.split()
        if kind == "start":
            starts[int(token)] = float(at)
        else:
            out.append((int(token), starts.pop(int(token)), float(at)))
    assert not starts, f"holds that never ended: {starts}"
    return sorted(out, key=lambda h: h[1])


@pytest.mark.timeout(180)
def test_three_client_processes_never_overlap_and_tokens_increase(
    tmp_path: Path, servers: list[Server]
) -> None:
    server = Server(tmp_path, tmp_path / "data", "127.0.0.1:0")
    servers.append(server)
    first_line = server.log().splitlines()[0]
    assert first_line == f"foundation lock serve: listening on {server.address}"
    record = tmp_path / "holds"

    def client() -> list[int]:
        return [
            subprocess.run(
                acquire_cmd(server.url, "shared", HOLD, args=(str(record),)), timeout=100
            ).returncode
            for _ in range(3)
        ]

    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        codes = [code for codes in pool.map(lambda _: client(), range(3)) for code in codes]
    assert codes == [0] * 9
    held = holds(record)
    assert len(held) == 9
    for (t1, _, end1), (t2, start2, _) in itertools.pairwise(held):
        assert end1 <= start2, f"holds of tokens {t1} and {t2} overlap"
        assert t2 > t1, f"token {t2} after {t1}"
    assert server.stop(signal.SIGTERM) == 0
    assert server.log().splitlines()[-1] == "foundation lock serve: stopped"


@pytest.mark.timeout(180)
def test_sigkill_and_restart_never_reissue_a_token(tmp_path: Path, servers: list[Server]) -> None:
    data = tmp_path / "data"
    tokens = tmp_path / "tokens"
    write = (
        "import os, sys; "
        "open(sys.argv[1], 'a').write(os.environ['FOUNDATION_FENCING_TOKEN'] + '\\n')"
    )
    address = "127.0.0.1:0"
    for _ in range(3):
        server = Server(tmp_path, data, address, "--max-ttl", "2", "--token-block", "4")
        servers.append(server)
        address = server.address  # restart on the same port
        for _ in range(3):
            done = subprocess.run(
                acquire_cmd(server.url, "job", write, args=(str(tokens),)),
                timeout=90,
                capture_output=True,
            )
            assert done.returncode == 0, done.stderr.decode()
            assert done.stdout == b""  # the CLI writes nothing of its own to stdout
        assert server.stop(signal.SIGKILL) == -signal.SIGKILL
    issued = [int(t) for t in tokens.read_text().split()]
    assert len(issued) == 9
    assert issued == sorted(set(issued)), f"a token was reissued or went back: {issued}"
    assert issued[3] > 4 and issued[6] > issued[5]


@pytest.mark.timeout(120)
def test_bad_frames_and_wrong_secret_drop_only_that_connection(
    tmp_path: Path, servers: list[Server]
) -> None:
    good, bad = tmp_path / "good", tmp_path / "bad"
    good.write_bytes(SECRET)
    bad.write_bytes(b"not-the-secret-but-long-enough")
    os.chmod(good, 0o600)
    os.chmod(bad, 0o600)
    server = Server(tmp_path, tmp_path / "data", "127.0.0.1:0", "--secret-file", str(good))
    servers.append(server)
    host, port = server.address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as raw:
        raw.sendall(b"\x00\x00\x00\x08garbage!xxxx")
        while raw.recv(4096):
            pass  # closed by the server
    wrong = subprocess.run(
        [*acquire_cmd(server.url, "x", "pass", "--secret-file", str(bad))],
        timeout=60,
        capture_output=True,
    )
    assert wrong.returncode == 2
    assert b"no connection to the lock server" in wrong.stderr
    right = subprocess.run(
        [*acquire_cmd(server.url, "x", "print('ran')", "--secret-file", str(good))],
        timeout=60,
        capture_output=True,
    )
    assert right.returncode == 0, right.stderr.decode()
    assert right.stdout == b"ran\n"
    assert server.proc.poll() is None
    log = server.log()
    assert "dropped a connection" in log and "auth-failed" in log
    assert server.stop(signal.SIGTERM) == 0
