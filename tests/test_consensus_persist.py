"""The persister's merge of consecutive RaftPersist records has apply_persist's effect."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from trio_foundation.coordination.consensus import _merge
from trio_foundation.protocols.raft import (
    Config,
    Entry,
    RaftDurable,
    RaftPersist,
    Snapshot,
    apply_persist,
)


@st.composite
def record_scripts(draw: st.DrawFn) -> tuple[RaftDurable, list[RaftPersist]]:
    """A durable start and a script of valid records (as a core could emit them)."""
    durable = RaftDurable()
    records = []
    term = 1
    last = 0
    snap_index = 0
    for _ in range(draw(st.integers(1, 8))):
        term += draw(st.integers(0, 1))
        snapshot = None
        if draw(st.integers(0, 5)) == 0 and last > snap_index:
            idx = draw(st.integers(snap_index + 1, last))
            snapshot = Snapshot(idx, 1, Config((1, 2, 3)), b"s%d" % idx)
            snap_index = idx
        truncate = None
        if draw(st.booleans()) and last > snap_index:
            truncate = draw(st.integers(snap_index + 1, last))
            last = truncate - 1
        n = draw(st.integers(0, 3))
        entries = tuple(Entry(term, last + 1 + k, "noop") for k in range(n))
        last += n
        record = RaftPersist(term, None, truncate, entries, snapshot)
        durable = apply_persist(durable, record)
        records.append(record)
    return RaftDurable(), records


@settings(max_examples=300, deadline=None)
@given(record_scripts())
def test_merged_records_have_the_same_effect(script: tuple[RaftDurable, list[RaftPersist]]) -> None:
    start, records = script
    expected = start
    for r in records:
        expected = apply_persist(expected, r)
    # merge greedily, as the persister does
    merged: list[RaftPersist] = []
    for r in records:
        m = _merge(merged[-1], r) if merged else None
        if m is None:
            merged.append(r)
        else:
            merged[-1] = m
    got = start
    for r in merged:
        got = apply_persist(got, r)
    assert got == expected
