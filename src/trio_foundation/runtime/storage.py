"""Crash-safe durable state for one node: atomic state files, an append-only record
log, and fencing-token block reservation.

Theory of operation
-------------------

Two ways to make a value survive ``kill -9`` or a power cut, both behind the
:class:`StateStore` interface (``load`` / ``save`` of bytes):

* :class:`DurableState` replaces a whole file atomically: write the new
  contents to ``<name>.tmp``, ``fsync`` it, ``rename`` it over ``<name>``, ``fsync``
  the directory. Until the rename is durable a crash leaves the old file, after
  it the new one, and the new one's bytes were durable before its name was:
  a reader sees the old value or the new value, never a mixture. The file
  carries a magic number, a format version, the payload's length and a
  CRC-32, so a file that is not ours, from a newer version, or damaged is
  reported (:class:`CorruptStateError`), never silently read as empty.
* :class:`RecordLog` appends records (``length | crc32 | payload``) and
  ``fdatasync``\\ s each one before :meth:`RecordLog.append` returns. A crash
  during an append can leave a *torn tail* — a partial or garbled last
  record — and only there, because everything before it was synced. Opening
  the log scans from the start, keeps the longest prefix of valid records and
  truncates the rest (and syncs the truncation), so the torn record is never
  read and the next append starts on a clean boundary. :class:`LoggedState` is
  a :class:`StateStore` on a log (the last record wins; compacted through a
  :class:`DurableState`-style rewrite when it grows past a bound).

:class:`TokenBlocks` hands out strictly increasing fencing tokens while
persisting only once per ``block`` tokens: before it returns a token above the
persisted *high-water mark* it persists a new mark ``block - 1`` above it; on
restart it starts above the persisted mark. Every token ever returned is at
most the mark durable at that moment, so no token is ever issued twice, across
any number of crashes; a crash wastes at most ``block`` tokens.

Every filesystem call goes through a :class:`FileOps` object, so tests can
substitute a fake disk that crashes at any call and loses what was not synced
(``tests/test_storage.py``). All calls here are *blocking* (an fsync takes
about a millisecond); from Trio, call them directly where that latency is
acceptable or through ``trio.to_thread.run_sync`` (which, by default, lets the
write finish even if the caller is cancelled).
"""

from __future__ import annotations

import errno
import os
import struct
import zlib
from typing import Final, Protocol, final

from .._errors import FoundationError

__all__ = [
    "FORMAT_VERSION",
    "CorruptStateError",
    "DataDirLock",
    "DataDirLockedError",
    "DurableState",
    "FileOps",
    "LoggedState",
    "OsFileOps",
    "RecordLog",
    "StateStore",
    "TokenBlocks",
    "check_data_dir_format",
    "lock_data_dir",
    "open_data_dir",
    "open_locked_data_dir",
]

_STATE_MAGIC: Final = b"TFDS"
_LOG_MAGIC: Final = b"TFLG"
FORMAT_VERSION: Final = 1
"""The on-disk format version of every file written here (and of a data dir)."""
_STATE_HEADER: Final = struct.Struct(">4sHHI")  # magic, version, flags, payload length
_LOG_HEADER: Final = struct.Struct(">4sHH")  # magic, version, flags
_RECORD: Final = struct.Struct(">II")  # payload length, crc32(length bytes + payload)
_CRC: Final = struct.Struct(">I")
_U64: Final = struct.Struct(">Q")
MAX_RECORD: Final = 1 << 24
"""The largest payload a state file or log record may hold, in bytes (16 MiB)."""


class CorruptStateError(FoundationError):
    """A durable file exists but cannot be trusted (not ours, newer format, or damaged).

    Never raised for a torn log tail (that is repaired); raised where reading
    on would risk acting on wrong state, e.g. reissuing fencing tokens.

    Attributes:
        path: the file.
        problem: what is wrong with it.
    """

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


class FileOps(Protocol):
    """The filesystem calls storage makes; :class:`OsFileOps` is the real one.

    Durability contract (what a crash keeps): bytes written to a handle survive
    only once :meth:`sync` on it returned; a :meth:`rename` or a newly created
    name survives only once :meth:`sync_dir` on its directory returned.
    """

    def read(self, path: str) -> bytes | None:
        """The whole file, or ``None`` if it does not exist."""
        ...

    def open(self, path: str, *, truncate: bool) -> int:
        """Open ``path`` for appending (created if missing, emptied if ``truncate``)."""
        ...

    def write(self, handle: int, data: bytes) -> None:
        """Append ``data`` (all of it)."""
        ...

    def truncate(self, handle: int, size: int) -> None:
        """Cut the file to ``size`` bytes."""
        ...

    def sync(self, handle: int) -> None:
        """Make the file's data durable (``fdatasync``)."""
        ...

    def close(self, handle: int) -> None:
        """Close the handle."""
        ...

    def rename(self, src: str, dst: str) -> None:
        """Atomically replace ``dst`` with ``src``."""
        ...

    def sync_dir(self, path: str) -> None:
        """Make the directory's entries durable (``fsync`` of the directory)."""
        ...

    def remove(self, path: str) -> None:
        """Delete ``path`` if it exists."""
        ...


@final
class OsFileOps:
    """:class:`FileOps` on the real filesystem (POSIX)."""

    def read(self, path: str) -> bytes | None:
        """The whole file, or ``None`` if it does not exist."""
        try:
            with open(path, "rb") as f:
                return f.read()
        except FileNotFoundError:
            return None

    def open(self, path: str, *, truncate: bool) -> int:
        """``os.open`` for appending, mode 0600."""
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | (os.O_TRUNC if truncate else 0)
        return os.open(path, flags, 0o600)

    def write(self, handle: int, data: bytes) -> None:
        """``os.write`` until all of ``data`` is written."""
        view = memoryview(data)
        while view:
            view = view[os.write(handle, view) :]

    def truncate(self, handle: int, size: int) -> None:
        """``os.ftruncate``."""
        os.ftruncate(handle, size)

    def sync(self, handle: int) -> None:
        """``os.fdatasync`` (``os.fsync`` where there is none)."""
        getattr(os, "fdatasync", os.fsync)(handle)

    def close(self, handle: int) -> None:
        """``os.close``."""
        os.close(handle)

    def rename(self, src: str, dst: str) -> None:
        """``os.replace``."""
        os.replace(src, dst)

    def sync_dir(self, path: str) -> None:
        """``fsync`` of the directory."""
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def remove(self, path: str) -> None:
        """``os.unlink``, ignoring a missing file."""
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass

    def listdir(self, path: str) -> list[str]:
        """The names in directory ``path`` (``os.listdir``), sorted."""
        return sorted(os.listdir(path))


class StateStore(Protocol):
    """One durable value (bytes): the last :meth:`save` that returned survives a crash."""

    def load(self) -> bytes | None:
        """The last saved value, or ``None`` if nothing was ever saved."""
        ...

    def save(self, data: bytes) -> None:
        """Replace the value durably: when this returns, a crash keeps ``data``."""
        ...


def _check_payload(data: object) -> bytes:
    if not isinstance(data, bytes):
        raise TypeError(f"durable data must be bytes, got {type(data).__name__}")
    if len(data) > MAX_RECORD:
        raise ValueError(f"durable data of {len(data)} bytes is above the limit of {MAX_RECORD}")
    return data


def _replace_atomically(ops: FileOps, path: str, blob: bytes) -> None:
    tmp = path + ".tmp"
    handle = ops.open(tmp, truncate=True)
    try:
        ops.write(handle, blob)
        ops.sync(handle)
    finally:
        ops.close(handle)
    ops.rename(tmp, path)
    ops.sync_dir(os.path.dirname(path) or ".")


@final
class DurableState:
    """A value kept in one file, replaced atomically (temp file, fsync, rename, fsync dir).

    Args:
        path: the file; its directory must exist. ``<path>.tmp`` is used while saving.
        ops: the filesystem (tests pass a fake one).

    Blocking. Opening removes a leftover temporary file (a save that crashed
    before its rename; it was never acknowledged).
    """

    def __init__(self, path: str | os.PathLike[str], *, ops: FileOps | None = None) -> None:
        self.path = os.fspath(path)
        self._ops: FileOps = ops if ops is not None else OsFileOps()
        self._ops.remove(self.path + ".tmp")
        #: completed saves since this object was built
        self.saves = 0

    def load(self) -> bytes | None:
        """The last saved value, ``None`` if the file does not exist.

        Raises:
            CorruptStateError: the file is not a state file, has another format
                version, or fails its length or checksum check.
        """
        blob = self._ops.read(self.path)
        if blob is None:
            return None
        if len(blob) < _STATE_HEADER.size + _CRC.size:
            raise CorruptStateError(self.path, f"only {len(blob)} bytes, shorter than a header")
        magic, version, _flags, length = _STATE_HEADER.unpack_from(blob)
        if magic != _STATE_MAGIC:
            raise CorruptStateError(self.path, f"not a state file (magic {magic!r})")
        if version != FORMAT_VERSION:
            raise CorruptStateError(
                self.path, f"format version {version}, this library reads {FORMAT_VERSION}"
            )
        end = _STATE_HEADER.size + length
        if len(blob) != end + _CRC.size:
            raise CorruptStateError(
                self.path, f"{len(blob)} bytes, the header announces {end + _CRC.size}"
            )
        (crc,) = _CRC.unpack_from(blob, end)
        if crc != zlib.crc32(blob[:end]):
            raise CorruptStateError(self.path, "checksum mismatch")
        return blob[_STATE_HEADER.size : end]

    def save(self, data: bytes) -> None:
        """Replace the value; when this returns it survives any crash.

        Raises:
            TypeError, ValueError: ``data`` is not bytes or is above :data:`MAX_RECORD`.
            OSError: the filesystem failed (the old or the new value is in
                place, as after a crash).
        """
        _check_payload(data)
        body = _STATE_HEADER.pack(_STATE_MAGIC, FORMAT_VERSION, 0, len(data)) + data
        _replace_atomically(self._ops, self.path, body + _CRC.pack(zlib.crc32(body)))
        self.saves += 1


def _record(payload: bytes) -> bytes:
    length = _CRC.pack(len(payload))
    return length + _CRC.pack(zlib.crc32(length + payload)) + payload


@final
class RecordLog:
    """An append-only log of checksummed records, synced per append; torn tail repaired on open.

    Args:
        path: the log file; its directory must exist.
        ops: the filesystem (tests pass a fake one).

    Blocking. Use as a context manager or call :meth:`close`.

    Raises:
        CorruptStateError: the file exists and does not start with a log
            header of this format version.
    """

    def __init__(self, path: str | os.PathLike[str], *, ops: FileOps | None = None) -> None:
        self.path = os.fspath(path)
        self._ops: FileOps = ops if ops is not None else OsFileOps()
        self._ops.remove(self.path + ".tmp")
        self.records: list[bytes] = []
        #: bytes cut from a torn tail when the log was opened
        self.repaired_bytes = 0
        data = self._ops.read(self.path)
        header = _LOG_HEADER.pack(_LOG_MAGIC, FORMAT_VERSION, 0)
        if data is None:
            # created atomically, so the file never exists with a partial header
            _replace_atomically(self._ops, self.path, header)
            self._handle = self._ops.open(self.path, truncate=False)
            self._size = len(header)
            return
        if len(data) < len(header):
            raise CorruptStateError(self.path, f"only {len(data)} bytes, shorter than a header")
        magic, version, _flags = _LOG_HEADER.unpack_from(data)
        if magic != _LOG_MAGIC:
            raise CorruptStateError(self.path, f"not a record log (magic {magic!r})")
        if version != FORMAT_VERSION:
            raise CorruptStateError(
                self.path, f"format version {version}, this library reads {FORMAT_VERSION}"
            )
        pos = len(header)
        while pos + _RECORD.size <= len(data):
            length, crc = _RECORD.unpack_from(data, pos)
            end = pos + _RECORD.size + length
            if length > MAX_RECORD or end > len(data):
                break
            payload = data[pos + _RECORD.size : end]
            if crc != zlib.crc32(data[pos : pos + 4] + payload):
                break
            self.records.append(payload)
            pos = end
        self._handle = self._ops.open(self.path, truncate=False)
        if pos < len(data):
            self.repaired_bytes = len(data) - pos
            self._ops.truncate(self._handle, pos)
            self._ops.sync(self._handle)
        self._size = pos

    @property
    def size(self) -> int:
        """The log's length in bytes."""
        return self._size

    def append(self, payload: bytes) -> None:
        """Append one record and sync it; when this returns it survives any crash.

        Raises:
            TypeError, ValueError: ``payload`` is not bytes or is above :data:`MAX_RECORD`.
            RuntimeError: the log is closed.
            OSError: the filesystem failed (the record may or may not be in the
                log, as after a crash; reopen the log before appending again).
        """
        _check_payload(payload)
        if self._handle < 0:
            raise RuntimeError(f"record log {self.path} is closed")
        rec = _record(payload)
        self._ops.write(self._handle, rec)
        self._ops.sync(self._handle)
        self._size += len(rec)
        self.records.append(payload)

    def rewrite(self, payloads: list[bytes]) -> None:
        """Replace the whole log atomically with ``payloads`` (compaction).

        Raises:
            TypeError, ValueError: a payload is not bytes or is too large.
            RuntimeError: the log is closed.
        """
        for p in payloads:
            _check_payload(p)
        if self._handle < 0:
            raise RuntimeError(f"record log {self.path} is closed")
        blob = _LOG_HEADER.pack(_LOG_MAGIC, FORMAT_VERSION, 0) + b"".join(map(_record, payloads))
        self._ops.close(self._handle)
        self._handle = -1
        _replace_atomically(self._ops, self.path, blob)
        self._handle = self._ops.open(self.path, truncate=False)
        self._size = len(blob)
        self.records = list(payloads)

    def close(self) -> None:
        """Close the file (idempotent)."""
        if self._handle >= 0:
            self._ops.close(self._handle)
            self._handle = -1

    def __enter__(self) -> RecordLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@final
class LoggedState:
    """A :class:`StateStore` on a :class:`RecordLog`: each save appends, the last record wins.

    An append is one write and one ``fdatasync`` (no rename, no directory sync),
    cheaper than :class:`DurableState`. When the log holds ``compact_after``
    records it is rewritten atomically to the last one, so it stays bounded.

    Args:
        path: the log file.
        compact_after: records kept before compaction (>= 1).
        ops: the filesystem.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        compact_after: int = 1024,
        ops: FileOps | None = None,
    ) -> None:
        if not isinstance(compact_after, int) or compact_after < 1:
            raise ValueError(f"compact_after must be an int >= 1, got {compact_after!r}")
        self._log = RecordLog(path, ops=ops)
        self._compact_after = compact_after
        self.path = self._log.path

    def load(self) -> bytes | None:
        """The last saved value, or ``None``."""
        return self._log.records[-1] if self._log.records else None

    def save(self, data: bytes) -> None:
        """Append ``data``; when this returns it survives any crash.

        Raises:
            TypeError, ValueError: ``data`` is not bytes or is too large.
            OSError: the filesystem failed.
        """
        if len(self._log.records) >= self._compact_after:
            self._log.rewrite([_check_payload(data)])
        else:
            self._log.append(data)

    def close(self) -> None:
        """Close the log."""
        self._log.close()


@final
class TokenBlocks:
    """Strictly increasing tokens across crashes, persisting once per ``block`` tokens.

    Args:
        store: where the high-water mark lives (a :class:`DurableState` or
            :class:`LoggedState`).
        block: tokens reserved per persisted mark (>= 1); a crash wastes at most
            this many.

    Invariant: every token returned by :meth:`next_token` is at most
    :attr:`high_water`, and :attr:`high_water` is durable in ``store`` before a
    token at or below it is returned; a new instance starts above the durable
    mark. Hence a token is never returned twice, even across crashes.

    Raises:
        CorruptStateError: the stored mark is not a valid mark.
    """

    def __init__(self, store: StateStore, *, block: int = 1000) -> None:
        if not isinstance(block, int) or block < 1:
            raise ValueError(f"block must be an int >= 1, got {block!r}")
        self._store = store
        self._block = block
        data = store.load()
        if data is None:
            mark = 0
        elif len(data) != _U64.size:
            raise CorruptStateError(
                getattr(store, "path", "<store>"), f"a token mark of {len(data)} bytes, expected 8"
            )
        else:
            (mark,) = _U64.unpack(data)
        self._high_water = mark
        self._next = mark + 1
        #: marks persisted by this instance
        self.reservations = 0

    @property
    def high_water(self) -> int:
        """The durable mark: no token above it has been returned."""
        return self._high_water

    @property
    def last_issued(self) -> int:
        """The last token returned (or the restart floor, before any)."""
        return self._next - 1

    def next_token(self) -> int:
        """The next token, persisting a new mark first if it is above the current one.

        Blocking when it persists (once per ``block`` calls).

        Raises:
            OSError: persisting failed; no token was returned, and the next
                call tries again (the mark on disk is the old or the new one,
                either way at least every token returned).
        """
        token = self._next
        if token > self._high_water:
            mark = token + self._block - 1
            self._store.save(_U64.pack(mark))
            self._high_water = mark
            self.reservations += 1
        self._next = token + 1
        return token


def open_data_dir(path: str | os.PathLike[str], *, kind: str, ops: FileOps | None = None) -> str:
    """Create or open a node's data directory, checking what it is for and its format.

    A new directory is created (mode 0700, parents too) and its parent directory
    synced, so the directory itself survives a crash; then a ``FORMAT`` file
    naming ``kind`` and :data:`FORMAT_VERSION` is written through
    :class:`DurableState`. An existing directory must hold the same ``FORMAT``,
    or be empty. Blocking.

    Args:
        path: the directory.
        kind: what the directory belongs to, e.g. ``"lease-lock-server"``.
        ops: the filesystem for the ``FORMAT`` file and the directory sync.

    Returns:
        the directory's path, as a string.

    Raises:
        CorruptStateError: the directory belongs to another kind of node, has
            another format version, or is not empty and has no ``FORMAT``.
        ValueError: ``kind`` is empty or holds a newline.
        OSError: the directory cannot be created.
    """
    if not kind or "\n" in kind:
        raise ValueError(f"kind must be a non-empty single line, got {kind!r}")
    ops = ops if ops is not None else OsFileOps()
    directory = _make_data_dir(path, ops)
    check_data_dir_format(directory, kind=kind, ops=ops, names=os.listdir(directory))
    return directory


def open_locked_data_dir(
    path: str | os.PathLike[str], *, kind: str, ops: FileOps | None = None
) -> DataDirLock:
    """:func:`open_data_dir` holding the directory exclusively (:func:`lock_data_dir`).

    The lock is taken before the ``FORMAT`` check, so two processes starting
    on one fresh directory cannot both pass it. What a long-lived opener (a
    lock server's store, a Raft log) calls; it keeps the lock until it closes.
    Blocking.

    Args:
        path: the directory.
        kind: as :func:`open_data_dir`.
        ops: as :func:`open_data_dir` (the lock itself is always on the real
            filesystem).

    Returns:
        the held lock; its ``directory`` is the directory's path as a string.

    Raises:
        DataDirLockedError: another opener holds the directory.
        CorruptStateError, ValueError, OSError: as :func:`open_data_dir`.
    """
    if not kind or "\n" in kind:
        raise ValueError(f"kind must be a non-empty single line, got {kind!r}")
    ops = ops if ops is not None else OsFileOps()
    directory = _make_data_dir(path, ops)
    lock = lock_data_dir(directory)
    try:
        check_data_dir_format(directory, kind=kind, ops=ops, names=os.listdir(directory))
    except BaseException:
        lock.close()
        raise
    return lock


def _make_data_dir(path: str | os.PathLike[str], ops: FileOps) -> str:
    directory = os.fspath(path)
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise NotADirectoryError(errno.ENOTDIR, "not a directory", directory)
    if not os.path.isdir(directory):
        os.makedirs(directory, mode=0o700)
        ops.sync_dir(os.path.dirname(os.path.abspath(directory)))
    return directory


def check_data_dir_format(directory: str, *, kind: str, ops: FileOps, names: list[str]) -> None:
    """The ``FORMAT`` check of :func:`open_data_dir` on an existing directory.

    Writes the ``FORMAT`` file if the directory is empty; otherwise the file
    must name ``kind`` and :data:`FORMAT_VERSION`. For callers that list the
    directory through their own :class:`FileOps` (a simulated disk). Blocking.

    Args:
        directory: the directory, which exists.
        kind: what the directory belongs to.
        ops: the filesystem.
        names: the names the directory holds now.

    Raises:
        CorruptStateError: as :func:`open_data_dir`.
    """
    if not kind or "\n" in kind:
        raise ValueError(f"kind must be a non-empty single line, got {kind!r}")
    expected = f"trio-foundation data dir\nkind={kind}\nformat={FORMAT_VERSION}\n".encode()
    state = DurableState(os.path.join(directory, "FORMAT"), ops=ops)
    found = state.load()
    if found is None:
        others = sorted(set(names) - {"FORMAT", "FORMAT.tmp", LOCK_FILE})
        if others:
            raise CorruptStateError(
                directory, f"not empty ({', '.join(others[:3])}) and has no FORMAT file"
            )
        state.save(expected)
    elif found != expected:
        raise CorruptStateError(
            os.path.join(directory, "FORMAT"),
            f"describes {found.decode(errors='replace')!r}, expected kind {kind!r}"
            f" format {FORMAT_VERSION}",
        )


LOCK_FILE: Final = "LOCK"
"""The name of the lock file :func:`lock_data_dir` holds in a data directory."""


class DataDirLockedError(FoundationError):
    """Another opener (another process, or another object in this one) holds the data dir.

    Attributes:
        directory: the data directory.
        pid: the holder's process id as written in its lock file, or ``None``
            if it could not be read.
    """

    def __init__(self, directory: str, pid: int | None) -> None:
        holder = f" by pid {pid}" if pid is not None else ""
        super().__init__(f"data dir {directory!r} is in use{holder} (lock file {LOCK_FILE})")
        self.directory = directory
        self.pid = pid


@final
class DataDirLock:
    """An exclusive ``flock`` on a data directory's lock file, held until :meth:`close`.

    Made by :func:`lock_data_dir`. The kernel releases the lock when the
    process dies (even by ``kill -9``), so a stale lock file never blocks a
    restart; the file itself is left in place.
    """

    def __init__(self, directory: str, fd: int) -> None:
        self.directory = directory
        self._fd: int | None = fd

    @property
    def held(self) -> bool:
        """Whether the lock is still held (not closed)."""
        return self._fd is not None

    def close(self) -> None:
        """Release the lock (idempotent)."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the only descriptor releases the flock


def lock_data_dir(directory: str | os.PathLike[str]) -> DataDirLock:
    """Take an exclusive, non-blocking ``flock`` on ``directory``'s :data:`LOCK_FILE`.

    Two processes serving one data directory would each trust their own copy of
    the durable state (and, for a lock server, issue the same fencing token
    twice); this makes the second one fail at once instead. The holder writes
    its pid into the file, so the error can name it. POSIX only (``fcntl``); a
    lock taken through one :class:`DataDirLock` also excludes a second opener
    in the same process (``flock`` locks are per open file description).
    Blocking (a few system calls, never waits for the lock).

    Args:
        directory: an existing directory.

    Returns:
        the held lock; :meth:`DataDirLock.close` releases it.

    Raises:
        DataDirLockedError: someone else holds it.
        OSError: the lock file cannot be created or locked.
    """
    import fcntl

    directory = os.fspath(directory)
    path = os.path.join(directory, LOCK_FILE)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        try:
            text = os.pread(fd, 32, 0).decode("ascii", errors="replace").strip()
        finally:
            os.close(fd)
        if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise
        raise DataDirLockedError(directory, int(text) if text.isdigit() else None) from None
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    except OSError:
        os.close(fd)
        raise
    return DataDirLock(directory, fd)
