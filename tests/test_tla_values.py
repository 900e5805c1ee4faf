"""Parsing TLA+ values as TLC prints them, and printing Python values as TLA+."""

from __future__ import annotations

import pytest

from trio_foundation.verify.tla_values import (
    ModelValue,
    Record,
    TLAFunction,
    TLAValueSyntaxError,
    parse_state,
    parse_value,
    to_tla,
)

p1, p2 = ModelValue("p1"), ModelValue("p2")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", 0),
        ("42", 42),
        ("-7", -7),
        ('""', ""),
        ('"a\\"b\\\\c\\nd\\te"', 'a"b\\c\nd\te'),
        ('"é ünï"', "é ünï"),
        ("TRUE", True),
        ("FALSE", False),
        ("p1", p1),
        ("NoLeader", ModelValue("NoLeader")),
        ("1a", ModelValue("1a")),
        ("{}", frozenset()),
        ("{3, 1, 2}", frozenset({1, 2, 3})),
        ("1..3", frozenset({1, 2, 3})),
        ("-1..1", frozenset({-1, 0, 1})),
        ("3..1", frozenset()),
        ("<< >>", ()),
        ("<<>>", ()),
        ('<<1, "two", <<>>, {}>>', (1, "two", (), frozenset())),
        ("[a |-> 1, b |-> p1]", Record(a=1, b=p1)),
        ("(p1 :> 0 @@ p2 :> -1)", TLAFunction({p1: 0, p2: -1})),
        ("(<<1, 2>> :> {})", TLAFunction({(1, 2): frozenset()})),
        ("(42)", 42),
        (
            "  \n {[k |-> <<1,\n   -2>>],\n  [k |-> << >>]}  \n",
            frozenset({Record(k=(1, -2)), Record(k=())}),
        ),
    ],
)
def test_parse_value(text: str, expected: object) -> None:
    value = parse_value(text)
    assert value == expected
    assert type(value) is type(expected)


def test_booleans_stay_booleans() -> None:
    assert parse_value("<<TRUE, 1>>") == (True, 1)
    assert [type(v) for v in parse_value("<<TRUE, 1>>")] == [bool, int]  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("text", "reason", "line", "column"),
    [
        ("", "expected a value, found end of input", 1, 1),
        ("[a |-> 1", "expected ',' or ']' to close the record", 1, 9),
        ("{1,,2}", "expected a value, found ',2}'", 1, 4),
        ('"abc', "unterminated string", 1, 1),
        ("<<1>> x", "unexpected 'x' after the value", 1, 7),
        ("<<1,\n  ?>>", "expected a value, found '?>>'", 2, 3),
        ('"a\\qb"', "unknown escape \\q in string", 1, 3),
        ("[a |-> 1, a |-> 2]", "duplicate record field 'a'", 1, 11),
        ("(1 :> 2 @@ 1 :> 3)", "duplicate function argument 1", 1, 12),
        ("[]", "expected a record field name, found ']'", 1, 2),
        ("1..x", "expected an integer after '..'", 1, 4),
        ("- 1", "expected a value, found '- 1'", 1, 1),
    ],
)
def test_syntax_errors_say_where(text: str, reason: str, line: int, column: int) -> None:
    with pytest.raises(TLAValueSyntaxError) as info:
        parse_value(text)
    error = info.value
    assert error.reason.startswith(reason)
    assert (error.line, error.column) == (line, column)
    assert f"at line {line}, col {column}" in str(error)
    assert isinstance(error, ValueError)


def test_parse_state_conjunction_form() -> None:
    text = (
        '/\\ pc = (p1 :> "cs" @@ p2 :> "idle")\n'
        "/\\ big = << [id |-> 1],\n   [id |-> 2] >>\n"
        "/\\ x = -1\n"
    )
    state = parse_state(text)
    assert state == {
        "pc": TLAFunction({p1: "cs", p2: "idle"}),
        "big": (Record(id=1), Record(id=2)),
        "x": -1,
    }
    assert list(state) == ["pc", "big", "x"]


def test_parse_state_single_variable_and_empty() -> None:
    assert parse_state("x = 0\n") == {"x": 0}
    assert parse_state("  \n") == {}


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("/\\ x = 1\n/\\ x = 2", "variable 'x' appears twice"),
        ("x = 1\ny = 2", "unexpected 'y = 2' after the state"),
        ("/\\ x 1", "expected '=' after the variable 'x'"),
        ("/\\ = 1", "expected a variable name"),
    ],
)
def test_parse_state_errors(text: str, reason: str) -> None:
    with pytest.raises(TLAValueSyntaxError, match=reason):
        parse_state(text)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0, "0"),
        (-3, "-3"),
        (True, "TRUE"),
        (False, "FALSE"),
        ('say "hi"\\\n\t', '"say \\"hi\\"\\\\\\n\\t"'),
        (p1, "p1"),
        (frozenset({3, 1, 2}), "{1, 2, 3}"),
        ({"b", "a"}, '{"a", "b"}'),
        (frozenset({p2, p1, 1, "a", False}), '{FALSE, 1, "a", p1, p2}'),
        ((), "<< >>"),
        ([1, "a"], '<<1, "a">>'),
        (Record(b=1, a=2), "[b |-> 1, a |-> 2]"),
        ({"owner": p1, "token": 3}, "[owner |-> p1, token |-> 3]"),
        (TLAFunction({p2: 1, p1: 0}), "(p1 :> 0 @@ p2 :> 1)"),
        ({2: "b", 1: "a"}, '(1 :> "a" @@ 2 :> "b")'),
        ({"not an identifier": 1}, '("not an identifier" :> 1)'),
        ({}, "<< >>"),
        (Record(), "<< >>"),
        (TLAFunction(), "<< >>"),
    ],
)
def test_to_tla(value: object, text: str) -> None:
    assert to_tla(value) == text


def test_to_tla_breaks_long_values_when_given_a_width() -> None:
    value = Record(
        pc=TLAFunction({p1: "cs", p2: "idle"}),
        log=(Record(term=1, cmd=("put", "k")), Record(term=2, cmd=("del", "k"))),
        ids=frozenset(range(12)),
    )
    assert to_tla(value, width=200) == to_tla(value)
    assert "\n" not in to_tla(value)
    assert to_tla(value, width=56, indent=4) == (
        '[ pc |-> (p1 :> "cs" @@ p2 :> "idle"),\n'
        '      log |-> << [term |-> 1, cmd |-> <<"put", "k">>],\n'
        '                 [term |-> 2, cmd |-> <<"del", "k">>] >>,\n'
        "      ids |-> {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11} ]"
    )
    assert to_tla(value, width=40, indent=4) == (
        '[ pc |-> ( p1 :> "cs" @@\n'
        '               p2 :> "idle" ),\n'
        "      log |-> << [ term |-> 1,\n"
        '                   cmd |-> << "put", "k" >> ],\n'
        "                 [ term |-> 2,\n"
        '                   cmd |-> << "del", "k" >> ] >>,\n'
        "      ids |-> { 0, 1, 2, 3, 4, 5, 6, 7,\n"
        "                8, 9, 10, 11 } ]"
    )
    assert parse_value(to_tla(value, width=1)) == value


def test_to_tla_rejects_what_tla_cannot_hold() -> None:
    with pytest.raises(TypeError, match="cannot print float as a TLA\\+ value"):
        to_tla([1.5])
    with pytest.raises(TypeError, match="cannot print NoneType"):
        to_tla({"a": None})


def test_records_are_immutable_hashable_mappings() -> None:
    record = Record({"owner": p1}, token=3)
    assert record["token"] == 3
    assert list(record) == ["owner", "token"]
    assert record == Record(token=3, owner=p1)
    assert hash(record) == hash(Record(token=3, owner=p1))
    assert record != {"owner": p1, "token": 3}
    assert record != TLAFunction({"owner": p1, "token": 3})
    assert len({record, Record(token=3, owner=p1), Record(token=4, owner=p1)}) == 2
    assert not hasattr(record, "__setitem__")
    assert eval(repr(record)) == record
    with pytest.raises(ValueError, match="record field must be a TLA\\+ identifier, got 'a b'"):
        Record({"a b": 1})
    with pytest.raises(TypeError):
        Record(a=[1])  # type: ignore[arg-type]


def test_functions_are_immutable_hashable_mappings() -> None:
    function = TLAFunction({p1: frozenset({1}), p2: frozenset()})
    assert function[p1] == frozenset({1})
    assert function == TLAFunction([(p2, frozenset()), (p1, frozenset({1}))])
    assert len({function, TLAFunction({p2: frozenset(), p1: frozenset({1})})}) == 1
    assert function != {p1: frozenset({1}), p2: frozenset()}
    assert eval(repr(function)) == function
    with pytest.raises(TypeError):
        TLAFunction({1: {2}})  # type: ignore[dict-item]


def test_model_values() -> None:
    assert ModelValue("p1") == p1 and hash(ModelValue("p1")) == hash(p1)
    assert repr(p1) == "ModelValue('p1')"
    for bad in ("", "TRUE", "a b", "12"):
        with pytest.raises(ValueError, match="model value name must be a TLA\\+ identifier"):
            ModelValue(bad)
