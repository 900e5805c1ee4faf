"""Crash safety of runtime.storage: a fake disk crashes at every filesystem call and
loses (or tears) whatever was not synced; nothing acknowledged may be lost and nothing
half-written may be read."""

from __future__ import annotations

import itertools
import os
import random
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import attrs
import pytest

from trio_foundation.runtime.storage import (
    CorruptStateError,
    DurableState,
    LoggedState,
    OsFileOps,
    RecordLog,
    StateStore,
    TokenBlocks,
    open_data_dir,
)

# ----------------------------------------------------------------- a disk that crashes


class Crash(Exception):
    """The simulated machine lost power."""


@attrs.define(eq=False)
class Inode:
    durable: bytes = b""  # what survives a crash
    current: bytes = b""  # what reads see now


class CrashFS:
    """A directory on a disk with a volatile cache.

    Names and contents are durable only once synced (``sync_dir`` / ``sync``).
    The ``crash_at``-th mutating call crashes (a write may land partly first);
    :meth:`crash` then builds what a reboot finds: the durable names, each file
    with its synced bytes plus possibly a prefix of its unsynced appends and
    some garbage (a torn write).
    """

    def __init__(self, rng: random.Random, crash_at: int | None = None) -> None:
        self.rng = rng
        self.crash_at = crash_at
        self.calls = 0
        self.names: dict[str, Inode] = {}
        self.durable_names: dict[str, Inode] = {}
        self.handles: dict[int, Inode] = {}
        self.syncs_skipped = False  # a broken disk (mutant): sync() does nothing

    def _tick(self) -> bool:
        crashing = self.crash_at is not None and self.calls == self.crash_at
        self.calls += 1
        return crashing

    def read(self, path: str) -> bytes | None:
        inode = self.names.get(path)
        return None if inode is None else inode.current

    def open(self, path: str, *, truncate: bool) -> int:
        if self._tick():
            raise Crash
        inode = self.names.get(path)
        if inode is None:
            inode = self.names[path] = Inode()
        if truncate:
            inode.current = b""
        handle = len(self.handles) + 1000
        self.handles[handle] = inode
        return handle

    def write(self, handle: int, data: bytes) -> None:
        inode = self.handles[handle]
        if self._tick():
            inode.current += data[: self.rng.randint(0, len(data))]
            raise Crash
        inode.current += data

    def truncate(self, handle: int, size: int) -> None:
        if self._tick():
            raise Crash
        inode = self.handles[handle]
        inode.current = inode.current[:size]

    def sync(self, handle: int) -> None:
        if self._tick():
            raise Crash
        if not self.syncs_skipped:
            inode = self.handles[handle]
            inode.durable = inode.current

    def close(self, handle: int) -> None:
        del self.handles[handle]

    def rename(self, src: str, dst: str) -> None:
        if self._tick():
            raise Crash
        self.names[dst] = self.names.pop(src)

    def sync_dir(self, path: str) -> None:
        if self._tick():
            raise Crash
        self.durable_names = dict(self.names)

    def remove(self, path: str) -> None:
        if self._tick():
            raise Crash
        self.names.pop(path, None)

    def crash(self) -> None:
        """Reboot: keep durable names, synced bytes, and maybe a torn unsynced tail."""
        rng = self.rng
        for inode in set(self.names.values()) | set(self.durable_names.values()):
            durable, current = inode.durable, inode.current
            if current.startswith(durable) and current != durable:
                tail = current[len(durable) :]
                kept = durable + tail[: rng.randint(0, len(tail))]
                if rng.random() < 0.3:
                    kept += rng.randbytes(rng.randint(1, 12))
            else:  # truncated since the last sync: either state may be found
                kept = rng.choice([durable, current])
            inode.durable = inode.current = kept
        self.names = dict(self.durable_names)
        self.handles.clear()
        self.crash_at = None


PATH = "data/state"


def count_calls(run: Callable[[CrashFS], object]) -> int:
    fs = CrashFS(random.Random(0))
    run(fs)
    return fs.calls


# ----------------------------------------------------------------- one value


VALUES = [b"", b"one", b"two" * 50, b"\x00" * 7, b"last value"]


def save_all(make: Callable[[CrashFS], StateStore], fs: CrashFS, acked: list[bytes]) -> None:
    store = make(fs)
    for v in VALUES:
        store.save(v)
        acked.append(v)


STORES: dict[str, Callable[[CrashFS], StateStore]] = {
    "durable-state": lambda fs: DurableState(PATH, ops=fs),
    "logged-state": lambda fs: LoggedState(PATH, ops=fs),
    "logged-state-compacting": lambda fs: LoggedState(PATH, ops=fs, compact_after=2),
}


def crash_everywhere(make: Callable[[CrashFS], StateStore], rng: random.Random) -> list[str]:
    """Crash at every call of a run of saves, 4 torn-tail draws each; return violations."""
    total = count_calls(lambda fs: save_all(make, fs, []))
    assert total > 10
    violations = []
    for k in range(total + 1):
        for _ in range(4):
            fs = CrashFS(random.Random(rng.getrandbits(64)), crash_at=k)
            acked: list[bytes] = []
            try:
                save_all(make, fs, acked)
            except Crash:
                pass
            fs.crash()
            last = acked[-1] if acked else None
            in_flight = VALUES[len(acked)] if len(acked) < len(VALUES) else None
            try:
                got = make(fs).load()
            except CorruptStateError as exc:
                violations.append(f"crash at call {k}: {exc}")
                continue
            if got != last and not (in_flight is not None and got == in_flight):
                violations.append(f"crash at call {k}: read {got!r}, acknowledged {last!r}")
                continue
            # the store works after recovery
            store = make(fs)
            store.save(b"after")
            if make(fs).load() != b"after":
                violations.append(f"crash at call {k}: a save after recovery was lost")
    return violations


@pytest.mark.parametrize("name", list(STORES))
def test_a_crash_at_any_call_keeps_the_acknowledged_value(name: str) -> None:
    assert crash_everywhere(STORES[name], random.Random()) == []


def skips_fsync(fs: CrashFS) -> StateStore:
    """Mutant: a disk whose ``sync()`` does nothing, under the real store."""
    fs.syncs_skipped = True
    return DurableState(PATH, ops=fs)


def test_the_crash_test_catches_a_disk_that_skips_fsync() -> None:
    """Mutant: if the file's bytes were not made durable before the rename, a crash
    after the rename exposes an empty or torn file: the search above must notice
    (catch rate: ``python benchmarks/catch_rates_audit.py small``)."""
    assert crash_everywhere(skips_fsync, random.Random()) != []


# ----------------------------------------------------------------- the record log


RECORDS = [b"r%d" % i * (i + 1) for i in range(6)]


def test_a_crash_at_any_call_keeps_exactly_the_acknowledged_records() -> None:
    def run(fs: CrashFS, acked: list[bytes]) -> None:
        with RecordLog(PATH, ops=fs) as log:
            for r in RECORDS:
                log.append(r)
                acked.append(r)

    total = count_calls(lambda fs: run(fs, []))
    rng = random.Random()
    repaired = 0
    for k in range(total + 1):
        for _ in range(4):
            fs = CrashFS(random.Random(rng.getrandbits(64)), crash_at=k)
            acked: list[bytes] = []
            try:
                run(fs, acked)
            except Crash:
                pass
            fs.crash()
            with RecordLog(PATH, ops=fs) as log:
                repaired += log.repaired_bytes > 0
                n = len(acked)
                assert log.records in (acked, RECORDS[: n + 1]), f"crash at call {k}"
                kept = list(log.records)
                log.append(b"next")
            with RecordLog(PATH, ops=fs) as log:
                assert log.records == [*kept, b"next"]
                assert log.repaired_bytes == 0
    assert repaired > 0  # torn tails did happen and were cut


# ----------------------------------------------------------------- tokens


class LyingStore:
    """Mutant: acknowledges a save without persisting it."""

    def __init__(self) -> None:
        self.data: bytes | None = None

    def load(self) -> bytes | None:
        return self.data

    def save(self, data: bytes) -> None:
        pass


def issue_across_crashes(
    make: Callable[[CrashFS], StateStore], rng: random.Random, *, block: int
) -> list[int]:
    """Several process lifetimes on one disk, each crashing at a random call."""
    fs = CrashFS(random.Random(rng.getrandbits(64)))
    issued: list[int] = []
    for _ in range(6):
        fs.crash_at = fs.calls + rng.randint(0, 12)
        try:
            tokens = TokenBlocks(make(fs), block=block)
            for _ in range(rng.randint(0, 3 * block)):
                issued.append(tokens.next_token())
        except Crash:
            pass
        fs.crash()
    return issued


@pytest.mark.parametrize("name", list(STORES))
def test_tokens_strictly_increase_across_crashes(name: str) -> None:
    rng = random.Random()
    total = 0
    for _ in range(150):
        issued = issue_across_crashes(STORES[name], rng, block=rng.choice([1, 2, 5]))
        assert all(a < b for a, b in itertools.pairwise(issued)), issued
        total += len(issued)
    assert total > 500


def lying_store_caught(rng: random.Random) -> bool:
    """One search, what CI runs: up to 20 crash sequences of a store that does not
    persist, until one reissues a token."""
    store = LyingStore()
    for _ in range(20):
        issued = issue_across_crashes(lambda fs: store, rng, block=2)
        if any(a >= b for a, b in itertools.pairwise(issued)):
            return True
    return False


def test_the_token_test_catches_a_store_that_does_not_persist() -> None:
    assert lying_store_caught(random.Random())


def test_token_blocks_persist_once_per_block(tmp_path: Path) -> None:
    state = DurableState(tmp_path / "tokens")
    tokens = TokenBlocks(state, block=100)
    assert [tokens.next_token() for _ in range(250)] == list(range(1, 251))
    assert (tokens.reservations, state.saves, tokens.high_water) == (3, 3, 300)
    restarted = TokenBlocks(DurableState(tmp_path / "tokens"), block=100)
    assert restarted.next_token() == 301
    with pytest.raises(ValueError, match="block must be an int >= 1, got 0"):
        TokenBlocks(state, block=0)


# ----------------------------------------------------------------- the real disk


def test_durable_state_on_disk_reports_corruption(tmp_path: Path) -> None:
    path = tmp_path / "state"
    s = DurableState(path)
    assert s.load() is None
    s.save(b"hello")
    assert DurableState(path).load() == b"hello"
    assert os.stat(path).st_mode & 0o777 == 0o600
    raw = bytearray(path.read_bytes())
    raw[-6] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(CorruptStateError, match="checksum mismatch"):
        s.load()
    path.write_bytes(b"TFDS\x00\x09" + bytes(10))
    with pytest.raises(CorruptStateError, match="format version 9, this library reads 1"):
        s.load()
    path.write_bytes(b"{}")
    with pytest.raises(CorruptStateError, match="shorter than a header"):
        s.load()
    with pytest.raises(TypeError, match="durable data must be bytes, got str"):
        s.save("text")  # type: ignore[arg-type]


def test_record_log_on_disk_cuts_a_torn_tail(tmp_path: Path) -> None:
    path = tmp_path / "log"
    with RecordLog(path) as log:
        for r in RECORDS:
            log.append(r)
        size = log.size
    with open(path, "ab") as f:
        f.write(b"\x00\x00\x00\x09\x12\x34")  # a torn record header
    with RecordLog(path) as log:
        assert log.records == RECORDS
        assert log.repaired_bytes == 6 and log.size == size == path.stat().st_size
        log.rewrite([b"only"])
    with RecordLog(path) as log:
        assert log.records == [b"only"]
    path.write_bytes(b"NOPE" + bytes(20))
    with pytest.raises(CorruptStateError, match="not a record log"):
        RecordLog(path)
    log.close()
    with pytest.raises(RuntimeError, match="is closed"):
        log.append(b"x")


def test_logged_state_compacts(tmp_path: Path) -> None:
    path = tmp_path / "log"
    state = LoggedState(path, compact_after=3)
    for i in range(10):
        state.save(b"%d" % i)
    state.close()
    with RecordLog(path) as log:
        assert log.records[-1] == b"9" and len(log.records) <= 3
    assert isinstance(OsFileOps(), OsFileOps)


_WORKER = textwrap.dedent(
    """
    import sys
    from trio_foundation.runtime.storage import {store}, TokenBlocks
    tokens = TokenBlocks({store}(sys.argv[1]), block=int(sys.argv[2]))
    while True:
        print(tokens.next_token(), flush=True)
    """
)


@pytest.mark.parametrize("store", ["DurableState", "LoggedState"])
def test_kill_9_never_reissues_a_token(tmp_path: Path, store: str) -> None:
    """Real processes: a token printer SIGKILLed at random moments and restarted."""
    rng = random.Random()
    issued: list[int] = []
    for _ in range(5):
        proc = subprocess.Popen(
            [sys.executable, "-c", _WORKER.format(store=store), str(tmp_path / "t"), "7"],
            stdout=subprocess.PIPE,
        )
        assert proc.stdout is not None
        try:
            for _ in range(rng.randint(1, 60)):
                issued.append(int(proc.stdout.readline()))
        finally:
            proc.send_signal(signal.SIGKILL)
            rest = proc.communicate(timeout=10)[0]
        issued.extend(int(line) for line in rest.split())  # printed before the kill
    assert all(a < b for a, b in itertools.pairwise(issued))
    assert len(issued) >= 5


def test_a_data_dir_is_created_durably_and_carries_its_kind_and_format(tmp_path: Path) -> None:
    d = tmp_path / "a" / "data"
    assert open_data_dir(d, kind="lease-lock-server") == str(d)
    assert os.stat(d).st_mode & 0o777 == 0o700
    assert (d / "FORMAT").exists()
    DurableState(d / "tokens").save(b"x")
    assert open_data_dir(d, kind="lease-lock-server") == str(d)  # reopened as is
    with pytest.raises(CorruptStateError, match="expected kind 'raft-node' format 1"):
        open_data_dir(d, kind="raft-node")
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(CorruptStateError, match=r"not empty \(notes.txt\) and has no FORMAT"):
        open_data_dir(other, kind="lease-lock-server")
    with pytest.raises(ValueError, match="kind must be a non-empty single line"):
        open_data_dir(other, kind="")


def test_creating_a_data_dir_syncs_its_parent(tmp_path: Path) -> None:
    synced: list[str] = []

    class Recording:
        def __getattr__(self, name: str) -> object:
            return getattr(OsFileOps(), name)

        def sync_dir(self, path: str) -> None:
            synced.append(path)
            OsFileOps().sync_dir(path)

    open_data_dir(tmp_path / "new", kind="k", ops=Recording())  # type: ignore[arg-type]
    assert synced[0] == str(tmp_path)  # the new directory's entry first
    assert str(tmp_path / "new") in synced  # then the FORMAT file's
