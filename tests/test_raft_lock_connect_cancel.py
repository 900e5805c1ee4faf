"""A ``raft://`` lock connection cancelled while its Raft client is still opening.

The client runs shielded in a task of its own (so that the closing ``LockClose``
still reaches the cluster after a cancellation). It used to be started with
``nursery.start``: when the caller was cancelled during that start, trio kept the
task in ``start``'s own nursery and ``start`` waited for it to exit, which the
shielded task never did — the cancelled ``connect`` hung forever (found by
``tests/test_consensus_cancellation.py`` under load: a run stuck for 775 virtual
seconds). Here the opening is made slow on purpose, so the cancellation always
lands in that window.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio

from trio_foundation.coordination import raft_lock
from trio_foundation.verify.cancellation import InjectionPlan, Injector, run_injected


class _IdleClient:
    """Stands in for a RaftClient that never connects."""

    async def wait_connected(self) -> None:
        await trio.sleep_forever()


@pytest.mark.parametrize("opening", [0.0, 0.5, 2.0])
def test_a_connect_cancelled_while_its_client_opens_returns(
    monkeypatch: pytest.MonkeyPatch, opening: float
) -> None:
    opened: list[str] = []

    @asynccontextmanager
    async def slow_client(*args: Any, **kwargs: Any) -> AsyncIterator[_IdleClient]:
        # a client whose opening takes ``opening`` seconds (handshakes under load)
        await trio.sleep(opening)
        opened.append("opened")
        try:
            yield _IdleClient()
        finally:
            opened.append("closed")

    monkeypatch.setattr(raft_lock, "open_raft_client", slow_client)

    async def scenario(inj: Injector) -> None:
        with trio.move_on_after(1.0) as scope:
            async with raft_lock.open_raft_lock_service("raft://0=127.0.0.1:9", timeout=5):
                raise AssertionError("connected to a client that never connects")
        assert scope.cancelled_caught

    # run_injected reports a run in which nothing can run and no deadline is
    # pending (the hang) as stuck within a fraction of a second
    result = run_injected(scenario, InjectionPlan(), real_time_limit=30)
    assert result.applied == ()
    # nothing left running: a client that opened was closed again; one still
    # opening when the connect was cancelled was abandoned before it opened
    assert opened == (["opened", "closed"] if opening < 1.0 else [])


@pytest.mark.parametrize(
    ("raised", "expected", "words"),
    [
        (OSError("no route"), ConnectionError, "lock service raft://0=127.0.0.1:9: no route"),
        (ValueError("bad secret"), ValueError, "bad secret"),
    ],
)
def test_an_error_while_the_client_opens_is_raised_bare(
    monkeypatch: pytest.MonkeyPatch, raised: Exception, expected: type[Exception], words: str
) -> None:
    # The client opens in a task of its own; its error used to reach the caller
    # wrapped in an ExceptionGroup, which no ``except ConnectionError`` catches.
    @asynccontextmanager
    async def failing_client(*args: Any, **kwargs: Any) -> AsyncIterator[_IdleClient]:
        await trio.lowlevel.checkpoint()
        raise raised
        yield _IdleClient()  # pragma: no cover - makes this a generator

    monkeypatch.setattr(raft_lock, "open_raft_client", failing_client)

    async def main() -> None:
        with pytest.raises(expected) as info:
            async with raft_lock.open_raft_lock_service("raft://0=127.0.0.1:9", timeout=5):
                raise AssertionError("connected through a client that failed to open")
        assert not isinstance(info.value, BaseExceptionGroup)
        assert words in str(info.value)

    trio.run(main)
