"""The ABD register core's edges, one exact check each: quorum sizes, retry and
give-up counts, incarnation checks, the broken variants' own mechanics, and the
error messages.

Written for the survivors of a mutation run (``benchmarks/mutation.py register``;
docs/verification.md lists them): the simulator and the state machine exercise the
happy paths, and a change that only alters a count, a message or a broken variant's
mechanics went unnoticed.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from trio_foundation.protocols.effects import (
    CancelTimer,
    ClientRequest,
    Effect,
    Persist,
    Reply,
    Send,
    SetTimer,
)
from trio_foundation.protocols.register import (
    HEARTBEAT_INTERVAL,
    INITIAL_TAG,
    MAX_ATTEMPTS,
    QUERY_ATTEMPTS,
    RETRY_INTERVAL,
    SUSPECT_AFTER,
    AbdRegister,
    Heartbeat,
    Query,
    QueryAck,
    RegisterState,
    Store,
    StoreAck,
    register_factory,
)

LAZY_TIMER = "lazy:1"
RETRY_TIMER = "retry:1"


def started(node: int = 0, nodes: int = 5, **kwargs: Any) -> AbdRegister:
    core = AbdRegister(node, nodes, **kwargs)
    core.on_start(0.0, random.Random(0))
    return core


def sends(effects: list[Effect]) -> list[tuple[int, Any]]:
    return [(e.to, e.msg) for e in effects if isinstance(e, Send)]


# ------------------------------------------------------------------ errors


def test_an_unknown_variant_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match=r"^unknown register variant 'bogus'$"):
        AbdRegister(0, 3, variant="bogus")  # type: ignore[arg-type]
    with pytest.raises(
        ValueError,
        match=(
            r"^unknown register variant 'bogus'; known: correct, stale-read, lost-write,"
            r" split-brain$"
        ),
    ):
        register_factory("bogus")  # type: ignore[arg-type]


@pytest.mark.parametrize("node", [-1, 3])
def test_a_node_outside_the_cluster_is_refused(node: int) -> None:
    with pytest.raises(ValueError, match=rf"^node must be in \[0, 3\), got {node}$"):
        AbdRegister(node, 3)


def test_restore_refuses_a_foreign_snapshot_and_keeps_a_good_one() -> None:
    core = AbdRegister(0, 3)
    with pytest.raises(TypeError, match=r"^expected a RegisterState, got 'junk'$"):
        core.restore("junk")
    state = RegisterState((2, 1, 1, 1), "v", 3)
    core.restore(state)
    assert core.snapshot_persistent() == state
    assert core.state == state


# ------------------------------------------------------------------ quorums


def test_a_read_needs_a_majority_of_five_in_each_phase() -> None:
    core = started(0, 5)
    effects = core.on_client(0.0, ClientRequest("c", "read"))
    assert sends(effects) == [(p, Query((0, 1, 1))) for p in (1, 2, 3, 4)]
    # the coordinator and one peer: 2 of 5, not a quorum
    assert core.on_message(0.0, 1, QueryAck((0, 1, 1), (1, 3, 1, 1), "x")) == []
    # a second peer: 3 of 5; the highest tag's value is stored back
    effects = core.on_message(0.0, 2, QueryAck((0, 1, 1), INITIAL_TAG, None))
    assert sends(effects) == [(p, Store((0, 1, 1), (1, 3, 1, 1), "x")) for p in (1, 2, 3, 4)]
    assert Persist(RegisterState((1, 3, 1, 1), "x", 1)) in effects
    assert core.on_message(0.0, 3, StoreAck((0, 1, 1))) == []
    assert core.on_message(0.0, 4, StoreAck((0, 1, 1))) == [
        CancelTimer(RETRY_TIMER),
        Reply("c", "x"),
    ]
    assert core.pending == 0


def test_a_write_mints_the_next_tag_with_this_incarnation_and_operation() -> None:
    core = AbdRegister(2, 3)
    core.restore(RegisterState((4, 0, 1, 9), "old", 6))
    core.on_start(0.0, random.Random(0))  # incarnation 7
    core.on_client(0.0, ClientRequest("c", "write", "new"))
    effects = core.on_message(0.0, 0, QueryAck((2, 7, 1), (5, 1, 2, 2), "peer's"))
    assert sends(effects) == [(p, Store((2, 7, 1), (6, 2, 7, 1), "new")) for p in (0, 1)]


def test_answers_to_an_earlier_incarnation_are_ignored() -> None:
    core = AbdRegister(0, 3)
    core.restore(RegisterState(INITIAL_TAG, None, 1))
    core.on_start(0.0, random.Random(0))  # incarnation 2
    core.on_client(0.0, ClientRequest("c", "read"))
    # same node, same operation number, the previous incarnation: not this op's answer
    assert core.on_message(0.0, 1, QueryAck((0, 1, 1), (1, 1, 1, 1), "stale")) == []
    assert core.on_message(0.0, 1, QueryAck((0, 2, 1), INITIAL_TAG, None)) != []


# ------------------------------------------------------------------ retries


def test_a_query_retries_only_the_silent_peers_then_gives_up_after_its_attempts() -> None:
    core = started(0, 5)
    core.on_client(0.0, ClientRequest("c", "read"))
    core.on_message(0.0, 3, QueryAck((0, 1, 1), INITIAL_TAG, None))
    for _ in range(QUERY_ATTEMPTS - 1):
        assert core.on_timer(0.0, RETRY_TIMER) == [
            *(Send(p, Query((0, 1, 1))) for p in (1, 2, 4)),
            SetTimer(RETRY_TIMER, RETRY_INTERVAL),
        ]
    assert core.on_timer(0.0, RETRY_TIMER) == [Reply("c", "no quorum", ok=False)]
    assert core.pending == 0
    assert core.on_timer(0.0, RETRY_TIMER) == []


def test_a_store_retries_from_a_fresh_count_then_gives_up_silently() -> None:
    core = started(0, 3)
    core.on_client(0.0, ClientRequest("c", "write", 1))
    core.on_timer(0.0, RETRY_TIMER)  # one query attempt used up
    core.on_message(0.0, 1, QueryAck((0, 1, 1), INITIAL_TAG, None))  # now storing
    store = Store((0, 1, 1), (1, 0, 1, 1), 1)
    for _ in range(MAX_ATTEMPTS - 1):
        assert core.on_timer(0.0, RETRY_TIMER) == [
            Send(1, store),
            Send(2, store),
            SetTimer(RETRY_TIMER, RETRY_INTERVAL),
        ]
    # the write may have taken effect: no answer, the client's own timeout decides
    assert core.on_timer(0.0, RETRY_TIMER) == []
    assert core.pending == 0


# ------------------------------------------------------------------ broken variants


def test_stale_read_answers_the_local_value_at_once() -> None:
    core = started(0, 3, variant="stale-read")
    core.restore(RegisterState((1, 1, 1, 1), "local", 2))
    assert core.on_client(0.0, ClientRequest("c", "read")) == [Reply("c", "local")]


def test_lost_write_answers_first_and_replicates_later_once() -> None:
    core = started(1, 3, variant="lost-write")
    assert core.on_client(0.0, ClientRequest("c", "write", "w")) == [
        Reply("c", "w"),
        SetTimer(LAZY_TIMER, 0.05),
    ]
    tag = (1, 1, 1, 1)
    assert core.state == RegisterState(tag, "w", 1)
    assert core.on_timer(0.05, LAZY_TIMER) == [
        Send(0, Store((1, 1, 1), tag, "w")),
        Send(2, Store((1, 1, 1), tag, "w")),
    ]
    assert core.pending == 0
    assert core.on_timer(0.05, LAZY_TIMER) == []


def test_split_brain_heartbeats_and_counts_only_the_peers_it_heard_lately() -> None:
    core = AbdRegister(0, 5, variant="split-brain")
    effects = core.on_start(0.0, random.Random(0))
    assert effects == [
        Persist(RegisterState(INITIAL_TAG, None, 1)),
        *(Send(p, Heartbeat()) for p in (1, 2, 3, 4)),
        SetTimer("heartbeat", HEARTBEAT_INTERVAL),
    ]
    assert core.on_timer(0.0, "heartbeat") == effects[1:]
    for p in (1, 2, 3, 4):
        core.on_message(0.1, p, Heartbeat())
    # every peer heard 0.05 ago: the quorum is 3 of 5 (the node and two peers)
    core.on_client(0.15, ClientRequest("c", "read"))
    assert sends(core.on_message(0.15, 1, QueryAck((0, 1, 1), INITIAL_TAG, None))) == []
    effects = core.on_message(0.15, 2, QueryAck((0, 1, 1), INITIAL_TAG, None))
    assert sends(effects) == [(p, Store((0, 1, 1), INITIAL_TAG, None)) for p in (1, 2, 3, 4)]


def test_split_brain_counts_a_peer_heard_exactly_suspect_after_ago_as_alive() -> None:
    core = AbdRegister(0, 5, variant="split-brain")
    core.on_start(0.0, random.Random(0))  # every peer counts as heard at 0.0
    # SUSPECT_AFTER later, all five are still alive: a read needs two peers' answers
    effects = core.on_client(SUSPECT_AFTER, ClientRequest("c", "read"))
    assert sends(effects) == [(p, Query((0, 1, 1))) for p in (1, 2, 3, 4)]
    assert not [e for e in effects if isinstance(e, Reply)]
    assert core.pending == 1


def test_split_brain_alone_serves_from_its_own_minority() -> None:
    core = AbdRegister(0, 5, variant="split-brain")
    core.on_start(0.0, random.Random(0))
    # nobody heard for longer than SUSPECT_AFTER: alive = 1, quorum = 1
    effects = core.on_client(1.0, ClientRequest("c", "read"))
    assert Reply("c", None) in effects
    assert core.pending == 0
