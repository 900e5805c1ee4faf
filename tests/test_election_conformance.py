"""One conformance suite for every leader-election backend, through the interface only.

The interface (what a backend factory must give, see :class:`Election`): an
election member has an observable ``leader`` (a ``trio_util.AsyncValue`` of the
leading candidate's id, ``None`` when there is none) and
``leadership(candidate, *, ttl)``, an async context manager whose block runs
only while this member leads: it resigns on exit, and raises
:class:`~trio_foundation.LeadershipLostError` when leadership can no longer be
proved (the block is cancelled first).

Checked for each backend: the observable leader follows the terms; resign on
exit hands over at once (well within the ttl); a second candidate takes over
within the ttl (plus the backend's stated slack) when the leader is cut off for
good — its body ends with ``LeadershipLostError`` before the next one starts;
a campaign cancelled while waiting leaves nothing held (it never leads later);
bad input is refused; and under connection cuts and partitions through
``tests/loopback_proxy.py`` a recorded history of leaderships, from fresh
seeds, has no two terms overlapping and increasing fencing tokens.

Backends: etcd (``open_etcd_election`` on a real etcd; marker ``etcd``) and the
Raft leadership (three ``open_raft_node`` members in this process over loopback
TCP, every link between two members through its own :class:`LoopbackProxy`; a
member's faults act on all of its links). A Raft leadership is bound to a node
(``node.leadership()``: no candidate name, no ttl, no resign that hands over —
the node stays Raft leader after the block): the checks that rest on those run
on etcd only, and :data:`NOT_APPLICABLE` says why for each. Adding a backend is
one entry in :data:`BACKENDS` and one branch in :func:`open_backend` returning
an :class:`ElectionBackend`.
"""

from __future__ import annotations

import itertools
import math
import os
import random
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any, Protocol

import attrs
import pytest
import trio
from loopback_proxy import LoopbackProxy
from raft_cluster import free_ports, open_raft_nodes
from trio_util import AsyncValue

from trio_foundation import LeadershipLostError, LeaseLostError
from trio_foundation.coordination import consensus
from trio_foundation.coordination.consensus import RaftNodeHandle
from trio_foundation.coordination.raft_kv import KV_CODEC
from trio_foundation.etcd import EtcdError, _recipes, open_etcd_client, open_etcd_election
from trio_foundation.etcd.testing import EtcdCluster
from trio_foundation.protocols.kv_machine import KVMachine, KVMachineConfig


class Election(Protocol):
    """What the suite needs of one member of an election."""

    leader: AsyncValue[Any]

    def leadership(self, candidate: str, *, ttl: float) -> AbstractAsyncContextManager[Any]: ...


class Faults(Protocol):
    """What the nemesis does to one member's connections (a proxy, or a group of them)."""

    refusing: bool
    delay: float

    def cut_all(self) -> None: ...


@attrs.define
class ElectionBackend:
    """An election backend under test.

    Attributes:
        kind: the backend's name.
        member: opens a new member (its own connection) of the election ``name``.
        cut_member: opens a member of ``name`` whose connection goes through ``proxies[i]``.
        proxies: proxies that :attr:`cut_member` connections go through (one per index).
        same_holder_may_reuse_token: two successive terms of one holder may carry
            the same token (a Raft leader that re-enters within its term); tokens
            of different holders must still increase strictly.
        ttl: a short ttl the backend honours.
        slack: seconds beyond the ttl a takeover may take (expiry granularity, scheduling).
        token: the fencing token of a leadership, or ``None`` if the backend has none.
        expected_errors: operational errors a member cut off may raise besides
            ``LeadershipLostError`` (e.g. unavailable).
        install_broken: installs (through ``monkeypatch``) the broken variant the
            history check must catch: a candidate that leads without waiting its turn.
    """

    kind: str
    member: Callable[[str], AbstractAsyncContextManager[Election]]
    cut_member: Callable[[str, int], AbstractAsyncContextManager[Election]]
    proxies: Sequence[Faults]
    ttl: float
    slack: float
    token: Callable[[Any], int] | None
    expected_errors: tuple[type[BaseException], ...]
    install_broken: Callable[[pytest.MonkeyPatch], None]
    same_holder_may_reuse_token: bool = False


@pytest.fixture(scope="module")
def etcd_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    with EtcdCluster.start(tmp_path_factory.mktemp("etcd")) as cluster:
        yield cluster


PROXIES = 3


async def _campaign_without_waiting(client: Any, prefix: bytes, lease: Any, value: bytes) -> int:
    """etcd's broken variant: enter the queue and lead at once, ahead of earlier candidates."""
    mine = prefix + f"{lease.id:016x}".encode()
    return int((await client.put(mine, value, lease=lease.id)).revision)


class ProxyGroup:
    """Every proxy on one Raft member's links, driven as one (both directions cut)."""

    def __init__(self, proxies: list[LoopbackProxy]) -> None:
        self.proxies = proxies

    @property
    def refusing(self) -> bool:
        return all(p.refusing for p in self.proxies)

    @refusing.setter
    def refusing(self, value: bool) -> None:
        for p in self.proxies:
            p.refusing = value

    @property
    def delay(self) -> float:
        return max(p.delay for p in self.proxies)

    @delay.setter
    def delay(self, value: float) -> None:
        for p in self.proxies:
            p.delay = value

    def cut_all(self) -> None:
        for p in self.proxies:
            p.cut_all()


@attrs.define
class RaftMember:
    """A Raft node seen through the suite's interface.

    ``leader`` is the node's view of the Raft leader (a node id); ``candidate``
    and ``ttl`` are checked by the suite's caller only: a Raft leadership is the
    node's, and its lease comes from the election timeout.
    """

    node: RaftNodeHandle

    @property
    def leader(self) -> AsyncValue[int | None]:
        return self.node.leader

    def leadership(self, candidate: str, *, ttl: float) -> AbstractAsyncContextManager[int]:
        return self.node.leadership()


@asynccontextmanager
async def open_raft_members(
    tmp: Path, nursery: trio.Nursery, *, election_timeout: float
) -> AsyncIterator[tuple[list[RaftMember], list[ProxyGroup]]]:
    """Three Raft members over loopback TCP, each link ``i -> j`` through its own proxy."""
    ids = [1, 2, 3]
    real = dict(zip(ids, free_ports(len(ids)), strict=True))
    links: dict[tuple[int, int], LoopbackProxy] = {}
    for i in ids:
        for j in ids:
            if i != j:
                links[i, j] = LoopbackProxy(("127.0.0.1", real[j]))
                await nursery.start(links[i, j].run)
    groups = [ProxyGroup([p for (i, j), p in links.items() if node in (i, j)]) for node in ids]

    def own_peers(i: int) -> dict[int, tuple[str, int]]:
        peers: dict[int, tuple[str, int]] = {i: ("127.0.0.1", real[i])}
        for j in ids:
            if j != i:
                address = links[i, j].listen_address
                assert address is not None
                peers[j] = address
        return peers

    async with open_raft_nodes(
        {i: ("127.0.0.1", real[i]) for i in ids},
        lambda i: tmp / f"raft{i}",
        lambda: KVMachine(KVMachineConfig(history=16)),
        own_peers=own_peers,
        wait_leader=10,
        codec=KV_CODEC,
        election_timeout=election_timeout,
    ) as nodes:
        yield [RaftMember(n) for n in nodes], groups


@asynccontextmanager
async def _lead_without_proof(self: RaftNodeHandle) -> AsyncIterator[int]:
    """Raft's broken variant: lead once the core says leader, without quorum proof or lease."""
    await self._role_term.wait_value(lambda rt: rt[0] == "leader")
    yield self.core.term


@asynccontextmanager
async def open_backend(kind: str, request: pytest.FixtureRequest) -> AsyncIterator[ElectionBackend]:
    async with trio.open_nursery() as nursery:
        if kind == "etcd":
            cluster: EtcdCluster = request.getfixturevalue("etcd_cluster")
            host, port = cluster.endpoints[0].removeprefix("http://").rsplit(":", 1)
            proxies = [LoopbackProxy((host, int(port))) for _ in range(PROXIES)]
            for proxy in proxies:
                await nursery.start(proxy.run)
            prefix = f"/{request.node.name}/"

            @asynccontextmanager
            async def member_at(endpoint: str, name: str) -> AsyncIterator[Election]:
                async with (
                    open_etcd_client(endpoint, timeout=1.0) as client,
                    open_etcd_election(client, name, prefix=prefix, margin=0.5) as election,
                ):
                    yield election

            def member(name: str) -> AbstractAsyncContextManager[Election]:
                return member_at(cluster.endpoints[0], name)

            def cut_member(name: str, i: int) -> AbstractAsyncContextManager[Election]:
                assert proxies[i].listen_address is not None
                return member_at("http://{}:{}".format(*proxies[i].listen_address), name)

            yield ElectionBackend(
                kind,
                member,
                cut_member,
                proxies,
                # etcd counts whole seconds; 1 s leases lose keep-alives to scheduling
                # delays on a loaded machine
                ttl=2.0,
                # etcd's lessor checks expiry every 500 ms; the watcher then needs a round trip
                slack=1.5,
                token=lambda leadership: leadership.revision,
                # EtcdLeaseLostError (a LeaseLostError, not an EtcdError) comes out of a
                # campaign whose lease ended before it led (leadership()'s Raises)
                expected_errors=(EtcdError, LeaseLostError),
                install_broken=lambda mp: mp.setattr(
                    _recipes, "_campaign", _campaign_without_waiting
                ),
            )
        elif kind == "raft":
            tmp: Path = request.getfixturevalue("tmp_path")
            async with open_raft_members(tmp, nursery, election_timeout=0.5) as (members, groups):

                @asynccontextmanager
                async def raft_member(i: int) -> AsyncIterator[Election]:
                    yield members[i]

                handed_out = itertools.count()

                def next_member(name: str) -> AbstractAsyncContextManager[Election]:
                    return raft_member(next(handed_out) % len(members))

                yield ElectionBackend(
                    kind,
                    next_member,
                    lambda name, i: raft_member(i),
                    groups,
                    # not the lease (that is the election timeout's, ~0.45 s here):
                    # the scale of the history's terms and partitions
                    ttl=1.0,
                    # an election after [T, 2T) of silence, then a ReadIndex round
                    slack=1.5,
                    token=lambda term: int(term),
                    expected_errors=(),
                    install_broken=lambda mp: mp.setattr(
                        consensus.RaftNodeHandle, "leadership", _lead_without_proof
                    ),
                    same_holder_may_reuse_token=True,
                )
        else:  # pragma: no cover - a backend listed in BACKENDS without a branch here
            raise AssertionError(f"no election backend {kind!r}")
        nursery.cancel_scope.cancel()


BACKENDS = [pytest.param("etcd", marks=pytest.mark.etcd), "raft"]

_NODE_BOUND = (
    "a Raft leadership is its node's: the Raft leader exists whether or not a block runs, "
    "and leaving the block does not hand over (the node stays leader)"
)
# test name -> why the check does not apply to that backend (the test is skipped, with this)
NOT_APPLICABLE: dict[str, dict[str, str]] = {
    "raft": {
        "test_observable_leader_follows_terms": _NODE_BOUND,
        "test_resign_on_exit_hands_over_at_once": _NODE_BOUND,
        "test_cancelled_campaign_leaves_nothing_held": _NODE_BOUND
        + "; a waiting candidate on a follower never leads while the leader's node lives",
        "test_bad_input_refused": "node.leadership() takes no candidate and no ttl",
        "test_takeover_within_ttl_when_the_leader_is_cut_off": (
            "which member takes over is the Raft election's choice, not the waiting "
            "candidate's; takeovers under cuts are checked by the history tests"
        ),
    }
}


@pytest.fixture(params=BACKENDS)
def backend_kind(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    reason = NOT_APPLICABLE.get(kind, {}).get(request.node.originalname)
    if reason is not None:
        pytest.skip(f"{kind}: {reason}")
    return kind


@pytest.fixture
async def backend(
    backend_kind: str, request: pytest.FixtureRequest
) -> AsyncIterator[ElectionBackend]:
    async with open_backend(backend_kind, request) as b:
        yield b


async def wait_leader(election: Election, value: str | None, within: float) -> None:
    with trio.fail_after(within):
        await election.leader.wait_value(value)


# ----------------------------------------------------------------- basic behaviour


async def test_observable_leader_follows_terms(backend: ElectionBackend) -> None:
    async with backend.member("e") as a, backend.member("e") as b:
        assert a.leader.value is None and b.leader.value is None
        async with a.leadership("a", ttl=backend.ttl):
            await wait_leader(b, "a", 1.0)
            await wait_leader(a, "a", 1.0)
        # resign on exit: the leader is gone at once, not after the ttl
        await wait_leader(b, None, backend.ttl / 2)


async def test_resign_on_exit_hands_over_at_once(backend: ElectionBackend) -> None:
    async with backend.member("e") as a, backend.member("e") as b:
        took_over_after: list[float] = []

        async def second() -> None:
            async with b.leadership("b", ttl=backend.ttl):
                took_over_after.append(trio.current_time() - a_left)

        async with trio.open_nursery() as nursery:
            async with a.leadership("a", ttl=backend.ttl):
                nursery.start_soon(second)
                await trio.sleep(0.3)
                assert b.leader.value == "a" and not took_over_after, "b led while a led"
            a_left = trio.current_time()
        assert took_over_after and took_over_after[0] < backend.ttl / 2, took_over_after


async def test_cancelled_campaign_leaves_nothing_held(backend: ElectionBackend) -> None:
    async with backend.member("e") as a, backend.member("e") as b, backend.member("e") as c:
        async with a.leadership("a", ttl=backend.ttl):
            with trio.move_on_after(0.3) as waiting:
                async with b.leadership("b", ttl=backend.ttl):
                    raise AssertionError("b led while a led")
            assert waiting.cancelled_caught
        # a resigned; the cancelled b must not lead now (its candidacy was withdrawn)
        await wait_leader(c, None, backend.ttl / 2)
        with trio.fail_after(backend.ttl / 2):
            async with c.leadership("c", ttl=backend.ttl):
                assert c.leader.value in (None, "c")
                await wait_leader(c, "c", 1.0)


async def test_bad_input_refused(backend: ElectionBackend) -> None:
    async with backend.member("e") as a:
        with pytest.raises(ValueError, match="candidate"):
            async with a.leadership("", ttl=backend.ttl):
                pass
        for ttl in (0, -1, math.nan, math.inf):
            with pytest.raises(ValueError, match="ttl"):
                async with a.leadership("a", ttl=ttl):
                    pass
        assert a.leader.value is None


async def test_takeover_within_ttl_when_the_leader_is_cut_off(backend: ElectionBackend) -> None:
    """The leader's connection dies for good: it loses, then the next leads within the ttl."""
    proxy = backend.proxies[0]
    async with backend.member("e") as b:
        a_ended_at: list[float] = []
        a_outcome: list[str] = []
        b_led_at: list[float] = []
        a_leads = trio.Event()

        async def first() -> None:
            # the cut-off member may fail as a whole (its observer loses the backend)
            try:
                async with (
                    backend.cut_member("e", 0) as a,
                    a.leadership("a", ttl=backend.ttl),
                ):
                    a_leads.set()
                    try:
                        await trio.sleep_forever()
                    finally:
                        a_ended_at.append(trio.current_time())
            except LeadershipLostError:
                a_outcome.append("lost")
            except backend.expected_errors as exc:
                a_outcome.append(type(exc).__name__)

        async def second() -> None:
            await a_leads.wait()
            async with b.leadership("b", ttl=backend.ttl):
                b_led_at.append(trio.current_time())

        with trio.fail_after(backend.ttl + backend.slack + 5):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(first)
                nursery.start_soon(second)
                await a_leads.wait()
                await trio.sleep(0.3)
                proxy.refusing = True
                proxy.cut_all()
                cut_at = trio.current_time()
        proxy.refusing = False
        assert a_outcome, "the cut-off leader's block never ended"
        assert b_led_at, "no takeover"
        assert a_ended_at[0] <= b_led_at[0], f"a led until {a_ended_at[0]}, b from {b_led_at[0]}"
        took = b_led_at[0] - cut_at
        assert took <= backend.ttl + backend.slack, f"takeover took {took:.2f} s ({a_outcome})"


# ----------------------------------------------------------------- history under faults


@attrs.define
class Term:
    candidate: int
    token: int | None
    start: float
    end: float = math.inf


@attrs.define
class History:
    seed: int
    same_holder_may_reuse_token: bool = False
    terms: list[Term] = attrs.Factory(list)
    lost: int = 0
    errors: int = 0
    faults: int = 0

    def violations(self, now: float = math.inf) -> list[str]:
        """Overlapping terms and tokens that do not increase, in start order.

        ``now``: a term still open counts as ending at ``now`` (its end, once set,
        is no earlier), so a violation found before the run ends stays in it.
        """
        bad = []
        for a, b in itertools.pairwise(sorted(self.terms, key=lambda t: t.start)):
            if b.start < min(a.end, now):
                bad.append(f"overlap: {a} and {b}")
            if a.token is None or b.token is None:
                continue
            reused = a.token == b.token and a.candidate == b.candidate
            if not (a.token < b.token or (reused and self.same_holder_may_reuse_token)):
                bad.append(f"tokens not increasing: {a} then {b}")
        return bad


async def run_under_cuts(
    backend: ElectionBackend, seed: int, seconds: float, *, stop_early: bool = False
) -> History:
    """One seeded run of ``seconds``: three candidates under the nemesis's faults.

    With ``stop_early``, the run ends at the first violation (checked as each term
    begins and ends, an open term counting as ending now): terms only get added and
    an open term ends no earlier than now, so the full run has that violation too.
    """
    rng = random.Random(seed)
    history = History(seed, backend.same_holder_may_reuse_token)
    term_began = trio.Event()  # set (and replaced) as each term begins

    async def candidate(i: int) -> None:
        nonlocal term_began
        async with backend.cut_member("chaos", i) as member:
            while True:
                try:
                    async with member.leadership(f"c{i}", ttl=backend.ttl) as held:
                        term = Term(
                            i, backend.token(held) if backend.token else None, trio.current_time()
                        )
                        history.terms.append(term)
                        term_began.set()
                        term_began = trio.Event()
                        try:
                            if stop_early and history.violations(trio.current_time()):
                                nursery.cancel_scope.cancel()
                            await trio.sleep(rng.uniform(0.2, 2.0 * backend.ttl))
                        finally:
                            term.end = trio.current_time()
                            if stop_early and history.violations(trio.current_time()):
                                nursery.cancel_scope.cancel()
                except LeadershipLostError:
                    history.lost += 1
                except backend.expected_errors:
                    history.errors += 1
                await trio.sleep(rng.uniform(0, 0.2))

    def leader() -> int | None:
        open_terms = [t for t in history.terms if t.end == math.inf]
        return open_terms[-1].candidate if open_terms else None

    async def nemesis() -> None:
        while True:
            await trio.sleep(rng.uniform(0.2, 0.8))
            proxy = rng.choice(backend.proxies)
            kind = rng.choice(["cut", "partition", "delay"] + ["partition-leader"] * 4)
            if kind == "partition-leader":
                # catch the next term right as it begins (its block has all its length
                # still to run), and cut its leader off for longer than its ttl, so the
                # others take over
                with trio.move_on_after(2 * backend.ttl):
                    await term_began.wait()
                who = leader()
                if who is None:
                    continue
                history.faults += 1
                proxy = backend.proxies[who]
                proxy.refusing = True
                proxy.cut_all()
                await trio.sleep(rng.uniform(backend.ttl + 1, backend.ttl + 3))
                proxy.refusing = False
                continue
            history.faults += 1
            if kind == "cut":
                proxy.cut_all()
            elif kind == "partition":
                proxy.refusing = True
                proxy.cut_all()
                await trio.sleep(rng.uniform(0.5, backend.ttl + 2))
                proxy.refusing = False
            else:
                proxy.delay = rng.uniform(0.05, 0.3)
                await trio.sleep(rng.uniform(0.5, 2.0))
                proxy.delay = 0.0

    async def supervised(i: int) -> None:
        # a member whose observer loses etcd for the client's timeout fails; reopen it
        while True:
            try:
                await candidate(i)
            except backend.expected_errors:
                history.errors += 1

    async with trio.open_nursery() as nursery:
        for i in range(len(backend.proxies)):
            nursery.start_soon(supervised, i)
        nursery.start_soon(nemesis)
        await trio.sleep(seconds)
        nursery.cancel_scope.cancel()
    return history


async def _history(backend: ElectionBackend, seconds: float) -> History:
    seed = int(os.environ.get("FOUNDATION_CHAOS_SEED", random.randrange(2**32)))
    print(f"seed {seed}")
    history = await run_under_cuts(backend, seed, seconds)
    print(
        f"seed {seed}: {len(history.terms)} terms, {history.lost} lost, "
        f"{history.errors} errors, {history.faults} faults, "
        f"{len(history.violations())} violations"
    )
    assert len({t.candidate for t in history.terms}) >= 2, f"seed {seed}: too few terms"
    return history


@pytest.mark.timeout(120)
async def test_no_two_leaderships_overlap_under_cuts(backend: ElectionBackend) -> None:
    history = await _history(backend, 12.0)
    assert not history.violations(), f"seed {history.seed}: {history.violations()}"


@pytest.mark.timeout(120)
async def test_broken_leadership_caught_under_cuts(
    backend: ElectionBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same run with candidates that lead without waiting their turn: the check must fail."""
    backend.install_broken(monkeypatch)
    history = await _history(backend, 12.0)
    assert history.violations(), f"seed {history.seed}: the broken variant went unnoticed"


@pytest.mark.slow
@pytest.mark.timeout(900)
async def test_no_two_leaderships_overlap_under_cuts_long(backend: ElectionBackend) -> None:
    seconds = float(os.environ.get("FOUNDATION_CHAOS_LONG_SECONDS", "120"))
    history = await _history(backend, seconds)
    assert not history.violations(), f"seed {history.seed}: {history.violations()}"
