"""The effect vocabulary shared by every sans-IO core and every runtime driving one.

A core is a pure, synchronous state machine. The runtime hands it one input at a
time (start, a message, a timer firing, a client request) and the core answers
with a list of *effects*: plain data describing what the runtime should do.
Only the runtime executes effects, and it does so in one documented order:

1. every :class:`Persist` first (the data is durable before anything leaves the
   node: "persist before you send");
2. then :class:`Send`, :class:`SetTimer`, :class:`CancelTimer` and :class:`Reply`
   in the order the core listed them.

A core must not rely on that reordering: it emits each ``Persist`` before the
effects that depend on it being durable. The runtime's trace hook records the
effects in the order the core emitted them, and trace validation checks that
duty against the primitive's trace spec (see ``docs/runtime.md``).

Nodes are numbered ``0 .. n-1``. Time is the node's *local* clock (which a
simulator may skew or drift); randomness comes from the ``random.Random`` passed
to :meth:`Core.on_start`, never from the global ``random`` module.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Hashable
from typing import Any, Protocol, TypeAlias, final, runtime_checkable

import attrs

__all__ = [
    "CancelTimer",
    "ClientRequest",
    "Core",
    "CoreFactory",
    "Effect",
    "Persist",
    "Reply",
    "Send",
    "SetTimer",
]


@final
@attrs.frozen
class Send:
    """Send ``msg`` to node ``to``. The network may drop, duplicate or delay it.

    Attributes:
        to: the destination node id.
        msg: the message; any value with a deterministic ``repr`` (frozen attrs
            classes, tuples, ints, strings), because simulators log it.
    """

    to: int
    msg: Any


@final
@attrs.frozen
class SetTimer:
    """Arm (or re-arm) the timer ``name`` to fire after ``delay`` units of local time.

    Setting a timer that is already armed replaces it.

    Attributes:
        name: the timer's name, unique per node.
        delay: seconds of the node's local clock; must be >= 0.
    """

    name: str
    delay: float = attrs.field()

    @delay.validator
    def _check_delay(self, _attr: attrs.Attribute[float], value: float) -> None:
        if not value >= 0:
            raise ValueError(f"timer delay must be >= 0, got {value!r}")


@final
@attrs.frozen
class CancelTimer:
    """Disarm the timer ``name``; cancelling a timer that is not armed does nothing.

    Attributes:
        name: the timer's name.
    """

    name: str


@final
@attrs.frozen
class Persist:
    """Make ``data`` durable before anything else of this step leaves the node.

    What ``data`` means is the primitive's: the whole state that must survive
    a crash (the lease lock's ``ServerDurable``), or an incremental record that
    the primitive's storage adapter applies to what it holds (Raft: the hard
    state plus the log entries to append or truncate). The runtime does not
    interpret it: the node driver hands it, unchanged, to its ``persist``
    callback, which returns once it is durable; after a crash the storage
    adapter rebuilds what the core needs and the driver hands that to
    :meth:`Core.restore` (for a snapshot, the last ``data``).

    Attributes:
        data: what the primitive's storage adapter must make durable; treat it
            as immutable.
    """

    data: Any


@final
@attrs.frozen
class Reply:
    """Answer the client request identified by ``client``.

    Attributes:
        client: the :attr:`ClientRequest.client` of the request being answered.
        value: the result (e.g. the value read).
        ok: ``True`` if the operation took effect; ``False`` if it definitely did
            not (the client records ``fail``).
    """

    client: Hashable
    value: Any = None
    ok: bool = True


@final
@attrs.frozen
class ClientRequest:
    """A request from a client, delivered through :meth:`Core.on_client`.

    Attributes:
        client: an identifier unique among outstanding requests; the core echoes
            it in its :class:`Reply`.
        op: the operation's name, e.g. ``"read"`` or ``"write"``.
        value: the operation's argument.
    """

    client: Hashable
    op: str
    value: Any = None


Effect: TypeAlias = Send | SetTimer | CancelTimer | Persist | Reply


@runtime_checkable
class Core(Protocol):
    """The interface of a sans-IO protocol core.

    A core is built by a :data:`CoreFactory` as ``factory(node_id, n_nodes)``. If
    the node has persisted data (after a crash), the runtime calls
    :meth:`restore` on the fresh core, then :meth:`on_start`. Every ``on_*``
    method returns the effects to execute; none may block, do I/O, read a clock
    or use global randomness.
    """

    def on_start(self, now: float, rng: random.Random) -> list[Effect]:
        """The node (re)starts; keep ``rng`` for any randomness the core needs."""
        ...

    def on_message(self, now: float, src: int, msg: Any) -> list[Effect]:
        """A message from node ``src`` arrived."""
        ...

    def on_timer(self, now: float, name: str) -> list[Effect]:
        """The timer ``name`` fired (it is no longer armed)."""
        ...

    def on_client(self, now: float, request: ClientRequest) -> list[Effect]:
        """A client request arrived; answer it, now or later, with a :class:`Reply`."""
        ...

    def snapshot_persistent(self) -> Any:
        """The state this core has persisted so far (the data of its last ``Persist``).

        Harnesses that drive a core without executing effects (Hypothesis state
        machines) use this to simulate a crash: build a fresh core and
        :meth:`restore` it from the snapshot.
        """
        ...

    def restore(self, snapshot: Any) -> None:
        """Load persisted state into a freshly built core, before :meth:`on_start`."""
        ...


CoreFactory: TypeAlias = Callable[[int, int], Core]
"""Builds the core of node ``node_id`` in a cluster of ``n_nodes``."""
