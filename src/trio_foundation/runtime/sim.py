"""A deterministic simulated cluster for sans-IO cores.

Theory of operation
-------------------

``n`` nodes each drive one :class:`~trio_foundation.protocols.effects.Core` over an
in-memory network. Everything that happens is an *event* in one priority queue
ordered by ``(time, seq)`` — a message delivery, a timer firing, a client request,
a fault from the schedule, a callback — and :class:`Simulation` processes one
event at a time, handing it to the node's
:class:`~trio_foundation.runtime.driver.NodeDriver`, which feeds the core and
executes the effects it returns (persist first, then sends, timers and replies
in order; sends go through a simulated transport into the network below, and
the driver's clock is the node's skewed, drifting clock). All
randomness comes from ``random.Random`` instances derived from the one seed
(``"<seed>:net"`` for the network, ``"<seed>:node:<i>:<incarnation>"`` for each
core), so a run is a pure function of the seed, the schedule and the client
calls.

Two drivers share that one model:

* **discrete-event** — :meth:`Simulation.run` pops events as fast as it can and
  jumps the clock; used by Hypothesis and the chaos command line;
* **Trio** — ``async with open_sim_cluster(...) as cluster:`` runs a dispatcher
  task and one task per node in a nursery scoped to the ``async with`` block; the
  dispatcher sleeps on the Trio clock until the next event is due (so it fits
  ``trio.testing.MockClock``) and hands the event to the node's task. Client
  calls are ``await cluster.request(...)``. Because the dispatcher, not Trio's
  scheduler, orders events (one at a time, by ``(time, seq)``), the event log is
  the same for the same seed and the same sequence of client calls, and equals
  the discrete-event driver's.

Faults (see :mod:`trio_foundation.runtime.faults`): loss, duplication, delay
drawn from a distribution, explicit reordering (a message held back), partitions
and one-way cuts (checked when a message is sent *and* when it would be
delivered), crash (the core, its timers, queued inputs and the messages in
flight to it are lost; its durable storage survives) and restart (a fresh core
restored from storage), pause/resume (inputs queue, timers are deferred), and
per-node clock skew and drift (``local = offset + (1 + drift) * true``).

Every structure is bounded: in-flight messages per link (the newest overflows,
logged), a paused node's queue, timers per node, outstanding client requests, and
the event log, which keeps the most recent entries in a ring while
:meth:`Simulation.event_log_digest` hashes *every* entry ever logged.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import random
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from contextlib import asynccontextmanager
from typing import Any, Literal, Protocol, TypeAlias, final

import attrs
import trio

from ..protocols.effects import ClientRequest, Core, CoreFactory, Reply
from .driver import NO_STATE, NodeDriver, Transition
from .faults import (
    ClockSkew,
    Crash,
    Cut,
    DelayDistribution,
    Fault,
    FaultEvent,
    FixedDelay,
    Heal,
    Partition,
    Pause,
    Restart,
    Resume,
    SetDelay,
    SetDropRate,
    SetDuplicateRate,
    SetReorderRate,
)
from .transport import Envelope

__all__ = [
    "ClientOutcome",
    "ClientWorkload",
    "HistorySink",
    "LogEntry",
    "SimCluster",
    "SimConfig",
    "Simulation",
    "open_sim_cluster",
]

OutcomeStatus: TypeAlias = Literal["ok", "fail", "info"]


def _positive(_inst: object, attr: attrs.Attribute[int], value: int) -> None:
    if value <= 0:
        raise ValueError(f"{attr.name} must be > 0, got {value!r}")


def _probability(_inst: object, attr: attrs.Attribute[float], value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{attr.name} must be in [0, 1], got {value!r}")


def _non_negative(_inst: object, attr: attrs.Attribute[float], value: float) -> None:
    if not value >= 0:
        raise ValueError(f"{attr.name} must be >= 0, got {value!r}")


def _drift_bound(_inst: object, attr: attrs.Attribute[float], value: float) -> None:
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{attr.name} must be in [0, 1), got {value!r}")


@final
@attrs.frozen
class SimConfig:
    """The network's initial behaviour and the simulator's bounds.

    Attributes:
        delay: the message delay distribution (until a ``SetDelay`` fault).
        drop_rate: probability a message is lost.
        duplicate_rate: probability a message is delivered twice.
        reorder_rate: probability a message is held back by up to ``reorder_window``.
        reorder_window: the longest hold-back, in seconds.
        max_in_flight_per_link: messages in flight on one directed link; beyond it
            the newest is dropped and an ``overflow`` event is logged.
        max_paused_queue: inputs a paused node may queue; beyond it they are dropped.
        max_timers_per_node: armed timers per node; beyond it ``RuntimeError``.
        max_pending_requests: outstanding client requests; beyond it ``RuntimeError``.
        max_drift: the largest ``|drift|`` a ``ClockSkew`` may set.
        log_capacity: how many recent event-log entries are kept in memory.
    """

    delay: DelayDistribution = attrs.field(default=FixedDelay(0.01))
    drop_rate: float = attrs.field(default=0.0, validator=_probability)
    duplicate_rate: float = attrs.field(default=0.0, validator=_probability)
    reorder_rate: float = attrs.field(default=0.0, validator=_probability)
    reorder_window: float = attrs.field(default=0.5, validator=_non_negative)
    max_in_flight_per_link: int = attrs.field(default=1000, validator=_positive)
    max_paused_queue: int = attrs.field(default=10_000, validator=_positive)
    max_timers_per_node: int = attrs.field(default=1024, validator=_positive)
    max_pending_requests: int = attrs.field(default=10_000, validator=_positive)
    max_drift: float = attrs.field(default=0.5, validator=_drift_bound)
    log_capacity: int = attrs.field(default=100_000, validator=_positive)


@final
@attrs.frozen
class LogEntry:
    """One entry of the event log.

    Attributes:
        seq: the entry's 0-based position in the whole run.
        time: true (simulated) time.
        kind: ``start``, ``send``, ``deliver``, ``drop``, ``dup``, ``overflow``,
            ``timer``, ``persist``, ``client``, ``reply``, ``fault``, ``crash``,
            ``restart``, ``pause``, ``resume``, ``queue`` or ``abandon``.
        node: the node concerned, or ``None`` for cluster-wide events.
        detail: a deterministic description (message reprs, reasons, ...).
    """

    seq: int
    time: float
    kind: str
    node: int | None
    detail: str

    def canonical(self) -> str:
        """The entry as one canonical JSON line (what the digest hashes)."""
        return json.dumps([self.seq, f"{self.time:.9f}", self.kind, self.node, self.detail])


@final
@attrs.frozen
class ClientOutcome:
    """How a client request ended.

    Attributes:
        request: the request id :meth:`Simulation.submit` returned.
        status: ``ok`` or ``fail`` (from the core's reply; ``fail`` also when the
            node was down on arrival), or ``info`` (unknown: the node crashed with
            the request outstanding, or the client gave up waiting).
        value: the reply's value (``None`` for ``info``).
    """

    request: int
    status: OutcomeStatus
    value: Any = None


@attrs.define
class _Node:
    driver: NodeDriver | None = None
    up: bool = True
    paused: bool = False
    incarnation: int = 0
    queue: deque[_Event] = attrs.Factory(deque)
    offset: float = 0.0
    drift: float = 0.0
    has_storage: bool = False
    storage: Any = None


@attrs.frozen(order=True)
class _Event:
    # Ordered by (time, seq) only; seq is unique, so payload is never compared.
    time: float
    seq: int
    kind: str = attrs.field(order=False)
    node: int | None = attrs.field(order=False)
    payload: Any = attrs.field(order=False)


_Callback: TypeAlias = Callable[[ClientOutcome], None]


@final
class _SimTransport:
    """A node's transport in the simulator: sends go through the simulated network."""

    def __init__(self, sim: Simulation, node: int) -> None:
        self._sim = sim
        self._node = node

    @property
    def node_id(self) -> int:
        return self._node

    def send_nowait(self, dst: int, msg: Any) -> bool:
        self._sim._send(self._node, self._sim._node_id(dst), msg)
        return True

    async def receive(self) -> Envelope:
        raise RuntimeError("the simulator pushes messages to its drivers")


@final
class Simulation:
    """A simulated cluster and its discrete-event driver.

    Building the simulation starts every node at time 0 (``on_start``) and
    enqueues the fault schedule; nothing else happens until :meth:`step` or
    :meth:`run` (or the Trio driver) processes events.

    Args:
        factory: builds node ``i``'s core as ``factory(i, nodes)``.
        nodes: the cluster size (>= 1).
        seed: the seed every random choice derives from.
        config: network behaviour and bounds.
        schedule: fault events, applied at their times.
        trace: the trace hook of every node's driver: called with each
            :class:`~trio_foundation.runtime.driver.Transition` (its ``node``
            says whose, its ``now`` is that node's local time); ``None``
            records nothing.
        projection: the projection of a core's state the trace records.

    Raises:
        ValueError: on a bad size or a schedule naming an unknown node.
    """

    def __init__(
        self,
        factory: CoreFactory,
        *,
        nodes: int,
        seed: int,
        config: SimConfig | None = None,
        schedule: Sequence[FaultEvent] = (),
        trace: Callable[[Transition], None] | None = None,
        projection: Callable[[Any], Any] | None = None,
    ) -> None:
        if nodes < 1:
            raise ValueError(f"nodes must be >= 1, got {nodes}")
        self._factory = factory
        self._n = nodes
        self._seed = seed
        self._config = config = config or SimConfig()
        self._net_rng = random.Random(f"{seed}:net")
        self._delay: DelayDistribution = config.delay
        self._drop = config.drop_rate
        self._dup = config.duplicate_rate
        self._reorder = config.reorder_rate
        self._reorder_window = config.reorder_window
        self._cuts: set[tuple[int, int]] = set()
        self._in_flight: Counter[tuple[int, int]] = Counter()
        self._now = 0.0
        self._seq = 0
        self._trace = trace
        self._projection = projection
        self._heap: list[_Event] = []
        self._log: deque[LogEntry] = deque(maxlen=config.log_capacity)
        self._log_count = 0
        self._digest = hashlib.sha256()
        self._kind_counts: Counter[str] = Counter()
        self._fault_counts: Counter[str] = Counter()
        self._next_request = 0
        self._pending: dict[int, tuple[int, _Callback | None]] = {}
        self._steps = 0
        # Set by the Trio driver: wakes its dispatcher when an event is queued.
        self._on_push: Callable[[], None] | None = None
        for ev in schedule:
            self._check_fault(ev.fault)
            self._push(ev.at, "fault", None, ev.fault)
        self._nodes: list[_Node] = [_Node() for _ in range(nodes)]
        cores = [factory(i, nodes) for i in range(nodes)]
        for i in range(nodes):
            self._log_event("start", i, "incarnation 0")
            self._start_core(i, cores[i])

    # ------------------------------------------------------------ inspection

    @property
    def nodes(self) -> int:
        """The cluster size."""
        return self._n

    @property
    def seed(self) -> int:
        """The seed the run derives from."""
        return self._seed

    @property
    def now(self) -> float:
        """True simulated time of the event being (or last) processed."""
        return self._now

    @property
    def steps(self) -> int:
        """Events processed so far."""
        return self._steps

    def local_time(self, node: int) -> float:
        """``node``'s clock now: ``offset + (1 + drift) * now``."""
        state = self._nodes[self._node_id(node)]
        return state.offset + (1.0 + state.drift) * self._now

    def core(self, node: int) -> Core | None:
        """``node``'s live core, or ``None`` while it is crashed."""
        driver = self._nodes[self._node_id(node)].driver
        return None if driver is None else driver.core

    def driver(self, node: int) -> NodeDriver | None:
        """The :class:`~trio_foundation.runtime.driver.NodeDriver` running ``node``
        (``None`` while it is crashed); read-only use."""
        return self._nodes[self._node_id(node)].driver

    def is_up(self, node: int) -> bool:
        """Whether ``node`` is running (paused nodes are up)."""
        return self._nodes[self._node_id(node)].up

    def is_paused(self, node: int) -> bool:
        """Whether ``node`` is paused."""
        return self._nodes[self._node_id(node)].paused

    def persisted(self, node: int) -> tuple[bool, Any]:
        """``(has_data, data)``: what ``node``'s durable storage holds."""
        state = self._nodes[self._node_id(node)]
        return state.has_storage, state.storage

    def is_blocked(self, src: int, dst: int) -> bool:
        """Whether the directed link ``src -> dst`` is cut."""
        return (src, dst) in self._cuts

    def in_flight(self, src: int, dst: int) -> int:
        """Messages currently in flight on the directed link ``src -> dst``."""
        return self._in_flight[(src, dst)]

    def queued_messages(self, node: int) -> int:
        """Messages delivered to paused ``node`` and waiting for it to resume."""
        return sum(1 for ev in self._nodes[self._node_id(node)].queue if ev.kind == "deliver")

    @property
    def event_log(self) -> tuple[LogEntry, ...]:
        """The most recent ``config.log_capacity`` log entries, oldest first."""
        return tuple(self._log)

    @property
    def event_count(self) -> int:
        """Entries ever logged (the ring may hold fewer)."""
        return self._log_count

    def counts(self) -> dict[str, int]:
        """How many events of each kind were logged, sorted by kind."""
        return dict(sorted(self._kind_counts.items()))

    def fault_counts(self) -> dict[str, int]:
        """How many faults of each kind were applied, sorted by kind."""
        return dict(sorted(self._fault_counts.items()))

    def event_log_digest(self) -> str:
        """The sha256 hex digest of every log entry's canonical line, in order."""
        return self._digest.hexdigest()

    # ------------------------------------------------------------ driving

    def next_event_time(self) -> float | None:
        """The time of the next queued event, or ``None`` if nothing is queued."""
        return self._heap[0].time if self._heap else None

    def _pop(self) -> _Event:
        return heapq.heappop(self._heap)

    def step(self) -> bool:
        """Process the next event; returns ``False`` if there was none."""
        if not self._heap:
            return False
        self._process(heapq.heappop(self._heap))
        return True

    def run(
        self,
        *,
        until: float | None = None,
        stop: Callable[[], bool] | None = None,
        max_steps: int = 10_000_000,
    ) -> None:
        """Process events in order until ``stop()`` returns true (checked before
        every event), the next event is after ``until``, or none is left.

        Unless ``stop()`` ended the run, the clock then advances to ``until``, so
        ``run(until=t)`` means "let time pass up to ``t``".

        Raises:
            RuntimeError: if ``max_steps`` events are processed in this call (a
                runaway protocol); the message says where the run stood.
        """
        done = 0
        while self._heap:
            if until is not None and self._heap[0].time > until:
                self._now = max(self._now, until)
                return
            if stop is not None and stop():
                return
            if done >= max_steps:
                raise RuntimeError(
                    f"simulation exceeded max_steps={max_steps} at t={self._now:.3f} "
                    f"(seed {self._seed})"
                )
            self.step()
            done += 1
        if until is not None and not (stop is not None and stop()):
            self._now = max(self._now, until)

    def call_at(self, time: float, callback: Callable[[], None]) -> None:
        """Run ``callback()`` at simulated ``time`` (not before now), as an event."""
        self._push(max(time, self._now), "call", None, callback)

    def apply_fault(self, fault: Fault, *, at: float | None = None) -> None:
        """Schedule ``fault`` at ``at`` (default: now), after events already due then."""
        self._check_fault(fault)
        self._push(self._now if at is None else max(at, self._now), "fault", None, fault)

    def submit(
        self,
        node: int,
        op: str,
        value: Any = None,
        *,
        on_done: _Callback | None = None,
        at: float | None = None,
    ) -> int:
        """Send a client request to ``node`` (arriving at ``at``, default now).

        ``on_done`` is called once with the :class:`ClientOutcome`, unless the
        request is :meth:`abandon`-ed first.

        Returns:
            the request id (the core sees it as ``ClientRequest.client``).

        Raises:
            RuntimeError: if ``config.max_pending_requests`` requests are outstanding.
        """
        self._node_id(node)
        if len(self._pending) >= self._config.max_pending_requests:
            raise RuntimeError(
                f"too many outstanding client requests (max {self._config.max_pending_requests})"
            )
        request = self._next_request
        self._next_request += 1
        self._pending[request] = (node, on_done)
        req = ClientRequest(client=request, op=op, value=value)
        self._push(self._now if at is None else max(at, self._now), "client", node, req)
        return request

    def abandon(self, request: int) -> bool:
        """Stop waiting for ``request`` (a client timeout); a later reply is ignored.

        Returns:
            whether the request was still outstanding.
        """
        entry = self._pending.pop(request, None)
        if entry is None:
            return False
        self._log_event("abandon", entry[0], f"request {request}")
        return True

    # ------------------------------------------------------------ internals

    def _node_id(self, node: int) -> int:
        if not (isinstance(node, int) and 0 <= node < self._n):
            raise ValueError(f"no node {node!r} in a cluster of {self._n}")
        return node

    def _check_fault(self, fault: Fault) -> None:
        if isinstance(fault, Partition):
            for group in fault.groups:
                for node in group:
                    self._node_id(node)
        elif isinstance(fault, Cut):
            self._node_id(fault.src)
            self._node_id(fault.dst)
        elif isinstance(fault, Crash | Restart | Pause | Resume):
            self._node_id(fault.node)
        elif isinstance(fault, ClockSkew):
            self._node_id(fault.node)
            if abs(fault.drift) > self._config.max_drift:
                raise ValueError(
                    f"drift must be within ±{self._config.max_drift}, got {fault.drift}"
                )

    def _push(self, time: float, kind: str, node: int | None, payload: Any) -> None:
        heapq.heappush(self._heap, _Event(time, self._seq, kind, node, payload))
        self._seq += 1
        if self._on_push is not None:
            self._on_push()

    def _log_event(self, kind: str, node: int | None, detail: str) -> None:
        entry = LogEntry(self._log_count, self._now, kind, node, detail)
        self._log_count += 1
        self._log.append(entry)
        self._digest.update(entry.canonical().encode())
        self._digest.update(b"\n")
        self._kind_counts[kind] += 1

    def _node_rng(self, node: int) -> random.Random:
        return random.Random(f"{self._seed}:node:{node}:{self._nodes[node].incarnation}")

    def _start_core(self, node: int, core: Core) -> None:
        state = self._nodes[node]

        def clock() -> float:
            return state.offset + (1.0 + state.drift) * self._now

        def persist(data: Any) -> None:
            state.has_storage = True
            state.storage = data
            self._log_event("persist", node, repr(data))

        def on_arm(name: str, delay: float, ticket: int) -> None:
            driver = state.driver
            assert driver is not None
            if driver.timer_count > self._config.max_timers_per_node:
                raise RuntimeError(
                    f"node {node} armed more than {self._config.max_timers_per_node} timers"
                )
            self._push(self._now + delay / (1.0 + state.drift), "timer", node, (name, ticket))

        def on_reply(reply: Reply) -> None:
            detail = f"{reply.client!r} {'ok' if reply.ok else 'fail'} {reply.value!r}"
            self._log_event("reply", node, detail)
            if isinstance(reply.client, int) and self._pending.get(reply.client, (-1,))[0] == node:
                self._resolve(reply.client, "ok" if reply.ok else "fail", reply.value)

        state.driver = NodeDriver(
            core,
            _SimTransport(self, node),
            persist=persist,
            restored=state.storage if state.has_storage else NO_STATE,
            clock=clock,
            rng=self._node_rng(node),
            trace=self._trace,
            projection=self._projection,
            pull=False,
            on_arm=on_arm,
            on_reply=on_reply,
        )
        state.driver.start()

    def _process(self, ev: _Event) -> None:
        self._now = max(self._now, ev.time)
        self._steps += 1
        if ev.kind == "call":
            ev.payload()
        elif ev.kind == "fault":
            self._apply(ev.payload)
        elif ev.kind == "deliver":
            self._deliver(ev)
        elif ev.kind == "timer":
            self._fire_timer(ev)
        elif ev.kind == "client":
            self._client(ev)
        else:  # pragma: no cover - the kinds above are the only ones pushed
            raise AssertionError(f"unknown event kind {ev.kind!r}")

    def _deliver(self, ev: _Event) -> None:
        src, dst, msg, incarnation = ev.payload
        self._in_flight[(src, dst)] -= 1
        if self._in_flight[(src, dst)] == 0:
            del self._in_flight[(src, dst)]
        state = self._nodes[dst]
        if not state.up or state.incarnation != incarnation:
            self._log_event("drop", dst, f"{src}->{dst} crashed {msg!r}")
            return
        if (src, dst) in self._cuts:
            self._log_event("drop", dst, f"{src}->{dst} cut {msg!r}")
            return
        if state.paused:
            self._enqueue(dst, ev)
            return
        self._log_event("deliver", dst, f"{src}->{dst} {msg!r}")
        assert state.driver is not None
        state.driver.deliver(src, msg)

    def _fire_timer(self, ev: _Event) -> None:
        node = ev.node
        assert node is not None
        name, ticket = ev.payload
        state = self._nodes[node]
        driver = state.driver
        if not state.up or driver is None or not driver.timer_armed(name, ticket):
            return  # cancelled, re-armed or lost in a crash: not an event
        if state.paused:
            self._enqueue(node, ev)
            return
        self._log_event("timer", node, name)
        driver.fire_timer(name, ticket)

    def _client(self, ev: _Event) -> None:
        node = ev.node
        assert node is not None
        req: ClientRequest = ev.payload
        request = req.client
        assert isinstance(request, int)
        if request not in self._pending:
            return  # abandoned before it arrived
        state = self._nodes[node]
        if not state.up:
            self._log_event("client", node, f"{request} {req.op} {req.value!r} refused: down")
            self._resolve(request, "fail", "node down")
            return
        if state.paused:
            self._enqueue(node, ev)
            return
        self._log_event("client", node, f"{request} {req.op} {req.value!r}")
        assert state.driver is not None
        state.driver.request(req)

    @staticmethod
    def _describe(ev: _Event) -> str:
        if ev.kind == "deliver":
            src, dst, msg, _incarnation = ev.payload
            return f"{src}->{dst} {msg!r}"
        if ev.kind == "timer":
            return f"timer {ev.payload[0]}"
        return f"client {ev.payload.client}"

    def _enqueue(self, node: int, ev: _Event) -> None:
        state = self._nodes[node]
        if len(state.queue) >= self._config.max_paused_queue:
            self._log_event("overflow", node, f"paused queue full: {self._describe(ev)}")
            if ev.kind == "client":
                self._resolve(ev.payload.client, "info", None)
            return
        self._log_event("queue", node, self._describe(ev))
        state.queue.append(ev)

    def _resolve(self, request: int, status: OutcomeStatus, value: Any) -> None:
        entry = self._pending.pop(request, None)
        if entry is not None and entry[1] is not None:
            entry[1](ClientOutcome(request, status, value))

    def _send(self, src: int, dst: int, msg: Any) -> None:
        self._log_event("send", src, f"{src}->{dst} {msg!r}")
        if (src, dst) in self._cuts:
            self._log_event("drop", src, f"{src}->{dst} cut {msg!r}")
            return
        rng = self._net_rng
        if rng.random() < self._drop:
            self._log_event("drop", src, f"{src}->{dst} loss {msg!r}")
            return
        copies = 2 if rng.random() < self._dup else 1
        for copy in range(copies):
            delay = self._delay.sample(rng)
            if rng.random() < self._reorder:
                delay += rng.uniform(0.0, self._reorder_window)
            if copy:
                self._log_event("dup", src, f"{src}->{dst} {msg!r}")
            if self._in_flight[(src, dst)] >= self._config.max_in_flight_per_link:
                self._log_event("overflow", src, f"{src}->{dst} link full, dropped {msg!r}")
                continue
            self._in_flight[(src, dst)] += 1
            incarnation = self._nodes[dst].incarnation
            self._push(self._now + delay, "deliver", dst, (src, dst, msg, incarnation))

    def _apply(self, fault: Fault) -> None:
        self._fault_counts[fault.kind] += 1
        self._log_event("fault", None, repr(fault))
        if isinstance(fault, Partition):
            group_of: dict[int, int] = {}
            for index, group in enumerate(fault.groups):
                for node in group:
                    group_of[node] = index
            for a in range(self._n):
                for b in range(self._n):
                    if a != b and group_of.get(a, -1 - a) != group_of.get(b, -1 - b):
                        self._cuts.add((a, b))
        elif isinstance(fault, Cut):
            if fault.src != fault.dst:
                self._cuts.add((fault.src, fault.dst))
        elif isinstance(fault, Heal):
            self._cuts.clear()
        elif isinstance(fault, Crash):
            self._crash(fault.node)
        elif isinstance(fault, Restart):
            self._restart(fault.node)
        elif isinstance(fault, Pause):
            state = self._nodes[fault.node]
            if state.up and not state.paused:
                state.paused = True
                self._log_event("pause", fault.node, "")
        elif isinstance(fault, Resume):
            self._resume(fault.node)
        elif isinstance(fault, ClockSkew):
            state = self._nodes[fault.node]
            state.offset, state.drift = fault.offset, fault.drift
        elif isinstance(fault, SetDropRate):
            self._drop = fault.p
        elif isinstance(fault, SetDuplicateRate):
            self._dup = fault.p
        elif isinstance(fault, SetReorderRate):
            self._reorder, self._reorder_window = fault.p, fault.window
        elif isinstance(fault, SetDelay):
            self._delay = fault.dist
        else:  # pragma: no cover - Fault is a closed union
            raise TypeError(f"not a fault: {fault!r}")

    def _crash(self, node: int) -> None:
        state = self._nodes[node]
        if not state.up:
            return
        state.up = False
        state.paused = False
        if state.driver is not None:
            state.driver.stop()
        state.driver = None
        state.incarnation += 1
        self._log_event("crash", node, f"incarnation {state.incarnation - 1} lost")
        while state.queue:
            ev = state.queue.popleft()
            if ev.kind == "deliver":
                self._log_event("drop", node, f"crashed while queued: {self._describe(ev)}")
        lost = [r for r, (n, _) in self._pending.items() if n == node]
        for request in lost:
            self._resolve(request, "info", None)

    def _restart(self, node: int) -> None:
        state = self._nodes[node]
        if state.up:
            return
        core = self._factory(node, self._n)
        state.up = True
        self._log_event("restart", node, f"incarnation {state.incarnation}")
        self._start_core(node, core)

    def _resume(self, node: int) -> None:
        state = self._nodes[node]
        if not (state.up and state.paused):
            return
        state.paused = False
        self._log_event("resume", node, f"{len(state.queue)} queued")
        while state.queue and state.up and not state.paused:
            self._process_queued(state.queue.popleft())

    def _process_queued(self, ev: _Event) -> None:
        if ev.kind == "deliver":
            # Undo the in-flight bookkeeping done when it first arrived.
            src, dst, _msg, _inc = ev.payload
            self._in_flight[(src, dst)] += 1
            self._deliver(ev)
        elif ev.kind == "timer":
            self._fire_timer(ev)
        else:
            self._client(ev)


# ---------------------------------------------------------------- client workload


_OpGenerator: TypeAlias = Callable[[random.Random, int], tuple[str, Any]]


class HistorySink(Protocol):
    """Where a :class:`ClientWorkload` records its history.

    :class:`trio_foundation.verify.history.HistoryRecorder` is one (the
    simulator does not import ``verify``: it only needs these two methods).
    """

    def invoke(self, process: int, f: str, value: Any = None, *, time: float | None = None) -> Any:
        """Record the invocation of ``f`` by ``process``."""
        ...

    def complete(
        self, process: int, type: OutcomeStatus, value: Any = None, *, time: float | None = None
    ) -> Any:
        """Record the completion (``ok``, ``fail`` or ``info``) of ``process``'s operation."""
        ...


@final
class ClientWorkload:
    """Client processes issuing operations against a :class:`Simulation`.

    ``clients`` concurrent processes each loop: think for a while, pick a node at
    random, ``invoke`` an operation in the :class:`HistorySink`, submit it,
    and ``complete`` it as ``ok``/``fail`` from the reply, or ``info`` if the
    node crashed or no reply came within ``timeout``. As in Jepsen, a process
    whose operation ended in ``info`` issues no more: the client continues under
    a fresh process id (``id + clients``). Reads record the value read; other
    operations record their argument.

    Args:
        sim: the simulation to drive (its discrete-event driver or the Trio one).
        recorder: where the history goes.
        clients: concurrent client processes (>= 1).
        ops: total operations to invoke (>= 0).
        gen_op: ``gen_op(rng, n)`` returns the ``n``-th operation ``(f, value)``.
        timeout: seconds of simulated time a client waits for a reply.
        think: the longest pause between a client's operations.
        start: when the first operations are issued.
        no_effect: operations that never change the state (reads); an unknown
            outcome of one is recorded as ``fail`` (it certainly took no effect),
            which spares the checker an open-ended operation and the client a
            new process id.
    """

    def __init__(
        self,
        sim: Simulation,
        recorder: HistorySink,
        *,
        clients: int,
        ops: int,
        gen_op: _OpGenerator,
        timeout: float = 1.0,
        think: float = 0.05,
        start: float = 0.0,
        no_effect: Collection[str] = ("read",),
    ) -> None:
        if clients < 1 or ops < 0 or timeout <= 0 or think < 0:
            raise ValueError(
                f"need clients >= 1, ops >= 0, timeout > 0, think >= 0; got "
                f"{clients}, {ops}, {timeout}, {think}"
            )
        self._sim = sim
        self._recorder = recorder
        self._clients = clients
        self._ops = ops
        self._gen = gen_op
        self._timeout = timeout
        self._think = think
        self._no_effect = frozenset(no_effect)
        self._rng = random.Random(f"{sim.seed}:clients")
        self._issued = 0
        self._completed = 0
        self._process = list(range(clients))
        self._statuses: Counter[str] = Counter()
        for client in range(clients):
            sim.call_at(start + self._rng.uniform(0.0, think), self._issuer(client))

    @property
    def done(self) -> bool:
        """Whether every operation has been invoked and completed."""
        return self._completed >= self._ops

    def statuses(self) -> dict[str, int]:
        """Completed operations by status (``ok``, ``fail``, ``info``)."""
        return {k: self._statuses[k] for k in ("ok", "fail", "info")}

    def _issuer(self, client: int) -> Callable[[], None]:
        return lambda: self._issue(client)

    def _issue(self, client: int) -> None:
        if self._issued >= self._ops:
            return
        index = self._issued
        self._issued += 1
        f, value = self._gen(self._rng, index)
        node = self._rng.randrange(self._sim.nodes)
        process = self._process[client]
        now = self._sim.now
        self._recorder.invoke(process, f, value, time=now)
        finished = False

        def complete(status: OutcomeStatus, result: Any) -> None:
            nonlocal finished
            if finished:
                return
            finished = True
            recorded = result if f == "read" else value
            if status == "info" and f in self._no_effect:
                status, recorded = "fail", None
            elif status == "info":
                recorded = value
            self._recorder.complete(process, status, recorded, time=self._sim.now)
            self._statuses[status] += 1
            self._completed += 1
            if status == "info":
                self._process[client] = process + self._clients
            pause = self._rng.uniform(0.0, self._think)
            self._sim.call_at(self._sim.now + pause, self._issuer(client))

        def on_done(outcome: ClientOutcome) -> None:
            complete(outcome.status, outcome.value)

        request = self._sim.submit(node, f, value, on_done=on_done)

        def on_timeout() -> None:
            if self._sim.abandon(request):
                complete("info", None)

        self._sim.call_at(now + self._timeout, on_timeout)


# ---------------------------------------------------------------- Trio driver


@final
class SimCluster:
    """The Trio face of a :class:`Simulation` (see :func:`open_sim_cluster`).

    Events may also be queued through :attr:`sim` directly (``call_at``,
    ``submit``, a :class:`ClientWorkload`); the dispatcher wakes up for them.
    """

    def __init__(self, sim: Simulation, t0: float) -> None:
        self._sim = sim
        self._t0 = t0
        self._wakeup = trio.Event()
        sim._on_push = lambda: self._wakeup.set()
        send_recv = [trio.open_memory_channel[_Event](0) for _ in range(sim.nodes)]
        ack = [trio.open_memory_channel[None](0) for _ in range(sim.nodes)]
        self._inbox_send = [s for s, _ in send_recv]
        self._inbox_recv = [r for _, r in send_recv]
        self._ack_send = [s for s, _ in ack]
        self._ack_recv = [r for _, r in ack]

    @property
    def sim(self) -> Simulation:
        """The underlying simulation (for inspection: digests, storage, counts)."""
        return self._sim

    def _sim_now(self) -> float:
        return max(self._sim.now, trio.current_time() - self._t0)

    def apply_fault(self, fault: Fault) -> None:
        """Apply ``fault`` now (it is processed before the dispatcher's next wait)."""
        self._sim.apply_fault(fault, at=self._sim_now())

    async def request(self, node: int, op: str, value: Any = None) -> ClientOutcome:
        """Send a client request to ``node`` and wait for its outcome.

        A checkpoint. Returns when the core replies (``ok``/``fail``), the node
        refuses the request because it is down (``fail``), or the node crashes
        with the request outstanding (``info``). Bound the wait with a cancel
        scope (``trio.move_on_after``): if cancelled, the request is abandoned
        (a late reply is ignored), its effect on the cluster is unknown (record
        ``info``), and ``Cancelled`` propagates.

        Raises:
            ValueError: if ``node`` is not in the cluster.
        """
        done = trio.Event()
        outcome: list[ClientOutcome] = []

        def on_done(result: ClientOutcome) -> None:
            outcome.append(result)
            done.set()

        request = self._sim.submit(node, op, value, on_done=on_done, at=self._sim_now())
        try:
            await done.wait()
        finally:
            if not outcome:
                self._sim.abandon(request)
        return outcome[0]

    async def _dispatch(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        task_status.started()
        sim = self._sim
        while True:
            self._wakeup = trio.Event()
            due = sim.next_event_time()
            if due is None:
                await self._wakeup.wait()
                continue
            if trio.current_time() < self._t0 + due:
                with trio.move_on_at(self._t0 + due) as scope:
                    await self._wakeup.wait()
                if not scope.cancelled_caught:
                    continue  # something new was queued: it may be due earlier
            ev = sim._pop()
            if ev.node is None:
                sim._process(ev)
                await trio.lowlevel.checkpoint()
            else:
                await self._inbox_send[ev.node].send(ev)
                await self._ack_recv[ev.node].receive()

    async def _node_task(self, node: int) -> None:
        async for ev in self._inbox_recv[node]:
            self._sim._process(ev)
            await self._ack_send[node].send(None)


@asynccontextmanager
async def open_sim_cluster(
    factory: CoreFactory,
    *,
    nodes: int,
    seed: int,
    config: SimConfig | None = None,
    schedule: Sequence[FaultEvent] = (),
) -> AsyncIterator[SimCluster]:
    """Run a simulated cluster on the Trio clock, inside a nursery this context owns.

    Time 0 of the simulation is the Trio time at entry; use
    ``trio.testing.MockClock(autojump_threshold=0)`` to run it at full speed.
    On exit the dispatcher and node tasks are cancelled; events not yet due are
    discarded.

    Args:
        factory: builds node ``i``'s core as ``factory(i, nodes)``.
        nodes: the cluster size.
        seed: the seed every random choice derives from.
        config: network behaviour and bounds.
        schedule: fault events, at simulated times.

    Yields:
        the :class:`SimCluster`.
    """
    sim = Simulation(factory, nodes=nodes, seed=seed, config=config, schedule=schedule)
    cluster = SimCluster(sim, trio.current_time())
    async with trio.open_nursery() as nursery:
        for node in range(nodes):
            nursery.start_soon(cluster._node_task, node)
        await nursery.start(cluster._dispatch)
        try:
            yield cluster
        finally:
            sim._on_push = None
            nursery.cancel_scope.cancel()
