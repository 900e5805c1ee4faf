"""Pairing a history's events into operations.

An :class:`Operation` is one invocation together with its completion. Values
are *frozen* on the way in (JSON lists become tuples, objects become sorted
tuples of items) so that models can compare and hash them.

An operation is built for every invocation of a history, which makes its
construction the checker's largest fixed cost per operation: it is a frozen
``msgspec.Struct`` (built in C, about a tenth of the cost of a frozen attrs
class), untracked by the cyclic garbage collector (it holds only frozen JSON
data, so it can be in no reference cycle).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal, cast, final

import msgspec

from ..history import HistoryError, HistoryEvent
from ._gc import gc_paused

__all__ = ["Operation", "Paired", "Status", "freeze", "pair_by_key", "pair_operations"]

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
class Operation(msgspec.Struct, frozen=True, gc=False):
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
        return _pair(events, None, None, frozenset()).ops


@final
class Paired:
    """A history paired and grouped by key in one pass (the checker's fast path).

    Attributes:
        ops: every operation, as :func:`pair_operations` returns them.
        groups: per key (``None`` for operations without one), in order of
            first invocation, the operations that can matter, in order of
            invocation: failed operations the model does not keep, and
            ``info`` operations it says are read-only, are left out.
        ignored: how many were left out so.
        indeterminate: the ``info`` operations (and invocations never
            completed) kept.
        reincarnated: the operations invoked by a process number after an
            ``info`` completion of that number.
        unknown: the first operation (in order of invocation) whose name is
            not in ``known``, or ``None``.
    """

    __slots__ = ("groups", "ignored", "indeterminate", "ops", "reincarnated", "unknown")

    def __init__(
        self,
        ops: list[Operation],
        groups: dict[Any, list[Operation]],
        ignored: int,
        indeterminate: int,
        reincarnated: int,
        unknown: Operation | None,
    ) -> None:
        self.ops = ops
        self.groups = groups
        self.ignored = ignored
        self.indeterminate = indeterminate
        self.reincarnated = reincarnated
        self.unknown = unknown


def pair_by_key(
    events: Sequence[HistoryEvent],
    keep_failed: Callable[[Operation], bool] | None,
    read_only: Callable[[Operation], bool] | None,
    known: frozenset[str],
) -> Paired:
    """Pair the events and group the operations by key, in one pass.

    Args:
        events: a history.
        keep_failed: the model's ``keep_failed`` hint (``None``: every failed
            operation is left out).
        read_only: the model's ``read_only`` hint (an ``info`` operation it
            holds is left out: it had no effect).
        known: the operation names the model knows (empty: any).

    Returns:
        The operations and their groups.

    Raises:
        HistoryError: as for :func:`pair_operations`.
    """
    with gc_paused():
        return _pair(events, keep_failed, read_only, known)


def _pair(
    events: Sequence[HistoryEvent],
    keep: Callable[[Operation], bool] | None,
    read_only: Callable[[Operation], bool] | None,
    known: frozenset[str],
) -> Paired:
    # One pass, the hot path of a large history: an Operation is built once,
    # positionally, and JSON scalars (nearly every value) skip freeze(); it
    # goes straight into its key's group, at the place its invocation took.
    atoms = _ATOMS
    # process -> (position of its outstanding invocation, the event, its
    # slot, its frozen key, its group, its place in the group)
    pending: dict[int, tuple[int, HistoryEvent, int, Any, list[Operation | None], int]] = {}
    # Invariant: slots[i] is the i-th invocation's Operation once it completed,
    # None while it is outstanding; so is its group's entry, except that a
    # left-out operation stays None there (and its group is in ``holes``).
    slots: list[Operation | None] = []
    groups: dict[Any, list[Operation | None]] = {}
    holes: set[Any] = set()
    crashes: dict[int, int] = {}  # process -> info completions so far
    ignored = indeterminate = reincarnated = 0
    unknown = -1
    for pos, ev in enumerate(events):
        process = ev.process
        if ev.type == "invoke":
            if process in pending:
                raise HistoryError(
                    0, f"event {pos}: process {process} invoked {ev.f!r} with one outstanding"
                )
            key = ev.key
            if key.__class__ not in atoms:
                key = freeze(key)
            group = groups.get(key)
            if group is None:
                group = groups[key] = []
            if known and unknown < 0 and ev.f not in known:
                unknown = len(slots)
            pending[process] = (pos, ev, len(slots), key, group, len(group))
            slots.append(None)
            group.append(None)
            continue
        started = pending.pop(process, None)
        if started is None:
            raise HistoryError(
                0, f"event {pos}: process {process} completed {ev.f!r} without an invocation"
            )
        inv_pos, inv, slot, key, group, place = started
        status: Status = ev.type
        incarnation = crashes.get(process, 0)
        value = inv.value
        if status == "info":
            output = None
            crashes[process] = incarnation + 1
        else:
            output = ev.value
            if output.__class__ not in atoms:
                output = freeze(output)
        op = slots[slot] = Operation(
            slot,
            process,
            inv.f,
            key,
            value if value.__class__ in atoms else freeze(value),
            output,
            status,
            inv_pos,
            pos,
            incarnation,
        )
        if incarnation:
            reincarnated += 1
        if status == "ok":
            group[place] = op
        elif _left_out(op, keep, read_only):
            ignored += 1
            holes.add(key)
        else:
            indeterminate += status == "info"
            group[place] = op
    for inv_pos, inv, slot, key, group, place in pending.values():
        incarnation = crashes.get(inv.process, 0)
        op = slots[slot] = Operation(
            slot,
            inv.process,
            inv.f,
            key,
            freeze(inv.value),
            None,
            "info",
            inv_pos,
            None,
            incarnation,
        )
        if incarnation:
            reincarnated += 1
        if _left_out(op, keep, read_only):
            ignored += 1
            holes.add(key)
        else:
            indeterminate += 1
            group[place] = op
    if holes:
        for key in holes:
            kept: list[Operation | None] = [op for op in groups[key] if op is not None]
            if kept:
                groups[key] = kept
            else:
                del groups[key]
        # in order of each group's first operation kept
        groups = dict(sorted(groups.items(), key=lambda item: _first_index(item[1])))
    # Every slot is filled: each invocation either completed or is still
    # pending; every None left in a group was a left-out operation.
    return Paired(
        cast("list[Operation]", slots),
        cast("dict[Any, list[Operation]]", groups),
        ignored,
        indeterminate,
        reincarnated,
        None if unknown < 0 else cast("Operation", slots[unknown]),
    )


def _first_index(group: list[Operation | None]) -> int:
    first = group[0]
    assert first is not None
    return first.index


def _left_out(
    op: Operation,
    keep: Callable[[Operation], bool] | None,
    read_only: Callable[[Operation], bool] | None,
) -> bool:
    """Whether ``op`` (not ``ok``) took no effect that matters: a failed one the
    model does not keep, or an ``info`` one that cannot change the state."""
    if op.status == "fail":
        return keep is None or not keep(op)
    return read_only is not None and read_only(op)
