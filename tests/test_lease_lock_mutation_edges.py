"""coordination/lease_lock.py: the client's backoff after a "held" refusal (a
mutation survivor: only timing tells it), under MockClock."""

from __future__ import annotations

import random

import pytest
import trio
import trio.testing

from trio_foundation.coordination.lease_lock import open_lock_service


@pytest.fixture
def autojump_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)


@pytest.mark.parametrize("seed", [1, 6])
async def test_a_refused_acquire_backs_off_for_the_jittered_delay(
    autojump_clock: trio.testing.MockClock, seed: int
) -> None:
    """A lock held for 0.1 s: the second client's first attempt is refused "held",
    and it retries after ``retry_delay * (0.5 + r)`` (``r`` the first draw of its
    seeded jitter), then is granted; in-process messages take no time."""
    r = random.Random(seed).random()
    assert abs(r - 0.5) > 0.2  # these seeds tell * (0.5 + r) from / (0.5 + r)
    async with open_lock_service() as service:
        async with service.connect() as a, service.connect(retry_delay=1.0, seed=seed) as b:
            async with trio.open_nursery() as nursery:

                async def hold() -> None:
                    async with a.acquire(ttl=5):
                        await trio.sleep(0.1)

                nursery.start_soon(hold)
                await trio.sleep(0.01)
                assert service.server.holder == a.node_id
                start = trio.current_time()
                async with b.acquire(ttl=5):
                    waited = trio.current_time() - start
    assert waited == pytest.approx(1.0 * (0.5 + r), abs=0.01)
