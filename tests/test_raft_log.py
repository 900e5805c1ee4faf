"""runtime.raft_log: the Raft node's durable log, on the real disk and on a simulated disk
that crashes at every write boundary."""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import attrs
import msgspec
import pytest
import trio
from raft_log_model import (
    DIR,
    Save,
    check_recovery,
    conflicting_installs,
    model_states,
    random_script,
    run_writer,
    with_conflicting_installs,
)

from trio_foundation.runtime.raft_log import (
    CorruptLogError,
    HardState,
    LogEntry,
    RaftLog,
    RaftLogFailedError,
    Snapshot,
    open_raft_log,
)
from trio_foundation.runtime.simdisk import SimDisk, SimulatedCrash


def entries(first: int, last: int, term: int, size: int = 10) -> tuple[LogEntry, ...]:
    return tuple(LogEntry(i, term, bytes([i % 256]) * size) for i in range(first, last + 1))


def reopen(path: Path, **kw: Any) -> RaftLog:
    return RaftLog(path, **kw)


def segments(path: Path) -> list[Path]:
    return sorted(path.glob("wal-*.log"))


def append_bytes(path: Path, data: bytes) -> None:
    with open(path, "ab") as f:
        f.write(data)


# ----------------------------------------------------------------- the real disk


async def test_saves_survive_a_reopen(tmp_path: Path) -> None:
    log = RaftLog(tmp_path)
    state = log.load()
    assert (state.hard_state, state.snapshot, state.entries) == (HardState(), None, ())
    await log.save(hard_state=HardState(1, 2), entries=entries(1, 5, 1))
    await log.save(hard_state=HardState(2, None))
    await log.save(truncate_from=4, entries=entries(4, 6, 2))
    assert (log.last_index, log.last_term, log.term_at(3), log.term_at(4)) == (6, 2, 1, 2)
    await log.aclose()
    got = reopen(tmp_path).load()
    assert got.hard_state == HardState(2, None)
    assert got.entries == entries(1, 3, 1) + entries(4, 6, 2)
    assert b"kind=raft-log\nformat=1" in (tmp_path / "FORMAT").read_bytes()
    with pytest.raises(RuntimeError, match="returns the recovered state once"):
        log.load()
    with pytest.raises(RuntimeError, match="is closed"):
        await log.save(entries=entries(7, 7, 2))


async def test_segments_rotate_and_a_snapshot_drops_the_ones_it_covers(tmp_path: Path) -> None:
    log = RaftLog(tmp_path, segment_bytes=4096)
    log.load()
    await log.save(hard_state=HardState(3, 1))
    for i in range(1, 61):
        await log.save(entries=(LogEntry(i, 3, bytes(300)),))
    before = log.statistics()
    assert before.segments >= 4 and before.flushes == 61
    await log.save(snapshot=Snapshot(50, 3, b"state at 50"))
    after = log.statistics()
    names = sorted(n for n in os.listdir(tmp_path) if n.startswith("wal-"))
    assert after.segments_removed >= 3 and after.segments == len(names) < before.segments
    seqs = [int(n[4:20]) for n in names]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # consecutive
    await log.aclose()
    got = reopen(tmp_path, segment_bytes=4096).load()
    assert got.snapshot == Snapshot(50, 3, b"state at 50")
    assert [e.index for e in got.entries] == list(range(51, 61))
    assert got.hard_state == HardState(3, 1)  # kept although its segment was dropped


async def test_an_installed_snapshot_keeps_a_matching_log_and_resets_a_conflicting_one(
    tmp_path: Path,
) -> None:
    log = RaftLog(tmp_path)
    log.load()
    await log.save(hard_state=HardState(2, 0), entries=entries(1, 4, 1) + entries(5, 8, 2))
    await log.save(snapshot=Snapshot(6, 2, b"a"))  # matches entry 6: 7..8 kept
    assert (log.last_index, log.snapshot_index) == (8, 6)
    await log.save(hard_state=HardState(3, None), snapshot=Snapshot(7, 3, b"b"))  # conflicts
    assert (log.last_index, log.last_term) == (7, 3)
    await log.save(snapshot=Snapshot(12, 3, b"c"))  # beyond the log
    await log.save(entries=entries(13, 14, 3))
    await log.aclose()
    got = reopen(tmp_path).load()
    assert got.snapshot == Snapshot(12, 3, b"c")
    assert got.entries == entries(13, 14, 3)


async def test_a_torn_tail_is_cut_on_open(tmp_path: Path) -> None:
    log = RaftLog(tmp_path)
    log.load()
    await log.save(hard_state=HardState(1, None), entries=entries(1, 3, 1))
    await log.aclose()
    (seg,) = segments(tmp_path)
    good = seg.stat().st_size
    # a batch that never finished: its header and part of a record
    other = RaftLog(tmp_path / "other")
    other.load()
    await other.save(hard_state=HardState(1, None), entries=entries(1, 1, 1))
    await other.aclose()
    tail = segments(tmp_path / "other")[0].read_bytes()[-40:-5]
    append_bytes(seg, tail)
    log = reopen(tmp_path)
    assert log.load().entries == entries(1, 3, 1)
    assert log.statistics().repaired_bytes == len(tail) and seg.stat().st_size == good
    await log.save(entries=entries(4, 4, 1))
    await log.aclose()
    again = reopen(tmp_path)
    assert again.load().last_index == 4 and again.statistics().repaired_bytes == 0


async def test_damage_in_the_middle_is_an_error_naming_the_file_and_offset(tmp_path: Path) -> None:
    log = RaftLog(tmp_path)
    log.load()
    await log.save(hard_state=HardState(1, None), entries=entries(1, 2, 1, size=100))
    await log.save(entries=entries(3, 4, 1, size=100))
    await log.aclose()
    (seg,) = segments(tmp_path)
    raw = bytearray(seg.read_bytes())
    raw[150] ^= 0x01  # inside the second batch (the first is the segment's hard state)
    seg.write_bytes(bytes(raw))
    with pytest.raises(CorruptLogError, match=r"wal-0000000000000001\.log: damaged batch") as info:
        reopen(tmp_path)
    assert info.value.path == str(seg) and 0 < info.value.offset <= 150


async def test_a_damaged_older_segment_a_missing_segment_and_a_bad_snapshot_are_errors(
    tmp_path: Path,
) -> None:
    log = RaftLog(tmp_path, segment_bytes=4096)
    log.load()
    await log.save(hard_state=HardState(1, None))
    for i in range(1, 40):
        await log.save(entries=(LogEntry(i, 1, bytes(300)),))
    await log.save(snapshot=Snapshot(2, 1, b"snap"))
    await log.aclose()
    segs = segments(tmp_path)
    assert len(segs) >= 3
    first = segs[0].read_bytes()
    segs[0].write_bytes(first[:-3])  # its last batch torn: impossible for an older segment
    with pytest.raises(CorruptLogError, match="damaged batch"):
        reopen(tmp_path, segment_bytes=4096)
    segs[0].write_bytes(first)
    middle = segs[1].read_bytes()
    segs[1].unlink()
    with pytest.raises(CorruptLogError, match="segment missing between existing ones"):
        reopen(tmp_path, segment_bytes=4096)
    segs[1].write_bytes(middle)
    snap = tmp_path / "snapshot"
    raw = bytearray(snap.read_bytes())
    raw[-6] ^= 0xFF
    snap.write_bytes(bytes(raw))
    with pytest.raises(CorruptLogError, match="snapshot checksum mismatch"):
        reopen(tmp_path, segment_bytes=4096)


async def test_entry_data_that_holds_log_frames_cannot_fake_a_batch(tmp_path: Path) -> None:
    """A value that is a copy of another log's bytes: its frames carry another salt, so a
    tear inside it is still recognised as a torn tail, not as damage in the middle."""
    other = RaftLog(tmp_path / "other")
    other.load()
    await other.save(hard_state=HardState(1, None), entries=entries(1, 3, 1))
    await other.aclose()
    foreign = segments(tmp_path / "other")[0].read_bytes()
    log = RaftLog(tmp_path / "a")
    log.load()
    await log.save(hard_state=HardState(1, None), entries=entries(1, 1, 1))
    await log.save(entries=(LogEntry(2, 1, foreign * 3),))
    await log.aclose()
    (seg,) = segments(tmp_path / "a")
    seg.write_bytes(seg.read_bytes()[: -len(foreign)])  # torn inside the copied frames
    assert reopen(tmp_path / "a").load().last_index == 1


@pytest.mark.parametrize(
    ("save", "error", "message"),
    [
        (Save(hard_state=HardState(1, None)), ValueError, r"term must not decrease: 2 -> 1"),
        (Save(hard_state=HardState(2, 1)), ValueError, r"vote of term 2 went to 0"),
        (Save(entries=entries(5, 5, 2)), ValueError, r"entry 5 does not follow .* last index 3"),
        (Save(entries=entries(4, 4, 3)), ValueError, r"term 3, above the current term 2"),
        (Save(truncate_from=5), ValueError, r"truncate_from must be in \(0, 4\]"),
        (Save(snapshot=Snapshot(2, 3, b"")), ValueError, r"outside \[0, current term 2\]"),
        (Save(entries=entries(4, 4, 1) + entries(5, 5, 1)), ValueError, r"below the term 2"),
        (Save(entries=[b"x"]), TypeError, r"must hold LogEntry values, got bytes"),  # type: ignore[list-item]
        (Save(hard_state=(3, 1)), TypeError, r"hard_state must be a HardState"),  # type: ignore[arg-type]
    ],
)
async def test_misuse_is_refused_and_leaves_the_log_unchanged(
    tmp_path: Path, save: Save, error: type[Exception], message: str
) -> None:
    log = RaftLog(tmp_path)
    log.load()
    await log.save(hard_state=HardState(2, 0), entries=entries(1, 2, 1) + entries(3, 3, 2))
    with pytest.raises(error, match=message):
        await log.save(**save.kwargs())
    assert (log.last_index, log.hard_state, log.statistics().pending) == (3, HardState(2, 0), 0)
    await log.save(entries=entries(4, 4, 2))
    await log.aclose()
    assert reopen(tmp_path).load().last_index == 4


def test_values_check_their_fields() -> None:
    with pytest.raises(ValueError, match=r"entry index must be in \[1, 2\*\*63\), got 0"):
        LogEntry(0, 1, b"")
    with pytest.raises(TypeError, match="entry data must be bytes, got str"):
        LogEntry(1, 1, "x")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="segment_bytes must be in"):
        RaftLog("unused", segment_bytes=10)


async def test_concurrent_saves_share_fsyncs(tmp_path: Path) -> None:
    log = RaftLog(tmp_path)
    log.load()
    await log.save(hard_state=HardState(1, None))

    async def append() -> None:
        await log.save(entries=(LogEntry(log.last_index + 1, 1, b"x" * 100),))

    async with trio.open_nursery() as nursery:
        for _ in range(64):
            nursery.start_soon(append)
    stats = log.statistics()
    assert stats.saves == 65 and stats.flushes <= 5 and stats.pending == 0
    await log.aclose()
    assert reopen(tmp_path).load().last_index == 64


async def test_a_failed_fsync_fails_the_log_for_every_caller() -> None:
    disk = SimDisk(random.Random(0))
    failing = [False]

    class Flaky:
        def __getattr__(self, name: str) -> Any:
            return getattr(disk, name)

        def sync(self, handle: int) -> None:
            if failing[0]:
                raise OSError(5, "Input/output error")
            disk.sync(handle)

    log = RaftLog(DIR, ops=Flaky())  # type: ignore[arg-type]
    log.load()
    await log.save(hard_state=HardState(1, None))
    failing[0] = True
    outcomes: list[object] = []

    async def append() -> None:
        try:
            await log.save(entries=(LogEntry(log.last_index + 1, 1, b"x"),))
            outcomes.append("acknowledged")
        except RaftLogFailedError as exc:
            outcomes.append(exc)

    async with trio.open_nursery() as nursery:
        for _ in range(5):
            nursery.start_soon(append)
    assert len(outcomes) == 5 and all(isinstance(o, RaftLogFailedError) for o in outcomes)
    assert any(isinstance(o.__cause__, OSError) for o in outcomes)  # type: ignore[union-attr]
    with pytest.raises(RaftLogFailedError, match="failed earlier; reopen it"):
        await log.save(hard_state=HardState(2, None))
    disk.reboot()
    got = RaftLog(DIR, ops=disk).load()
    assert got.hard_state == HardState(1, None) and got.entries == ()


# ----------------------------------------------------------------- crashes


SCRIPT = with_conflicting_installs(random_script(random.Random(2026), 36))


@pytest.mark.parametrize("concurrency", [1, 8])
def test_a_crash_at_every_write_boundary_loses_no_acknowledged_save(concurrency: int) -> None:
    """The scripted run (elections, votes, appends, conflicts, compactions, installed
    snapshots, segment rotations) crashed at each filesystem call in turn, with fresh
    random tears, reorderings and losses of the unsynced bytes each time."""
    states = model_states(SCRIPT)
    assert any(s.snapshot for s in states) and any(not s.entries and s.snapshot for s in states)
    assert conflicting_installs(SCRIPT) >= 2
    clean = SimDisk(random.Random(0))
    acked = run_writer(clean, SCRIPT, concurrency=concurrency)
    assert len(acked) == len(SCRIPT)
    assert check_recovery(clean, SCRIPT, acked) is None
    rng = random.Random()
    seen: dict[str, int] = {}
    violations = []
    for k in range(clean.calls + 1):
        for _ in range(2):
            disk = SimDisk(random.Random(rng.getrandbits(64)), crash_at=k)
            acked = run_writer(disk, SCRIPT, concurrency=concurrency, seed=k)
            problem = check_recovery(disk, SCRIPT, acked, seen=seen)
            if problem:
                violations.append(f"crash at call {k}: {problem}")
    assert violations == []
    # the interesting cases happened: torn tails cut, saves cut between their steps
    assert seen["torn tail cut"] > 10 and seen["partial save"] > 0 and seen["acknowledged"] > 0


# ----------------------------------------------------------------- the docs


DOC = Path(__file__).resolve().parent.parent / "docs" / "consensus.md"


def doc_example(marker: str) -> str:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    found = [b for b in blocks if b.startswith(f"# example: {marker}\n")]
    assert len(found) == 1, f"docs/consensus.md lost its {marker} example"
    return found[0]


def test_the_storage_example_in_the_docs_runs(capsys: pytest.CaptureFixture[str]) -> None:
    exec(compile(doc_example("storage"), str(DOC), "exec"), {})
    out = capsys.readouterr().out.splitlines()
    assert out == ["()", "HardState(term=2, voted_for=None) 1 [b'put b=3']"]


_WORKER = """
import sys, trio
from trio_foundation.runtime.raft_log import HardState, LogEntry, RaftLog

async def main():
    log = RaftLog(sys.argv[1], segment_bytes=4096)
    state = log.load()
    term = state.hard_state.term + 1
    await log.save(hard_state=HardState(term, None))
    while True:
        i = log.last_index + 1
        await log.save(entries=[LogEntry(i, term, b"entry %d" % i * 10)])
        print(i, flush=True)

trio.run(main)
"""


def test_kill_9_loses_no_acknowledged_entry(tmp_path: Path) -> None:
    """Real processes on the real disk: a writer printing each index once its save
    returned, SIGKILLed at random moments and restarted."""
    rng = random.Random()
    acked = 0
    for _ in range(4):
        proc = subprocess.Popen(
            [sys.executable, "-c", _WORKER, str(tmp_path)], stdout=subprocess.PIPE
        )
        assert proc.stdout is not None
        try:
            for _ in range(rng.randint(1, 80)):
                acked = max(acked, int(proc.stdout.readline()))
        finally:
            proc.send_signal(signal.SIGKILL)
            rest = proc.communicate(timeout=30)[0]
        acked = max([acked, *(int(x) for x in rest.split())])
        with RaftLog(tmp_path, segment_bytes=4096) as log:  # released for the next writer
            state = log.load()
        assert state.last_index >= acked
        assert all(e.data == b"entry %d" % e.index * 10 for e in state.entries)
        assert [e.index for e in state.entries] == list(range(1, state.last_index + 1))
    assert acked >= 4


def test_the_simulated_disk_keeps_what_posix_promises_and_no_more() -> None:
    """Every documented outcome of a reboot happens, and synced data always survives."""
    outcomes = set()
    names = set()
    for seed in range(300):
        disk = SimDisk(random.Random(seed))
        h = disk.open("d/f", truncate=False)
        disk.write(h, b"AAAA")
        disk.sync(h)
        disk.sync_dir("d")
        disk.write(h, b"BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB")
        g = disk.open("d/new", truncate=False)
        disk.write(g, b"x")
        disk.sync(g)
        disk.reboot()
        data = disk.read("d/f")
        assert data is not None and data.startswith(b"AAAA")  # synced: always kept
        tail = data[4:]
        if not tail:
            outcomes.add("lost")
        elif tail == b"B" * 40:
            outcomes.add("all")
        elif set(tail) == {ord("B")}:
            outcomes.add("cut")
        elif tail.endswith(b"B") and len(tail) <= 40:
            outcomes.add("holes")  # a later chunk written back, an earlier one not
        else:
            outcomes.add("cut+garbage")
        names.add(disk.read("d/new") is not None)  # created, never dir-synced
    assert outcomes == {"lost", "all", "cut", "cut+garbage", "holes"}
    assert names == {True, False}
    disk = SimDisk(random.Random(0), crash_at=1)
    h = disk.open("d/f", truncate=False)
    with pytest.raises(SimulatedCrash):
        disk.write(h, b"data")


async def test_aclose_makes_queued_saves_durable_and_a_late_waiter_is_told() -> None:
    disk = SimDisk(random.Random(0))
    log = RaftLog(DIR, ops=disk)
    log.load()
    await log.save(hard_state=HardState(1, None))
    with trio.CancelScope() as scope:
        scope.cancel()
        await log.save(entries=entries(1, 1, 1))  # queued, then cancelled before its flush
    assert log.statistics().pending == 1
    await log.aclose()
    await log.aclose()  # idempotent
    assert RaftLog(DIR, ops=disk).load().last_index == 1  # aclose wrote it
    with pytest.raises(RuntimeError, match="is closed"):
        await log.save(entries=entries(2, 2, 1))


async def test_open_raft_log_writes_queued_saves_and_closes_on_a_cancelled_exit(
    tmp_path: Path,
) -> None:
    with trio.CancelScope() as scope:
        async with open_raft_log(tmp_path) as log:
            assert log.load().entries == ()
            await log.save(hard_state=HardState(1, None))
            scope.cancel()
            await log.save(entries=entries(1, 2, 1))  # queued, cancelled before its flush
    assert scope.cancelled_caught and log._closed
    assert reopen(tmp_path).load().entries == entries(1, 2, 1)  # written by the exit


@attrs.frozen
class CoreEntry:  # the shape of protocols.raft.Entry
    term: int
    index: int
    kind: str
    command: Any = None


@attrs.frozen
class CoreSnapshot:  # the shape of protocols.raft.Snapshot
    last_included_index: int
    last_included_term: int
    config: tuple[int, ...]
    data: bytes


@attrs.frozen
class CorePersist:  # the shape of protocols.raft.RaftPersist
    term: int
    voted_for: int | None
    truncate_from: int | None = None
    entries: tuple[CoreEntry, ...] = ()
    snapshot: CoreSnapshot | None = None


async def test_a_core_persist_record_is_saved_with_the_callers_encoding(tmp_path: Path) -> None:
    def encode_entry(e: CoreEntry) -> bytes:
        return msgspec.msgpack.encode((e.kind, e.command))

    def encode_snapshot(s: CoreSnapshot) -> bytes:
        return msgspec.msgpack.encode((s.config, s.data))

    codecs = {"encode_entry": encode_entry, "encode_snapshot": encode_snapshot}
    async with open_raft_log(tmp_path) as log:
        log.load()
        first = (CoreEntry(1, 1, "config", [0, 1, 2]), CoreEntry(1, 2, "command", "put a"))
        await log.save_record(CorePersist(1, 0, None, first), **codecs)
        await log.save_record(
            CorePersist(
                2, None, 2, (CoreEntry(2, 2, "noop"),), CoreSnapshot(1, 1, (0, 1, 2), b"s")
            ),
            **codecs,
        )
    async with open_raft_log(tmp_path) as log:
        state = log.load()
    assert state.hard_state == HardState(2, None)
    assert state.snapshot == Snapshot(1, 1, msgspec.msgpack.encode(((0, 1, 2), b"s")))
    assert state.entries == (LogEntry(2, 2, msgspec.msgpack.encode(("noop", None))),)
