"""``foundation raft demo``: a 3-member replicated KV as 3 OS processes, shown live.

::

    foundation raft demo [--dir DIR] [--election-timeout S] [--refresh S]

Starts 3 ``foundation kv serve`` processes on 127.0.0.1 free ports (data dirs
under ``--dir``, default a temporary directory removed at the end), writes a
counter key through the cluster every refresh, and shows each member's role,
term, commit and applied index (a live rich table on a terminal; one plain line
per member per refresh otherwise). Commands, one per line on stdin:

* ``kill N`` / ``kill leader`` — SIGKILL member N (or the current leader);
* ``stop N`` — SIGTERM member N (a clean stop);
* ``start N`` / ``start all`` — restart stopped members from their data dirs;
* ``quit`` (or end of input) — stop everything and exit 0.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from typing import Any

import trio

from ..coordination.consensus import RaftClient, open_raft_client
from ..coordination.raft_kv import KV_CODEC, RaftKV
from ..coordination.raft_wire import CStatusReply


def register(subparsers: Any) -> None:
    """Add ``foundation raft``."""
    raft = subparsers.add_parser("raft", help="Raft demonstrations")
    verbs = raft.add_subparsers(dest="verb", metavar="VERB", parser_class=type(raft))
    verbs.required = True
    demo = verbs.add_parser(
        "demo", help="a 3-process cluster on 127.0.0.1, shown live; kill and restart members"
    )
    demo.add_argument("--dir", default=None, help="parent of the data dirs (default: a temp dir)")
    demo.add_argument("--election-timeout", type=float, default=0.3, help="T in seconds")
    demo.add_argument("--refresh", type=float, default=0.5, help="seconds between refreshes")
    demo.set_defaults(handler=_demo)


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


class _Demo:
    def __init__(self, root: str, election_timeout: float) -> None:
        self.root = root
        self.election_timeout = election_timeout
        self.members = {i: ("127.0.0.1", p) for i, p in zip((1, 2, 3), _free_ports(3), strict=True)}
        self.peers = ",".join(f"{i}=127.0.0.1:{p}" for i, (_, p) in self.members.items())
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        self.statuses: dict[int, CStatusReply | None] = {}
        self.writes = 0
        self.note = ""

    def start(self, i: int) -> None:
        if i in self.procs:
            return
        with open(os.path.join(self.root, f"log{i}"), "ab") as log:
            self.procs[i] = subprocess.Popen(
                [
                    *(sys.executable, "-m", "trio_foundation.cli", "kv", "serve"),
                    *("--id", str(i), "--peers", self.peers),
                    *("--data-dir", os.path.join(self.root, f"data{i}")),
                    *("--election-timeout", str(self.election_timeout)),
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )

    def signal(self, i: int, sig: int) -> None:
        proc = self.procs.pop(i, None)
        if proc is not None:
            os.kill(proc.pid, sig)
            proc.wait()

    def leader(self) -> int | None:
        for s in self.statuses.values():
            if s is not None and s.role == "leader":
                return s.node
        return None

    def command(self, line: str) -> bool:
        words = line.split()
        if not words:
            return True
        if words[0] == "quit":
            return False
        if len(words) != 2 or words[0] not in ("kill", "stop", "start"):
            self.note = f"unknown command {line.strip()!r} (kill N|leader, stop N, start N|all)"
            return True
        verb, arg = words
        targets: list[int]
        if arg == "leader":
            leader = self.leader()
            targets = [] if leader is None else [leader]
        elif arg == "all":
            targets = list(self.members)
        elif arg.isdigit() and int(arg) in self.members:
            targets = [int(arg)]
        else:
            self.note = f"no member {arg!r}"
            return True
        for i in targets:
            if verb == "start":
                self.start(i)
            else:
                self.signal(i, signal.SIGKILL if verb == "kill" else signal.SIGTERM)
        self.note = f"{verb} {targets}"
        return True

    def lines(self) -> list[str]:
        out = []
        for i in self.members:
            s = self.statuses.get(i)
            if i not in self.procs:
                out.append(f"node {i}: stopped")
            elif s is None:
                out.append(f"node {i}: unreachable")
            else:
                out.append(
                    f"node {i}: {s.role:<13} term {s.term:<4} leader {s.leader}"
                    f" commit {s.commit_index:<6} applied {s.last_applied}"
                )
        return out

    def table(self) -> Any:
        from rich.table import Table

        t = Table(title=f"raft demo: {self.writes} writes acknowledged  {self.note}")
        for col in ("node", "process", "role", "term", "leader", "commit", "applied"):
            t.add_column(col)
        for i in self.members:
            s = self.statuses.get(i)
            proc = "running" if i in self.procs else "stopped"
            if s is None or i not in self.procs:
                t.add_row(str(i), proc, "-", "-", "-", "-", "-")
            else:
                style = "bold green" if s.role == "leader" else None
                t.add_row(
                    str(i),
                    proc,
                    s.role,
                    str(s.term),
                    str(s.leader),
                    str(s.commit_index),
                    str(s.last_applied),
                    style=style,
                )
        return t


def _demo(args: argparse.Namespace) -> int:
    if not args.election_timeout > 0 or not args.refresh > 0:
        raise ValueError("--election-timeout and --refresh must be > 0")
    root = tempfile.mkdtemp(prefix="raft-demo-", dir=args.dir)
    demo = _Demo(root, args.election_timeout)
    try:
        for i in demo.members:
            demo.start(i)
        trio.run(_demo_main, demo, args.refresh)
    finally:
        for i in list(demo.procs):
            demo.signal(i, signal.SIGTERM)
        if args.dir is None:
            shutil.rmtree(root, ignore_errors=True)
    return 0


async def _refresh(demo: _Demo, client: RaftClient, kv: RaftKV) -> None:
    for i in demo.members:
        demo.statuses[i] = None if i not in demo.procs else await client.node_status(i, wait=0.3)
    with trio.move_on_after(1.0):
        await kv.put("demo/counter", str(demo.writes + 1))
        demo.writes += 1


async def _demo_main(demo: _Demo, refresh: float) -> None:
    async with open_raft_client(demo.members, codec=KV_CODEC) as client, trio.open_nursery() as n:
        kv = RaftKV(client)
        tty = sys.stdout.isatty()

        async def read_commands() -> None:
            while True:
                line = await trio.to_thread.run_sync(sys.stdin.readline, abandon_on_cancel=True)
                if not line or not demo.command(line):
                    n.cancel_scope.cancel()
                    return
                if not tty:
                    print(f"> {line.strip()}  ({demo.note})", flush=True)

        n.start_soon(read_commands)
        if tty:
            from rich.live import Live

            with Live(demo.table(), refresh_per_second=4) as live:
                while True:
                    await _refresh(demo, client, kv)
                    live.update(demo.table())
                    await trio.sleep(refresh)
        else:
            while True:
                await _refresh(demo, client, kv)
                print(f"writes {demo.writes}; " + "; ".join(demo.lines()), flush=True)
                await trio.sleep(refresh)
