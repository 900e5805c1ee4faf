"""Pairing a history's events into operations.

An :class:`Operation` is one invocation together with its completion. Values
are *frozen* on the way in (JSON lists become tuples, objects become sorted
tuples of items) so that models can compare and hash them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, cast, final

import attrs

from ..history import HistoryError, HistoryEvent
from ._gc import gc_paused

__all__ = ["Operation", "Status", "freeze", "pair_operations"]

Status = Literal["ok", "fail", "info"]


_ATOMS: frozenset[type] = frozenset({int, str, float, bool, type(None)})


def freeze(value: Any) -> Any:
    """A hashable copy of JSON data: lists become tuples, objects sorted item tuples.

    Args:
        value: JSON data (``None``, bool, number, str, list, dict).

    Returns:
        An equal-by-content hashable value; scalars are returned unchanged.
    """
    if value.__class__ in _ATOMS:
        return value
    if isinstance(value, list | tuple):
        return tuple(freeze(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((str(k), freeze(v)) for k, v in value.items()))
    return value


@final
@attrs.frozen
class Operation:
    """One operation: an invocation and its completion, paired.

    Attributes:
        index: the operation's ordinal in the history, in order of invocation.
        process: the process that ran it.
        f: the operation's name (``read``, ``write``, ``cas``, ...).
        key: the key for per-key models, or ``None``.
        value: the invocation's argument, frozen (lists become tuples).
        output: the completion's value, frozen; ``None`` for ``info`` operations,
            whose completion value carries no information.
        status: ``ok``, ``fail`` or ``info``. An invocation without a completion
            at the end of the history is ``info``.
        invoke_at: the 0-based position of the invocation in the event list.
        complete_at: the position of the completion, or ``None`` if there is none.
        incarnation: how many times ``process`` had crashed (completed an
            ``info`` operation) before this operation was invoked. Jepsen's
            logs reuse a crashed process's number; the operations of each
            incarnation count as a fresh process.
    """

    index: int
    process: int
    f: str
    key: Any
    value: Any
    output: Any
    status: Status
    invoke_at: int
    complete_at: int | None
    incarnation: int = 0

    @property
    def client(self) -> tuple[int, int]:
        """The fresh-process identity: ``(process, incarnation)``."""
        return (self.process, self.incarnation)

    def describe(self) -> str:
        """A one-line, human-readable form, e.g. ``p3 cas(1, 2) -> ok``."""
        arg = "" if self.value is None else _show(self.value)
        key = "" if self.key is None else f"[{self.key!r}]"
        if self.status == "ok":
            same = self.value is not None and self.output in (None, self.value)
            out = "ok" if same else _show(self.output)
        else:
            out = self.status
        return f"p{self.process} {self.f}{key}({arg}) -> {out}"


def _show(value: Any) -> str:
    if isinstance(value, tuple):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    if value is None:
        return "null"
    return repr(value) if isinstance(value, str) else str(value)


def pair_operations(events: Sequence[HistoryEvent]) -> list[Operation]:
    """Pair invocations with completions, in order of invocation.

    Args:
        events: a history, as :func:`~trio_foundation.verify.history.parse_history`
            returns it.

    Returns:
        One :class:`Operation` per invocation. Invocations still outstanding
        at the end of the history are ``info`` operations.

    Raises:
        HistoryError: if the events break the history rules (a completion
            without an invocation, a second outstanding invocation, ...).
    """
    with gc_paused():
        return _pair(events)


def _pair(events: Sequence[HistoryEvent]) -> list[Operation]:
    # One pass, the hot path of a large history: an Operation is built once,
    # positionally, and JSON scalars (nearly every value) skip freeze().
    atoms = _ATOMS
    # process -> (position of its outstanding invocation, the event, its slot)
    pending: dict[int, tuple[int, HistoryEvent, int]] = {}
    # Invariant: slots[i] is the i-th invocation's Operation once it completed,
    # None while it is outstanding.
    slots: list[Operation | None] = []
    crashes: dict[int, int] = {}  # process -> info completions so far
    for pos, ev in enumerate(events):
        process = ev.process
        if ev.type == "invoke":
            if process in pending:
                raise HistoryError(
                    0, f"event {pos}: process {process} invoked {ev.f!r} with one outstanding"
                )
            pending[process] = (pos, ev, len(slots))
            slots.append(None)
            continue
        started = pending.pop(process, None)
        if started is None:
            raise HistoryError(
                0, f"event {pos}: process {process} completed {ev.f!r} without an invocation"
            )
        inv_pos, inv, slot = started
        status: Status = ev.type
        incarnation = crashes.get(process, 0)
        key = inv.key
        value = inv.value
        if status == "info":
            output = None
            crashes[process] = incarnation + 1
        else:
            output = ev.value
            if output.__class__ not in atoms:
                output = freeze(output)
        slots[slot] = Operation(
            slot,
            process,
            inv.f,
            key if key.__class__ in atoms else freeze(key),
            value if value.__class__ in atoms else freeze(value),
            output,
            status,
            inv_pos,
            pos,
            incarnation,
        )
    for inv_pos, inv, slot in pending.values():
        slots[slot] = Operation(
            slot,
            inv.process,
            inv.f,
            freeze(inv.key),
            freeze(inv.value),
            None,
            "info",
            inv_pos,
            None,
            crashes.get(inv.process, 0),
        )
    # Every slot is filled: each invocation either completed or is still pending.
    return cast("list[Operation]", slots)
