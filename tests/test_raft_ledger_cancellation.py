"""RaftLedger's calls under the project's cancellation harness (verify.cancellation).

A 3-member cluster in this process (``open_lock_node``; the ticker/virtual-time
arrangement of ``test_consensus_cancellation``); a first client from
``open_raft_ledger`` connects, reads and leaves (the harness may cut it
anywhere), then a second runs transfers, holds, settles and reads, each in a scope
the harness may cancel or put a deadline on at any step. Checked:

* only ``Cancelled`` handling escapes, no task outlives the scenario, after
  every call the client holds no pending call for it, and once the cluster has
  applied everything no member holds one either (a member that forwarded a
  client's request to the leader waits for the leader's answer, at most its
  ``request_timeout``, even if the client left);
* **nothing half-applied**: once the cluster has applied everything it
  committed, each call's command is in the journal **at most once**, and
  exactly once if the call returned ``Ok`` (each call's command is
  recognisable: its own amount or hold id); every member holds the same ledger;
  the total is conserved and no balance is negative.

Across the runs, the test counts cancelled writes found applied and found not
applied: both outcomes the docs state as possible.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import AsyncExitStack
from typing import Any

import trio
from hypothesis import given, settings
from raft_cluster import loopback_peers
from test_consensus_cancellation import held

from trio_foundation.coordination.consensus import RaftNodeHandle
from trio_foundation.coordination.raft_ledger import open_raft_ledger
from trio_foundation.coordination.raft_lock import open_lock_node
from trio_foundation.protocols import ledger as led
from trio_foundation.protocols import lock_machine as lm
from trio_foundation.verify.cancellation import (
    Injection,
    InjectionPlan,
    Injector,
    injection_plans,
    run_injected,
)

ROUNDS = 3
FUNDS = 1_000
EXAMPLES = int(os.environ.get("LEDGER_CANCEL_EXAMPLES", "6"))  # more: a longer search


class Calls:
    """Each write call: (kind, its mark in the journal, whether it returned Ok)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any, bool]] = []
        #: per cancelled write: found applied?
        self.cancelled: list[bool] = []

    def entries(self, ledger: led.Ledger, kind: str, mark: Any) -> int:
        if kind == "transfer":
            return sum(1 for e in ledger.journal if e.kind == "transfer" and e.amount == mark)
        return sum(1 for e in ledger.journal if e.kind == kind and e.hold == mark)


async def scenario(
    inj: Injector,
    tmp: str,
    nodes: list[RaftNodeHandle],
    machines: list[lm.ServiceMachine],
    calls: Calls,
) -> None:
    peers = loopback_peers(3)
    url = "raft://" + ",".join(f"{i}={h}:{p}" for i, (h, p) in peers.items())
    async with trio.open_nursery() as nursery:

        async def ticker() -> None:
            while True:  # noqa: ASYNC110 - a clock, not a wait for a condition
                await trio.sleep(0.001)

        nursery.start_soon(ticker)
        async with AsyncExitStack() as stack:
            for i in peers:
                machine = lm.ServiceMachine()
                machines.append(machine)
                nodes.append(
                    await stack.enter_async_context(
                        open_lock_node(
                            i, peers, f"{tmp}/{i}", machine=machine, election_timeout=5.0
                        )
                    )
                )
            await nodes[0].leader.wait_value(lambda v: v is not None)
            with inj.scope("connect"):  # entering, a read, leaving: cut anywhere
                async with open_raft_ledger(url) as probe:
                    assert (await probe.snapshot()).balances() == {}
            async with open_raft_ledger(url) as ledger:
                client = ledger._raft
                for name in ("payer", "payee"):
                    await ledger.open(name)
                    await ledger.mint(name, FUNDS)

                def idle() -> None:
                    # the client forgets a call its caller left at once; a member
                    # that forwarded it to the leader waits for the leader's answer
                    # (checked empty at the end, once everything has applied)
                    assert not client._calls, sorted(client._calls)  # type: ignore[attr-defined]

                for k in range(ROUNDS):
                    ok = False
                    with inj.scope(f"transfer{k}"):
                        await ledger.transfer("payer", "payee", 1 + k)  # its own amount
                        ok = True
                    calls.calls.append(("transfer", 1 + k, ok))
                    idle()
                    ok = False
                    with inj.scope(f"hold{k}"):
                        await ledger.hold(f"h{k}", "payer", 100 + k)
                        ok = True
                    calls.calls.append(("hold", f"h{k}", ok))
                    idle()
                    ok = False
                    with inj.scope(f"settle{k}"):
                        try:
                            await ledger.settle(f"h{k}", "payee", k)
                            ok = True
                        except led.UnknownHold:
                            pass  # the hold's call was cancelled before it applied
                    calls.calls.append(("settle", f"h{k}", ok))
                    idle()
                    with inj.scope(f"read{k}"):
                        assert await ledger.balance("payer") >= 0
                    idle()
                    with inj.scope(f"batch{k}"):
                        await ledger.apply_many([led.Transfer("payee", "payer", 50 + k)])
                    idle()
            # let every command still in flight commit and apply everywhere
            await trio.sleep(2.0)
            leader = next(n for n in nodes if n.core.role == "leader")
            want = leader.core.commit_index
            while not all(n.core.last_applied >= want for n in nodes):  # noqa: ASYNC110
                await trio.sleep(0.01)
            assert not held(nodes), held(nodes)
            check(machines, calls)
        nursery.cancel_scope.cancel()


def check(machines: list[lm.ServiceMachine], calls: Calls) -> None:
    """The run's verdict; each cancelled write's fate goes to ``calls.cancelled``."""
    snaps = {m.ledger.snapshot() for m in machines}
    assert len(snaps) == 1, "the members hold different ledgers"
    ledger = machines[0].ledger
    balances, holds = ledger.balances(), ledger.holds()
    assert ledger.supply == 2 * FUNDS
    assert sum(balances.values()) + sum(n for _, n in holds.values()) == 2 * FUNDS
    assert min(balances.values()) >= 0
    for kind, mark, ok in calls.calls:
        n = calls.entries(ledger, kind, mark)
        assert n <= 1, f"{kind} {mark} applied {n} times"
        assert n == 1 or not ok, f"{kind} {mark} answered Ok but is not in the journal"
        if not ok:
            calls.cancelled.append(n == 1)


OUTCOMES: list[bool] = []  # per cancelled write: found applied?
STATS: list[tuple[int, int]] = []


@settings(max_examples=EXAMPLES, deadline=None, database=None)
@given(
    plan=injection_plans(
        min_injections=1,
        max_injections=3,
        max_step=11000,
        max_opened=1 + 5 * ROUNDS,
        max_after_open=60,
        max_delay=2.0,
    )
)
def test_ledger_calls_under_injected_cancellation(plan: InjectionPlan) -> None:
    nodes: list[RaftNodeHandle] = []
    machines: list[lm.ServiceMachine] = []
    calls = Calls()
    with tempfile.TemporaryDirectory() as tmp:
        result = run_injected(
            lambda inj: scenario(inj, tmp, nodes, machines, calls),
            plan,
            check=lambda: None,
            time_limit=5000.0,
            real_time_limit=90.0,
        )
    assert not held(nodes)
    assert len(calls.calls) == 3 * ROUNDS  # the scenario ran to its end
    STATS.append((result.steps, len(result.applied)))
    OUTCOMES.extend(calls.cancelled)


def test_cancelled_writes_are_applied_once_or_not_at_all() -> None:
    """A directed plan: the first transfer, hold and settle are each cancelled two
    steps after their scope opened (the request is on its way), plus the second
    round's transfer through a 0.5 s deadline; the run checks each is in the
    journal at most once, and the members agree."""
    calls = Calls()
    nodes: list[RaftNodeHandle] = []
    machines: list[lm.ServiceMachine] = []
    plan = InjectionPlan(
        (
            Injection(2, 1, anchor="opened"),
            Injection(2, 2, anchor="opened"),
            Injection(2, 3, anchor="opened"),
            Injection(1, 6, "deadline", 0.5, anchor="opened"),
        )
    )
    with tempfile.TemporaryDirectory() as tmp:
        result = run_injected(
            lambda inj: scenario(inj, tmp, nodes, machines, calls),
            plan,
            check=lambda: None,
            time_limit=5000.0,
            real_time_limit=90.0,
        )
    hit = sorted(a.label for a in result.applied)
    assert hit == ["hold0", "settle0", "transfer0", "transfer1"], hit
    cancelled = [(kind, mark) for kind, mark, ok in calls.calls if not ok]
    assert cancelled[:3] == [("transfer", 1), ("hold", "h0"), ("settle", "h0")], calls.calls
    assert len(calls.cancelled) == len(cancelled)  # each checked: applied once or not at all


def test_the_injections_landed() -> None:
    """Reachability: across the runs above, actions hit open scopes."""
    assert STATS, "run after test_ledger_calls_under_injected_cancellation"
    assert sum(applied for _, applied in STATS) > 0, STATS
    print(
        f"steps {[s for s, _ in STATS]}; cancelled writes: {sum(OUTCOMES)} applied, "
        f"{len(OUTCOMES) - sum(OUTCOMES)} not applied"
    )
