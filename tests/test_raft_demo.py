"""``foundation raft demo`` driven through stdin: kill the leader, restart it, quit."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest


@pytest.mark.slow  # ~16 s: the demo's 3 processes; run with -m slow
@pytest.mark.timeout(120)
def test_demo_kill_and_restart(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "trio_foundation.cli", "raft", "demo", "--dir", str(tmp_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its kv serve children share its process group
    )
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            lines.put(raw.decode())

    threading.Thread(target=pump, daemon=True).start()

    def wait_for(predicate: object, what: str) -> str:
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            try:
                line = lines.get(timeout=1)
            except queue.Empty:
                continue
            if predicate(line):  # type: ignore[operator]
                return line
        raise AssertionError(f"the demo never showed {what}")

    def leader(line: str) -> int | None:
        m = re.search(r"node (\d): leader", line)
        return int(m.group(1)) if m else None

    def send(command: str) -> None:
        assert proc.stdin is not None
        proc.stdin.write(command.encode() + b"\n")
        proc.stdin.flush()

    try:
        first = leader(wait_for(lambda line: leader(line) is not None, "a leader"))
        send("kill leader")
        wait_for(lambda line: f"node {first}: stopped" in line, "the leader stopped")
        wait_for(lambda line: leader(line) not in (None, first), "a new leader")
        send(f"start {first}")
        caught_up = re.compile(r"applied (\d+); node \d: .*applied \1; node \d: .*applied \1$")
        wait_for(lambda line: "stopped" not in line and caught_up.search(line), "all caught up")
        send("quit")
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:  # failed: stop the demo and the members it started
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.close()
        proc.stdout.close()
