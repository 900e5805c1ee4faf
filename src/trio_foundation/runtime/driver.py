"""The node driver: the one place where a sans-IO core's effects are executed.

A :class:`NodeDriver` runs one :class:`~trio_foundation.protocols.effects.Core`
over any :class:`~trio_foundation.runtime.transport.Transport` and a clock. It
feeds the core its inputs — start, messages, timer firings, client requests —
and executes the effects each input returned, always in this order:

1. every :class:`~trio_foundation.protocols.effects.Persist`, through the
   ``persist`` callback, which must return only once the data is durable
   ("persist before you send"); if it raises, nothing else of that step is
   executed and the exception ends the driver (a node that cannot persist must
   not act);
2. then every other effect in the order the core emitted it: ``Send`` →
   ``transport.send_nowait`` (never blocks), ``SetTimer`` / ``CancelTimer`` on
   the driver's timer table, ``Reply`` → the waiting caller.

Every runtime uses this driver: the in-process network
(:mod:`~trio_foundation.runtime.local`), the TCP transport
(:mod:`~trio_foundation.runtime.tcp`) and the deterministic simulator
(:mod:`~trio_foundation.runtime.sim`), whose nodes are drivers over a simulated
transport and a skewed, drifting clock.

**Time.** ``clock()`` is the node's local time; it is what the core sees and
what timers are measured on. Timers fire in one of two ways: by default
:meth:`NodeDriver.run` sleeps on Trio's clock until the earliest one is due (so
``clock`` must be ``trio.current_time`` or advance with it); or, with
``on_arm=``, whoever drives the node (the simulator) is told of each arming and
calls :meth:`NodeDriver.fire_timer` itself when it is due.

**The trace hook.** An optional ``trace`` callback receives each transition:
the input, the effects *in the order the core emitted them* (not the execution
order) and the core's state projected through a declared function. With
``trace=None`` the driver builds no record at all. The emitted order is what
trace validation replays, so an ordering duty of the core ("persist the token
before sending the grant") is checked against the spec even though this driver
would have executed the ``Persist`` first anyway.

Messages reach the core in one of two ways: :meth:`NodeDriver.run` pulls them
from ``transport.receive()`` (``pull=True``), or the transport pushes them by
calling :meth:`NodeDriver.deliver` (for instance
:func:`~trio_foundation.runtime.tcp.open_tcp_transport` with ``on_message=``, or
the simulator), which saves a task switch per message.
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
from .transport import Envelope, Transport

__all__ = ["NO_STATE", "NodeDriver", "Start", "TimerFired", "Transition"]

NO_STATE: Final = object()
"""Marker for "nothing persisted": the core is not restored before it starts."""


@final
@attrs.frozen
class Start:
    """Trace input: the core (re)started."""


@final
@attrs.frozen
class TimerFired:
    """Trace input: the timer ``name`` fired."""

    name: str


@final
@attrs.frozen
class Transition:
    """One step of a core, as the trace hook receives it.

    Attributes:
        now: the clock reading handed to the core (the node's local time).
        input: :class:`Start`, :class:`TimerFired`, the
            :class:`~trio_foundation.runtime.transport.Envelope` received, or the
            :class:`~trio_foundation.protocols.effects.ClientRequest`.
        effects: the effects exactly as the core emitted them, in its order.
        state: the projection of the core's state after the step (``None`` when
            the driver has no projection).
        node: the node id of the driver that took the step.
    """

    now: float
    input: Any
    effects: tuple[Effect, ...]
    state: Any
    node: int


@attrs.define
class _Pending:
    done: trio.Event = attrs.field(factory=trio.Event)
    reply: Reply | None = None


def _no_persist(data: Any) -> None:
    raise RuntimeError("the core emitted Persist but the driver has no persist callback")


@final
class NodeDriver:
    """Run one core over a transport and a clock. Start it with ``await nursery.start(d.run)``.

    Args:
        core: the sans-IO core.
        transport: where ``Send`` effects go and (with ``pull=True``) where
            messages come from.
        persist: called with each ``Persist``'s data, unchanged: what the data
            means (a whole snapshot, or an incremental record such as "append
            these log entries") is the primitive's, and so is the storage
            adapter that interprets it. Must return once it is durable
            (blocking is acceptable: a core persists rarely). Default: a core
            that persists is an error.
        restored: the data to hand to ``core.restore`` before ``on_start``
            (loaded by the caller's storage adapter after a restart);
            :data:`NO_STATE` for a fresh node.
        clock: returns the node's local time in seconds; the core sees it and
            timers are measured on it. Without ``on_arm`` it must be
            ``trio.current_time`` or advance with it (timers sleep on Trio's
            clock).
        rng: the randomness handed to ``core.on_start``.
        trace: called with a :class:`Transition` after every step, before its
            effects are executed; ``None`` (default) records nothing.
        projection: the declared projection of the core's state for the trace.
        pull: whether :meth:`run` reads ``transport.receive()``; pass ``False``
            when the transport pushes messages through :meth:`deliver`.
        on_arm: called as ``on_arm(name, delay, ticket)`` for each ``SetTimer``
            in emitted order; the caller then owns the firing and calls
            :meth:`fire_timer` (``name``, ``ticket``) when ``delay`` seconds of
            local time have passed. ``None``: :meth:`run` fires timers on
            Trio's clock.
        on_reply: called with each ``Reply`` whose request was not submitted
            through :meth:`submit` (requests handed in with :meth:`request`).
    """

    def __init__(
        self,
        core: Core,
        transport: Transport,
        *,
        persist: Callable[[Any], None] | None = None,
        restored: Any = NO_STATE,
        clock: Callable[[], float] = trio.current_time,
        rng: random.Random | None = None,
        trace: Callable[[Transition], None] | None = None,
        projection: Callable[[Any], Any] | None = None,
        pull: bool = True,
        on_arm: Callable[[str, float, int], None] | None = None,
        on_reply: Callable[[Reply], None] | None = None,
    ) -> None:
        self.core = core
        self.transport = transport
        self._node_id = transport.node_id
        self._persist = persist if persist is not None else _no_persist
        self._restored = restored
        self._clock = clock
        self._rng = rng if rng is not None else random.Random(self._node_id)
        self._trace = trace
        self._projection = projection
        self._pull = pull
        self._on_arm = on_arm
        self._on_reply = on_reply
        # Invariant: name -> (due on the driver's clock, ticket of the arming).
        self._timers: dict[str, tuple[float, int]] = {}
        self._tickets = 0
        self._pending: dict[Hashable, _Pending] = {}
        self._ids = itertools.count()
        self._running = False
        self._started = False
        self._timer_scope: trio.CancelScope | None = None
        #: called synchronously after every step the core took
        self.after_event: list[Callable[[], None]] = []
        #: steps taken (inputs handed to the core)
        self.steps = 0

    @property
    def running(self) -> bool:
        """Whether the core has started and the driver has not stopped."""
        return self._running

    @property
    def node_id(self) -> int:
        """The transport's node id."""
        return self._node_id

    def timers(self) -> dict[str, float]:
        """The armed timers: name → due time on the driver's clock (a copy)."""
        return {name: due for name, (due, _ticket) in self._timers.items()}

    @property
    def timer_count(self) -> int:
        """How many timers are armed."""
        return len(self._timers)

    def timer_armed(self, name: str, ticket: int) -> bool:
        """Whether the timer ``name`` is still armed by the arming ``ticket``."""
        armed = self._timers.get(name)
        return armed is not None and armed[1] == ticket

    # ------------------------------------------------------------------ stepping

    def _step(self, now: float, input: Any, effects: list[Effect], *, final: bool = False) -> None:
        self.steps += 1
        if self._trace is not None:
            state = None if self._projection is None else self._projection(self.core)
            self._trace(Transition(now, input, tuple(effects), state, self._node_id))
        for eff in effects:
            if isinstance(eff, Persist):
                self._persist(eff.data)
        timers_changed = False
        for eff in effects:
            if isinstance(eff, Send):
                self.transport.send_nowait(eff.to, eff.msg)
            elif final:
                if not isinstance(eff, SetTimer | CancelTimer | Reply | Persist):
                    raise TypeError(f"the core emitted {eff!r}, which is not an effect")
            elif isinstance(eff, SetTimer):
                self._tickets += 1
                self._timers[eff.name] = (now + eff.delay, self._tickets)
                if self._on_arm is not None:
                    self._on_arm(eff.name, eff.delay, self._tickets)
                timers_changed = True
            elif isinstance(eff, CancelTimer):
                timers_changed |= self._timers.pop(eff.name, None) is not None
            elif isinstance(eff, Reply):
                pending = self._pending.get(eff.client)
                if pending is not None:
                    pending.reply = eff
                    pending.done.set()
                elif self._on_reply is not None:
                    self._on_reply(eff)
            elif not isinstance(eff, Persist):
                raise TypeError(f"the core emitted {eff!r}, which is not an effect")
        if final:
            return
        for hook in self.after_event:
            hook()
        if timers_changed and self._timer_scope is not None:
            self._timer_scope.deadline = min(
                (due for due, _ticket in self._timers.values()), default=math.inf
            )

    def start(self) -> None:
        """Restore the core (if ``restored`` was given) and run ``on_start``. Not a checkpoint.

        For drivers whose caller delivers every input itself (the simulator);
        :meth:`run` and :meth:`start_in` call it. A driver starts once.

        Raises:
            RuntimeError: already started.
            whatever ``restore``, ``on_start`` or the persist callback raise
            (the driver is then stopped).
        """
        if self._started:
            raise RuntimeError(f"node {self._node_id}: a driver runs once")
        self._started = True
        try:
            if self._restored is not NO_STATE:
                self.core.restore(self._restored)
            self._running = True
            now = self._clock()
            self._step(now, Start(), self.core.on_start(now, self._rng))
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop the driver: a crash of the node. Not a checkpoint; idempotent.

        Armed timers are forgotten, callers waiting in :meth:`wait_reply` get
        ``trio.BrokenResourceError``, later inputs are ignored; what was
        persisted is the caller's.
        """
        self._running = False
        self._timers.clear()
        self._timer_scope = None
        for pending in self._pending.values():
            pending.done.set()

    def deliver(self, src: int, msg: Any) -> None:
        """Hand the core a message from ``src`` now (push mode). Not a checkpoint.

        Messages arriving while the driver is not running are dropped, as a
        network would.
        """
        if not self._running:
            return
        now = self._clock()
        if self._trace is None:
            self._step(now, None, self.core.on_message(now, src, msg))
        else:
            self._step(now, Envelope(src, msg), self.core.on_message(now, src, msg))

    def fire_timer(self, name: str, ticket: int | None = None) -> bool:
        """Fire the timer ``name`` now if it is armed (by ``ticket``, when given).

        Not a checkpoint. Used by callers that passed ``on_arm``; returns
        whether the core was handed the firing (``False``: cancelled, re-armed
        since ``ticket``, or the driver is stopped).
        """
        armed = self._timers.get(name)
        if not self._running or armed is None or (ticket is not None and armed[1] != ticket):
            return False
        del self._timers[name]
        now = self._clock()
        self._step(now, TimerFired(name), self.core.on_timer(now, name))
        return True

    def submit(self, op: str, value: Any = None) -> Hashable:
        """Hand the core a client request now; returns its key for :meth:`wait_reply`.

        Not a checkpoint.

        Raises:
            RuntimeError: the driver is not running.
        """
        if not self._running:
            raise RuntimeError(f"node {self._node_id} is not running")
        key = (self._node_id, next(self._ids))
        self._pending[key] = _Pending()
        now = self._clock()
        request = ClientRequest(key, op, value)
        self._step(now, request, self.core.on_client(now, request))
        return key

    def request(self, request: ClientRequest) -> None:
        """Hand the core a client request keyed by the caller; its reply goes to ``on_reply``.

        Not a checkpoint. Ignored while the driver is not running (the caller
        checks :attr:`running` to refuse it).
        """
        if not self._running:
            return
        now = self._clock()
        self._step(now, request, self.core.on_client(now, request))

    def submit_final(self, op: str, value: Any = None) -> None:
        """Hand a *stopped* driver's core one last client request, such as a release.

        For a graceful close whose loop was torn down first (e.g. by the same
        cancellation): the core handles the request, what it persists goes to
        the persist callback and the messages it sends go out; the timers it
        sets, the replies it gives and the ``after_event`` hooks are dropped,
        because no loop runs them any more. The trace hook records it. Not a
        checkpoint.

        Raises:
            RuntimeError: the driver is running (use :meth:`submit`) or never started.
        """
        if self._running or not self._started:
            raise RuntimeError(f"node {self._node_id} is running or never ran; use submit()")
        key = (self._node_id, next(self._ids))
        now = self._clock()
        request = ClientRequest(key, op, value)
        self._step(now, request, self.core.on_client(now, request), final=True)

    async def wait_reply(self, key: Hashable) -> Reply:
        """Wait for the reply to request ``key``.

        A checkpoint. If cancelled, the request stays with the core (withdraw
        it through the core's own operation, then :meth:`forget` it).

        Raises:
            KeyError: ``key`` is not a pending request.
            trio.BrokenResourceError: the driver stopped before the reply.
        """
        pending = self._pending[key]
        await pending.done.wait()
        self._pending.pop(key, None)
        if pending.reply is None:
            raise trio.BrokenResourceError(f"node {self._node_id} stopped before replying")
        return pending.reply

    def reply_nowait(self, key: Hashable) -> Reply | None:
        """The reply to request ``key`` if it has arrived (then ``key`` is no longer
        pending), else ``None`` (still pending). Not a checkpoint.

        Raises:
            KeyError: ``key`` is not a pending request.
            trio.BrokenResourceError: the driver stopped before the reply.
        """
        pending = self._pending[key]
        if not pending.done.is_set():
            return None
        del self._pending[key]
        if pending.reply is None:
            raise trio.BrokenResourceError(f"node {self._node_id} stopped before replying")
        return pending.reply

    def forget(self, key: Hashable) -> Reply | None:
        """Stop waiting for ``key``; returns its reply if it had arrived."""
        pending = self._pending.pop(key, None)
        return None if pending is None else pending.reply

    # ------------------------------------------------------------------ running

    async def _fire_timers(self) -> None:
        while True:
            deadline = min((due for due, _ticket in self._timers.values()), default=math.inf)
            with trio.CancelScope(deadline=deadline) as scope:
                self._timer_scope = scope
                await trio.sleep_forever()
            self._timer_scope = None
            now = self._clock()
            for name, (due, ticket) in sorted(self._timers.items(), key=lambda kv: kv[1]):
                if due <= now:
                    self.fire_timer(name, ticket)
            await trio.lowlevel.checkpoint()

    async def _receive_forever(self) -> None:
        while True:
            envelope = await self.transport.receive()
            if not self._running:
                continue
            now = self._clock()
            self._step(now, envelope, self.core.on_message(now, envelope.src, envelope.msg))

    async def _loops(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        try:
            async with trio.open_nursery() as nursery:
                if self._on_arm is None:
                    nursery.start_soon(self._fire_timers)
                if self._pull:
                    nursery.start_soon(self._receive_forever)
                task_status.started()
                await trio.sleep_forever()
        finally:
            self.stop()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Start the core and drive it until cancelled.

        Restores the core (if ``restored`` was given), runs ``on_start``,
        reports started, then fires timers and (with ``pull``) feeds received
        messages. Cancelling it is a crash of the node (see :meth:`stop`).
        A driver runs once.

        Raises:
            RuntimeError: already running or already ran.
            whatever the core or the persist callback raise.
        """
        self.start()
        await self._loops(task_status=task_status)

    def start_in(self, nursery: trio.Nursery) -> None:
        """Start the core now, synchronously, and drive it in a task of ``nursery``.

        Not a checkpoint: when it returns the core has run ``on_start`` and
        accepts :meth:`deliver` and :meth:`submit` (used when a node is created
        from inside a transport's ``on_message`` handler). Cancelling
        ``nursery`` stops the driver as for :meth:`run`.

        Raises:
            RuntimeError: already running or already ran.
            whatever ``restore``, ``on_start`` or the persist callback raise.
        """
        self.start()
        nursery.start_soon(self._loops)
