"""Driving sans-IO cores with Trio inside one process.

:class:`LocalNetwork` connects nodes through bounded in-memory inboxes;
:class:`Node` runs one :class:`~trio_foundation.protocols.effects.Core`: it feeds
the core messages and timer firings, executes the effects it returns
(persist first, then the rest, in order) and lets other tasks submit client
requests and wait for the replies.

Time is the Trio clock (``trio.current_time()``), so tests can run whole
protocols under :class:`trio.testing.MockClock`. The network loses a message
only when an inbox is full or a link is cut; protocols built on it must
tolerate loss anyway.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable, Hashable
from typing import Any, Final, final

import attrs
import trio

from ..protocols.effects import (
    CancelTimer,
    ClientRequest,
    Core,
    Effect,
    Persist,
    Reply,
    Send,
    SetTimer,
)

__all__ = ["LocalNetwork", "Node", "NodeStorage"]

_WAKE: Final = object()


@final
class NodeStorage:
    """Durable storage of one node: what its core persisted survives the core.

    Pass the same object to a restarted :class:`Node` to model a crash that
    keeps the disk.
    """

    def __init__(self) -> None:
        self.data: Any = None
        self.has_data = False
        self.writes = 0

    def save(self, data: Any) -> None:
        """Replace the stored data."""
        self.data = data
        self.has_data = True
        self.writes += 1


@final
class LocalNetwork:
    """Bounded in-memory links between the nodes of one process.

    Args:
        capacity: each node's inbox size; a message to a full inbox is dropped.
    """

    def __init__(self, *, capacity: int = 1024) -> None:
        if capacity <= 0:
            raise ValueError(f"capacity must be > 0, got {capacity}")
        self.capacity = capacity
        self._inboxes: dict[int, trio.MemorySendChannel[Any]] = {}
        self._receivers: dict[int, trio.MemoryReceiveChannel[Any]] = {}
        self._cut: set[tuple[int, int]] = set()
        #: messages dropped because an inbox was full, closed, absent or the link cut
        self.dropped = 0

    def attach(self, node: int) -> trio.MemoryReceiveChannel[Any]:
        """Give ``node`` a fresh inbox (replacing any previous one) and return its receiving end.

        Raises:
            TypeError: if ``node`` is not an int.
        """
        if not isinstance(node, int) or isinstance(node, bool):
            raise TypeError(f"node id must be an int, got {type(node).__name__}")
        send, receive = trio.open_memory_channel[Any](self.capacity)
        old = self._inboxes.get(node)
        if old is not None:
            old.close()
        self._inboxes[node] = send
        self._receivers[node] = receive
        return receive

    def detach(self, node: int, inbox: trio.MemoryReceiveChannel[Any]) -> None:
        """Remove ``node``'s inbox if it is still ``inbox`` (messages to it are then dropped)."""
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

    def wake(self, node: int) -> None:
        """Make ``node``'s loop re-read its timers (best effort, never blocks)."""
        inbox = self._inboxes.get(node)
        if inbox is not None:
            try:
                inbox.send_nowait((node, _WAKE))
            except (trio.WouldBlock, trio.ClosedResourceError):
                pass  # a full inbox wakes the loop anyway; a closed one has no loop


@attrs.define
class _Pending:
    done: trio.Event = attrs.field(factory=trio.Event)
    reply: Reply | None = None


@final
class Node:
    """One core, driven by Trio. Run it with ``await nursery.start(node.run)``.

    Args:
        node_id: the node's id on ``network``.
        core: the sans-IO core (see :class:`~trio_foundation.protocols.effects.Core`).
        network: the network it sends and receives on.
        storage: its durable storage; the core is restored from it on start if
            it holds data.
        rng: randomness handed to the core (default: seeded from ``node_id``).
    """

    def __init__(
        self,
        node_id: int,
        core: Core,
        network: LocalNetwork,
        *,
        storage: NodeStorage | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.node_id = node_id
        self.core = core
        self.network = network
        self.storage = storage if storage is not None else NodeStorage()
        self._rng = rng if rng is not None else random.Random(node_id)
        self._timers: dict[str, float] = {}
        self._pending: dict[Hashable, _Pending] = {}
        self._ids = itertools.count()
        self._running = False
        #: called (synchronously) after every event the core handled
        self.after_event: list[Callable[[], None]] = []

    def _execute(self, effects: list[Effect]) -> None:
        for eff in effects:
            if isinstance(eff, Persist):
                self.storage.save(eff.data)
        timers_changed = False
        for eff in effects:
            if isinstance(eff, Send):
                self.network.send(self.node_id, eff.to, eff.msg)
            elif isinstance(eff, SetTimer):
                self._timers[eff.name] = trio.current_time() + eff.delay
                timers_changed = True
            elif isinstance(eff, CancelTimer):
                timers_changed |= self._timers.pop(eff.name, None) is not None
            elif isinstance(eff, Reply):
                pending = self._pending.get(eff.client)
                if pending is not None:
                    pending.reply = eff
                    pending.done.set()
        for hook in self.after_event:
            hook()
        if timers_changed:
            self.network.wake(self.node_id)

    @property
    def running(self) -> bool:
        """Whether the node's loop is running (between start and stop)."""
        return self._running

    def submit_final(self, op: str, value: Any = None) -> None:
        """Hand a *stopped* node's core one last client request, such as a release.

        For a graceful close whose loop was torn down first (e.g. by the same
        cancellation): the core handles the request, what it persists is
        stored and the messages it sends go out; the timers it sets, the
        replies it gives and the ``after_event`` hooks are dropped, because
        no loop runs them any more. Not a checkpoint.

        Raises:
            RuntimeError: if the node is running (use :meth:`submit`).
        """
        if self._running:
            raise RuntimeError(f"node {self.node_id} is running; use submit()")
        key = (self.node_id, next(self._ids))
        effects = self.core.on_client(trio.current_time(), ClientRequest(key, op, value))
        for eff in effects:
            if isinstance(eff, Persist):
                self.storage.save(eff.data)
        for eff in effects:
            if isinstance(eff, Send):
                self.network.send(self.node_id, eff.to, eff.msg)

    def submit(self, op: str, value: Any = None) -> Hashable:
        """Hand the core a client request now; returns its key for :meth:`wait_reply`.

        Raises:
            RuntimeError: if the node is not running.
        """
        if not self._running:
            raise RuntimeError(f"node {self.node_id} is not running")
        key = (self.node_id, next(self._ids))
        self._pending[key] = _Pending()
        self._execute(self.core.on_client(trio.current_time(), ClientRequest(key, op, value)))
        return key

    async def wait_reply(self, key: Hashable) -> Reply:
        """Wait for the reply to request ``key``.

        A checkpoint. On cancellation the request stays with the core (cancel it
        through the core's own operation, then :meth:`forget` it).

        Raises:
            trio.BrokenResourceError: the node stopped before replying.
        """
        pending = self._pending[key]
        await pending.done.wait()
        self._pending.pop(key, None)
        if pending.reply is None:
            raise trio.BrokenResourceError(f"node {self.node_id} stopped before replying")
        return pending.reply

    def forget(self, key: Hashable) -> Reply | None:
        """Stop waiting for ``key``; returns its reply if it had arrived."""
        pending = self._pending.pop(key, None)
        return None if pending is None else pending.reply

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Start the core and feed it until cancelled. Reports started once the core
        has run ``on_start``. Cancelling it is a crash: volatile state is lost, what
        was persisted stays in :attr:`storage`."""
        inbox = self.network.attach(self.node_id)
        try:
            if self.storage.has_data:
                self.core.restore(self.storage.data)
            self._running = True
            self._execute(self.core.on_start(trio.current_time(), self._rng))
            task_status.started()
            while True:
                deadline = min(self._timers.values(), default=math.inf)
                with trio.move_on_at(deadline):
                    src, msg = await inbox.receive()
                    if msg is not _WAKE:
                        self._execute(self.core.on_message(trio.current_time(), src, msg))
                    continue
                now = trio.current_time()
                for name, due in sorted(self._timers.items(), key=lambda kv: kv[1]):
                    if due <= now and self._timers.get(name) == due:
                        del self._timers[name]
                        self._execute(self.core.on_timer(now, name))
        finally:
            self._running = False
            self._timers.clear()
            for pending in self._pending.values():
                pending.done.set()
            self.network.detach(self.node_id, inbox)
