"""The in-process network: bounded in-memory links between nodes of one process.

:class:`LocalNetwork` connects numbered nodes through bounded inboxes;
:meth:`LocalNetwork.transport` gives a node its
:class:`~trio_foundation.runtime.transport.Transport`, over which a
:class:`~trio_foundation.runtime.driver.NodeDriver` runs the node's core::

    network = LocalNetwork()
    storage = NodeStorage()
    with network.transport(1) as transport:
        driver = NodeDriver(core, transport, persist=storage.save, restored=storage.restored())
        await nursery.start(driver.run)

Time is the Trio clock, so tests can run whole protocols under
:class:`trio.testing.MockClock`. The network loses a message only when an inbox
is full, its node is gone or a link is cut; protocols built on it must tolerate
loss anyway.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any, final

import trio

from .driver import NO_STATE
from .transport import Envelope

__all__ = ["LocalNetwork", "LocalTransport", "NodeStorage"]


@final
class NodeStorage:
    """Durable storage of one node, in memory: what its core persisted survives the driver.

    Pass the same object to the driver of a restarted node to model a crash
    that keeps the disk (``persist=storage.save, restored=storage.restored()``).
    It keeps the data of the last ``Persist`` as is (a whole snapshot, as the
    lease lock persists).
    """

    def __init__(self) -> None:
        self.data: Any = None
        self.has_data = False
        self.writes = 0

    def save(self, data: Any) -> None:
        """Replace the stored data (the driver's persist callback)."""
        self.data = data
        self.has_data = True
        self.writes += 1

    def restored(self) -> Any:
        """What a restarted core is restored from: the data, or ``NO_STATE`` if none."""
        return self.data if self.has_data else NO_STATE


@final
class LocalTransport:
    """One node's :class:`~trio_foundation.runtime.transport.Transport` on a :class:`LocalNetwork`.

    Get it from :meth:`LocalNetwork.transport`; :meth:`close` (or leaving its
    ``with`` block) detaches the node, after which messages to it are dropped.
    """

    def __init__(self, network: LocalNetwork, node_id: int) -> None:
        self._network = network
        self._node_id = node_id
        self._inbox = network._attach(node_id)

    @property
    def node_id(self) -> int:
        """This node's id."""
        return self._node_id

    def send_nowait(self, dst: int, msg: Any) -> bool:
        """Queue ``msg`` for ``dst`` (through :meth:`LocalNetwork.send`); never blocks."""
        return self._network.send(self._node_id, dst, msg)

    async def receive(self) -> Envelope:
        """The next message for this node. A checkpoint; cancelling it loses nothing.

        Raises:
            trio.ClosedResourceError: the transport was closed.
            trio.EndOfChannel: the node was attached again by a newer transport.
        """
        src, msg = await self._inbox.receive()
        return Envelope(src, msg)

    def close(self) -> None:
        """Detach the node (idempotent): later messages to it are dropped."""
        self._network._detach(self._node_id, self._inbox)

    def __enter__(self) -> LocalTransport:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


@final
class LocalNetwork:
    """Bounded in-memory links between the nodes of one process.

    Args:
        capacity: each node's inbox size; a message to a full inbox is dropped.

    Raises:
        ValueError: ``capacity`` is not positive.
    """

    def __init__(self, *, capacity: int = 1024) -> None:
        if capacity <= 0:
            raise ValueError(f"capacity must be > 0, got {capacity}")
        self.capacity = capacity
        self._inboxes: dict[int, trio.MemorySendChannel[tuple[int, Any]]] = {}
        self._receivers: dict[int, trio.MemoryReceiveChannel[tuple[int, Any]]] = {}
        self._cut: set[tuple[int, int]] = set()
        #: messages dropped because an inbox was full, closed, absent or the link cut
        self.dropped = 0

    def transport(self, node: int) -> LocalTransport:
        """Attach ``node`` with a fresh inbox (replacing any previous one) and return its transport.

        Raises:
            TypeError: ``node`` is not an int.
        """
        return LocalTransport(self, node)

    def _attach(self, node: int) -> trio.MemoryReceiveChannel[tuple[int, Any]]:
        if not isinstance(node, int) or isinstance(node, bool):
            raise TypeError(f"node id must be an int, got {type(node).__name__}")
        send, receive = trio.open_memory_channel[tuple[int, Any]](self.capacity)
        old = self._inboxes.get(node)
        if old is not None:
            old.close()
        self._inboxes[node] = send
        self._receivers[node] = receive
        return receive

    def _detach(self, node: int, inbox: trio.MemoryReceiveChannel[tuple[int, Any]]) -> None:
        inbox.close()
        if self._receivers.get(node) is inbox:
            self._inboxes.pop(node).close()
            del self._receivers[node]

    def cut(self, src: int, dst: int) -> None:
        """Drop every message from ``src`` to ``dst`` until :meth:`heal`."""
        self._cut.add((src, dst))

    def heal(self) -> None:
        """Restore every cut link."""
        self._cut.clear()

    def send(self, src: int, dst: int, msg: Any) -> bool:
        """Queue ``msg`` for ``dst``; returns whether it was queued (never blocks)."""
        inbox = self._inboxes.get(dst)
        if inbox is None or (src, dst) in self._cut:
            self.dropped += 1
            return False
        try:
            inbox.send_nowait((src, msg))
        except (trio.WouldBlock, trio.ClosedResourceError):
            self.dropped += 1
            return False
        return True
