"""Unit tests of the linearizability checker on hand-written histories.

Each built-in model has histories with a known verdict, in the style of the
Knossos and Porcupine test suites; then the semantics of ``fail`` and ``info``,
the evidence on failure, the bounds, and user-defined models.
"""

from __future__ import annotations

import gc
from collections.abc import Iterable
from typing import Any

import attrs
import pytest
from lincheck_rows import h, seq
from lincheck_rows import hard_writes as _hard_history

from trio_foundation.verify.history import HistoryError, HistoryEvent, parse_history
from trio_foundation.verify.lincheck import (
    MODELS,
    LinearizabilityResult,
    Model,
    Operation,
    check_exhaustively,
    check_history,
    pair_operations,
)


def verdict(events: list[HistoryEvent], model: str | Model) -> str:
    result = check_history(events, model)
    # Every unit history is small: the exhaustive checker must agree.
    assert check_exhaustively(events, model) == result.verdict
    return result.verdict


# --- register ---------------------------------------------------------------


def test_register_concurrent_read_may_see_old_or_new() -> None:
    # Porcupine's first example: a read overlapping a write sees either value.
    events = h(
        (0, "invoke", "write", 100),
        (1, "invoke", "read", None),
        (2, "invoke", "read", None),
        (2, "ok", "read", None),
        (1, "ok", "read", 100),
        (0, "ok", "write", 100),
    )
    assert verdict(events, "register") == "linearizable"


def test_register_new_then_old_read_is_not_linearizable() -> None:
    # Porcupine's second example: once a read saw 200, a later read cannot see 0.
    events = h(
        (0, "invoke", "write", 200),
        (1, "invoke", "read", None),
        (1, "ok", "read", 200),
        (2, "invoke", "read", None),
        (2, "ok", "read", None),
        (0, "ok", "write", 200),
    )
    assert verdict(events, "register") == "not-linearizable"


def test_register_stale_read_after_write_completed() -> None:
    events = seq((0, "write", 1, 1), (1, "write", 2, 2), (0, "read", None, 1))
    assert verdict(events, "register") == "not-linearizable"


# --- cas-register -------------------------------------------------------------


def test_cas_register_sequential_run() -> None:
    events = seq(
        (0, "write", 0, 0),
        (1, "cas", [0, 1], [0, 1]),
        (2, "read", None, 1),
        (0, "cas", [0, 5], [0, 5], "fail"),
    )
    assert verdict(events, "cas-register") == "linearizable"


def test_cas_register_cas_from_the_wrong_value() -> None:
    events = seq((0, "write", 5, 5), (1, "cas", [0, 1], [0, 1]))
    assert verdict(events, "cas-register") == "not-linearizable"


def test_cas_register_failed_cas_is_a_read_of_another_value() -> None:
    # The register holds 1 and nothing runs concurrently: the cas must succeed.
    alone = seq((0, "write", 1, 1), (1, "cas", [1, 2], [1, 2], "fail"))
    assert verdict(alone, "cas-register") == "not-linearizable"
    # With a concurrent write of 3 the cas may have seen 3 and failed.
    raced = [
        *seq((0, "write", 1, 1)),
        *h(
            (2, "invoke", "write", 3),
            (1, "invoke", "cas", [1, 2]),
            (1, "fail", "cas", [1, 2]),
            (2, "ok", "write", 3),
        ),
    ]
    assert verdict(raced, "cas-register") == "linearizable"


def test_cas_register_failed_write_took_no_effect() -> None:
    events = seq((0, "write", 1, 1), (1, "write", 2, 2, "fail"), (0, "read", None, 2))
    assert verdict(events, "cas-register") == "not-linearizable"


def test_cas_register_knossos_style_interleaving() -> None:
    # Five clients, overlapping writes and cas; linearizable as
    # w0, w1(p1), cas 1->2 (p2), r2 (p3), w4 (p4), r4 (p0).
    events = h(
        (0, "invoke", "write", 0),
        (0, "ok", "write", 0),
        (1, "invoke", "write", 1),
        (2, "invoke", "cas", [1, 2]),
        (1, "ok", "write", 1),
        (3, "invoke", "read", None),
        (2, "ok", "cas", [1, 2]),
        (4, "invoke", "write", 4),
        (3, "ok", "read", 2),
        (0, "invoke", "read", None),
        (4, "ok", "write", 4),
        (0, "ok", "read", 4),
    )
    assert verdict(events, "cas-register") == "linearizable"
    bad = [*events, *seq((3, "read", None, 2))]
    assert verdict(bad, "cas-register") == "not-linearizable"


# --- kv -------------------------------------------------------------------------


def test_kv_is_checked_per_key() -> None:
    events = seq(
        (0, "put", 1, 1, "ok", "a"),
        (1, "put", 7, 7, "ok", "b"),
        (0, "get", None, 1, "ok", "a"),
        (1, "get", None, 7, "ok", "b"),
        (2, "get", None, None, "ok", "c"),
    )
    result = check_history(events, "kv")
    assert result.verdict == "linearizable"
    assert [p.key for p in result.partitions] == ["a", "b", "c"]
    assert all(p.verdict == "linearizable" for p in result.partitions)


def test_kv_one_bad_key_makes_the_history_not_linearizable() -> None:
    events = seq(
        (0, "put", 1, 1, "ok", "a"),
        (1, "put", 7, 7, "ok", "b"),
        (0, "get", None, 1, "ok", "a"),
        (1, "get", None, 8, "ok", "b"),
    )
    result = check_history(events, "kv")
    assert result.verdict == "not-linearizable"
    assert result.failing_key == "b"
    # "a" is linearized by the greedy pass, before any key is searched.
    assert {p.key: (p.verdict, p.reason) for p in result.partitions} == {
        "a": ("linearizable", ""),
        "b": ("not-linearizable", "impossible"),
    }
    assert result.unplaceable[0].f == "get" and result.unplaceable[0].output == 8


def test_kv_append_reads_the_list() -> None:
    ok = seq(
        (0, "append", 1, 1, "ok", "k"),
        (1, "append", 2, 2, "ok", "k"),
        (0, "get", None, [1, 2], "ok", "k"),
    )
    assert verdict(ok, "kv") == "linearizable"
    reordered = [*ok[:4], *seq((0, "get", None, [2, 1], "ok", "k"))]
    assert verdict(reordered, "kv") == "not-linearizable"


# --- lock -----------------------------------------------------------------------


def test_lock_acquire_release_acquire() -> None:
    events = seq(
        (0, "acquire", None, None),
        (0, "release", None, None),
        (1, "acquire", None, None),
    )
    assert verdict(events, "lock") == "linearizable"


def test_lock_two_holders_at_once() -> None:
    events = seq((0, "acquire", None, None), (1, "acquire", None, None))
    assert verdict(events, "lock") == "not-linearizable"


def test_lock_release_by_a_non_owner() -> None:
    events = seq((0, "acquire", None, None), (1, "release", None, None))
    assert verdict(events, "lock") == "not-linearizable"


def test_lock_owner_from_the_value() -> None:
    # The owner is the value when given: a new process may release for "alice".
    events = seq((0, "acquire", "alice", "alice"), (5, "release", "alice", "alice"))
    assert verdict(events, "lock") == "linearizable"


def test_lock_concurrent_acquires_one_failed() -> None:
    events = h(
        (0, "invoke", "acquire", None),
        (1, "invoke", "acquire", None),
        (1, "fail", "acquire", None),
        (0, "ok", "acquire", None),
    )
    assert verdict(events, "lock") == "linearizable"


# --- counter --------------------------------------------------------------------


def test_counter_concurrent_adds_and_read() -> None:
    events = h(
        (0, "invoke", "add", 1),
        (1, "invoke", "add", 2),
        (2, "invoke", "read", None),
        (2, "ok", "read", 2),
        (0, "ok", "add", 1),
        (1, "ok", "add", 2),
    )
    assert verdict(events, "counter") == "linearizable"


def test_counter_read_of_an_impossible_total() -> None:
    events = seq((0, "add", 1, 1), (1, "add", 2, 2), (2, "read", None, 4))
    assert verdict(events, "counter") == "not-linearizable"


# --- set ------------------------------------------------------------------------


def test_set_read_returns_the_whole_set_in_any_order() -> None:
    events = seq((0, "add", 1, 1), (1, "add", 2, 2), (2, "read", None, [2, 1]))
    assert verdict(events, "set") == "linearizable"


def test_set_read_missing_a_completed_add() -> None:
    events = seq((0, "add", 1, 1), (1, "add", 2, 2), (2, "read", None, [1]))
    assert verdict(events, "set") == "not-linearizable"


# --- queue ----------------------------------------------------------------------


def test_queue_fifo() -> None:
    events = seq(
        (0, "enqueue", 1, 1),
        (1, "enqueue", 2, 2),
        (2, "dequeue", None, 1),
        (2, "dequeue", None, 2),
        (0, "dequeue", None, None),
    )
    assert verdict(events, "queue") == "linearizable"


def test_queue_out_of_order() -> None:
    events = seq((0, "enqueue", 1, 1), (1, "enqueue", 2, 2), (2, "dequeue", None, 2))
    assert verdict(events, "queue") == "not-linearizable"


def test_queue_empty_dequeue_while_not_empty() -> None:
    events = seq((0, "enqueue", 1, 1), (2, "dequeue", None, None))
    assert verdict(events, "queue") == "not-linearizable"


def test_queue_concurrent_enqueues_either_order() -> None:
    events = h(
        (0, "invoke", "enqueue", 1),
        (1, "invoke", "enqueue", 2),
        (0, "ok", "enqueue", 1),
        (1, "ok", "enqueue", 2),
        (2, "invoke", "dequeue", None),
        (2, "ok", "dequeue", 2),
        (2, "invoke", "dequeue", None),
        (2, "ok", "dequeue", 1),
    )
    assert verdict(events, "queue") == "linearizable"


# --- info and fail semantics -----------------------------------------------------


def test_info_write_may_take_effect_after_a_later_read() -> None:
    events = h(
        (0, "invoke", "write", 1),
        (0, "info", "write", None),
        (1, "invoke", "read", None),
        (1, "ok", "read", None),
        (1, "invoke", "read", None),
        (1, "ok", "read", 1),
    )
    assert verdict(events, "register") == "linearizable"


def test_info_write_may_never_take_effect() -> None:
    events = [*h((0, "invoke", "write", 1), (0, "info", "write", 1)), *seq((1, "read", None, None))]
    assert verdict(events, "register") == "linearizable"


def test_info_effect_cannot_be_undone() -> None:
    events = [
        *h((0, "invoke", "write", 1), (0, "info", "write", 1)),
        *seq((1, "read", None, 1), (1, "read", None, None)),
    ]
    assert verdict(events, "register") == "not-linearizable"


def test_info_cannot_take_effect_before_its_invocation() -> None:
    events = [*seq((1, "read", None, 1)), *h((0, "invoke", "write", 1), (0, "info", "write", 1))]
    assert verdict(events, "register") == "not-linearizable"


def test_info_read_value_carries_no_information() -> None:
    events = [*seq((0, "write", 1, 1)), *h((1, "invoke", "read", None), (1, "info", "read", 42))]
    assert verdict(events, "register") == "linearizable"


def test_outstanding_invocation_at_the_end_is_info() -> None:
    events = [*h((0, "invoke", "write", 1)), *seq((1, "read", None, 1))]
    assert verdict(events, "register") == "linearizable"
    ops = pair_operations(events)
    assert ops[0].status == "info" and ops[0].complete_at is None


def test_info_cas_took_effect_or_not() -> None:
    base = [*seq((0, "write", 0, 0)), *h((1, "invoke", "cas", [0, 1]), (1, "info", "cas", None))]
    assert verdict([*base, *seq((2, "read", None, 1))], "cas-register") == "linearizable"
    assert verdict([*base, *seq((2, "read", None, 0))], "cas-register") == "linearizable"
    both = [*base, *seq((2, "read", None, 1), (2, "read", None, 0))]
    assert verdict(both, "cas-register") == "not-linearizable"


def test_info_lock_acquire_may_hold_the_lock_for_ever() -> None:
    events = [*h((0, "invoke", "acquire", None), (0, "info", "acquire", None))]
    events += seq((1, "acquire", None, None), (1, "release", None, None))
    assert verdict(events, "lock") == "linearizable"
    events += seq((2, "acquire", None, None), (2, "release", None, None))
    assert verdict(events, "lock") == "linearizable"


def test_many_interchangeable_info_ops() -> None:
    # 30 crashed writers of the same value: tried once, not 30! ways.
    events: list[HistoryEvent] = []
    for p in range(30):
        events += h((p, "invoke", "write", 7), (p, "info", "write", None))
    events += seq((99, "read", None, 7), (99, "read", None, 3))
    result = check_history(events, "register", max_states=10_000)
    assert result.verdict == "not-linearizable"


# --- evidence on failure --------------------------------------------------------


def _assert_valid_prefix(result: LinearizabilityResult, model: Model) -> None:
    """The reported prefix is a real sequential run that respects real time."""
    states: set[Any] = {model.init}
    placed: set[int] = set()
    for o in result.linearized:
        states = {s2 for s in states for s2 in model.step(s, o)}
        assert states, f"prefix breaks the model at {o.describe()}"
        placed.add(o.index)
    for o in result.linearized:
        assert o.status != "fail" or (model.keep_failed and model.keep_failed(o))


def test_impossible_value_needs_no_search() -> None:
    # Nothing ever writes 99: no state allows the read, whatever the order.
    events: list[HistoryEvent] = []
    for p in range(30):
        events += [HistoryEvent(p, "invoke", "write", p)]
    events += seq((40, "read", None, 99))
    result = check_history(events, "register")
    assert result.verdict == "not-linearizable"
    assert result.reason == "impossible" and result.states == 0
    assert [o.describe() for o in result.unplaceable] == ["p40 read() -> 99"]
    assert result.linearized == ()


def test_failure_evidence() -> None:
    events = h(
        (0, "invoke", "write", 1),
        (0, "ok", "write", 1),
        (1, "invoke", "write", 2),
        (2, "invoke", "read", None),
        (2, "ok", "read", 2),
        (1, "ok", "write", 2),
        (3, "invoke", "read", None),
        (4, "invoke", "read", None),
        (3, "ok", "read", 1),
        (4, "ok", "read", 2),
    )
    result = check_history(events, "register")
    assert result.verdict == "not-linearizable"
    assert not result.ok
    assert result.operation_count == 5
    # Both writes, then the reads of 2 (p4's read is concurrent with p3's and
    # is placed first); then p3's read of 1 cannot be placed.
    assert [o.index for o in result.linearized] == [0, 1, 2, 4]
    stuck, *concurrent = result.unplaceable
    assert stuck.describe() == "p3 read() -> 1"
    assert concurrent == []
    _assert_valid_prefix(result, MODELS["register"])
    assert result.seconds >= 0 and result.states > 0


def test_linearizable_result_carries_a_witness() -> None:
    events = h(
        (0, "invoke", "write", 1),
        (1, "invoke", "read", None),
        (1, "ok", "read", 1),
        (0, "ok", "write", 1),
    )
    result = check_history(events, "register")
    assert result.ok and result.unplaceable == ()
    assert [o.f for o in result.linearized] == ["write", "read"]
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        result.verdict = "unknown"  # type: ignore[misc]


def test_empty_history() -> None:
    result = check_history([], "register")
    assert result.verdict == "linearizable" and result.operation_count == 0


def test_only_failed_operations() -> None:
    result = check_history(seq((0, "write", 1, 1, "fail")), "register")
    assert result.verdict == "linearizable" and result.operation_count == 1


# --- bounds ---------------------------------------------------------------------


def test_a_chain_of_forced_orders_needs_no_search() -> None:
    # Each value written once: the read of 1 pins write(1) before it and, as
    # write(0) returned before that read began and leaves another value,
    # write(0) before write(1); likewise write(1) before write(0): a cycle.
    # The one-step stale witness misses it (the writes are concurrent); the
    # search alone would try every order of the 40 writes.
    events = [HistoryEvent(p, "invoke", "write", p) for p in range(40)]
    events += [HistoryEvent(p, "ok", "write", p) for p in range(40)]
    events += [
        HistoryEvent(40, "invoke", "read", None),
        HistoryEvent(41, "invoke", "read", None),
        HistoryEvent(40, "ok", "read", 1),
        HistoryEvent(41, "ok", "read", 0),
    ]
    result = check_history(events, "register", max_states=100_000)
    assert result.verdict == "not-linearizable"
    assert result.reason == "forced-order"
    assert result.states < 100_000
    # The report is the cycle, closed, in order of invocation: write(0) and
    # write(1), then the two reads (each forced before every other).
    cycle = [o.describe() for o in result.unplaceable]
    assert cycle == [
        "p0 write(0) -> ok",
        "p1 write(1) -> ok",
        "p40 read() -> 1",
        "p41 read() -> 0",
        "p0 write(0) -> ok",
    ]


def test_max_states_gives_unknown() -> None:
    result = check_history(_hard_history(), "register", max_states=2_000)
    assert result.verdict == "unknown"
    assert result.reason == "max_states"
    assert 2_000 <= result.states < 4_000


def test_timeout_gives_unknown() -> None:
    result = check_history(_hard_history(), "register", timeout=0.05, max_states=None)
    assert result.verdict == "unknown"
    assert result.reason == "timeout"
    # The search stopped at its deadline rather than running on; the bound is loose
    # because a loaded machine can hold the process off the CPU for seconds.
    assert result.seconds < 10


def test_unknown_partition_does_not_hide_a_failing_one() -> None:
    hard = [attrs.evolve(e, key="hard") for e in _hard_history()]
    bad = seq(
        (90, "put", 1, 1, "ok", "bad"),
        (90, "put", 2, 2, "ok", "bad"),
        (90, "get", None, 1, "ok", "bad"),
    )
    result = check_history(hard + bad, "kv", max_states=500)
    assert result.verdict == "not-linearizable"
    assert result.failing_key == "bad"
    assert {p.key: p.verdict for p in result.partitions} == {
        "hard": "unknown",
        "bad": "not-linearizable",
    }


# --- errors ---------------------------------------------------------------------


def test_unknown_model_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown model 'regster'; known models: register, "):
        check_history([], "regster")


def test_operation_unknown_to_the_model() -> None:
    with pytest.raises(ValueError, match=r"model 'register' has no operation 'cas'"):
        check_history(seq((0, "cas", [1, 2], [1, 2])), "register")


def test_bad_bounds() -> None:
    with pytest.raises(ValueError, match="timeout must be > 0"):
        check_history([], "register", timeout=0)
    with pytest.raises(ValueError, match="max_states must be > 0"):
        check_history([], "register", max_states=0)


def test_events_breaking_the_history_rules() -> None:
    with pytest.raises(HistoryError, match="without an invocation"):
        check_history(h((0, "ok", "read", 1)), "register")


def test_malformed_line_names_its_number() -> None:
    lines = [
        '{"process": 0, "type": "invoke", "f": "write", "value": 1}',
        "",
        '{"process": 0, "type": "ok", "f": "write" "value": 1}',
    ]
    with pytest.raises(HistoryError, match=r"^line 3: not valid JSON") as info:
        parse_history(lines)
    assert info.value.line == 3


def test_bad_cas_value() -> None:
    with pytest.raises(ValueError, match=r"cas needs value \[expected, new\]"):
        check_history(seq((0, "cas", 5, 5)), "cas-register")


# --- user-defined models -----------------------------------------------------------


def _stack_step(state: tuple[Any, ...], op: Operation) -> Iterable[tuple[Any, ...]]:
    if op.f == "push":
        return [(*state, op.value)]
    # pop: an info pop removed the top, whatever it was
    if op.status == "info":
        return [state[:-1]] if state else []
    if op.output is None:
        return [state] if not state else []
    return [state[:-1]] if state and state[-1] == op.output else []


STACK = Model(name="stack", init=(), step=_stack_step, operations=frozenset({"push", "pop"}))


def test_user_model_stack() -> None:
    events = seq((0, "push", 1, 1), (1, "push", 2, 2), (2, "pop", None, 2), (2, "pop", None, 1))
    assert verdict(events, STACK) == "linearizable"
    fifo = seq((0, "push", 1, 1), (1, "push", 2, 2), (2, "pop", None, 1))
    assert verdict(fifo, STACK) == "not-linearizable"


def test_user_model_with_unhashable_states_and_nondeterminism() -> None:
    # A "maybe-increment" register: inc may add 1 or 2 (non-deterministic);
    # states are lists, made hashable by state_key.
    def step(state: list[int], op: Operation) -> list[list[int]]:
        if op.f == "inc":
            return [[state[0] + 1], [state[0] + 2]]
        return [state] if op.status != "ok" or op.output == state[0] else []

    model = Model(name="fuzzy", init=[0], step=step, state_key=lambda s: tuple(s))
    ok = seq((0, "inc", None, None), (0, "inc", None, None), (1, "read", None, 3))
    assert verdict(ok, model) == "linearizable"
    bad = seq((0, "inc", None, None), (1, "read", None, 3))
    assert verdict(bad, model) == "not-linearizable"


def test_builtin_models_are_listed() -> None:
    assert set(MODELS) == {
        "register",
        "cas-register",
        "kv",
        "mutex",
        "lock",
        "counter",
        "set",
        "fifo-queue",
        "queue",
        "unordered-queue",
    }
    for name, model in MODELS.items():
        assert model.name == name and model.description


def test_info_ops_in_a_row() -> None:
    # Both crashed enqueues took effect, in the order 1, 2, before any dequeue:
    # the search must place two info operations back to back.
    events = h(
        (0, "invoke", "enqueue", 1),
        (1, "invoke", "enqueue", 2),
        (0, "info", "enqueue", None),
        (1, "info", "enqueue", None),
    )
    events += seq((2, "dequeue", None, 1), (2, "dequeue", None, 2))
    assert verdict(events, "queue") == "linearizable"
    # The same for a cas-register: an info write enables an info cas.
    events = h(
        (0, "invoke", "write", 1),
        (1, "invoke", "cas", [1, 2]),
        (0, "info", "write", None),
        (1, "info", "cas", None),
    )
    events += seq((2, "read", None, 2))
    assert verdict(events, "cas-register") == "linearizable"


def test_a_hard_key_does_not_delay_an_easy_failure() -> None:
    # The hard key comes first and would take millions of states; the
    # failing key is found in the first round of small budgets.
    hard = [attrs.evolve(e, key="hard") for e in _hard_history()]
    bad = seq(
        (90, "put", 1, 1, "ok", "bad"),
        (90, "put", 2, 2, "ok", "bad"),
        (90, "get", None, 1, "ok", "bad"),
    )
    result = check_history(hard + bad, "kv")
    assert result.verdict == "not-linearizable"
    assert result.failing_key == "bad"
    assert {p.key: (p.verdict, p.reason) for p in result.partitions} == {
        "hard": ("unknown", "not-checked"),
        "bad": ("not-linearizable", ""),
    }
    # searched to its end, the hard key alone would take minutes (2,000,000 states)
    assert result.seconds < 10


# --- a lost append, found without a search ------------------------------------

KV_STRINGS = MODELS["kv"].with_initial("")


def test_lost_append_needs_no_search() -> None:
    # 'b' returned before the get began, and no put can fall between them.
    events = h(
        (0, "invoke", "append", "a", "k"),
        (0, "ok", "append", "a", "k"),
        (1, "invoke", "append", "b", "k"),
        (2, "invoke", "put", "z", "k"),
        (2, "ok", "put", "z", "k"),  # before 'b' returned, but may come after it
        (1, "ok", "append", "b", "k"),
        (3, "invoke", "append", "c", "k"),
        (4, "invoke", "get", None, "k"),
        (4, "ok", "get", "zc", "k"),
        (3, "ok", "append", "c", "k"),
    )
    # the put was invoked before 'b' returned: it may come after 'b' and
    # erase it, so this is no witness, and the history is linearizable
    assert verdict(events, KV_STRINGS) == "linearizable"
    # the put returns before 'b' begins: nothing can erase 'b' before the get
    moved = [events[i] for i in (0, 1, 3, 4, 2, 5, 6, 7, 8, 9)]
    result = check_history(moved, KV_STRINGS)
    assert result.verdict == "not-linearizable" and result.reason == "lost"
    assert result.states == 0 and result.linearized == ()
    assert [o.describe() for o in result.unplaceable] == [
        "p4 get['k']() -> 'zc'",
        "p1 append['k']('b') -> ok",
    ]
    assert check_exhaustively(moved, KV_STRINGS) == "not-linearizable"


def test_an_info_put_may_erase_an_append_at_any_later_time() -> None:
    events = h(
        (2, "invoke", "put", "z", "k"),
        (2, "info", "put", None, "k"),
        (1, "invoke", "append", "b", "k"),
        (1, "ok", "append", "b", "k"),
        (4, "invoke", "get", None, "k"),
        (4, "ok", "get", "z", "k"),
    )
    result = check_history(events, KV_STRINGS)
    assert result.verdict == "linearizable" == check_exhaustively(events, KV_STRINGS)


def test_lost_append_to_a_list_and_lost_add_to_a_set() -> None:
    events = seq((0, "append", 1, 1, "ok", "k"), (1, "get", None, [], "ok", "k"))
    result = check_history(events, "kv")
    assert result.verdict == "not-linearizable" and result.reason == "lost"
    events = seq((0, "add", 1, 1), (1, "add", 2, 2), (2, "read", None, [2]))
    result = check_history(events, "set")
    assert result.verdict == "not-linearizable" and result.reason == "lost"
    assert result.unplaceable[1].describe() == "p0 add(1) -> ok"


def _bench() -> Any:
    import importlib.util
    import sys
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_lincheck.py"
    spec = importlib.util.spec_from_file_location("bench_lincheck", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.mark.timeout(120)
def test_fifty_client_late_read_histories_are_decided() -> None:
    # The benchmark's "late read by apply order" histories (2,000 operations,
    # 50 clients, 5% info, repeated values): undecided at any bound before the
    # wider look-ahead; linearizable, each in well under the budget, now.
    bench = _bench()
    for seed in (1, 2, 3):
        events = bench.generate(
            seed, "register", 2_000, 50, info_rate=0.05, values=1000, anomalies=1, stale=True
        )
        result = check_history(events, "register", max_states=100_000)
        assert result.verdict == "linearizable", (seed, result.reason, result.states)
        assert result.states < 20_000


def test_check_history_leaves_the_garbage_collector_as_it_was() -> None:
    # The linear phases pause the cyclic collector (verify/lincheck/_gc.py);
    # it must come back as it was, also when a phase raises.
    events = h(
        (0, "invoke", "write", 1),
        (0, "ok", "write", 1),
        (1, "invoke", "read", None),
        (1, "ok", "read", 1),
    )
    assert gc.isenabled()
    assert check_history(events, "register").ok
    assert gc.isenabled()
    with pytest.raises(HistoryError):
        check_history([HistoryEvent(0, "ok", "read", 1)], "register")
    assert gc.isenabled()
    gc.disable()
    try:
        assert check_history(events, "register").ok
        assert not gc.isenabled()
    finally:
        gc.enable()
