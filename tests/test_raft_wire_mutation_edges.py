"""coordination/raft_wire.py: exact wire and storage forms, and refusals (mutation survivors).

The Raft tests reach this module through whole clusters, where a default
value that is never exercised (``pre_vote``, ``transfer``, ``read_id``,
conflict hints, learners, sessions) can be lost in translation without a
failure. Here every peer message and stored value round-trips with distinct,
non-default values in every field, and the refusals name what they refuse.
"""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from trio_foundation.coordination import raft_wire as rw
from trio_foundation.protocols import raft as core

CONFIG = core.Config((1, 2, 3), (4, 5))
COMMAND = core.Entry(7, 8, "command", core.Proposal(99, 6, b"set x"))
ANON = core.Entry(7, 9, "command", core.Proposal(None, 0, b"noop-ish"))
CONFIG_ENTRY = core.Entry(8, 10, "config", CONFIG)
NOOP = core.Entry(9, 11, "noop")
SESSIONS = ((99, 6, b"ok"), (100, 2, b""))

PEER: list[Any] = [
    core.AppendEntries(11, 2, 12, 13, (COMMAND, ANON, CONFIG_ENTRY, NOOP), 14, 15),
    core.AppendEntriesResponse(16, True, 17, 18, 19, 20),
    core.AppendEntriesResponse(21, False, 22, 23, 24, 25),
    core.RequestVote(26, 3, 27, 28, True, False),
    core.RequestVote(29, 1, 30, 31, False, True),
    core.RequestVoteResponse(32, True, True),
    core.RequestVoteResponse(33, False, False),
    core.InstallSnapshot(34, 2, 35, 36, CONFIG, b"state", SESSIONS, 37),
    core.InstallSnapshotResponse(38, 39, 40),
    core.TimeoutNow(41),
]


@pytest.mark.parametrize("msg", PEER, ids=lambda m: type(m).__name__)
def test_every_peer_message_round_trips_through_the_codec(msg: Any) -> None:
    wire = rw.to_wire(msg)
    assert rw.from_wire(wire) == msg
    data = rw.RAFT_PROTOCOL.encode(wire)
    assert rw.from_wire(rw.RAFT_PROTOCOL.decode(data)) == msg


def test_the_wire_fields_are_the_cores_fields_in_order() -> None:
    assert rw.to_wire(core.RequestVote(1, 2, 3, 4, True, False)) == rw.WRequestVote(
        1, 2, 3, 4, True, False
    )
    assert rw.to_wire(core.AppendEntriesResponse(1, True, 2, 3, 4, 5)) == (
        rw.WAppendEntriesResponse(1, True, 2, 3, 4, 5)
    )
    assert rw.to_wire(core.InstallSnapshotResponse(1, 2, 3)) == rw.WInstallSnapshotResponse(1, 2, 3)
    assert rw.to_wire(core.RequestVoteResponse(1, True, False)) == rw.WRequestVoteResponse(
        1, True, False
    )
    assert rw.to_wire(core.TimeoutNow(4)) == rw.WTimeoutNow(4)
    snap = rw.to_wire(core.InstallSnapshot(1, 2, 3, 4, CONFIG, b"d", SESSIONS, 5))
    assert snap == rw.WInstallSnapshot(
        1,
        2,
        rw.WSnapshot(
            3, 4, (1, 2, 3), (4, 5), b"d", (rw.WSession(99, 6, b"ok"), rw.WSession(100, 2, b""))
        ),
        5,
    )


@pytest.mark.parametrize("entry", [COMMAND, ANON, CONFIG_ENTRY, NOOP], ids=lambda e: e.kind)
def test_every_entry_kind_is_stored_and_read_back(entry: core.Entry) -> None:
    assert rw.decode_entry(rw.encode_entry(entry)) == entry


def test_a_stored_entry_has_its_documented_layout() -> None:
    assert msgspec.msgpack.decode(rw.encode_entry(COMMAND)) == [
        7, 8, "command", 99, 6, b"set x", [], []
    ]  # fmt: skip
    assert msgspec.msgpack.decode(rw.encode_entry(CONFIG_ENTRY)) == [
        8, 10, "config", None, 0, b"", [1, 2, 3], [4, 5]
    ]  # fmt: skip
    assert msgspec.msgpack.decode(rw.encode_entry(NOOP)) == [9, 11, "noop", None, 0, b"", [], []]


def test_a_snapshot_is_stored_and_read_back() -> None:
    snap = core.Snapshot(12, 3, CONFIG, b"machine", SESSIONS)
    assert rw.decode_snapshot(rw.encode_snapshot(snap)) == snap
    assert msgspec.msgpack.decode(rw.encode_snapshot(snap)) == [
        12, 3, [1, 2, 3], [4, 5], b"machine", [[99, 6, b"ok"], [100, 2, b""]]
    ]  # fmt: skip


def test_entries_the_service_cannot_store_are_refused_by_index() -> None:
    with pytest.raises(TypeError, match=r"^entry 5: the service logs bytes proposals, got 'x'$"):
        rw.encode_entry(core.Entry(1, 5, "command", "x"))
    with pytest.raises(TypeError, match=r"^entry 6: the service logs bytes proposals, got "):
        rw.encode_entry(core.Entry(1, 6, "command", core.Proposal(1, 1, "text")))
    with pytest.raises(TypeError, match=r"^entry 7: client id must be an int, got 'c'$"):
        rw.encode_entry(core.Entry(1, 7, "command", core.Proposal("c", 1, b"x")))


def test_sessions_the_service_cannot_store_are_refused() -> None:
    bad_id = core.Snapshot(1, 1, CONFIG, b"", (("c", 1, b"r"),))
    with pytest.raises(
        TypeError, match=r"^session 'c': the service keeps int ids and bytes results$"
    ):
        rw.encode_snapshot(bad_id)
    bad_result = core.Snapshot(1, 1, CONFIG, b"", ((3, 1, "r"),))
    with pytest.raises(
        TypeError, match=r"^session 3: the service keeps int ids and bytes results$"
    ):
        rw.encode_snapshot(bad_result)


def test_a_foreign_message_is_refused_and_a_client_message_is_not_a_peer_message() -> None:
    with pytest.raises(TypeError, match=r"^int is not a Raft peer message$"):
        rw.to_wire(3)
    assert rw.from_wire(rw.CStatus(1)) is None
    assert rw.from_wire(rw.CSubmit(1, 2, 3, b"x")) is None


def _chunks(size: int) -> list[Any]:
    msg = core.InstallSnapshot(3, 1, 40, 2, core.Config((1, 2, 3), ()), b"s" * size, (), 5)
    chunks = rw.snapshot_chunks(msg, 8192)
    assert len(chunks) >= 3
    return list(chunks)


def test_a_new_sender_evicts_the_stalest_partial_and_wholes_are_counted() -> None:
    """Two partials kept at most: a third sender evicts the one touched longest ago
    (sender 5, not the lower id 3); the survivor completes, counted once."""
    chunks = _chunks(20_000)
    asm = rw.SnapshotAssembler(max_bytes=1 << 20, timeout=100.0, max_senders=2)
    assert asm.add(5, chunks[0], 0.0) is None
    assert asm.add(3, chunks[0], 1.0) is None
    assert asm.add(3, chunks[1], 2.0) is None
    assert asm.add(9, chunks[0], 3.0) is None  # evicts 5 (touched at 0.0)
    assert asm.dropped == 0
    assert asm.add(5, chunks[1], 4.0) is None and asm.dropped == 1  # 5's partial is gone
    whole = [asm.add(3, ch, 5.0) for ch in chunks[2:]]
    assert whole[-1] is not None and whole[-1].last_included_index == 40
    assert (asm.assembled, asm.dropped, asm.refused) == (1, 1, 0)


@pytest.mark.parametrize(
    ("max_bytes", "timeout", "senders"), [(0, 1.0, 4), (10, 0.0, 4), (10, 1.0, 0)]
)
def test_an_assembler_refuses_each_bound_alone(
    max_bytes: int, timeout: float, senders: int
) -> None:
    with pytest.raises(ValueError, match=r"^max_bytes, timeout and max_senders must be > 0$"):
        rw.SnapshotAssembler(max_bytes, timeout, senders)
