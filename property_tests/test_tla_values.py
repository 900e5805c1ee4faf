"""Properties of the TLA+ value parser and printer, and agreement with real TLC output."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from trio_foundation.verify.tla_values import (
    ModelValue,
    Record,
    TLAFunction,
    TLAValue,
    parse_state,
    parse_value,
    to_tla,
)
from trio_foundation.verify.tlc import TLCStatus, run_tlc

FIXTURES = Path(__file__).parent.parent / "tests" / "fixtures" / "specs"

needs_java = pytest.mark.skipif(
    shutil.which(os.environ.get("JAVA") or "java") is None, reason="needs java"
)

# A leading lowercase letter: always a TLA+ identifier, never TRUE or FALSE.
identifiers = st.from_regex(r"[a-z][A-Za-z0-9_]{0,5}", fullmatch=True)
scalars: st.SearchStrategy[TLAValue] = st.one_of(
    st.integers(min_value=-(2**31), max_value=2**31 - 1),
    st.text(max_size=8),
    st.booleans(),
    identifiers.map(ModelValue),
)


# A self-referencing deferred() rather than st.recursive(): Hypothesis prints a
# strategy's repr when it retries a draw for a unique set element, and the repr
# of st.recursive() grows exponentially with the nesting depth. Scalars are
# listed twice so that a value has fewer than one compound child on average.
values: st.SearchStrategy[TLAValue] = st.deferred(
    lambda: st.one_of(
        scalars,
        scalars,
        st.frozensets(values, max_size=3),
        st.lists(values, max_size=3).map(tuple),
        st.dictionaries(identifiers, values, min_size=1, max_size=3).map(Record),
        st.dictionaries(values, values, min_size=1, max_size=2).map(TLAFunction),
    )
)


def tagged(value: Any) -> Any:
    """The value with every part's type made explicit, so ``True`` and ``1`` differ."""
    if isinstance(value, frozenset):
        return ("set", frozenset(tagged(v) for v in value))
    if isinstance(value, tuple):
        return ("seq", tuple(tagged(v) for v in value))
    if isinstance(value, Record):
        return ("rec", frozenset((k, tagged(v)) for k, v in value.items()))
    if isinstance(value, TLAFunction):
        return ("fcn", frozenset((tagged(k), tagged(v)) for k, v in value.items()))
    return (type(value).__name__, value)


@given(values)
def test_parse_inverts_to_tla(value: TLAValue) -> None:
    text = to_tla(value)
    parsed = parse_value(text)
    assert parsed == value
    assert tagged(parsed) == tagged(value)
    assert to_tla(parsed) == text


@given(st.lists(values, max_size=4))
def test_sets_print_the_same_whatever_the_insertion_order(items: list[TLAValue]) -> None:
    # Python's 0 == False would make the set keep whichever came first.
    assume(len({tagged(item) for item in items}) == len(frozenset(items)))
    assert to_tla(frozenset(items)) == to_tla(frozenset(reversed(items)))


@given(st.dictionaries(identifiers, values, max_size=3))
def test_parse_state_inverts_printed_states(state: dict[str, TLAValue]) -> None:
    if len(state) == 1:
        ((name, value),) = state.items()
        text = f"{name} = {to_tla(value)}\n"
    else:
        text = "".join(f"/\\ {name} = {to_tla(value)}\n" for name, value in state.items())
    assert parse_state(text) == state


@given(values, st.integers(min_value=0, max_value=3))
def test_line_breaks_and_indentation_do_not_matter(value: TLAValue, indent: int) -> None:
    text = to_tla(value).replace(", ", ",\n" + " " * indent)
    assert tagged(parse_value(text)) == tagged(value)


@given(values, st.integers(min_value=0, max_value=40), st.integers(min_value=0, max_value=8))
def test_pretty_printing_parses_to_the_same_value(value: TLAValue, width: int, indent: int) -> None:
    text = to_tla(value, width=width, indent=indent)
    assert tagged(parse_value(text)) == tagged(value)
    if indent + len(to_tla(value)) <= width:
        assert text == to_tla(value)


p1, p2 = ModelValue("p1"), ModelValue("p2")


@pytest.mark.tlc
@needs_java
def test_real_tlc_output_parses_to_the_expected_values() -> None:
    result = run_tlc(FIXTURES / "Values.tla")
    assert result.status is TLCStatus.INVARIANT_VIOLATED, result.output
    (step,) = result.counterexample
    assert dict(step.state) == {
        "int": 42,
        "neg": -7,
        "str": 'say "hi"\\ok\n\tdone é',
        "bool": False,
        "mv": p1,
        "set": frozenset({1, 2, 3}),
        "seq": (1, "two", (), frozenset()),
        "rec": Record(owner="p", token=3, ok=True),
        "fn": TLAFunction({p1: frozenset({p1}), p2: frozenset({p2})}),
        # TLC prints a function on 1..n as a sequence, one on strings as a record,
        # and the empty function as << >>.
        "seqfn": ("a", "b"),
        "recfn": Record(x=1, y=2),
        "empty": (),
        "nested": frozenset({Record(k=(1, -2)), Record(k=())}),
        "interval": frozenset({1, 2, 3, 4}),
        "big": tuple(
            Record(id=i, name="a long process name", peers=frozenset({p1, p2}))
            for i in range(1, 13)
        ),
    }
    assert type(step.state["bool"]) is bool


# Values TLC can hold and compare (no mixed-type sets) and prints as given (no
# functions on 1..n or on strings, which it prints as sequences and records).
_ROUND_TRIP: tuple[TLAValue, ...] = (
    -(2**31 - 1),  # TLC reads -2147483648 as -(2147483648), which overflows
    2**31 - 1,
    'quote " backslash \\ newline \n tab \t',
    frozenset({frozenset(), frozenset({p1}), frozenset({p1, p2})}),
    ((), (1,), ("a", True), frozenset({Record(a=1, b=(p1,))})),
    Record(owner=p2, tokens=(3, 1, 2), held=False),
    TLAFunction({p1: Record(term=1), p2: Record(term=2)}),
    TLAFunction({(1, "a"): 0, (2, "b"): -1}),
    frozenset({TLAFunction({0: p1}), TLAFunction({0: p2, 5: p1})}),
)


@pytest.mark.tlc
@needs_java
def test_tlc_reads_to_tla_output_back_as_the_same_values(tmp_path: Path) -> None:
    names = [f"v{i}" for i in range(len(_ROUND_TRIP))]
    module = "\n".join(
        [
            "---- MODULE Echo ----",
            "EXTENDS Integers, TLC",
            "CONSTANTS p1, p2",
            f"VARIABLES {', '.join(names)}",
            "Init == "
            + " /\\ ".join(f"{n} = {to_tla(v)}" for n, v in zip(names, _ROUND_TRIP, strict=True)),
            f"Next == UNCHANGED <<{', '.join(names)}>>",
            "Printed == v0 # v0",
            "====",
            "",
        ]
    )
    config = "CONSTANTS p1 = p1\n  p2 = p2\nINIT Init\nNEXT Next\nINVARIANT Printed\n"
    (tmp_path / "Echo.tla").write_text(module)
    (tmp_path / "Echo.cfg").write_text(config)
    result = run_tlc(tmp_path / "Echo.tla")
    assert result.status is TLCStatus.INVARIANT_VIOLATED, result.output
    (step,) = result.counterexample
    assert [tagged(step.state[n]) for n in names] == [tagged(v) for v in _ROUND_TRIP]
