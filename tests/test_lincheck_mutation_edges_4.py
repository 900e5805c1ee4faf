"""The linearizability checker's edges, fourth round (all modules but ``_wgl.py``):
one exact check each (a verdict, a reason, a witness, a count, an error).

Written for the survivors of the third package-wide mutation sample of
``benchmarks/mutation.py lincheck`` and their siblings (docs/verification.md lists
them and says which were argued equivalent instead).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import attrs
import pytest
from lincheck_rows import forced_order_chain as _chain
from lincheck_rows import h, seq
from lincheck_rows import hard_writes as _hard

from trio_foundation.verify.history import HistoryEvent
from trio_foundation.verify.lincheck import (
    MODELS,
    Model,
    Operation,
    Treated,
    check_exhaustively,
    check_history,
    check_operations,
    pair_operations,
)
from trio_foundation.verify.lincheck import _check as _check_module
from trio_foundation.verify.lincheck import _witness as _witness_module
from trio_foundation.verify.lincheck._models import NOTHING
from trio_foundation.verify.lincheck._witness import greedy_pass, help_pass


def described(ops: Iterable[Operation]) -> list[str]:
    return [o.describe() for o in ops]


# --- the first round's budget, exactly max_states ----------------------------------------


def _failing_then_fine() -> list[HistoryEvent]:
    # key "a": put 1, put 2, then a get of 1 (no search of 1,000 states misses
    # it); key "b": fine
    return [
        *seq((0, "put", 1, 1), (0, "put", 2, 2), (0, "get", None, 1), key="a"),
        *seq((1, "put", 1, 1), (1, "get", None, 1), key="b"),
    ]


def test_no_first_round_when_max_states_is_its_budget() -> None:
    # max_states = 1,000 (the first round's budget): the rounds decide "a" after
    # the greedy pass linearized "b"
    result = check_history(_failing_then_fine(), "kv", max_states=1_000)
    assert (result.verdict, result.reason, result.failing_key) == ("not-linearizable", "", "a")
    assert [(p.key, p.verdict, p.reason) for p in result.partitions] == [
        ("a", "not-linearizable", ""),
        ("b", "linearizable", ""),
    ]
    assert described(result.unplaceable) == ["p0 get['a']() -> 1"]
    # one state more: "a"'s first round decides it, and "b" is left unchecked
    result = check_history(_failing_then_fine(), "kv", max_states=1_001)
    assert [(p.key, p.verdict, p.reason) for p in result.partitions] == [
        ("a", "not-linearizable", ""),
        ("b", "unknown", "not-checked"),
    ]


def test_a_first_rounds_stale_read_counts_the_partitions_operations() -> None:
    # (the history of test_lincheck_mutation_edges_2's first-round stale read)
    events = [HistoryEvent(p, "invoke", "put", p % 20, key="a") for p in range(40)]
    events += [HistoryEvent(p, "ok", "put", p % 20, key="a") for p in range(40)]
    events += h((50, "invoke", "put", 99), (50, "ok", "put", 99), key="a")
    events += h((51, "invoke", "get", None), (51, "ok", "get", 1), key="a")
    events += h((60, "invoke", "put", 1), (60, "ok", "put", 1), key="b")
    result = check_history(events, "kv")
    assert [(p.key, p.reason, p.operation_count) for p in result.partitions] == [
        ("a", "stale", 42),
        ("b", "not-checked", 1),
    ]


# --- partitions and empty histories ---------------------------------------------------------


def test_the_operations_path_checks_keyed_operations_key_by_key() -> None:
    # a register (no partition of its own) on keyed operations: one partition
    # per key, as check_history's fast path makes them
    events = [*seq((0, "write", 1, 1), key="x"), *seq((1, "read", None, None), key="y")]
    for result in (
        check_operations(pair_operations(events), "register"),
        check_history(events, "register"),
    ):
        assert result.verdict == "linearizable"
        assert [(p.key, p.verdict, p.operation_count) for p in result.partitions] == [
            ("x", "linearizable", 1),
            ("y", "linearizable", 1),
        ]
        assert result.partitioned


def test_an_empty_history_is_one_empty_object_or_no_keys() -> None:
    for model in ("register", "counter"):
        result = check_history([], model)
        assert result.verdict == "linearizable"
        assert [(p.key, p.verdict, p.operation_count) for p in result.partitions] == [
            (None, "linearizable", 0)
        ]
        assert not result.partitioned
    # a per-key model: no key, no partition
    result = check_history([], "kv")
    assert (result.verdict, result.partitions) == ("linearizable", ())
    assert check_operations([], "kv").partitions == ()


def test_a_json_list_key_is_frozen_into_a_tuple() -> None:
    events = [*seq((0, "write", 1, 1), key=["a", 1]), *seq((1, "write", 2, 2), key="a")]
    result = check_history(events, "register")
    assert result.verdict == "linearizable"
    assert [p.key for p in result.partitions] == [("a", 1), "a"]


# --- models ---------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["x", True, None])
def test_a_counter_add_needs_a_number(value: Any) -> None:
    op = pair_operations(seq((0, "add", value, None)))[0]
    with pytest.raises(ValueError, match=r"add needs a numeric value, got "):
        list(MODELS["counter"].step(0, op))
    with pytest.raises(ValueError, match=rf"add needs a numeric value, got {value!r} \(p0 add"):
        check_history(seq((0, "add", value, None), (0, "read", None, 1)), "counter")


def test_a_cas_needs_its_expected_value_in_the_register_view() -> None:
    view = MODELS["cas-register"].register_view
    assert view is not None
    ok, crashed = pair_operations(seq((0, "cas", [3, 4], None), (1, "cas", [5, 6], None, "info")))
    assert view(ok) == (3, 4)
    assert view(crashed) == (NOTHING, 6)
    # so a cas from 100 after write(100) and write(101) returned is a stale
    # read of 100, found without a search
    tail = seq((100, "write", 100, 100), (101, "write", 101, 101), (102, "cas", [100, 5], None))
    result = check_history(_hard() + tail, "cas-register", max_states=500)
    assert (result.verdict, result.reason) == ("not-linearizable", "stale")
    assert described(result.unplaceable) == [
        "p102 cas([100, 5]) -> ok",
        "p101 write(101) -> ok",
        "p100 write(100) -> ok",
    ]


# --- the reference checker ------------------------------------------------------------------


def test_the_reference_need_not_place_an_info_operation() -> None:
    # a cas from 5 that ended info: no state of this history allows it, so it
    # never took effect, and the history is linearizable without it
    events = seq((0, "write", 1, 1), (1, "cas", [5, 6], None, "info"), (0, "read", None, 1))
    assert check_exhaustively(events, "cas-register") == "linearizable"
    assert check_history(events, "cas-register").verdict == "linearizable"
    # completed ok, it must be placed: not linearizable
    events = seq((0, "write", 1, 1), (1, "cas", [5, 6], None), (0, "read", None, 1))
    assert check_exhaustively(events, "cas-register") == "not-linearizable"


# --- the greedy pass --------------------------------------------------------------------------


def _register_without_read_only() -> Model:
    """The register, with no read_only predicate (every operation may change
    the state, as far as the checker knows)."""

    def step(state: Any, op: Operation) -> Iterable[Any]:
        return MODELS["register"].step(state, op)

    return Model(
        name="plain-register", init=None, step=step, operations=frozenset({"read", "write"})
    )


def test_the_greedy_pass_runs_a_model_without_read_only() -> None:
    events = h(
        (0, "invoke", "write", 1),
        (1, "invoke", "read", None),
        (0, "ok", "write", 1),
        (1, "ok", "read", 1),
        (2, "invoke", "read", None),
        (2, "ok", "read", 1),
    )
    result = check_history(events, _register_without_read_only())
    assert (result.verdict, result.states) == ("linearizable", 0)
    assert described(result.linearized) == [
        "p0 write(1) -> ok",
        "p1 read() -> 1",
        "p2 read() -> 1",
    ]


# --- the greedy pass's helps and flushes ---------------------------------------------------

# A simulated cas-register history (30 operations, 6 clients) the greedy pass gets
# stuck on; two helps (small searches) order it, and the partition reports the
# states of both (found by a differential search of simulated histories against
# help_pass keeping only its last help's states).
_HELPED_TWICE = h(
    (0, "invoke", "write", 0),
    (5, "invoke", "cas", [4, 4]),
    (4, "invoke", "cas", [4, 5]),
    (2, "invoke", "cas", [0, 5]),
    (1, "invoke", "write", 2),
    (3, "invoke", "write", 1),
    (2, "ok", "cas", [0, 5]),
    (2, "invoke", "read", None),
    (1, "ok", "write", 2),
    (0, "ok", "write", 0),
    (1, "invoke", "write", 5),
    (0, "invoke", "cas", [0, 3]),
    (3, "ok", "write", 1),
    (1, "ok", "write", 5),
    (1, "invoke", "read", None),
    (3, "invoke", "cas", [1, 5]),
    (5, "fail", "cas", [4, 4]),
    (2, "ok", "read", 5),
    (2, "invoke", "cas", [4, 1]),
    (0, "fail", "cas", [0, 3]),
    (2, "fail", "cas", [4, 1]),
    (0, "invoke", "cas", [3, 5]),
    (5, "invoke", "cas", [0, 4]),
    (2, "invoke", "read", None),
    (0, "fail", "cas", [3, 5]),
    (1, "ok", "read", 5),
    (1, "invoke", "cas", [1, 5]),
    (0, "invoke", "cas", [3, 0]),
    (2, "ok", "read", 5),
    (3, "fail", "cas", [1, 5]),
    (2, "invoke", "cas", [1, 5]),
    (4, "fail", "cas", [4, 5]),
    (3, "invoke", "read", None),
    (4, "invoke", "read", None),
    (3, "ok", "read", 5),
    (3, "invoke", "read", None),
    (5, "fail", "cas", [0, 4]),
    (5, "invoke", "cas", [5, 4]),
    (0, "fail", "cas", [3, 0]),
    (1, "fail", "cas", [1, 5]),
    (1, "invoke", "write", 3),
    (0, "invoke", "read", None),
    (4, "ok", "read", 5),
    (4, "invoke", "cas", [3, 4]),
    (5, "ok", "cas", [5, 4]),
    (5, "invoke", "cas", [4, 0]),
    (2, "fail", "cas", [1, 5]),
    (0, "ok", "read", 4),
    (2, "invoke", "cas", [1, 2]),
    (3, "ok", "read", 4),
    (0, "invoke", "read", None),
    (3, "invoke", "cas", [2, 4]),
    (4, "ok", "cas", [3, 4]),
    (3, "fail", "cas", [2, 4]),
    (2, "fail", "cas", [1, 2]),
    (2, "invoke", "read", None),
    (0, "ok", "read", 4),
    (1, "ok", "write", 3),
    (2, "ok", "read", 4),
    (5, "ok", "cas", [4, 0]),
)


def test_the_states_of_several_helps_are_summed(monkeypatch: pytest.MonkeyPatch) -> None:
    ops = pair_operations(_HELPED_TWICE)
    alone, stuck = greedy_pass(ops, MODELS["cas-register"])
    assert alone is None
    helps: list[int] = []
    real_search = _witness_module.search

    def counted(*args: Any, **kwargs: Any) -> Any:
        out = real_search(*args, **kwargs)
        helps.append(out.states)
        return out

    monkeypatch.setattr(_witness_module, "search", counted)
    witness, states = help_pass(stuck)
    assert witness is not None
    assert (helps, states) == ([22, 21], 43)
    monkeypatch.undo()
    result = check_history(_HELPED_TWICE, "cas-register")
    assert [(p.verdict, p.states) for p in result.partitions] == [("linearizable", 43)]
    assert described(result.linearized) == described(witness)


# A simulated cas-register history the pass linearizes alone. Before write(0)
# changes the initial state, the pending failed cas operations (read-only, and
# needing no value) are flushed in it, though no pending read waits for that
# state's value any more (p3's read of null was placed already).
_FLUSHED = h(
    (1, "invoke", "write", 0),
    (3, "invoke", "read", None),
    (4, "invoke", "cas", [2, 1]),
    (0, "invoke", "cas", [1, 1]),
    (2, "invoke", "read", None),
    (3, "ok", "read", None),
    (3, "invoke", "write", 0),
    (1, "ok", "write", 0),
    (1, "invoke", "read", None),
    (0, "fail", "cas", [1, 1]),
    (2, "ok", "read", 0),
    (0, "invoke", "write", 1),
    (2, "invoke", "write", 2),
    (3, "ok", "write", 0),
    (3, "invoke", "cas", [0, 2]),
    (4, "fail", "cas", [2, 1]),
    (3, "ok", "cas", [0, 2]),
    (2, "ok", "write", 2),
    (1, "ok", "read", 0),
    (0, "ok", "write", 1),
)


def test_the_flush_takes_the_reads_needing_no_value_when_none_waits() -> None:
    result = check_history(_FLUSHED, "cas-register")
    assert (result.verdict, result.states) == ("linearizable", 0)
    assert described(result.linearized) == [
        "p3 read() -> null",
        "p4 cas([2, 1]) -> fail",
        "p0 cas([1, 1]) -> fail",
        "p1 write(0) -> ok",
        "p2 read() -> 0",
        "p3 write(0) -> ok",
        "p1 read() -> 0",
        "p3 cas([0, 2]) -> ok",
        "p2 write(2) -> ok",
        "p0 write(1) -> ok",
    ]


# A simulated cas-register history (40 operations, 6 clients, some crashed) the
# pass gets stuck on; a rearranging of its last operations that needs exactly
# its 256 steps lets the helps finish in 49 states (found by a differential
# search of simulated histories against a rearranging bounded at 255 steps).
_REARRANGED_AT_THE_BOUND = h(
    (3, "invoke", "cas", [3, 0]),
    (0, "invoke", "read", None),
    (2, "invoke", "write", 2),
    (5, "invoke", "read", None),
    (4, "invoke", "read", None),
    (1, "invoke", "write", 1),
    (3, "fail", "cas", [3, 0]),
    (3, "invoke", "cas", [5, 0]),
    (0, "ok", "read", 2),
    (1, "ok", "write", 1),
    (0, "invoke", "write", 1),
    (1, "invoke", "cas", [1, 5]),
    (2, "ok", "write", 2),
    (3, "fail", "cas", [5, 0]),
    (2, "invoke", "write", 4),
    (3, "invoke", "write", 5),
    (4, "ok", "read", 1),
    (4, "invoke", "write", 0),
    (3, "ok", "write", 5),
    (3, "invoke", "write", 0),
    (5, "ok", "read", 5),
    (5, "invoke", "write", 3),
    (1, "fail", "cas", [1, 5]),
    (4, "ok", "write", 0),
    (4, "invoke", "cas", [0, 5]),
    (5, "ok", "write", 3),
    (1, "invoke", "write", 3),
    (5, "invoke", "read", None),
    (5, "info", "read", None),
    (245, "invoke", "cas", [1, 3]),
    (245, "fail", "cas", [1, 3]),
    (2, "ok", "write", 4),
    (245, "invoke", "cas", [4, 5]),
    (2, "invoke", "read", None),
    (1, "ok", "write", 3),
    (0, "ok", "write", 1),
    (1, "invoke", "cas", [4, 1]),
    (4, "fail", "cas", [0, 5]),
    (4, "invoke", "read", None),
    (0, "invoke", "write", 4),
    (0, "ok", "write", 4),
    (0, "invoke", "cas", [4, 5]),
    (3, "ok", "write", 0),
    (3, "invoke", "cas", [5, 0]),
    (2, "ok", "read", 0),
    (2, "invoke", "cas", [4, 2]),
    (4, "ok", "read", 3),
    (3, "fail", "cas", [5, 0]),
    (4, "invoke", "read", None),
    (3, "invoke", "cas", [0, 4]),
    (3, "fail", "cas", [0, 4]),
    (4, "ok", "read", 1),
    (4, "invoke", "write", 0),
    (3, "invoke", "write", 3),
    (245, "fail", "cas", [4, 5]),
    (0, "fail", "cas", [4, 5]),
    (0, "invoke", "cas", [1, 1]),
    (245, "invoke", "read", None),
    (1, "ok", "cas", [4, 1]),
    (1, "invoke", "read", None),
    (0, "ok", "cas", [1, 1]),
    (2, "fail", "cas", [4, 2]),
    (2, "invoke", "cas", [1, 4]),
    (0, "invoke", "read", None),
    (2, "info", "cas", None),
    (3, "ok", "write", 3),
    (242, "invoke", "read", None),
    (3, "invoke", "read", None),
    (1, "ok", "read", 3),
    (0, "ok", "read", 0),
    (1, "invoke", "read", None),
    (0, "invoke", "cas", [0, 0]),
    (3, "ok", "read", 0),
    (242, "ok", "read", 0),
    (3, "invoke", "cas", [4, 4]),
    (0, "ok", "cas", [0, 0]),
    (1, "ok", "read", 0),
    (3, "fail", "cas", [4, 4]),
    (245, "ok", "read", 0),
    (4, "ok", "write", 0),
)


def test_a_rearranging_may_take_exactly_its_step_bound() -> None:
    result = check_history(_REARRANGED_AT_THE_BOUND, "cas-register")
    assert [(p.verdict, p.states) for p in result.partitions] == [("linearizable", 49)]
    assert len(result.linearized) == 38


# A simulated cas-register history (20 operations, 4 clients, two reads crashed);
# without the model's read_only hint the crashed reads are indeterminate
# operations the pass must place, and it is helped and resumed past them
_CRASHED_READS = h(
    (3, "invoke", "write", 1),
    (1, "invoke", "read", None),
    (2, "invoke", "read", None),
    (1, "ok", "read", 1),
    (0, "invoke", "write", 1),
    (1, "invoke", "read", None),
    (3, "ok", "write", 1),
    (3, "invoke", "cas", [2, 3]),
    (0, "ok", "write", 1),
    (0, "invoke", "read", None),
    (1, "ok", "read", 1),
    (1, "invoke", "read", None),
    (3, "fail", "cas", [2, 3]),
    (3, "invoke", "write", 1),
    (2, "ok", "read", 1),
    (2, "invoke", "read", None),
    (0, "info", "read", None),
    (80, "invoke", "read", None),
    (3, "ok", "write", 1),
    (3, "invoke", "write", 1),
    (2, "ok", "read", 1),
    (2, "invoke", "write", 0),
    (1, "info", "read", None),
    (81, "invoke", "write", 3),
    (2, "ok", "write", 0),
    (2, "invoke", "write", 2),
    (80, "ok", "read", 1),
    (80, "invoke", "cas", [0, 2]),
    (2, "ok", "write", 2),
    (3, "ok", "write", 1),
    (2, "invoke", "read", None),
    (3, "invoke", "cas", [3, 0]),
    (81, "info", "write", None),
    (161, "invoke", "cas", [2, 3]),
    (80, "ok", "cas", [0, 2]),
    (80, "invoke", "read", None),
    (3, "ok", "cas", [3, 0]),
    (80, "ok", "read", 2),
    (2, "ok", "read", 3),
    (161, "ok", "cas", [2, 3]),
)


def test_a_resumed_pass_invokes_operations_of_a_model_without_read_only() -> None:
    plain = attrs.evolve(MODELS["cas-register"], read_only=None)
    result = check_history(_CRASHED_READS, plain)
    assert (result.verdict, result.states) == ("linearizable", 17)
    assert result.treated == Treated(indeterminate=3, ignored=0, reincarnated=0)
    assert described(result.linearized)[-3:] == [
        "p80 read() -> 2",
        "p81 write(3) -> info",
        "p2 read() -> 3",
    ]
    # with the hint: the crashed reads are left out, and the pass needs no help
    result = check_history(_CRASHED_READS, "cas-register")
    assert (result.verdict, result.states) == ("linearizable", 0)
    assert result.treated == Treated(indeterminate=1, ignored=2, reincarnated=0)


# --- when the rounds look for a forced order -----------------------------------------------


def test_the_forced_order_is_looked_for_once_cheaper_than_the_next_search(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # (47 operations: 47 ** 2 = 2,209 closure steps)
    events = _hard() + _chain()
    unplaceable = [
        "p103 read() -> 100",
        "p101 write(101) -> ok",
        "p100 write(100) -> ok",
        "p104 write(100) -> ok",
    ]
    # at 50 steps per state the chain is cheaper than the second round's search
    # (4,000 states): found before it, with no states of its own
    result = check_history(events, "register", max_states=4_000)
    assert (result.verdict, result.reason, result.states) == ("not-linearizable", "forced-order", 0)
    assert described(result.unplaceable) == unplaceable
    # at 0 steps per state it is never cheaper: looked for only once the last
    # round's search ran out of max_states, with that search's states
    monkeypatch.setattr(_check_module, "_CHAIN_PER_STATE", 0)
    result = check_history(events, "register", max_states=4_000)
    assert (result.verdict, result.reason) == ("not-linearizable", "forced-order")
    assert result.states == 4_114
    assert described(result.unplaceable) == unplaceable


# --- the first round: which partitions, and its counts ---------------------------------------


def _long_first_key(n: int) -> list[HistoryEvent]:
    """Key "a": ``n - 1`` sequential puts of 0..6 in turn, then a get of a value
    put before the last put (a failure a search of a few states finds); key "b": fine."""
    puts = [(0, "put", v % 7, v % 7) for v in range(n - 1)]
    return [
        *seq(*puts, (0, "get", None, (n - 2) % 7 + 1), key="a"),
        *seq((1, "put", 1, 1), key="b"),
    ]


@pytest.mark.parametrize(
    ("n", "b"), [(100, ("unknown", "not-checked")), (101, ("linearizable", ""))]
)
def test_a_first_round_searches_partitions_of_at_most_100_operations(
    n: int, b: tuple[str, str]
) -> None:
    # up to 100 operations, "a"'s first round decides it before "b" is looked
    # at; past 100 the rounds decide it after the greedy pass linearized "b"
    result = check_history(_long_first_key(n), "kv")
    assert (result.verdict, result.reason, result.failing_key) == ("not-linearizable", "", "a")
    assert [(p.key, p.verdict, p.reason, p.operation_count) for p in result.partitions] == [
        ("a", "not-linearizable", "", n),
        ("b", *b, 1),
    ]


def test_a_first_rounds_lost_append_counts_its_operations_and_no_states() -> None:
    events = [
        *seq((0, "append", 1, 1), (1, "get", None, []), key="a"),
        *seq((2, "put", 1, 1), (2, "get", None, 1), key="b"),
    ]
    result = check_history(events, "kv")
    assert [
        (p.key, p.verdict, p.reason, p.operation_count, p.states) for p in result.partitions
    ] == [
        ("a", "not-linearizable", "lost", 2, 0),
        ("b", "unknown", "not-checked", 2, 0),
    ]


# --- the operations path's partitions ----------------------------------------------------------


def test_the_operations_path_keeps_the_failed_operations_the_model_keeps() -> None:
    # a cas from 1 failed while the register held 1: not linearizable
    events = seq((0, "write", 1, 1), (1, "cas", [1, 2], None, "fail"), (0, "read", None, 1))
    for result in (
        check_operations(pair_operations(events), "cas-register"),
        check_history(events, "cas-register"),
    ):
        assert (result.verdict, result.treated.ignored) == ("not-linearizable", 0)
        assert [p.operation_count for p in result.partitions] == [3]
    # a failed write took no effect: ignored
    events = seq((0, "write", 1, 1), (1, "write", 2, None, "fail"), (0, "read", None, 1))
    result = check_operations(pair_operations(events), "cas-register")
    assert (result.verdict, result.treated.ignored) == ("linearizable", 1)
    assert [p.operation_count for p in result.partitions] == [2]


def test_the_operations_path_checks_the_operations_of_one_object() -> None:
    events = seq((0, "write", 1, 1), (0, "write", 2, 2), (0, "read", None, 1))
    result = check_operations(pair_operations(events), "register")
    assert (result.verdict, result.reason) == ("not-linearizable", "")
    assert [(p.key, p.operation_count) for p in result.partitions] == [(None, 3)]
    assert described(result.unplaceable) == ["p0 read() -> 1"]
    # and an empty history is one empty object
    assert [
        (p.key, p.verdict, p.operation_count) for p in check_operations([], "register").partitions
    ] == [(None, "linearizable", 0)]


def test_the_operations_path_counts_every_reincarnated_operation() -> None:
    # p0 crashed twice: the four operations of its second and third
    # incarnations are counted as fresh processes'
    events = seq(
        (0, "write", 1, None, "info"),
        (0, "write", 2, 2),
        (0, "write", 3, None, "info"),
        (0, "write", 4, 4),
        (0, "read", None, 4),
    )
    expected = Treated(indeterminate=2, ignored=0, reincarnated=4)
    assert check_operations(pair_operations(events), "register").treated == expected
    assert check_history(events, "register").treated == expected


# --- the report's concurrent operations ---------------------------------------------------------


def test_a_searchs_failure_names_the_operations_concurrent_with_the_blocked_one() -> None:
    # write(1), write(2), then a read of 1 concurrent with write(3) and write(4)
    events = [
        *seq((0, "write", 1, 1), (0, "write", 2, 2)),
        *h((1, "invoke", "read", None), (2, "invoke", "write", 3), (3, "invoke", "write", 4)),
        *h((1, "ok", "read", 1), (2, "ok", "write", 3), (3, "ok", "write", 4)),
    ]
    result = check_history(events, "register")
    assert (result.verdict, result.reason) == ("not-linearizable", "")
    assert described(result.linearized) == ["p0 write(1) -> ok", "p0 write(2) -> ok"]
    assert described(result.unplaceable) == [
        "p1 read() -> 1",
        "p2 write(3) -> ok",
        "p3 write(4) -> ok",
    ]


# --- a model with its own partition ---------------------------------------------------------------


def test_max_states_bounds_a_model_with_its_own_partition() -> None:
    # 8 concurrent writes and two contradicting reads: 746 states decide it,
    # and max_states=100 stops the search first (at its next look, 514 states)
    one = attrs.evolve(MODELS["register"], partition=lambda op: "one")
    result = check_history(_hard(8), one, max_states=100)
    assert (result.verdict, result.reason, result.failing_key) == ("unknown", "max_states", "one")
    assert result.states == 514
    result = check_history(_hard(8), one)
    assert (result.verdict, result.reason, result.states) == ("not-linearizable", "", 746)
