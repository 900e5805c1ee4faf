"""The interface a node driver sends and receives messages through.

A :class:`Transport` moves messages between numbered nodes. The node driver
(one per core) calls :meth:`Transport.send_nowait` for each ``Send`` effect —
it never blocks the core's event loop — and a receive loop awaits
:meth:`Transport.receive`. Implementations: the TCP transport
(:mod:`trio_foundation.runtime.tcp`), and in-memory ones for tests and the
simulator.

Guarantees every implementation gives: messages between two nodes over one
connection arrive in the order they were sent, each at most once; across a
reconnect a message queued but not yet written is still delivered, one that
was being written may be lost (at-most-once), never duplicated by the
transport. Loss is always possible (a bounded queue overflowed, a link broke):
protocols retry on their own timers.
"""

from __future__ import annotations

from typing import Any, Protocol, final, runtime_checkable

import attrs

__all__ = ["Envelope", "Transport"]


@final
@attrs.frozen
class Envelope:
    """A message received from node ``src``."""

    src: int
    msg: Any


@runtime_checkable
class Transport(Protocol):
    """What a node driver needs from a network."""

    @property
    def node_id(self) -> int:
        """This node's id."""
        ...

    def send_nowait(self, dst: int, msg: Any) -> bool:
        """Queue ``msg`` for node ``dst``; never blocks.

        Returns whether it was queued (``False``: no route to ``dst``). Queued is
        not delivered.
        """
        ...

    async def receive(self) -> Envelope:
        """The next message for this node. A checkpoint; cancelling it loses nothing."""
        ...
