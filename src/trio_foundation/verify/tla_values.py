"""TLA+ values as TLC prints them, and back.

TLC reports states and counterexamples as TLA+ text, not JSON. This module
parses that text into plain, hashable Python values and prints Python values as
TLA+ expressions (for trace export):

=====================  ======================================  =====================
TLA+                   TLC prints                              Python
=====================  ======================================  =====================
integer                ``-3``                                  ``int``
string                 ``"a\\"b"``                             ``str``
Boolean                ``TRUE``                                ``bool``
model value            ``p1``                                  :class:`ModelValue`
set                    ``{1, 2}``, ``1..3``                    ``frozenset``
sequence / tuple       ``<<1, "a">>``, ``<< >>``               ``tuple``
record                 ``[a |-> 1, b |-> 2]``                  :class:`Record`
function               ``(p1 :> 0 @@ p2 :> 1)``                :class:`TLAFunction`
=====================  ======================================  =====================

TLC prints a function whose domain is ``1..n`` as a sequence and one whose
domain is a set of strings as a record; the parser keeps the printed form, so a
value read back from TLC compares equal to the matching Python type (a
``tuple``, a :class:`Record`), not to a :class:`TLAFunction`. The empty
function, the empty sequence and the empty record are all ``<< >>``, which
parses as ``()``.

TLC's integers are 32-bit, and it reads ``-2147483648`` as the negation of
a literal that does not fit: :func:`to_tla` prints any ``int``, but TLC only
reads back -2147483647..2147483647.

Python's ``True == 1`` carries over: a Python set cannot hold both ``1`` and
``TRUE``. TLC refuses to compare integers with Booleans, so such sets do not
occur in TLC output.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Final, TypeAlias, final

import attrs

__all__ = [
    "ModelValue",
    "Record",
    "TLAFunction",
    "TLAValue",
    "TLAValueSyntaxError",
    "parse_state",
    "parse_value",
    "to_tla",
]

TLAValue: TypeAlias = (
    "int | str | bool | ModelValue | frozenset[TLAValue] | tuple[TLAValue, ...]"
    " | Record | TLAFunction"
)
"""A TLA+ value in its Python representation (see the module docstring)."""

_IDENTIFIER: Final = re.compile(r"[A-Za-z0-9_]*[A-Za-z][A-Za-z0-9_]*")
_NUMBER: Final = re.compile(r"-?[0-9]+")
_KEYWORDS: Final = frozenset({"TRUE", "FALSE"})


def _is_identifier(name: str) -> bool:
    return _IDENTIFIER.fullmatch(name) is not None and name not in _KEYWORDS


class TLAValueSyntaxError(ValueError):
    """The text is not a TLA+ value as TLC prints it.

    Attributes:
        text: the whole text being parsed.
        position: 0-based offset into ``text`` where the problem was found.
        line: 1-based line of ``position``.
        column: 1-based column of ``position``.
        reason: the problem, without the location.
    """

    def __init__(self, text: str, position: int, reason: str) -> None:
        self.text = text
        self.position = position
        self.line = text.count("\n", 0, position) + 1
        self.column = position - (text.rfind("\n", 0, position) + 1) + 1
        self.reason = reason
        start = text.rfind("\n", 0, position) + 1
        end = text.find("\n", position)
        snippet = text[start : end if end != -1 else len(text)]
        if len(snippet) > 60:
            lo = max(0, self.column - 31)
            snippet = snippet[lo : lo + 60]
        super().__init__(
            f"{reason} at line {self.line}, col {self.column} (offset {position}): {snippet!r}"
        )


@final
@attrs.frozen(order=True)
class ModelValue:
    """A TLC model value: an uninterpreted constant such as ``p1`` or ``NoLeader``.

    Attributes:
        name: the identifier TLC prints for it.
    """

    name: str = attrs.field()

    @name.validator
    def _check_name(self, _attribute: object, value: str) -> None:
        if not isinstance(value, str) or not _is_identifier(value):
            raise ValueError(f"model value name must be a TLA+ identifier, got {value!r}")

    def __repr__(self) -> str:
        return f"ModelValue({self.name!r})"


@final
class Record(Mapping[str, "TLAValue"]):
    """A TLA+ record ``[a |-> 1, b |-> 2]``: an immutable, hashable mapping of field to value.

    Field order is kept (for printing) but does not affect equality. A record
    equals only another :class:`Record`, never a ``dict`` or a :class:`TLAFunction`.

    Args:
        fields: a mapping or iterable of ``(name, value)`` pairs.
        **kwargs: more fields.

    Raises:
        ValueError: a field name is not a TLA+ identifier.
        TypeError: a value is not hashable.
    """

    __slots__ = ("_fields", "_hash")

    def __init__(
        self,
        fields: Mapping[str, TLAValue] | Iterable[tuple[str, TLAValue]] = (),
        /,
        **kwargs: TLAValue,
    ) -> None:
        items = dict(fields)
        items.update(kwargs)
        for name, value in items.items():
            if not isinstance(name, str) or not _is_identifier(name):
                raise ValueError(f"record field must be a TLA+ identifier, got {name!r}")
            hash(value)
        self._fields: dict[str, TLAValue] = items
        self._hash: int | None = None

    def __getitem__(self, key: str) -> TLAValue:
        return self._fields[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._fields)

    def __len__(self) -> int:
        return len(self._fields)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Record):
            return NotImplemented
        return self._fields == other._fields

    def __hash__(self) -> int:
        if self._hash is None:
            self._hash = hash(("Record", frozenset(self._fields.items())))
        return self._hash

    def __repr__(self) -> str:
        inner = ", ".join(f"{k!r}: {v!r}" for k, v in self._fields.items())
        return f"Record({{{inner}}})"


@final
class TLAFunction(Mapping["TLAValue", "TLAValue"]):
    """A TLA+ function ``(k1 :> v1 @@ k2 :> v2)``: an immutable, hashable mapping.

    Use it for functions whose domain is neither ``1..n`` (a ``tuple``) nor a set
    of field names (a :class:`Record`). A function equals only another
    :class:`TLAFunction`.

    Args:
        pairs: a mapping or iterable of ``(argument, value)`` pairs.

    Raises:
        TypeError: an argument or value is not hashable.
    """

    __slots__ = ("_hash", "_pairs")

    def __init__(
        self, pairs: Mapping[TLAValue, TLAValue] | Iterable[tuple[TLAValue, TLAValue]] = (), /
    ) -> None:
        items: dict[TLAValue, TLAValue] = dict(pairs)
        for value in items.values():
            hash(value)
        self._pairs = items
        self._hash: int | None = None

    def __getitem__(self, key: TLAValue) -> TLAValue:
        return self._pairs[key]

    def __iter__(self) -> Iterator[TLAValue]:
        return iter(self._pairs)

    def __len__(self) -> int:
        return len(self._pairs)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TLAFunction):
            return NotImplemented
        return self._pairs == other._pairs

    def __hash__(self) -> int:
        if self._hash is None:
            self._hash = hash(("TLAFunction", frozenset(self._pairs.items())))
        return self._hash

    def __repr__(self) -> str:
        inner = ", ".join(f"{k!r}: {v!r}" for k, v in self._pairs.items())
        return f"TLAFunction({{{inner}}})"


# --------------------------------------------------------------------------- parsing

_ESCAPES: Final = {'"': '"', "\\": "\\", "n": "\n", "t": "\t", "r": "\r", "f": "\f"}
_WORD: Final = re.compile(r"[A-Za-z0-9_]+")
_SPACE: Final = re.compile(r"\s*")


class _Parser:
    """Recursive descent over TLC's value syntax; ``pos`` always sits on non-space."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self._skip()

    def error(self, reason: str, position: int | None = None) -> TLAValueSyntaxError:
        return TLAValueSyntaxError(self.text, self.pos if position is None else position, reason)

    def _skip(self) -> None:
        match = _SPACE.match(self.text, self.pos)
        assert match is not None
        self.pos = match.end()

    def at_end(self) -> bool:
        return self.pos >= len(self.text)

    def peek(self, token: str) -> bool:
        return self.text.startswith(token, self.pos)

    def accept(self, token: str) -> bool:
        if self.peek(token):
            self.pos += len(token)
            self._skip()
            return True
        return False

    def expect(self, token: str, what: str) -> None:
        if not self.accept(token):
            found = self.describe_here()
            raise self.error(f"expected {token!r} {what}, found {found}")

    def describe_here(self) -> str:
        if self.at_end():
            return "end of input"
        return repr(self.text[self.pos : self.pos + 10])

    def identifier(self, what: str) -> str:
        match = _WORD.match(self.text, self.pos)
        if match is None or not _is_identifier(match.group()):
            raise self.error(f"expected {what}, found {self.describe_here()}")
        self.pos = match.end()
        self._skip()
        return match.group()

    def value(self) -> TLAValue:
        if self.at_end():
            raise self.error("expected a value, found end of input")
        char = self.text[self.pos]
        if char == '"':
            return self.string()
        if self.accept("<<"):
            return tuple(self.items(">>", "to close the sequence"))
        if self.accept("{"):
            return frozenset(self.items("}", "to close the set"))
        if char == "[":
            return self.record()
        if char == "(":
            return self.function()
        match = _WORD.match(self.text, self.pos) or _NUMBER.match(self.text, self.pos)
        if match is None:
            raise self.error(f"expected a value, found {self.describe_here()}")
        start = self.pos
        word = match.group()
        if _NUMBER.fullmatch(word):
            self.pos = match.end()
            self._skip()
            number = int(word)
            if self.accept(".."):
                upper = self.text[self.pos :]
                end = _NUMBER.match(upper)
                if end is None:
                    raise self.error("expected an integer after '..'")
                self.pos += end.end()
                self._skip()
                return frozenset(range(number, int(end.group()) + 1))
            return number
        self.pos = match.end()
        self._skip()
        if word == "TRUE":
            return True
        if word == "FALSE":
            return False
        if not _is_identifier(word):
            raise self.error(f"expected a value, found {word!r}", start)
        return ModelValue(word)

    def items(self, close: str, what: str) -> list[TLAValue]:
        values: list[TLAValue] = []
        if self.accept(close):
            return values
        while True:
            values.append(self.value())
            if self.accept(close):
                return values
            self.expect(",", f"or {close!r} {what}")

    def string(self) -> str:
        start = self.pos
        self.pos += 1
        chars: list[str] = []
        text = self.text
        while True:
            if self.pos >= len(text):
                raise self.error("unterminated string", start)
            char = text[self.pos]
            if char == '"':
                self.pos += 1
                break
            if char == "\\":
                escape = text[self.pos + 1 : self.pos + 2]
                if escape not in _ESCAPES:
                    raise self.error(f"unknown escape \\{escape} in string")
                chars.append(_ESCAPES[escape])
                self.pos += 2
            else:
                chars.append(char)
                self.pos += 1
        self._skip()
        return "".join(chars)

    def record(self) -> Record:
        self.expect("[", "to open the record")
        fields: dict[str, TLAValue] = {}
        while True:
            start = self.pos
            name = self.identifier("a record field name")
            if name in fields:
                raise self.error(f"duplicate record field {name!r}", start)
            self.expect("|->", "after the record field name")
            fields[name] = self.value()
            if self.accept("]"):
                return Record(fields)
            self.expect(",", "or ']' to close the record")

    def function(self) -> TLAValue:
        self.expect("(", "to open the function")
        start = self.pos
        first = self.value()
        if self.accept(")"):
            return first  # a parenthesised value
        pairs: dict[TLAValue, TLAValue] = {}
        key = first
        while True:
            self.expect(":>", "in the function")
            if key in pairs:
                raise self.error(f"duplicate function argument {to_tla(key)}", start)
            pairs[key] = self.value()
            if self.accept(")"):
                return TLAFunction(pairs)
            self.expect("@@", "or ')' to close the function")
            start = self.pos
            key = self.value()


def parse_value(text: str) -> TLAValue:
    """Parse one TLA+ value as TLC prints it.

    Args:
        text: the value, e.g. ``'[owner |-> p1, token |-> 3]'``; surrounding
            whitespace and line breaks inside the value are ignored.

    Returns:
        The value in its Python representation (see the module docstring).

    Raises:
        TLAValueSyntaxError: the text is not one complete value.
    """
    parser = _Parser(text)
    value = parser.value()
    if not parser.at_end():
        raise parser.error(f"unexpected {parser.describe_here()} after the value")
    return value


def parse_state(text: str) -> dict[str, TLAValue]:
    """Parse a TLC state: ``/\\ var = value`` lines, or ``var = value`` for one variable.

    Args:
        text: the state as TLC prints it; values may span several lines.

    Returns:
        The variables in the order TLC printed them. Empty text gives ``{}``.

    Raises:
        TLAValueSyntaxError: the text is not a state.
    """
    parser = _Parser(text)
    state: dict[str, TLAValue] = {}
    if parser.at_end():
        return state
    conjunction = parser.peek("/\\")
    while True:
        if conjunction:
            parser.expect("/\\", "before the next variable")
        start = parser.pos
        name = parser.identifier("a variable name")
        if name in state:
            raise parser.error(f"variable {name!r} appears twice", start)
        parser.expect("=", f"after the variable {name!r}")
        state[name] = parser.value()
        if parser.at_end():
            return state
        if not conjunction:
            raise parser.error(f"unexpected {parser.describe_here()} after the state")


# --------------------------------------------------------------------------- printing


def _order_key(value: Any) -> tuple[Any, ...]:
    """A total order over values of mixed types, stable across processes."""
    if isinstance(value, bool):
        return (0, int(value))
    if isinstance(value, int):
        return (1, value)
    if isinstance(value, str):
        return (2, value)
    if isinstance(value, ModelValue):
        return (3, value.name)
    if isinstance(value, frozenset | set):
        return (4, tuple(sorted(_order_key(v) for v in value)))
    if isinstance(value, tuple | list):
        return (5, tuple(_order_key(v) for v in value))
    if isinstance(value, Record):
        return (6, tuple(sorted((k, _order_key(v)) for k, v in value.items())))
    if isinstance(value, Mapping):
        return (7, tuple(sorted((_order_key(k), _order_key(v)) for k, v in value.items())))
    raise TypeError(f"cannot print {type(value).__name__} as a TLA+ value: {value!r}")


def _string(value: str) -> str:
    out = value.replace("\\", "\\\\").replace('"', '\\"')
    out = out.replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r").replace("\f", "\\f")
    return f'"{out}"'


def _is_record(value: Mapping[Any, Any]) -> bool:
    if isinstance(value, Record):
        return True
    if isinstance(value, TLAFunction):
        return False
    return all(isinstance(k, str) and _is_identifier(k) for k in value)


_Layout: TypeAlias = tuple[str, list[tuple[str, Any]], str, str]


def _layout(value: Any) -> _Layout | None:
    """A non-empty compound as (open, [(prefix, element)], separator, close), else None."""
    if isinstance(value, frozenset | set) and value:
        return "{", [("", v) for v in sorted(value, key=_order_key)], ",", "}"
    if isinstance(value, tuple | list) and value:
        return "<<", [("", v) for v in value], ",", ">>"
    if isinstance(value, Mapping) and value:
        if _is_record(value):
            return "[", [(f"{k} |-> ", v) for k, v in value.items()], ",", "]"
        keys = sorted(value, key=_order_key)
        return "(", [(f"{_flat(k)} :> ", value[k]) for k in keys], " @@", ")"
    return None


def _atom(value: Any) -> str:
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, ModelValue):
        return value.name
    if isinstance(value, frozenset | set):
        return "{}"
    if isinstance(value, tuple | list | Mapping):
        return "<< >>"
    raise TypeError(f"cannot print {type(value).__name__} as a TLA+ value: {value!r}")


def _flat(value: Any) -> str:
    layout = _layout(value)
    if layout is None:
        return _atom(value)
    opening, items, separator, closing = layout
    return opening + f"{separator} ".join(prefix + _flat(item) for prefix, item in items) + closing


def _pretty(value: Any, column: int, width: int) -> str:
    flat = _flat(value)
    layout = _layout(value)
    if layout is None or column + len(flat) <= width:
        return flat
    opening, items, separator, closing = layout
    inner = column + len(opening) + 1
    if all(_layout(item) is None for _, item in items):
        # Only scalars: fill each line with as many as fit.
        words = [prefix + _atom(item) for prefix, item in items]
        lines = [words[0]]
        for word in words[1:]:
            if inner + len(lines[-1]) + len(separator) + 1 + len(word) <= width:
                lines[-1] += f"{separator} {word}"
            else:
                lines.append(word)
    else:
        lines = [prefix + _pretty(item, inner + len(prefix), width) for prefix, item in items]
    return f"{opening} " + f"{separator}\n{' ' * inner}".join(lines) + f" {closing}"


def to_tla(value: Any, *, width: int | None = None, indent: int = 0) -> str:
    """Print a Python value as a TLA+ expression that TLC reads back as the same value.

    Sets and function arguments are printed in a fixed order (so the text is the
    same in every process, whatever the hash seed); record fields in their order.

    Args:
        value: an ``int``, ``str``, ``bool``, :class:`ModelValue`, ``frozenset`` or
            ``set`` (a set), ``tuple`` or ``list`` (a sequence), :class:`Record` or a
            ``dict`` with identifier keys (a record), :class:`TLAFunction` or any
            other ``dict`` (a function), nested freely.
        width: if given, break sets, sequences, records and functions that would
            reach past this column over several lines, one element per line, aligned.
        indent: the column the text starts at (for ``width``); continuation lines
            are indented to line up with it.

    Returns:
        The TLA+ text, on one line unless ``width`` is given. Empty records and
        functions print as ``<< >>``.

    Raises:
        TypeError: some part of the value has no TLA+ counterpart.
    """
    if width is None:
        return _flat(value)
    return _pretty(value, indent, width)
