"""The checker's fast paths' edges, one exact check each: the one-pass pairing's
errors and left-out operations, the greedy pass's reordering on its own, and the
helps of a stuck pass (when they run, what they return).

Written for the survivors of a mutation run restricted to the fast paths
(``benchmarks/mutation.py lincheck``; docs/verification.md lists them). Each
test asserts a verdict, a witness, an error or a count, never only that a line
ran.
"""

from __future__ import annotations

from typing import Any

import attrs
import pytest
from lincheck_rows import h

from trio_foundation.verify.history import HistoryError, HistoryEvent
from trio_foundation.verify.lincheck import MODELS, Treated, check_history, pair_operations
from trio_foundation.verify.lincheck import _witness as _witness_module
from trio_foundation.verify.lincheck._witness import greedy_linearization, greedy_pass, help_pass

# --- the one-pass pairing ------------------------------------------------------------


def test_a_second_outstanding_invocation_is_refused_with_its_event() -> None:
    events = h((0, "invoke", "write", 1), (0, "invoke", "write", 2))
    with pytest.raises(HistoryError) as caught:
        check_history(events, "register")
    assert str(caught.value) == "event 1: process 0 invoked 'write' with one outstanding"
    assert caught.value.line == 0  # (not from a file: no line number)


def test_the_first_unknown_operation_is_named_even_when_it_is_operation_0() -> None:
    # Two names the model does not know: the first in order of invocation is
    # named, also when it is the very first operation.
    events = h(
        (0, "invoke", "frob", 1),
        (1, "invoke", "zap", 2),
        (0, "ok", "frob", 1),
        (1, "ok", "zap", 2),
    )
    with pytest.raises(ValueError) as caught:
        check_history(events, "register")
    assert str(caught.value) == (
        "model 'register' has no operation 'frob' (operation 0, process 0); it knows read, write"
    )


def test_a_read_never_completed_is_left_out_of_its_key() -> None:
    # The get of "a" is still outstanding at the end: a read that may never
    # have happened, left out (ignored). Key "a" keeps its put, and comes
    # after "b" (the order of the first operation each key kept).
    events = h(
        (0, "invoke", "put", 1, "b"),
        (1, "invoke", "get", None, "a"),
        (0, "ok", "put", 1, "b"),
        (2, "invoke", "put", 3, "a"),
        (2, "ok", "put", 3, "a"),
    )
    result = check_history(events, "kv")
    assert result.verdict == "linearizable"
    assert [(p.key, p.verdict, p.operation_count) for p in result.partitions] == [
        ("b", "linearizable", 1),
        ("a", "linearizable", 1),
    ]
    assert result.treated == Treated(indeterminate=0, ignored=1, reincarnated=0)


# --- the greedy pass's reordering -----------------------------------------------------

# write(0) runs across everything; write(2) returns first and is placed first,
# then write(0): state 0; the last read returns 2, so write(0) went first.
_REORDERED = h(
    (1, "invoke", "write", 0),
    (0, "invoke", "write", 2),
    (0, "ok", "write", 2),
    (2, "invoke", "read", None),
    (2, "ok", "read", 2),
    (1, "ok", "write", 0),
    (3, "invoke", "read", None),
    (3, "ok", "read", 2),
)


def test_a_single_move_reorders_without_the_rearranging(monkeypatch: pytest.MonkeyPatch) -> None:
    # With no steps for the depth-first rearranging, the single moves alone
    # must find the order (write(0) moved back before write(2)), replaying
    # each candidate order with the model.
    monkeypatch.setattr(_witness_module, "_REARRANGE_STEPS", 0)
    witness = greedy_linearization(pair_operations(_REORDERED), MODELS["register"])
    assert witness is not None
    assert [o.describe() for o in witness] == [
        "p1 write(0) -> ok",
        "p0 write(2) -> ok",
        "p2 read() -> 2",
        "p3 read() -> 2",
    ]


# --- the helps of a stuck pass --------------------------------------------------------

# Not linearizable (write(0) was invoked after the read of 2 returned, and a
# later read returns 2 again): the pass gets stuck, and no help can succeed.
_STUCK_FOR_GOOD = h(
    (0, "invoke", "write", 2),
    (0, "ok", "write", 2),
    (2, "invoke", "read", None),
    (2, "ok", "read", 2),
    (1, "invoke", "write", 0),
    (3, "invoke", "read", None),
    (1, "ok", "write", 0),
    (3, "ok", "read", 2),
    (4, "invoke", "read", None),
    (4, "ok", "read", 2),
)


def test_a_help_without_states_gives_up_with_none_spent() -> None:
    witness, stuck = greedy_pass(pair_operations(_STUCK_FOR_GOOD), MODELS["register"])
    assert witness is None
    assert help_pass(stuck, max_states=0) == (None, 0)
    # with states, the help searches (and fails: the history is not linearizable)
    found, states = help_pass(stuck)
    assert found is None and states > 0


# A register history the pass alone gets stuck on (at its end) and a help
# linearizes: 15 operations, at most 6 running at once.
_HELPED = h(
    (3, "invoke", "write", 1),
    (4, "invoke", "read", None),
    (5, "invoke", "read", None),
    (2, "invoke", "write", 1),
    (4, "ok", "read", None),
    (5, "ok", "read", None),
    (0, "invoke", "read", None),
    (5, "invoke", "write", 2),
    (1, "invoke", "write", 3),
    (4, "invoke", "write", 2),
    (1, "ok", "write", 3),
    (1, "invoke", "read", None),
    (0, "ok", "read", 3),
    (0, "invoke", "write", 3),
    (1, "ok", "read", 2),
    (5, "ok", "write", 2),
    (4, "ok", "write", 2),
    (0, "ok", "write", 3),
    (4, "invoke", "read", None),
    (1, "invoke", "write", 3),
    (4, "ok", "read", 3),
    (2, "ok", "write", 1),
    (5, "invoke", "write", 2),
    (2, "invoke", "read", None),
    (0, "invoke", "read", None),
    (2, "ok", "read", 3),
    (0, "ok", "read", 3),
    (1, "ok", "write", 3),
    (5, "ok", "write", 2),
    (3, "ok", "write", 1),
)
_HELPED_WITNESS = [
    "p4 read() -> null",
    "p5 read() -> null",
    "p1 write(3) -> ok",
    "p0 read() -> 3",
    "p5 write(2) -> ok",
    "p1 read() -> 2",
    "p4 write(2) -> ok",
    "p0 write(3) -> ok",
    "p4 read() -> 3",
    "p2 write(1) -> ok",
    "p1 write(3) -> ok",
    "p2 read() -> 3",
    "p0 read() -> 3",
    "p5 write(2) -> ok",
    "p3 write(1) -> ok",
]


def _help(events: list[HistoryEvent], model: Any) -> tuple[list[str] | None, int]:
    alone, stuck = greedy_pass(pair_operations(events), model)
    assert alone is None  # (the pass alone is stuck)
    witness, states = help_pass(stuck)
    return (None if witness is None else [o.describe() for o in witness]), states


def test_a_helped_partition_is_linearizable_with_the_helps_witness_and_states() -> None:
    assert _help(_HELPED, MODELS["register"]) == (_HELPED_WITNESS, 15)
    result = check_history(_HELPED, "register")
    assert result.verdict == "linearizable"
    assert [(p.verdict, p.states) for p in result.partitions] == [("linearizable", 15)]
    assert result.states == 15
    assert [o.describe() for o in result.linearized] == _HELPED_WITNESS


def test_no_help_for_a_model_whose_states_need_a_key() -> None:
    # A register view with a state_key: states are not their own values, so
    # the pass is not helped (None, no states spent), and the search decides.
    keyed = attrs.evolve(MODELS["register"], state_key=lambda s: s)
    assert _help(_HELPED, keyed) == (None, 0)
    assert check_history(_HELPED, keyed).verdict == "linearizable"


def test_no_help_for_a_partition_with_a_growing_operation() -> None:
    # The same history on a kv key, with an append invoked at the end and never
    # completed: appends grow the value, and such a partition is not helped
    # (the search decides).
    renamed = {"write": "put", "read": "get"}
    events = [HistoryEvent(e.process, e.type, renamed[e.f], e.value, key="k") for e in _HELPED]
    events += h((6, "invoke", "append", "z", "k"))
    assert _help(events, MODELS["kv"]) == (None, 0)
    assert check_history(events, "kv").verdict == "linearizable"


def test_help_only_up_to_the_peak_of_operations_running_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ops = pair_operations(_HELPED)
    assert _witness_module._peak_running(ops) == 6
    assert _witness_module._peak_running(pair_operations(_REORDERED)) == 2
    # helped at a peak equal to the bound, not one above it
    monkeypatch.setattr(_witness_module, "_HELPED_PEAK", 6)
    assert _help(_HELPED, MODELS["register"]) == (_HELPED_WITNESS, 15)
    monkeypatch.setattr(_witness_module, "_HELPED_PEAK", 5)
    assert _help(_HELPED, MODELS["register"]) == (None, 0)


# --- the greedy pass's rearranging ----------------------------------------------------


def test_rearranging_replays_from_the_state_before_its_window() -> None:
    # The pass gets stuck on p4's read of 1 (invoked early, returned last);
    # rearranging its last operations must start from the state before
    # them (3, which p0's read needs first), not from the current state.
    events = h(
        (3, "invoke", "write", 1),
        (0, "invoke", "read", None),
        (2, "invoke", "write", 3),
        (4, "invoke", "read", None),
        (2, "ok", "write", 3),
        (1, "invoke", "write", 0),
        (2, "invoke", "write", 3),
        (2, "ok", "write", 3),
        (2, "invoke", "read", None),
        (4, "ok", "read", 0),
        (2, "ok", "read", 0),
        (4, "invoke", "read", None),
        (2, "invoke", "write", 3),
        (2, "ok", "write", 3),
        (1, "ok", "write", 0),
        (3, "ok", "write", 1),
        (1, "invoke", "read", None),
        (2, "invoke", "read", None),
        (3, "invoke", "write", 1),
        (0, "ok", "read", 3),
        (1, "ok", "read", 3),
        (2, "ok", "read", 3),
        (3, "ok", "write", 1),
        (4, "ok", "read", 1),
    )
    witness = greedy_linearization(pair_operations(events), MODELS["register"])
    assert witness is not None
    assert [o.describe() for o in witness] == [
        "p2 write(3) -> ok",
        "p2 write(3) -> ok",
        "p0 read() -> 3",
        "p1 write(0) -> ok",
        "p4 read() -> 0",
        "p2 read() -> 0",
        "p3 write(1) -> ok",
        "p2 write(3) -> ok",
        "p1 read() -> 3",
        "p2 read() -> 3",
        "p3 write(1) -> ok",
        "p4 read() -> 1",
    ]
    result = check_history(events, "register")
    assert result.ok and result.states == 0  # (the pass's witness: no search)
