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
from hypothesis import HealthCheck, Phase, settings, target
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from lease_lock_mutants import AmnesiacClient, NoDriftClient, UnfencedResource

from trio_foundation.protocols.lease_lock import (
    AcquireRequest,
    FencedResource,
    Granted,
    LockClient,
)
from trio_foundation.verify.lease_lock_trace import LeaseLockCluster, SpecParams

# TTL 12 with D = 2, Delta = 1: drift bound 1/2, client validity 4.
PARAMS = SpecParams(ttl=12, d=2, delta=1, clients=2)
CLIENTS = st.sampled_from((1, 2))
FAULT_ODDS = 8
FAULT = st.sampled_from([False] * (FAULT_ODDS - 1) + [True])
TIMER = st.sampled_from([False, False, True])


def _client(node: int, params: SpecParams) -> LockClient:
    return LockClient(node, server=0, max_drift=params.max_drift)


class LeaseLockMachine(RuleBasedStateMachine):
    """The spec's Next relation, on the real cores."""

    params: ClassVar[SpecParams] = PARAMS
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
        self.dangling = 0.0

    # -- client actions

    @rule(c=CLIENTS)
    def client_acquire(self, c: int) -> None:
        """ClientAcquire from idle: a caller asks for the lease."""
        if self.cluster.clients[c].state == "idle":
            self.cluster.client_acquire(c)

    @rule(c=CLIENTS, fault=FAULT)
    def client_acquire_retry(self, c: int, fault: bool) -> None:
        """ClientAcquire while acquiring: the retry timer fired (rarer: it abandons
        the request in flight)."""
        if fault and self.cluster.clients[c].state == "acquiring":
            self.cluster.client_acquire(c)

    @rule(c=CLIENTS, fires=TIMER)
    def client_renew(self, c: int, fires: bool) -> None:
        """ClientRenew: the renewal timer fires (once per third of the validity, so
        rarer than deliveries)."""
        if fires:
            self.cluster.client_renew(c)

    @rule(c=CLIENTS)
    def client_release(self, c: int) -> None:
        self.cluster.client_release(c)

    @rule(c=CLIENTS)
    def client_write(self, c: int) -> None:
        self.cluster.client_write(c)

    # Crashes are rarer than ordinary steps (a fault happens on one draw in
    # FAULT_ODDS); with every rule equally likely, a node would crash every few
    # steps and leases would rarely live long enough to conflict.

    @rule(c=CLIENTS, fault=FAULT)
    def client_crash(self, c: int, fault: bool) -> None:
        if fault:
            self.cluster.client_crash(c)

    @rule(fault=FAULT)
    def server_restart(self, fault: bool) -> None:
        if fault:
            self.cluster.server_restart()

    # -- deliveries: ServerOnAcquire, ServerOnRenew, ServerOnRelease, ClientOnGranted,
    #    ClientOnRenewed, ClientOnDenied and ResourceOnWrite, by the message delivered

    def _deliver(self, index: int) -> None:
        self.delivered.add(index)
        self.cluster.deliver(index)

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

    @precondition(lambda self: len(self.cluster.msgs) > 0)
    @rule(data=st.data())
    def deliver_any(self, data: st.DataObject) -> None:
        """Any message ever sent, again or late: duplication and delay."""
        self._deliver(data.draw(st.integers(0, len(self.cluster.msgs) - 1), label="message"))

    def _some(self, data: st.DataObject, action: str) -> None:
        indexes = [i for i in range(len(self.cluster.msgs)) if self.cluster.action_of(i) == action]
        if indexes:
            self._deliver(data.draw(st.sampled_from(indexes), label=action))

    @rule(data=st.data())
    def client_on_granted(self, data: st.DataObject) -> None:
        """Any grant ever sent, perhaps late or again."""
        self._some(data, "ClientOnGranted")

    @rule(data=st.data())
    def resource_on_write(self, data: st.DataObject) -> None:
        """Any write ever sent, perhaps late or again."""
        self._some(data, "ResourceOnWrite")

    # -- time

    @rule(data=st.data())
    def tick(self, data: st.DataObject) -> None:
        advances = list(type(self).params.advances)
        adv = {
            node: data.draw(st.sampled_from(advances), label=f"advance of node {node}")
            for node in sorted(self.cluster.clock)
            if self.cluster.timing(node)
        }
        self.cluster.tick(adv)

    # -- the spec's invariants

    @invariant()
    def measure_danger(self) -> None:
        """Not an invariant: the largest local time an entitled client had left while
        the server no longer counted its lease (only a server restart does that to a
        correct client). Targeting it steers the search towards MutualExclusion's edge.
        """
        cluster = self.cluster
        for c in cluster.entitled():
            lease = cluster.clients[c].lease
            if lease is not None and not (
                cluster.server.holds(c, cluster.clock[0]) and cluster.server.token == lease.token
            ):
                self.dangling = max(self.dangling, lease.deadline - cluster.clock[c])

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
    def stale_write_rejected(self) -> None:
        res = self.cluster.resource
        assert res.last_accepted == res.highest, (
            f"StaleWriteRejected violated: accepted {res.last_accepted} after {res.highest}"
        )

    @invariant()
    def token_bound(self) -> None:
        assert "TokenBound" not in self.cluster.violations()

    def teardown(self) -> None:
        cluster = self.cluster
        target(self.dangling, label="entitled beyond the server's lease")
        target(float(len(cluster.grant_log)), label="grants")
        if cluster.contended:
            type(self).seen.add("contended")
        if cluster.expired_regrant:
            type(self).seen.add("expired_regrant")
        if cluster.stale_write_refused:
            type(self).seen.add("stale_write_refused")


# Runs are long (most steps are no-ops for the drawn client) so that leases are
# granted, renewed, lost and re-granted within one run.
STEPS = 200
TestLeaseLock = LeaseLockMachine.TestCase
TestLeaseLock.settings = settings(stateful_step_count=STEPS, deadline=None)


REACHABLE = frozenset({"contended", "expired_regrant", "stale_write_refused"})


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


class NoDriftMachine(LeaseLockMachine):
    # A wider drift bound (3/4: clocks advance 1..7 per tick) makes the mutant's
    # error 7 times the safe validity instead of 3, so the search finds it reliably.
    params = SpecParams(ttl=14, d=4, delta=3, clients=2)
    client_factory = staticmethod(
        lambda node, params: NoDriftClient(node, server=0, max_drift=params.max_drift)
    )


class UnfencedMachine(LeaseLockMachine):
    resource_factory = UnfencedResource


# Detection only: generation stops at the first failure and shrinking is skipped
# (run the machine by hand to see a shrunk counterexample). The search is
# derandomized so that CI is not at the mercy of luck: with random seeds it caught
# NoDriftClient in 7 of 8 searches and UnfencedResource in 6 of 8 (1,500 runs each),
# with this fixed seed it catches both, in seconds, every time.
_BROKEN_SETTINGS = settings(
    max_examples=1500,
    stateful_step_count=STEPS,
    deadline=None,
    phases=[Phase.generate, Phase.target],
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=False,
)


@pytest.mark.parametrize(
    ("machine", "invariant_name"),
    [
        (NoDriftMachine, "MutualExclusion"),
        (UnfencedMachine, "StaleWriteRejected"),
    ],
    ids=["no-drift-client", "unfenced-resource"],
)
def test_broken_variant_is_caught(machine: type[LeaseLockMachine], invariant_name: str) -> None:
    """The suite fails if the stateful test does NOT find the broken core's bug."""
    with pytest.raises(AssertionError, match=invariant_name):
        run_state_machine_as_test(machine, settings=_BROKEN_SETTINGS)


# The amnesiac client (request ids repeat after a crash) needs a crash, a new
# request and the *old* grant delivered, in that order, before the lease can be
# granted again: the state machine finds it in about half of its 600-example
# runs, too rarely for a check that must not flake. This directed run shows the
# bug and that the real client is immune to the same schedule.


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
