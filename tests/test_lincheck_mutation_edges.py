"""The linearizability checker's edges, one exact check each: verdicts, reasons,
witnesses and error messages of ``check_history`` and ``check_exhaustively``,
written against behaviour (not the search's internals).

Written for the survivors of a mutation run (``benchmarks/mutation.py lincheck``;
docs/verification.md lists them).
"""

from __future__ import annotations

from typing import Any

from lincheck_rows import forced_order_chain as _chain
from lincheck_rows import hard_writes as _hard
from lincheck_rows import seq

from trio_foundation.verify.history import HistoryEvent
from trio_foundation.verify.lincheck import (
    MODELS,
    LinearizabilityResult,
    Operation,
    check_exhaustively,
    check_history,
    freeze,
    pair_operations,
)


def _parts(result: LinearizabilityResult) -> dict[Any, tuple[str, str]]:
    return {p.key: (p.verdict, p.reason) for p in result.partitions}


_FINE_B = seq((60, "put", 1, 1, "ok", "b"), (61, "get", None, 1, "ok", "b"))


# --- a failing key first, with others after it: its first round decides -----------


def test_an_impossible_first_key_is_named_impossible() -> None:
    result = check_history(seq((0, "get", None, 5, "ok", "a")) + _FINE_B, "kv")
    assert (result.verdict, result.reason, result.failing_key) == (
        "not-linearizable",
        "impossible",
        "a",
    )
    assert _parts(result) == {
        "a": ("not-linearizable", "impossible"),
        "b": ("unknown", "not-checked"),
    }
    assert [o.describe() for o in result.unplaceable] == ["p0 get['a']() -> 5"]
    assert result.linearized == ()
    assert [(p.operation_count, p.states) for p in result.partitions] == [(1, 0), (2, 0)]


def test_a_lost_append_in_a_first_key_is_named_lost() -> None:
    events = seq((0, "append", 1, 1, "ok", "a"), (1, "get", None, [], "ok", "a")) + _FINE_B
    result = check_history(events, "kv")
    assert (result.verdict, result.reason, result.failing_key) == (
        "not-linearizable",
        "lost",
        "a",
    )
    assert _parts(result)["a"] == ("not-linearizable", "lost")
    assert [o.describe() for o in result.unplaceable] == [
        "p1 get['a']() -> []",
        "p0 append['a'](1) -> ok",
    ]
    assert result.linearized == ()


def _stale_behind_concurrent_puts(key: str) -> list[HistoryEvent]:
    # 40 concurrent puts (each value twice), then put(99) and a get of 1: every
    # put of 1 returned before put(99) began, which returned before the get began
    events = [HistoryEvent(p, "invoke", "put", p % 20, key=key) for p in range(40)]
    events += [HistoryEvent(p, "ok", "put", p % 20, key=key) for p in range(40)]
    return events + seq((50, "put", 99, 99, "ok", key), (51, "get", None, 1, "ok", key))


def test_a_stale_read_in_a_first_key() -> None:
    result = check_history(_stale_behind_concurrent_puts("a") + _FINE_B, "kv")
    assert (result.verdict, result.failing_key) == ("not-linearizable", "a")
    assert _parts(result)["b"] == ("unknown", "not-checked")
    # the first round's small search does not decide it; the stale-read witness
    # does (a faster search may decide it first: then the reason is empty)
    assert result.reason in ("stale", "")
    if result.reason == "stale":
        assert [o.describe() for o in result.unplaceable] == [
            "p51 get['a']() -> 1",
            "p50 put['a'](99) -> ok",
            "p21 put['a'](1) -> ok",
        ]


# --- models -------------------------------------------------------------------------


def test_a_mutex_released_while_free_is_not_linearizable() -> None:
    events = seq((0, "release", None, None))
    assert check_history(events, "mutex").verdict == "not-linearizable"
    assert check_exhaustively(events, "mutex") == "not-linearizable"
    events = seq((0, "acquire", None, None), (1, "release", None, None), (0, "release", None, None))
    assert check_history(events, "mutex").verdict == "not-linearizable"


# --- the forced-order witness -------------------------------------------------------


def test_a_read_of_the_initial_value_pins_no_write() -> None:
    # The read of null may have read the initial state: the later write of null
    # is not forced before it (that would be a cycle, and a false verdict).
    events = seq((100, "read", None, None), (101, "write", None, None)) + _hard()
    result = check_history(events, "register", max_states=2_000)
    assert (result.verdict, result.reason) == ("unknown", "max_states")


# --- the exhaustive reference checker -----------------------------------------------


def test_the_reference_counts_every_crash_of_a_process() -> None:
    # p0 crashes twice; its third incarnation is a fresh client that never
    # acquired, so its release cannot succeed (the lock's owner is the process,
    # or (process, incarnation) after a crash)
    events = seq(
        (0, "acquire", None, None, "info"),
        (0, "acquire", None, None, "info"),
        (0, "release", None, None),
    )
    assert check_exhaustively(events, "lock") == "not-linearizable"
    assert check_history(events, "lock").verdict == "not-linearizable"
    # its second incarnation did acquire (maybe): that one's release may succeed
    events = seq(
        (0, "acquire", None, None, "info"),
        (0, "acquire", None, None),
        (0, "release", None, None),
    )
    assert check_exhaustively(events, "lock") == "linearizable"
    assert check_history(events, "lock").verdict == "linearizable"


# --- the stale-read witness, behind a search that cannot decide ---------------------


def _assert_stale_evidence(result: LinearizabilityResult, events: list[HistoryEvent]) -> None:
    """The witness's contract: ``(r, c[, setter])``: ``r`` read a value ``v``; ``c``
    leaves another value and returned before ``r`` was invoked; every write of ``v``
    returned before ``c`` was invoked (the setter given is one of them)."""
    assert result.verdict == "not-linearizable" and result.reason == "stale"
    assert result.linearized == ()
    r, c, *setter = result.unplaceable
    value = r.output
    assert r.f == "read" and r.status == "ok"
    assert c.status == "ok" and c.complete_at is not None and c.complete_at < r.invoke_at
    left = c.value if c.f == "write" else c.output
    assert left != value
    writes = [
        op
        for op in _ops(events)
        if op.f == "write" and op.value == value and op.invoke_at < (r.complete_at or 0)
    ]
    assert all(w.complete_at is not None and w.complete_at < c.invoke_at for w in writes)
    assert [s.value for s in setter] == ([value] if writes else [])
    if writes:
        assert setter[0] in writes


def _ops(events: list[HistoryEvent]) -> list[Operation]:
    return pair_operations(events)


def test_a_stale_read_behind_a_hard_search() -> None:
    tail = seq((100, "write", 100, 100), (101, "write", 101, 101), (102, "read", None, 100))
    events = _hard() + tail
    for bound in (500, None):
        result = check_history(events, "register", max_states=bound)
        _assert_stale_evidence(result, events)
        assert [o.describe() for o in result.unplaceable] == [
            "p102 read() -> 100",
            "p101 write(101) -> ok",
            "p100 write(100) -> ok",
        ]


def test_a_stale_read_of_the_initial_value_behind_a_hard_search() -> None:
    events = _hard() + seq((101, "write", 101, 101), (102, "read", None, None))
    result = check_history(events, "register", max_states=500)
    _assert_stale_evidence(result, events)
    assert len(result.unplaceable) == 2  # no setter: the initial state gave it


def test_a_stale_read_among_several_takes_the_first() -> None:
    # two stale reads after the hard part; the witness names the earlier one
    tail = seq(
        (100, "write", 100, 100),
        (101, "write", 101, 101),
        (102, "read", None, 100),
        (103, "write", 103, 103),
        (104, "read", None, 101),
    )
    events = _hard() + tail
    result = check_history(events, "register", max_states=500)
    _assert_stale_evidence(result, events)
    assert result.unplaceable[0].describe() == "p102 read() -> 100"


def test_a_stale_read_with_a_write_of_its_value_still_open_is_no_witness() -> None:
    # a write of 100 never returned: it may take effect just before the read
    tail = [
        HistoryEvent(99, "invoke", "write", 100),
        *seq((100, "write", 100, 100), (101, "write", 101, 101), (102, "read", None, 100)),
    ]
    events = _hard() + tail
    result = check_history(events, "register", max_states=500)
    assert result.reason != "stale"


# --- the forced-order witness, behind a search that cannot decide -------------------


def test_a_chain_of_forced_orders_behind_a_hard_search() -> None:
    for twice in (True, False):
        assert check_exhaustively(_chain(twice), "register") == "not-linearizable"
    events = _hard() + _chain(twice=True)
    result = check_history(events, "register", max_states=500)
    assert (result.verdict, result.reason) == ("not-linearizable", "forced-order")
    # (r, c, every setter of r's value): c leaves another value, is forced after
    # every setter and before r
    assert [o.describe() for o in result.unplaceable] == [
        "p103 read() -> 100",
        "p101 write(101) -> ok",
        "p100 write(100) -> ok",
        "p104 write(100) -> ok",
    ]
    # with one write of 100 the pinned read closes a cycle: reported whole and
    # closed, in order of invocation (each operation forced before the next)
    result = check_history(_hard() + _chain(twice=False), "register", max_states=500)
    assert (result.verdict, result.reason) == ("not-linearizable", "forced-order")
    assert [o.describe() for o in result.unplaceable] == [
        "p100 write(100) -> ok",
        "p101 write(101) -> ok",
        "p102 read() -> 101",
        "p103 read() -> 100",
        "p100 write(100) -> ok",
    ]


def test_a_pinned_read_that_is_fine_is_no_witness() -> None:
    events = _hard() + seq((100, "write", 100, 100), (101, "read", None, 100))
    result = check_history(events, "register", max_states=500)
    assert (result.verdict, result.reason) == ("unknown", "max_states")


def test_a_chain_of_forced_orders_in_a_partition_too_big_for_a_cheap_look() -> None:
    # 250 operations: the chain's closure costs more than the first budget's
    # search, so it is looked for only because the search ran out of max_states
    events = _hard(240) + _chain(twice=True, base=1000)
    result = check_history(events, "register", max_states=500)
    assert (result.verdict, result.reason) == ("not-linearizable", "forced-order")
    assert result.unplaceable[0].describe() == "p1003 read() -> 1000"


# --- evidence and accounting of the result ------------------------------------------


def test_a_linearizable_partitioned_history_has_no_overall_witness() -> None:
    result = check_history(seq((0, "put", 1, 1, "ok", "a"), (1, "put", 2, 2, "ok", "b")), "kv")
    assert result.verdict == "linearizable" and result.partitioned
    assert result.linearized == ()
    assert [len(p.linearized) for p in result.partitions] == [1, 1]


def test_a_lost_append_alone_counts_its_operations() -> None:
    result = check_history(
        seq((0, "append", 1, 1, "ok", "a"), (1, "get", None, [], "ok", "a")), "kv"
    )
    assert (result.verdict, result.reason) == ("not-linearizable", "lost")
    ((part),) = result.partitions
    assert (part.key, part.operation_count, part.states) == ("a", 2, 0)


def test_max_states_bounds_the_first_round_too() -> None:
    # with max_states at or below the first round's budget the first round is
    # skipped: the failing key is searched within the bound, and the key after
    # it is still linearized by the greedy pass
    result = check_history(_stale_behind_concurrent_puts("a") + _FINE_B, "kv", max_states=500)
    assert result.verdict == "not-linearizable" and result.failing_key == "a"
    assert _parts(result)["b"] == ("linearizable", "")


# --- the greedy pass: a linearization without a search (states == 0) --------------


def test_the_greedy_pass_enables_a_read_of_the_first_operation() -> None:
    # ops[0] is a read of 1 that returns before the concurrent write(1) does
    events = [
        HistoryEvent(0, "invoke", "read", None),
        HistoryEvent(1, "invoke", "write", 1),
        HistoryEvent(0, "ok", "read", 1),
        HistoryEvent(1, "ok", "write", 1),
    ]
    result = check_history(events, "register")
    assert result.ok and result.states == 0
    assert [o.describe() for o in result.linearized] == ["p1 write(1) -> ok", "p0 read() -> 1"]


def test_the_greedy_pass_leaves_the_value_a_pending_read_needs() -> None:
    # write(1) and write(2) both returned; a read of 1 still running needs 1 last
    events = [
        HistoryEvent(0, "invoke", "write", 1),
        HistoryEvent(1, "invoke", "write", 2),
        HistoryEvent(2, "invoke", "read", None),
        HistoryEvent(0, "ok", "write", 1),
        HistoryEvent(1, "ok", "write", 2),
        HistoryEvent(3, "invoke", "read", None),
        HistoryEvent(2, "ok", "read", 1),
        HistoryEvent(3, "ok", "read", 1),
    ]
    result = check_history(events, "register")
    assert result.ok and result.states == 0
    assert [o.describe() for o in result.linearized][:2] == [
        "p1 write(2) -> ok",
        "p0 write(1) -> ok",
    ]


def test_a_single_write_needs_no_search() -> None:
    result = check_history(seq((0, "write", 1, 1)), "register")
    assert result.ok and result.states == 0 and len(result.linearized) == 1


def test_freeze_makes_json_objects_sorted_item_tuples() -> None:
    assert freeze({"b": [1, {"y": 2, "x": None}], "a": 2}) == (
        ("a", 2),
        ("b", (1, (("x", None), ("y", 2)))),
    )
    assert freeze({1: "one"}) == (("1", "one"),)


def test_a_deadline_passed_before_the_search_leaves_the_partition_timed_out() -> None:
    # (a nanosecond: gone by the time the greedy pass and the prechecks are done)
    result = check_history(_hard(), "register", timeout=1e-9)
    assert (result.verdict, result.reason) == ("unknown", "timeout")
    assert [(p.verdict, p.reason, p.states) for p in result.partitions] == [
        ("unknown", "timeout", 0)
    ]


def test_a_stale_read_behind_reads_of_its_own_value() -> None:
    # after write(100) two reads of 100 return first; the operation that leaves
    # another value (write(101)) returns third: the witness must look past them
    tail = seq(
        (100, "write", 100, 100),
        (101, "read", None, 100),
        (102, "read", None, 100),
        (103, "write", 101, 101),
        (104, "read", None, 100),
    )
    events = _hard() + tail
    result = check_history(events, "register", max_states=500)
    _assert_stale_evidence(result, events)
    assert [o.describe() for o in result.unplaceable] == [
        "p104 read() -> 100",
        "p103 write(101) -> ok",
        "p100 write(100) -> ok",
    ]


# --- the search -----------------------------------------------------------------------


def test_two_unfinished_appends_may_both_take_effect_in_either_order() -> None:
    kv = MODELS["kv"].with_initial("")
    for first, second in (("x", "y"), ("y", "x")):
        events = [
            HistoryEvent(0, "invoke", "append", "x", key="k"),
            HistoryEvent(1, "invoke", "append", "y", key="k"),
            HistoryEvent(2, "invoke", "get", None, key="k"),
            HistoryEvent(2, "ok", "get", first + second, key="k"),
        ]
        assert check_exhaustively(events, kv) == "linearizable"
        result = check_history(events, kv)
        assert result.verdict == "linearizable"
        assert [o.describe() for o in result.linearized][
            -1
        ] == f"p2 get['k']() -> '{first}{second}'"


# Linearizable histories of the kv model with string appends on which a wrong growth
# or reset prune (``grows_into`` giving up before the unfinished appends,
# ``reset_allows`` asking about the wrong state) said "not linearizable"; found by a
# differential search of small random histories against the exhaustive checker.
_GROWTH_CASES = [
    [
        (1, "invoke", "get", None),
        (2, "invoke", "put", "y"),
        (3, "invoke", "append", "x"),
        (3, "info", "append", None),
        (0, "invoke", "append", "y"),
        (0, "info", "append", None),
        (1, "ok", "get", "xy"),
        (4, "invoke", "append", "y"),
        (1, "invoke", "append", "z"),
        (2, "ok", "put", "y"),
        (1, "ok", "append", "z"),
        (4, "ok", "append", "y"),
    ],
    [
        (1, "invoke", "put", "y"),
        (0, "invoke", "append", "x"),
        (2, "invoke", "get", None),
        (2, "ok", "get", "y"),
        (0, "ok", "append", "x"),
        (1, "ok", "put", "y"),
        (2, "invoke", "get", None),
        (2, "ok", "get", "y"),
    ],
]


def test_growth_and_reset_pruning_keeps_linearizable_histories() -> None:
    kv = MODELS["kv"].with_initial("")
    for rows in _GROWTH_CASES:
        events = [HistoryEvent(p, t, f, v, key="k") for p, t, f, v in rows]  # type: ignore[arg-type]
        assert check_exhaustively(events, kv) == "linearizable"
        assert check_history(events, kv).verdict == "linearizable"
