"""A brute-force reference checker, for small histories only.

It tries every order of the operations that respects real time (an operation
that returned before another was invoked comes first), with every subset of
the ``info`` operations left out, and runs the model along each order. No
caching, no cleverness: exponential, and obviously right. The test suite
checks that :func:`check_history` agrees with it on thousands of histories.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any, Literal

from ..history import HistoryEvent
from ._check import resolve_model
from ._models import Model
from ._ops import Operation, pair_operations

__all__ = ["check_exhaustively"]


def check_exhaustively(
    events: Sequence[HistoryEvent], model: str | Model, *, max_operations: int = 10
) -> Literal["linearizable", "not-linearizable"]:
    """Decide linearizability by enumerating every real-time-respecting order.

    Args:
        events: the history.
        model: a built-in model's name or a :class:`Model`.
        max_operations: refuse partitions with more operations than this (the
            cost grows factorially).

    Returns:
        ``linearizable`` or ``not-linearizable``.

    Raises:
        ValueError: if a partition has more than ``max_operations`` operations,
            or for an unknown model.
    """
    m = resolve_model(model)
    groups: dict[Hashable, list[Operation]] = {}
    for op in pair_operations(events):
        if op.status == "fail" and (m.keep_failed is None or not m.keep_failed(op)):
            continue
        groups.setdefault(None if m.partition is None else m.partition(op), []).append(op)
    for key, ops in groups.items():
        if len(ops) > max_operations:
            raise ValueError(
                f"partition {key!r} has {len(ops)} operations; "
                f"the exhaustive checker takes at most {max_operations}"
            )
        if not _linearizable(ops, m):
            return "not-linearizable"
    return "linearizable"


def _linearizable(ops: list[Operation], model: Model) -> bool:
    n = len(ops)
    # before[j]: the operations that must precede j (they returned before j began).
    before = [
        {
            i
            for i, a in enumerate(ops)
            if a.status != "info" and a.complete_at is not None and a.complete_at < b.invoke_at
        }
        for b in ops
    ]
    required = {i for i, op in enumerate(ops) if op.status != "info"}

    def extend(placed: frozenset[int], state: Any) -> bool:
        if required <= placed:
            return True
        for j in range(n):
            if j in placed or not before[j] <= placed:
                continue
            for nxt in model.step(state, ops[j]):
                if extend(placed | {j}, nxt):
                    return True
        return False

    return extend(frozenset(), model.init)
