"""``foundation lock serve``: the lease lock server as a process.

::

    foundation lock serve --listen 127.0.0.1:7420 --data-dir /var/lib/locks \\
        [--secret-file F] [--ready-file F] [--max-ttl S]

The first line on stderr names the bound address (``listening on HOST:PORT``;
with ``--listen HOST:0`` the port is a free one; a listener on a non-loopback
address without ``--secret-file`` logs a warning right after it), and
``--ready-file`` receives ``HOST:PORT`` once connections are accepted. Logs go
to stderr only; stdout is not used. SIGTERM or SIGINT stops the server cleanly
(exit 0): every token was durable before it was sent, so there is nothing to
flush. Exit 2 on bad usage,
an unusable data directory or an address that cannot be bound.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from typing import Any

import trio

from ..runtime.tcp import parse_address

_PREFIX = "foundation lock serve"


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
    secret = None if args.secret_file is None else load_secret_file(args.secret_file)
    if args.max_locks < 1:
        raise ValueError(f"--max-locks must be >= 1, got {args.max_locks}")
    if args.token_block < 1:
        raise ValueError(f"--token-block must be >= 1, got {args.token_block}")
    root = logging.getLogger("trio_foundation")
    buffer = _Buffer()
    root.addHandler(buffer)
    root.setLevel(logging.INFO)
    root.propagate = False
    try:
        trio.run(_main, args, listen, secret, buffer)
    finally:
        root.removeHandler(buffer)
    return 0


async def _main(
    args: argparse.Namespace, listen: tuple[str, int], secret: bytes | None, buffer: _Buffer
) -> None:
    from ..coordination.lock_server import serve_lock_service

    def on_listening(address: tuple[str, int]) -> None:
        host, port = address
        shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        print(f"{_PREFIX}: listening on {shown}", file=sys.stderr, flush=True)
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(f"{_PREFIX}: %(levelname)s %(message)s"))
        root = logging.getLogger("trio_foundation")
        root.addHandler(handler)
        root.removeHandler(buffer)
        for record in buffer.records:
            handler.handle(record)
        if args.ready_file is not None:
            _write_ready(args.ready_file, f"{shown}\n")

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

            nursery.start_soon(stop_on_signal)
            await nursery.start(
                lambda task_status: serve_lock_service(
                    listen,
                    args.data_dir,
                    secret=secret,
                    max_ttl=args.max_ttl,
                    max_locks=args.max_locks,
                    block=args.token_block,
                    on_listening=on_listening,
                    task_status=task_status,
                )
            )
    print(f"{_PREFIX}: stopped", file=sys.stderr, flush=True)
