"""In-process Raft clusters for the tests: members over loopback TCP in this process.

Shared by the Raft, key-value and ledger tests (before, each had its own copy):

* :func:`free_ports` and :func:`loopback_peers`: free 127.0.0.1 ports for the members;
* :class:`Counter` and :class:`Total`: tiny deterministic state machines;
* :func:`until`: poll a predicate over several nodes' state;
* :class:`Cluster` and :func:`cluster`: members that can be stopped and restarted
  from their data directories, each in its own cancel scope;
* :func:`open_raft_nodes`: members that live as long as the block, with a leader
  elected before it is entered.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any, Generic, TypeVar

import msgspec
import trio

from trio_foundation.coordination.consensus import RaftNodeHandle, open_raft_node

M = TypeVar("M")

Peers = dict[int, tuple[str, int]]


def free_ports(n: int) -> list[int]:
    """``n`` distinct TCP ports free on 127.0.0.1 (bound at once, then released)."""
    socks = [socket.socket() for _ in range(n)]
    for sock in socks:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in socks]
    for sock in socks:
        sock.close()
    return ports


def loopback_peers(n: int = 3) -> Peers:
    """Members ``1..n`` on free 127.0.0.1 ports."""
    return {i + 1: ("127.0.0.1", port) for i, port in enumerate(free_ports(n))}


class Counter:
    """A tiny deterministic state machine: named counters."""

    def __init__(self) -> None:
        self.values: dict[str, int] = {}
        self.applied: list[Any] = []

    def apply(self, command: Any) -> Any:
        name, delta = command
        self.applied.append(command)
        self.values[name] = self.values.get(name, 0) + delta
        return self.values[name]

    def query(self, query: Any) -> Any:
        return self.values.get(query, 0)

    def snapshot(self) -> bytes:
        return msgspec.msgpack.encode(self.values)

    def restore(self, data: bytes) -> None:
        self.values = msgspec.msgpack.decode(data)


class Total:
    """A tiny state machine: commands (ints) add to a total; any query reads it."""

    def __init__(self) -> None:
        self.total = 0

    def apply(self, command: int) -> int:
        self.total += command
        return self.total

    def query(self, query: object) -> int:
        return self.total

    def snapshot(self) -> bytes:
        return str(self.total).encode()

    def restore(self, data: bytes) -> None:
        self.total = int(data)


async def until(predicate: Callable[[], bool]) -> None:
    """Poll ``predicate`` (state spread over several nodes has no single event)."""
    while not predicate():  # noqa: ASYNC110
        await trio.sleep(0.01)


class Cluster(Generic[M]):
    """``n`` members, each started in ``nursery`` under its own cancel scope.

    ``nodes`` and ``machines`` hold the running members by id; :meth:`stop` cancels
    one, :meth:`start` (re)starts one from its data directory ``tmp/n{i}``.
    """

    def __init__(
        self,
        tmp: Path,
        nursery: trio.Nursery,
        machine: Callable[[], M],
        *,
        n: int = 3,
        **node_options: Any,
    ) -> None:
        self.tmp = tmp
        self.nursery = nursery
        self.machine = machine
        self.node_options = {"election_timeout": 0.3, **node_options}
        self.peers = loopback_peers(n)
        self.nodes: dict[int, RaftNodeHandle] = {}
        self.machines: dict[int, M] = {}
        self.scopes: dict[int, trio.CancelScope] = {}

    async def start(self, i: int, nursery: trio.Nursery | None = None) -> None:
        """Start member ``i`` (in ``nursery``, default the cluster's) and wait until it runs."""

        async def run(task_status: trio.TaskStatus[None]) -> None:
            with trio.CancelScope() as scope:
                self.scopes[i] = scope
                machine = self.machine()
                async with open_raft_node(
                    i, self.peers, self.tmp / f"n{i}", machine, **self.node_options
                ) as node:
                    self.nodes[i] = node
                    self.machines[i] = machine
                    task_status.started()
                    await trio.sleep_forever()

        await (self.nursery if nursery is None else nursery).start(run)

    def stop(self, i: int) -> None:
        """Cancel member ``i`` (its data directory stays)."""
        self.scopes.pop(i).cancel()
        self.nodes.pop(i)

    async def leader(self) -> int:
        """Wait until a running member is leader; its id."""
        while True:
            for i, node in self.nodes.items():
                if node.core.role == "leader":
                    return i
            await trio.sleep(0.02)


@asynccontextmanager
async def cluster(
    tmp: Path, machine: Callable[[], Any] = Counter, **node_options: Any
) -> AsyncIterator[Cluster[Any]]:
    """Three members of :class:`Cluster`, all started; cancelled when the block ends.

    A member whose task fails raises out of this block, so the test fails.
    """
    async with trio.open_nursery() as nursery:
        c: Cluster[Any] = Cluster(tmp, nursery, machine, **node_options)
        for i in c.peers:
            await c.start(i)
        yield c
        nursery.cancel_scope.cancel()


@asynccontextmanager
async def open_raft_nodes(
    peers: Peers,
    data_dir: Callable[[int], Path | str],
    machine: Callable[[], Any],
    *,
    own_peers: Callable[[int], Peers] | None = None,
    wait_leader: float | None = None,
    into: list[RaftNodeHandle] | None = None,
    **node_options: Any,
) -> AsyncIterator[list[RaftNodeHandle]]:
    """Open one member per id of ``peers``, in id order, for the block; the members.

    Args:
        peers: ``{id: (host, port)}``, the members.
        data_dir: member id -> its data directory.
        machine: makes each member's state machine.
        own_peers: member id -> the peers map that member is opened with, when it is
            not ``peers`` (e.g. members reaching each other through proxies).
        wait_leader: if given, wait (at most this many seconds) until the first member
            knows a leader before entering the block.
        into: the list each member is appended to as soon as it is open (so a caller
            sees the members opened before a failure); default a new list.
        **node_options: passed to ``open_raft_node``.
    """
    nodes = [] if into is None else into
    async with AsyncExitStack() as stack:
        for i in peers:
            node = open_raft_node(
                i,
                peers if own_peers is None else own_peers(i),
                data_dir(i),
                machine(),
                **node_options,
            )
            nodes.append(await stack.enter_async_context(node))
        if wait_leader is not None:
            with trio.fail_after(wait_leader):
                await nodes[0].leader.wait_value(lambda v: v is not None)
        yield nodes
