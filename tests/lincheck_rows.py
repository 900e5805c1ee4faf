"""Histories written as rows, shared by the linearizability checker's tests.

``h`` turns ``(process, type, f, value[, key])`` rows into events, ``seq`` turns
``(process, f, value, output[, type[, key]])`` rows into sequential operations, and two
histories the mutation-edge tests build on: ``hard_writes`` (no search within a few
hundred states decides it) and ``forced_order_chain`` (only the forced-order witness
shows it).
"""

from __future__ import annotations

from typing import Any

from trio_foundation.verify.history import HistoryEvent

Row = tuple[Any, ...]


def h(*rows: Row, key: Any = None) -> list[HistoryEvent]:
    """Events from ``(process, type, f, value[, key])`` rows; ``key`` is the key of
    the rows that do not name their own."""
    return [HistoryEvent(p, t, f, v, key=rest[0] if rest else key) for p, t, f, v, *rest in rows]


def seq(*ops: Row, key: Any = None) -> list[HistoryEvent]:
    """Sequential operations from ``(process, f, value, output[, type[, key]])`` rows:
    each invoked, then completed (``ok`` unless the row names its type) before the next."""
    events = []
    for p, f, value, out, *rest in ops:
        etype: Any = rest[0] if rest else "ok"
        k = rest[1] if len(rest) > 1 else key
        events.append(HistoryEvent(p, "invoke", f, value, key=k))
        events.append(HistoryEvent(p, etype, f, out, key=k))
    return events


def hard_writes(writers: int = 40, first: int = 0) -> list[HistoryEvent]:
    """``writers`` concurrent register writes (each value twice, processes from
    ``first``), then reads of 1 and of 0 after all of them, concurrent with each
    other: not linearizable, but only a search of every order of the writes knows it
    (no stale-read witness applies: neither read returned before the other began;
    every value is written twice, so no read pins its writer and no chain of forced
    orders exists either)."""
    events = [
        HistoryEvent(first + p, "invoke", "write", p % (writers // 2)) for p in range(writers)
    ]
    events += [HistoryEvent(first + p, "ok", "write", p % (writers // 2)) for p in range(writers)]
    r1, r2 = first + writers, first + writers + 1
    return [
        *events,
        HistoryEvent(r1, "invoke", "read", None),
        HistoryEvent(r2, "invoke", "read", None),
        HistoryEvent(r1, "ok", "read", 1),
        HistoryEvent(r2, "ok", "read", 0),
    ]


def forced_order_chain(twice: bool = True, base: int = 100) -> list[HistoryEvent]:
    """write(base) (twice, or once) and write(base + 1) concurrent; a read of base + 1
    after the writes of base returned, concurrent with a later read of base invoked
    after write(base + 1) returned. The first read pins write(base + 1) after the
    writes of base, and write(base + 1) returned before the read of base began: not
    linearizable, and no one operation shows it in real time alone (the stale-read
    witness misses it; the forced-order witness finds it)."""
    b = base
    second = [HistoryEvent(b + 4, "invoke", "write", b)] if twice else []
    second_ok = [HistoryEvent(b + 4, "ok", "write", b)] if twice else []
    return [
        HistoryEvent(b, "invoke", "write", b),
        *second,
        HistoryEvent(b + 1, "invoke", "write", b + 1),
        HistoryEvent(b, "ok", "write", b),
        *second_ok,
        HistoryEvent(b + 2, "invoke", "read", None),
        HistoryEvent(b + 1, "ok", "write", b + 1),
        HistoryEvent(b + 3, "invoke", "read", None),
        HistoryEvent(b + 2, "ok", "read", b + 1),
        HistoryEvent(b + 3, "ok", "read", b),
    ]
