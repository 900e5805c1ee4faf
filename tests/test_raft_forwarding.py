"""A client that knows only followers still gets served: followers forward to the leader.

Regression test for the report behind commit 17bf1f7: a client whose member list
held only followers got ``not_leader`` naming a leader it had no address for, and
timed out (the commit only made it back off instead of spinning).
"""

from __future__ import annotations

import itertools
import random
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from raft_cluster import Counter, loopback_peers, open_raft_nodes

from trio_foundation.coordination.consensus import (
    Codec,
    RaftClient,
    open_raft_client,
)
from trio_foundation.coordination.raft_wire import CReply


@pytest.mark.timeout(60)
async def test_a_client_of_followers_only_is_forwarded_to_the_leader(tmp_path: Path) -> None:
    peers = loopback_peers(3)
    with trio.fail_after(30):
        async with open_raft_nodes(peers, lambda i: tmp_path / str(i), Counter) as nodes:
            leader = await nodes[0].leader.wait_value(lambda v: v is not None)
            followers = {i: a for i, a in peers.items() if i != leader}
            async with open_raft_client(followers) as client:
                with trio.fail_after(3):  # before the fix: not_leader until the deadline
                    assert await client.submit(("x", 2)) == 2
                    assert await client.read("x") == 2
                    forwarded: Any = await client.submit(("x", 3))
                assert forwarded == 5


class _AlwaysConnected:
    def is_connected(self, node: int) -> bool:
        return True


def test_a_not_leader_naming_an_unknown_leader_backs_off() -> None:
    """Commit 17bf1f7's back-off: a follower that names a leader this client has no
    address for (and cannot forward: not connected to it) is asked again after a
    jittered, doubling delay, not at once (the CLI spun a core for its whole --timeout)."""
    asked: list[float] = []

    class Follower(RaftClient):
        async def _remote(self, target: int, make: Any) -> CReply | None:
            asked.append(trio.current_time())
            if len(asked) > 1000:  # without the back-off, virtual time never moves
                raise AssertionError("asked the follower again at once, 1000 times")
            await trio.lowlevel.checkpoint()
            return CReply(0, "not_leader", leader=99)  # 99: not among the members

    async def main() -> None:
        client = Follower(_AlwaysConnected(), [1, 2], Codec(), 2.0, random.Random(1))  # type: ignore[arg-type]
        with trio.move_on_after(2.0):
            await client.submit(1)

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    # 0.01 s doubling to 0.5 s (x0.5..1.5 jitter): about ten asks in 2 s, not thousands
    assert 3 <= len(asked) <= 20, len(asked)
    gaps = [b - a for a, b in itertools.pairwise(asked)]
    assert max(gaps) >= 0.2
