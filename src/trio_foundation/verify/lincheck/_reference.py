"""A brute-force reference checker, for small histories only.

It tries every order of the operations that respects real time (an operation
that returned before another was invoked comes first), with every subset of
the ``info`` operations left out, and runs the model along each order. No
caching, no cleverness: exponential, and obviously right. The test suite
checks that :func:`check_history` agrees with it on thousands of histories.

It shares nothing with the checker under test but the model: it pairs the
events itself (with Jepsen's crash semantics: a process number reused after
an ``info`` completion is a fresh process), splits by key itself, and decides
itself which failed operations to leave out. It never drops an ``info``
operation, even one that cannot change the state, and never consults the
model's hints (``read_only``, ``equivalence``), so a bug in the checker's
handling of those shows up as a disagreement.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any, Literal

from ..history import HistoryEvent
from ._models import MODELS, Model
from ._ops import Operation

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
    m = model if isinstance(model, Model) else _model(model)
    groups: dict[Hashable, list[Operation]] = {}
    for op in _pair(events):
        if op.status == "fail" and not (m.keep_failed is not None and m.keep_failed(op)):
            continue  # took no effect
        key = m.partition(op) if m.partition is not None else op.key
        groups.setdefault(key, []).append(op)
    for key, ops in groups.items():
        if len(ops) > max_operations:
            raise ValueError(
                f"partition {key!r} has {len(ops)} operations; "
                f"the exhaustive checker takes at most {max_operations}"
            )
        if not _linearizable(ops, m):
            return "not-linearizable"
    return "linearizable"


def _model(name: str) -> Model:
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}")
    return MODELS[name]


def _frozen(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return tuple(_frozen(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((str(k), _frozen(v)) for k, v in value.items()))
    return value


def _pair(events: Sequence[HistoryEvent]) -> list[Operation]:
    """Operations, in order of invocation; an operation never completed is ``info``."""
    invoked: list[tuple[int, HistoryEvent, int]] = []  # (position, invocation, incarnation)
    completion: dict[int, tuple[int, HistoryEvent]] = {}  # invocation number -> completion
    open_by_process: dict[int, int] = {}
    crashes: dict[int, int] = {}
    for pos, ev in enumerate(events):
        if ev.type == "invoke":
            open_by_process[ev.process] = len(invoked)
            invoked.append((pos, ev, crashes.get(ev.process, 0)))
        else:
            n = open_by_process.pop(ev.process)
            completion[n] = (pos, ev)
            if ev.type == "info":
                crashes[ev.process] = crashes.get(ev.process, 0) + 1
    ops = []
    for n, (pos, inv, incarnation) in enumerate(invoked):
        done = completion.get(n)
        status = "info" if done is None else done[1].type
        assert status in ("ok", "fail", "info")
        ops.append(
            Operation(
                index=n,
                process=inv.process,
                f=inv.f,
                key=_frozen(inv.key),
                value=_frozen(inv.value),
                output=_frozen(done[1].value) if done is not None and status != "info" else None,
                status=status,
                invoke_at=pos,
                complete_at=None if done is None else done[0],
                incarnation=incarnation,
            )
        )
    return ops


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
