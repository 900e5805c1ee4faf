"""Stateful test of the real lease-lock cores against the invariants of specs/LeaseLock.tla.

Rules are named after the spec's actions and drive
:class:`~trio_foundation.verify.lease_lock_trace.LeaseLockCluster`, which runs the
real :class:`LockServer`, :class:`LockClient` s and :class:`FencedResource` in the
spec's environment: every message ever sent may be delivered at any time and any
number of times, real time advances in ticks in which each clock advances by
``D - Delta .. D + Delta``, clients crash and the server restarts.

Each ``@invariant`` mirrors the spec invariant of the same name. The
reachability test shows the interesting states happen (two clients contend; a
lease expires on the server and goes to another client; a stale write is
refused), and the broken-variant tests show the invariants catch real bugs.
"""

from __future__ import annotations

import itertools
from typing import ClassVar

import pytest
from hypothesis import HealthCheck, Phase, Verbosity, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from lease_lock_mutants import (
    AmnesiacClient,
    ForgetfulAbortClient,
    NoDriftClient,
    UnfencedResource,
)

from trio_foundation.protocols.lease_lock import (
    AcquireRequest,
    FencedResource,
    Granted,
    LockClient,
    ReleaseRequest,
    ReqId,
)
from trio_foundation.verify.lease_lock_trace import LeaseLockCluster, SpecParams

SERVER = 0
# TTL 12 with D = 2, Delta = 1: drift bound 1/2, client validity 4.
PARAMS = SpecParams(ttl=12, d=2, delta=1, clients=2)
# How often a fault rule that fired actually faults (1 in FAULT_ODDS): crashes
# and restarts must be common enough to happen while a lease is held, rare
# enough that leases live long enough to conflict.
FAULT_ODDS = 3
FAULT = st.sampled_from([False] * (FAULT_ODDS - 1) + [True])
# Each node's clock keeps one pace for the whole run, drawn once: always the
# slowest or the fastest advance the drift bound allows, or any advance at each
# tick. Extreme paces held for many ticks are where the drift arithmetic matters.
PACES = ("slow", "fast", "any")
# How the paces are drawn for a run: the server's clock at one extreme and every
# client's at the other (a lease measured on two clocks that drift apart as far as
# the bound allows, in either direction), or each node's pace drawn on its own.
SKEWS = ("server fast, clients slow", "server slow, clients fast", "independent")
# Swarm testing (Groce et al., ISSTA 2012): each run switches some kinds of step
# off, so that a run without renewals lets leases lapse, a run without crashes
# keeps its clients' history, and so on. Every kind is on in half of the runs.
OPTIONAL = (
    "renew",
    "release",
    "retry",
    "client_crash",
    "server_restart",
    "redeliver",
    "abort",
)


# What follows a client's crash in the same step: nothing; its caller asks for the
# lease again at once (a supervised client restarts and retries); or that, and then
# the messages the network held for the client from before the crash reach the new
# incarnation, in any order (a partition heals, a queue drains: late deliveries that
# a request id from before the crash must not mistake for the answer to the new
# request).
AFTER_CRASH = ("nothing", "acquire", "acquire, held messages")
# The longest lull the pause rule lets pass: enough for a lease of the longest ttl to
# run out on the slowest server clock (TTL 14, advance 1).
PAUSE_TICKS = 15


def _client(node: int, params: SpecParams) -> LockClient:
    return LockClient(node, server=0, max_drift=params.max_drift)


class LeaseLockMachine(RuleBasedStateMachine):
    """The spec's Next relation, on the real cores.

    The search is biased towards the states where lease locks break, without
    knowing any particular bug: rules fire only where they do something (an idle
    client acquires, a holder renews or writes), clocks run at the extremes of
    the drift bound for whole runs, both clients compete, and crashes and server
    restarts are frequent.
    """

    params: ClassVar[SpecParams] = PARAMS
    #: the constants a run may draw (the first is the one the cluster starts with)
    param_choices: ClassVar[tuple[SpecParams, ...]] = (PARAMS,)
    client_factory: ClassVar = staticmethod(_client)
    resource_factory: ClassVar = FencedResource
    seen: ClassVar[set[str]] = set()

    def __init__(self) -> None:
        super().__init__()
        self.cluster = LeaseLockCluster(
            type(self).params,
            client_factory=type(self).client_factory,
            resource_factory=type(self).resource_factory,
        )
        self.delivered: set[int] = set()
        self.pace: dict[int, str] = {}
        self.on: set[str] = set()
        #: per node, how many messages had been sent when it last crashed or restarted
        self.sent_before_crash: dict[int, int] = {}
        #: per client, the first request id of its current acquire attempt
        self.attempt_first: dict[int, ReqId] = {}
        #: per client, the ids of the acquire requests its callers abandoned
        #: (newest last; the client remembers at most ``max_abandoned`` of them)
        self.abandoned: dict[int, list[ReqId]] = {}
        #: (client, token): grants of abandoned requests the client has received
        self.owed_releases: set[tuple[int, int]] = set()

    @initialize(data=st.data())
    def environment(self, data: st.DataObject) -> None:
        """The spec's constants for the run, each node's pace (see SKEWS and PACES)
        and the kinds of step the run uses (see OPTIONAL)."""
        params = data.draw(st.sampled_from(type(self).param_choices), label="params")
        if params != self.cluster.params:
            self.cluster = LeaseLockCluster(
                params,
                client_factory=type(self).client_factory,
                resource_factory=type(self).resource_factory,
            )
        skew = data.draw(st.sampled_from(SKEWS), label="skew")
        for node in sorted(self.cluster.clock):
            if skew == "independent":
                pace = data.draw(st.sampled_from(PACES), label=f"pace of node {node}")
            elif (node == SERVER) == (skew == "server fast, clients slow"):
                pace = "fast"
            else:
                pace = "slow"
            self.pace[node] = pace
        self.on = {kind for kind in OPTIONAL if data.draw(st.booleans(), label=kind)}

    def _pick(self, data: st.DataObject, candidates: list[int], label: str) -> int:
        return data.draw(st.sampled_from(candidates), label=label)

    def _clients(self, *states: str) -> list[int]:
        return [c for c, core in self.cluster.clients.items() if core.state in states]

    def _entitled(self) -> list[int]:
        cluster = self.cluster
        return [c for c, core in cluster.clients.items() if core.entitled(cluster.clock[c])]

    # -- client actions

    @precondition(lambda self: bool(self._clients("idle")))
    @rule(data=st.data())
    def client_acquire(self, data: st.DataObject) -> None:
        """ClientAcquire from idle: a caller asks for the lease."""
        self._acquire(self._pick(data, self._clients("idle"), "idle client"))

    def _acquire(self, c: int) -> None:
        self.cluster.client_acquire(c)
        self.attempt_first[c] = self.cluster.clients[c].last_req

    @precondition(lambda self: "abort" in self.on and bool(self._clients("acquiring")))
    @rule(data=st.data(), fault=FAULT)
    def client_abort(self, data: st.DataObject, fault: bool) -> None:
        """A caller gives up its acquire (cancelled or timed out) with requests in
        flight. Not a spec action: the spec's callers never leave; the grant
        that may still come must be handed back (AbandonedGrantReleased)."""
        if not fault:
            return
        c = self._pick(data, self._clients("acquiring"), "quitter")
        core = self.cluster.clients[c]
        incarnation, first = self.attempt_first[c]
        last = core.last_req[1]
        # not a spec action: the cluster runs the core's abort through its driver
        assert self.cluster.client_abort(c)
        sent = [(incarnation, seq) for seq in range(first, last + 1)]
        kept = (self.abandoned.get(c, []) + sent)[-core.max_abandoned :]
        self.abandoned[c] = kept

    @precondition(lambda self: "retry" in self.on and bool(self._clients("acquiring")))
    @rule(data=st.data(), fault=FAULT)
    def client_acquire_retry(self, data: st.DataObject, fault: bool) -> None:
        """ClientAcquire while acquiring: the retry timer fired (it abandons the
        request in flight)."""
        if fault:
            self.cluster.client_acquire(self._pick(data, self._clients("acquiring"), "retrier"))

    @precondition(lambda self: "renew" in self.on and bool(self._entitled()))
    @rule(data=st.data(), fires=FAULT)
    def client_renew(self, data: st.DataObject, fires: bool) -> None:
        """ClientRenew: the renewal timer fires while the lease is valid (once per
        third of the validity in the real client, so rarer than other steps)."""
        if fires:
            self.cluster.client_renew(self._pick(data, self._entitled(), "renewer"))

    @precondition(lambda self: "release" in self.on and bool(self._clients("held")))
    @rule(data=st.data(), fault=FAULT)
    def client_release(self, data: st.DataObject, fault: bool) -> None:
        """ClientRelease (as rare as a fault: a released lease contends with nobody)."""
        if fault:
            self.cluster.client_release(self._pick(data, self._clients("held"), "releaser"))

    @precondition(lambda self: bool(self._entitled()))
    @rule(data=st.data())
    def client_write(self, data: st.DataObject) -> None:
        self.cluster.client_write(self._pick(data, self._entitled(), "writer"))

    @precondition(lambda self: "client_crash" in self.on)
    @rule(
        c=st.sampled_from((1, 2)), fault=FAULT, after=st.sampled_from(AFTER_CRASH), data=st.data()
    )
    def client_crash(self, c: int, fault: bool, after: str, data: st.DataObject) -> None:
        """ClientCrash, and what may follow it at once (see AFTER_CRASH): the
        restarted client's caller asks for the lease again (ClientAcquire), as a
        supervised client does; and the messages the network held for the client
        from before the crash reach the new incarnation."""
        if not fault:
            return
        self.cluster.client_crash(c)
        self.sent_before_crash[c] = len(self.cluster.msgs)
        self.abandoned.pop(c, None)  # the process that remembered them is gone
        if after == "nothing":
            return
        self._acquire(c)
        held = [i for i in self._stale() if self.cluster.msgs[i].dst == c]
        if after == "acquire, held messages" and held:
            for i in data.draw(st.permutations(held), label="held messages"):
                self._deliver(i)

    @precondition(lambda self: "server_restart" in self.on)
    @rule(fault=FAULT)
    def server_restart(self, fault: bool) -> None:
        if fault:
            self.cluster.server_restart()
            self.sent_before_crash[0] = len(self.cluster.msgs)

    # -- deliveries: ServerOnAcquire, ServerOnRenew, ServerOnRelease, ClientOnGranted,
    #    ClientOnRenewed, ClientOnDenied and ResourceOnWrite, by the message delivered

    def _deliver(self, index: int) -> None:
        self.delivered.add(index)
        msg = self.cluster.msgs[index]
        self.cluster.deliver(index)
        p = msg.payload
        if isinstance(p, Granted) and p.req in self.abandoned.get(msg.dst, ()):
            self.owed_releases.add((msg.dst, p.token))

    @precondition(lambda self: bool(self._clients("idle", "acquiring")))
    @rule(data=st.data())
    def round_trip(self, data: st.DataObject) -> None:
        """ClientAcquire (from idle, or a retry), ServerOnAcquire and the client's
        answer in one step: a fast network, so that a client contends for a lease in
        the few steps a window between two ticks has."""
        cluster = self.cluster
        c = self._pick(data, self._clients("idle", "acquiring"), "round-trip client")
        before = len(cluster.msgs)
        if cluster.clients[c].state == "idle":
            self._acquire(c)
        else:
            cluster.client_acquire(c)  # the retry timer fires: same attempt, new request
        requests = range(before, len(cluster.msgs))
        for i in requests:
            if cluster.msgs[i].dst == SERVER:
                self._deliver(i)
        for i in range(requests.stop, len(cluster.msgs)):
            if cluster.msgs[i].dst == c:
                self._deliver(i)

    @precondition(lambda self: len(self.delivered) < len(self.cluster.msgs))
    @rule()
    def deliver_oldest(self) -> None:
        """The oldest message not yet delivered: the network making progress."""
        self._deliver(min(set(range(len(self.cluster.msgs))) - self.delivered))

    @precondition(lambda self: len(self.delivered) < len(self.cluster.msgs))
    @rule()
    def deliver_newest(self) -> None:
        """The newest message not yet delivered: overtaking older ones (reordering)."""
        self._deliver(max(set(range(len(self.cluster.msgs))) - self.delivered))

    @precondition(lambda self: "redeliver" in self.on and len(self.cluster.msgs) > 0)
    @rule(data=st.data())
    def deliver_any(self, data: st.DataObject) -> None:
        """Any message ever sent, again or late: duplication and delay."""
        self._deliver(data.draw(st.integers(0, len(self.cluster.msgs) - 1), label="message"))

    def _some(self, data: st.DataObject, action: str) -> None:
        indexes = [i for i in range(len(self.cluster.msgs)) if self.cluster.action_of(i) == action]
        if indexes:
            self._deliver(data.draw(st.sampled_from(indexes), label=action))

    def _stale(self) -> list[int]:
        msgs = self.cluster.msgs
        return [i for i in range(len(msgs)) if i < self.sent_before_crash.get(msgs[i].dst, 0)]

    @precondition(lambda self: bool(self._stale()))
    @rule(data=st.data())
    def deliver_stale(self, data: st.DataObject) -> None:
        """A message sent to a node before it crashed or restarted, delivered to its
        new incarnation (a network that held it through the restart)."""
        self._deliver(data.draw(st.sampled_from(self._stale()), label="stale message"))

    @precondition(lambda self: "redeliver" in self.on)
    @rule(data=st.data())
    def client_on_granted(self, data: st.DataObject) -> None:
        """Any grant ever sent, perhaps late or again."""
        self._some(data, "ClientOnGranted")

    @precondition(lambda self: "redeliver" in self.on)
    @rule(data=st.data())
    def resource_on_write(self, data: st.DataObject) -> None:
        """Any write ever sent, perhaps late or again."""
        self._some(data, "ResourceOnWrite")

    # -- time

    def _advances(self, data: st.DataObject) -> dict[int, float]:
        advances = list(self.cluster.params.advances)
        adv = {}
        for node in sorted(self.cluster.clock):
            if not self.cluster.timing(node):
                continue
            pace = self.pace.get(node, "any")
            if pace == "slow":
                adv[node] = advances[0]
            elif pace == "fast":
                adv[node] = advances[-1]
            else:
                adv[node] = data.draw(st.sampled_from(advances), label=f"advance of node {node}")
        return adv

    @rule(data=st.data())
    def tick(self, data: st.DataObject) -> None:
        self.cluster.tick(self._advances(data))

    @precondition(lambda self: self.cluster.timing(SERVER))
    @rule(data=st.data())
    def pause(self, data: st.DataObject) -> None:
        """Tick after tick with nothing else happening (no message delivered, no
        timer but the leases' expiries fired), until the server times nothing: its
        lease and its quiet period, if any, have run out on its clock. A lull in
        which a lease ends of its own accord, in one step rather than the several
        ticks that random steps between ticks rarely leave alone."""
        for _ in range(PAUSE_TICKS):
            if not self.cluster.timing(SERVER):
                return
            self.cluster.tick(self._advances(data))

    # -- the spec's invariants

    @invariant()
    def mutual_exclusion(self) -> None:
        entitled = self.cluster.entitled()
        assert len(entitled) <= 1, f"MutualExclusion violated: clients {entitled} both entitled"

    @invariant()
    def fencing_monotonic(self) -> None:
        log = self.cluster.grant_log
        assert all(a < b for a, b in itertools.pairwise(log)), (
            f"FencingMonotonic violated: grants {log}"
        )

    @invariant()
    def accepted_writes_in_lease_order(self) -> None:
        """The resource never accepts a write sent under an earlier lease than one it
        accepted before: tokens rise in grant order (FencingMonotonic), so the last
        accepted token is the highest ever accepted."""
        res = self.cluster.resource
        assert res.last_accepted == res.highest, (
            f"AcceptedWritesInLeaseOrder violated: accepted {res.last_accepted} after {res.highest}"
        )

    @invariant()
    def token_bound(self) -> None:
        assert "TokenBound" not in self.cluster.violations()

    @invariant()
    def abandoned_grant_released(self) -> None:
        """Not in the spec (its callers never leave): every grant a client received
        for a request its caller had abandoned was answered with a release of that
        token, so the lock does not stay held for nobody until the ttl runs out."""
        released = {
            (m.src, m.payload.token)
            for m in self.cluster.msgs
            if isinstance(m.payload, ReleaseRequest)
        }
        missing = sorted(self.owed_releases - released)
        assert not missing, (
            f"AbandonedGrantReleased violated: grants (client, token) {missing} of"
            " abandoned acquires were kept, not released"
        )

    def teardown(self) -> None:
        cluster = self.cluster
        if cluster.contended:
            type(self).seen.add("contended")
        if cluster.expired_regrant:
            type(self).seen.add("expired_regrant")
        if cluster.stale_write_refused:
            type(self).seen.add("stale_write_refused")
        if self.owed_releases:
            type(self).seen.add("abandoned_grant_released")


# Runs are long enough that leases are granted, renewed, lost and re-granted
# within one run.
STEPS = 100
TestLeaseLock = LeaseLockMachine.TestCase
TestLeaseLock.settings = settings(stateful_step_count=STEPS, deadline=None)


REACHABLE = frozenset(
    {"contended", "expired_regrant", "stale_write_refused", "abandoned_grant_released"}
)


def test_interesting_states_are_reached() -> None:
    """Sometimes-properties: the safety invariants above are not vacuous.

    Searches in batches of 100 runs and stops as soon as every interesting state
    has been seen, giving up after 3,000 runs.
    """
    LeaseLockMachine.seen = set()
    for _batch in range(30):
        run_state_machine_as_test(
            LeaseLockMachine,
            settings=settings(
                max_examples=100,
                stateful_step_count=STEPS,
                deadline=None,
                database=None,
                suppress_health_check=[HealthCheck.too_slow],
            ),
        )
        if LeaseLockMachine.seen >= REACHABLE:
            break
    assert LeaseLockMachine.seen == REACHABLE


# ---------------------------------------------------------------------- broken variants


# The broken cores are searched for under the widest drift bound the spec's
# integer clocks allow (3/4: a tick advances a clock by 1 to 7), where every
# error in the drift arithmetic is largest.
WIDE = SpecParams(ttl=14, d=4, delta=3, clients=2)


class WideMachine(LeaseLockMachine):
    param_choices = (PARAMS, WIDE)


class NoDriftMachine(WideMachine):
    client_factory = staticmethod(
        lambda node, params: NoDriftClient(node, server=0, max_drift=params.max_drift)
    )


class UnfencedMachine(WideMachine):
    resource_factory = UnfencedResource


class AmnesiacMachine(WideMachine):
    client_factory = staticmethod(
        lambda node, params: AmnesiacClient(node, server=0, max_drift=params.max_drift)
    )


class ForgetfulAbortMachine(LeaseLockMachine):
    client_factory = staticmethod(
        lambda node, params: ForgetfulAbortClient(node, server=0, max_drift=params.max_drift)
    )


BROKEN = {
    "NoDriftClient": (NoDriftMachine, "MutualExclusion"),
    "UnfencedResource": (UnfencedMachine, "AcceptedWritesInLeaseOrder"),
    "AmnesiacClient": (AmnesiacMachine, "MutualExclusion"),
    "ForgetfulAbortClient": (ForgetfulAbortMachine, "AbandonedGrantReleased"),
}
# Examples one search may try before it gives up, and how many independent fresh
# searches CI runs before it declares a core uncaught; see docs/verification.md
# for the catch rates this buys (benchmarks/catch_rates_lease_lock.py measures
# the rate of one search; independent searches multiply the miss rates).
SEARCH_EXAMPLES = 300
SEARCHES = 3
SEARCH_STEPS = STEPS


def search(machine: type[LeaseLockMachine], max_examples: int = SEARCH_EXAMPLES) -> str | None:
    """One fresh random search (Hypothesis draws a new seed; no example database).

    Detection only: generation stops at the first failure, and neither targeting
    nor shrinking runs (a targeting pass, which Hypothesis starts halfway through a
    search that has found nothing, may run up to ten times ``max_examples`` while
    its target keeps improving, so a missed search had no bound on its length).
    Returns the failure message, or ``None`` if the search found nothing.
    """
    try:
        run_state_machine_as_test(
            machine,
            settings=settings(
                max_examples=max_examples,
                stateful_step_count=SEARCH_STEPS,
                deadline=None,
                phases=[Phase.generate],
                derandomize=False,
                database=None,
                suppress_health_check=list(HealthCheck),
                print_blob=False,
                verbosity=Verbosity.quiet,
            ),
        )
    except AssertionError as exc:
        return str(exc)
    return None


# Every broken core is searched for afresh (docs/verification.md has the measured
# catch rate of one search for each; CI runs up to SEARCHES of them).
@pytest.mark.parametrize("name", sorted(BROKEN))
@pytest.mark.timeout(900)  # three uncaught searches take minutes on a loaded machine
def test_broken_variant_is_caught(name: str) -> None:
    """The suite fails if fresh random searches do NOT find the broken core's bug."""
    machine, invariant_name = BROKEN[name]
    for _ in range(SEARCHES):
        found = search(machine)
        if found is not None:
            assert invariant_name in found, found
            return
    pytest.fail(f"{name} survived {SEARCHES} fresh searches of {SEARCH_EXAMPLES} runs each")


# The amnesiac client (request ids repeat after a crash) needs a crash, a new
# request and the *old* grant delivered, in that order, before the lease can be
# granted again. Besides the search above, this directed run pins the schedule and
# shows that the real client is immune to it (a regression check, not a search).


def _crash_then_stale_grant(client_factory: object) -> list[str]:
    cluster = LeaseLockCluster(PARAMS, client_factory=client_factory)  # type: ignore[arg-type]

    def deliver(kind: type, to: int | None = None, src: int | None = None) -> None:
        for i, msg in enumerate(cluster.msgs):
            if type(msg.payload) is kind and to in (None, msg.dst) and src in (None, msg.src):
                cluster.deliver(i)
                return
        raise AssertionError(f"no {kind.__name__} message")

    slow_c1 = {0: 3, 1: 1}  # the server's clock runs fast, c1's slow
    cluster.client_acquire(1)
    deliver(AcquireRequest, src=1)  # granted at server time 0, expires at 12
    cluster.tick(slow_c1)
    cluster.tick(slow_c1)
    cluster.client_crash(1)
    cluster.client_acquire(1)  # sent at c1 time 2
    deliver(Granted, to=1)  # the grant from before the crash arrives now
    cluster.tick(slow_c1)
    cluster.tick(slow_c1)  # server time 12: the lease expired
    cluster.client_acquire(2)
    deliver(AcquireRequest, src=2)
    deliver(Granted, to=2)
    return cluster.violations()


def test_amnesiac_client_breaks_mutual_exclusion_in_a_directed_run() -> None:
    assert _crash_then_stale_grant(
        lambda node, p: AmnesiacClient(node, server=0, max_drift=p.max_drift)
    ) == ["MutualExclusion"]
    assert _crash_then_stale_grant(_client) == []
