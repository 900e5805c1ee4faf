"""Lease lock trace validation: the runtime's trace hook → ``specs/LeaseLockTrace.tla``.

:class:`LeaseLockCluster` drives one :class:`~trio_foundation.protocols.lease_lock.
LockServer`, some :class:`~trio_foundation.protocols.lease_lock.LockClient` s and
a :class:`~trio_foundation.protocols.lease_lock.FencedResource` exactly as the
spec's environment does:

* the network keeps every message ever sent, and any of them may be delivered
  at any time, any number of times (loss, duplication, delay, reordering);
* real time advances in ticks; in each tick every node's clock advances by
  ``D - Delta .. D + Delta`` units (bounded drift);
* clients crash (keeping only what they persisted) and the server restarts.

Every node is a :class:`~trio_foundation.runtime.driver.NodeDriver` (the one
interpreter of effects; the cluster is only the spec's network, clocks and
fault actions), and every transition the drivers take is recorded through
their trace hook. The mapping from a recorded
:class:`~trio_foundation.runtime.driver.Transition` to the trace spec is
:func:`effects_of`: the server's ``Persist`` and token-carrying ``Send``
effects *in the order the core emitted them*, which the trace spec replays one
by one, tracking what is durable, and checks ``GrantsDurable`` ("every token
that left the server was durable when it left"). The driver itself executes
``Persist`` first whatever the core emitted, so a core that sends its grant
first is safe under this runtime; the trace check rejects it anyway, because
its ordering duty is the core's (a runtime that executes in emitted order, or
a crash between the two effects elsewhere, would reissue the token).

Each method is named after the spec action it performs and returns whether the
action was enabled. :meth:`LeaseLockCluster.spec_state` maps the cores' state
onto the spec's variables, so a run can be written as a TLA+ trace
(:func:`write_trace_module`) and checked by TLC against the spec
(:func:`check_traces`); the Hypothesis state machine in
``property_tests/test_lease_lock.py`` uses the same cluster and checks the
spec's invariants (:meth:`LeaseLockCluster.violations`) after every step.
"""

from __future__ import annotations

import itertools
import random
import tempfile
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final, final

import attrs

from ...protocols.effects import ClientRequest, Persist, Reply, Send
from ...protocols.lease_lock import (
    EXPIRE_TIMER,
    RENEW_TIMER,
    RETRY_TIMER,
    AcquireRequest,
    Denied,
    FencedResource,
    Granted,
    LockClient,
    LockServer,
    ReleaseRequest,
    Renewed,
    RenewRequest,
    ReqId,
    ServerDurable,
    WriteRequest,
)
from ...runtime.driver import NO_STATE, NodeDriver, Transition
from ...runtime.transport import Envelope
from ..tla_values import Record, to_tla
from ..tlc import TLCResult, TLCStatus, run_tlc

__all__ = [
    "ACTIONS",
    "LeaseLockCluster",
    "SpecParams",
    "TraceCheck",
    "TraceStep",
    "check_trace_module",
    "check_traces",
    "effects_of",
    "check_record_traces",
    "random_trace",
    "run_trace_check",
    "trace_config",
    "trace_module",
    "traces_tla",
    "write_trace_module",
]

SERVER: Final = 0
MAX_RECORDED: Final = 10_000
"""Transitions a :class:`LeaseLockCluster` keeps until they are taken."""

ACTIONS: Final = (
    "ClientAcquire",
    "ClientRenew",
    "ClientRelease",
    "ClientWrite",
    "ClientCrash",
    "ClientOnGranted",
    "ClientOnRenewed",
    "ClientOnDenied",
    "ServerOnAcquire",
    "ServerOnRenew",
    "ServerOnRelease",
    "ServerRestart",
    "ResourceOnWrite",
    "Tick",
)


@final
@attrs.frozen
class SpecParams:
    """The spec's constants, which the cores' parameters are derived from.

    Attributes:
        ttl: ``TTL``, the lease duration in server-local units.
        d: ``D``, the nominal clock advance per tick.
        delta: ``Delta``, the maximal deviation per tick; drift bound is ``delta / d``.
        clients: number of clients (named ``c1``, ``c2``, ...).
    """

    ttl: int = 3
    d: int = 2
    delta: int = 1
    clients: int = 2

    def __attrs_post_init__(self) -> None:
        if self.ttl <= 0 or self.d <= 0 or not 0 <= self.delta < self.d:
            raise ValueError(f"need ttl > 0, d > 0 and 0 <= delta < d, got {self}")
        if self.clients < 1:
            raise ValueError(f"clients must be >= 1, got {self.clients}")
        spec_validity = self.ttl * (self.d - self.delta) // (self.d + self.delta)
        if LockClient(1, max_drift=self.max_drift).validity(self.ttl) != spec_validity:
            raise ValueError(
                f"{self}: the client's validity is not the integer the spec computes; "
                "choose constants for which ttl*(d-delta) is a multiple of d+delta"
            )

    @property
    def max_drift(self) -> float:
        """The drift bound ``Rho = Delta / D``."""
        return self.delta / self.d

    @property
    def validity(self) -> int:
        """The spec's ``Validity``."""
        return self.ttl * (self.d - self.delta) // (self.d + self.delta)

    @property
    def advances(self) -> range:
        """The possible clock advances in one tick."""
        return range(self.d - self.delta, self.d + self.delta + 1)


@attrs.frozen
class _Msg:
    src: int
    dst: int
    payload: Any


@final
class _SpecNetwork:
    """A node's transport in the spec's world: a sent message joins the set of all messages."""

    def __init__(self, cluster: LeaseLockCluster, node: int) -> None:
        self._cluster = cluster
        self._node = node

    @property
    def node_id(self) -> int:
        return self._node

    def send_nowait(self, dst: int, msg: Any) -> bool:
        self._cluster._send(_Msg(self._node, dst, msg))
        return True

    async def receive(self) -> Envelope:
        raise RuntimeError("the trace cluster pushes messages to its drivers")


def _ignore_reply(reply: Reply) -> None:
    """The spec's clients have no callers waiting for replies."""


def _no_timer_task(name: str, delay: float, ticket: int) -> None:
    """The cluster fires timers itself (spec actions and ticks), never on a clock."""


def effects_of(transition: Transition) -> tuple[Record, ...]:
    """The lease lock's trace mapping: what of ``transition`` the trace spec replays.

    For the server (node 0): its ``Persist(ServerDurable(token, ...))`` and the
    ``Send`` s that carry a token (``Granted``, ``Renewed``), in the order the
    core emitted them, as ``[kind |-> "persist"/"send", token |-> t]``. Other
    nodes' transitions map to nothing (a client persists only its incarnation,
    which no ordering duty involves).
    """
    if transition.node != SERVER:
        return ()
    records = []
    for eff in transition.effects:
        if isinstance(eff, Persist) and isinstance(eff.data, ServerDurable):
            records.append(Record(kind="persist", token=eff.data.token))
        elif isinstance(eff, Send) and isinstance(eff.msg, Granted | Renewed):
            records.append(Record(kind="send", token=eff.msg.token))
    return tuple(records)


@final
class LeaseLockCluster:
    """Real lease-lock cores in the spec's environment; see the module docstring.

    Args:
        params: the spec's constants.
        client_factory: builds a client core (``node`` → core); tests pass
            deliberately broken subclasses here.
        resource_factory: builds the fenced resource core.
        server_factory: builds the server core.
    """

    def __init__(
        self,
        params: SpecParams = SpecParams(),
        *,
        client_factory: Callable[[int, SpecParams], LockClient] | None = None,
        resource_factory: Callable[[int], FencedResource] = FencedResource,
        server_factory: Callable[[int, SpecParams], LockServer] | None = None,
    ) -> None:
        self.params = params
        self._make_client = client_factory or (
            lambda node, p: LockClient(node, server=SERVER, max_drift=p.max_drift)
        )
        self._make_server = server_factory or (lambda node, p: LockServer(node, max_ttl=p.ttl))
        self._make_resource = resource_factory
        self.client_ids = tuple(range(1, params.clients + 1))
        self.resource_id = params.clients + 1
        nodes = (SERVER, *self.client_ids, self.resource_id)
        self.clock: dict[int, float] = dict.fromkeys(nodes, 0.0)
        self._persisted: dict[int, Any] = {}
        self._drivers: dict[int, NodeDriver] = {}
        #: the transitions recorded through the drivers' trace hook since the last
        #: :meth:`take_transitions`; bounded (the oldest are dropped beyond
        #: MAX_RECORDED, which a caller taking them after every step never reaches)
        self.transitions: deque[Transition] = deque(maxlen=MAX_RECORDED)
        #: every message ever sent, in send order, without duplicates (the spec's msgs)
        self.msgs: list[_Msg] = []
        self._msg_keys: dict[Record, int] = {}
        self._req_rank: dict[int, dict[ReqId, int]] = {c: {} for c in self.client_ids}
        self.grant_log: list[int] = []
        self.expired_regrant = False
        self.stale_write_refused = False
        self.contended = False
        self.server = self._make_server(SERVER, params)
        self.clients: dict[int, LockClient] = {}
        self.resource = self._make_resource(self.resource_id)
        self._start(SERVER, self.server)
        for c in self.client_ids:
            self.clients[c] = self._make_client(c, params)
            self._start(c, self.clients[c])
        self._start(self.resource_id, self.resource)

    # ------------------------------------------------------------------ plumbing

    def name(self, client: int) -> str:
        """The spec's name of ``client`` (``c1``, ``c2``, ...)."""
        return f"c{client}"

    def _start(self, node: int, core: Any) -> None:
        old = self._drivers.get(node)
        if old is not None:
            old.stop()  # a crash: its timers and volatile state are gone

        def persist(data: Any) -> None:
            self._persisted[node] = data

        driver = NodeDriver(
            core,
            _SpecNetwork(self, node),
            persist=persist,
            restored=self._persisted.get(node, NO_STATE),
            clock=lambda: self.clock[node],
            rng=random.Random(node),
            trace=self.transitions.append,
            pull=False,
            on_arm=_no_timer_task,
            on_reply=_ignore_reply,
        )
        self._drivers[node] = driver
        driver.start()

    def take_transitions(self) -> list[Transition]:
        """The transitions recorded since the last call (and forget them)."""
        taken = list(self.transitions)
        self.transitions.clear()
        return taken

    def _send(self, msg: _Msg) -> None:
        if msg.src == self.resource_id:
            return  # write acknowledgements are outside the spec
        if isinstance(msg.payload, Granted):
            self.grant_log.append(msg.payload.token)
        if isinstance(msg.payload, (AcquireRequest, RenewRequest)):
            ranks = self._req_rank[msg.src]
            ranks.setdefault(msg.payload.req, len(ranks) + 1)
        key = self._spec_msg(msg)
        if key not in self._msg_keys:
            self._msg_keys[key] = len(self.msgs)
            self.msgs.append(msg)

    def _rank(self, client: int, req: ReqId | None) -> int:
        if req is None:
            return 0
        return self._req_rank[client].get(req, 0)

    def _client_of(self, msg: _Msg) -> int:
        return msg.dst if msg.src == SERVER else msg.src

    def _spec_msg(self, msg: _Msg) -> Record:
        p = msg.payload
        c = self.name(self._client_of(msg))
        if isinstance(p, AcquireRequest):
            return Record(type="acquire", **{"from": c}, req=self._rank(msg.src, p.req))
        if isinstance(p, RenewRequest):
            return Record(
                type="renew", **{"from": c}, req=self._rank(msg.src, p.req), token=p.token
            )
        if isinstance(p, ReleaseRequest):
            return Record(type="release", **{"from": c}, token=p.token)
        if isinstance(p, (Granted, Renewed)):
            kind = "granted" if isinstance(p, Granted) else "renewed"
            return Record(type=kind, to=c, req=self._rank(msg.dst, p.req), token=p.token)
        if isinstance(p, Denied):
            return Record(type="denied", to=c, req=self._rank(msg.dst, p.req))
        if isinstance(p, WriteRequest):
            return Record(type="write", **{"from": c}, token=p.token)
        raise TypeError(f"message outside the spec: {p!r}")

    # ------------------------------------------------------------------ spec actions

    def client_acquire(self, c: int) -> bool:
        """``ClientAcquire(c)``: a new acquire from idle, or a retry while acquiring."""
        core = self.clients[c]
        if core.state == "idle":
            request = ClientRequest(("acquire", c), "acquire", self.params.ttl)
            self._drivers[c].request(request)
        elif core.state == "acquiring":
            return self._drivers[c].fire_timer(RETRY_TIMER)
        else:
            return False
        return True

    def client_renew(self, c: int) -> bool:
        """``ClientRenew(c)``: the renewal timer fires while the lease is valid."""
        core = self.clients[c]
        if not core.entitled(self.clock[c]):
            return False
        return self._drivers[c].fire_timer(RENEW_TIMER)

    def client_release(self, c: int) -> bool:
        """``ClientRelease(c)``."""
        core = self.clients[c]
        if core.state != "held":
            return False
        self._drivers[c].request(ClientRequest(("release", c), "release"))
        return True

    def client_abort(self, c: int) -> bool:
        """A caller gives up its acquire (not a spec action: the spec's callers never leave).

        Runs the client core's ``abort`` request through its driver; returns
        whether the client was acquiring.
        """
        if self.clients[c].state != "acquiring":
            return False
        self._drivers[c].request(ClientRequest(("abort", c), "abort"))
        return True

    def client_write(self, c: int) -> bool:
        """``ClientWrite(c)``: an entitled client sends a write to the fenced resource."""
        core = self.clients[c]
        if not core.entitled(self.clock[c]) or core.lease is None:
            return False
        self._send(_Msg(c, self.resource_id, WriteRequest(core.lease.token, c)))
        return True

    def client_crash(self, c: int) -> bool:
        """``ClientCrash(c)``: the client loses all but its persisted incarnation."""
        self.clients[c] = self._make_client(c, self.params)
        self._start(c, self.clients[c])
        return True

    def server_restart(self) -> bool:
        """``ServerRestart``: the server loses all but its persisted token."""
        self.server = self._make_server(SERVER, self.params)
        self._start(SERVER, self.server)
        return True

    def action_of(self, index: int) -> str:
        """The spec action that delivering ``msgs[index]`` performs."""
        p = self.msgs[index].payload
        return {
            AcquireRequest: "ServerOnAcquire",
            RenewRequest: "ServerOnRenew",
            ReleaseRequest: "ServerOnRelease",
            Granted: "ClientOnGranted",
            Renewed: "ClientOnRenewed",
            Denied: "ClientOnDenied",
            WriteRequest: "ResourceOnWrite",
        }[type(p)]

    def deliver(self, index: int) -> None:
        """Deliver (again) the message ``msgs[index]`` to its destination."""
        msg = self.msgs[index]
        if msg.dst == self.resource_id:
            before = self.resource.refused
            self._drivers[msg.dst].deliver(msg.src, msg.payload)
            self.stale_write_refused |= self.resource.refused > before
            return
        if msg.dst == SERVER:
            prior = self.server.holder
            grants = len(self.grant_log)
            self._drivers[SERVER].deliver(msg.src, msg.payload)
            if len(self.grant_log) > grants and prior not in (None, msg.src):
                self.expired_regrant = True
            return
        self._drivers[msg.dst].deliver(msg.src, msg.payload)
        states = [core.state for core in self.clients.values()]
        if "held" in states and "acquiring" in states:
            self.contended = True

    def timing(self, node: int) -> bool:
        """Whether ``node``'s clock times anything (the spec's ``Timing``)."""
        if node == SERVER:
            now = self.clock[SERVER]
            return self.server.expiry > now or self.server.quiet_until > now
        if node in self.clients:
            return self.clients[node].state != "idle"
        return False

    def tick(self, advance: Mapping[int, float]) -> None:
        """``Tick``: every clock advances; leases whose deadline passed lapse.

        Args:
            advance: per node, the local advance (each in ``params.advances``);
                nodes not named advance by ``D``.
        """
        for node in self.clock:
            step = advance.get(node, self.params.d)
            if step not in self.params.advances:
                raise ValueError(f"advance {step} of node {node} outside {self.params.advances}")
            self.clock[node] += step
        for c in self.clients:
            driver = self._drivers[c]
            due = driver.timers().get(EXPIRE_TIMER)
            if due is not None and due <= self.clock[c]:
                driver.fire_timer(EXPIRE_TIMER)

    # ------------------------------------------------------------------ observation

    def spec_state(self) -> Record:
        """The spec's variables, computed from the cores' state."""
        v = self.params.validity
        srv, now_s = self.server, self.clock[SERVER]
        state: dict[str, Any] = {}
        for c, core in self.clients.items():
            now = self.clock[c]
            name = self.name(c)
            held = core.state == "held" and core.lease is not None
            acq = core.acquire_sent_at
            renewal = core.renewal
            state.setdefault("srvLastReq", {})[name] = self._rank(c, srv.last_req(c))
            state.setdefault("cState", {})[name] = core.state
            state.setdefault("cReq", {})[name] = len(self._req_rank[c])
            state.setdefault("cAge", {})[name] = (
                int(min(v, now - acq)) if core.state == "acquiring" and acq is not None else 0
            )
            state.setdefault("cToken", {})[name] = core.lease.token if held and core.lease else 0
            state.setdefault("cRemaining", {})[name] = (
                int(max(0.0, core.lease.deadline - now)) if held and core.lease else 0
            )
            state.setdefault("cRenewReq", {})[name] = (
                self._rank(c, renewal[0]) if held and renewal else 0
            )
            state.setdefault("cRenewAge", {})[name] = (
                int(min(v, now - renewal[1])) if held and renewal else 0
            )
        return Record(
            srvHolder="None" if srv.holder is None else self.name(srv.holder),
            srvToken=srv.token,
            srvRemaining=int(max(0.0, srv.expiry - now_s)),
            srvQuiet=int(max(0.0, srv.quiet_until - now_s)),
            srvLastReq=Record(state["srvLastReq"]),
            cState=Record(state["cState"]),
            cReq=Record(state["cReq"]),
            cAge=Record(state["cAge"]),
            cToken=Record(state["cToken"]),
            cRemaining=Record(state["cRemaining"]),
            cRenewReq=Record(state["cRenewReq"]),
            cRenewAge=Record(state["cRenewAge"]),
            msgs=frozenset(self._msg_keys),
            resHighest=self.resource.highest,
            resRejected=self.stale_write_refused,
            grantLog=tuple(self.grant_log),
        )

    def entitled(self) -> list[int]:
        """Clients entitled to act on the resource now."""
        return [c for c, core in self.clients.items() if core.entitled(self.clock[c])]

    def violations(self) -> list[str]:
        """The spec's safety invariants that the current state breaks, by name."""
        bad = []
        if len(self.entitled()) > 1:
            bad.append("MutualExclusion")
        if any(a >= b for a, b in itertools.pairwise(self.grant_log)):
            bad.append("FencingMonotonic")
        # AcceptedWritesInLeaseOrder: tokens rise in grant order (FencingMonotonic),
        # so "in lease order" is "never a token below the highest accepted before"
        if self.resource.last_accepted != self.resource.highest:
            bad.append("AcceptedWritesInLeaseOrder")
        if any(
            core.lease is not None and core.lease.token > self.server.token
            for core in self.clients.values()
        ):
            bad.append("TokenBound")
        return bad


# ---------------------------------------------------------------------- traces


@final
@attrs.frozen
class TraceStep:
    """One step of a trace: the spec action taken and the spec state after it.

    Attributes:
        action: the spec action.
        state: the spec's variables after it.
        effects: what :func:`effects_of` maps the step's recorded transitions
            to, in the order the cores emitted them (replayed one by one by
            the trace spec).
    """

    action: str
    state: Record
    effects: tuple[Record, ...] = ()


def random_trace(
    seed: int,
    steps: int = 60,
    params: SpecParams = SpecParams(),
    cluster: LeaseLockCluster | None = None,
) -> list[TraceStep]:
    """A random run of the real cores, as a trace of spec states.

    Actions are drawn with weights that favour progress (acquire, deliver,
    tick) so that traces reach grants, renewals, expiries and stale writes.
    Steps that change no spec variable (e.g. a duplicate delivery that is
    ignored) are left out: they are stuttering steps.

    Args:
        seed: the run's seed; the same seed gives the same trace.
        steps: the number of (non-stuttering) steps to take.
        params: the spec's constants.
        cluster: a cluster to drive (default: a correct one from ``params``).
    """
    rng = random.Random(seed)
    sim = cluster or LeaseLockCluster(params)
    trace = [TraceStep("Init", sim.spec_state(), _mapped(sim.take_transitions()))]
    delivered: set[int] = set()
    attempts = 0
    while len(trace) <= steps and attempts < steps * 50:
        attempts += 1
        before = trace[-1].state
        c = rng.choice(sim.client_ids)
        core = sim.clients[c]
        fresh = [i for i in range(len(sim.msgs)) if i not in delivered]
        roll = rng.random()
        if fresh and roll < 0.45:
            # Mostly deliver something new, in a random order; sometimes a duplicate.
            index = rng.choice(fresh) if rng.random() < 0.5 else fresh[0]
            delivered.add(index)
            action, ok = sim.action_of(index), True
            sim.deliver(index)
        elif roll < 0.5 and sim.msgs:
            index = rng.randrange(len(sim.msgs))
            action, ok = sim.action_of(index), True
            sim.deliver(index)
        elif roll < 0.62:
            if core.state == "acquiring" and rng.random() < 0.7:
                continue  # let the outstanding request be answered first
            action, ok = "ClientAcquire", sim.client_acquire(c)
        elif roll < 0.68:
            action, ok = "ClientRenew", sim.client_renew(c)
        elif roll < 0.72:
            action, ok = "ClientRelease", sim.client_release(c)
        elif roll < 0.8:
            action, ok = "ClientWrite", sim.client_write(c)
        elif roll < 0.82:
            action, ok = "ClientCrash", sim.client_crash(c)
        elif roll < 0.83:
            action, ok = "ServerRestart", sim.server_restart()
        else:
            adv = {n: rng.choice(sim.params.advances) for n in sim.clock if sim.timing(n)}
            action, ok = "Tick", True
            sim.tick(adv)
        after = sim.spec_state()
        effects = _mapped(sim.take_transitions())
        if ok and after != before:
            trace.append(TraceStep(action, after, effects))
    return trace


def _mapped(transitions: Sequence[Transition]) -> tuple[Record, ...]:
    return tuple(record for t in transitions for record in effects_of(t))


def _data_module(traces: Sequence[Sequence[TraceStep]]) -> str:
    body = ",\n".join(
        "  <<"
        + ",\n    ".join(
            to_tla(Record(action=step.action, state=step.state, effects=step.effects))
            for step in trace
        )
        + ">>"
        for trace in traces
    )
    return (
        "---- MODULE LeaseLockTraceData ----\n"
        "EXTENDS Sequences\n"
        "\\* Generated by trio_foundation.verify.lease_lock_trace; do not edit.\n"
        f"Traces == <<\n{body}\n>>\n"
        "====\n"
    )


def trace_module(traces: Sequence[Sequence[TraceStep]]) -> str:
    """The text of the module ``LeaseLockTraceData`` holding ``traces``."""
    return _data_module(traces)


def write_trace_module(traces: Sequence[Sequence[TraceStep]], path: Path) -> None:
    """Write ``traces`` as the module ``LeaseLockTraceData`` at ``path``."""
    path.write_text(_data_module(traces), encoding="utf-8")


def trace_config(params: SpecParams) -> str:
    """The TLC configuration checking traces recorded with ``params``."""
    clients = ", ".join(f"c{i}" for i in range(1, params.clients + 1))
    return (
        "SPECIFICATION TraceSpec\n"
        "CONSTANTS\n"
        f"    Clients = {{{clients}}}\n"
        "    None = None\n"
        f"    TTL = {params.ttl}\n"
        f"    D = {params.d}\n"
        f"    Delta = {params.delta}\n"
        "    MaxReq = 1000000\n"
        "    MaxToken = 1000000\n"
        '    Variant = "correct"\n'
        "INVARIANTS\n"
        "    MutualExclusion\n"
        "    IntervalsFollowGrants\n"
        "    FencingMonotonic\n"
        "    AcceptedWritesInLeaseOrder\n"
        "    AcceptedWritesFromHolders\n"
        "    TokenBound\n"
        "    GrantsDurable\n"
    )


@final
@attrs.frozen
class TraceCheck:
    """The verdict of :func:`check_traces`.

    Attributes:
        accepted: every trace is a behaviour of the spec.
        traces: how many traces were checked (``None`` when checking a module as text).
        steps: how many steps they hold in all (likewise).
        failed_trace: the 1-based index of a trace that could not be followed.
        failed_step: the 1-based position in it of the last state that was matched.
        failed_action: the action logged for the step that could not be taken, or
            (when an invariant was violated) for the step that violated it.
        tlc: TLC's result.
        violated: the LeaseLock safety invariant the trace violated, if it was
            followed but broke one (the trace config checks them over the
            observer history the spec computes along the trace).
    """

    accepted: bool
    traces: int | None
    steps: int | None
    failed_trace: int | None
    failed_step: int | None
    failed_action: str | None
    tlc: TLCResult
    violated: str | None = None


def run_trace_check(
    name: str,
    config_text: str,
    module_text: str,
    *,
    specs_dir: Path,
    workers: int,
    timeout: float,
    counts: tuple[int, int] | None,
    action_at: Callable[[int, int], str | None],
) -> TraceCheck:
    """Run TLC on ``specs_dir/NAME.tla`` over a trace-data module; the shared
    plumbing of every trace validation (lease lock, Raft, contract-net).

    Args:
        name: the trace spec's module, e.g. ``"RaftTrace"``; the data module is
            ``NAMEData.tla`` (``module_text``) and the config ``config_text``.
        counts: ``(traces, records)`` when the traces are known, else ``None``.
        action_at: the action logged for record ``index`` (0-based) of trace
            ``tr`` (1-based), or ``None``; names the failing record's action.

    A trace the spec cannot follow is a deadlock of the trace spec: ``pos`` is
    the last record matched and record ``pos + 1`` could not be taken. A trace
    it follows while breaking an invariant stops at that record ``pos``.

    Raises:
        VerificationError: TLC did not run to a verdict (no Java, a parse
            error, the timeout).
    """
    from ..._errors import VerificationError

    with tempfile.TemporaryDirectory(prefix=f"{name.lower()}-") as tmp:
        config = Path(tmp) / f"{name}.cfg"
        config.write_text(config_text, encoding="utf-8")
        result = run_tlc(
            specs_dir / f"{name}.tla",
            config,
            workers=workers,
            timeout=timeout,
            extra_files={f"{name}Data.tla": module_text},
        )
    count, steps = counts if counts is not None else (None, None)
    if result.status is TLCStatus.OK:
        return TraceCheck(True, count, steps, None, None, None, result)
    if result.status in (TLCStatus.DEADLOCK, TLCStatus.INVARIANT_VIOLATED):
        violated = result.status is TLCStatus.INVARIANT_VIOLATED
        tr = pos = None
        action = None
        if result.counterexample:
            last = result.counterexample[-1].state
            found_tr, found_pos = last.get("tr"), last.get("pos")
            if isinstance(found_tr, int) and isinstance(found_pos, int):
                tr, pos = found_tr, found_pos
                # deadlock: records 1..pos matched, record pos + 1 could not be taken;
                # violation: record pos (or one of its effects) broke the invariant
                action = action_at(tr, pos - 1 if violated else pos)
        return TraceCheck(
            False, count, steps, tr, pos, action, result, result.violated if violated else None
        )
    raise VerificationError(
        f"trace check did not run: {result.status.name.lower()}: {result.error_message}"
    )


def traces_tla(traces: Sequence[Sequence[Record]]) -> str:
    """The body of a trace-data module's ``Traces == <<...>>``: one TLA+ sequence of
    records per trace (shared by the record-based trace validations)."""
    return ",\n".join(
        "  <<" + ",\n    ".join(to_tla(record) for record in trace) + ">>" for trace in traces
    )


def check_record_traces(
    name: str,
    config_text: str,
    module_text: str,
    *,
    specs_dir: Path,
    workers: int,
    timeout: float,
    traces: Sequence[Sequence[Record]] | None,
) -> TraceCheck:
    """:func:`run_trace_check` for traces whose records log their spec action in the
    field ``action`` (Raft, contract-net, auctions).

    ``traces``, when given, are the traces ``module_text`` holds: they count the
    records and name the failing record's action (``None``: neither is known).
    """

    def action_at(tr: int, index: int) -> str | None:
        if traces is not None and 0 <= index < len(traces[tr - 1]):
            found = traces[tr - 1][index]["action"]
            return found if isinstance(found, str) else None
        return None

    return run_trace_check(
        name,
        config_text,
        module_text,
        specs_dir=specs_dir,
        workers=workers,
        timeout=timeout,
        counts=None if traces is None else (len(traces), sum(len(t) for t in traces)),
        action_at=action_at,
    )


def check_traces(
    traces: Sequence[Sequence[TraceStep]],
    params: SpecParams = SpecParams(),
    *,
    specs_dir: Path,
    workers: int = 1,
    timeout: float = 300,
) -> TraceCheck:
    """Ask TLC whether each trace is a behaviour of ``LeaseLock``.

    All traces are checked in one TLC run (one JVM start). A trace that
    cannot be followed shows up as a deadlock of ``LeaseLockTrace`` at the
    step where the implementation did something the spec does not allow; a
    trace the spec can follow but whose observer history (computed by the
    spec along the trace) breaks a safety invariant is rejected too, naming it
    (:attr:`TraceCheck.violated`).

    Raises:
        ValueError: no traces, or an empty one.
        VerificationError: Java or TLC is missing, or TLC could not run the check.
    """
    if not traces or any(not t for t in traces):
        raise ValueError("need at least one non-empty trace")
    return check_trace_module(
        _data_module(traces),
        params,
        specs_dir=specs_dir,
        workers=workers,
        timeout=timeout,
        traces=traces,
    )


def check_trace_module(
    module_text: str,
    params: SpecParams = SpecParams(),
    *,
    specs_dir: Path,
    workers: int = 1,
    timeout: float = 300,
    traces: Sequence[Sequence[TraceStep]] | None = None,
) -> TraceCheck:
    """Like :func:`check_traces`, for the text of a ``LeaseLockTraceData`` module
    (e.g. one written by :func:`write_trace_module` and edited by hand).

    ``traces``, when given, are the traces the module holds; they let the verdict
    name the action that could not be taken and count steps.
    """

    def action_at(tr: int, index: int) -> str | None:
        if traces is not None and 0 <= index < len(traces[tr - 1]):
            return traces[tr - 1][index].action
        return None

    return run_trace_check(
        "LeaseLockTrace",
        trace_config(params),
        module_text,
        specs_dir=specs_dir,
        workers=workers,
        timeout=timeout,
        counts=None if traces is None else (len(traces), sum(len(t) for t in traces)),
        action_at=action_at,
    )
