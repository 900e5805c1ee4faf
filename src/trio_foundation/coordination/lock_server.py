"""The lease lock server as a process: named locks over TCP, crash-safe tokens.

:func:`serve_lock_service` runs one :class:`~trio_foundation.protocols.
lease_lock.LockServer` core per lock name, each on its own
:class:`~trio_foundation.runtime.driver.NodeDriver`, behind one TCP listener
(:data:`~trio_foundation.coordination.lock_wire.LOCK_PROTOCOL`). ``foundation
lock serve`` is this function behind a command line.

Crash safety (:class:`ServerStore`): the process persists one record, ``(mark,
longest ttl granted)``, in a :class:`~trio_foundation.runtime.storage.
LoggedState` in its data directory (created and version-checked by
:func:`~trio_foundation.runtime.storage.open_data_dir`). The mark is a
high-water mark *reserved ahead* of the tokens handed out, as
:class:`~trio_foundation.runtime.storage.TokenBlocks` does: a core's
``Persist(ServerDurable(token, ttl))`` is executed by the driver before the
grant is sent, and returns at once while ``token`` is at most the durable mark;
above it, a new mark ``token + block - 1`` is appended and fdatasynced first.
So one fsync covers ``block`` grants (on every lock), and every token ever sent
is at most the durable mark. A restarted process restores *every* lock's core
with ``token = mark`` (the mark read at start), so each lock's next token is
above every token issued before the crash, and with the longest ttl granted, so
no lock grants anything until that long after the restart (its quiet period: a
lease granted before the crash may still be held). Each lock name has its own
token sequence (tokens increase per name; two names may hand out equal tokens).

Disk failures: a persist that fails (``ENOSPC``, ``EIO``, the data directory
removed while the server runs — checked after each write, since an append to
an open file whose name was unlinked still succeeds) stops the whole server
with :class:`StorageFailedError`. The failed step sends nothing (the driver
persists before it sends), and no message is handled after it, so no grant
ever carries a token above the durable mark. ``foundation lock serve`` reports
it as one line and exits with status 74.
"""

from __future__ import annotations

import errno as errno_codes
import logging
import os
import time
from collections.abc import Callable
from typing import Any, Final, final

import msgspec
import trio

from .._errors import FoundationError
from ..protocols.lease_lock import (
    AcquireRequest,
    Denied,
    LockServer,
    RenewRequest,
    ServerDurable,
)
from ..runtime.driver import NO_STATE, NodeDriver
from ..runtime.storage import (
    CorruptStateError,
    FileOps,
    LoggedState,
    OsFileOps,
    open_locked_data_dir,
)
from ..runtime.tcp import TcpTransport, open_tcp_transport
from ..runtime.transport import Envelope
from .lock_monitor import SWEEP_INTERVAL, LockServerMonitor
from .lock_wire import LOCK_PROTOCOL, SERVER_NODE, LockChannel, from_wire, to_wire

__all__ = ["DATA_DIR_KIND", "ServerStore", "StorageFailedError", "serve_lock_service"]

DATA_DIR_KIND: Final = "lease-lock-server"
_STATE_FILE: Final = "state.log"

logger = logging.getLogger("trio_foundation.coordination.lock_server")


class StorageFailedError(FoundationError):
    """The lock server could not make its state durable, so it stopped serving.

    No grant was sent for a token above the durable mark: the step whose
    persist failed sent nothing, and nothing was handled after it.

    Attributes:
        path: the state file that could not be written.
        errno: the ``errno`` of the failure (e.g. ``errno.ENOSPC``), or ``None``.
        strerror: the system's description of it.
    """

    def __init__(self, path: str, cause: OSError) -> None:
        code = cause.errno
        name = errno_codes.errorcode.get(code, str(code)) if code is not None else "unknown"
        strerror = cause.strerror or str(cause)
        super().__init__(
            f"cannot persist the lock server's state to {path}: {strerror} ({name});"
            " stopped serving (no grant was sent for an unpersisted token)"
        )
        self.path = path
        self.errno = code
        self.strerror = strerror


class _Record(msgspec.Struct, array_like=True, frozen=True):
    mark: int
    max_ttl_granted: float


@final
class ServerStore:
    """The durable state of a lock server process, in its data directory.

    Blocking I/O (one ``fdatasync`` per reserved block of tokens).

    Args:
        data_dir: the data directory (created if missing; refused if it
            belongs to something else or another format version).
        block: tokens reserved per durable mark (>= 1); a crash wastes at most
            this many.
        ops: the filesystem (default: the real one; tests inject failures).
            With the real one, each write is followed by a check that the
            state file is still there.

    Raises:
        CorruptStateError: the directory or its state file is not a valid lock
            server state, or the directory has a ``FORMAT`` file but no state
            file (its durable mark is lost: starting over would reissue tokens).
        DataDirLockedError: another process (or store) holds the directory.
        OSError: the filesystem failed.
    """

    def __init__(
        self, data_dir: str | os.PathLike[str], *, block: int = 1000, ops: FileOps | None = None
    ) -> None:
        if not isinstance(block, int) or isinstance(block, bool) or block < 1:
            raise ValueError(f"block must be an int >= 1, got {block!r}")
        self.block = block
        self._real_fs = ops is None
        file_ops: FileOps = ops if ops is not None else OsFileOps()
        try:
            used = file_ops.read(os.path.join(os.fspath(data_dir), "FORMAT")) is not None
        except OSError:  # not a directory, unreadable: open_locked_data_dir says which
            used = False
        self._dir_lock = open_locked_data_dir(data_dir, kind=DATA_DIR_KIND, ops=ops)
        #: the data directory (held exclusively until :meth:`close`)
        self.directory = self._dir_lock.directory
        try:
            state_file = os.path.join(self.directory, _STATE_FILE)
            if used and file_ops.read(state_file) is None:
                # a server creates its state file right after FORMAT: without it
                # the durable mark is lost, and starting at token 1 would reissue
                raise CorruptStateError(
                    state_file,
                    "missing, though the directory was formatted by a lock server"
                    " (refusing to restart at token 1; restore the file, or remove"
                    " the directory if it never served)",
                )
            self._log = LoggedState(state_file, ops=ops)
            #: the state file
            self.path = str(self._log.path)
            record = self._load()
        except BaseException:
            self._dir_lock.close()
            raise
        self._startup = record
        #: the durable high-water mark: no token above it was ever sent
        self.mark = record.mark
        #: the longest ttl ever granted (durable)
        self.max_ttl_granted = record.max_ttl_granted
        #: records written by this instance
        self.saves = 0
        #: called after each record made durable: ``(mark, longest ttl, seconds)``
        self.on_save: Callable[[int, float, float], None] | None = None

    def _load(self) -> _Record:
        data = self._log.load()
        if data is None:
            return _Record(0, 0.0)
        try:
            record = msgspec.msgpack.decode(data, type=_Record)
        except msgspec.ValidationError as exc:
            raise CorruptStateError(str(self._log.path), f"bad state record: {exc}") from None
        if record.mark < 0 or record.max_ttl_granted < 0:
            raise CorruptStateError(str(self._log.path), f"bad state record {record!r}")
        return record

    def restored(self, elapsed: float = 0.0) -> Any:
        """What a lock's core starts from, ``elapsed`` seconds after this process started.

        ``ServerDurable(mark at start, quiet time left)``: the core's next token
        is above every token sent before the restart, and it grants nothing
        until the longest ttl granted before the restart has passed since the
        process started (a core created later waits only what is left of it).
        :data:`~trio_foundation.runtime.driver.NO_STATE` for a fresh directory.
        """
        if self._startup.mark == 0:
            return NO_STATE
        quiet = max(0.0, self._startup.max_ttl_granted - elapsed)
        return ServerDurable(self._startup.mark, quiet)

    def persist(self, data: Any) -> None:
        """The drivers' persist callback: make ``data`` (a ``ServerDurable``) durable.

        Returns at once if its token is at most the durable mark and its ttl at
        most the durable longest ttl; otherwise appends a new record (a mark
        ``block - 1`` tokens ahead) and fdatasyncs it before returning.

        Raises:
            TypeError: ``data`` is not a ``ServerDurable``.
            OSError: the write failed, or (real filesystem) the state file is
                gone after it (its directory was removed): the mark is not
                adopted, and the caller must not send what depends on it.
        """
        if not isinstance(data, ServerDurable):
            raise TypeError(f"expected ServerDurable, got {type(data).__name__}")
        if data.token <= self.mark and data.max_ttl_granted <= self.max_ttl_granted:
            return
        mark = self.mark if data.token <= self.mark else data.token + self.block - 1
        ttl = max(self.max_ttl_granted, data.max_ttl_granted)
        started = time.perf_counter()
        self._log.save(msgspec.msgpack.encode(_Record(mark, ttl)))
        if self._real_fs:
            # An append to an open file succeeds even after its name was removed;
            # a restart would not find the mark. Raises FileNotFoundError then.
            os.stat(self.path)
        self.mark, self.max_ttl_granted = mark, ttl
        self.saves += 1
        if self.on_save is not None:
            self.on_save(mark, ttl, time.perf_counter() - started)

    def close(self) -> None:
        """Close the state file and release the data directory."""
        try:
            self._log.close()
        finally:
            self._dir_lock.close()


@final
class _ObservedChannel:
    """A lock's channel that also records what its core sends (for the monitor)."""

    def __init__(self, channel: LockChannel, sent: list[tuple[int, Any]]) -> None:
        self._channel = channel
        self._sent = sent

    @property
    def node_id(self) -> int:
        return self._channel.node_id

    def send_nowait(self, dst: int, msg: Any) -> bool:
        self._sent.append((dst, msg))
        return self._channel.send_nowait(dst, msg)

    async def receive(self) -> Envelope:
        return await self._channel.receive()


@final
class _Server:
    def __init__(
        self,
        store: ServerStore,
        nursery: trio.Nursery,
        *,
        max_ttl: float,
        max_locks: int,
        max_clients: int,
        monitor: LockServerMonitor | None,
    ) -> None:
        self.store = store
        self.nursery = nursery
        self.max_ttl = max_ttl
        self.max_locks = max_locks
        self.max_clients = max_clients
        self.monitor = monitor
        self.tcp: TcpTransport | None = None
        self.drivers: dict[str, NodeDriver] = {}
        self.refused_locks = 0
        self.started = trio.current_time()
        #: the storage failure that stopped the server
        self.failure: StorageFailedError | None = None
        # what the core stepping right now sent (filled by _ObservedChannel)
        self._sent: list[tuple[int, Any]] = []

    def fail(self, exc: OSError) -> None:
        """Stop serving: nothing more is handled, and the server's scope ends."""
        if self.failure is None:
            self.failure = StorageFailedError(self.store.path, exc)
            self.failure.__cause__ = exc
            logger.error("%s", self.failure)
            if self.monitor is not None:
                self.monitor.storage_failed(self.store.path, exc.errno)
        self.nursery.cancel_scope.cancel()

    async def sweep_forever(self) -> None:
        """Refresh the monitor's time-dependent figures every SWEEP_INTERVAL seconds."""
        assert self.monitor is not None
        while True:
            tcp = self.tcp
            self.monitor.sweep(trio.current_time(), None if tcp is None else tcp.statistics())
            await trio.sleep(SWEEP_INTERVAL)

    def on_message(self, envelope: Envelope) -> None:
        tcp = self.tcp
        if tcp is None or self.failure is not None:
            return
        name, msg = from_wire(envelope.msg)
        driver = self.drivers.get(name)
        if driver is None:
            if not isinstance(msg, AcquireRequest | RenewRequest):
                return  # a release of a lock this process never served: nothing held
            if len(self.drivers) >= self.max_locks:
                self.refused_locks += 1
                reason = f"too many locks (max {self.max_locks})"
                tcp.send_nowait(envelope.src, to_wire(name, Denied(msg.req, reason)))
                if self.monitor is not None:
                    self.monitor.refused(
                        name, envelope.src, reason, trio.current_time(), acquire=True
                    )
                return
            core = LockServer(SERVER_NODE, max_ttl=self.max_ttl, max_clients=self.max_clients)
            channel: Any = LockChannel(tcp, name)
            if self.monitor is not None:
                channel = _ObservedChannel(channel, self._sent)
                self.monitor.watch(name, core)
            driver = NodeDriver(
                core,
                channel,
                persist=self.store.persist,
                restored=self.store.restored(trio.current_time() - self.started),
                pull=False,
            )
            driver.start_in(self.nursery)
            self.drivers[name] = driver
        monitor = self.monitor
        try:
            if monitor is None:
                driver.deliver(envelope.src, msg)
            else:
                now = trio.current_time()
                before = monitor.before(name, now)
                self._sent.clear()
                driver.deliver(envelope.src, msg)
                monitor.after(name, now, envelope.src, msg, before, self._sent)
        except OSError as exc:  # a failed persist: the step sent nothing
            self.fail(exc)


async def serve_lock_service(
    listen: tuple[str, int],
    data_dir: str | os.PathLike[str],
    *,
    secret: bytes | None = None,
    max_ttl: float = 60.0,
    max_locks: int = 10_000,
    max_clients: int = 1024,
    block: int = 1000,
    on_listening: Callable[[tuple[str, int]], None] | None = None,
    file_ops: FileOps | None = None,
    monitor: LockServerMonitor | None = None,
    task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve named lease locks on ``listen`` until cancelled.

    Opens the data directory (blocking, at start), binds the listener, calls
    ``on_listening(address)`` and reports the bound address as started; from
    then on it accepts connections. Each lock name gets its own server core on
    first use (at most ``max_locks`` names; an acquire of one more is denied
    with the reason ``"too many locks"``, final for the client).

    Cancellation stops it: the listener and every connection are closed and
    the state file closed. Every grant's token was made durable before the
    grant was sent, so nothing needs flushing; clients holding leases stop
    getting renewals and lose them (their bodies are cancelled before their
    leases can expire), and a restarted server waits out its quiet period.

    Args:
        listen: ``(host, port)``; port 0 binds a free port.
        data_dir: the server's data directory (see :class:`ServerStore`).
        secret: the shared secret (:func:`~trio_foundation.runtime.auth.load_secret_file`);
            ``None``: no authentication.
        max_ttl: the longest lease a client may ask for (seconds).
        max_locks: bound on the number of lock names served.
        max_clients: per lock, bound on the duplicate-suppression table.
        block: tokens reserved per fsync.
        on_listening: called once with the bound address, before started.
        file_ops: the filesystem of the data directory (tests inject failures).
        monitor: reports telemetry events and keeps metrics
            (:class:`~trio_foundation.coordination.lock_monitor.LockServerMonitor`);
            ``None``: nothing is reported, at no cost.

    Raises:
        CorruptStateError: the data directory is not a lock server's of this format.
        OSError: the address cannot be bound or the data directory cannot be
            opened (at start).
        StorageFailedError: persisting failed while serving; the server
            stopped at once (its connections closed), having sent no grant for
            a token that was not durable.
    """
    if not max_locks >= 1:
        raise ValueError(f"max_locks must be >= 1, got {max_locks!r}")
    store = ServerStore(data_dir, block=block, ops=file_ops)
    server: _Server | None = None
    try:
        async with trio.open_nursery() as cores:
            server = _Server(
                store,
                cores,
                max_ttl=max_ttl,
                max_locks=max_locks,
                max_clients=max_clients,
                monitor=monitor,
            )
            if monitor is not None:
                monitor.set_mark(store.mark)
                store.on_save = lambda mark, ttl, seconds: monitor.mark_persisted(
                    store.path, mark, ttl, seconds
                )
            try:
                async with open_tcp_transport(
                    LOCK_PROTOCOL,
                    SERVER_NODE,
                    listen=listen,
                    secret=secret,
                    on_message=server.on_message,
                ) as tcp:
                    server.tcp = tcp
                    address = tcp.listen_address
                    assert address is not None
                    logger.info(
                        "serving locks from %s (token mark %d, longest ttl granted %g s)",
                        store.directory,
                        store.mark,
                        store.max_ttl_granted,
                    )
                    if monitor is not None:
                        cores.start_soon(server.sweep_forever)
                    if on_listening is not None:
                        on_listening(address)
                    task_status.started(address)
                    await trio.sleep_forever()
            finally:
                cores.cancel_scope.cancel()
    finally:
        try:
            store.close()
        except OSError as exc:
            if server is None or server.failure is None:  # a reported failure wins
                raise
            logger.debug("closing the state file after a failure: %s", exc)
    if server is not None and server.failure is not None:
        raise server.failure
