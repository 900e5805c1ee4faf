"""Exact refusal and error paths of the Raft core (protocols/raft.py) that the
mutation run of ``protocols/`` found unchecked: each refusal is a ``Reply`` to the
asking client, ``ok=False``, with a ``Rejected`` naming the reason, and changes
nothing."""

from __future__ import annotations

import json
import random
import re
from typing import Any

import attrs
import pytest
from tests.test_raft_core import Cluster, Register, committed_everywhere

from trio_foundation.protocols.effects import ClientRequest, Persist, Reply, Send
from trio_foundation.protocols.raft import (
    AppendEntries,
    AppendEntriesResponse,
    Config,
    Entry,
    InstallSnapshot,
    InstallSnapshotResponse,
    NotLeader,
    Proposal,
    RaftDurable,
    RaftNode,
    RaftPersist,
    RaftStateError,
    RaftStatus,
    Rejected,
    RequestVote,
    RequestVoteResponse,
    Snapshot,
    TimeoutNow,
    apply_persist,
    raft_factory,
)


def refused(reason: str, client: Any) -> Reply:
    return Reply(client, Rejected(reason), ok=False)


def ask(c: Cluster, i: int, client: Any, op: str, value: Any = None) -> Reply | None:
    """Send one request to node ``i`` without delivering anything; its reply, if any yet."""
    c.run(i, c.nodes[i].on_client(c.now, ClientRequest(client, op, value)))
    return c.replies.get(client)


def test_reads_beyond_the_bound_are_refused_to_their_client() -> None:
    c = Cluster(max_pending_reads=1)
    c.elect(0)
    c.partition(0)  # no heartbeat answer: the first read stays pending
    assert ask(c, 0, "r1", "read") is None
    assert ask(c, 0, "r2", "read") == refused("too many pending reads (1)", "r2")
    assert c.nodes[0].pending_reads == 1


def test_proposals_beyond_the_uncommitted_bound_are_refused() -> None:
    c = Cluster(max_uncommitted=2)
    c.elect(0)
    c.partition(0)
    last = c.nodes[0].last_index
    ask(c, 0, "p1", "propose", 1)
    ask(c, 0, "p2", "propose", 2)
    assert ask(c, 0, "p3", "propose", 3) == refused("too many uncommitted entries (2)", "p3")
    assert c.nodes[0].last_index == last + 2


def test_a_follower_answers_not_leader_with_the_leader_it_knows() -> None:
    c = Cluster()
    c.elect(0)
    assert ask(c, 1, "p", "propose", 1) == Reply("p", NotLeader(0), ok=False)


def test_a_transfer_to_the_leader_itself_succeeds_at_once() -> None:
    c = Cluster()
    c.elect(0)
    assert ask(c, 0, "t", "transfer_leadership", 0) == Reply("t", 0)
    assert c.nodes[0].role == "leader"


@pytest.mark.parametrize("target", [7, -1, "1", None])
def test_a_transfer_to_a_non_voter_is_refused_naming_it(target: Any) -> None:
    c = Cluster(n=4, voters=(0, 1, 2))
    c.elect(0)
    assert ask(c, 0, "t", "transfer_leadership", target) == refused(
        f"transfer target {target!r} is not a voter of (0, 1, 2)", "t"
    )
    assert ask(c, 0, "p", "propose", 1) is None  # accepted: no transfer in progress
    assert c.nodes[0].pending_proposals == 1


def test_a_transfer_to_a_learner_is_refused() -> None:
    c = Cluster(n=4, voters=(0, 1, 2))
    c.elect(0)
    assert c.client(0, "add_learner", 3, client="l") == Reply("l", Config((0, 1, 2), (3,)))
    assert ask(c, 0, "t", "transfer_leadership", 3) == refused(
        "transfer target 3 is not a voter of (0, 1, 2)", "t"
    )


def test_a_second_transfer_is_refused_while_one_is_in_progress() -> None:
    c = Cluster()
    c.elect(0)
    c.partition(1)
    ask(c, 0, "t1", "transfer_leadership", 1)
    assert ask(c, 0, "t2", "transfer_leadership", 2) == refused(
        "a transfer to 1 is in progress", "t2"
    )
    assert ask(c, 0, "m", "add_learner", 5) == refused("leadership transfer in progress", "m")


@pytest.mark.parametrize(
    ("op", "node", "reason"),
    [
        ("add_server", -1, "node id must be an int >= 0, got -1"),
        ("add_learner", "3", "node id must be an int >= 0, got '3'"),
        ("add_server", 1, "node 1 is already a voter"),
        ("add_learner", 1, "node 1 is already a member"),
        ("add_learner", 3, "node 3 is already a member"),
        ("remove_server", 9, "node 9 is not a member"),
    ],
)
def test_bad_membership_changes_are_refused_naming_the_problem(
    op: str, node: Any, reason: str
) -> None:
    c = Cluster(n=4, voters=(0, 1, 2))
    c.elect(0)
    assert c.client(0, "add_learner", 3, client="l") == Reply("l", Config((0, 1, 2), (3,)))
    assert c.client(0, op, node, client="x") == refused(reason, "x")
    assert c.nodes[0].config == Config((0, 1, 2), (3,))


def test_the_last_voter_cannot_be_removed() -> None:
    c = Cluster(n=1)
    c.elect(0)
    assert c.client(0, "remove_server", 0, client="x") == refused(
        "cannot remove the last voter", "x"
    )
    assert c.nodes[0].config == Config((0,))


def test_a_membership_change_waits_for_an_entry_of_the_leaders_term() -> None:
    c = Cluster(n=4, voters=(0, 1, 2))
    c.fire(0, "election")  # the votes go through; the appends (with the noop) are held
    c.deliver_all(keep=lambda m: isinstance(m, AppendEntries))
    leader = c.nodes[0]
    assert (leader.role, leader.term, leader.commit_index, leader.last_index) == ("leader", 1, 0, 1)
    assert ask(c, 0, "x", "add_learner", 3) == refused(
        "the leader has not yet committed an entry of its term; retry", "x"
    )
    assert leader.config == Config((0, 1, 2)) and leader.last_index == 1


def test_a_membership_change_is_refused_when_proposals_are_full() -> None:
    c = Cluster(n=4, voters=(0, 1, 2), max_pending_proposals=1)
    c.elect(0)
    c.partition(0)
    ask(c, 0, "p", "propose", 1)
    assert ask(c, 0, "x", "add_learner", 3) == refused("too many pending proposals (1)", "x")


def test_a_snapshot_sent_to_a_leader_of_the_same_term_is_counted_and_dropped() -> None:
    c = Cluster()
    c.elect(0)
    leader = c.nodes[0]
    before = (leader.ignored, leader.snapshot_index, leader.last_index, leader.commit_index)
    msg = InstallSnapshot(leader.term, 1, 5, leader.term, Config((0, 1, 2)), b"[1, 2, 3]")
    assert leader.on_message(c.now, 1, msg) == []
    assert (leader.ignored, leader.snapshot_index, leader.last_index, leader.commit_index) == (
        before[0] + 1,
        *before[1:],
    )
    assert leader.role == "leader" and leader.snapshots_installed == 0


def test_a_deposed_leader_refuses_its_pending_proposals_a_snapshot_overwrites() -> None:
    c = Cluster(max_log_entries=4)
    c.elect(0)
    c.partition(0)
    for k in range(30):  # indexes 2..31, never committed
        ask(c, 0, ("old", k), "propose", k)
    c.run_until(c.now + 5.0)  # 1 and 2 elect a leader of term 2
    (new,) = [i for i in (1, 2) if c.nodes[i].role == "leader"]
    for k in range(6):
        assert c.client(new, "propose", ("new", k)) is not None
    c.heartbeat(new)
    idx = c.nodes[new].snapshot_index
    assert 2 <= idx < 31
    c.heal()
    c.heartbeat(new)
    c.heartbeat(new)
    old = c.nodes[0]
    assert (old.role, old.snapshots_installed, old.pending_proposals) == ("follower", 1, 0)
    answered = {key[1] for key in c.replies if isinstance(key, tuple) and key[0] == "old"}
    # at or below the snapshot: the outcome is unknown here (no session), no answer;
    # above it: certainly overwritten, refused
    assert answered == set(range(idx - 1, 30))
    for k in answered:
        assert c.replies[("old", k)] == refused("entry overwritten by a newer leader", ("old", k))


def test_a_follower_echoes_the_read_id_of_a_snapshot_it_installs_or_already_has() -> None:
    c = Cluster()
    c.elect(0)
    follower = c.nodes[1]
    term = follower.term
    snap = InstallSnapshot(term, 0, 5, term, Config((0, 1, 2)), b'["a", "b"]', read_id=7)
    effects = follower.on_message(c.now, 0, snap)
    assert Send(0, InstallSnapshotResponse(term, 5, 7)) in effects
    assert (follower.snapshot_index, follower.sm.values) == (5, ["a", "b"])  # type: ignore[attr-defined]
    stale = attrs.evolve(snap, last_included_index=3, read_id=8)
    assert Send(0, InstallSnapshotResponse(term, 5, 8)) in follower.on_message(c.now, 0, stale)


def test_a_deposed_leader_refuses_its_pending_proposals_a_new_leader_overwrites() -> None:
    c = Cluster()
    c.elect(0)
    c.partition(0)
    for k in range(3):  # indexes 2..4, never committed
        ask(c, 0, ("old", k), "propose", k)
    c.run_until(c.now + 5.0)  # 1 and 2 elect a leader of term 2; its noop is index 2
    (new,) = [i for i in (1, 2) if c.nodes[i].role == "leader"]
    assert c.nodes[new].entry(2) is not None and c.nodes[new].last_index == 2
    c.heal()
    c.heartbeat(new)
    old = c.nodes[0]
    assert (old.role, old.pending_proposals, old.snapshots_installed) == ("follower", 0, 0)
    assert old.log == c.nodes[new].log
    for k in range(3):
        assert c.replies[("old", k)] == refused("entry overwritten by a newer leader", ("old", k))


def test_a_follower_echoes_the_read_id_when_it_rejects_an_append() -> None:
    c = Cluster()
    c.elect(0)
    follower = c.nodes[1]
    term = follower.term
    assert follower.term_at(1) == 1
    conflict = AppendEntries(term, 0, 1, 0, (), 0, read_id=9)  # its entry 1 has term 1, not 0
    sent = [e for e in follower.on_message(c.now, 0, conflict) if isinstance(e, Send)]
    assert sent == [Send(0, AppendEntriesResponse(term, False, 1, 1, 1, 9))]
    gap = AppendEntries(term, 0, 7, term, (), 0, read_id=10)  # it holds nothing at 7
    sent = [e for e in follower.on_message(c.now, 0, gap) if isinstance(e, Send)]
    assert sent == [Send(0, AppendEntriesResponse(term, False, 7, 2, 0, 10))]


def test_the_session_table_forgets_the_least_recently_used_client() -> None:
    c = Cluster(max_sessions=2)
    c.elect(0)
    results = [c.client(0, "propose", Proposal(cid, 1, cid)) for cid in ("a", "b", "c")]
    assert [r.value for r in results if r is not None] == [1, 2, 3]
    # "c" (the newest) is remembered: its retry is answered, not applied again
    assert c.client(0, "propose", Proposal("c", 1, "c"), client="rc") == Reply("rc", 3)
    # "a" (the least recently used) was forgotten: its retry is applied again
    assert c.client(0, "propose", Proposal("a", 1, "a"), client="ra") == Reply("ra", 4)
    assert c.nodes[0].sm.values == ["a", "b", "c", "a"]  # type: ignore[attr-defined]


def test_a_restart_lease_ends_at_T_even_if_a_leader_was_heard_then_forgotten() -> None:
    """The restart promise lasts exactly T from the start; a leader heard during it
    and then forgotten (a newer term, leader unknown) does not extend it."""
    node = RaftNode(1, (0, 1, 2), Register(), election_timeout=1.0)
    node.restore(RaftDurable(term=1))
    node.on_start(10.0, random.Random(0))
    node.on_message(10.5, 0, AppendEntries(1, 0, 0, 0, (), 0))  # leader 0 heard at 10.5
    assert node.status().leader == 0
    node.on_message(10.6, 2, RequestVoteResponse(2, False))  # term 2: leader unknown
    assert (node.term, node.status().leader) == (2, None)
    pre = RequestVote(3, 2, 0, 0, pre_vote=True)
    assert node.on_message(10.9, 2, pre) == [] and node.lease_ignored == 1
    assert node.on_message(11.0, 2, pre) == [Send(2, RequestVoteResponse(3, True, True))]


def test_a_leader_keeps_its_lease_however_long_it_has_led() -> None:
    c = Cluster()
    c.elect(0)
    c.run_until(c.now + 10.0)  # heartbeats for 10 T
    leader = c.nodes[0]
    assert leader.role == "leader" and leader.term == 1
    assert leader.on_message(c.now, 2, RequestVote(5, 2, 99, 1)) == []
    assert (leader.role, leader.term, leader.lease_ignored) == ("leader", 1, 1)


@pytest.mark.parametrize("stale", ["append", "snapshot"])
def test_a_stale_leader_is_told_the_newer_term(stale: str) -> None:
    c = Cluster()
    c.elect(0)
    c.nodes[0].on_message(c.now, 1, RequestVoteResponse(3, False))  # 0 now has term 3
    node = c.nodes[0]
    msg: Any = (
        AppendEntries(2, 1, 0, 0, (), 0)
        if stale == "append"
        else InstallSnapshot(2, 1, 5, 2, Config((0, 1, 2)), b"[]")
    )
    assert node.on_message(c.now, 1, msg) == [Send(1, AppendEntriesResponse(3, False, 0))]


def test_a_transfer_cut_short_by_a_newer_term_is_refused() -> None:
    c = Cluster()
    c.elect(0)
    c.partition(1)
    c.client(0, "propose", "x")  # 1 lags: no TimeoutNow yet
    assert ask(c, 0, "t", "transfer_leadership", 1) is None
    c.run(0, c.nodes[0].on_message(c.now, 2, RequestVoteResponse(4, False)))
    assert c.nodes[0].role == "follower"
    assert c.replies["t"] == refused("leadership lost before the transfer", "t")


def test_a_pre_vote_for_the_current_term_is_refused() -> None:
    node = RaftNode(1, (0, 1, 2), Register(), election_timeout=1.0)
    node.restore(RaftDurable(term=2))
    node.on_start(0.0, random.Random(0))
    # past the restart lease, leader unknown, the candidate's log as good: only the term
    assert node.on_message(5.0, 2, RequestVote(2, 2, 0, 0, pre_vote=True)) == [
        Send(2, RequestVoteResponse(2, False, True))
    ]
    assert node.on_message(5.0, 2, RequestVote(3, 2, 0, 0, pre_vote=True)) == [
        Send(2, RequestVoteResponse(3, True, True))
    ]


def test_the_log_is_compacted_only_above_max_log_entries() -> None:
    c = Cluster(max_log_entries=4)
    c.elect(0)  # the noop: index 1
    for k in range(3):
        c.client(0, "propose", k)
    committed_everywhere(c)
    assert [(n.snapshot_index, len(n.log)) for n in c.nodes.values()] == [(0, 4)] * 3
    c.client(0, "propose", 3)
    committed_everywhere(c)
    assert [(n.snapshot_index, len(n.log)) for n in c.nodes.values()] == [(5, 0)] * 3


def test_an_election_timer_that_fires_at_a_leader_does_nothing() -> None:
    c = Cluster()
    c.elect(0)
    leader = c.nodes[0]
    before = leader.status()
    assert leader.on_timer(c.now + 5.0, "election") == []
    assert leader.status() == before and leader.role == "leader"


def test_a_message_before_start_names_its_type() -> None:
    node = RaftNode(0, (0, 1, 2), Register())
    with pytest.raises(
        RaftStateError, match=r"^node 0 \(not started, term 0\) can't take message RequestVote$"
    ):
        node.on_message(0.0, 1, RequestVote(1, 1, 0, 0))


def test_a_fresh_node_has_no_durable_state_and_has_voted_for_nobody() -> None:
    node = RaftNode(0, (0, 1, 2), Register())
    assert node.voted_for is None
    assert node.snapshot_persistent() == RaftDurable()


def test_read_rounds_are_numbered_from_one_and_heartbeats_before_carry_zero() -> None:
    c = Cluster()
    c.elect(0)
    sent = c.nodes[0].on_timer(c.now, "heartbeat")
    assert {e.msg.read_id for e in sent if isinstance(e, Send)} == {0}
    sent = c.nodes[0].on_client(c.now, ClientRequest("r", "read"))
    assert [(e.to, e.msg.read_id) for e in sent if isinstance(e, Send)] == [(1, 1), (2, 1)]


def test_status_summarises_the_node() -> None:
    c = Cluster()
    c.elect(0)
    c.client(0, "propose", "x")
    committed_everywhere(c)
    assert c.nodes[0].status() == RaftStatus(0, "leader", 1, 0, 2, 2, 2, 0, Config((0, 1, 2)), 0)
    assert c.nodes[1].status() == RaftStatus(1, "follower", 1, 0, 2, 2, 2, 0, Config((0, 1, 2)), 0)


def test_an_overwritten_config_entry_gives_the_previous_config_back() -> None:
    c = Cluster(n=4, voters=(0, 1, 2))
    c.elect(0)
    c.partition(0)
    assert ask(c, 0, "l", "add_learner", 3) is None  # index 2, in effect once appended
    assert (c.nodes[0].config, c.nodes[0].config_index) == (Config((0, 1, 2), (3,)), 2)
    c.run_until(c.now + 5.0)  # 1 and 2 elect a leader of term 2: its noop is index 2
    (new,) = [i for i in (1, 2) if c.nodes[i].role == "leader"]
    c.heal()
    c.heartbeat(new)
    old = c.nodes[0]
    assert (old.role, old.entry(2)) == ("follower", c.nodes[new].entry(2))
    assert (old.config, old.config_index) == (Config((0, 1, 2)), 0)
    assert c.replies["l"] == refused("entry overwritten by a newer leader", "l")


def test_a_read_is_served_when_the_heartbeat_round_is_answered() -> None:
    c = Cluster()
    c.elect(0)
    c.client(0, "propose", "x")
    committed_everywhere(c)
    commit = c.nodes[0].commit_index
    assert c.client(0, "read", client="r") == Reply("r", "x")
    assert c.nodes[0].commit_index == commit  # nothing new committed on the way


def test_a_negative_request_id_is_an_error_naming_it() -> None:
    c = Cluster()
    c.elect(0)
    with pytest.raises(ValueError, match=r"^request_id must be an int >= 0, got -1$"):
        c.nodes[0].on_client(c.now, ClientRequest("p", "propose", Proposal("c", -1, "x")))


def test_a_plain_command_is_logged_as_a_proposal_without_a_session() -> None:
    c = Cluster()
    c.elect(0)
    c.client(0, "propose", "x")
    assert c.nodes[0].entry(2) == Entry(1, 2, "command", Proposal(None, 0, "x"))


def test_a_stale_rejection_from_a_replicating_follower_is_ignored() -> None:
    """A rejection of an index at or below what the follower already matched is old
    news: the leader keeps pipelining to it rather than falling back to one probe."""
    c = Cluster()
    c.elect(0)
    c.client(0, "propose", "x")
    committed_everywhere(c)
    leader = c.nodes[0]
    assert leader.last_index == 2  # follower 1 matches up to 2
    stale = AppendEntriesResponse(leader.term, False, 1, 1, 1)  # rejects index 1 <= its match
    assert leader.on_message(c.now, 1, stale) == []
    # still replicating (not back to probing): two proposals go out at once, pipelined
    ask(c, 0, "p1", "propose", 1)
    ask(c, 0, "p2", "propose", 2)
    assert leader.inflight(1) == 2


def test_entries_the_snapshot_covers_are_skipped_and_a_committed_overwrite_refused() -> None:
    """What a follower does with a broken leader's appends: entries at or below its
    snapshot are committed and skipped, never compared; one that would overwrite a
    committed entry above the snapshot is refused, counted once, and not answered."""
    c = Cluster()
    c.elect(0)
    follower = c.nodes[1]
    snap = InstallSnapshot(1, 0, 5, 1, Config((0, 1, 2)), b'["a", "b"]')
    follower.on_message(c.now, 0, snap)
    assert (follower.snapshot_index, follower.commit_index) == (5, 5)
    # entry 5 claims term 2 (the snapshot says 1): skipped; entry 6 appended
    effects = follower.on_message(
        c.now, 0, AppendEntries(2, 0, 4, 1, (Entry(2, 5, "noop"), Entry(2, 6, "noop")), 6)
    )
    assert Send(0, AppendEntriesResponse(2, True, 6)) in effects
    assert (follower.last_index, follower.commit_index, follower.overwrite_refused) == (6, 6, 0)
    # entry 6 is committed now: a term-3 leader rewriting it is refused
    before = follower.ignored
    effects = follower.on_message(c.now, 0, AppendEntries(3, 0, 5, 1, (Entry(3, 6, "noop"),), 6))
    assert [e for e in effects if isinstance(e, Send)] == []
    assert (follower.overwrite_refused, follower.ignored - before) == (1, 1)
    assert follower.entry(6) == Entry(2, 6, "noop")


class Dict:
    """A test state machine whose reads depend on the query: apply (key, value), query key."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}

    def apply(self, command: Any) -> Any:
        key, value = command
        self.data[key] = value
        return len(self.data)

    def query(self, query: Any) -> Any:
        return self.data.get(query)

    def snapshot(self) -> bytes:
        return json.dumps(self.data).encode()

    def restore(self, data: bytes) -> None:
        self.data = json.loads(data)


def test_a_read_answers_the_query_it_was_asked() -> None:
    node = RaftNode(0, (0,), Dict())
    node.on_start(0.0, random.Random(0))
    node.on_timer(2.0, "election")  # a single voter elects itself
    assert node.role == "leader"
    for key, value in (("a", 1), ("b", 2)):
        node.on_client(2.0, ClientRequest(key, "propose", (key, value)))
    replies = [e for k in "ab" for e in node.on_client(2.0, ClientRequest(f"r{k}", "read", k))]
    assert replies == [Reply("ra", 1), Reply("rb", 2)]


def test_a_transfer_is_answered_with_the_new_leader_when_its_append_comes_first() -> None:
    c = Cluster()
    c.elect(0)
    c.client(0, "propose", "x")  # 2 is up to date: TimeoutNow goes out at once
    assert ask(c, 0, "t", "transfer_leadership", 2) is None
    (timeout_now,) = c.net
    c.net = []
    src, dst, msg = timeout_now
    assert (src, dst, type(msg)) == (0, 2, TimeoutNow)
    c.run(2, c.nodes[2].on_message(c.now, 0, msg))
    c.net = [(s, d, m) for s, d, m in c.net if d != 0]  # 0 never sees 2's vote request
    c.deliver_all()  # 1 votes; 2 leads and appends to 0
    assert (c.nodes[0].role, c.nodes[0].leader_id, c.nodes[2].role) == ("follower", 2, "leader")
    assert c.replies["t"] == Reply("t", 2)


def test_a_follower_owed_a_snapshot_gets_it_again_on_heartbeat() -> None:
    c = Cluster(max_log_entries=4)
    c.elect(0)
    c.partition(2)
    for k in range(10):
        c.client(0, "propose", k)
    c.heartbeat(0)
    leader = c.nodes[0]
    assert leader.snapshot_index > 1
    c.heal()
    c.fire(0, "heartbeat")
    c.deliver_all(keep=lambda m: isinstance(m, InstallSnapshot))  # the snapshot is held
    assert [type(m) for s, d, m in c.net if d == 2] == [InstallSnapshot]
    c.net = []
    # a late success answer moves 2's next index past the snapshot; the snapshot is
    # still outstanding, so the next heartbeat sends it again, not an append
    late = AppendEntriesResponse(leader.term, True, leader.last_index)
    assert leader.on_message(c.now, 2, late) == []
    to_two = [
        e.msg for e in leader.on_timer(c.now, "heartbeat") if isinstance(e, Send) and e.to == 2
    ]
    assert [type(m) for m in to_two] == [InstallSnapshot]


def test_a_followers_lease_ends_exactly_T_after_it_last_heard_the_leader() -> None:
    node = RaftNode(1, (0, 1, 2), Register(), election_timeout=1.0)
    node.on_start(0.0, random.Random(0))
    node.on_message(10.0, 0, AppendEntries(1, 0, 0, 0, (), 0))  # leader 0 heard at 10.0
    pre = RequestVote(2, 2, 0, 0, pre_vote=True)
    assert node.on_message(10.9, 2, pre) == [] and node.lease_ignored == 1
    assert node.on_message(11.0, 2, pre) == [Send(2, RequestVoteResponse(2, True, True))]


def test_the_default_bounds() -> None:
    node = RaftNode(0, (0, 1, 2), Register())
    assert (node.election_timeout, node.heartbeat_interval, node.pre_vote, node.check_quorum) == (
        1.0,
        0.1,
        True,
        True,
    )
    assert (node.max_batch, node.max_inflight) == (64, 8)
    assert (node.max_pending_proposals, node.max_pending_reads, node.max_uncommitted) == (
        1024,
        1024,
        1024,
    )
    assert (node.max_log_entries, node.max_sessions) == (10_000, 10_000)


def test_a_lagging_follower_is_fed_entry_after_entry_as_it_acknowledges() -> None:
    """With one entry per append and one append in flight, a follower behind by 4
    entries catches up within a single heartbeat round: each acknowledgement makes
    the leader send the next entry at once, not at the next heartbeat."""
    c = Cluster(max_batch=1, max_inflight=1)
    c.elect(0)
    c.partition(2)
    for k in range(4):
        c.client(0, "propose", k)
    c.heal()
    c.heartbeat(0)
    assert c.nodes[2].last_index == c.nodes[0].last_index == 5


def test_each_misplaced_timeout_now_is_counted() -> None:
    c = Cluster()
    c.elect(0)
    follower = c.nodes[1]
    for _ in range(2):  # from a node that is not its leader
        assert follower.on_message(c.now, 2, TimeoutNow(follower.term)) == []
    assert follower.ignored == 2 and follower.role == "follower"


def test_a_deposed_leader_answers_from_the_session_table_a_retry_the_new_leader_applied() -> None:
    c = Cluster(max_log_entries=2)
    c.elect(0)
    c.partition(0)
    assert ask(c, 0, "first", "propose", Proposal("c", 5, "x")) is None  # index 2, stuck
    c.run_until(c.now + 5.0)  # 1 and 2 elect a leader of term 2
    (new,) = [i for i in (1, 2) if c.nodes[i].role == "leader"]
    # the client retries the same request at the new leader: applied once, result 1
    assert c.client(new, "propose", Proposal("c", 5, "x"), client="retry") == Reply("retry", 1)
    for k in range(3):
        c.client(new, "propose", k)
    c.heartbeat(new)
    assert c.nodes[new].snapshot_index >= 2
    c.heal()
    c.heartbeat(new)
    c.heartbeat(new)
    assert c.nodes[0].snapshots_installed == 1
    # the old leader's pending request 5 of "c" is answered from the snapshot's sessions
    assert c.replies["first"] == Reply("first", 1)


def test_a_rejection_names_the_first_index_of_the_conflicting_term() -> None:
    node = RaftNode(1, (0, 1, 2), Register())
    terms = (1, 1, 2, 2)
    node.restore(
        RaftDurable(term=2, log=tuple(Entry(t, i, "noop") for i, t in enumerate(terms, 1)))
    )
    node.on_start(0.0, random.Random(0))
    effects = node.on_message(5.0, 0, AppendEntries(3, 0, 4, 3, (), 0))  # its entry 4: term 2
    assert [e for e in effects if isinstance(e, Send)] == [
        Send(0, AppendEntriesResponse(3, False, 4, 3, 2))
    ]


def test_stray_pre_vote_grants_do_not_make_a_follower_campaign() -> None:
    node = RaftNode(1, (0, 1, 2), Register())
    node.restore(RaftDurable(term=1))
    node.on_start(0.0, random.Random(0))
    for peer in (0, 2):  # past the restart lease; node 1 never asked
        assert node.on_message(5.0, peer, RequestVoteResponse(2, True, True)) == []
    assert (node.role, node.term) == ("follower", 1)


def test_a_stale_vote_request_is_refused_to_its_sender() -> None:
    node = RaftNode(1, (0, 1, 2), Register())
    node.restore(RaftDurable(term=3))
    node.on_start(0.0, random.Random(0))
    for pre_vote in (False, True):
        effects = node.on_message(5.0, 2, RequestVote(2, 2, 9, 2, pre_vote=pre_vote))
        assert effects == [Send(2, RequestVoteResponse(3, False, pre_vote))]


def test_a_new_leader_cancels_its_election_timer() -> None:
    c = Cluster()
    c.elect(0)
    assert "election" not in c.timers[0]
    assert {"heartbeat", "check_quorum"} <= set(c.timers[0])


def test_a_config_entry_without_a_config_is_malformed() -> None:
    c = Cluster()
    c.elect(0)
    follower = c.nodes[1]
    bad = AppendEntries(1, 0, 1, 1, (Entry(1, 2, "config", "voters 0 1 2"),), 1)
    assert follower.on_message(c.now, 0, bad) == []
    assert follower.ignored == 1 and follower.last_index == 1


def test_an_installed_snapshot_counts_as_hearing_from_the_leader() -> None:
    c = Cluster()
    c.elect(0)
    follower = c.nodes[1]
    snap = InstallSnapshot(1, 0, 5, 1, Config((0, 1, 2)), b'["a"]')
    follower.on_message(100.0, 0, snap)
    assert follower.on_message(100.5, 2, RequestVote(5, 2, 9, 1)) == []
    assert (follower.lease_ignored, follower.term) == (1, 1)


def test_a_snapshot_keeps_the_config_of_its_last_entry_not_a_later_one() -> None:
    c = Cluster(n=4, voters=(0, 1, 2), max_log_entries=3)
    c.elect(0)
    for k in range(5):
        c.client(0, "propose", k)
    c.heartbeat(0)
    leader = c.nodes[0]
    assert 0 < leader.snapshot_index < leader.last_applied == leader.commit_index
    c.partition(0)
    assert ask(c, 0, "l", "add_learner", 3) is None  # appended after last_applied
    assert ask(c, 0, "c", "compact") == Reply("c", leader.last_applied)
    assert leader.snapshot is not None and leader.snapshot.config == Config((0, 1, 2))
    assert leader.config == Config((0, 1, 2), (3,))


def test_a_fresh_node_without_restore_can_change_membership() -> None:
    node = RaftNode(0, (0,), Register())
    assert (node.config, node.config_index) == (Config((0,)), 0)
    node.on_start(0.0, random.Random(0))
    node.on_timer(2.0, "election")
    assert node.role == "leader" and node.commit_index == 1
    effects = node.on_client(2.0, ClientRequest("l", "add_learner", 1))
    assert node.config == Config((0,), (1,)) and node.config_index == 2
    # a single voter commits the change alone
    assert [e for e in effects if isinstance(e, Reply)] == [Reply("l", Config((0,), (1,)))]


def _follower_with_five_entries() -> RaftNode:
    """Node 1 of (0, 1, 2), holding entries 1..5 of term 1 from leader 0 (2 committed)."""
    node = RaftNode(1, (0, 1, 2), Register())
    node.on_start(0.0, random.Random(0))
    entries = tuple(Entry(1, i, "command", f"v{i}") for i in range(1, 6))
    node.on_message(0.1, 0, AppendEntries(1, 0, 0, 0, entries, 2))
    assert (node.last_index, node.commit_index) == (5, 2)
    return node


def test_a_snapshot_that_matches_the_log_keeps_the_entries_after_it() -> None:
    node = _follower_with_five_entries()
    data = b'["v1", "v2", "v3"]'
    effects = node.on_message(0.2, 0, InstallSnapshot(1, 0, 3, 1, Config((0, 1, 2)), data))
    snap = Snapshot(3, 1, Config((0, 1, 2)), data, ())
    assert [e for e in effects if isinstance(e, Persist | Send)] == [
        Persist(RaftPersist(1, None, None, (), snap)),  # nothing truncated
        Send(0, InstallSnapshotResponse(1, 3, 0)),
    ]
    assert (node.snapshot_index, node.last_index, node.commit_index) == (3, 5, 3)
    assert [node.entry(i) for i in (4, 5)] == [
        Entry(1, 4, "command", "v4"),
        Entry(1, 5, "command", "v5"),
    ]


def test_a_snapshot_that_conflicts_with_the_log_truncates_everything_after_it() -> None:
    node = _follower_with_five_entries()
    data = b'["v1", "v2", "w3"]'
    # the snapshot's last entry is of term 2: every entry held after 2 conflicts
    effects = node.on_message(0.2, 0, InstallSnapshot(2, 0, 3, 2, Config((0, 1, 2)), data))
    snap = Snapshot(3, 2, Config((0, 1, 2)), data, ())
    persists = [e.data for e in effects if isinstance(e, Persist)]
    assert persists == [RaftPersist(2, None, 4, (), snap)]  # truncate from index 4
    assert (node.snapshot_index, node.last_index, node.entry(4)) == (3, 3, None)


def test_after_a_snapshot_answer_the_leader_sends_the_entries_after_it_at_once() -> None:
    c = Cluster(max_log_entries=4)
    c.elect(0)
    c.partition(2)
    for k in range(10):
        c.client(0, "propose", k)
    c.heartbeat(0)
    leader = c.nodes[0]
    c.client(0, "propose", "after")  # an entry beyond the snapshot
    assert leader.last_index > leader.snapshot_index > 1
    c.heal()
    c.fire(0, "heartbeat")
    c.net = [(s, d, m) for s, d, m in c.net if d == 2]
    assert [type(m) for _, _, m in c.net] == [InstallSnapshot]
    c.net = []
    answer = InstallSnapshotResponse(leader.term, leader.snapshot_index, 0)
    sent = [e.msg for e in leader.on_message(c.now, 2, answer) if isinstance(e, Send)]
    assert len(sent) == 1 and isinstance(sent[0], AppendEntries)
    assert sent[0].prev_log_index == leader.snapshot_index
    assert [e.index for e in sent[0].entries] == list(
        range(leader.snapshot_index + 1, leader.last_index + 1)
    )


@pytest.mark.parametrize(
    "answer",
    [
        InstallSnapshotResponse(1, -1, 0),
        InstallSnapshotResponse(-1, 1, 0),
        InstallSnapshotResponse(1, 1, -1),
        InstallSnapshotResponse(1, 1, "0"),  # type: ignore[arg-type]
    ],
)
def test_a_malformed_snapshot_answer_is_counted_and_dropped(
    answer: InstallSnapshotResponse,
) -> None:
    c = Cluster()
    c.elect(0)
    leader = c.nodes[0]
    assert leader.term == 1
    before = (leader.ignored, leader.commit_index, leader.inflight(1))
    assert leader.on_message(c.now, 1, answer) == []
    assert (leader.ignored, leader.commit_index, leader.inflight(1)) == (
        before[0] + 1,
        *before[1:],
    )


@pytest.mark.parametrize(
    "name",
    [
        "max_batch",
        "max_inflight",
        "max_pending_proposals",
        "max_pending_reads",
        "max_uncommitted",
        "max_log_entries",
        "max_sessions",
    ],
)
def test_each_bound_below_one_is_an_error_naming_it(name: str) -> None:
    with pytest.raises(ValueError, match=f"^{name} must be an int > 0, got 0$"):
        bound: dict[str, Any] = {name: 0}
        RaftNode(0, (0,), Register(), **bound)


@pytest.mark.parametrize(
    ("voters", "learners", "text"),
    [
        ((1, -1), (), "voters must be a tuple of node ids >= 0, got (1, -1)"),
        ([0, 1], (), "voters must be a tuple of node ids >= 0, got [0, 1]"),
        ((2, 1), (), "voters must be sorted and distinct, got (2, 1)"),
        ((1, 1), (), "voters must be sorted and distinct, got (1, 1)"),
        ((0,), (3, 2), "learners must be sorted and distinct, got (3, 2)"),
        ((0,), ("3",), "learners must be a tuple of node ids >= 0, got ('3',)"),
        ((0, 1), (1,), "nodes [1] are voters and learners"),
        ((), (), "a configuration needs at least one voter"),
    ],
)
def test_a_bad_configuration_is_an_error_naming_the_field(
    voters: Any, learners: Any, text: str
) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(text)}$"):
        Config(voters, learners)


def test_a_persist_record_whose_entries_leave_a_gap_is_refused_naming_both_indexes() -> None:
    durable = RaftDurable(1, None, None, (Entry(1, 1, "noop"), Entry(1, 2, "noop")))
    with pytest.raises(ValueError, match=r"^entry index 4 does not follow the log \(expected 3\)$"):
        apply_persist(durable, RaftPersist(1, None, None, (Entry(1, 4, "noop"),)))
    # after a truncation the next entry follows the kept part
    kept = apply_persist(durable, RaftPersist(1, None, 2, (Entry(1, 2, "command", "x"),)))
    assert kept.log == (Entry(1, 1, "noop"), Entry(1, 2, "command", "x"))
    with pytest.raises(ValueError, match=r"^entry index 1 does not follow the log \(expected 6\)$"):
        snap = Snapshot(5, 1, Config((0,)), b"[]")
        apply_persist(RaftDurable(), RaftPersist(1, None, None, (Entry(1, 1, "noop"),), snap))


@pytest.mark.parametrize(
    ("args", "error", "text"),
    [
        ({"node": -1}, ValueError, "node id must be an int >= 0, got -1"),
        (
            {"state_machine": object()},
            TypeError,
            "state_machine needs apply, query, snapshot and restore methods",
        ),
        ({"election_timeout": 0}, ValueError, "election_timeout must be > 0, got 0"),
        (
            {"heartbeat_interval": 1.0},
            ValueError,
            "heartbeat_interval must be in (0, 1.0), got 1.0",
        ),
        (
            {"election_timeout": 2.0, "heartbeat_interval": 0},
            ValueError,
            "heartbeat_interval must be in (0, 2.0), got 0",
        ),
    ],
)
def test_bad_node_arguments_are_errors_naming_them(
    args: dict[str, Any], error: type[Exception], text: str
) -> None:
    kwargs: dict[str, Any] = {"node": 0, "voters": (0,), "state_machine": Register(), **args}
    with pytest.raises(error, match=f"^{re.escape(text)}$"):
        RaftNode(**kwargs)


def test_the_default_heartbeat_is_a_tenth_of_the_election_timeout() -> None:
    node = RaftNode(0, (0,), Register(), election_timeout=2.0)
    assert (node.election_timeout, node.heartbeat_interval) == (2.0, 0.2)


def test_restore_refuses_another_type_and_a_started_node_by_name() -> None:
    node = RaftNode(0, (0,), Register())
    with pytest.raises(TypeError, match=r"^expected RaftDurable, got dict$"):
        node.restore({})
    node.on_start(0.0, random.Random(0))
    with pytest.raises(RaftStateError, match=r"^node 0 \(follower, term 0\) can't take restore$"):
        node.restore(RaftDurable())
    with pytest.raises(RaftStateError, match=r"^node 0 \(follower, term 0\) can't take on_start$"):
        node.on_start(0.0, random.Random(0))


def test_a_request_older_than_the_clients_last_is_refused_naming_both() -> None:
    c = Cluster()
    c.elect(0)
    assert c.client(0, "propose", Proposal("c", 2, "x"), client="p2") == Reply("p2", 1)
    assert c.client(0, "propose", Proposal("c", 1, "y"), client="p1") == refused(
        "stale request id 1 of client 'c'", "p1"
    )
    assert c.nodes[0].sm.values == ["x"]  # type: ignore[attr-defined]


def test_misuse_errors_name_the_node_its_state_and_the_input() -> None:
    c = Cluster()
    c.elect(0)
    leader = c.nodes[0]
    with pytest.raises(
        RaftStateError, match=r"^node 0 \(leader, term 1\) can't take timer 'tick'$"
    ):
        leader.on_timer(c.now, "tick")
    with pytest.raises(
        RaftStateError, match=r"^node 0 \(leader, term 1\) can't take client operation 'x'$"
    ):
        leader.on_client(c.now, ClientRequest(1, "x"))
    fresh = RaftNode(3, (0, 1, 2), Register())
    with pytest.raises(
        RaftStateError, match=r"^node 3 \(not started, term 0\) can't take timer 'election'$"
    ):
        fresh.on_timer(0.0, "election")


def test_a_candidate_persists_its_vote_for_itself_and_refuses_a_rival() -> None:
    node = RaftNode(1, (0, 1, 2), Register(), pre_vote=False)
    node.on_start(0.0, random.Random(0))
    effects = node.on_timer(5.0, "election")
    assert [e for e in effects if isinstance(e, Persist)] == [Persist(RaftPersist(1, 1))]
    assert [e for e in effects if isinstance(e, Send)] == [
        Send(0, RequestVote(1, 1, 0, 0)),
        Send(2, RequestVote(1, 1, 0, 0)),
    ]
    assert (node.role, node.voted_for) == ("candidate", 1)
    assert node.on_message(5.1, 2, RequestVote(1, 2, 0, 0)) == [
        Send(2, RequestVoteResponse(1, False, False))
    ]


def test_every_stale_answer_is_counted() -> None:
    c = Cluster()
    c.elect(0)
    c.elect(1)  # term 2: node 0 hears of it
    node = c.nodes[1]
    assert node.term == 2 and node.role == "leader"
    before = node.ignored
    for stale in (
        AppendEntriesResponse(1, True, 1),
        RequestVoteResponse(1, True),
        InstallSnapshotResponse(1, 1, 0),
    ):
        assert node.on_message(c.now, 0, stale) == []
    assert node.ignored == before + 3


def test_an_append_from_a_second_leader_of_the_same_term_is_counted_and_dropped() -> None:
    c = Cluster()
    c.elect(0)
    leader = c.nodes[0]
    before = (leader.ignored, leader.last_index, leader.commit_index)
    rival = AppendEntries(leader.term, 1, 0, 0, (Entry(leader.term, 1, "noop"),), 1)
    assert leader.on_message(c.now, 1, rival) == []
    assert (leader.ignored, leader.last_index, leader.commit_index) == (
        before[0] + 1,
        *before[1:],
    )
    assert (leader.role, leader.leader_id) == ("leader", 0)


def test_inflight_is_zero_for_a_follower_and_for_a_peer_the_leader_does_not_track() -> None:
    c = Cluster()
    c.elect(0)
    assert c.nodes[1].inflight(0) == 0
    assert c.nodes[0].inflight(7) == 0
    assert c.nodes[0].inflight(1) == 0  # every append answered


def test_the_factory_passes_its_options_on() -> None:
    node = raft_factory(Register, election_timeout=2.0, max_batch=3)(1, 3)
    assert (node.id, node.election_timeout, node.max_batch) == (1, 2.0, 3)
    assert node.config == Config((0, 1, 2))


def test_a_pre_vote_request_is_not_a_transfer() -> None:
    node = RaftNode(1, (0, 1, 2), Register())  # pre_vote on by default
    node.on_start(0.0, random.Random(0))
    sent = [e for e in node.on_timer(5.0, "election") if isinstance(e, Send)]
    assert sent == [
        Send(0, RequestVote(1, 1, 0, 0, pre_vote=True, transfer=False)),
        Send(2, RequestVote(1, 1, 0, 0, pre_vote=True, transfer=False)),
    ]
    assert (node.role, node.term) == ("pre_candidate", 0)


def test_a_snapshot_answer_matching_the_leaders_last_index_is_taken() -> None:
    c = Cluster()
    c.elect(0)
    c.partition(2)
    for k in range(3):
        c.client(0, "propose", k)
    leader = c.nodes[0]
    assert ask(c, 0, "c", "compact") == Reply("c", leader.last_index)
    assert leader.snapshot_index == leader.last_index
    before = leader.ignored
    answer = InstallSnapshotResponse(leader.term, leader.last_index, 0)
    leader.on_message(c.now, 2, answer)
    assert leader.ignored == before


def test_a_rejection_of_exactly_the_matched_index_is_stale_too() -> None:
    c = Cluster()
    c.elect(0)
    c.client(0, "propose", "x")
    committed_everywhere(c)
    leader = c.nodes[0]
    assert leader.last_index == 2  # follower 1 matches up to 2
    stale = AppendEntriesResponse(leader.term, False, 2, 1, 1)  # rejects index 2 == its match
    assert leader.on_message(c.now, 1, stale) == []
    ask(c, 0, "p1", "propose", 1)
    ask(c, 0, "p2", "propose", 2)
    assert leader.inflight(1) == 2  # still pipelining


def test_a_probe_with_entries_waits_for_its_answer_before_the_next() -> None:
    c = Cluster()
    c.partition(2)
    c.elect(0)  # with 1's vote; its first append to 2 (a probe with the noop) is lost
    leader = c.nodes[0]
    assert leader.role == "leader" and leader.last_index == 1
    effects = leader.on_client(c.now, ClientRequest("p", "propose", 1))
    assert [e.to for e in effects if isinstance(e, Send)] == [1]  # not 2: its probe is out
    effects = leader.on_timer(c.now, "heartbeat")  # a heartbeat may probe again
    assert sorted(e.to for e in effects if isinstance(e, Send)) == [1, 2]
