"""The linearizability checker's edges, sixth round (``_wgl.py``, ``_witness.py``):
one exact check each (a reported operation, an order of operations, a state count).

Written for survivors of the fourth package-wide mutation sample of
``benchmarks/mutation.py lincheck`` (seed 765142964); docs/verification.md lists
them and says which were argued equivalent instead.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from lincheck_rows import Row, h

from trio_foundation.verify.lincheck import MODELS, Model, Operation, check_history, pair_operations
from trio_foundation.verify.lincheck import _witness as _witness_module
from trio_foundation.verify.lincheck._wgl import search
from trio_foundation.verify.lincheck._witness import (
    _Greedy,
    greedy_linearization,
    greedy_pass,
    help_pass,
)


def test_the_search_reports_the_first_operation_as_the_blocked_one() -> None:
    # a lone read of 5 from a register at 0: the operation blocked is ops[0]
    # (position 0 is an operation, not "none")
    ops = pair_operations(h((0, "invoke", "read", None), (0, "ok", "read", 5)))
    out = search(ops, MODELS["register"], deadline=None, max_states=None)
    assert out.verdict == "not-linearizable"
    assert out.blocked is ops[0]
    assert out.blocked.describe() == "p0 read() -> 5"


def _add(state: Any, op: Operation) -> Iterable[Any]:
    """A list that ``add`` extends: unhashable states (cached through ``state_key``)."""
    if op.f == "add":
        return ([*state, op.value],)
    return ()


def test_the_greedy_pass_orders_unhashable_states_without_hashing_them() -> None:
    # two adds due at once on a model whose states are lists (no register view):
    # the pass takes the first one, never looking a list up in a set
    model = Model(name="list", init=[], step=_add, state_key=tuple)
    ops = pair_operations(
        h(
            (0, "invoke", "add", 1),
            (1, "invoke", "add", 2),
            (0, "ok", "add", None),
            (1, "ok", "add", None),
            (2, "invoke", "add", 3),
            (2, "ok", "add", None),
        )
    )
    witness = greedy_linearization(ops, model)
    assert witness is not None
    assert [o.describe() for o in witness] == [
        "p0 add(1) -> ok",
        "p1 add(2) -> ok",
        "p2 add(3) -> ok",
    ]


# A cas-register history of 6 clients (a random simulation, kept as found): the
# greedy pass within its budget leaves it to the search rounds, whose witness and
# state count are these.
_SIX_CLIENTS: list[Row] = [
    (5, "invoke", "cas", [1, 1]),
    (0, "invoke", "cas", [0, 1]),
    (4, "invoke", "write", 1),
    (2, "invoke", "write", 1),
    (1, "invoke", "cas", [0, 0]),
    (0, "fail", "cas", [0, 1]),
    (5, "fail", "cas", [1, 1]),
    (0, "invoke", "write", 0),
    (3, "invoke", "write", 1),
    (0, "ok", "write", 0),
    (3, "ok", "write", 1),
    (4, "ok", "write", 1),
    (4, "invoke", "read", None),
    (1, "fail", "cas", [0, 0]),
    (3, "invoke", "write", 0),
    (2, "ok", "write", 1),
    (1, "invoke", "write", 0),
    (1, "ok", "write", 0),
    (0, "invoke", "read", None),
    (1, "invoke", "read", None),
    (4, "ok", "read", 1),
    (4, "invoke", "write", 1),
    (2, "invoke", "cas", [1, 0]),
    (1, "ok", "read", 0),
    (5, "invoke", "cas", [1, 1]),
    (0, "ok", "read", 0),
    (0, "invoke", "cas", [0, 0]),
    (3, "ok", "write", 0),
    (2, "ok", "cas", [1, 0]),
    (1, "invoke", "cas", [0, 0]),
    (1, "ok", "cas", [0, 0]),
    (4, "ok", "write", 1),
    (5, "fail", "cas", [1, 1]),
    (5, "invoke", "read", None),
    (3, "invoke", "cas", [1, 1]),
    (2, "invoke", "read", None),
    (0, "ok", "cas", [0, 0]),
    (1, "invoke", "cas", [0, 0]),
    (5, "ok", "read", 0),
    (0, "invoke", "cas", [0, 1]),
    (5, "invoke", "cas", [0, 1]),
    (4, "invoke", "write", 1),
    (2, "ok", "read", 0),
    (4, "info", "write", None),
    (2, "invoke", "cas", [1, 1]),
    (2, "ok", "cas", [1, 1]),
    (0, "fail", "cas", [0, 1]),
    (0, "invoke", "cas", [0, 0]),
    (1, "ok", "cas", [0, 0]),
    (5, "fail", "cas", [0, 1]),
    (0, "fail", "cas", [0, 0]),
    (1, "invoke", "read", None),
    (4, "invoke", "cas", [1, 0]),
    (5, "invoke", "read", None),
    (1, "info", "read", None),
    (5, "ok", "read", 1),
    (3, "ok", "cas", [1, 1]),
    (0, "invoke", "cas", [0, 1]),
    (4, "ok", "cas", [1, 0]),
    (5, "invoke", "cas", [1, 0]),
    (4, "invoke", "cas", [1, 1]),
    (1, "invoke", "cas", [0, 0]),
    (0, "ok", "cas", [0, 1]),
    (3, "invoke", "cas", [0, 1]),
    (3, "fail", "cas", [0, 1]),
    (0, "invoke", "cas", [0, 0]),
    (1, "fail", "cas", [0, 0]),
    (4, "ok", "cas", [1, 1]),
    (2, "invoke", "read", None),
    (0, "ok", "cas", [0, 0]),
    (3, "invoke", "read", None),
    (0, "invoke", "read", None),
    (0, "ok", "read", 0),
    (5, "ok", "cas", [1, 0]),
    (2, "ok", "read", 0),
    (3, "ok", "read", 0),
]


def test_a_six_client_cas_register_history_is_decided_in_48_states() -> None:
    result = check_history(h(*_SIX_CLIENTS), "cas-register")
    assert (result.verdict, result.reason, result.states) == ("linearizable", "", 48)
    assert [o.describe() for o in result.linearized][-7:] == [
        "p3 cas([0, 1]) -> fail",
        "p4 cas([1, 1]) -> ok",
        "p5 cas([1, 0]) -> ok",
        "p2 read() -> 0",
        "p0 cas([0, 0]) -> ok",
        "p3 read() -> 0",
        "p0 read() -> 0",
    ]


# A cas-register history of 10 clients (a random simulation, kept as found):
# the greedy pass gets stuck, and its helps, sharing a budget of
# min(len(ops), 2,048) states, give up after 42 of them.
_TEN_CLIENTS: list[Row] = [
    (1, "invoke", "read", None),
    (5, "invoke", "cas", [4, 0]),
    (7, "invoke", "cas", [2, 1]),
    (6, "invoke", "write", 2),
    (9, "invoke", "write", 1),
    (3, "invoke", "read", None),
    (0, "invoke", "write", 0),
    (9, "ok", "write", 1),
    (3, "ok", "read", 1),
    (8, "invoke", "read", None),
    (7, "ok", "cas", [2, 1]),
    (4, "invoke", "read", None),
    (3, "invoke", "read", None),
    (7, "invoke", "write", 0),
    (2, "invoke", "write", 4),
    (9, "invoke", "cas", [4, 0]),
    (8, "ok", "read", 1),
    (2, "ok", "write", 4),
    (1, "ok", "read", 1),
    (3, "ok", "read", 0),
    (6, "ok", "write", 2),
    (8, "invoke", "read", None),
    (4, "ok", "read", 0),
    (6, "invoke", "read", None),
    (3, "invoke", "read", None),
    (2, "invoke", "cas", [1, 3]),
    (4, "invoke", "read", None),
    (2, "fail", "cas", [1, 3]),
    (6, "ok", "read", 4),
    (6, "invoke", "write", 2),
    (1, "invoke", "cas", [0, 1]),
    (7, "ok", "write", 0),
    (5, "fail", "cas", [4, 0]),
    (1, "fail", "cas", [0, 1]),
    (4, "ok", "read", 4),
    (4, "invoke", "read", None),
    (5, "invoke", "read", None),
    (9, "ok", "cas", [4, 0]),
    (7, "invoke", "read", None),
    (1, "invoke", "write", 2),
    (0, "ok", "write", 0),
    (4, "info", "read", None),
    (2, "invoke", "cas", [4, 1]),
    (9, "invoke", "read", None),
    (8, "ok", "read", 0),
    (4, "invoke", "read", None),
    (0, "invoke", "read", None),
    (7, "ok", "read", 0),
    (6, "ok", "write", 2),
    (7, "invoke", "write", 4),
    (3, "ok", "read", 0),
    (7, "ok", "write", 4),
    (5, "ok", "read", 4),
    (4, "info", "read", None),
    (0, "ok", "read", 0),
    (2, "fail", "cas", [4, 1]),
    (9, "ok", "read", 4),
    (1, "ok", "write", 2),
]


def test_the_helps_of_one_pass_share_one_budget() -> None:
    events = h(*_TEN_CLIENTS)
    ops = pair_operations(events)
    witness, stuck = greedy_pass(ops, MODELS["cas-register"])
    assert witness is None
    assert help_pass(stuck) == (None, 42)
    result = check_history(events, "cas-register")
    assert (result.verdict, result.reason, result.states) == ("linearizable", "", 46)


# --- the greedy pass's steps, one by one ------------------------------------------------


def test_peak_running_counts_each_return_once() -> None:
    # a returns before b and c are invoked; b and c overlap: two at once at most
    ops = pair_operations(
        h(
            (0, "invoke", "write", 1),
            (0, "ok", "write", 1),
            (1, "invoke", "write", 2),
            (2, "invoke", "write", 3),
            (2, "ok", "write", 3),
            (1, "ok", "write", 2),
        )
    )
    assert _witness_module._peak_running(ops) == 2


def test_an_info_operation_never_returned_before_another() -> None:
    # an info completion at position 1 is no return: the write invoked at 2
    # may still be linearized before it
    info, later = pair_operations(
        h(
            (0, "invoke", "write", 1),
            (0, "info", "write", None),
            (1, "invoke", "write", 2),
            (1, "ok", "write", 2),
        )
    )
    assert (info.status, info.complete_at, later.invoke_at) == ("info", 1, 2)
    assert not _witness_module._returned_before(info, [later])


def _greedy(*rows: Row) -> _Greedy:
    return _Greedy(pair_operations(h(*rows)), MODELS["register"])


def test_with_no_next_call_only_the_pending_reads_are_wanted() -> None:
    # nxt == -1: no operation about to be invoked, so the last read's value
    # (1) is not wanted; nothing is pending
    greedy = _greedy(
        (0, "invoke", "write", 1),
        (0, "ok", "write", 1),
        (1, "invoke", "read", None),
        (1, "ok", "read", 1),
    )
    assert greedy.wanted(-1) == set()
    assert greedy.wanted(1) == {1}


def test_settling_one_due_operation_may_spend_the_last_step() -> None:
    greedy = _greedy((0, "invoke", "write", 1), (0, "ok", "write", 1))
    greedy.invoke(0)
    greedy.due[0] = greedy.ops[0]
    greedy.budget = 1
    assert greedy.settle(-1) is True
    assert (greedy.budget, greedy.state, greedy.out) == (0, 1, [greedy.ops[0]])


def test_settling_stops_when_a_flush_runs_past_the_budget() -> None:
    # a pending read of null, then two writes due: the two steps spend the
    # budget, and the flush before the first write changes the state runs past it
    greedy = _greedy(
        (0, "invoke", "read", None),
        (1, "invoke", "write", 1),
        (2, "invoke", "write", 2),
        (1, "ok", "write", 1),
        (2, "ok", "write", 2),
        (0, "ok", "read", None),
    )
    for i in range(3):
        greedy.invoke(i)
    greedy.due.update({1: greedy.ops[1], 2: greedy.ops[2]})
    greedy.budget = 2
    assert greedy.settle(-1) is False
    assert greedy.budget == -1
    assert greedy.out == [greedy.ops[0]]  # (the read, placed by the flush)
    assert list(greedy.due) == [1, 2]


# --- the growth hints on a partition they do not cover whole -----------------------------


def _grow_step(state: Any, op: Operation) -> Iterable[Any]:
    if op.f == "append":
        return ((*state, op.value),)
    if op.f == "touch":  # leaves the state: neither a growth nor a reset
        return (state,)
    return (state,) if op.output == state else ()


def _grows_into(state: Any, op: Operation) -> bool:
    return op.f != "read" or op.output[: len(state)] == state


def test_a_read_no_growth_reaches_is_doomed_without_info_operations() -> None:
    # append(1), then a read of [2] concurrent with a touch: not monotone (the
    # touch neither grows nor resets), so only the earliest-deadline operation
    # is checked against the candidates before it: the read is the dead end
    model = Model(
        name="grow",
        init=(),
        step=_grow_step,
        read_only=lambda op: op.f == "read",
        grows=lambda op: op.f == "append",
        may_grow_into=_grows_into,
    )
    ops = pair_operations(
        h(
            (0, "invoke", "append", 1),
            (0, "ok", "append", 1),
            (1, "invoke", "touch", None),
            (2, "invoke", "read", None),
            (1, "ok", "touch", None),
            (2, "ok", "read", (2,)),
        )
    )
    out = search(ops, model, deadline=None, max_states=None)
    assert (out.verdict, out.states) == ("not-linearizable", 2)
    assert out.blocked is not None
    assert out.blocked.describe() == "p2 read() -> [2]"
