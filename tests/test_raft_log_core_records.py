"""RaftLog.save_record stores every record the Raft core can emit as apply_persist applies it.

Regression (found by chaos/test_raft_kv.py): a follower step that cuts a conflicting
suffix (``truncate_from`` = 98) and, having committed past it in the same step,
compacts (a snapshot at 101) emits one record whose truncation point lies below
its snapshot. ``apply_persist`` reads it as "snapshot, then drop everything after
it, then append"; ``save_record`` refused it with ``ValueError: truncate_from must
be in (101, 102]``, which in the service ends the node.
"""

from __future__ import annotations

import random

from trio_foundation.coordination.raft_wire import (
    decode_entry,
    decode_snapshot,
    encode_entry,
    encode_snapshot,
)
from trio_foundation.protocols.raft import (
    Config,
    Entry,
    Proposal,
    RaftDurable,
    RaftPersist,
    Snapshot,
    apply_persist,
)
from trio_foundation.runtime.raft_log import RaftLog
from trio_foundation.runtime.simdisk import SimDisk

CODECS = {"encode_entry": encode_entry, "encode_snapshot": encode_snapshot}


def _entry(term: int, index: int) -> Entry:
    return Entry(term, index, "command", Proposal(index, 1, f"cmd {index}".encode()))


def _reopened(disk: SimDisk) -> RaftDurable:
    with RaftLog("/r", segment_bytes=4096, ops=disk, salts=random.Random(1), io="inline") as log:
        state = log.load()
    snap = None if state.snapshot is None else decode_snapshot(state.snapshot.data)
    return RaftDurable(
        state.hard_state.term,
        state.hard_state.voted_for,
        snap,
        tuple(decode_entry(e.data) for e in state.entries),
    )


async def test_a_truncation_below_the_records_snapshot_is_stored_as_apply_persist_reads_it() -> (
    None
):
    disk = SimDisk(random.Random(0))
    records = [
        RaftPersist(1, 0, None, tuple(_entry(1, i) for i in range(1, 13))),
        RaftPersist(
            2,
            None,
            truncate_from=5,
            entries=(_entry(2, 10), _entry(2, 11)),
            snapshot=Snapshot(9, 2, Config.of([0, 1, 2]), b"machine at 9", ((7, 1, b"r"),)),
        ),
    ]
    expected = RaftDurable()
    with RaftLog("/r", segment_bytes=4096, ops=disk, salts=random.Random(0), io="inline") as log:
        log.load()
        for record in records:
            expected = apply_persist(expected, record)
            await log.save_record(record, **CODECS)
    assert [e.index for e in expected.log] == [10, 11]
    assert _reopened(disk) == expected
