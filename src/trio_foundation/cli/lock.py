"""``foundation lock acquire``: run a command while holding a lock, like ``flock(1)``.

(``foundation lock serve``, the lock server process, is in :mod:`.lock_serve`.)

::

    foundation lock acquire --server etcd://127.0.0.1:2379 --ttl 10 reports -- make report

The command runs with the fencing token in ``FOUNDATION_FENCING_TOKEN``; it is
sent SIGTERM (then SIGKILL after ``--kill-after`` seconds) if the lease is lost.
stdout and stdin are the command's: this command writes nothing of its own to
stdout and logs only to stderr.

Exit status: the command's own (128+N if it died of signal N); 75 if ``--timeout``
passed before the lock was acquired (EX_TEMPFAIL); 69 if the lease was lost while
the command ran (EX_UNAVAILABLE; the command was terminated); 127 if the command
was not found and 126 if it could not be run (as ``env(1)``; one line on stderr,
and the lease is released at once); 2 for bad usage or an unreachable service.
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import sys
from typing import Any, Final

import trio

from .._errors import LeaseLostError

EXIT_TIMEOUT: Final = 75
EXIT_LEASE_LOST: Final = 69
EXIT_NOT_FOUND: Final = 127
EXIT_CANNOT_RUN: Final = 126


def _positive(flag: str) -> Any:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{flag} must be a number of seconds, got {text!r}"
            ) from None
        if not (math.isfinite(value) and value > 0):
            raise argparse.ArgumentTypeError(f"{flag} must be > 0 seconds, got {text!r}")
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
        "--server", required=True, help="lock service URL (tcp://HOST:PORT or etcd://HOST:PORT)"
    )
    acquire.add_argument(
        "--secret-file", default=None, help="shared secret file of a tcp:// server (mode 0600)"
    )
    acquire.add_argument("--ttl", type=_positive("--ttl"), required=True, help="lease ttl (s)")
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


async def _run(command: list[str], env: dict[str, str], kill_after: float) -> int:
    """Run the command to its end; if cancelled, SIGTERM it, then SIGKILL after ``kill_after``."""

    async def terminate(process: trio.Process) -> None:
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

            async def forward(process: trio.Process) -> None:
                async for signum in signals:
                    process.send_signal(signum)

            try:
                process = await trio.lowlevel.open_process(command, env=env)
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
