"""The interface a node driver sends and receives messages through.

A :class:`Transport` moves messages between numbered nodes. The node driver
(one per core) calls :meth:`Transport.send_nowait` for each ``Send`` effect —
it never blocks the core's event loop — and a receive loop awaits
:meth:`Transport.receive`. The TCP transport
(:mod:`trio_foundation.runtime.tcp`) implements it; the in-process and
simulated networks are meant to implement the same three names, so one driver
runs a core over any of them.

What a core may rely on is the weakest transport's guarantee: a message may be
lost (a bounded queue overflowed, a link broke), and under the simulator's
nemesis also duplicated, delayed and reordered; protocols retry on their own
timers and ignore stale answers. The TCP transport gives more: per connection,
in order and at most once; across a reconnect, a message still queued is
delivered, one being written may be lost, none is sent twice.
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
