"""The linearizability checker's edges, sixth round (``_wgl.py``, ``_witness.py``):
one exact check each (a reported operation, an order of operations).

Written for survivors of the fourth package-wide mutation sample of
``benchmarks/mutation.py lincheck`` (seed 765142964); docs/verification.md lists
them and says which were argued equivalent instead.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from trio_foundation.verify.history import HistoryEvent
from trio_foundation.verify.lincheck import MODELS, Model, Operation, pair_operations
from trio_foundation.verify.lincheck._wgl import search
from trio_foundation.verify.lincheck._witness import greedy_linearization

Row = tuple[Any, ...]


def h(*rows: Row) -> list[HistoryEvent]:
    """Events from ``(process, type, f, value)`` rows."""
    return [HistoryEvent(p, t, f, v) for p, t, f, v in rows]


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
