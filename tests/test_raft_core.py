"""Directed tests of the sans-IO Raft core (protocols/raft.py), one behaviour each.

A tiny in-test cluster executes the effects in the order the core lists them,
keeps each node's durable state from its ``Persist`` records (through
``apply_persist``, the storage contract) and delivers messages FIFO unless a
test holds, drops or partitions them. The randomised search over schedules is
``property_tests/test_raft.py``.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Hashable
from typing import Any

import attrs
import pytest

from trio_foundation.protocols.effects import (
    CancelTimer,
    ClientRequest,
    Core,
    Effect,
    Persist,
    Reply,
    Send,
    SetTimer,
)
from trio_foundation.protocols.raft import (
    AppendEntries,
    AppendEntriesResponse,
    Config,
    Entry,
    InstallSnapshot,
    NotLeader,
    Proposal,
    RaftDurable,
    RaftNode,
    RaftPersist,
    RaftStateError,
    Rejected,
    RequestVote,
    RequestVoteResponse,
    Snapshot,
    TimeoutNow,
    apply_persist,
    raft_factory,
)


class Register:
    """A test state machine: the sequence of values written; reads return the last."""

    def __init__(self) -> None:
        self.values: list[Any] = []

    def apply(self, command: Any) -> Any:
        self.values.append(command)
        return len(self.values)

    def query(self, query: Any) -> Any:
        return self.values[-1] if self.values else None

    def snapshot(self) -> bytes:
        return json.dumps(self.values).encode()

    def restore(self, data: bytes) -> None:
        self.values = json.loads(data)


class Cluster:
    def __init__(self, n: int = 3, voters: tuple[int, ...] | None = None, **opts: Any) -> None:
        self.now = 0.0
        self.opts = opts
        self.voters = tuple(range(n)) if voters is None else voters
        self.nodes: dict[int, RaftNode] = {}
        self.durable = {i: RaftDurable() for i in range(n)}
        self.timers: dict[int, dict[str, float]] = {i: {} for i in range(n)}
        self.net: list[tuple[int, int, Any]] = []
        self.replies: dict[Hashable, Reply] = {}
        self.blocked: set[frozenset[int]] = set()
        self.log: list[tuple[int, list[Effect]]] = []
        for i in range(n):
            self.start(i)

    def start(self, i: int) -> None:
        node = RaftNode(i, self.voters, Register(), **self.opts)
        node.restore(self.durable[i])
        self.nodes[i] = node
        self.timers[i] = {}
        self.run(i, node.on_start(self.now, random.Random(i)))

    def crash(self, i: int) -> None:
        del self.nodes[i]
        self.timers[i] = {}

    def run(self, i: int, effects: list[Effect]) -> None:
        self.log.append((i, effects))
        for e in effects:
            if isinstance(e, Persist):
                self.durable[i] = apply_persist(self.durable[i], e.data)
            elif isinstance(e, Send):
                self.net.append((i, e.to, e.msg))
            elif isinstance(e, SetTimer):
                self.timers[i][e.name] = self.now + e.delay
            elif isinstance(e, CancelTimer):
                self.timers[i].pop(e.name, None)
            else:
                self.replies[e.client] = e
        if i in self.nodes:
            assert self.durable[i] == self.nodes[i].snapshot_persistent()

    def fire(self, i: int, name: str) -> None:
        self.now = max(self.now, self.timers[i].pop(name))
        self.run(i, self.nodes[i].on_timer(self.now, name))

    def deliver_all(self, limit: int = 10_000, keep: Callable[[Any], bool] | None = None) -> None:
        held = []
        for _ in range(limit):
            if not self.net:
                break
            src, dst, msg = self.net.pop(0)
            if keep is not None and keep(msg):
                held.append((src, dst, msg))
                continue
            if frozenset((src, dst)) in self.blocked or dst not in self.nodes:
                continue
            self.run(dst, self.nodes[dst].on_message(self.now, src, msg))
        else:
            raise AssertionError("messages never quiesced")
        self.net = held

    def run_until(self, t: float) -> None:
        """Fire every timer due before ``t`` in deadline order, delivering messages between."""
        while True:
            due = [(d, i, n) for i, ts in self.timers.items() for n, d in ts.items() if d <= t]
            if not due:
                break
            _, i, name = min(due)
            self.fire(i, name)
            self.deliver_all()
        self.now = t

    def elect(self, i: int) -> None:
        for _ in range(3):  # a PreVote refused for an old term teaches the newer one
            self.fire(i, "election")
            self.deliver_all()
            if self.nodes[i].role == "leader":
                return
        raise AssertionError(f"node {i} was not elected")

    def heartbeat(self, i: int) -> None:
        self.fire(i, "heartbeat")
        self.deliver_all()

    def client(self, i: int, op: str, value: Any = None, client: Hashable = None) -> Reply | None:
        key = client if client is not None else (i, op, value, len(self.log))
        self.run(i, self.nodes[i].on_client(self.now, ClientRequest(key, op, value)))
        self.deliver_all()
        return self.replies.get(key)

    def partition(self, *group: int) -> None:
        for a in group:
            for b in self.nodes:
                if b not in group:
                    self.blocked.add(frozenset((a, b)))

    def heal(self) -> None:
        self.blocked.clear()

    def leaders(self) -> list[int]:
        return [i for i, n in self.nodes.items() if n.role == "leader"]


def committed_everywhere(c: Cluster) -> None:
    leader = c.leaders()[0]
    c.heartbeat(leader)
    want = c.nodes[leader].commit_index
    assert all(n.commit_index == want for n in c.nodes.values())


# ---------------------------------------------------------------------- elections


def test_a_node_implements_the_core_protocol() -> None:
    node = raft_factory(Register)(1, 3)
    assert isinstance(node, Core)
    assert isinstance(node, RaftNode) and node.config == Config((0, 1, 2))


def test_election_then_noop_commits_on_every_node() -> None:
    c = Cluster()
    c.elect(0)
    node = c.nodes[0]
    assert node.term == 1 and node.leader_id == 0
    assert node.entry(1) == Entry(1, 1, "noop")
    assert node.commit_index == 1
    committed_everywhere(c)
    assert all(n.leader_id == 0 and n.role == "follower" for i, n in c.nodes.items() if i)


def test_election_timeout_is_in_T_to_2T() -> None:
    c = Cluster(election_timeout=2.0)
    for effects in (e for _, es in c.log for e in es):
        if isinstance(effects, SetTimer):
            assert 2.0 <= effects.delay < 4.0


def test_vote_is_persisted_before_it_is_sent() -> None:
    c = Cluster()
    effects = c.nodes[1].on_message(c.now, 2, RequestVote(1, 2, 0, 0))
    assert isinstance(effects[0], Persist) and effects[0].data == RaftPersist(1, 2)
    assert Send(2, RequestVoteResponse(1, True)) in effects[1:]


def test_a_node_votes_once_per_term_even_after_a_restart() -> None:
    c = Cluster(pre_vote=False)
    one = c.nodes[1]
    c.run(1, one.on_message(0.0, 0, RequestVote(1, 0, 0, 0)))
    c.crash(1)
    c.start(1)
    effects = c.nodes[1].on_message(0.0, 2, RequestVote(1, 2, 5, 1))
    assert Send(2, RequestVoteResponse(1, False)) in effects


def test_prevote_keeps_a_returning_node_from_disrupting_the_leader() -> None:
    c = Cluster()
    c.elect(0)
    c.partition(2)
    c.run_until(c.now + 8)  # node 2 times out again and again, alone
    assert c.nodes[2].term == 1 and c.nodes[2].role == "pre_candidate"
    c.heal()
    c.run_until(c.now + 8)
    assert c.nodes[0].role == "leader" and c.nodes[0].term == 1
    assert c.nodes[2].role == "follower" and c.nodes[2].leader_id == 0


def test_without_prevote_a_returning_node_bumps_the_term() -> None:
    c = Cluster(pre_vote=False, check_quorum=False)
    c.elect(0)
    c.partition(2)
    c.fire(2, "election")
    c.deliver_all()
    c.heal()
    c.fire(2, "election")
    c.deliver_all()
    assert c.nodes[0].term > 1


def test_check_quorum_steps_an_isolated_leader_down() -> None:
    c = Cluster()
    c.elect(0)
    c.partition(0)
    c.fire(0, "check_quorum")  # followers answered the noop append: still active
    c.fire(0, "check_quorum")
    assert c.nodes[0].role == "follower" and c.nodes[0].term == 1


def test_followers_in_lease_ignore_vote_requests() -> None:
    c = Cluster()
    c.elect(0)
    one = c.nodes[1]
    assert one.on_message(c.now, 2, RequestVote(5, 2, 9, 1)) == []
    assert one.term == 1 and one.lease_ignored == 1


def test_a_restarted_node_keeps_the_lease_for_T_before_it_votes() -> None:
    """A node restarted with a term > 0 may have acknowledged a leader just before it
    stopped: it refuses (Pre)Votes of a newer term for T from its start, then grants."""
    c = Cluster()
    c.elect(0)
    c.crash(1)
    c.start(1)  # restored at c.now, term 1, leader unknown
    one = c.nodes[1]
    assert one.term == 1 and one.leader_id is None
    pre = RequestVote(2, 2, 9, 1, pre_vote=True)
    assert one.on_message(c.now + 0.5, 2, pre) == []  # T = 1: still promised
    assert one.on_message(c.now + 0.9, 2, RequestVote(2, 2, 9, 1)) == []
    assert one.term == 1 and one.lease_ignored == 2
    granted = one.on_message(c.now + 1.0, 2, pre)
    assert Send(2, RequestVoteResponse(2, True, True)) in granted
    # a node that never had a term (a fresh start) promised nothing
    fresh = RaftNode(5, (5, 6, 7), Register())
    fresh.on_start(0.0, random.Random(0))
    effects = fresh.on_message(0.0, 6, RequestVote(1, 6, 0, 0, pre_vote=True))
    assert Send(6, RequestVoteResponse(1, True, True)) in effects


# ---------------------------------------------------------------------- replication


def test_propose_replies_with_the_result_and_every_node_applies() -> None:
    c = Cluster()
    c.elect(0)
    reply = c.client(0, "propose", Proposal("alice", 1, "x"))
    assert reply == Reply(reply.client, 1) if reply else False
    committed_everywhere(c)
    assert all(n.sm.query(None) == "x" for n in c.nodes.values())  # type: ignore[attr-defined]


def test_a_retried_proposal_is_applied_once() -> None:
    c = Cluster()
    c.elect(0)
    first = c.client(0, "propose", Proposal("alice", 7, "x"), client="a")
    again = c.client(0, "propose", Proposal("alice", 7, "x"), client="b")
    older = c.client(0, "propose", Proposal("alice", 6, "y"), client="c")
    assert first is not None and again is not None and first.value == again.value == 1
    assert older is not None and not older.ok and isinstance(older.value, Rejected)
    assert c.nodes[0].sm.values == ["x"]  # type: ignore[attr-defined]


def test_followers_redirect_to_the_leader() -> None:
    c = Cluster()
    c.elect(0)
    for op in ("propose", "read", "transfer_leadership", "add_server"):
        reply = c.client(1, op, 1)
        assert reply is not None and not reply.ok and reply.value == NotLeader(0)


def test_fast_backtracking_skips_a_term_per_round_trip() -> None:
    c = Cluster(max_batch=100)
    c.elect(0)
    for k in range(3):
        c.client(0, "propose", k)
    c.partition(0)
    for k in range(20):  # the old leader's uncommitted tail: 5..24, term 1
        c.client(0, "propose", k)
    c.crash(0)
    c.heal()
    c.now += 10
    c.elect(1)  # term 2: 5..25 on nodes 1 and 2
    for k in range(20):
        c.client(1, "propose", 100 + k)
    c.crash(1)
    c.start(0)
    c.now += 10
    c.elect(2)  # term 3; node 0 votes (its last term is older), then is repaired
    zero, two = c.nodes[0], c.nodes[2]
    assert zero.log == two.log and zero.last_index == 26
    rejects = [
        e.msg
        for i, es in c.log
        if i == 0
        for e in es
        if isinstance(e, Send) and isinstance(e.msg, AppendEntriesResponse) and not e.msg.success
    ]
    assert [(m.conflict_index, m.conflict_term) for m in rejects] == [(25, 0), (1, 1)]


def test_duplicate_old_append_does_not_truncate_acknowledged_entries() -> None:
    c = Cluster()
    c.elect(0)
    c.client(0, "propose", "a")
    c.client(0, "propose", "b")
    one = c.nodes[1]
    before = one.log
    old = AppendEntries(1, 0, 1, 1, (Entry(1, 2, "command", Proposal(None, 0, "a")),), 1)
    effects = one.on_message(c.now, 0, old)
    assert one.log == before
    assert not any(isinstance(e, Persist) for e in effects)


def test_the_leader_never_commits_an_old_term_entry_by_counting() -> None:
    """Figure 8 of the paper, on three nodes: an old-term entry on a majority is not committed."""
    c = Cluster(max_batch=1)
    c.elect(0)  # term 1, noop at 1
    committed_everywhere(c)
    c.partition(0)
    c.client(0, "propose", "old")  # index 2, term 1, only on node 0
    c.crash(0)
    c.heal()
    c.now += 10
    c.fire(2, "election")
    c.deliver_all(keep=lambda m: isinstance(m, AppendEntries) and bool(m.entries))
    assert c.nodes[2].role == "leader" and c.nodes[2].entry(2) == Entry(2, 2, "noop")
    c.crash(2)
    c.net.clear()
    c.start(0)
    c.now += 10

    def noop_of_term_3(m: Any) -> bool:  # held once node 1 has index 2 (earlier ones are refused)
        return isinstance(m, AppendEntries) and m.entries[-1:] != () and c.nodes[1].last_index >= 2

    for _ in range(2):  # the first PreVote only teaches node 0 that term 2 exists
        c.fire(0, "election")  # node 1 votes: node 0's last term 1 is as recent as its own
        c.deliver_all(keep=noop_of_term_3)
    zero, one = c.nodes[0], c.nodes[1]
    assert zero.role == "leader" and zero.term == 3
    assert one.entry(2) == zero.entry(2) and one.entry(2).term == 1  # type: ignore[union-attr]
    assert zero.commit_index < 2  # index 2 is on a majority, but of an older term
    c.crash(0)
    c.net.clear()
    c.start(2)
    c.now += 10
    c.elect(2)  # node 2's last term 2 beats node 1's 1: index 2 is overwritten, rightly
    assert c.nodes[1].entry(2) == Entry(2, 2, "noop")


# ---------------------------------------------------------------------- persistence


def test_persist_records_come_first_and_add_up_to_the_durable_state() -> None:
    c = Cluster(max_log_entries=5)
    c.elect(0)
    for k in range(12):
        c.client(0, "propose", k)
    committed_everywhere(c)
    for _, effects in c.log:
        kinds = [type(e) for e in effects]
        assert Persist not in kinds[1:]  # at most one, always first
    assert c.nodes[0].snapshot_index > 0  # compacted on the way


def test_a_restarted_node_recovers_from_its_durable_state() -> None:
    c = Cluster()
    c.elect(0)
    for k in range(3):
        c.client(0, "propose", k)
    committed_everywhere(c)
    c.crash(1)
    c.start(1)
    assert c.nodes[1].log == c.nodes[0].log and c.nodes[1].commit_index == 0
    c.heartbeat(0)
    assert c.nodes[1].sm.values == [0, 1, 2]  # type: ignore[attr-defined]


def test_apply_persist_refuses_a_gap() -> None:
    with pytest.raises(ValueError, match="does not follow"):
        apply_persist(RaftDurable(), RaftPersist(1, None, None, (Entry(1, 2, "noop"),)))


# ---------------------------------------------------------------------- reads


def test_read_index_waits_for_a_quorum_round() -> None:
    c = Cluster()
    c.elect(0)
    c.client(0, "propose", "x")
    c.run(0, c.nodes[0].on_client(c.now, ClientRequest("r", "read", None)))
    assert "r" not in c.replies  # not before a majority answered the round
    c.deliver_all()
    assert c.replies["r"] == Reply("r", "x")


def test_a_deposed_leader_does_not_serve_reads() -> None:
    c = Cluster()
    c.elect(0)
    c.partition(0)
    c.run(0, c.nodes[0].on_client(c.now, ClientRequest("r", "read", None)))
    c.deliver_all()
    assert "r" not in c.replies
    c.now += 10
    c.elect(1)
    c.client(1, "propose", "new")
    c.heal()
    c.heartbeat(1)
    reply = c.replies["r"]
    assert not reply.ok and reply.value == NotLeader(1)


def test_single_node_cluster_commits_and_reads_alone() -> None:
    c = Cluster(n=1)
    c.fire(0, "election")
    assert c.nodes[0].role == "leader"
    assert c.client(0, "propose", "x") == Reply((0, "propose", "x", len(c.log) - 1), 1)
    assert c.client(0, "read", None, client="r") == Reply("r", "x")


# ---------------------------------------------------------------------- transfer


def test_leadership_transfer() -> None:
    c = Cluster()
    c.elect(0)
    c.partition(2)
    c.client(0, "propose", "x")
    c.heal()
    reply = c.client(0, "transfer_leadership", 2, client="t")
    assert c.nodes[2].role == "leader" and c.nodes[2].term == 2
    assert reply is not None and reply.ok
    assert any(
        isinstance(m, TimeoutNow)
        for _, es in c.log
        for e in es
        if isinstance(e, Send)
        for m in [e.msg]
    )


def test_proposals_are_refused_during_a_transfer_and_it_times_out() -> None:
    c = Cluster()
    c.elect(0)
    c.partition(1)
    c.client(0, "transfer_leadership", 1, client="t")
    reply = c.client(0, "propose", "x", client="p")
    assert reply == Reply("p", Rejected("leadership transfer in progress"), ok=False)
    c.fire(0, "transfer")
    assert c.replies["t"] == Reply("t", Rejected("leadership transfer timed out"), ok=False)
    assert c.nodes[0].role == "leader"


# ---------------------------------------------------------------------- snapshots


def test_a_lagging_follower_catches_up_from_a_snapshot() -> None:
    c = Cluster(max_log_entries=4)
    c.elect(0)
    c.partition(2)
    for k in range(10):
        c.client(0, "propose", k)
    c.heartbeat(0)
    assert c.nodes[0].snapshot_index > 1 and len(c.nodes[0].log) <= 5
    c.heal()
    c.heartbeat(0)
    c.heartbeat(0)
    two = c.nodes[2]
    assert two.snapshots_installed == 1
    assert two.sm.values == list(range(10))  # type: ignore[attr-defined]
    assert any(
        isinstance(m, InstallSnapshot)
        for _, es in c.log
        for e in es
        if isinstance(e, Send)
        for m in [e.msg]
    )


def test_compact_on_request() -> None:
    c = Cluster()
    c.elect(0)
    c.client(0, "propose", "x")
    reply = c.client(0, "compact", None, client="c")
    assert reply == Reply("c", 2)
    snap = c.nodes[0].snapshot
    assert isinstance(snap, Snapshot) and snap.config == Config((0, 1, 2)) and snap.data == b'["x"]'
    assert c.client(0, "compact", None, client="d") == Reply(
        "d", Rejected("nothing to compact"), False
    )


# ---------------------------------------------------------------------- membership


def test_learner_then_voter_then_removal() -> None:
    c = Cluster(n=4, voters=(0, 1, 2))
    c.elect(0)
    c.client(0, "propose", "x")
    reply = c.client(0, "add_learner", 3, client="l")
    assert reply == Reply("l", Config((0, 1, 2), (3,)))
    c.heartbeat(0)
    assert c.nodes[3].sm.values == ["x"]  # type: ignore[attr-defined]
    c.fire(3, "election")  # a learner never campaigns
    assert c.nodes[3].role == "follower"
    assert c.client(0, "add_server", 3, client="v") == Reply("v", Config((0, 1, 2, 3)))
    assert c.client(0, "remove_server", 1, client="r") == Reply("r", Config((0, 2, 3)))
    c.heartbeat(0)
    assert all(c.nodes[i].config == Config((0, 2, 3)) for i in (0, 2, 3))


def test_one_membership_change_at_a_time() -> None:
    c = Cluster(n=5, voters=(0, 1, 2))
    c.elect(0)
    c.partition(0)
    c.run(0, c.nodes[0].on_client(c.now, ClientRequest("a", "add_server", 3)))
    c.run(0, c.nodes[0].on_client(c.now, ClientRequest("b", "add_server", 4)))
    assert c.replies["b"] == Reply("b", Rejected("a configuration change is in progress"), False)
    assert c.nodes[0].config == Config((0, 1, 2, 3))  # in effect once appended


def test_a_leader_that_removes_itself_steps_down_once_committed() -> None:
    c = Cluster()
    c.elect(0)
    reply = c.client(0, "remove_server", 0, client="r")
    assert reply == Reply("r", Config((1, 2)))
    assert c.nodes[0].role == "follower"


# ---------------------------------------------------------------------- bounds and errors


def test_pending_proposals_are_bounded() -> None:
    c = Cluster(max_pending_proposals=2)
    c.elect(0)
    c.partition(0)
    for k in range(3):
        c.run(0, c.nodes[0].on_client(c.now, ClientRequest(k, "propose", k)))
    assert c.replies[2] == Reply(2, Rejected("too many pending proposals (2)"), ok=False)


def test_inflight_appends_are_bounded() -> None:
    c = Cluster(max_inflight=2, max_batch=1)
    c.elect(0)
    c.partition(0)
    c.heal()
    hold = lambda m: isinstance(m, AppendEntriesResponse)  # noqa: E731
    for k in range(6):
        c.run(0, c.nodes[0].on_client(c.now, ClientRequest(k, "propose", k)))
    c.deliver_all(keep=hold)
    assert c.nodes[0].inflight(1) == 2


@pytest.mark.parametrize(
    "call",
    [
        lambda n: n.on_message(0.0, 1, RequestVote(1, 1, 0, 0)),
        lambda n: n.on_timer(0.0, "election"),
        lambda n: n.on_client(0.0, ClientRequest(1, "read")),
    ],
)
def test_inputs_before_start_raise_naming_state_and_input(call: Callable[[RaftNode], Any]) -> None:
    node = RaftNode(0, (0, 1, 2), Register())
    with pytest.raises(RaftStateError, match=r"node 0 \(not started, term 0\) can't take"):
        call(node)


def test_unknown_timer_and_operation_raise() -> None:
    c = Cluster()
    node = c.nodes[0]
    with pytest.raises(RaftStateError, match="timer 'tick'"):
        node.on_timer(0.0, "tick")
    with pytest.raises(RaftStateError, match=r"follower, term 0\) can't take client operation 'x'"):
        node.on_client(0.0, ClientRequest(1, "x"))
    with pytest.raises(RaftStateError, match="restore"):
        node.restore(RaftDurable())


@pytest.mark.parametrize(
    "msg",
    [
        "garbage",
        RequestVote(-1, 1, 0, 0),
        RequestVote(1, 2, 0, 0),  # candidate is not the sender
        AppendEntries(1, 1, 0, 0, (Entry(1, 5, "noop"),), 0),  # index gap
        AppendEntries(1, 1, 0, 0, (Entry(2, 1, "noop"),), 0),  # entry from a later term
        AppendEntriesResponse(1, "yes", 0),  # type: ignore[arg-type]
        attrs.evolve(TimeoutNow(1), term=True),
    ],
)
def test_malformed_messages_are_counted_and_dropped(msg: Any) -> None:
    c = Cluster()
    node = c.nodes[0]
    assert node.on_message(0.0, 1, msg) == []
    assert node.ignored == 1 and node.term == 0


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="max_inflight must be an int > 0"):
        RaftNode(0, (0,), Register(), max_inflight=0)
    with pytest.raises(ValueError, match="heartbeat_interval"):
        RaftNode(0, (0,), Register(), election_timeout=1.0, heartbeat_interval=1.0)
    with pytest.raises(TypeError, match="state_machine"):
        RaftNode(0, (0,), object())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="sorted and distinct"):
        Config((2, 1))
    with pytest.raises(ValueError, match="voters and learners"):
        Config((1,), (1,))


def test_the_docs_example_runs(capsys: pytest.CaptureFixture[str]) -> None:
    import re
    from pathlib import Path

    doc = Path(__file__).resolve().parent.parent / "docs" / "consensus.md"
    blocks = re.findall(r"```python\n(.*?)```", doc.read_text(encoding="utf-8"), re.S)
    found = [b for b in blocks if b.startswith("# example: raft-core\n")]
    assert found, "docs/consensus.md lost its raft-core example"
    exec(compile(found[0], str(doc), "exec"), {"__name__": "consensus_doc"})
    assert capsys.readouterr().out == "5 5\n"
