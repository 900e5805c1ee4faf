"""The linearizability checker's edges, fifth round (``_check``, ``_models``, ``_ops``):
one exact check each (a verdict, a reason, a witness, a count, a hint's answer).

Written for the survivors of the session-7 package-wide mutation sample of
``benchmarks/mutation.py lincheck`` (seed 765142964) that are not equivalent
(benchmarks/mutation.py, block ``s7 lin4C``, argues the others).
"""

from __future__ import annotations

from typing import Any

from lincheck_rows import forced_order_chain as _chain
from lincheck_rows import h, seq
from lincheck_rows import hard_writes as _hard

from trio_foundation.verify.lincheck import MODELS, Operation, check_history, pair_operations
from trio_foundation.verify.lincheck import _check as _check_module

# --- the operation counts of verdicts found without a search's outcome -----------------


def test_an_impossible_read_counts_the_partitions_operations() -> None:
    # one partition (no first round): _decide's impossible operation
    result = check_history(seq((0, "write", 1, 1), (1, "read", None, 5)), "register")
    assert (result.verdict, result.reason) == ("not-linearizable", "impossible")
    assert [(p.verdict, p.reason, p.operation_count, p.states) for p in result.partitions] == [
        ("not-linearizable", "impossible", 2, 0)
    ]


def test_a_timeout_before_the_search_counts_the_partitions_operations() -> None:
    # (a nanosecond: gone before the search's round begins)
    result = check_history(_hard(), "register", timeout=1e-9)
    assert [(p.verdict, p.reason, p.operation_count, p.states) for p in result.partitions] == [
        ("unknown", "timeout", 42, 0)
    ]


def test_the_rounds_witnesses_count_the_partitions_operations() -> None:
    # max_states 500 (below the first round's budget): the rounds' witnesses decide
    result = check_history(_hard() + _chain(), "register", max_states=500)
    assert [(p.verdict, p.reason, p.operation_count) for p in result.partitions] == [
        ("not-linearizable", "forced-order", 47)
    ]
    tail = seq((100, "write", 100, 100), (101, "write", 101, 101), (102, "read", None, 100))
    result = check_history(_hard() + tail, "register", max_states=500)
    assert [(p.verdict, p.reason, p.operation_count) for p in result.partitions] == [
        ("not-linearizable", "stale", 45)
    ]


# --- _forced_order on a read of a value nothing sets -----------------------------------


def test_the_forced_order_passes_over_a_read_of_a_value_nothing_sets() -> None:
    # (_impossible's business: the chain finds nothing, and raises nothing)
    ops = pair_operations(seq((0, "write", 1, 1), (1, "read", None, 5)))
    assert _check_module._forced_order(ops, MODELS["register"]) == ()
    ops = pair_operations(_chain() + seq((105, "read", None, 7)))
    assert [o.describe() for o in _check_module._forced_order(ops, MODELS["register"])] == [
        "p103 read() -> 100",
        "p101 write(101) -> ok",
        "p100 write(100) -> ok",
        "p104 write(100) -> ok",
    ]


# --- _lost_growth: the grower that returned last before the read -----------------------


def test_a_lost_growth_names_the_grower_that_returned_last() -> None:
    # add(1) invoked first but returned after add(2); a read of nothing after both
    events = h(
        (0, "invoke", "add", 1),
        (1, "invoke", "add", 2),
        (1, "ok", "add", 2),
        (0, "ok", "add", 1),
        (2, "invoke", "read", None),
        (2, "ok", "read", []),
    )
    result = check_history(events, "set")
    assert (result.verdict, result.reason) == ("not-linearizable", "lost")
    assert [o.describe() for o in result.unplaceable] == ["p2 read() -> []", "p0 add(1) -> ok"]


# --- the set model's may_grow_into hint ------------------------------------------------


def _op(f: str, value: Any, output: Any, status: Any) -> Operation:
    return Operation(0, 0, f, None, value, output, status, 0, 1)


def test_the_set_models_growth_hint_says_nothing_of_adds_and_unfinished_reads() -> None:
    hint = MODELS["set"].may_grow_into
    assert hint is not None
    state = frozenset({1, 2})
    # only an ok read's output bounds the state; an add (even one that returned a
    # list) or a failed read is allowed whatever the state grew to
    assert hint(state, _op("add", 3, (3,), "ok")) is True
    assert hint(state, _op("read", None, (1,), "fail")) is True
    assert hint(state, _op("read", None, (1,), "ok")) is False
    assert hint(state, _op("read", None, (1, 2, 3), "ok")) is True


# --- pairing: an invocation left open by a process that never crashed -------------------


def test_an_open_invocation_of_a_process_that_never_crashed_is_its_first_incarnation() -> None:
    events = [
        *seq((0, "acquire", None, None)),
        *h((0, "invoke", "release", None)),
        *seq((1, "acquire", None, None)),
    ]
    ops = pair_operations(events)
    assert [(o.process, o.status, o.incarnation, o.client) for o in ops] == [
        (0, "ok", 0, (0, 0)),
        (0, "info", 0, (0, 0)),
        (1, "ok", 0, (1, 0)),
    ]
    # the open release is p0's own: it may have freed p0's lock before p1 took it
    result = check_history(events, "lock")
    assert result.verdict == "linearizable"
