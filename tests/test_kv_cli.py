"""``foundation kv``: three real ``foundation kv serve`` processes on loopback (they
serve ``foundation lock acquire --server raft://...`` too)."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from raft_cluster import free_ports

FOUNDATION = [sys.executable, "-m", "trio_foundation.cli"]


class Processes:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.ports = dict(zip((1, 2, 3), free_ports(3), strict=True))
        self.peers = ",".join(f"{i}=127.0.0.1:{p}" for i, p in self.ports.items())
        self.cluster = ",".join(f"127.0.0.1:{p}" for p in self.ports.values())
        self.procs: dict[int, subprocess.Popen[bytes]] = {}

    def start(self, i: int, *, join_port: int | None = None) -> None:
        peers = self.peers
        extra: list[str] = []
        if join_port is not None:  # a new member: every member and itself in its peers
            peers = f"{self.peers},{i}=127.0.0.1:{join_port}"
            extra = ["--join"]
        ready = self.tmp / f"ready{i}"
        ready.unlink(missing_ok=True)
        with open(self.tmp / f"log{i}", "ab") as log:
            self.procs[i] = subprocess.Popen(
                [
                    *FOUNDATION,
                    "kv",
                    "serve",
                    "--id",
                    str(i),
                    "--peers",
                    peers,
                    "--data-dir",
                    str(self.tmp / f"data{i}"),
                    "--ready-file",
                    str(ready),
                    *extra,
                ],
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        deadline = time.monotonic() + 20
        while not ready.exists():
            assert self.procs[i].poll() is None, (self.tmp / f"log{i}").read_text()
            assert time.monotonic() < deadline, "node did not get ready"
            time.sleep(0.05)

    def kill(self, i: int, sig: int = signal.SIGKILL) -> int | None:
        proc = self.procs.pop(i)
        os.kill(proc.pid, sig)
        return proc.wait(timeout=20)

    def kv(self, *args: str, timeout: float = 10) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [*FOUNDATION, "kv", *args, "--cluster", self.cluster, "--timeout", str(timeout)],
            capture_output=True,
            timeout=timeout + 20,
            check=False,
        )

    def leader(self) -> int:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            out = self.kv("status", timeout=5).stdout.decode()
            for line in out.splitlines():
                words = line.split()
                if "role" in words and words[words.index("role") + 1] == "leader":
                    return int(words[1])
            time.sleep(0.1)
        raise AssertionError("no leader")


def lock_token(cluster: Processes) -> int:
    """``foundation lock acquire --server raft://...``: the token the command ran with."""
    done = subprocess.run(
        [
            *FOUNDATION,
            *("lock", "acquire", "--server", f"raft://{cluster.cluster}", "--ttl", "2"),
            *("--timeout", "10", "job", "--", sys.executable, "-c"),
            "import os; print(os.environ['FOUNDATION_FENCING_TOKEN'])",
        ],
        capture_output=True,
        timeout=40,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return int(done.stdout)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Processes]:
    p = Processes(tmp_path)
    try:
        for i in p.ports:
            p.start(i)
        yield p
    finally:
        for i in list(p.procs):
            p.kill(i)


@pytest.mark.timeout(180)
def test_put_get_cas_delete_failover_and_restart(cluster: Processes) -> None:
    put = cluster.kv("put", "k", "v1")
    assert put.returncode == 0, put.stderr
    assert int(put.stdout) >= 2
    assert cluster.kv("get", "k").stdout == b"v1\n"
    missing = cluster.kv("get", "nope")
    assert (missing.returncode, missing.stdout) == (1, b"")
    failed = cluster.kv("cas", "k", "wrong", "v2")
    assert failed.returncode == 1  # one line saying what the key holds now
    assert failed.stderr.splitlines()[-1] == (
        b"foundation kv: cas failed: 'k' is 'v1' (mod revision %d, version 1), not 'wrong'"
        % int(put.stdout)
    )
    assert cluster.kv("cas", "k", "v1", "v2").returncode == 0
    assert cluster.kv("cas", "new", "x", "--absent").returncode == 0  # no dummy OLD
    exists = cluster.kv("cas", "new", "y", "--absent")
    assert exists.returncode == 1 and exists.stderr.endswith(b"), not absent\n"), exists.stderr
    assert cluster.kv("delete", "new").returncode == 0
    assert cluster.kv("delete", "new").returncode == 1
    watch = cluster.kv("watch", "k", "--rev", put.stdout.decode().strip(), "--count", "2")
    assert watch.returncode == 0, watch.stderr
    assert watch.stdout.split(b"\n")[:2] == [
        b"PUT %d k v1" % int(put.stdout),
        b"PUT %d k v2" % (int(put.stdout) + 1),
    ]

    leader = cluster.leader()
    # the same members serve the lease locks, fenced by the grant's log index
    tokens = [lock_token(cluster) for _ in range(2)]
    assert 1 <= tokens[0] < tokens[1], tokens
    # a client that lists only followers is forwarded to the leader
    followers = ",".join(f"127.0.0.1:{p}" for i, p in cluster.ports.items() if i != leader)
    only = subprocess.run(
        [*FOUNDATION, "kv", "get", "k", "--cluster", followers, "--timeout", "10"],
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert (only.returncode, only.stdout) == (0, b"v2\n"), only.stderr
    # a refused connection is redialled every backoff: its warning is printed once
    secret = cluster.tmp / "wrong.secret"
    secret.write_bytes(os.urandom(32).hex().encode())
    secret.chmod(0o600)
    refused = subprocess.run(
        [
            *FOUNDATION,
            *("kv", "get", "k", "--cluster", cluster.cluster, "--timeout", "2"),
            *("--secret-file", str(secret)),
        ],
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert refused.returncode == 3
    warnings = [line for line in refused.stderr.splitlines() if b"dropped a connection" in line]
    assert len(warnings) == 1, refused.stderr

    assert cluster.kill(leader) == -signal.SIGKILL
    new = cluster.leader()
    assert new != leader
    assert cluster.kv("get", "k").stdout == b"v2\n"  # the acknowledged write survived
    compacted = cluster.kv("watch", "k", "--rev", "1", "--count", "1")
    assert compacted.returncode == 2 and b"compacted" in compacted.stderr
    assert cluster.kv("put", "k", "v3").returncode == 0

    cluster.start(leader)  # restart from its data dir
    deadline = time.monotonic() + 20
    while True:
        status = cluster.kv("status").stdout.decode().splitlines()
        mine = next(line for line in status if line.startswith(f"node {leader} "))
        applied = {int(line.split()[-1]) for line in status if "applied" in line}
        if "unreachable" not in mine and len(applied) == 1:
            break
        assert time.monotonic() < deadline, status
        time.sleep(0.1)
    # a clean stop
    assert cluster.kill(new, signal.SIGTERM) == 0
    assert cluster.kv("get", "k").stdout == b"v3\n"


@pytest.mark.slow  # ~35 s: 4 processes; run with -m slow
@pytest.mark.timeout(180)
def test_member_add_list_remove(cluster: Processes) -> None:
    listed = cluster.kv("member", "list")
    assert listed.stdout == b"voters 1 2 3\nlearners\n", listed.stderr
    assert cluster.kv("put", "m", "1").returncode == 0
    port4 = free_ports(1)[0]
    cluster.start(4, join_port=port4)
    added = cluster.kv("member", "add", "4", timeout=20)
    assert added.returncode == 0, added.stderr
    assert added.stdout == b"voters 1 2 3 4\nlearners\n"
    # the new member catches up: every member, node 4 included, applied the same index
    with_4 = f"{cluster.cluster},4=127.0.0.1:{port4}"
    deadline = time.monotonic() + 20
    while True:
        status = subprocess.run(
            [*FOUNDATION, "kv", "status", "--cluster", with_4],
            capture_output=True,
            timeout=30,
            check=False,
        ).stdout.decode()
        applied = [line.split()[-1] for line in status.splitlines() if "applied" in line]
        if len(applied) == 4 and len(set(applied)) == 1:
            break
        assert time.monotonic() < deadline, status
        time.sleep(0.1)
    refused = cluster.kv("member", "add", "4")
    assert refused.returncode == 2 and b"already a voter" in refused.stderr
    removed = cluster.kv("member", "remove", "4", timeout=20)
    assert removed.stdout == b"voters 1 2 3\nlearners\n", removed.stderr
    assert cluster.kv("get", "m").stdout == b"1\n"


@pytest.mark.slow  # ~45 s: two clusters of 3 processes; run with -m slow
@pytest.mark.timeout(180)
def test_snapshot_save_and_restore_into_a_new_cluster(cluster: Processes, tmp_path: Path) -> None:
    for k in range(5):
        assert cluster.kv("put", f"s{k}", f"v{k}").returncode == 0
    backup = tmp_path / "backup.snap"
    saved = subprocess.run(
        [*FOUNDATION, "kv", "snapshot", "save", str(backup), "--cluster", cluster.cluster],
        capture_output=True,
        timeout=40,
        check=False,
    )
    assert saved.returncode == 0, saved.stderr
    assert cluster.kv("put", "s0", "after-backup").returncode == 0
    # a new cluster (new ports, new data dirs) restored from the backup
    fresh = Processes(tmp_path / "restored")
    (tmp_path / "restored").mkdir()
    try:
        for i in fresh.ports:
            restored = subprocess.run(
                [
                    *FOUNDATION,
                    "kv",
                    "snapshot",
                    "restore",
                    str(backup),
                    "--data-dir",
                    str(fresh.tmp / f"data{i}"),
                ],
                capture_output=True,
                timeout=30,
                check=False,
            )
            assert restored.returncode == 0, restored.stderr
            fresh.start(i)
        assert fresh.kv("get", "s0").stdout == b"v0\n"  # the state as of the backup
        assert fresh.kv("get", "s4").stdout == b"v4\n"
        refused = subprocess.run(
            [
                *FOUNDATION,
                "kv",
                "snapshot",
                "restore",
                str(backup),
                "--data-dir",
                str(fresh.tmp / "data1"),
            ],
            capture_output=True,
            timeout=30,
            check=False,
        )
        assert refused.returncode == 2 and b"not empty" in refused.stderr
    finally:
        for i in list(fresh.procs):
            fresh.kill(i)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (["k", "old", "new", "--absent"], "cas --absent takes KEY NEW (no OLD"),
        (["k", "new"], "cas takes KEY OLD NEW (or KEY NEW --absent)"),
        (["k", "a", "b", "c"], "cas takes KEY OLD NEW (or KEY NEW --absent)"),
    ],
)
def test_cas_bad_usage_is_refused_before_any_connection(
    values: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """An OLD given with --absent is refused, not silently dropped; the cluster
    (a port nobody listens on) is never dialled."""
    from trio_foundation.cli import main

    assert main(["kv", "cas", "--cluster", "127.0.0.1:9", "--timeout", "1", *values]) == 2
    err = capsys.readouterr().err
    assert message in err and "unreachable" not in err, err


@pytest.mark.timeout(60)
def test_put_takes_its_value_from_stdin_or_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    """Any bytes, and above the 128 KiB one command-line argument may hold (one member)."""
    from trio_foundation.cli import main

    (port,) = free_ports(1)
    ready = tmp_path / "ready"
    with open(tmp_path / "log", "wb") as log:
        member = subprocess.Popen(
            [*FOUNDATION, "kv", "serve", "--id", "1", "--peers", f"1=127.0.0.1:{port}",
             "--data-dir", str(tmp_path / "data"), "--ready-file", str(ready)],
            stdout=subprocess.DEVNULL, stderr=log,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not ready.exists():
            assert member.poll() is None, (tmp_path / "log").read_text()
            assert time.monotonic() < deadline, "the member did not get ready"
            time.sleep(0.05)
        cluster = ("--cluster", f"127.0.0.1:{port}", "--timeout", "20")
        big = bytes(range(256)) * 800  # 200 KiB
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(big)))
        assert main(["kv", "put", "big", "-", *cluster]) == 0
        piped = int(capsysbinary.readouterr().out)
        assert main(["kv", "get", "big", *cluster]) == 0
        assert capsysbinary.readouterr().out == big + b"\n"
        (tmp_path / "value").write_bytes(big[::-1])
        assert main(["kv", "put", "big", "--value-file", str(tmp_path / "value"), *cluster]) == 0
        assert int(capsysbinary.readouterr().out) > piped
        assert main(["kv", "get", "big", *cluster]) == 0
        assert capsysbinary.readouterr().out == big[::-1] + b"\n"
    finally:
        os.kill(member.pid, signal.SIGKILL)
        member.wait(timeout=20)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (["k"], "put takes KEY VALUE, KEY - (the value from stdin) or KEY --value-file F"),
        (["k", "v", "--value-file", "f"], "put takes VALUE or --value-file F, not both"),
        (["k", "--value-file", "/nonexistent/value"], "/nonexistent/value"),
    ],
)
def test_put_bad_usage_is_refused_before_any_connection(
    values: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """No value, two values, or a file that cannot be read: exit 2, one line naming it;
    the cluster (a port nobody listens on) is never dialled."""
    from trio_foundation.cli import main

    assert main(["kv", "put", "--cluster", "127.0.0.1:9", "--timeout", "1", *values]) == 2
    err = capsys.readouterr().err
    assert message in err and "unreachable" not in err, err
    assert err.count("\n") == 1, err


@pytest.mark.parametrize(
    ("cluster", "message"),
    [
        ("raft://127.0.0.1:9", "write HOST:PORT,... or ID=HOST:PORT,... (no scheme)"),
        ("1=127.0.0.1:9,1=127.0.0.1:10", "--cluster names member 1 twice"),
    ],
)
def test_a_bad_cluster_is_refused_by_name(
    cluster: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Found in review: a scheme got the address parser's "write an IPv6 host in
    brackets", and a member id given twice kept the last address (no answer)."""
    from trio_foundation.cli import main

    assert main(["kv", "get", "--cluster", cluster, "--timeout", "2", "k"]) == 2
    assert message in capsys.readouterr().err
