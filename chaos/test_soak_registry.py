"""Soak: the registry under rotating keys, owners, index values and watchers.

Each operation is one of: a scope-bound registration by an owner task that then ends
(normally, by cancellation, or by raising), a registration without owner, an unregister,
a metadata update that moves index values, an indexed query, a batch registration, or a
watcher opened, fed and closed (watch capacity 8, so most watchers resync). The registry
never holds more than 1,000 entries. Sampling starts after 10,000 warm-up operations.
The test asserts the growth the memory slope projects stays under
``soak_memory.GROWTH_LIMIT`` (a leak of one entry per operation is hundreds of bytes per
operation: keeping each removed entry alive was measured at +3.4 MiB over 10,000 ops).

CI runs 20,000 operations; the 1,000,000-operation soak is ``pytest -m slow
chaos/test_soak_registry.py -s`` (figures in docs/registry.md).
"""

from __future__ import annotations

import random

import pytest
import trio
from soak_memory import GROWTH_LIMIT, MemoryTrace, isolated, traced

from trio_foundation.registry import Index, Registry


class Boom(Exception):
    pass


async def _soak(ops: int, trace: MemoryTrace, seed: int) -> None:
    rng = random.Random(seed)
    registry = Registry(
        keys="duplicate",
        indexes=[Index("node"), Index("caps", multi=True), Index("health")],
        batch_limit=16,
    )
    live: list[int] = []
    warmup = 10_000  # operations before the first sample: the live set reaches its size
    step = max(1, ops // 40)

    async def owner(key: int, how: int) -> None:
        try:
            async with registry.register(key, {"node": key % 7, "caps": [key % 5]}):
                await trio.lowlevel.checkpoint()
                if how == 1:
                    raise Boom
                if how == 2:
                    await trio.sleep_forever()
        except Boom:
            pass

    async with trio.open_nursery() as nursery:
        for i in range(-warmup, ops):
            op = rng.randrange(8)
            key = rng.randrange(5000)
            if op == 0:
                with trio.move_on_after(0) if i % 3 == 2 else trio.CancelScope():
                    await owner(key, i % 3)
            elif op in (1, 2) and len(live) < 1000:
                caps = rng.sample(range(20), 2)
                live.append(registry.register_nowait(key, {"node": key % 13, "caps": caps}).id)
            elif op == 3 and live:
                registry.unregister_nowait(live.pop(rng.randrange(len(live))))
            elif op == 4 and live:
                entry_id = live[rng.randrange(len(live))]
                registry.update_nowait(entry_id, {"health": rng.choice("ab"), "node": key % 9})
            elif op == 5:
                registry.select({"node": key % 13}, any_of=[("caps", key % 20)], limit=10)
            elif op == 6 and len(live) < 990:
                entries = registry.register_many_nowait([(key + j, {"node": j}) for j in range(4)])
                for entry in entries:
                    registry.unregister_nowait(entry)
            else:
                async with registry.watch(capacity=8) as watch:
                    for _ in range(3):
                        registry.unregister_nowait(registry.register_nowait(key, {}))
                    while watch.pending():
                        watch.receive_nowait()
            if i >= 0 and i % step == 0:
                trace.sample(i)
        nursery.cancel_scope.cancel()
    assert len(registry) == len(live) <= 1000
    trace.sample(ops)


def _run(ops: int) -> MemoryTrace:
    with traced() as trace:
        trio.run(_soak, ops, trace, random.randrange(2**32))
    return trace


def test_registry_soak_short() -> None:
    trace = isolated(__file__, "_run", 20_000, timeout=240)
    print(trace.report("registry"))
    assert trace.projected_growth() < GROWTH_LIMIT, trace.report("registry")


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_registry_soak_million() -> None:
    trace = isolated(__file__, "_run", 1_000_000, timeout=3500)
    print(trace.report("registry"))
    assert trace.projected_growth() < GROWTH_LIMIT, trace.report("registry")
