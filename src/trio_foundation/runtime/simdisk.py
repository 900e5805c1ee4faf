"""A simulated disk for crash tests: a :class:`~trio_foundation.runtime.storage.FileOps`
that can crash at any call and, on reboot, keeps only what a real disk must keep.

What a crash keeps (the POSIX durability contract, adversarially):

* a file's bytes are durable once :meth:`SimDisk.sync` on it returned; of the
  bytes appended since, a reboot may keep none, a prefix cut at any byte, a prefix
  followed by garbage, or a prefix in which some chunks were written and earlier
  ones were not (the page cache writes unsynced pages back in any order; a lost
  chunk reads as zeros or garbage);
* a truncation that was not synced may or may not have happened;
* directory operations (create, rename, remove) are durable once
  :meth:`SimDisk.sync_dir` returned; of those since, a reboot keeps a prefix, in
  order (a journaling filesystem's metadata log).

The ``crash_at``-th mutating call raises :class:`SimulatedCrash` (a write lands
partly first); :meth:`SimDisk.reboot` then builds what the disk holds after the
power comes back. Deterministic for a given ``random.Random``. For tests and the
simulator only; it holds everything in memory.
"""

from __future__ import annotations

import itertools
import random
from typing import Literal, final

import attrs

__all__ = ["SimDisk", "SimulatedCrash"]


class SimulatedCrash(Exception):
    """The simulated machine lost power during a filesystem call."""


@attrs.define(eq=False)
class _Inode:
    durable: bytes = b""  # what survives a crash for sure
    current: bytes = b""  # what reads see now


@final
class SimDisk:
    """An in-memory filesystem that crashes on demand (see the module docstring).

    Args:
        rng: the source of every random choice (cut points, garbage, reorderings).
        crash_at: the number of the mutating call that crashes (0 is the first), or
            ``None`` for no crash.

    Attributes:
        calls: mutating calls made so far (``open``, ``write``, ``truncate``,
            ``sync``, ``rename``, ``sync_dir``, ``remove``).
        lie_about_sync: a broken disk (for mutants): ``sync`` returns without
            making anything durable.
    """

    def __init__(self, rng: random.Random, crash_at: int | None = None) -> None:
        self.rng = rng
        self.crash_at = crash_at
        self.calls = 0
        self.lie_about_sync = False
        self._names: dict[str, _Inode] = {}
        self._durable_names: dict[str, _Inode] = {}
        self._meta: list[tuple[Literal["link", "unlink"], str, _Inode | None]] = []
        self._handles: dict[int, _Inode] = {}
        self._next_handle = itertools.count(1000)

    def _tick(self) -> bool:
        crashing = self.crash_at is not None and self.calls == self.crash_at
        self.calls += 1
        return crashing

    # ----------------------------------------------------------------- FileOps

    def read(self, path: str) -> bytes | None:
        """The file's current bytes, or ``None``."""
        inode = self._names.get(path)
        return None if inode is None else inode.current

    def listdir(self, path: str) -> list[str]:
        """The names directly in directory ``path``, sorted."""
        prefix = path.rstrip("/") + "/"
        return sorted(
            n[len(prefix) :]
            for n in self._names
            if n.startswith(prefix) and "/" not in n[len(prefix) :]
        )

    def open(self, path: str, *, truncate: bool) -> int:
        """Open for appending; creating a file is a directory operation."""
        if self._tick():
            raise SimulatedCrash(f"open {path}")
        inode = self._names.get(path)
        if inode is None:
            inode = self._names[path] = _Inode()
            self._meta.append(("link", path, inode))
        if truncate:
            inode.current = b""
        handle = next(self._next_handle)
        self._handles[handle] = inode
        return handle

    def write(self, handle: int, data: bytes) -> None:
        """Append ``data``; a crash here lands a random prefix of it first."""
        inode = self._handles[handle]
        if self._tick():
            inode.current += data[: self.rng.randint(0, len(data))]
            raise SimulatedCrash("write")
        inode.current += data

    def truncate(self, handle: int, size: int) -> None:
        """Cut the file to ``size`` bytes."""
        if self._tick():
            raise SimulatedCrash("truncate")
        inode = self._handles[handle]
        inode.current = inode.current[:size]

    def sync(self, handle: int) -> None:
        """Make the file's bytes durable (unless :attr:`lie_about_sync`)."""
        if self._tick():
            raise SimulatedCrash("sync")
        if not self.lie_about_sync:
            inode = self._handles[handle]
            inode.durable = inode.current

    def close(self, handle: int) -> None:
        """Forget the handle."""
        self._handles.pop(handle, None)

    def rename(self, src: str, dst: str) -> None:
        """Replace ``dst`` with ``src`` (a directory operation)."""
        if self._tick():
            raise SimulatedCrash(f"rename {src}")
        inode = self._names.pop(src)
        self._names[dst] = inode
        self._meta.append(("unlink", src, None))
        self._meta.append(("link", dst, inode))

    def sync_dir(self, path: str) -> None:
        """Make every directory operation so far durable."""
        if self._tick():
            raise SimulatedCrash(f"sync_dir {path}")
        if not self.lie_about_sync:
            self._durable_names = dict(self._names)
            self._meta.clear()

    def remove(self, path: str) -> None:
        """Delete ``path`` if it exists (a directory operation)."""
        if self._tick():
            raise SimulatedCrash(f"remove {path}")
        if self._names.pop(path, None) is not None:
            self._meta.append(("unlink", path, None))

    # ----------------------------------------------------------------- crashing

    def _survivor(self, inode: _Inode) -> bytes:
        rng = self.rng
        durable, current = inode.durable, inode.current
        if current == durable:
            return durable
        if not current.startswith(durable):  # truncated since the last sync
            return rng.choice([durable, current])
        tail = current[len(durable) :]
        mode = rng.choice(["lose", "cut", "garbage", "reorder", "all"])
        if mode == "lose":
            return durable
        if mode == "all":
            return current
        kept = bytearray(tail[: rng.randint(0, len(tail))])
        if mode == "garbage":
            kept += rng.randbytes(rng.randint(1, 16))
        elif mode == "reorder" and kept:
            # some chunks of the kept region never reached the platter
            for _ in range(rng.randint(1, 3)):
                start = rng.randrange(len(kept))
                size = rng.randint(1, 32)
                hole = bytes(size) if rng.random() < 0.5 else rng.randbytes(size)
                kept[start : start + size] = hole[: len(kept) - start]
        return durable + bytes(kept)

    def reboot(self) -> None:
        """Crash now and come back: what a reader finds is what the disk kept.

        Every handle is closed; names are the durable ones plus a prefix of the
        directory operations since the last :meth:`sync_dir`; each file keeps
        its synced bytes and maybe part of its unsynced ones (module docstring).
        """
        names = dict(self._durable_names)
        for kind, path, inode in self._meta[: self.rng.randint(0, len(self._meta))]:
            if kind == "link":
                assert inode is not None
                names[path] = inode
            else:
                names.pop(path, None)
        survivors = {id(i): i for i in [*names.values(), *self._names.values()]}
        for inode in survivors.values():
            inode.durable = inode.current = self._survivor(inode)
        self._names = names
        self._durable_names = dict(names)
        self._meta.clear()
        self._handles.clear()
        self.crash_at = None

    def snapshot_files(self) -> dict[str, bytes]:
        """Every file's current bytes, by path (for reports)."""
        return {p: i.current for p, i in sorted(self._names.items())}
