"""coordination/: the fifth mutation sample's survivors (seed 4276861678) left in session 6.

Each test asserts an exact reply, message or exception:

* ``consensus``: a member whose driver is not running answers a raw client request
  ``not_leader`` (its message handling with a stopped stand-in for the core's
  driver); a follower answers a raw batch ``not_leader`` naming the leader (a real
  core on a real driver that fires no timer, told of the leader by one heartbeat).
* ``lease_lock`` and ``tcp_lock``: the body's error comes out unwrapped even when an
  enclosing scope was cancelled too (the nursery's group then carries
  ``Cancelled`` beside it); a driver that fails while the body waits comes out as
  the group that carries its error, not as the body's bare ``Cancelled``.
* ``lock_server``: a state record that does not validate is refused naming the
  state file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pytest
import trio
from raft_cluster import Counter

from trio_foundation.coordination.consensus import Codec, RaftNodeHandle
from trio_foundation.coordination.lease_lock import open_lock_service
from trio_foundation.coordination.lock_server import ServerStore, serve_lock_service
from trio_foundation.coordination.raft_wire import (
    MAX_MEMBER_ID,
    CBatchItem,
    CBatchReply,
    CBatchResult,
    CReply,
    CSubmit,
    CSubmitBatch,
    raft_protocol,
)
from trio_foundation.coordination.tcp_lock import open_remote_lock_service
from trio_foundation.protocols import raft as core
from trio_foundation.protocols.lease_lock import ServerDurable
from trio_foundation.runtime.driver import NodeDriver, TimerFired, Transition
from trio_foundation.runtime.storage import CorruptStateError, LoggedState
from trio_foundation.runtime.transport import Envelope

# ------------------------------------------------------------------------ consensus


class _Tcp:
    """Keeps what is sent as the client's side of the transport decodes it (a
    message the client cannot decode fails the test, as it drops the connection)."""

    def __init__(self) -> None:
        self.protocol = raft_protocol(8192)
        self.sent: list[Any] = []

    def queued_bytes(self, dst: int) -> int:
        return 0

    def is_connected(self, dst: int) -> bool:
        return False  # no member to forward a request to

    def send_nowait(self, dst: int, msg: Any) -> bool:
        self.sent.append(self.protocol.decode(self.protocol.encode(msg)))
        return True


class _StoppedDriver:
    """A node driver that has stopped (the window between a member's stop and its
    transport's close): it takes no request."""

    running = False

    def submit(self, op: str, value: Any) -> Any:
        raise AssertionError("a stopped driver is handed no request")


async def test_a_member_whose_driver_is_not_running_answers_not_leader() -> None:
    """A client's submit and batch reach a member whose core is not running: the
    member answers each at once, ``not_leader`` with no leader named (the client
    then tries another member after a short backoff), and hands its core nothing."""
    raft = core.RaftNode(1, (1, 2), Counter(), election_timeout=0.05)
    tcp = _Tcp()
    handle = RaftNodeHandle(1, [1, 2], tcp, raft, Codec(), 2.0, 0.01, 64)  # type: ignore[arg-type]
    handle.driver = _StoppedDriver()  # type: ignore[assignment]
    handle.persister = object()  # type: ignore[assignment]
    client = MAX_MEMBER_ID + 5
    command = msgspec.msgpack.encode(("a", 1))
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            handle.nursery = nursery
            handle._on_message(Envelope(client, CSubmit(7, 99, 1, command)))
            handle._on_message(Envelope(client, CSubmitBatch(8, (CBatchItem(99, 2, command),))))
        handle.nursery = None
    assert sorted(tcp.sent, key=lambda m: m.req) == [  # each answered in its own task
        CReply(7, "not_leader", leader=None),
        CBatchReply(8, (CBatchResult("not_leader", leader=None),)),
    ]
    assert handle._client_requests == 0


class _Wire:
    """The driver's transport: keeps what the core sends."""

    node_id = 1

    def __init__(self) -> None:
        self.sent: list[tuple[int, Any]] = []

    def send_nowait(self, dst: int, msg: Any) -> bool:
        self.sent.append((dst, msg))
        return True


class _Durable:
    """A persister with everything durable at once."""

    queued = 0

    async def wait_durable(self, seq: int) -> None:
        await trio.lowlevel.checkpoint()

    async def wait_index(self, index: int) -> None:
        await trio.lowlevel.checkpoint()


async def test_a_follower_answers_a_batch_not_leader_naming_the_leader() -> None:
    """Member 1's core (a real one, on a real driver that is started but fires no
    timer) has heard member 2 lead term 1. A client's raw batch is answered
    ``not_leader`` naming member 2 for each command (the hint a client follows at
    once), as its single submit is."""
    raft = core.RaftNode(1, (1, 2), Counter(), election_timeout=0.05)
    persisted: list[Any] = []
    driver = NodeDriver(raft, _Wire(), persist=persisted.append, pull=False)  # type: ignore[arg-type]
    driver.start()
    driver.deliver(2, core.AppendEntries(1, 2, 0, 0, (), 0))
    assert (raft.role, raft.status().leader) == ("follower", 2)
    tcp = _Tcp()
    handle = RaftNodeHandle(1, [1, 2], tcp, raft, Codec(), 2.0, 0.01, 64)  # type: ignore[arg-type]
    handle.driver = driver
    handle.persister = _Durable()  # type: ignore[assignment]
    client = MAX_MEMBER_ID + 5
    command = msgspec.msgpack.encode(("a", 1))
    items = (CBatchItem(99, 1, command), CBatchItem(98, 1, command))
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            handle.nursery = nursery
            handle._on_message(Envelope(client, CSubmitBatch(8, items)))
            handle._on_message(Envelope(client, CSubmit(9, 97, 1, command)))
        handle.nursery = None
    assert sorted(tcp.sent, key=lambda m: m.req) == [  # each answered in its own task
        CBatchReply(8, (CBatchResult("not_leader", leader=2),) * 2),
        CReply(9, "not_leader", leader=2),
    ]
    assert raft.status().last_index == 0  # nothing proposed


# ---------------------------------------------------------------- lease_lock, tcp_lock


async def test_the_body_error_comes_out_unwrapped_under_a_cancelled_scope() -> None:
    """The body raises while an enclosing scope is cancelled: the service's nursery
    ends with the body's error and the driver's ``Cancelled`` (which the enclosing
    scope owns); the body's error is what comes out, not wrapped in a group."""
    body = ValueError("body")
    caught: BaseException | None = None
    with trio.fail_after(10):
        with trio.CancelScope() as outer:
            try:
                async with open_lock_service():
                    outer.cancel()
                    raise body
            except BaseException as exc:  # whatever came out
                caught = exc
    assert caught is body


async def test_a_client_driver_that_fails_while_the_body_waits_is_not_lost(
    tmp_path: Path,
) -> None:
    """A remote lock client's driver fails (its trace hook raises on the first timer
    that fires, in the driver's own task) while the body waits holding a lease: the
    body is cancelled, and what comes out is the group that carries the driver's
    error, not the body's bare ``Cancelled``."""
    failure = OSError("trace hook failed")

    def trace(transition: Transition) -> None:
        if isinstance(transition.input, TimerFired):
            raise failure

    caught: BaseException | None = None
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            address = await nursery.start(
                lambda task_status: serve_lock_service(
                    ("127.0.0.1", 0), tmp_path / "d", task_status=task_status
                )
            )
            try:
                async with open_remote_lock_service(
                    f"tcp://127.0.0.1:{address[1]}", trace=trace, seed=1
                ) as client:
                    async with client.acquire(ttl=0.2, name="a"):
                        await trio.sleep(5)
            except BaseException as exc:  # whatever came out
                caught = exc
            nursery.cancel_scope.cancel()
    assert isinstance(caught, BaseExceptionGroup)
    matched, rest = caught.split(OSError)
    assert rest is None
    assert matched is not None

    def leaves(group: BaseExceptionGroup[Any]) -> list[BaseException]:
        return [
            leaf
            for e in group.exceptions
            for leaf in (leaves(e) if isinstance(e, BaseExceptionGroup) else [e])
        ]

    assert leaves(matched) == [failure]


# ---------------------------------------------------------------------- lock_server


def test_a_state_record_that_does_not_validate_is_refused_naming_the_file(
    tmp_path: Path,
) -> None:
    store = ServerStore(tmp_path / "d", block=1)
    store.persist(ServerDurable(1, 2.0))
    path = store.path
    store.close()
    log = LoggedState(path)
    log.save(msgspec.msgpack.encode(["one", 2.0]))  # a mark that is not an int
    log.close()
    with pytest.raises(CorruptStateError) as caught:
        ServerStore(tmp_path / "d")
    assert caught.value.path == path
    assert caught.value.problem == "bad state record: Expected `int`, got `str` - at `$[0]`"
    assert str(caught.value) == f"{path}: {caught.value.problem}"
