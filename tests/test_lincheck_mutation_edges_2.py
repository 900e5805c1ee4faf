"""The linearizability checker's edges, second round: one exact check each (a
verdict, a reason, a witness, a count), written against behaviour.

Written for the survivors of the package-wide mutation samples of
``benchmarks/mutation.py lincheck`` (docs/verification.md lists them and says
which were argued equivalent instead).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import attrs
import pytest
from lincheck_rows import forced_order_chain as _chain
from lincheck_rows import h, seq
from lincheck_rows import hard_writes as _hard

from trio_foundation.verify.history import HistoryEvent
from trio_foundation.verify.lincheck import (
    MODELS,
    Model,
    Operation,
    Treated,
    check_exhaustively,
    check_history,
    check_operations,
    pair_operations,
)
from trio_foundation.verify.lincheck import _check as _check_module
from trio_foundation.verify.lincheck import _witness as _witness_module
from trio_foundation.verify.lincheck._wgl import search
from trio_foundation.verify.lincheck._witness import greedy_pass, help_pass

# --- the reachable-state precheck ("impossible") -----------------------------------


def _ring(size: int) -> Model:
    """A counter modulo ``size``: ``add(d)``, ``read -> v``; no register view, so
    the precheck's closure is stepped (``size`` states)."""

    def step(state: Any, op: Operation) -> Iterable[Any]:
        if op.f == "read":
            return (state,) if op.status != "ok" or op.output == state else ()
        return ((state + op.value) % size,)

    return Model(
        name="ring",
        init=0,
        step=step,
        operations=frozenset({"add", "read"}),
        read_only=lambda op: op.f == "read",
    )


def test_the_reachable_states_are_computed_up_to_exactly_their_step_bound() -> None:
    # 16 kinds of add (one per process) on 250 states: the closure takes
    # 250 x 16 = 4,000 step() calls, exactly the bound, and is computed: a read
    # of 999 is allowed in none of its states ("impossible", without a search).
    # On 251 states it takes 4,016: past the bound, the search decides.
    adds = [row for p in range(16) for row in ((p, "invoke", "add", 1), (p, "ok", "add", 1))]
    events = h(*adds, (99, "invoke", "read", None), (99, "ok", "read", 999))
    result = check_history(events, _ring(250))
    assert (result.verdict, result.reason, result.states) == ("not-linearizable", "impossible", 0)
    assert [o.describe() for o in result.unplaceable] == ["p99 read() -> 999"]
    assert result.linearized == ()
    result = check_history(events, _ring(251))
    assert (result.verdict, result.reason) == ("not-linearizable", "")
    assert [o.describe() for o in result.unplaceable] == ["p99 read() -> 999"]
    assert len(result.linearized) == 16


# --- the forced-order witness ---------------------------------------------------------


def test_an_info_write_is_not_forced_into_the_order() -> None:
    # write(101) ended info between write(100) and a read of 100: it may never
    # have taken effect, so nothing forces it between them (no witness); the
    # search cannot decide the hard part within 500 states.
    tail = seq(
        (100, "write", 100, 100), (101, "write", 101, None, "info"), (102, "read", None, 100)
    )
    result = check_history(_hard() + tail, "register", max_states=500)
    assert (result.verdict, result.reason) == ("unknown", "max_states")
    # the same write completed ok left 101 after every write of 100 and before
    # the read: a stale read
    tail = seq((100, "write", 100, 100), (101, "write", 101, 101), (102, "read", None, 100))
    result = check_history(_hard() + tail, "register", max_states=500)
    assert (result.verdict, result.reason) == ("not-linearizable", "stale")
    assert [o.describe() for o in result.unplaceable] == [
        "p102 read() -> 100",
        "p101 write(101) -> ok",
        "p100 write(100) -> ok",
    ]


# --- models -----------------------------------------------------------------------------


def test_a_crashed_dequeue_of_an_unordered_queue_may_remove_any_element() -> None:
    m = MODELS["unordered-queue"]
    crashed = pair_operations(h((1, "invoke", "dequeue", None), (1, "info", "dequeue", None)))[0]
    state = frozenset({(1, 1), (2, 2)})
    # one state per element it may have removed (in the order of repr(value, count))
    assert list(m.step(state, crashed)) == [frozenset({(2, 2)}), frozenset({(1, 1), (2, 1)})]
    # 1 and 2 enqueued, a dequeue crashed, then 2 and an empty queue: the crashed
    # dequeue took 1
    events = seq(
        (0, "enqueue", 1, 1),
        (0, "enqueue", 2, 2),
        (1, "dequeue", None, None, "info"),
        (2, "dequeue", None, 2),
        (2, "dequeue", None, None),
    )
    assert check_exhaustively(events, m) == "linearizable"
    result = check_history(events, m)
    assert result.verdict == "linearizable"
    assert [o.describe() for o in result.linearized] == [
        "p0 enqueue(1) -> ok",
        "p0 enqueue(2) -> ok",
        "p2 dequeue() -> 2",
        "p1 dequeue() -> info",
        "p2 dequeue() -> null",
    ]


# --- the exhaustive reference checker -------------------------------------------------


def test_the_reference_gives_the_model_info_operations_without_an_output() -> None:
    # The model contract: an info operation reaches step() with output None,
    # whatever value its info completion carried (as check_history pairs it).
    def step(state: Any, op: Operation) -> Iterable[Any]:
        if op.status == "info" and op.output is not None:
            raise AssertionError(f"an info operation with an output: {op.describe()}")
        if op.f == "read":
            return (state,) if op.output == state else ()
        return (op.value,)

    m = Model(name="strict-register", init=None, step=step)
    # write(1) crashed with a value on its completion; the read of 1 needs it
    events = seq((0, "write", 1, 1, "info"), (1, "read", None, 1))
    assert check_exhaustively(events, m) == "linearizable"
    assert check_history(events, m).verdict == "linearizable"


# --- the search's growth and reset pruning (kv with string appends) -----------------


def test_a_put_not_yet_linearized_after_a_linearized_operation_still_allows_a_read() -> None:
    # Found by a differential search of simulated kv histories against the
    # exhaustive checker: the read of "xzy" needs put(x) (invoked before it)
    # followed by the two appends; the reset prune must count put(x) as not
    # linearized while an operation invoked after it is.
    events = h(
        (0, "invoke", "get", None),
        (0, "ok", "get", ""),
        (0, "invoke", "put", "x"),
        (1, "invoke", "append", "z"),
        (0, "ok", "put", "x"),
        (0, "invoke", "append", "y"),
        (0, "ok", "append", "y"),
        (1, "info", "append", None),
        (0, "invoke", "put", "y"),
        (1, "invoke", "get", None),
        (1, "ok", "get", "xzy"),
        (1, "invoke", "get", None),
        (0, "ok", "put", "y"),
        (1, "ok", "get", "y"),
        key="k",
    )
    kv = MODELS["kv"].with_initial("")
    assert check_exhaustively(events, kv) == "linearizable"
    result = check_history(events, kv)
    assert result.verdict == "linearizable"
    assert [o.describe() for o in result.linearized][-2:] == [
        "p0 put['k']('y') -> ok",
        "p1 get['k']() -> 'y'",
    ]


# --- the greedy pass resumed after a help ----------------------------------------------

# A simulated register history (28 operations, 6 clients) the pass gets stuck on
# at its 11th call; one help (a search of 26 states) orders its window, and the
# pass, resumed with two calls left, finishes within its budget.
_RESUMED = h(
    (1, "invoke", "write", 3),
    (0, "invoke", "write", 1),
    (4, "invoke", "read", None),
    (5, "invoke", "write", 0),
    (2, "invoke", "write", 2),
    (5, "ok", "write", 0),
    (5, "invoke", "read", None),
    (4, "ok", "read", 0),
    (4, "invoke", "write", 3),
    (3, "invoke", "read", None),
    (4, "ok", "write", 3),
    (2, "ok", "write", 2),
    (1, "ok", "write", 3),
    (5, "ok", "read", 1),
    (1, "invoke", "read", None),
    (3, "ok", "read", 1),
    (0, "ok", "write", 1),
    (5, "invoke", "read", None),
    (5, "ok", "read", 1),
    (3, "invoke", "write", 3),
    (0, "invoke", "write", 3),
    (1, "ok", "read", 1),
    (5, "invoke", "read", None),
    (2, "invoke", "read", None),
    (4, "invoke", "write", 1),
    (1, "invoke", "read", None),
    (3, "ok", "write", 3),
    (0, "ok", "write", 3),
    (3, "invoke", "write", 3),
    (0, "invoke", "read", None),
    (1, "ok", "read", 3),
    (2, "ok", "read", 3),
    (1, "invoke", "read", None),
    (2, "invoke", "write", 2),
    (3, "ok", "write", 3),
    (3, "invoke", "write", 0),
    (2, "ok", "write", 2),
    (4, "ok", "write", 1),
    (4, "invoke", "read", None),
    (1, "ok", "read", 1),
    (5, "ok", "read", 3),
    (1, "invoke", "write", 2),
    (3, "ok", "write", 0),
    (1, "ok", "write", 2),
    (0, "ok", "read", 0),
    (2, "invoke", "read", None),
    (2, "ok", "read", 2),
    (5, "invoke", "read", None),
    (2, "invoke", "write", 0),
    (3, "invoke", "read", None),
    (1, "invoke", "read", None),
    (4, "ok", "read", 2),
    (3, "ok", "read", 0),
    (2, "ok", "write", 0),
    (1, "ok", "read", 0),
    (5, "ok", "read", 0),
)
_RESUMED_WITNESS = [
    *("p5 write(0) -> ok", "p4 read() -> 0", "p4 write(3) -> ok", "p2 write(2) -> ok"),
    *("p1 write(3) -> ok", "p0 write(1) -> ok", "p5 read() -> 1", "p3 read() -> 1"),
    *("p1 read() -> 1", "p5 read() -> 1", "p3 write(3) -> ok", "p5 read() -> 3"),
    *("p2 read() -> 3", "p1 read() -> 3", "p0 write(3) -> ok", "p3 write(3) -> ok"),
    *("p2 write(2) -> ok", "p4 write(1) -> ok", "p1 read() -> 1", "p3 write(0) -> ok"),
    *("p0 read() -> 0", "p1 write(2) -> ok", "p4 read() -> 2", "p2 read() -> 2"),
    *("p2 write(0) -> ok", "p5 read() -> 0", "p3 read() -> 0", "p1 read() -> 0"),
]


def test_a_pass_resumed_near_the_end_finishes_without_a_second_help() -> None:
    ops = pair_operations(_RESUMED)
    alone, stuck = greedy_pass(ops, MODELS["register"])
    assert alone is None and stuck.at == 10
    witness, states = help_pass(stuck)
    assert witness is not None
    assert ([o.describe() for o in witness], states) == (_RESUMED_WITNESS, 26)
    result = check_history(_RESUMED, "register")
    assert [(p.verdict, p.states) for p in result.partitions] == [("linearizable", 26)]
    assert result.partitions[0].unplaceable == ()
    assert [o.describe() for o in result.linearized] == _RESUMED_WITNESS


# --- the reachable-state precheck's state bound ------------------------------------------


def test_the_reachable_states_are_computed_up_to_exactly_their_state_bound() -> None:
    # one kind of add: 256 states (the bound) are computed, 257 are not
    events = seq((0, "add", 1, 1), (1, "read", None, 999))
    result = check_history(events, _ring(256))
    assert (result.verdict, result.reason, result.states) == ("not-linearizable", "impossible", 0)
    result = check_history(events, _ring(257))
    assert (result.verdict, result.reason) == ("not-linearizable", "")
    assert [o.describe() for o in result.linearized] == ["p0 add(1) -> ok"]


# --- the stale-read and forced-order witnesses, behind a search that cannot decide -


def test_a_stale_read_after_one_with_an_open_setter_is_still_found() -> None:
    # a write of 100 never returned: the read of 100 is no witness; the later
    # read of 101 is (the stale-read witness goes on past the first)
    tail = [
        HistoryEvent(99, "invoke", "write", 100),
        *seq(
            (100, "write", 100, 100),
            (101, "write", 101, 101),
            (102, "read", None, 100),
            (103, "write", 103, 103),
            (104, "read", None, 101),
        ),
    ]
    result = check_history(_hard() + tail, "register", max_states=500)
    assert (result.verdict, result.reason) == ("not-linearizable", "stale")
    assert [o.describe() for o in result.unplaceable] == [
        "p104 read() -> 101",
        "p102 read() -> 100",
        "p101 write(101) -> ok",
    ]


def test_a_write_that_ended_info_may_set_its_value_after_its_end() -> None:
    # write(100) by p99 ended info before write(101) began: it may still take
    # effect after write(101), just before the read of 100 (no stale read)
    tail = seq(
        (100, "write", 100, 100),
        (99, "write", 100, None, "info"),
        (101, "write", 101, 101),
        (102, "read", None, 100),
    )
    result = check_history(_hard() + tail, "register", max_states=500)
    assert (result.verdict, result.reason) == ("unknown", "max_states")


def test_the_forced_order_closure_gives_up_past_its_work_bound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    events = _hard() + _chain()
    result = check_history(events, "register", max_states=500)
    assert (result.verdict, result.reason) == ("not-linearizable", "forced-order")
    # (the chain's closure takes more than 100 steps on these 48 operations)
    monkeypatch.setattr(_check_module, "_CHAIN_WORK", 100)
    result = check_history(events, "register", max_states=500)
    assert (result.verdict, result.reason) == ("unknown", "max_states")


# --- counts of the result -------------------------------------------------------------


def test_the_operations_path_counts_every_indeterminate_operation() -> None:
    # two writes ended info, a read ended info (ignored: it changes nothing),
    # a failed write (ignored), and p2 reincarnated after its info read
    events = seq(
        (0, "write", 1, None, "info"),
        (1, "write", 2, None, "info"),
        (2, "read", None, None, "info"),
        (3, "write", 3, None, "fail"),
        (2, "read", None, 2),
    )
    expected = Treated(indeterminate=2, ignored=2, reincarnated=1)
    assert check_operations(pair_operations(events), "register").treated == expected
    assert check_history(events, "register").treated == expected


# --- models ---------------------------------------------------------------------------


def test_a_lock_acquired_for_an_owner_is_released_by_that_process() -> None:
    # owner = the value, or the process if null: acquire(3) by p1 makes p3 the
    # owner, and p3's release (no value) releases it
    events = seq((1, "acquire", 3, 3), (3, "release", None, None))
    assert check_exhaustively(events, "lock") == "linearizable"
    assert check_history(events, "lock").verdict == "linearizable"
    events = seq((1, "acquire", 3, 3), (1, "release", None, None))
    assert check_history(events, "lock").verdict == "not-linearizable"


def test_an_unordered_queue_starts_from_a_multiset_of_its_list() -> None:
    m = MODELS["unordered-queue"].with_initial([1, 1, 2])
    assert m.init == frozenset({(1, 2), (2, 1)})
    events = seq((0, "dequeue", None, 1), (0, "dequeue", None, 2), (0, "dequeue", None, 1))
    assert check_history(events, m).verdict == "linearizable"
    events += seq((0, "dequeue", None, 1))
    assert check_history(events, m).verdict == "not-linearizable"


def test_a_set_read_may_grow_only_from_its_subsets() -> None:
    s = MODELS["set"]
    assert s.may_grow_into is not None
    read = pair_operations(seq((0, "read", None, [1, 3])))[0]
    assert [s.may_grow_into(frozenset(v), read) for v in ([], [1], [1, 3], [1, 2])] == [
        True,
        True,
        True,
        False,
    ]
    crashed = pair_operations(seq((0, "read", None, None, "info")))[0]
    assert s.may_grow_into(frozenset({1, 2}), crashed)  # (no output: unsure)


# --- the exhaustive reference checker, its own pairing --------------------------------


def test_the_reference_tells_json_objects_by_their_keys() -> None:
    events = seq((0, "write", {"a": 1}, {"a": 1}), (1, "read", None, {"b": 1}))
    assert check_exhaustively(events, "register") == "not-linearizable"
    events = seq((0, "write", {"a": 1, "b": 2}, None), (1, "read", None, {"b": 2, "a": 1}))
    assert check_exhaustively(events, "register") == "linearizable"


def test_the_reference_numbers_operations_in_order_of_invocation() -> None:
    # a model that logs the index of each operation it applies
    def step(state: Any, op: Operation) -> Iterable[Any]:
        if op.f == "read":
            return (state,) if op.output == state else ()
        return ((*state, op.index),)

    m = Model(name="log", init=(), step=step)
    events = seq((0, "add", None, None), (1, "add", None, None), (0, "read", None, [0, 1]))
    assert check_exhaustively(events, m) == "linearizable"
    assert check_history(events, m).verdict == "linearizable"


# --- the search's growth and reset hints, on small kv histories ------------------------
# Each found by a differential search of simulated (linearizable) kv histories, the
# checker as it is against a changed hint or prune: (model, events, the witness,
# the states the search caches). A wrong hint makes a linearizable history "not
# linearizable" or crashes; a hint or prune lost makes the search cache more states.

_KV = MODELS["kv"]
_KV_STR = MODELS["kv"].with_initial("")
_GROWTH_CASES_2: list[tuple[Model, list[tuple[Any, ...]], list[str], int]] = [
    (
        # the read of "xz" after put(x): growth from "" or "z" cannot give it
        _KV_STR,
        [
            (0, "invoke", "append", "z"),
            (1, "invoke", "append", "z"),
            (3, "invoke", "get", None),
            (2, "invoke", "put", "x"),
            (0, "ok", "append", "z"),
            (3, "ok", "get", "xz"),
            (1, "ok", "append", "z"),
            (2, "ok", "put", "x"),
        ],
        [
            "p0 append['k']('z') -> ok",
            "p2 put['k']('x') -> ok",
            "p1 append['k']('z') -> ok",
            "p3 get['k']() -> 'xz'",
        ],
        4,
    ),
    (
        # lists: the read of [x, 1] grows from put([x]) (a prefix)
        _KV,
        [
            (0, "invoke", "append", 2),
            (0, "ok", "append", 2),
            (1, "invoke", "get", None),
            (0, "invoke", "put", ["x"]),
            (2, "invoke", "append", 1),
            (0, "ok", "put", ["x"]),
            (2, "info", "append", None),
            (1, "ok", "get", ["x", 1]),
        ],
        [
            "p0 append['k'](2) -> ok",
            "p0 put['k'](['x']) -> ok",
            "p2 append['k'](1) -> info",
            "p1 get['k']() -> ['x', 1]",
        ],
        4,
    ),
    (
        # lists of a string and a number: the first growth from the missing key
        _KV,
        [
            (1, "invoke", "append", "x"),
            (0, "invoke", "append", 2),
            (1, "info", "append", None),
            (0, "info", "append", None),
            (1, "invoke", "get", None),
            (1, "ok", "get", [2, "x"]),
        ],
        [
            "p0 append['k'](2) -> info",
            "p1 append['k']('x') -> info",
            "p1 get['k']() -> [2, 'x']",
        ],
        4,
    ),
    (
        # a put that ended info, then an append: the read of "yy" needs both
        _KV_STR,
        [
            (2, "invoke", "put", "y"),
            (2, "info", "put", None),
            (2, "invoke", "append", "y"),
            (2, "ok", "append", "y"),
            (0, "invoke", "get", None),
            (0, "ok", "get", "yy"),
        ],
        [
            "p2 put['k']('y') -> info",
            "p2 append['k']('y') -> ok",
            "p0 get['k']() -> 'yy'",
        ],
        4,
    ),
    (
        # two appends that ended info, in the order the read shows
        _KV_STR,
        [
            (1, "invoke", "append", "x"),
            (0, "invoke", "append", "z"),
            (1, "info", "append", None),
            (0, "info", "append", None),
            (1, "invoke", "get", None),
            (1, "ok", "get", "zx"),
        ],
        [
            "p0 append['k']('z') -> info",
            "p1 append['k']('x') -> info",
            "p1 get['k']() -> 'zx'",
        ],
        4,
    ),
]


_GROWTH_CASES_2.append(
    (
        # the appends toward the earliest read ("yx": y, then x) are tried first
        _KV_STR,
        [
            (2, "invoke", "get", None),
            (1, "invoke", "append", "y"),
            (0, "invoke", "append", "x"),
            (2, "ok", "get", "yx"),
            (2, "invoke", "put", "y"),
            (0, "ok", "append", "x"),
            (0, "invoke", "append", "y"),
            (2, "ok", "put", "y"),
            (1, "ok", "append", "y"),
            (0, "ok", "append", "y"),
        ],
        [
            "p1 append['k']('y') -> ok",
            "p0 append['k']('x') -> ok",
            "p2 get['k']() -> 'yx'",
            "p2 put['k']('y') -> ok",
            "p0 append['k']('y') -> ok",
        ],
        5,
    )
)


@pytest.mark.parametrize("case", range(len(_GROWTH_CASES_2)))
def test_growth_hints_on_small_kv_histories(case: int) -> None:
    model, rows, witness, states = _GROWTH_CASES_2[case]
    events = h(*rows, key="k")
    assert check_exhaustively(events, model) == "linearizable"
    result = check_history(events, model)
    assert (result.verdict, result.states) == ("linearizable", states)
    assert [o.describe() for o in result.linearized] == witness


# --- the greedy pass's moves ----------------------------------------------------------


def test_a_read_is_enabled_by_one_operation_and_placed_right_after_it() -> None:
    # p0's read of 3 is due when write(3) by p1 and p2 are placed in turn: the
    # pass enables it with the first write of 3 and places it right after
    events = h(
        (0, "invoke", "write", 2),
        (0, "ok", "write", 2),
        (2, "invoke", "write", 2),
        (2, "ok", "write", 2),
        (1, "invoke", "write", 1),
        (1, "ok", "write", 1),
        (1, "invoke", "write", 3),
        (0, "invoke", "read", None),
        (2, "invoke", "write", 3),
        (1, "ok", "write", 3),
        (2, "ok", "write", 3),
        (0, "ok", "read", 3),
    )
    result = check_history(events, "register")
    assert (result.verdict, result.states) == ("linearizable", 0)
    assert [o.describe() for o in result.linearized] == [
        "p0 write(2) -> ok",
        "p2 write(2) -> ok",
        "p1 write(1) -> ok",
        "p1 write(3) -> ok",
        "p0 read() -> 3",
        "p2 write(3) -> ok",
    ]


# A simulated register history (22 operations, 5 clients, writes ended info) that
# the pass linearizes alone only by reordering its last operations (replayed from
# the states before each).
_REORDERED_2 = h(
    (2, "invoke", "write", 3),
    (2, "ok", "write", 3),
    (0, "invoke", "write", 3),
    (4, "invoke", "read", None),
    (0, "ok", "write", 3),
    (4, "ok", "read", 3),
    (3, "invoke", "read", None),
    (3, "ok", "read", 3),
    (3, "invoke", "write", 2),
    (3, "info", "write", None),
    (2, "invoke", "read", None),
    (2, "ok", "read", 3),
    (2, "invoke", "write", 3),
    (3, "invoke", "write", 0),
    (4, "invoke", "read", None),
    (3, "ok", "write", 0),
    (4, "ok", "read", 0),
    (2, "ok", "write", 3),
    (4, "invoke", "read", None),
    (4, "ok", "read", 3),
    (2, "invoke", "write", 2),
    (0, "invoke", "write", 3),
    (0, "ok", "write", 3),
    (2, "ok", "write", 2),
    (4, "invoke", "read", None),
    (4, "ok", "read", 3),
    (3, "invoke", "write", 0),
    (3, "info", "write", None),
    (4, "invoke", "write", 3),
    (4, "ok", "write", 3),
    (2, "invoke", "read", None),
    (2, "ok", "read", 3),
    (1, "invoke", "write", 1),
    (3, "invoke", "write", 2),
    (1, "info", "write", None),
    (3, "ok", "write", 2),
    (2, "invoke", "read", None),
    (3, "invoke", "write", 0),
    (3, "ok", "write", 0),
    (1, "invoke", "read", None),
    (2, "ok", "read", 0),
    (1, "ok", "read", 0),
)
_REORDERED_2_WITNESS = [
    "p2 write(3) -> ok",
    "p0 write(3) -> ok",
    "p4 read() -> 3",
    "p3 read() -> 3",
    "p2 read() -> 3",
    "p3 write(0) -> ok",
    "p4 read() -> 0",
    "p2 write(3) -> ok",
    "p4 read() -> 3",
    "p2 write(2) -> ok",
    "p0 write(3) -> ok",
    "p4 read() -> 3",
    "p4 write(3) -> ok",
    "p2 read() -> 3",
    "p3 write(2) -> ok",
    "p3 write(0) -> ok",
    "p2 read() -> 0",
    "p1 read() -> 0",
]


def test_the_pass_reorders_from_the_states_before_its_last_operations() -> None:
    result = check_history(_REORDERED_2, "register")
    assert (result.verdict, result.states) == ("linearizable", 0)
    assert [o.describe() for o in result.linearized] == _REORDERED_2_WITNESS


# --- deadlines ------------------------------------------------------------------------


def test_a_deadline_reached_during_the_search_is_reported_as_a_timeout() -> None:
    # half a second: the search (about 185,000 states over its rounds before
    # max_states) runs out of time first on any machine this runs on
    result = check_history(_hard(), "register", timeout=0.5, max_states=100_000)
    assert (result.verdict, result.reason) == ("unknown", "timeout")
    assert [(p.verdict, p.reason) for p in result.partitions] == [("unknown", "timeout")]


def test_a_deadline_passed_before_the_searches_times_out_every_partition() -> None:
    a = [HistoryEvent(e.process, e.type, e.f, e.value, key="a") for e in _hard()]
    b = [HistoryEvent(e.process + 100, e.type, e.f, e.value, key="b") for e in _hard()]
    result = check_history(a + b, "kv", timeout=1e-9)
    assert (result.verdict, result.reason, result.failing_key) == ("unknown", "timeout", "a")
    assert [(p.key, p.verdict, p.reason, p.states) for p in result.partitions] == [
        ("a", "unknown", "timeout", 0),
        ("b", "unknown", "timeout", 0),
    ]


def test_the_search_stops_at_a_deadline_already_passed() -> None:
    # (it looks at the clock every 1,024 steps: long before 5,000 states)
    ops = pair_operations(_hard())
    out = search(ops, MODELS["register"], deadline=time.monotonic() - 1, max_states=5_000)
    assert (out.verdict, out.reason) == ("unknown", "timeout")
    assert 0 < out.states < 5_000


# --- the growth prune without the resets hint ------------------------------------------


def test_growth_prune_with_puts_the_model_says_nothing_about() -> None:
    # kv without the resets hint: a put is neither growth nor a reset, so only
    # the earliest-deadline read is checked against growth of the current state
    model = attrs.evolve(_KV_STR, resets=None)
    events = h(
        (0, "invoke", "append", "z"),
        (0, "ok", "append", "z"),
        (1, "invoke", "get", None),
        (0, "invoke", "put", "x"),
        (2, "invoke", "append", "z"),
        (0, "ok", "put", "x"),
        (2, "info", "append", None),
        (1, "ok", "get", "xz"),
        key="k",
    )
    assert check_exhaustively(events, model) == "linearizable"
    result = check_history(events, model)
    assert (result.verdict, result.states) == ("linearizable", 4)
    assert [o.describe() for o in result.linearized] == [
        "p0 append['k']('z') -> ok",
        "p0 put['k']('x') -> ok",
        "p2 append['k']('z') -> info",
        "p1 get['k']() -> 'xz'",
    ]


# --- more of the witnesses and the partition rounds -------------------------------------


def test_a_stale_read_behind_a_cas() -> None:
    # the cas from 100 to 101 returned before the read of 100 began, after the
    # only write of 100: the register view knows a cas's need and value
    tail = seq((100, "write", 100, 100), (101, "cas", [100, 101], None), (102, "read", None, 100))
    result = check_history(_hard() + tail, "cas-register", max_states=500)
    assert (result.verdict, result.reason) == ("not-linearizable", "stale")
    assert [o.describe() for o in result.unplaceable] == [
        "p102 read() -> 100",
        "p101 cas([100, 101]) -> ok",
        "p100 write(100) -> ok",
    ]


def test_a_lone_partition_is_searched_in_rounds_not_in_a_first_round() -> None:
    # the only partition (no others after it) skips the first round: its first
    # search runs out of budget, and the stale-read witness decides with no
    # states of its own (a first round would report its search's states)
    tail = seq((100, "write", 100, 100), (101, "write", 101, 101), (102, "read", None, 100))
    result = check_history(_hard() + tail, "register")
    assert (result.verdict, result.reason, result.states) == ("not-linearizable", "stale", 0)


def test_a_timeout_leaves_the_search_its_time() -> None:
    # a history the search decides (4 states) within a minute's timeout
    model, rows, _, states = _GROWTH_CASES_2[0]
    result = check_history(h(*rows, key="k"), model, timeout=60)
    assert (result.verdict, result.states) == ("linearizable", states)


def test_the_cas_closure_steps_each_cas_in_the_state_of_its_expected_value() -> None:
    # write(5), cas(5 -> 6), read of 6, read of 7: 6 is reachable (through the
    # cas from the state 5), 7 is not: the read of 7 is the impossible one
    events = seq(
        (0, "write", 5, 5), (0, "cas", [5, 6], None), (0, "read", None, 6), (0, "read", None, 7)
    )
    result = check_history(events, "cas-register")
    assert (result.verdict, result.reason) == ("not-linearizable", "impossible")
    assert [o.describe() for o in result.unplaceable] == ["p0 read() -> 7"]


def test_an_invocation_left_open_keeps_its_process_incarnation() -> None:
    # p0 crashed acquiring; its next incarnation, (0, 1), acquires and never
    # returns: p1 releases the lock for owner [0, 1], which only that open
    # acquire can have taken (the first acquire's owner is p0)
    events = [
        *h((0, "invoke", "acquire", None), (0, "info", "acquire", None)),
        *h((0, "invoke", "acquire", None)),
        *h((1, "invoke", "release", [0, 1]), (1, "ok", "release", [0, 1])),
    ]
    assert [o.incarnation for o in pair_operations(events)] == [0, 1, 0]
    assert check_exhaustively(events, "lock") == "linearizable"
    result = check_history(events, "lock")
    assert result.verdict == "linearizable"
    assert result.treated == Treated(indeterminate=2, ignored=0, reincarnated=1)


def test_the_stale_read_sweep_takes_operations_by_invocation() -> None:
    # p101's read of 101 (a value only an unfinished write sets) began before
    # write(102) and returned after it: the sweep must add write(102), invoked
    # after write(100) returned, though it returned before that read did.
    # Found by a differential search of small register histories.
    tail = h(
        (99, "invoke", "write", 101),
        (102, "invoke", "write", 100),
        (101, "invoke", "read", None),
        (102, "ok", "write", 100),
        (100, "invoke", "write", 102),
        (100, "ok", "write", 102),
        (100, "invoke", "read", None),
        (101, "ok", "read", 101),
        (100, "ok", "read", 100),
    )
    result = check_history(_hard() + tail, "register", max_states=500)
    assert (result.verdict, result.reason) == ("not-linearizable", "stale")
    assert [o.describe() for o in result.unplaceable] == [
        "p100 read() -> 100",
        "p100 write(102) -> ok",
        "p102 write(100) -> ok",
    ]


def test_reordering_moves_each_operation_once() -> None:
    # add(2) and add(1) concurrent, then two reads of 6: the counter reaches 3
    # at most, whatever the order (a reordering that placed an add twice would
    # reach 6). Found by a differential search of small counter histories.
    events = h(
        (2, "invoke", "add", 2),
        (0, "invoke", "add", 1),
        (0, "ok", "add", 1),
        (2, "ok", "add", 2),
        (2, "invoke", "read", None),
        (0, "invoke", "read", None),
        (2, "ok", "read", 6),
        (0, "ok", "read", 6),
    )
    assert check_exhaustively(events, "counter") == "not-linearizable"
    result = check_history(events, "counter")
    assert (result.verdict, result.reason) == ("not-linearizable", "")
    assert [o.describe() for o in result.linearized] == ["p0 add(1) -> ok", "p2 add(2) -> ok"]


def test_the_pass_may_spend_its_whole_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    # With one step per operation (plus 16) the pass still linearizes this
    # history alone: enabling the last read spends the budget down to exactly 0,
    # which is still within it. Found by a differential search.
    monkeypatch.setattr(_witness_module, "_STEPS_PER_OPERATION", 1)
    events = h(
        (1, "invoke", "write", 2),
        (1, "ok", "write", 2),
        (0, "invoke", "write", 2),
        (1, "invoke", "read", None),
        (1, "ok", "read", 2),
        (1, "invoke", "read", None),
        (1, "ok", "read", 2),
        (1, "invoke", "write", 0),
        (1, "ok", "write", 0),
        (1, "invoke", "read", None),
        (1, "ok", "read", 0),
        (0, "ok", "write", 2),
        (1, "invoke", "read", None),
        (1, "ok", "read", 0),
        (0, "invoke", "write", 3),
        (0, "ok", "write", 3),
        (0, "invoke", "write", 0),
        (0, "info", "write", None),
        (1, "invoke", "read", None),
        (1, "ok", "read", 0),
    )
    result = check_history(events, "register")
    assert (result.verdict, result.states) == ("linearizable", 0)
    assert [o.describe() for o in result.linearized][-3:] == [
        "p0 write(3) -> ok",
        "p0 write(0) -> info",
        "p1 read() -> 0",
    ]


def test_growth_prune_with_a_reset_among_the_candidates() -> None:
    # kv where only put is a reset (write, the same step, has no hint): the
    # node is not a dead end while a put not yet linearized sets a state that
    # may grow into the earliest read ("y", then "z" appended: "yz")
    model = attrs.evolve(_KV_STR, resets=lambda op: op.f == "put")
    events = h(
        (0, "invoke", "put", "y"),
        (0, "info", "put", None),
        (1, "invoke", "append", "z"),
        (1, "ok", "append", "z"),
        (0, "invoke", "get", None),
        (0, "ok", "get", "yz"),
        (0, "invoke", "write", "y"),
        (0, "info", "write", None),
        key="k",
    )
    assert check_exhaustively(events, model) == "linearizable"
    result = check_history(events, model)
    assert (result.verdict, result.states) == ("linearizable", 5)
    assert [o.describe() for o in result.linearized] == [
        "p0 put['k']('y') -> info",
        "p1 append['k']('z') -> ok",
        "p0 get['k']() -> 'yz'",
    ]


def _view_with_info_cas(op: Operation) -> tuple[Any, Any]:
    """cas-register's view, but declaring an info cas's need and value too."""
    view = MODELS["cas-register"].register_view
    assert view is not None
    if op.f == "cas" and op.status == "info":
        expected, new = op.value
        return expected, new
    return view(op)


def test_an_info_operation_is_never_the_stale_read() -> None:
    # a cas from 100 that ended info after write(101): it may never have taken
    # effect, so it is no stale read even when the view declares its need
    model = attrs.evolve(MODELS["cas-register"], register_view=_view_with_info_cas)
    tail = seq(
        (100, "write", 100, 100),
        (101, "write", 101, 101),
        (102, "cas", [100, 102], None, "info"),
    )
    result = check_history(_hard() + tail, model, max_states=500)
    assert (result.verdict, result.reason) == ("unknown", "max_states")


def test_no_stale_read_witness_from_an_unhashable_initial_state() -> None:
    # a register whose initial state is a list (cached under a key): the
    # stale-read witness stands aside, the forced-order one decides
    model = attrs.evolve(
        MODELS["register"],
        init=[],
        state_key=lambda s: tuple(s) if isinstance(s, list) else s,
    )
    tail = seq((100, "write", 100, 100), (101, "write", 101, 101), (102, "read", None, 100))
    result = check_history(_hard() + tail, model, max_states=500)
    assert (result.verdict, result.reason) == ("not-linearizable", "forced-order")


def test_a_stale_read_in_a_first_key_found_by_its_first_round() -> None:
    # 40 concurrent puts, then put(99) and a get of 1 in key "a", a fine key "b"
    # after it: the first round's search (1,000 states) does not decide "a", its
    # stale-read witness does, with the states that search cached
    events = [HistoryEvent(p, "invoke", "put", p % 20, key="a") for p in range(40)]
    events += [HistoryEvent(p, "ok", "put", p % 20, key="a") for p in range(40)]
    events += h((50, "invoke", "put", 99), (50, "ok", "put", 99), key="a")
    events += h((51, "invoke", "get", None), (51, "ok", "get", 1), key="a")
    events += h((60, "invoke", "put", 1), (60, "ok", "put", 1), key="b")
    result = check_history(events, "kv")
    assert (result.verdict, result.reason, result.failing_key) == ("not-linearizable", "stale", "a")
    assert [o.describe() for o in result.unplaceable] == [
        "p51 get['a']() -> 1",
        "p50 put['a'](99) -> ok",
        "p21 put['a'](1) -> ok",
    ]
    assert result.linearized == ()
    assert [(p.key, p.verdict, p.reason) for p in result.partitions] == [
        ("a", "not-linearizable", "stale"),
        ("b", "unknown", "not-checked"),
    ]
    assert result.partitions[0].states > 0  # (the first round's search ran)


# Simulated register histories the greedy pass linearizes alone (no search), each
# through one of its moves; found by a differential search against a changed move.
_REORDER_TWO = h(
    (1, "invoke", "write", 1),
    (3, "invoke", "write", 3),
    (3, "ok", "write", 3),
    (2, "invoke", "write", 1),
    (1, "ok", "write", 1),
    (4, "invoke", "read", None),
    (4, "ok", "read", 3),
    (4, "invoke", "write", 0),
    (4, "ok", "write", 0),
    (0, "invoke", "read", None),
    (0, "ok", "read", 1),
    (2, "ok", "write", 1),
    (1, "invoke", "read", None),
    (1, "ok", "read", 1),
    (2, "invoke", "read", None),
    (0, "invoke", "read", None),
    (2, "ok", "read", 1),
    (0, "ok", "read", 1),
    (1, "invoke", "write", 0),
    (1, "ok", "write", 0),
)
_REORDER_TWO_WITNESS = [
    "p1 write(1) -> ok",
    "p3 write(3) -> ok",
    "p4 read() -> 3",
    "p4 write(0) -> ok",
    "p2 write(1) -> ok",
    "p0 read() -> 1",
    "p1 read() -> 1",
    "p2 read() -> 1",
    "p0 read() -> 1",
    "p1 write(0) -> ok",
]

_REORDER_EACH = h(
    (5, "invoke", "write", 0),
    (5, "ok", "write", 0),
    (1, "invoke", "read", None),
    (1, "ok", "read", 0),
    (0, "invoke", "write", 2),
    (0, "ok", "write", 2),
    (2, "invoke", "write", 0),
    (0, "invoke", "write", 2),
    (1, "invoke", "read", None),
    (3, "invoke", "write", 2),
    (1, "ok", "read", 0),
    (3, "ok", "write", 2),
    (2, "ok", "write", 0),
    (0, "ok", "write", 2),
    (4, "invoke", "read", None),
    (4, "ok", "read", 2),
)
_REORDER_EACH_WITNESS = [
    "p5 write(0) -> ok",
    "p1 read() -> 0",
    "p0 write(2) -> ok",
    "p3 write(2) -> ok",
    "p2 write(0) -> ok",
    "p1 read() -> 0",
    "p0 write(2) -> ok",
    "p4 read() -> 2",
]

_REARRANGED = h(
    (0, "invoke", "write", 0),
    (0, "ok", "write", 0),
    (2, "invoke", "write", 3),
    (2, "ok", "write", 3),
    (0, "invoke", "read", None),
    (0, "ok", "read", 3),
    (5, "invoke", "write", 3),
    (3, "invoke", "read", None),
    (2, "invoke", "read", None),
    (4, "invoke", "write", 0),
    (5, "ok", "write", 3),
    (0, "invoke", "read", None),
    (3, "ok", "read", 0),
    (2, "ok", "read", 3),
    (4, "info", "write", None),
    (0, "ok", "read", 3),
    (2, "invoke", "read", None),
    (2, "ok", "read", 3),
    (2, "invoke", "read", None),
    (2, "ok", "read", 3),
)
_REARRANGED_WITNESS = [
    "p0 write(0) -> ok",
    "p2 write(3) -> ok",
    "p0 read() -> 3",
    "p2 read() -> 3",
    "p4 write(0) -> info",
    "p3 read() -> 0",
    "p5 write(3) -> ok",
    "p0 read() -> 3",
    "p2 read() -> 3",
    "p2 read() -> 3",
]


@pytest.mark.parametrize(
    "case",
    [
        (_REORDER_TWO, _REORDER_TWO_WITNESS),  # a window of two operations placed is reordered too
        (
            _REORDER_EACH,
            _REORDER_EACH_WITNESS,
        ),  # every one of the last operations placed may be moved to the end
        (_REARRANGED, _REARRANGED_WITNESS),  # rearranging leaves the state its new order reaches
    ],
)
def test_the_greedy_pass_moves_on_simulated_histories(
    case: tuple[list[HistoryEvent], list[str]],
) -> None:
    events, witness = case
    result = check_history(events, "register")
    assert (result.verdict, result.states) == ("linearizable", 0)
    assert [o.describe() for o in result.linearized] == witness
