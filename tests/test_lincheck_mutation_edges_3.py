"""The search's (``_wgl._Search``) edges, third round: one exact outcome each (a
verdict, the states counted, the partial linearization and the operation it
could not place), written against behaviour.

Written for the survivors in ``_wgl.py`` of the package-wide mutation samples of
``benchmarks/mutation.py lincheck`` (docs/verification.md lists them and says
which were argued equivalent instead). Most histories were found by a
differential search of small simulated histories (random clients, some reads
corrupted, some operations ended ``info``) against the unchanged code; each
outcome below is the unchanged code's, and a changed prune, cache or order
gives another.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import attrs
import pytest
from lincheck_rows import Row
from lincheck_rows import hard_writes as _hard_ops

from trio_foundation.verify.history import HistoryEvent
from trio_foundation.verify.lincheck import MODELS, Model, Operation, pair_operations
from trio_foundation.verify.lincheck._wgl import search

Outcome = tuple[str, int, list[str], str | None]

_KV = MODELS["kv"].with_initial("")


def _outcome(model: Model, rows: Iterable[Row], key: Any = None, **kwargs: Any) -> Outcome:
    """The search's verdict, states, partial linearization and blocked operation."""
    events = [HistoryEvent(p, t, f, v, key=key) for p, t, f, v in rows]
    kwargs.setdefault("max_states", None)
    out = search(pair_operations(events), model, deadline=None, **kwargs)
    blocked = out.blocked.describe() if out.blocked is not None else None
    return (out.verdict, out.states, [o.describe() for o in out.linearized], blocked)


# --- the register view's and the growth hints' prunes -----------------------------------


def test_a_read_of_a_value_nothing_writes_is_doomed_at_the_root() -> None:
    # no operation sets 7: the register view dooms the root before any move
    rows = [(0, "invoke", "write", 1), (1, "invoke", "read", None)]
    rows += [(0, "ok", "write", 1), (1, "ok", "read", 7)]
    assert _outcome(MODELS["register"], rows) == ("not-linearizable", 0, [], "p1 read() -> 7")


def test_a_set_read_waits_for_a_concurrent_add() -> None:
    # the set model has may_grow_into without first_growth: growth of {} may
    # give {1} (the add is still to come), so the root is not doomed
    rows: list[Row] = [(0, "invoke", "add", 1), (1, "invoke", "read", None)]
    rows += [(0, "ok", "add", 1), (1, "ok", "read", [1])]
    assert _outcome(MODELS["set"], rows) == (
        "linearizable",
        2,
        ["p0 add(1) -> ok", "p1 read() -> [1]"],
        None,
    )


def test_a_read_no_growth_still_to_come_can_reach_is_doomed_at_the_root() -> None:
    # "" may grow into "ab", but the only append left adds "z": no first step
    rows = [(0, "invoke", "append", "z"), (1, "invoke", "get", None)]
    rows += [(0, "ok", "append", "z"), (1, "ok", "get", "ab")]
    assert _outcome(_KV, rows, key="k") == ("not-linearizable", 0, [], "p1 get['k']() -> 'ab'")


def test_the_first_operation_may_be_the_reset_a_read_needs() -> None:
    # put("ab") is operation 0 (its bit is 0): it is the reset that allows the
    # read, which no growth of "" reaches (the append adds "z")
    rows = [(0, "invoke", "put", "ab"), (1, "invoke", "get", None), (0, "ok", "put", "ab")]
    rows += [(1, "ok", "get", "ab"), (2, "invoke", "append", "z"), (2, "ok", "append", "z")]
    assert _outcome(_KV, rows, key="k") == (
        "linearizable",
        3,
        ["p0 put['k']('ab') -> ok", "p1 get['k']() -> 'ab'", "p2 append['k']('z') -> ok"],
        None,
    )


# --- differential cases: small simulated histories on which a changed prune, cache or
# order of the search gives another outcome (another verdict, count or evidence)

_KV_NO_RESETS = attrs.evolve(_KV, resets=None)  # puts: neither growth nor reset
_UQ = MODELS["unordered-queue"]
_KEYED = {id(_KV), id(_KV_NO_RESETS)}

_CASES: list[tuple[Model, list[Row], Outcome]] = [
    # a put the hints say nothing about among the candidates: no doom (a wrong
    # one called this history not linearizable)
    (
        _KV_NO_RESETS,
        [
            (2, "invoke", "put", "b"),
            (0, "invoke", "get", None),
            (1, "invoke", "append", "x"),
            (0, "ok", "get", ""),
            (0, "invoke", "get", None),
            (2, "info", "put", "b"),
            (1, "ok", "append", "x"),
            (2, "invoke", "put", "a"),
            (0, "ok", "get", "a"),
            (1, "invoke", "append", "x"),
            (2, "ok", "put", "a"),
            (1, "ok", "append", "x"),
        ],
        (
            "linearizable",
            5,
            [
                "p0 get['k']() -> ''",
                "p1 append['k']('x') -> ok",
                "p2 put['k']('a') -> ok",
                "p0 get['k']() -> 'a'",
                "p1 append['k']('x') -> ok",
            ],
            None,
        ),
    ),
    # a candidate that is neither growth nor reset ends the prune; a reset one is stepped
    (
        _KV_NO_RESETS,
        [
            (0, "invoke", "append", "x"),
            (1, "invoke", "get", None),
            (2, "invoke", "put", "b"),
            (0, "info", "append", "x"),
            (0, "invoke", "append", "x"),
            (1, "ok", "get", "ay"),
            (2, "ok", "put", "b"),
            (2, "invoke", "append", "y"),
            (1, "invoke", "put", "b"),
            (0, "ok", "append", "x"),
            (2, "ok", "append", "y"),
            (1, "info", "put", "b"),
        ],
        (
            "not-linearizable",
            5,
            ["p0 append['k']('x') -> ok", "p2 put['k']('b') -> ok"],
            "p1 get['k']() -> 'ay'",
        ),
    ),
    # a run of info moves with no operation of the class used since its start:
    # the redundant-info prune
    (
        _UQ,
        [
            (2, "invoke", "enqueue", 2),
            (1, "invoke", "dequeue", None),
            (0, "invoke", "dequeue", None),
            (1, "ok", "dequeue", None),
            (1, "invoke", "enqueue", 0),
            (1, "ok", "enqueue", 0),
            (1, "invoke", "dequeue", None),
            (2, "info", "enqueue", 2),
            (3, "invoke", "dequeue", None),
            (3, "info", "dequeue", None),
            (0, "info", "dequeue", None),
            (3, "invoke", "enqueue", 2),
            (0, "invoke", "enqueue", 2),
            (2, "invoke", "enqueue", 0),
            (0, "ok", "enqueue", 2),
            (1, "ok", "dequeue", None),
            (0, "invoke", "dequeue", None),
            (3, "info", "enqueue", 2),
            (3, "invoke", "dequeue", None),
            (3, "ok", "dequeue", None),
            (2, "info", "enqueue", 0),
            (2, "invoke", "enqueue", 0),
            (0, "ok", "dequeue", 0),
            (2, "info", "enqueue", 0),
        ],
        (
            "linearizable",
            21,
            [
                "p1 dequeue() -> null",
                "p1 enqueue(0) -> ok",
                "p0 enqueue(2) -> ok",
                "p0 dequeue() -> info",
                "p3 dequeue() -> info",
                "p1 dequeue() -> null",
                "p3 dequeue() -> null",
                "p2 enqueue(0) -> info",
                "p0 dequeue() -> 0",
            ],
            None,
        ),
    ),
    # a run of info moves that starts at the root: the redundant-info prune applies there too
    (
        _KV,
        [
            (3, "invoke", "append", "x"),
            (2, "invoke", "put", "a"),
            (1, "invoke", "put", "a"),
            (0, "invoke", "put", "b"),
            (2, "ok", "put", "a"),
            (3, "info", "append", "x"),
            (2, "invoke", "get", None),
            (0, "ok", "put", "b"),
            (2, "ok", "get", "b"),
            (3, "invoke", "append", "x"),
            (2, "invoke", "get", None),
            (3, "info", "append", "x"),
            (2, "ok", "get", "ax"),
            (1, "info", "put", "a"),
            (1, "invoke", "get", None),
            (3, "invoke", "append", "y"),
            (0, "invoke", "put", "b"),
            (3, "info", "append", "y"),
            (0, "info", "put", "b"),
            (0, "invoke", "append", "y"),
            (1, "ok", "get", "b"),
            (0, "ok", "append", "y"),
            (1, "invoke", "get", None),
            (1, "ok", "get", "xy"),
        ],
        ("not-linearizable", 4, ["p2 put['k']('a') -> ok"], "p1 get['k']() -> 'xy'"),
    ),
    # a node seen with two info sets, then with a superset of one: refused
    (
        _UQ,
        [
            (2, "invoke", "enqueue", 0),
            (2, "info", "enqueue", 0),
            (0, "invoke", "dequeue", None),
            (0, "ok", "dequeue", 0),
            (3, "invoke", "dequeue", None),
            (2, "invoke", "enqueue", 0),
            (1, "invoke", "enqueue", 0),
            (2, "info", "enqueue", 0),
            (2, "invoke", "dequeue", None),
            (1, "ok", "enqueue", 0),
            (3, "ok", "dequeue", None),
            (0, "invoke", "enqueue", 0),
            (1, "invoke", "dequeue", None),
            (3, "invoke", "dequeue", None),
            (0, "info", "enqueue", 0),
            (0, "invoke", "dequeue", None),
            (1, "info", "dequeue", None),
            (3, "ok", "dequeue", 0),
            (0, "ok", "dequeue", 2),
            (3, "invoke", "dequeue", None),
            (2, "info", "dequeue", None),
            (1, "invoke", "enqueue", 0),
            (3, "ok", "dequeue", 0),
            (1, "info", "enqueue", 0),
        ],
        (
            "not-linearizable",
            19,
            [
                "p2 enqueue(0) -> info",
                "p0 dequeue() -> 0",
                "p1 enqueue(0) -> ok",
                "p2 dequeue() -> info",
                "p3 dequeue() -> null",
                "p2 enqueue(0) -> info",
                "p3 dequeue() -> 0",
                "p0 enqueue(0) -> info",
            ],
            "p0 dequeue() -> 2",
        ),
    ),
    # growth needs a first step by an append not yet linearized (its own bit of w)
    (
        _KV,
        [
            (1, "invoke", "append", "x"),
            (1, "ok", "append", "x"),
            (1, "invoke", "append", "y"),
            (0, "invoke", "append", "x"),
            (2, "invoke", "get", None),
            (0, "ok", "append", "x"),
            (0, "invoke", "get", None),
            (2, "ok", "get", "xy"),
            (1, "info", "append", "y"),
            (1, "invoke", "put", "b"),
            (2, "invoke", "append", "y"),
            (2, "ok", "append", "y"),
            (2, "invoke", "put", "a"),
            (0, "ok", "get", "ay"),
            (0, "invoke", "get", None),
            (1, "info", "put", "b"),
            (2, "ok", "put", "a"),
            (0, "ok", "get", "a"),
        ],
        (
            "not-linearizable",
            8,
            [
                "p1 append['k']('x') -> ok",
                "p1 append['k']('y') -> info",
                "p2 get['k']() -> 'xy'",
                "p0 append['k']('x') -> ok",
                "p1 put['k']('b') -> info",
                "p2 append['k']('y') -> ok",
            ],
            "p0 get['k']() -> 'ay'",
        ),
    ),
    # the same: whether an append is linearized is read from its own bit of w
    (
        _KV,
        [
            (1, "invoke", "get", None),
            (2, "invoke", "append", "x"),
            (2, "ok", "append", "x"),
            (0, "invoke", "append", "x"),
            (1, "ok", "get", "x"),
            (2, "invoke", "get", None),
            (1, "invoke", "append", "y"),
            (2, "ok", "get", "x"),
            (2, "invoke", "append", "y"),
            (2, "ok", "append", "y"),
            (0, "ok", "append", "x"),
            (1, "info", "append", "y"),
            (0, "invoke", "get", None),
            (1, "invoke", "append", "y"),
            (1, "info", "append", "y"),
            (0, "ok", "get", "xxyy"),
            (0, "invoke", "put", "a"),
            (0, "ok", "put", "a"),
        ],
        (
            "linearizable",
            9,
            [
                "p2 append['k']('x') -> ok",
                "p1 get['k']() -> 'x'",
                "p2 get['k']() -> 'x'",
                "p0 append['k']('x') -> ok",
                "p2 append['k']('y') -> ok",
                "p1 append['k']('y') -> info",
                "p0 get['k']() -> 'xxyy'",
                "p0 put['k']('a') -> ok",
            ],
            None,
        ),
    ),
    # an info append is a first step only if not used yet and its value fits
    (
        _KV,
        [
            (1, "invoke", "append", "y"),
            (0, "invoke", "append", "x"),
            (2, "invoke", "append", "y"),
            (1, "info", "append", "y"),
            (2, "ok", "append", "y"),
            (1, "invoke", "append", "x"),
            (0, "ok", "append", "x"),
            (1, "ok", "append", "x"),
            (0, "invoke", "get", None),
            (0, "ok", "get", "yxyx"),
            (2, "invoke", "get", None),
            (2, "ok", "get", "yxyx"),
            (0, "invoke", "append", "x"),
            (1, "invoke", "put", "b"),
            (2, "invoke", "get", None),
            (0, "ok", "append", "x"),
            (2, "ok", "get", "ay"),
            (1, "info", "put", "b"),
        ],
        ("not-linearizable", 0, [], "p2 get['k']() -> 'ay'"),
    ),
]


@pytest.mark.parametrize("case", range(len(_CASES)))
def test_simulated_histories_give_the_search_s_exact_outcome(case: int) -> None:
    model, rows, expected = _CASES[case]
    key = "k" if id(model) in _KEYED else None
    assert _outcome(model, rows, key=key) == expected


# --- an info operation with several next states ------------------------------------------


def _counter_with_a_choice() -> Model:
    """A counter with ``add(d)``, ``bump`` (adds 1 or 2: two next states) and
    ``read -> v``."""

    def step(state: Any, op: Operation) -> Iterable[Any]:
        if op.f == "read":
            return (state,) if op.status != "ok" or op.output == state else ()
        if op.f == "bump":
            return (state + 1, state + 2)
        return (state + op.value,)

    return Model(
        name="counter-with-a-choice",
        init=0,
        step=step,
        operations=frozenset({"add", "bump", "read"}),
        read_only=lambda op: op.f == "read",
    )


def test_an_info_operation_s_later_states_are_tried_after_a_redundant_one() -> None:
    # add(1) and bump ended info, the read of 3 is concurrent with both. After
    # add(1) (state 1), bump leads to 2 or 3: 2 is redundant (bump alone, from
    # the run's start 0, reaches it) and skipped, 3 is still tried and allows
    # the read: add(1) then bump, in 3 states.
    rows = [(0, "invoke", "add", 1), (1, "invoke", "bump", None), (2, "invoke", "read", None)]
    rows += [(0, "info", "add", 1), (1, "info", "bump", None), (2, "ok", "read", 3)]
    assert _outcome(_counter_with_a_choice(), rows) == (
        "linearizable",
        3,
        ["p0 add(1) -> info", "p1 bump() -> info", "p2 read() -> 3"],
        None,
    )


# --- the state bound ------------------------------------------------------------------------


def test_the_search_stops_when_its_states_reach_the_bound_exactly() -> None:
    # the bound is looked at every 1,024 loop turns; at the first look this
    # search has counted exactly 523 states: a bound of 523 stops it there, a
    # bound of 524 only at the next look
    ops = pair_operations(_hard_ops())
    out = search(ops, MODELS["register"], deadline=None, max_states=523)
    assert (out.verdict, out.reason, out.states) == ("unknown", "max_states", 523)
    out = search(ops, MODELS["register"], deadline=None, max_states=524)
    assert (out.verdict, out.reason, out.states) == ("unknown", "max_states", 1043)
