"""Operation histories: Jepsen's JSON Lines, EDN and text-log formats.

The native format is one JSON object per line::

    {"process": 3, "type": "invoke", "f": "cas", "key": "k1", "value": [1, 2]}
    {"process": 3, "type": "ok", "f": "cas", "key": "k1", "value": [1, 2]}

``type`` is ``invoke``, ``ok``, ``fail`` or ``info``; ``key`` and ``time`` are
optional (per-key models use ``key``); Jepsen's metadata fields ``index``,
``error`` and ``node`` are accepted and ignored (:data:`JEPSEN_METADATA`); any
other field is an error naming the line (and the field it may be a typo
of). For reads the invoke value is ``null`` and the ``ok`` value is what was
read. ``fail`` means the operation took no effect (except a failed
``cas`` in the ``cas-register`` model, which is a read that saw another value);
``info`` means unknown: it may have taken effect at any time after its
invocation, or never. A process has at most one operation outstanding. After
an ``info`` completion the process is crashed; Jepsen's logs may show the same
process number issuing more operations, which count as a fresh process (the
checker keeps the crashed operation pending for ever).

:func:`read_history` also reads Jepsen's ``history.edn`` (one EDN map per
operation, optionally wrapped in a vector; parsed with ``edn-format``) and
Jepsen's text logs (``INFO  jepsen.util - 3\t:invoke\t:read\tnil``), with the
format detected from the content.

This module reads, validates and writes events; pairing invocations with
completions is the linearizability checker's business.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence, Set
from pathlib import Path
from typing import Any, Final, Literal, TextIO, final

import attrs
import edn_format  # type: ignore[import-untyped]

__all__ = [
    "EVENT_TYPES",
    "FORMATS",
    "JEPSEN_METADATA",
    "HistoryError",
    "HistoryEvent",
    "HistoryFormat",
    "HistoryRecorder",
    "LoadedHistory",
    "detect_format",
    "dump_history",
    "load_history",
    "looks_independent",
    "parse_edn",
    "parse_history",
    "parse_jepsen_log",
    "read_history",
    "split_independent",
]

EventType = Literal["invoke", "ok", "fail", "info"]
EVENT_TYPES: Final = ("invoke", "ok", "fail", "info")
_EVENT_FIELDS: Final = ("process", "type", "f", "key", "value", "time")
_REQUIRED_FIELDS: Final = ("process", "type", "f")
# Jepsen's metadata, accepted and ignored: `index` (the op's position in the
# history, a field of jepsen.history's Op), `error` (why an op failed or is
# indeterminate, as jepsen.client returns it) and `node` (the database node the
# client talked to). `time` is one of the event's own fields.
JEPSEN_METADATA: Final = frozenset({"index", "error", "node"})
"""Jepsen's fields a JSON Lines history may carry besides the event's own; ignored."""
_KNOWN_FIELDS: Final = frozenset(_EVENT_FIELDS) | JEPSEN_METADATA


def _near(name: str) -> str:
    close = difflib.get_close_matches(name, sorted(_KNOWN_FIELDS), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


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
        names = ", ".join(f"{name!r}{_near(name)}" for name in unknown)
        raise HistoryError(
            line,
            f"unknown field(s) {names}; known: {', '.join(_EVENT_FIELDS)} "
            f"(and Jepsen's {', '.join(sorted(JEPSEN_METADATA))}, ignored)",
        )
    missing = [name for name in _REQUIRED_FIELDS if name not in obj]
    if missing:
        raise HistoryError(line, f"missing field(s) {', '.join(map(repr, missing))}")
    index = obj.get("index")
    if index is not None and (not isinstance(index, int) or isinstance(index, bool)):
        raise HistoryError(line, f"'index' must be an integer, got {index!r}")
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
    # A process number reused after an 'info' completion is a fresh process
    # (Jepsen's crash semantics); only the one-outstanding-operation rule and
    # the matching of completions to invocations are enforced here.
    outstanding: dict[int, HistoryEvent] = {}
    for line, ev in events:
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


HistoryFormat = Literal["jsonl", "edn", "jepsen-log"]
FORMATS: Final[tuple[HistoryFormat, ...]] = ("jsonl", "edn", "jepsen-log")
"""The history formats :func:`read_history` reads."""

# Jepsen's text log: "INFO  jepsen.util - 3\t:invoke\t:read\tnil" (tabs or spaces; the
# value may be absent).
_LOG_LINE: Final = re.compile(
    r"^\S+\s+jepsen\.util\s+-\s+(?P<process>\S+)\s+(?P<type>:\S+)\s+(?P<f>:\S+)"
    r"(?:\s+(?P<value>.*?))?\s*$"
)


@final
@attrs.frozen
class LoadedHistory:
    """A history read from a file by :func:`read_history`.

    Attributes:
        events: the validated events, in order.
        lines: for each event, its 1-based line in the file (0 when the format
            does not say, e.g. an EDN file with several operations on a line).
        format: the format it was read as.
        skipped: the entries left out because they are not client operations
            (Jepsen's ``:nemesis`` operations, log lines of other loggers).
    """

    events: tuple[HistoryEvent, ...]
    lines: tuple[int, ...]
    format: HistoryFormat
    skipped: int = 0


def detect_format(text: str) -> HistoryFormat:
    """Tell the format of a history from its content.

    JSON Lines start with ``{"``; EDN with ``{:`` or ``[``; a Jepsen text log
    has ``jepsen.util -`` lines with tab-separated fields.

    Raises:
        HistoryError: when the content matches no format (or is empty).
    """
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith("{"):
            rest = stripped[1:].lstrip()
            if rest.startswith(":"):
                return "edn"
            if rest.startswith('"') or not rest:
                return "jsonl"
        if stripped.startswith(("[", ";")):
            return "edn"
        if _LOG_LINE.match(line.rstrip("\r")):
            return "jepsen-log"
        if "jepsen" in stripped or number > 200:
            continue  # a log's preamble: other loggers' lines come first
        raise HistoryError(
            number,
            "cannot tell the history's format (expected JSON Lines, EDN or a Jepsen log); "
            "name it with --format",
        )
    if text.strip():
        raise HistoryError(0, 'no Jepsen log line found ("jepsen.util - P\\t:type\\t:f\\tvalue")')
    raise HistoryError(0, "the history is empty")


def _plain(value: Any) -> Any:
    """EDN data as JSON-like data: keywords and symbols become their names."""
    if isinstance(value, edn_format.Keyword | edn_format.Symbol):
        return value.name
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        return {_plain(k): _plain(v) for k, v in value.items()}
    if isinstance(value, Sequence | Set):
        return [_plain(v) for v in value]
    return value


def _event_from_edn(obj: Any, line: int) -> HistoryEvent | None:
    if not isinstance(obj, Mapping):
        raise HistoryError(line, f"expected an EDN map per operation, got {type(obj).__name__}")
    fields = {(k.name if isinstance(k, edn_format.Keyword) else str(k)): v for k, v in obj.items()}
    # Jepsen's maps carry whatever fields a test adds, so other fields are
    # ignored; but a required field misspelt must not pass for a missing one
    # (a map without :process would be skipped as a non-client operation).
    for name in _REQUIRED_FIELDS:
        if name not in fields:
            close = difflib.get_close_matches(name, sorted(fields), n=1, cutoff=0.75)
            if close:
                raise HistoryError(line, f"field {close[0]!r}: did you mean {name!r}?")
    process = fields.get("process")
    if isinstance(process, edn_format.Keyword) or process is None:
        return None  # :nemesis and other non-client operations
    plain = {name: _plain(fields[name]) for name in _EVENT_FIELDS if name in fields}
    return _event_from_json(plain, line)


def _event_lines(lines: Sequence[str], count: int) -> list[int]:
    # One operation per line is what Jepsen writes; otherwise lines are unknown.
    starts = [n for n, text in enumerate(lines, start=1) if text.lstrip("[ \t").startswith("{")]
    return starts if len(starts) == count else [0] * count


def parse_edn(text: str) -> LoadedHistory:
    """Parse a Jepsen ``history.edn``: EDN maps, optionally wrapped in a vector.

    The text is parsed in one call (``edn_format.loads_all``); only when that
    fails is it parsed line by line, to name the malformed line. Keywords
    become strings (``:invoke`` -> ``"invoke"``), vectors lists; operations of
    processes that are not integers (``:nemesis``) are skipped; fields other
    than ``process``, ``type``, ``f``, ``value``, ``key`` and ``time`` (Jepsen's
    ``:index``, ``:error``, ...) are ignored, except a near miss of a missing
    required one (``:proces`` in a map without ``:process``), which is an error.

    Raises:
        HistoryError: naming the line of the first malformed form or rule break.
    """
    lines = text.splitlines()
    try:
        forms = edn_format.loads_all(text)
    except Exception as exc:  # edn_format raises several unrelated types
        raise _locate_edn_error(lines, exc) from None
    if len(forms) == 1 and isinstance(forms[0], Sequence) and not isinstance(forms[0], str):
        forms = list(forms[0])
    numbers = _event_lines(lines, len(forms))
    numbered: list[tuple[int, HistoryEvent]] = []
    skipped = 0
    for number, form in zip(numbers, forms, strict=True):
        ev = _event_from_edn(form, number)
        if ev is None:
            skipped += 1
        else:
            numbered.append((number, ev))
    events = tuple(_check_order(numbered))
    return LoadedHistory(events, tuple(n for n, _ in numbered), "edn", skipped)


def _locate_edn_error(lines: Sequence[str], exc: Exception) -> HistoryError:
    for number, line in enumerate(lines, start=1):
        body = line.strip().lstrip("[").rstrip("]").strip()
        if not body or body.startswith(";"):
            continue
        try:
            edn_format.loads_all(body)
        except Exception as line_exc:  # as above: report it, with its line
            return HistoryError(number, f"not valid EDN ({line_exc})")
    return HistoryError(0, f"not valid EDN ({exc})")


def parse_jepsen_log(text: str) -> LoadedHistory:
    """Parse a Jepsen text log (the lines ``jepsen.util`` writes for each operation).

    Lines like ``INFO  jepsen.util - 3\t:invoke\t:cas\t[1 2]`` are operations;
    their values are EDN (``nil``, ``4``, ``[1 2]``, ``:timed-out``), parsed in
    one call. Other lines (other loggers, the nemesis) are skipped.

    Raises:
        HistoryError: naming the line of a malformed operation line.
    """
    rows: list[tuple[int, str, str, str, str]] = []
    skipped = 0
    for number, line in enumerate(text.splitlines(), start=1):
        m = _LOG_LINE.match(line.rstrip("\r"))
        if m is None:
            continue
        process, etype, f, value = m.group("process", "type", "f", "value")
        if not process.lstrip("-").isdigit():
            skipped += 1  # :nemesis
            continue
        rows.append((number, process, etype[1:], f[1:], (value or "nil").strip() or "nil"))
    try:
        values = edn_format.loads_all("\n".join(r[4] for r in rows))
    except Exception:  # edn_format raises several unrelated types; find the line below
        values = []
    if len(values) != len(rows):
        values = []
        for number, *_, text_value in rows:
            try:
                values.append(edn_format.loads(text_value))
            except Exception as exc:  # as above: report it, with its line
                raise HistoryError(
                    number, f"value {text_value!r} is not valid EDN ({exc})"
                ) from None
    numbered = [
        (
            number,
            _event_from_json(
                {"process": int(process), "type": etype, "f": f, "value": _plain(value)}, number
            ),
        )
        for (number, process, etype, f, _), value in zip(rows, values, strict=True)
    ]
    events = tuple(_check_order(numbered))
    return LoadedHistory(events, tuple(n for n, _ in numbered), "jepsen-log", skipped)


def read_history(path: str | Path, *, format: HistoryFormat | None = None) -> LoadedHistory:
    """Read a history file in any of :data:`FORMATS`.

    Args:
        path: the file.
        format: ``jsonl``, ``edn`` or ``jepsen-log``; ``None`` to detect it from
            the content (:func:`detect_format`).

    Returns:
        The events, the line of each, and the format read.

    Raises:
        HistoryError: for a malformed history, an unknown or undetectable
            format, a file that is not UTF-8 text; the message starts with the
            file's name (and line, when there is one).
        OSError: if the file cannot be read.
    """
    name = str(path)
    raw = Path(path).read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise HistoryError(
            0, f"{name}: not a text history (byte {exc.start} is not UTF-8; binary file?)"
        ) from None
    try:
        if format is None:
            format = detect_format(text)
        if format == "jsonl":
            lines = text.splitlines()
            events = tuple(parse_history(lines))
            numbers = tuple(n for n, line in enumerate(lines, start=1) if line.strip())
            return LoadedHistory(events, numbers, "jsonl")
        if format == "edn":
            return parse_edn(text)
        if format == "jepsen-log":
            return parse_jepsen_log(text)
    except HistoryError as exc:
        where = f"{name} line {exc.line}" if exc.line else name
        message = str(exc).removeprefix(f"line {exc.line}: ")
        located = HistoryError(0, f"{where}: {message}")
        located.line = exc.line
        raise located from None
    raise HistoryError(0, f"{name}: unknown format {format!r}; known: {', '.join(FORMATS)}")


def _pair(value: Any) -> tuple[Any, Any] | None:
    # A jepsen.independent tuple, [key value], with a key a partition can use.
    if isinstance(value, list) and len(value) == 2:
        key = value[0]
        if isinstance(key, str | int | float) and not isinstance(key, bool):
            return key, value[1]
    return None


def looks_independent(events: Sequence[HistoryEvent]) -> bool:
    """Whether a history unambiguously holds ``jepsen.independent`` ``[key value]`` values.

    True when no event has a ``key``, every invocation and every ``ok``
    completion has a ``[key value]`` pair as its value (a string or number
    key, the same in the invocation and its completion), and at least one
    operation is a ``read``: a plain history invokes ``read`` with ``null``,
    an independent one with ``[key null]``, so such a history cannot be a
    plain one. (A plain ``cas-register`` history with only ``cas``
    operations has pairs everywhere too; that is why a read is needed. Say
    ``--independent`` to split such a history anyway.)

    Args:
        events: the history, as read.

    Returns:
        Whether :func:`split_independent` should be applied without being asked.
    """
    invoked: dict[int, Any] = {}
    saw_read = False
    for ev in events:
        if ev.key is not None:
            return False
        if ev.type == "invoke":
            pair = _pair(ev.value)
            if pair is None:
                return False
            invoked[ev.process] = pair[0]
            saw_read = saw_read or ev.f == "read"
        elif ev.type == "ok":
            pair = _pair(ev.value)
            if pair is None or invoked.get(ev.process) != pair[0]:
                return False
    return saw_read


def split_independent(
    events: Sequence[HistoryEvent], lines: Sequence[int] = ()
) -> tuple[HistoryEvent, ...]:
    """Split ``jepsen.independent`` values ``[key value]`` into a key and a value.

    Jepsen's ``independent`` tests run one register (or queue, set, ...) per
    key and write each operation's value as a tuple of the key and the value:
    ``{:process 0, :type :invoke, :f :cas, :value [3 [1 2]]}`` is a ``cas`` from
    1 to 2 on key 3. Every model then checks the history key by key.

    An invocation's value must be such a pair (a string or number key). A
    completion's must be a pair with its invocation's key, except that a
    ``fail`` or ``info`` completion may carry anything else (``:timed-out``):
    it keeps its invocation's key and its value as is.

    Args:
        events: the history, as read, without keys.
        lines: the line of each event, for error messages (optional).

    Returns:
        The events with ``key`` and ``value`` split.

    Raises:
        HistoryError: naming the line of the first event that does not fit.
    """
    out: list[HistoryEvent] = []
    invoked: dict[int, Any] = {}
    for n, ev in enumerate(events):
        line = lines[n] if n < len(lines) else 0
        if ev.key is not None:
            raise HistoryError(
                line, f"the event already has a key ({ev.key!r}): not an independent history"
            )
        pair = _pair(ev.value)
        if ev.type == "invoke":
            if pair is None:
                raise HistoryError(
                    line,
                    f"an independent history's values are [key value] pairs with a string or "
                    f"number key, got {ev.value!r}",
                )
            invoked[ev.process] = pair[0]
            out.append(attrs.evolve(ev, key=pair[0], value=pair[1]))
            continue
        key = invoked.pop(ev.process)  # _check_order saw the invocation
        if pair is not None and pair[0] == key:
            out.append(attrs.evolve(ev, key=key, value=pair[1]))
        elif ev.type in ("fail", "info"):
            out.append(attrs.evolve(ev, key=key))
        else:
            raise HistoryError(
                line,
                f"process {ev.process} completed with {ev.value!r}, not a [key value] pair "
                f"of the key it invoked ({key!r})",
            )
    return tuple(out)


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
