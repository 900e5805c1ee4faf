"""The checker's fast paths: what they decide, and what they must leave alone.

* Pairing, the check of the operations' names and the grouping by key run in
  one pass in :func:`check_history`; :func:`check_operations` (operations
  already paired) takes the two-pass way. Both must give the same result and
  the same errors, in the same order.
* The greedy pass may reorder the last operations it placed when a read the
  state does not allow returns (two concurrent writes whose order only a later
  read shows); a move that breaks real time or the model must not be taken,
  and the pass must then leave the partition to the search.
"""

from __future__ import annotations

import attrs
import pytest
from lincheck_rows import Row, h

from trio_foundation.verify.history import HistoryError, HistoryEvent
from trio_foundation.verify.lincheck import (
    MODELS,
    check_exhaustively,
    check_history,
    check_operations,
    pair_operations,
)
from trio_foundation.verify.lincheck import _witness as _witness_module
from trio_foundation.verify.lincheck._wgl import search
from trio_foundation.verify.lincheck._witness import greedy_linearization

# --- one pass: pairing, names, grouping -------------------------------------------


def test_one_pass_and_two_passes_agree_with_left_out_first_operations() -> None:
    # Key "a" is invoked first, but its first operation failed (left out),
    # and key "c"'s first one is a read that timed out: the partitions come
    # in the order of their first operation kept, as the two-pass way orders
    # them. Process 2 reads "c" again after its crash (a fresh process).
    events = h(
        (0, "invoke", "put", 1, "a"),
        (1, "invoke", "put", 2, "b"),
        (2, "invoke", "get", None, "c"),
        (0, "fail", "put", 1, "a"),
        (1, "ok", "put", 2, "b"),
        (2, "info", "get", None, "c"),
        (0, "invoke", "put", 3, "a"),
        (0, "ok", "put", 3, "a"),
        (1, "invoke", "get", None, "b"),
        (1, "ok", "get", 1, "b"),
        (2, "invoke", "get", None, "c"),
        (2, "ok", "get", None, "c"),
    )
    fused = check_history(events, "kv")
    two = check_operations(pair_operations(events), "kv")
    assert attrs.evolve(fused, seconds=0.0) == attrs.evolve(two, seconds=0.0)
    assert [p.key for p in fused.partitions] == ["b", "a", "c"]
    assert fused.verdict == "not-linearizable" and fused.failing_key == "b"
    assert (fused.treated.ignored, fused.treated.reincarnated) == (2, 1)


def test_errors_come_in_the_same_order_on_both_paths() -> None:
    # A history that breaks the rules AND names an operation the model does
    # not know (or is checked against an unknown model): the history's error
    # first, as before the fused pass.
    broken = h(
        (0, "invoke", "cas", [1, 2]),
        (0, "ok", "cas", [1, 2]),
        (1, "ok", "read", 1),
    )
    with pytest.raises(HistoryError, match="without an invocation"):
        check_history(broken, "register")
    with pytest.raises(HistoryError, match="without an invocation"):
        check_history(broken, "no-such-model")
    with pytest.raises(HistoryError, match="without an invocation"):
        check_history(broken, "register", max_states=0)
    # Without the broken tail, the first unknown operation in order of
    # invocation is named (operation 1 here: operation 0 is a read).
    unknown = h(
        (0, "invoke", "read", None),
        (1, "invoke", "cas", [1, 2]),
        (2, "invoke", "frob", None),
        (2, "ok", "frob", None),
        (1, "ok", "cas", [1, 2]),
        (0, "ok", "read", None),
    )
    message = r"model 'register' has no operation 'cas' \(operation 1, process 1\)"
    with pytest.raises(ValueError, match=message):
        check_history(unknown, "register")
    with pytest.raises(ValueError, match=message):
        check_operations(pair_operations(unknown), "register")


def test_a_custom_partition_takes_the_two_pass_way() -> None:
    # A model with its own partition function (not the key) is grouped by it.
    by_parity = attrs.evolve(
        MODELS["register"], partition=lambda op: op.value % 2 if op.value else 0
    )
    events = h(
        (0, "invoke", "write", 1),
        (0, "ok", "write", 1),
        (1, "invoke", "write", 2),
        (1, "ok", "write", 2),
    )
    result = check_history(events, by_parity)
    assert result.ok and [p.key for p in result.partitions] == [1, 0]


# --- the greedy pass's reordering -------------------------------------------------


def _witness(events: list[HistoryEvent], model: str) -> list[str] | None:
    ops = pair_operations(events)
    found = greedy_linearization(ops, MODELS[model])
    return None if found is None else [o.describe() for o in found]


def test_greedy_pass_reorders_two_concurrent_writes_a_later_read_orders() -> None:
    # write(0) runs across everything; write(2) returns first and is placed
    # first, then write(0) when it returns: state 0. The last read returns 2:
    # write(0) must have taken effect before write(2). The pass moves it back
    # (it was invoked before write(2) and the first read returned) instead of
    # leaving the history to the search.
    events = h(
        (1, "invoke", "write", 0),
        (0, "invoke", "write", 2),
        (0, "ok", "write", 2),
        (2, "invoke", "read", None),
        (2, "ok", "read", 2),
        (1, "ok", "write", 0),
        (3, "invoke", "read", None),
        (3, "ok", "read", 2),
    )
    assert _witness(events, "register") == [
        "p1 write(0) -> ok",
        "p0 write(2) -> ok",
        "p2 read() -> 2",
        "p3 read() -> 2",
    ]
    result = check_history(events, "register")
    assert result.ok and result.states == 0  # (no search)
    assert check_exhaustively(events, "register") == "linearizable"


def test_greedy_pass_does_not_reorder_against_real_time() -> None:
    # The same, but write(0) was invoked after the first read returned: it
    # cannot move back before it, and the history is not linearizable. The
    # pass must give up (a witness would be a wrong verdict).
    events = h(
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
    assert _witness(events, "register") is None
    assert check_history(events, "register").verdict == "not-linearizable"
    assert check_exhaustively(events, "register") == "not-linearizable"


def test_greedy_pass_does_not_reorder_against_the_model() -> None:
    # cas(2, 5) needs 2 before it: moving write(2) after it (which real time
    # allows) would leave 2 for the last read but make the cas impossible;
    # moving the cas back before write(2) is impossible too. Linearizable
    # another way (write(2), cas, write(7)... no: the read of 2 needs 2 last),
    # so not linearizable, and the pass must not claim otherwise.
    events = h(
        (0, "invoke", "write", 2),
        (1, "invoke", "cas", [2, 5]),
        (0, "ok", "write", 2),
        (1, "ok", "cas", [2, 5]),
        (2, "invoke", "read", None),
        (2, "ok", "read", 2),
    )
    assert _witness(events, "cas-register") is None
    assert check_history(events, "cas-register").verdict == "not-linearizable"
    assert check_exhaustively(events, "cas-register") == "not-linearizable"


def test_greedy_pass_rearranges_its_last_operations(monkeypatch: pytest.MonkeyPatch) -> None:
    # write(0) returns first and is placed first, then write(1); the read
    # that returns 1 next is stuck, and no single move helps (write(0) has
    # reads of 0 after it). Trying the orders of the last operations placed
    # (write(1), the read of 1, then write(0) and its reads) unsticks it.
    rows: list[Row] = [
        (1, "invoke", "read", None),
        (2, "invoke", "write", 0),
        (0, "invoke", "write", 1),
        (2, "ok", "write", 0),
        (2, "invoke", "read", None),
        (0, "ok", "write", 1),
        (0, "invoke", "read", None),
        (0, "ok", "read", 0),
        (0, "invoke", "read", None),
        (1, "ok", "read", 1),
        (1, "invoke", "read", None),
        (0, "ok", "read", 0),
    ]
    rows += [(0, "invoke", "read", None), (0, "ok", "read", 0)] * 4
    rows += [(1, "ok", "read", 0), (1, "invoke", "read", None), (1, "ok", "read", 0)]
    rows += [(2, "ok", "read", 0)]
    events = h(*rows)
    witness = _witness(events, "register")
    assert witness is not None and witness[:3] == [
        "p0 write(1) -> ok",
        "p1 read() -> 1",
        "p2 write(0) -> ok",
    ]
    result = check_history(events, "register")
    assert result.ok and result.states == 0
    monkeypatch.setattr(_witness_module, "_REARRANGE_STEPS", 0)
    assert _witness(events, "register") is None  # (single moves alone do not do it)
    assert check_history(events, "register").ok  # (the search does)


# --- a search from another initial state (the greedy pass's helps) -------------------


def test_a_search_from_a_given_state() -> None:
    # What the helps of the greedy pass do: order the operations left after
    # a linearization of others, from the state it leaves.
    events = h(
        (0, "invoke", "write", 1),
        (1, "invoke", "write", 2),
        (0, "ok", "write", 1),
        (1, "ok", "write", 2),
        (2, "invoke", "read", None),
        (2, "ok", "read", 1),
    )
    w1, _w2, read = pair_operations(events)
    m = MODELS["register"]
    out = search([w1, read], m, deadline=None, max_states=100, initial=2)
    assert out.verdict == "linearizable"
    assert [o.describe() for o in out.linearized] == ["p0 write(1) -> ok", "p2 read() -> 1"]
    # from another state, or without the write, it is not
    assert search([read], m, deadline=None, max_states=100, initial=2).verdict == (
        "not-linearizable"
    )
    assert search([read], m, deadline=None, max_states=100, initial=1).verdict == ("linearizable")
