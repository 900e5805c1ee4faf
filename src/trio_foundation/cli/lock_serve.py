"""``foundation lock serve``: the lease lock server as a process.

::

    foundation lock serve --listen 127.0.0.1:7420 --data-dir /var/lib/locks \\
        [--secret-file F] [--ready-file F] [--max-ttl S] [--metrics-listen HOST:PORT]

The first line on stderr names the bound address (``listening on HOST:PORT``;
with ``--listen HOST:0`` the port is a free one; a listener on a non-loopback
address without ``--secret-file`` logs a warning right after it), and
``--ready-file`` receives ``HOST:PORT`` once connections are accepted. With
``--metrics-listen HOST:PORT`` the second line names the metrics endpoint
(``metrics on http://HOST:PORT/metrics``), which serves the Prometheus text
format at ``/metrics`` and answers ``/health`` (200 while serving); see
:mod:`trio_foundation.coordination.lock_monitor` for the series. Logs go
to stderr only; stdout is not used. SIGTERM or SIGINT stops the server cleanly
(exit 0): every token was durable before it was sent, so there is nothing to
flush.

Exit status: 0 after SIGTERM/SIGINT; 2 on bad usage, an unusable data
directory or an address that cannot be bound (one line on stderr, naming the
path or address and the error); 74 (EX_IOERR) if the disk fails while serving
(``ENOSPC``, ``EIO``, the data directory removed): one line naming the state
file and the errno, after which the server has stopped without sending a grant
for any token that was not durable.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from typing import Any, Final

import trio

from .._errors import FoundationError
from ..runtime.tcp import parse_address

_PREFIX = "foundation lock serve"

EXIT_STORAGE: Final = 74
"""Exit status when the disk fails while serving (``EX_IOERR``)."""


class _Buffer(logging.Handler):
    """Holds log records until the address line is out (it must be the first line)."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if len(self.records) < 1000:
            self.records.append(record)


def register_serve(verbs: Any) -> None:
    """Add ``foundation lock serve`` to the ``lock`` group's sub-parsers."""
    from .lock import _positive

    serve = verbs.add_parser(
        "serve",
        help="run the lease lock server (named locks over TCP)",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    serve.add_argument("--listen", required=True, help="HOST:PORT to listen on (port 0: free)")
    serve.add_argument("--data-dir", required=True, help="the server's data directory")
    serve.add_argument("--secret-file", default=None, help="shared secret file (mode 0600)")
    serve.add_argument("--ready-file", default=None, help="write HOST:PORT here once accepting")
    serve.add_argument(
        "--max-ttl",
        type=_positive("--max-ttl"),
        default=60.0,
        help="longest lease a client may ask for, in seconds (default 60)",
    )
    serve.add_argument(
        "--max-locks", type=int, default=10_000, help="most lock names served (default 10000)"
    )
    serve.add_argument(
        "--token-block",
        type=int,
        default=1000,
        help="tokens reserved per fsync (default 1000; a crash wastes at most this many)",
    )
    serve.add_argument(
        "--metrics-listen",
        default=None,
        metavar="HOST:PORT",
        help="serve Prometheus /metrics and /health here (port 0: free)",
    )
    serve.set_defaults(handler=_serve)


def _write_ready(path: str, text: str) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _serve(args: argparse.Namespace) -> int:
    from ..runtime.auth import load_secret_file

    listen = parse_address(args.listen)
    if args.metrics_listen is not None:
        parse_address(args.metrics_listen)  # refuse a malformed address before starting
    secret = None if args.secret_file is None else load_secret_file(args.secret_file)
    if args.max_locks < 1:
        raise ValueError(f"--max-locks must be >= 1, got {args.max_locks}")
    if args.token_block < 1:
        raise ValueError(f"--token-block must be >= 1, got {args.token_block}")
    if os.path.exists(args.data_dir) and not os.path.isdir(args.data_dir):
        raise ValueError(f"--data-dir: {args.data_dir!r} is not a directory")
    root = logging.getLogger("trio_foundation")
    buffer = _Buffer()
    root.addHandler(buffer)
    root.setLevel(logging.INFO)
    root.propagate = False
    from ..coordination.lock_server import StorageFailedError

    try:
        trio.run(_main, args, listen, secret, buffer)
    except StorageFailedError as exc:
        print(f"{_PREFIX}: error: {exc}", file=sys.stderr, flush=True)
        return EXIT_STORAGE
    except (FoundationError, OSError, ValueError) as exc:
        print(f"{_PREFIX}: error: {exc}", file=sys.stderr, flush=True)
        return 2
    finally:
        root.removeHandler(buffer)
    return 0


def _only_error(
    group: BaseExceptionGroup[BaseException],
) -> FoundationError | OSError | ValueError | None:
    """The one expected error a group carries besides ``Cancelled``, if it is alone."""
    leaves: list[BaseException] = []
    stack: list[BaseException] = [group]
    while stack:
        exc = stack.pop()
        if isinstance(exc, BaseExceptionGroup):
            stack.extend(exc.exceptions)
        elif not isinstance(exc, trio.Cancelled):
            leaves.append(exc)
    if len(leaves) == 1:
        only = leaves[0]
        if isinstance(only, FoundationError | OSError | ValueError):
            return only
    return None


async def _main(
    args: argparse.Namespace, listen: tuple[str, int], secret: bytes | None, buffer: _Buffer
) -> None:
    from ..coordination.lock_monitor import LockServerMonitor
    from ..coordination.lock_server import serve_lock_service

    listening = False
    metrics_shown: str | None = None
    monitor: LockServerMonitor | None = None

    def on_listening(address: tuple[str, int]) -> None:
        nonlocal listening
        listening = True
        host, port = address
        shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        print(f"{_PREFIX}: listening on {shown}", file=sys.stderr, flush=True)
        if metrics_shown is not None:
            print(
                f"{_PREFIX}: metrics on http://{metrics_shown}/metrics", file=sys.stderr, flush=True
            )
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(f"{_PREFIX}: %(levelname)s %(message)s"))
        root = logging.getLogger("trio_foundation")
        root.addHandler(handler)
        root.removeHandler(buffer)
        for record in buffer.records:
            handler.handle(record)
        if args.ready_file is not None:
            _write_ready(args.ready_file, f"{shown}\n")

    # The server's own error is raised here, outside the nursery, so that the
    # caller gets it as itself (not wrapped in an exception group).
    failure: list[FoundationError | OSError | ValueError] = []
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:

            async def stop_on_signal() -> None:
                async for signum in signals:
                    print(
                        f"{_PREFIX}: {signal.Signals(signum).name}: stopping",
                        file=sys.stderr,
                        flush=True,
                    )
                    nursery.cancel_scope.cancel()
                    return

            async def serve() -> None:
                nonlocal metrics_shown, monitor
                try:
                    if args.metrics_listen is not None:
                        from ..telemetry import MetricRegistry, Telemetry, serve_metrics

                        monitor = LockServerMonitor(Telemetry(), MetricRegistry(max_series=1000))
                        mhost, mport = parse_address(args.metrics_listen)
                        try:
                            bound = await nursery.start(
                                lambda task_status: serve_metrics(
                                    monitor.metrics,
                                    mhost,
                                    mport,
                                    health=lambda: listening,
                                    task_status=task_status,
                                )
                            )
                        except OSError as exc:
                            raise OSError(
                                exc.errno, f"cannot listen on {mhost}:{mport}: {exc.strerror}"
                            ) from None
                        metrics_shown = f"[{mhost}]:{bound}" if ":" in mhost else f"{mhost}:{bound}"
                    await serve_lock_service(
                        listen,
                        args.data_dir,
                        secret=secret,
                        max_ttl=args.max_ttl,
                        max_locks=args.max_locks,
                        block=args.token_block,
                        on_listening=on_listening,
                        monitor=monitor,
                    )
                except ImportError as exc:
                    failure.append(ValueError(f"--metrics-listen: {exc}"))
                except (FoundationError, OSError, ValueError) as exc:
                    failure.append(exc)
                except BaseExceptionGroup as group:
                    leaf = _only_error(group)
                    if leaf is None:
                        raise
                    if isinstance(leaf, OSError) and not listening:
                        host, port = listen
                        leaf = OSError(
                            leaf.errno, f"cannot listen on {host}:{port}: {leaf.strerror}"
                        )
                    failure.append(leaf)
                nursery.cancel_scope.cancel()

            nursery.start_soon(stop_on_signal)
            nursery.start_soon(serve)
    if failure:
        raise failure[0]
    print(f"{_PREFIX}: stopped", file=sys.stderr, flush=True)
