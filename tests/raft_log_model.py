"""A reference model of RaftLog's save semantics, a generator of valid save scripts, and
a crash harness on the simulated disk. Shared by tests/test_raft_log.py and
property_tests/test_raft_log.py."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import attrs
import trio

from trio_foundation.runtime.raft_log import (
    HardState,
    LogEntry,
    RaftLog,
    RaftLogFailedError,
    RaftState,
    Snapshot,
)
from trio_foundation.runtime.simdisk import SimulatedCrash
from trio_foundation.runtime.storage import CorruptStateError

DIR = "data"


@attrs.frozen
class Save:
    hard_state: HardState | None = None
    truncate_from: int | None = None
    entries: tuple[LogEntry, ...] = ()
    snapshot: Snapshot | None = None

    def kwargs(self) -> dict[str, Any]:
        return {
            "hard_state": self.hard_state,
            "truncate_from": self.truncate_from,
            "entries": self.entries,
            "snapshot": self.snapshot,
        }


EMPTY = RaftState(HardState(), None, ())


def model_apply(state: RaftState, save: Save) -> RaftState:
    """What a save means, written independently of the implementation."""
    hs = save.hard_state or state.hard_state
    snap, entries = state.snapshot, list(state.entries)
    if save.snapshot is not None:
        s = save.snapshot
        terms = {e.index: e.term for e in entries}
        if snap is not None:
            terms[snap.index] = snap.term
        entries = [e for e in entries if e.index > s.index] if terms.get(s.index) == s.term else []
        snap = s
    if save.truncate_from is not None:
        entries = [e for e in entries if e.index < save.truncate_from]
    entries.extend(save.entries)
    return RaftState(hs, snap, tuple(entries))


def crash_states(state: RaftState, save: Save) -> list[RaftState]:
    """States a crash during ``save`` may leave (before it returned), beyond ``state``."""
    out = [model_apply(state, save)]
    if save.snapshot is not None:
        out.append(model_apply(state, Save(hard_state=save.hard_state)))
        out.append(model_apply(state, Save(hard_state=save.hard_state, snapshot=save.snapshot)))
    return out


KINDS = (
    "elect",
    "elect",
    "vote",
    "append",
    "append",
    "append",
    "conflict",
    "compact",
    "install",
    "install",
)


def random_script(rng: random.Random, n: int, *, max_data: int = 400) -> list[Save]:
    """``n`` valid saves: elections, votes, appends, conflicts, compactions, installs."""
    state = EMPTY
    saves: list[Save] = []

    def last() -> int:
        return state.last_index

    def term_at(i: int) -> int | None:
        for e in state.entries:
            if e.index == i:
                return e.term
        if state.snapshot is not None and state.snapshot.index == i:
            return state.snapshot.term
        return None

    def data() -> bytes:
        return rng.randbytes(rng.choice([0, 3, 20, max_data]))

    while len(saves) < n:
        hs = state.hard_state
        snap_index = state.snapshot.index if state.snapshot else 0
        snap_term = state.snapshot.term if state.snapshot else 0
        kind = rng.choice(KINDS)
        save: Save | None = None
        if kind == "elect" or hs.term == 0:
            vote = rng.choice([None, 0, 1, 2])
            new = HardState(hs.term + 1, vote)
            extra = ()
            if rng.random() < 0.3:  # a leader's first entry rides with its term
                extra = (LogEntry(last() + 1, new.term, data()),)
            save = Save(hard_state=new, entries=extra)
        elif kind == "vote" and hs.voted_for is None:
            save = Save(hard_state=HardState(hs.term, rng.randrange(3)))
        elif kind == "append":
            k = rng.randint(1, 4)
            save = Save(entries=tuple(LogEntry(last() + 1 + i, hs.term, data()) for i in range(k)))
        elif kind == "conflict" and last() > snap_index:
            t = rng.randint(snap_index + 1, last() + 1)
            k = rng.randint(0, 3)
            save = Save(
                truncate_from=t, entries=tuple(LogEntry(t + i, hs.term, data()) for i in range(k))
            )
        elif kind == "compact" and last() > snap_index:
            i = rng.randint(snap_index + 1, last())
            term = term_at(i)
            assert term is not None
            save = Save(snapshot=Snapshot(i, term, rng.randbytes(rng.randint(0, 600))))
        elif kind == "install":
            stale = [e.index for e in state.entries if e.term < hs.term and e.index < last()]
            if stale and rng.random() < 0.6:  # conflicts with a log that reaches past it
                i = rng.choice(stale)
            elif last() > snap_index and rng.random() < 0.7:
                i = rng.randint(snap_index + 1, last())  # over the log
            else:
                i = rng.randint(last() + 1, last() + 5)  # beyond it
            have = term_at(i)
            term = have if have is not None and rng.random() < 0.4 else hs.term
            term = max(term, snap_term)
            save = Save(snapshot=Snapshot(i, term, rng.randbytes(rng.randint(0, 300))))
            if rng.random() < 0.5:
                entry = LogEntry(i + 1, hs.term, data())
                save = attrs.evolve(save, truncate_from=i + 1, entries=(entry,))
        if save is None:
            continue
        state = model_apply(state, save)
        saves.append(save)
    return saves


def with_conflicting_installs(saves: list[Save]) -> list[Save]:
    """``saves`` followed by two snapshots installed over logs that conflict with them
    and reach past them (once with the leader's next entry in the same save)."""
    out = list(saves)
    for with_entry in (True, False):
        state = model_states(out)[-1]
        term = max(state.hard_state.term, 1)
        last = state.last_index
        out.append(
            Save(hard_state=HardState(term, None) if term != state.hard_state.term else None)
        )
        out.append(Save(entries=tuple(LogEntry(last + 1 + i, term, b"old") for i in range(4))))
        out.append(Save(hard_state=HardState(term + 1, 2)))
        snap = Snapshot(last + 2, term + 1, b"installed")
        if with_entry:
            out.append(
                Save(
                    snapshot=snap,
                    truncate_from=last + 3,
                    entries=(LogEntry(last + 3, term + 1, b"new"),),
                )
            )
        else:
            out.append(Save(snapshot=snap))
    return [s for s in out if s != Save()]


def conflicting_installs(saves: list[Save]) -> int:
    """Saves installing a snapshot that conflicts with a log reaching past it."""
    n = 0
    for state, save in zip(model_states(saves), saves, strict=False):
        s = save.snapshot
        if s is not None and any(e.index == s.index and e.term != s.term for e in state.entries):
            n += any(e.index > s.index for e in state.entries)
    return n


def model_states(saves: list[Save]) -> list[RaftState]:
    """The state after each prefix of ``saves`` (``[EMPTY, after 1, ...]``)."""
    states = [EMPTY]
    for s in saves:
        states.append(model_apply(states[-1], s))
    return states


def same(a: RaftState, b: RaftState) -> bool:
    return a == b


def run_writer(
    disk: Any,
    saves: list[Save],
    *,
    concurrency: int = 1,
    segment_bytes: int = 4096,
    seed: int = 0,
    log_factory: Callable[..., RaftLog] = RaftLog,
    io: str = "thread",
) -> set[int]:
    """Open the log on ``disk`` and make ``saves`` (from ``concurrency`` tasks, in
    script order); stop at a crash. Returns the positions of the saves that returned."""
    acked: set[int] = set()

    async def main() -> None:
        log = log_factory(
            DIR, ops=disk, segment_bytes=segment_bytes, salts=random.Random(seed), io=io
        )
        log.load()
        script = iter(enumerate(saves))

        async def worker() -> None:
            for pos, save in script:
                await log.save(**save.kwargs())
                acked.add(pos)

        async with trio.open_nursery() as nursery:
            for _ in range(concurrency):
                nursery.start_soon(worker)
        await log.aclose()

    try:
        trio.run(main)
    except (SimulatedCrash, RaftLogFailedError):
        pass
    except BaseExceptionGroup as group:
        rest = group.split((SimulatedCrash, RaftLogFailedError))[1]
        if rest is not None:
            raise
    return acked


def check_recovery(
    disk: Any,
    saves: list[Save],
    acked: set[int],
    *,
    seen: dict[str, int] | None = None,
    **kw: Any,
) -> str | None:
    """Reboot ``disk``; a violation description, or ``None`` if recovery is right.

    Right means: the log opens; the recovered state is the state after some
    prefix of the saves (or a documented partial state of the next one) that
    includes every acknowledged save; and the log works afterwards.
    """
    disk.reboot()
    states = model_states(saves)
    floor = max(acked) + 1 if acked else 0
    allowed = list(states[floor:])
    for j in range(floor, len(saves)):
        allowed.extend(crash_states(states[j], saves[j]))
    seg = kw.get("segment_bytes", 4096)
    try:
        log = RaftLog(DIR, ops=disk, segment_bytes=seg)
    except CorruptStateError as exc:
        return f"recovery failed: {exc}"
    got = log.load()
    if seen is not None:
        seen["torn tail cut"] = seen.get("torn tail cut", 0) + (log.statistics().repaired_bytes > 0)
        seen["partial save"] = seen.get("partial save", 0) + (got not in states)
        seen["acknowledged"] = seen.get("acknowledged", 0) + len(acked)
    if got not in allowed:
        return (
            f"recovered last index {got.last_index}, hard state {got.hard_state},"
            f" snapshot {got.snapshot and (got.snapshot.index, got.snapshot.term)};"
            f" acknowledged {len(acked)} of {len(saves)}"
        )
    # the log works after recovery: one more save survives a clean reopen
    more = Save(
        hard_state=HardState(got.hard_state.term + 1, None),
        entries=(LogEntry(got.last_index + 1, got.hard_state.term + 1, b"after"),),
    )

    async def append() -> None:
        await log.save(**more.kwargs())
        await log.aclose()

    trio.run(append)
    try:
        again = RaftLog(DIR, ops=disk, segment_bytes=seg).load()
    except CorruptStateError as exc:
        return f"reopening after a save that followed recovery failed: {exc}"
    if again != model_apply(got, more):
        return "a save after recovery did not survive a reopen"
    return None
