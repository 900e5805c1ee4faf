"""``foundation kv``: the replicated key-value store's server and client commands.

::

    foundation kv serve --id I --peers 1=HOST:PORT,2=HOST:PORT,3=HOST:PORT --data-dir DIR
        [--secret-file F] [--ready-file F] [--election-timeout S] [--metrics-listen HOST:PORT]
    foundation kv put KEY VALUE     --cluster HOST:PORT,...   (prints the revision)
    foundation kv put KEY -         --cluster ...   (the value is stdin's bytes, verbatim)
    foundation kv put KEY --value-file F --cluster ...   (the value is F's bytes)
    foundation kv get KEY           --cluster ...   (the bare value; exit 1 if absent)
    foundation kv cas KEY OLD NEW   --cluster ...   (exit 1 if OLD did not match, one
    foundation kv cas KEY NEW --absent --cluster ... line on stderr: what KEY holds now)
    foundation kv delete KEY        --cluster ...   (exit 1 if absent)
    foundation kv watch PREFIX [--rev N] [--count N] --cluster ...
    foundation kv status            --cluster ...   (leader, term, commit, applied per node)
    foundation kv snapshot save FILE --cluster ...   (a member's state machine, now)
    foundation kv snapshot restore FILE --data-dir DIR  (a new member's data dir from it)
    foundation kv member list|add ID|add-learner ID|remove ID --cluster ...
        (a new member runs ``serve --join`` with every member in --peers, itself
        included, before it is added)

Every member also serves the lease locks of ``connect_lock_service("raft://HOST:PORT,...")``
and ``foundation lock acquire --server raft://HOST:PORT,...`` (docs/lease-lock.md).

``--cluster`` takes any members' addresses, ``HOST:PORT`` (the member's id is
read from its handshake) or ``ID=HOST:PORT``; followers forward to the leader.
Client commands give up after ``--timeout`` seconds (default 10; exit 3).
``serve`` logs to stderr (its first line: ``serving node I on HOST:PORT``),
writes ``--ready-file`` once listening, stops cleanly on SIGTERM or SIGINT (exit
0); its data dir carries a ``FORMAT`` file (kind ``raft-log`` and version). Exit 2
on bad usage or an unusable data dir. With ``--metrics-listen HOST:PORT`` (port 0:
free) its second line names the metrics endpoint (``metrics on
http://HOST:PORT/metrics``): the Prometheus text format at ``/metrics`` (the series
of :mod:`trio_foundation.coordination.raft_monitor`) and ``/health`` (200 while the
member runs, 503 otherwise); an address that does not parse or cannot be bound is
refused before the member starts (exit 2, one line naming ``--metrics-listen``).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from typing import Any

import msgspec
import trio

from ..runtime.tcp import parse_address

EXIT_ABSENT = 1
EXIT_TIMEOUT = 3
_PREFIX = "foundation kv"


def _members(text: str) -> dict[int, tuple[str, int]]:
    out: dict[int, tuple[str, int]] = {}
    for part in text.split(","):
        part = part.strip()
        ident, sep, addr = part.partition("=")
        if not sep or not ident.isdigit():
            raise ValueError(f"--peers entry {part!r} must be ID=HOST:PORT")
        if int(ident) in out:
            raise ValueError(f"--peers names node {ident} twice")
        out[int(ident)] = parse_address(addr, dial=True)
    return out


def register(subparsers: Any) -> None:
    """Add ``foundation kv``."""
    kv = subparsers.add_parser("kv", help="the replicated key-value store (Raft)")
    verbs = kv.add_subparsers(dest="verb", metavar="VERB", parser_class=type(kv))
    verbs.required = True
    serve = verbs.add_parser("serve", help="run one member of the cluster")
    serve.add_argument("--id", type=int, required=True, help="this member's id")
    serve.add_argument("--peers", required=True, help="every member: 1=HOST:PORT,2=HOST:PORT,...")
    serve.add_argument("--data-dir", required=True, help="this member's data directory")
    serve.add_argument("--secret-file", default=None, help="shared secret file (mode 0600)")
    serve.add_argument("--ready-file", default=None, help="write HOST:PORT here once listening")
    serve.add_argument(
        "--election-timeout", type=float, default=0.3, help="T in seconds (default 0.3)"
    )
    serve.add_argument(
        "--join",
        action="store_true",
        help="a new member: wait to be added (foundation kv member add ID) before voting",
    )
    serve.add_argument(
        "--metrics-listen",
        default=None,
        metavar="HOST:PORT",
        help="serve Prometheus /metrics and /health here (port 0: free)",
    )
    serve.set_defaults(handler=_serve)

    def client(name: str, help: str) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = verbs.add_parser(name, help=help)
        p.add_argument("--cluster", required=True, help="HOST:PORT,... or ID=HOST:PORT,...")
        p.add_argument("--secret-file", default=None, help="shared secret file (mode 0600)")
        p.add_argument("--timeout", type=float, default=10.0, help="give up after S seconds")
        p.set_defaults(handler=_client)
        return p

    put = client("put", "write KEY (prints the revision)")
    put.add_argument("key")
    put.add_argument(
        "value",
        nargs="?",
        default=None,
        help="the value; - reads it from stdin (bytes, verbatim); or give --value-file",
    )
    put.add_argument(
        "--value-file",
        default=None,
        metavar="F",
        help="read the value from file F (bytes, verbatim), e.g. one above the 128 KiB "
        "a command-line argument may hold",
    )
    get = client("get", "print KEY's value (exit 1 if absent)")
    get.add_argument("key")
    cas = client(
        "cas",
        "write NEW if KEY's value is OLD, or with --absent if KEY does not exist"
        f" (exit {EXIT_ABSENT} if not, one line on stderr saying why)",
    )
    cas.add_argument("key")
    cas.add_argument("values", nargs="+", metavar="[OLD] NEW", help="OLD NEW, or NEW with --absent")
    cas.add_argument("--absent", action="store_true", help="expect no key: cas KEY NEW --absent")
    client("delete", "delete KEY (exit 1 if absent)").add_argument("key")
    watch = client("watch", "print changes under PREFIX, one per line")
    watch.add_argument("prefix")
    watch.add_argument("--rev", type=int, default=0, help="from revision N (default: now)")
    watch.add_argument("--count", type=int, default=0, help="stop after N events")
    client("status", "leader, term, commit and applied index of every member")
    snapshot = verbs.add_parser("snapshot", help="back up a member's state, or restore it")
    snapshot.add_argument("action", choices=["save", "restore"])
    snapshot.add_argument("file", help="the backup file")
    snapshot.add_argument("--cluster", default=None, help="save: the members (HOST:PORT,...)")
    snapshot.add_argument("--secret-file", default=None, help="save: shared secret file")
    snapshot.add_argument("--timeout", type=float, default=10.0, help="save: give up after S s")
    snapshot.add_argument("--data-dir", default=None, help="restore: a new, empty data dir")
    snapshot.set_defaults(handler=_snapshot)
    member = client("member", "list the members, or add or remove one (one at a time)")
    member.add_argument("action", choices=["list", "add", "add-learner", "remove"])
    member.add_argument("node", nargs="?", type=int, help="the member's id (add, remove)")


# --------------------------------------------------------------------------- serve


def _write_ready(path: str, text: str) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _serve(args: argparse.Namespace) -> int:
    from ..runtime.auth import load_secret_file

    peers = _members(args.peers)
    if args.id not in peers:
        raise ValueError(f"--id {args.id} is not in --peers")
    if not args.election_timeout > 0:
        raise ValueError(f"--election-timeout must be > 0, got {args.election_timeout}")
    if os.path.exists(args.data_dir) and not os.path.isdir(args.data_dir):
        raise ValueError(f"--data-dir: {args.data_dir!r} is not a directory")
    metrics: tuple[str, int] | None = None
    if args.metrics_listen is not None:
        try:
            metrics = parse_address(args.metrics_listen)
        except ValueError as exc:
            raise ValueError(f"--metrics-listen: {exc}") from None
    secret = None if args.secret_file is None else load_secret_file(args.secret_file)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"{_PREFIX} serve: %(levelname)s %(message)s"))
    root = logging.getLogger("trio_foundation")
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    root.propagate = False
    try:
        trio.run(_serve_main, args, peers, secret, metrics)
    finally:
        root.removeHandler(handler)
    return 0


async def _serve_main(
    args: argparse.Namespace,
    peers: dict[int, tuple[str, int]],
    secret: bytes | None,
    metrics: tuple[str, int] | None,
) -> None:
    from .._errors import FoundationError

    if metrics is None:
        await _run_member(args, peers, secret, None, None)
        return
    from ..coordination.raft_monitor import RaftNodeMonitor
    from ..telemetry import MetricRegistry, Telemetry, serve_metrics

    monitor = RaftNodeMonitor(Telemetry(), MetricRegistry(max_series=100))
    running: list[Any] = []  # the member's handle, once it serves
    mhost, mport = metrics
    # The member's own error is raised here, outside the nursery, as itself
    # (not wrapped in an exception group).
    failure: list[BaseException] = []
    async with trio.open_nursery() as nursery:
        try:
            bound = await nursery.start(
                lambda task_status: serve_metrics(
                    monitor.metrics,
                    mhost,
                    mport,
                    health=lambda: bool(running) and running[0].driver.running,
                    task_status=task_status,
                )
            )
        except OSError as exc:
            text = f"--metrics-listen: cannot listen on {mhost}:{mport}: {exc.strerror}"
            failure.append(OSError(exc.errno, text))
        else:
            shown = f"[{mhost}]:{bound}" if ":" in mhost else f"{mhost}:{bound}"
            try:
                await _run_member(args, peers, secret, monitor, (shown, running))
            except (FoundationError, OSError, ValueError) as exc:
                failure.append(exc)
        nursery.cancel_scope.cancel()
    if failure:
        raise failure[0]


async def _run_member(
    args: argparse.Namespace,
    peers: dict[int, tuple[str, int]],
    secret: bytes | None,
    monitor: Any,
    metrics: tuple[str, list[Any]] | None,
) -> None:
    from ..coordination.raft_lock import open_lock_node

    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with open_lock_node(
            args.id,
            peers,
            args.data_dir,
            secret=secret,
            election_timeout=args.election_timeout,
            join=args.join,
            monitor=monitor,
        ) as node:
            host, port = peers[args.id]
            print(f"{_PREFIX} serve: serving node {args.id} on {host}:{port}", file=sys.stderr)
            if metrics is not None:
                shown, running = metrics
                running.append(node)
                print(f"{_PREFIX} serve: metrics on http://{shown}/metrics", file=sys.stderr)
            sys.stderr.flush()
            if args.ready_file is not None:
                _write_ready(args.ready_file, f"{host}:{port}\n")
            async for signum in signals:
                print(
                    f"{_PREFIX} serve: {signal.Signals(signum).name}: stopping",
                    file=sys.stderr,
                    flush=True,
                )
                break


# --------------------------------------------------------------------------- clients


async def _resolve(text: str) -> dict[int, tuple[str, int]]:
    """``--cluster``'s members: ``ID=HOST:PORT`` as given, ``HOST:PORT`` probed for
    its id (all at once, 2 s each); a member that cannot be probed is skipped with
    one line naming it."""
    from ..coordination.raft_lock import resolve_members

    entries: list[tuple[int | None, tuple[str, int]]] = []
    if "://" in text:
        raise ValueError(f"--cluster {text!r}: write HOST:PORT,... or ID=HOST:PORT,... (no scheme)")
    for part in text.split(","):
        part = part.strip()
        ident, sep, addr = part.partition("=")
        if sep:
            if not ident.isdigit():
                raise ValueError(f"--cluster entry {part!r} must be HOST:PORT or ID=HOST:PORT")
            if any(int(ident) == known for known, _ in entries):
                raise ValueError(f"--cluster names member {int(ident)} twice")
            entries.append((int(ident), parse_address(addr, dial=True)))
        else:
            entries.append((None, parse_address(part, dial=True)))

    def skipped(reason: str) -> None:
        print(f"{_PREFIX}: {reason}; skipped", file=sys.stderr)

    try:
        return await resolve_members(entries, timeout=2.0, on_skip=skipped)
    except OSError:
        raise OSError("no member of --cluster is reachable") from None


def _put_value(args: argparse.Namespace) -> str | bytes:
    """The value of ``put KEY VALUE``, ``put KEY -`` (stdin) or ``put KEY --value-file F``.

    Raises:
        ValueError: no value, or both VALUE and --value-file.
        OSError: F cannot be read.
    """
    if args.value is not None and args.value_file is not None:
        raise ValueError(
            f"put takes VALUE or --value-file F, not both (got {args.value!r} "
            f"and --value-file {args.value_file!r})"
        )
    if args.value_file is not None:
        with open(args.value_file, "rb") as file:
            return file.read()
    if args.value is None:
        raise ValueError("put takes KEY VALUE, KEY - (the value from stdin) or KEY --value-file F")
    if args.value == "-":
        return sys.stdin.buffer.read()
    return str(args.value)


def _cas_values(args: argparse.Namespace) -> tuple[str | None, str]:
    """``(OLD or None, NEW)`` from ``cas KEY OLD NEW`` or ``cas KEY NEW --absent``."""
    values = list(args.values)
    if args.absent:
        if len(values) != 1:
            raise ValueError(
                f"cas --absent takes KEY NEW (no OLD: the key must not exist), got {len(values)}"
                f" values after KEY: {' '.join(map(repr, values))}"
            )
        return None, values[0]
    if len(values) != 2:
        raise ValueError("cas takes KEY OLD NEW (or KEY NEW --absent)")
    return values[0], values[1]


def _why(key: str, old: str | None, current: Any) -> str:
    """One line saying why a cas did not match: what the key holds now."""
    if current is None:
        return f"{key!r} is absent, not {old!r}"
    value = current.value.decode("utf-8", "backslashreplace")
    wanted = "absent" if old is None else repr(old)
    return (
        f"{key!r} is {value!r} (mod revision {current.mod_revision}, version"
        f" {current.version}), not {wanted}"
    )


class _OncePerCommand(logging.Filter):
    """Lets each kind of dropped-connection warning through once per command.

    The transport redials a member that refuses it (wrong secret, not a raft
    member) every backoff, and logs each drop; a CLI command says it once.
    """

    def __init__(self) -> None:
        super().__init__()
        self._seen: set[tuple[object, ...]] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        if "dropped a connection" not in record.msg or len(args) < 2:
            return True
        key = (args[1], str(args[2]).split(":")[0] if len(args) > 2 else "")
        if key in self._seen:
            return False
        self._seen.add(key)
        return True


def quiet_repeats() -> Any:
    """A context manager: repeated connection warnings printed once while it is open."""
    import contextlib

    @contextlib.contextmanager
    def scope() -> Any:
        log = logging.getLogger("trio_foundation.runtime.tcp")
        once = _OncePerCommand()
        log.addFilter(once)
        try:
            yield once
        finally:
            log.removeFilter(once)

    return scope()


def _client(args: argparse.Namespace) -> int:
    from ..runtime.auth import load_secret_file

    secret = None if args.secret_file is None else load_secret_file(args.secret_file)
    if not args.timeout > 0:
        raise ValueError(f"--timeout must be > 0, got {args.timeout}")
    if args.verb == "cas":
        _cas_values(args)  # bad usage before any connection
    if args.verb == "put":
        args.put_value = _put_value(args)  # bad usage, and stdin or F read, before connecting
    try:
        try:
            with quiet_repeats():
                return trio.run(_client_main, args, secret)
        except BaseExceptionGroup as group:  # the transport's nursery wraps the body's error
            leaf: BaseException = group
            while isinstance(leaf, BaseExceptionGroup) and len(leaf.exceptions) == 1:
                leaf = leaf.exceptions[0]
            if leaf is group:
                raise
            raise leaf from None
    except trio.TooSlowError:
        print(f"{_PREFIX}: error: no answer within {args.timeout:g} s", file=sys.stderr)
        return EXIT_TIMEOUT


async def _client_main(args: argparse.Namespace, secret: bytes | None) -> int:
    from ..coordination.consensus import open_raft_client
    from ..coordination.raft_kv import KV_CODEC, RaftKV

    out = sys.stdout.buffer
    with trio.fail_after(args.timeout):
        members = await _resolve(args.cluster)
        async with open_raft_client(members, codec=KV_CODEC, secret=secret) as client:
            kv = RaftKV(client)
            verb = args.verb
            if verb == "put":
                print(await kv.put(args.key, args.put_value))
            elif verb == "get":
                found = await kv.get(args.key)
                if found is None:
                    return EXIT_ABSENT
                out.write(found.value + b"\n")
                out.flush()
            elif verb == "cas":
                old, new = _cas_values(args)
                result = await kv.cas(args.key, old, new)
                if not result.succeeded:
                    print(
                        f"{_PREFIX}: cas failed: {_why(args.key, old, result.current)}",
                        file=sys.stderr,
                    )
                    return EXIT_ABSENT
                return 0
            elif verb == "delete":
                return 0 if await kv.delete(args.key) else EXIT_ABSENT
            elif verb == "status":
                for node in sorted(members):
                    s = await client.node_status(node)
                    if s is None:
                        print(f"node {node} unreachable")
                    else:
                        print(
                            f"node {s.node} role {s.role} term {s.term} leader {s.leader}"
                            f" commit {s.commit_index} applied {s.last_applied}"
                        )
            elif verb == "snapshot-save":
                await _save(client, members, args.file)
            elif verb == "member":
                if args.action == "list":
                    for node in sorted(members):
                        s = await client.node_status(node)
                        if s is not None and s.role == "leader":
                            print("voters", *s.voters)
                            print("learners", *s.learners)
                            return 0
                    raise OSError("no leader answered; retry")
                if args.node is None:
                    raise ValueError(f"member {args.action} needs a node id")
                op = {"add": "add_server", "add-learner": "add_learner"}.get(
                    args.action, "remove_server"
                )
                voters, learners = await client.change_membership(op, args.node)  # type: ignore[arg-type]
                print("voters", *voters)
                print("learners", *learners)
            if verb != "watch":
                return 0
    # watch runs without the overall timeout (until --count events or a signal)
    members = await _resolve(args.cluster)
    async with open_raft_client(members, codec=KV_CODEC, secret=secret) as client:
        kv = RaftKV(client)
        seen = 0
        async with kv.watch(args.prefix, start_revision=args.rev) as events:
            async for event in events:
                line = b"%s %d %s %s\n" % (
                    event.type.encode(),
                    event.revision,
                    event.kv.key,
                    event.kv.value,
                )
                out.write(line)
                out.flush()
                seen += 1
                if args.count and seen >= args.count:
                    break
    return 0


# --------------------------------------------------------------------------- snapshots


def _snapshot(args: argparse.Namespace) -> int:
    if args.action == "save":
        if args.cluster is None:
            raise ValueError("snapshot save needs --cluster")
        args.verb = "snapshot-save"
        return _client(args)
    if args.data_dir is None:
        raise ValueError("snapshot restore needs --data-dir")
    _restore(args.file, args.data_dir)
    return 0


async def _save(client: Any, members: dict[int, tuple[str, int]], path: str) -> None:
    from ..coordination.raft_wire import decode_snapshot

    leader = None
    for node in sorted(members):
        s = await client.node_status(node)
        if s is not None and s.leader is not None:
            leader = s.leader
            break
    if leader is None or leader not in members:
        leader = sorted(members)[0]
    data = await client.fetch_snapshot(leader)
    if not data:
        raise OSError(f"member {leader} has applied nothing yet: no snapshot to save")
    snap = decode_snapshot(data)
    await trio.to_thread.run_sync(_write_file, path, data)
    print(f"saved member {leader}'s snapshot at index {snap.last_included_index}", file=sys.stderr)


def _write_file(path: str, data: bytes) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _restore(path: str, data_dir: str) -> None:
    from ..coordination.raft_wire import decode_snapshot
    from ..runtime.raft_log import HardState, RaftLog, Snapshot

    with open(path, "rb") as f:
        data = f.read()
    try:
        snap = decode_snapshot(data)
    except (msgspec.DecodeError, ValueError, TypeError) as exc:  # or a bad configuration
        raise ValueError(f"{path} is not a raft snapshot: {exc}") from None
    if os.path.exists(data_dir) and os.listdir(data_dir):
        raise ValueError(f"--data-dir {data_dir} is not empty")

    async def write() -> None:
        log = RaftLog(data_dir)
        try:
            await log.save(
                hard_state=HardState(snap.last_included_term, None),
                snapshot=Snapshot(snap.last_included_index, snap.last_included_term, data),
            )
        finally:
            await log.aclose()

    trio.run(write)
    print(
        f"restored index {snap.last_included_index} (term {snap.last_included_term},"
        f" voters {list(snap.config.voters)}) into {data_dir}",
        file=sys.stderr,
    )
