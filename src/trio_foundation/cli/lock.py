"""``foundation lock acquire``: run a command while holding a lock, like ``flock(1)``.

(``foundation lock serve``, the lock server process, is in :mod:`.lock_serve`.)

::

    foundation lock acquire --server etcd://127.0.0.1:2379 --ttl 10 reports -- make report

The command runs with the fencing token in ``FOUNDATION_FENCING_TOKEN``; it is
sent SIGTERM (then SIGKILL after ``--kill-after`` seconds) if the lease is lost.
On Linux it is also sent SIGTERM if this process dies, even of SIGKILL
(``PR_SET_PDEATHSIG``), so it never runs on without the lease; elsewhere a
SIGKILLed ``foundation lock acquire`` leaves its command running.
stdout and stdin are the command's: this command writes nothing of its own to
stdout and logs only to stderr.

Exit status: the command's own (128+N if it died of signal N); 75 if ``--timeout``
passed before the lock was acquired (EX_TEMPFAIL); 69 if the lease was lost while
the command ran (EX_UNAVAILABLE; the command was terminated); 127 if the command
was not found and 126 if it could not be run (as ``env(1)``; one line on stderr,
and the lease is released at once); 2 for bad usage or an unreachable service
(``--ttl`` below :data:`MIN_TTL`, 0.5 s, is bad usage).
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import subprocess
import sys
from typing import Any, Final, Protocol, final

import trio

from .._errors import LeaseLostError

EXIT_TIMEOUT: Final = 75
EXIT_LEASE_LOST: Final = 69
EXIT_NOT_FOUND: Final = 127
EXIT_CANNOT_RUN: Final = 126
_PR_SET_PDEATHSIG: Final = 1  # <linux/prctl.h>
MIN_TTL: Final = 0.5
"""The shortest ``--ttl``, in seconds: a chosen floor, not a measured limit. The
lease is renewed every third of its validity, each renewal a round trip to the
service, and the command is stopped a tenth of the validity before the safe
deadline; a ttl of milliseconds would be lost (and the command killed) at once."""


def _positive(flag: str, minimum: float = 0.0) -> Any:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{flag} must be a number of seconds, got {text!r}"
            ) from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(
                f"{flag} must be a finite number of seconds, got {text!r}"
            )
        if value <= 0 and minimum == 0:
            raise argparse.ArgumentTypeError(f"{flag} must be > 0 seconds, got {text!r}")
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{flag} must be >= {minimum:g} seconds, got {text!r}")
        return value

    return parse


def register(subparsers: Any) -> None:
    """Add ``foundation lock``."""
    lock = subparsers.add_parser("lock", help="run a command while holding a lease lock")
    verbs = lock.add_subparsers(dest="verb", metavar="VERB", parser_class=type(lock))
    verbs.required = True
    acquire = verbs.add_parser(
        "acquire",
        help="hold lock NAME while CMD runs (exit status: the command's)",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    acquire.add_argument(
        "--server",
        required=True,
        help="lock service URL (tcp://HOST:PORT, etcd://HOST:PORT or raft://HOST:PORT,...)",
    )
    acquire.add_argument(
        "--secret-file",
        default=None,
        help="shared secret file of a tcp:// server or raft:// cluster (mode 0600)",
    )
    acquire.add_argument(
        "--ttl",
        type=_positive("--ttl", MIN_TTL),
        required=True,
        help=f"lease ttl (s, >= {MIN_TTL:g})",
    )
    acquire.add_argument(
        "--timeout",
        type=_positive("--timeout"),
        default=None,
        help=f"give up waiting for the lock after S seconds (exit {EXIT_TIMEOUT})",
    )
    acquire.add_argument(
        "--kill-after",
        type=_positive("--kill-after"),
        default=5.0,
        help="seconds between SIGTERM and SIGKILL when the command must stop (default 5)",
    )
    acquire.add_argument("name", metavar="NAME", help="the lock's name")
    acquire.add_argument("command", metavar="CMD", nargs=argparse.REMAINDER, help="-- CMD ARGS...")
    acquire.set_defaults(handler=_acquire)
    from .lock_serve import register_serve

    register_serve(verbs)


def _log(message: str) -> None:
    print(f"foundation lock: {message}", file=sys.stderr, flush=True)


def _acquire(args: argparse.Namespace) -> int:
    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        raise ValueError("foundation lock acquire: no command given (NAME -- CMD ARGS...)")
    from .kv import quiet_repeats

    with quiet_repeats():  # a refused connection is redialled: say so once
        return trio.run(_hold_and_run, args, command)


async def _hold_and_run(args: argparse.Namespace, command: list[str]) -> int:
    from ..coordination.connect import connect_lock_service

    code: int | None = None
    extra = {} if args.secret_file is None else {"secret_file": args.secret_file}
    async with connect_lock_service(args.server, **extra) as service:
        deadline = trio.current_time() + args.timeout if args.timeout else math.inf
        with trio.CancelScope(deadline=deadline) as waiting:
            try:
                async with service.acquire(ttl=args.ttl, name=args.name) as lease:
                    waiting.deadline = math.inf  # --timeout bounds the wait only
                    _log(f"holding {args.name!r} with fencing token {lease.token}")
                    env = {**os.environ, "FOUNDATION_FENCING_TOKEN": str(lease.token)}
                    code = await _run(command, env, args.kill_after)
            except LeaseLostError as exc:
                _log(f"lease lost ({exc}); the command was terminated")
                return EXIT_LEASE_LOST
        if waiting.cancelled_caught and code is None:
            _log(f"gave up waiting for {args.name!r} after {args.timeout:g} s")
            return EXIT_TIMEOUT
    assert code is not None
    return code


class _Child(Protocol):
    def send_signal(self, sig: int) -> None: ...
    def terminate(self) -> None: ...
    def kill(self) -> None: ...
    async def wait(self) -> int: ...


@final
class _LinuxChild:
    """A child forked from this (main) thread that dies with this process.

    ``PR_SET_PDEATHSIG`` fires when the *thread* that forked the child exits,
    so the fork cannot happen in one of Trio's cached worker threads (as
    ``trio.lowlevel.open_process`` does): those exit when idle, which would
    kill the command while this process still holds the lease. The fork is
    blocking (a few milliseconds); the exit is awaited through a pidfd.
    """

    def __init__(self, command: list[str], env: dict[str, str]) -> None:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl  # resolved before the fork
        parent = os.getpid()

        def die_with_parent() -> None:  # in the child, between fork and exec
            if prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
                raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
            if os.getppid() != parent:  # the parent died before prctl took effect
                os.kill(os.getpid(), signal.SIGTERM)

        self._popen = subprocess.Popen(command, env=env, preexec_fn=die_with_parent)
        try:
            self._pidfd: int | None = os.pidfd_open(self._popen.pid)
        except OSError:  # a kernel before 5.3: poll instead
            self._pidfd = None

    def send_signal(self, sig: int) -> None:
        self._popen.send_signal(sig)

    def terminate(self) -> None:
        self._popen.terminate()

    def kill(self) -> None:
        self._popen.kill()

    async def wait(self) -> int:
        if self._pidfd is not None:
            await trio.lowlevel.wait_readable(self._pidfd)
        else:
            while self._popen.poll() is None:  # noqa: ASYNC110 - no pidfd to wait on
                await trio.sleep(0.05)
        code = self._popen.wait()
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None
        return code


async def _open_child(command: list[str], env: dict[str, str]) -> _Child:
    if sys.platform.startswith("linux"):
        await trio.lowlevel.checkpoint()
        return _LinuxChild(command, env)
    return await trio.lowlevel.open_process(command, env=env)


async def _run(command: list[str], env: dict[str, str], kill_after: float) -> int:
    """Run the command to its end; if cancelled, SIGTERM it, then SIGKILL after ``kill_after``."""

    async def terminate(process: _Child) -> None:
        process.terminate()
        with trio.move_on_after(kill_after):
            await process.wait()
            return
        process.kill()

    # Forward SIGTERM/SIGINT sent to this process to the command, then keep waiting.
    # The receiver outlives the nursery: the forwarding task must see Cancelled,
    # not a receiver that already exited.
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:

            async def forward(process: _Child) -> None:
                async for signum in signals:
                    process.send_signal(signum)

            try:
                process = await _open_child(command, env)
            except OSError as exc:
                # as env(1): 127 if there is no such file, 126 if it cannot be run
                _log(f"cannot run {command[0]!r}: {exc.strerror or exc}")
                return EXIT_NOT_FOUND if isinstance(exc, FileNotFoundError) else EXIT_CANNOT_RUN
            nursery.start_soon(forward, process)
            try:
                returncode = await process.wait()
            except BaseException:
                with trio.CancelScope(shield=True, deadline=trio.current_time() + kill_after + 5):
                    await terminate(process)
                    await process.wait()
                raise
            finally:
                nursery.cancel_scope.cancel()
    return 128 - returncode if returncode < 0 else returncode
