"""coordination/raft_lock.py: member resolution and the bound on in-flight submits
(mutation survivors).

``resolve_members`` is driven against a loopback port nobody listens on;
``_Connection`` against a stand-in Raft client whose submits wait until released,
so the bound ``_MAX_INFLIGHT`` and the counters are checked exactly.
"""

from __future__ import annotations

import socket
from typing import Any

import pytest
import trio
import trio.testing

from trio_foundation.coordination.raft_lock import (
    _MAX_INFLIGHT,
    _carried,
    _Connection,
    resolve_members,
)
from trio_foundation.protocols import lock_machine as lm


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port  # closed again: connecting is refused


async def test_no_reachable_member_is_an_oserror_naming_each_failure() -> None:
    port = _closed_port()
    skipped: list[str] = []
    with trio.fail_after(10), pytest.raises(OSError) as caught:
        await resolve_members([(None, ("127.0.0.1", port))], timeout=2.0, on_skip=skipped.append)
    assert len(skipped) == 1
    assert skipped[0].startswith(f"127.0.0.1:{port} unreachable (")
    assert str(caught.value) == "no raft member is reachable: " + skipped[0]


async def test_members_with_given_ids_are_not_probed() -> None:
    port = _closed_port()
    with trio.fail_after(10):
        found = await resolve_members([(3, ("127.0.0.1", port)), (5, ("h", 1))])
    assert found == {3: ("127.0.0.1", port), 5: ("h", 1)}


class _SlowClient:
    """A Raft client whose submits wait for ``release`` and answer their command."""

    def __init__(self) -> None:
        self.release = trio.Event()
        self.submitted: list[Any] = []

    async def submit(self, command: Any) -> Any:
        self.submitted.append(command)
        await self.release.wait()
        return ("answer", command[1])


async def test_submits_beyond_the_bound_are_dropped_and_counted() -> None:
    client = _SlowClient()
    delivered: list[Any] = []
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            conn = _Connection(client, 7, nursery, 5.0)  # type: ignore[arg-type]
            assert (conn.inflight, conn.dropped, conn.owner) == (0, 0, 7)
            release = lm.LockRelease("x", 7, 1)
            for _ in range(_MAX_INFLIGHT):
                assert conn.spawn(release, delivered.append) is True
            assert conn.inflight == _MAX_INFLIGHT
            assert conn.spawn(release, delivered.append) is False
            assert conn.spawn(release, delivered.append) is False
            assert (conn.inflight, conn.dropped) == (_MAX_INFLIGHT, 2)
            await trio.testing.wait_all_tasks_blocked()
            client.release.set()
        assert conn.inflight == 0
        assert conn.dropped == 2
    assert len(delivered) == _MAX_INFLIGHT
    assert delivered[0] == ("answer", release)
    assert client.submitted[0] == (lm.LOCK_TAG, release)


async def test_a_submit_past_its_deadline_delivers_nothing_and_frees_its_slot() -> None:
    client = _SlowClient()
    delivered: list[Any] = []
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            conn = _Connection(client, 7, nursery, 0.05)  # type: ignore[arg-type]
            assert conn.spawn(lm.LockRelease("x", 7, 1), delivered.append) is True
        assert conn.inflight == 0
    assert delivered == []


async def test_carried_names_the_errors_a_group_carries_besides_cancellations() -> None:
    """connect_raft_lock unwraps a group only when it carries exactly its own error
    (cancellations aside): ``_carried`` is that comparison's key."""
    with trio.CancelScope() as scope:
        scope.cancel()
        try:
            await trio.lowlevel.checkpoint()
        except trio.Cancelled as exc:
            cancelled = exc
            raise
    own, other = ValueError("body"), OSError("close")
    assert _carried(cancelled) == set()
    assert _carried(own) == {id(own)}
    wrapped = BaseExceptionGroup("", [cancelled, BaseExceptionGroup("", [own])])
    assert _carried(wrapped) == _carried(own)
    both = BaseExceptionGroup("", [own, BaseExceptionGroup("", [other, cancelled])])
    assert _carried(both) == {id(own), id(other)}


def test_a_raft_url_without_the_scheme_is_read_the_same() -> None:
    from trio_foundation.coordination.raft_lock import parse_raft_url

    expected = [(None, ("127.0.0.1", 5000)), (2, ("127.0.0.1", 5001))]
    assert parse_raft_url("127.0.0.1:5000, 2=127.0.0.1:5001") == expected
    assert parse_raft_url("raft://127.0.0.1:5000,2=127.0.0.1:5001") == expected
