"""Operation histories in Jepsen's JSON Lines format.

One JSON object per line::

    {"process": 3, "type": "invoke", "f": "cas", "key": "k1", "value": [1, 2]}
    {"process": 3, "type": "ok", "f": "cas", "key": "k1", "value": [1, 2]}

``type`` is ``invoke``, ``ok``, ``fail`` or ``info``; ``key`` is optional (per-key
models use it); for reads the invoke value is ``null`` and the ``ok`` value is
what was read. ``fail`` means the operation took no effect (except a failed
``cas`` in the ``cas-register`` model, which is a read that saw another value);
``info`` means unknown: it may have taken effect at any time after its
invocation, or never. A process has at most one operation outstanding, and a
process whose operation ended in ``info`` issues no more.

This module reads, validates and writes events; pairing invocations with
completions is the linearizability checker's business.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Final, Literal, TextIO, final

import attrs

__all__ = [
    "EVENT_TYPES",
    "HistoryError",
    "HistoryEvent",
    "HistoryRecorder",
    "dump_history",
    "load_history",
    "parse_history",
]

EventType = Literal["invoke", "ok", "fail", "info"]
EVENT_TYPES: Final = ("invoke", "ok", "fail", "info")
_KNOWN_FIELDS: Final = frozenset({"process", "type", "f", "key", "value", "time"})


class HistoryError(ValueError):
    """A history line is malformed or breaks the history's rules.

    Attributes:
        line: the 1-based line number of the offending line (0 when not from a file).
    """

    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}" if line else message)
        self.line = line


@final
@attrs.frozen
class HistoryEvent:
    """One line of a history.

    Attributes:
        process: the client process (an int, as Jepsen writes it).
        type: ``invoke``, ``ok``, ``fail`` or ``info``.
        f: the operation's name, e.g. ``read``, ``write``, ``cas``.
        value: the operation's argument (invoke) or result (completion); JSON data.
        key: the key for per-key models, or ``None``.
        time: an optional timestamp (any unit; informational only).
    """

    process: int
    type: EventType
    f: str
    value: Any = None
    key: Any = None
    time: float | None = None

    def to_json(self) -> dict[str, Any]:
        """The event as a JSON object, omitting absent optional fields."""
        obj: dict[str, Any] = {"process": self.process, "type": self.type, "f": self.f}
        if self.key is not None:
            obj["key"] = self.key
        obj["value"] = self.value
        if self.time is not None:
            obj["time"] = self.time
        return obj


def _event_from_json(obj: Any, line: int) -> HistoryEvent:
    if not isinstance(obj, dict):
        raise HistoryError(line, f"expected a JSON object, got {type(obj).__name__}")
    unknown = sorted(set(obj) - _KNOWN_FIELDS)
    if unknown:
        raise HistoryError(line, f"unknown field(s) {', '.join(map(repr, unknown))}")
    process = obj.get("process")
    if not isinstance(process, int) or isinstance(process, bool):
        raise HistoryError(line, f"'process' must be an integer, got {process!r}")
    etype = obj.get("type")
    if etype not in EVENT_TYPES:
        raise HistoryError(line, f"'type' must be one of {', '.join(EVENT_TYPES)}, got {etype!r}")
    f = obj.get("f")
    if not isinstance(f, str) or not f:
        raise HistoryError(line, f"'f' must be a non-empty string, got {f!r}")
    key = obj.get("key")
    if isinstance(key, (list, dict)):
        raise HistoryError(line, f"'key' must be a scalar, got {key!r}")
    time = obj.get("time")
    if time is not None and (not isinstance(time, (int, float)) or isinstance(time, bool)):
        raise HistoryError(line, f"'time' must be a number, got {time!r}")
    return HistoryEvent(
        process=process, type=etype, f=f, value=obj.get("value"), key=key, time=time
    )


def _check_order(events: Iterable[tuple[int, HistoryEvent]]) -> Iterator[HistoryEvent]:
    outstanding: dict[int, HistoryEvent] = {}
    crashed: set[int] = set()
    for line, ev in events:
        if ev.process in crashed:
            raise HistoryError(
                line, f"process {ev.process} ended in 'info' and may issue no more operations"
            )
        pending = outstanding.get(ev.process)
        if ev.type == "invoke":
            if pending is not None:
                raise HistoryError(
                    line,
                    f"process {ev.process} invoked {ev.f!r} while {pending.f!r} is outstanding",
                )
            outstanding[ev.process] = ev
        else:
            if pending is None:
                raise HistoryError(
                    line,
                    f"process {ev.process} completed {ev.f!r} ({ev.type}) without an invocation",
                )
            if pending.f != ev.f:
                raise HistoryError(
                    line, f"process {ev.process} completed {ev.f!r} but invoked {pending.f!r}"
                )
            if pending.key != ev.key:
                raise HistoryError(
                    line,
                    f"process {ev.process} completed key {ev.key!r} "
                    f"but invoked key {pending.key!r}",
                )
            del outstanding[ev.process]
            if ev.type == "info":
                crashed.add(ev.process)
        yield ev


def parse_history(lines: Iterable[str]) -> list[HistoryEvent]:
    """Parse and validate JSON Lines text.

    Blank lines are skipped. Invocations left without a completion at the end
    are kept: they are treated as ``info`` (unknown) by the checker.

    Raises:
        HistoryError: naming the 1-based line of the first malformed line or rule break.
    """

    def numbered() -> Iterator[tuple[int, HistoryEvent]]:
        for number, text in enumerate(lines, start=1):
            if not text.strip():
                continue
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as exc:
                raise HistoryError(number, f"not valid JSON ({exc.msg})") from None
            yield number, _event_from_json(obj, number)

    return list(_check_order(numbered()))


def load_history(path: str | Path) -> list[HistoryEvent]:
    """Read a history file; see :func:`parse_history`.

    Raises:
        HistoryError: on a malformed line (with its number).
        OSError: if the file cannot be read.
    """
    with open(path, encoding="utf-8") as fh:
        return parse_history(fh)


def dump_history(events: Iterable[HistoryEvent], out: TextIO) -> int:
    """Write events as JSON Lines; returns the number written."""
    count = 0
    for ev in events:
        out.write(json.dumps(ev.to_json(), separators=(", ", ": ")) + "\n")
        count += 1
    return count


@final
class HistoryRecorder:
    """A bounded, validating recorder of client operations.

    Use :meth:`invoke` before an operation and :meth:`complete` after it. The
    recorder enforces the history rules as it goes, so a buggy client harness
    fails at the faulty call rather than producing a history that cannot be
    checked.

    Args:
        max_events: the bound; recording beyond it raises ``RuntimeError``.
    """

    def __init__(self, *, max_events: int = 1_000_000) -> None:
        if max_events <= 0:
            raise ValueError(f"max_events must be > 0, got {max_events}")
        self._max = max_events
        self._events: list[HistoryEvent] = []
        self._outstanding: dict[int, HistoryEvent] = {}
        self._crashed: set[int] = set()

    @property
    def events(self) -> tuple[HistoryEvent, ...]:
        """The events recorded so far, in order."""
        return tuple(self._events)

    def _append(self, ev: HistoryEvent) -> None:
        if len(self._events) >= self._max:
            raise RuntimeError(f"history is full: max_events={self._max} reached")
        self._events.append(ev)

    def invoke(
        self, process: int, f: str, value: Any = None, *, key: Any = None, time: float | None = None
    ) -> HistoryEvent:
        """Record the invocation of ``f`` by ``process``."""
        if process in self._crashed:
            raise RuntimeError(
                f"process {process} ended in 'info' and may issue no more operations"
            )
        if process in self._outstanding:
            raise RuntimeError(f"process {process} already has an operation outstanding")
        ev = HistoryEvent(process=process, type="invoke", f=f, value=value, key=key, time=time)
        self._append(ev)
        self._outstanding[process] = ev
        return ev

    def complete(
        self, process: int, type: EventType, value: Any = None, *, time: float | None = None
    ) -> HistoryEvent:
        """Record the completion (``ok``, ``fail`` or ``info``) of ``process``'s operation."""
        if type not in ("ok", "fail", "info"):
            raise ValueError(f"completion type must be ok, fail or info, got {type!r}")
        pending = self._outstanding.pop(process, None)
        if pending is None:
            raise RuntimeError(f"process {process} has no operation outstanding")
        ev = HistoryEvent(
            process=process, type=type, f=pending.f, value=value, key=pending.key, time=time
        )
        self._append(ev)
        if type == "info":
            self._crashed.add(process)
        return ev

    def dump(self, out: TextIO) -> int:
        """Write the recorded events as JSON Lines; returns the number written."""
        return dump_history(self._events, out)
